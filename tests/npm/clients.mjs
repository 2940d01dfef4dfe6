// clients.mjs -- runs real npm clients, unmodified, against embedserve at
// $EMBEDSERVE_URL: the openai SDK (base64 by default),
// @langchain/community's JinaEmbeddings and the ollama client (/api/embed,
// /api/embeddings, /api/tags, /api/version). Prints "N passed, N failed" last.
import OpenAI from "openai";
import { JinaEmbeddings } from "@langchain/community/embeddings/jina";
import { Ollama } from "ollama";

const base = process.env.EMBEDSERVE_URL;
let passed = 0, failed = 0;
function check(cond, what) {
    if (cond) passed++;
    else { failed++; console.error(`FAIL ${what}`); }
}
async function raw(body) {
    const r = await fetch(`${base}/v1/embeddings`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    return r.json();
}
const same = (a, b) => a.length === b.length && a.every((x, i) => Math.fround(x) === Math.fround(b[i]));

async function testOpenAI(nEmbd) {
    const client = new OpenAI({ apiKey: "sk-anything", baseURL: `${base}/v1`, maxRetries: 0 });
    const texts = ["hello world", "naïve café 東京", ""];
    const res = await client.embeddings.create({ model: "jina-embeddings-v3", input: texts });
    const ref = await raw({ model: "jina-embeddings-v3", input: texts, encoding_format: "float" });
    check(res.data.length === 3, "openai: 3 rows");
    for (let i = 0; i < 3; i++) {
        check(res.data[i].index === i, `openai: index ${i}`);
        check(Array.isArray(res.data[i].embedding) && res.data[i].embedding.length === nEmbd,
              `openai: row ${i} decoded from base64 to ${nEmbd} floats`);
        check(same(res.data[i].embedding, ref.data[i].embedding), `openai: row ${i} equals the float output`);
    }
    check(res.usage.prompt_tokens > 0 && res.usage.total_tokens === res.usage.prompt_tokens, "openai: usage");
    const small = await client.embeddings.create({ model: "jina-embeddings-v3", input: "x", dimensions: 8,
                                                   encoding_format: "float" });
    check(small.data[0].embedding.length === 8, "openai: dimensions 8");
    try {
        await client.embeddings.create({ model: "no-such-model", input: "x" });
        check(false, "openai: unknown model must throw");
    } catch (e) {
        check(e.status === 400 && /not found/.test(e.message), `openai: 400 error surfaced (${e.status} ${e.message})`);
        check(e.code === "INPUT_MODEL_NOT_FOUND", `openai: error code (${e.code})`);
    }
    const models = await client.models.list();
    check(models.data.some((m) => m.id === "jina-embeddings-v3"), "openai: models.list");
}

async function testLangChain(nEmbd) {
    const emb = new JinaEmbeddings({ apiKey: "jina_anything", model: "jina-embeddings-v3", dimensions: nEmbd });
    emb.baseUrl = `${base}/v1/embeddings`; // the documented way to point it elsewhere
    const docs = await emb.embedDocuments(["first document", "second\ndocument"]);
    const ref = await raw({ model: "jina-embeddings-v3", input: ["first document", "second document"],
                            task: "retrieval.passage", dimensions: nEmbd });
    check(docs.length === 2, "langchain: 2 documents");
    check(same(docs[0], ref.data[0].embedding) && same(docs[1], ref.data[1].embedding),
          "langchain: documents equal the retrieval.passage output");
    const q = await emb.embedQuery("a query");
    const refq = await raw({ model: "jina-embeddings-v3", input: ["a query"], task: "retrieval.query",
                             dimensions: nEmbd });
    check(same(q, refq.data[0].embedding), "langchain: query equals the retrieval.query output");
    const bad = new JinaEmbeddings({ apiKey: "x", model: "jina-embeddings-v3", dimensions: 100000 });
    bad.baseUrl = emb.baseUrl;
    try {
        await bad.embedQuery("x");
        check(false, "langchain: bad dimensions must throw");
    } catch (e) {
        check(/dimensions/.test(e.message), `langchain: error detail surfaced (${e.message})`);
    }
}

const near = (a, b) => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]) <= 2e-6);

async function testOllama(nEmbd) {
    const ollama = new Ollama({ host: base });
    const texts = ["hello world", "naïve café 東京"];
    // the task comes from the model name: "<name>:<task>"
    const res = await ollama.embed({ model: "jina-embeddings-v3:retrieval.query", input: texts });
    const ref = await raw({ input: texts, task: "retrieval.query" });
    check(res.model === "jina-embeddings-v3:retrieval.query", `ollama: model echoed (${res.model})`);
    check(res.embeddings.length === 2 && res.embeddings[0].length === nEmbd, "ollama: 2 rows of n_embd");
    for (let i = 0; i < 2; i++)
        check(near(res.embeddings[i], ref.data[i].embedding), `ollama: row ${i} equals /v1/embeddings`);
    check(res.prompt_eval_count > 0 && res.total_duration > 0, "ollama: counts");
    const one = await ollama.embed({ model: "jina-embeddings-v3", input: "hello world", dimensions: 16,
                                     truncate: true, keep_alive: "5m" });
    check(one.embeddings.length === 1 && one.embeddings[0].length === 16, "ollama: dimensions 16");
    const legacy = await ollama.embeddings({ model: "jina-embeddings-v3:query", prompt: "hello world" });
    check(near(legacy.embedding, ref.data[0].embedding), "ollama: legacy embeddings equal /v1");
    const tags = await ollama.list();
    check(tags.models.some((m) => m.name === "jina-embeddings-v3:latest"), "ollama: list");
    try {
        await ollama.embed({ model: "llama3", input: "x" });
        check(false, "ollama: unknown model must throw");
    } catch (e) {
        check(e.status_code === 404 && /not found/.test(e.error), `ollama: 404 surfaced (${e.status_code} ${e.error})`);
    }
}

try {
    const m = await (await fetch(`${base}/v1/models`)).json();
    const nEmbd = m.data[0].dimensions;
    await testOpenAI(nEmbd);
    await testLangChain(nEmbd);
    await testOllama(nEmbd);
} catch (e) {
    check(false, `unexpected exception: ${e.stack || e}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
