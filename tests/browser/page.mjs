// page.mjs -- the page at `/` in Debian's headless Chromium (puppeteer-core,
// tests/stage_browser.sh). Starts build/embedserve on the generated model
// (auth off, then auth on), loads the page, enters texts, runs embeddings and
// checks what it shows against the API called directly:
//   - every heatmap value equals the cosine of /v1/embeddings' vectors to the
//     printed precision (pairs with the retrieval tasks, a comparison run with
//     a second task and size, one list with late chunking), and the nearest
//     passage per query is the arg-max;
//   - the token view equals /v1/tokenize (pieces, counts, the task prefix);
//   - with --api-key: without the key the run fails visibly, with the key it
//     works; the key is in no URL, storage or cookie;
//   - the live panel shows the kernels /metrics reports and plots;
//   - every request the page makes goes to the server's origin, and there are
//     no console errors, page errors or CSP violations;
//   - at 390 px nothing is wider than the screen.
// Screenshots of each state go to $BUILD/screenshots/. Prints
// "browser: N passed, M failed" last.
import { spawn } from "node:child_process";
import { mkdirSync, openSync, readFileSync } from "node:fs";
import puppeteer from "puppeteer-core";

const BUILD = process.env.BUILD || "build";
const MODEL = process.env.TESTMODEL || "build/testmodel";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = `${BUILD}/screenshots`;
const DIGITS = 3;
const KEY = "browser-test-key-5f2c";
mkdirSync(SHOTS, { recursive: true });

let passed = 0, failed = 0;
function check(cond, what, detail) {
    if (cond) passed++;
    else {
        failed++;
        console.log(`FAIL ${what}${detail === undefined ? "" : " " + JSON.stringify(detail)}`);
    }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startServer(name, extra) {
    const log = `${BUILD}/stage_browser_${name}.log`;
    const err = openSync(log, "w");
    const p = spawn(`${BUILD}/embedserve`, ["--model", MODEL, "--host", "127.0.0.1", "--port", "0",
                                            "--threads", "1", "--dtype", "f32", ...extra],
                    { stdio: ["ignore", "ignore", err] });
    const end = Date.now() + 60000;
    let port = null;
    while (!port && Date.now() < end && p.exitCode === null) {
        const m = /listening on 127\.0\.0\.1 port (\d+)/.exec(readFileSync(log, "utf8"));
        if (m) port = Number(m[1]);
        else await sleep(20);
    }
    if (!port) throw new Error(`server ${name} did not start (see ${log})`);
    const base = `http://127.0.0.1:${port}`;
    while (Date.now() < end) {
        try {
            if ((await fetch(`${base}/ready`)).status === 200) return { p, base };
        } catch { /* not yet */ }
        await sleep(50);
    }
    throw new Error(`server ${name} did not become ready`);
}

async function stopServer(s) {
    s.p.kill("SIGTERM");
    await new Promise((r) => (s.p.exitCode !== null ? r() : s.p.on("exit", r)));
}

async function api(base, path, body, key) {
    const headers = { "Content-Type": "application/json" };
    if (key) headers.Authorization = `Bearer ${key}`;
    const r = await fetch(base + path, { method: "POST", headers, body: JSON.stringify(body) });
    if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    return r.json();
}

async function embeddings(base, texts, task, dims, late, key) {
    const body = { input: texts, dimensions: dims, late_chunking: late, truncate: false };
    if (task) body.task = task;
    const j = await api(base, "/v1/embeddings", body, key);
    return j.data.sort((a, b) => a.index - b.index).map((d) => d.embedding);
}

function cos(a, b) {
    let d = 0, na = 0, nb = 0;
    for (let i = 0; i < a.length; i++) d += a[i] * b[i], na += a[i] * a[i], nb += b[i] * b[i];
    return d / Math.sqrt(na * nb);
}

// A new browser page that records every request, console error, page error
// and CSP violation.
async function openPage(browser, base, w, h) {
    const page = await browser.newPage();
    await page.setViewport({ width: w, height: h, deviceScaleFactor: 1 });
    const seen = { requests: [], foreign: [], console: [], errors: [], csp: [] };
    const origin = new URL(base).origin;
    await page.setRequestInterception(true);
    page.on("request", (req) => {
        const url = req.url();
        seen.requests.push(url);
        let o = null;
        try { o = new URL(url).origin; } catch { /* data: etc. */ }
        if (o !== origin) {
            seen.foreign.push(url);
            req.abort();
        } else req.continue();
    });
    page.on("console", (m) => { if (m.type() === "error") seen.console.push(m.text()); });
    page.on("pageerror", (e) => seen.errors.push(String(e)));
    await page.evaluateOnNewDocument(() => {
        window.__csp = [];
        document.addEventListener("securitypolicyviolation",
                                  (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));
    });
    await page.goto(base + "/", { waitUntil: "load" });
    return { page, seen };
}

async function run(page) {
    await page.evaluate(() => { delete document.body.dataset.state; });
    await page.click("#run");
    await page.waitForFunction(() => document.body.dataset.state, { timeout: 60000 });
    return page.evaluate(() => document.body.dataset.state);
}

// The heatmap of run key: [[{text, q, p}]] by row.
function heat(page, key) {
    return page.evaluate((k) => [...document.querySelectorAll(`table.heat[data-run="${k}"] tbody tr`)]
        .map((tr) => [...tr.querySelectorAll("td")].map((td) => ({
            text: td.textContent, q: Number(td.dataset.q), p: Number(td.dataset.p) }))), key);
}

// Checks a shown heatmap against the cosines of Q x P vectors.
function checkHeat(what, shown, qv, pv) {
    check(shown.length === qv.length && shown.every((r) => r.length === pv.length),
          `${what}: ${qv.length} x ${pv.length} cells`, shown.map((r) => r.length));
    let bad = [];
    for (let i = 0; i < qv.length; i++)
        for (let j = 0; j < pv.length; j++) {
            const c = cos(qv[i], pv[j]), cell = shown[i] && shown[i][j];
            const v = cell ? Number(cell.text) : NaN;
            // printed to DIGITS decimals: within half a unit of the last digit
            // (plus float noise at a rounding boundary)
            if (!cell || cell.text !== cell.text.trim() || !/^-?\d+\.\d{3}$/.test(cell.text) ||
                !(Math.abs(v - c) <= 0.5 * 10 ** -DIGITS + 1e-9))
                bad.push({ i, j, shown: cell && cell.text, cos: c });
        }
    check(bad.length === 0, `${what}: every value is the cosine of /v1/embeddings' vectors to ${DIGITS} decimals`, bad.slice(0, 4));
    return bad.length === 0;
}

async function checkNearest(page, key, what, qv, pv, same) {
    const shown = await page.evaluate((k) => [...document.querySelectorAll(`ol.nearest[data-run="${k}"] li`)]
        .map((li) => [Number(li.dataset.q), Number(li.dataset.p)]), key);
    const want = qv.map((q, i) => {
        let best = -1, bv = -Infinity;
        pv.forEach((p, j) => { const c = cos(q, p); if (!(same && i === j) && c > bv) bv = c, best = j; });
        return [i, best];
    });
    check(JSON.stringify(shown) === JSON.stringify(want), `${what}: nearest per query is the arg-max`, { shown, want });
}

// The token rows of run key against /v1/tokenize.
async function checkTokens(page, base, key, what, side, texts, task, k) {
    const rows = await page.evaluate((r, s) => [...document.querySelectorAll(`.tokens[data-run="${r}"] .tokrow[data-side="${s}"]`)]
        .map((row) => ({ n: Number(row.dataset.n),
                         pieces: [...row.querySelectorAll(".tok")].map((t) => t.textContent),
                         prefix: row.querySelectorAll(".tok.prefix").length })), key, side);
    const body = { input: texts, return_pieces: true, truncate: false };
    if (task) body.task = task;
    const ref = (await api(base, "/v1/tokenize", body, k)).data.sort((a, b) => a.index - b.index);
    const plain = (await api(base, "/v1/tokenize", { input: texts, return_pieces: true }, k)).data
        .sort((a, b) => a.index - b.index);
    check(rows.length === texts.length, `${what}: a token row per input`, rows.length);
    rows.forEach((r, i) => {
        check(r.n === ref[i].n_tokens && JSON.stringify(r.pieces) === JSON.stringify(ref[i].pieces),
              `${what} ${side}${i + 1}: pieces and count equal /v1/tokenize`, { shown: r.pieces, api: ref[i].pieces });
        const want = task ? ref[i].n_tokens - plain[i].n_tokens : 0;
        // the retrieval adapters have an instruction prefix; the others none
        check(r.prefix === want && (!/^retrieval\./.test(task || "") || want > 0),
              `${what} ${side}${i + 1}: the task prefix (${want} tokens) is marked`, r.prefix);
    });
}

async function shot(page, name) {
    await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

function checkClean(what, seen, page) {
    check(seen.requests.length > 0 && seen.foreign.length === 0,
          `${what}: all ${seen.requests.length} requests go to the server's origin`, seen.foreign);
    check(seen.console.length === 0, `${what}: no console errors`, seen.console);
    check(seen.errors.length === 0, `${what}: no page errors`, seen.errors);
    return page.evaluate(() => window.__csp).then((v) => check(v.length === 0, `${what}: no CSP violations`, v));
}

const lines = (page, id) => page.$eval(id, (e) => e.value.split("\n").map((s) => s.trim()).filter((s) => s));

async function testOpen(browser) {
    const srv = await startServer("open", []);
    const { base } = srv;
    try {
        const r = await fetch(base + "/");
        const csp = r.headers.get("content-security-policy") || "";
        check(r.status === 200 && (r.headers.get("content-type") || "").startsWith("text/html") &&
              /default-src 'none'/.test(csp) && /script-src 'self'/.test(csp) &&
              !/unsafe/.test(csp) && r.headers.get("x-content-type-options") === "nosniff",
              "GET /: HTML with a strict CSP and nosniff", [r.status, csp]);

        const { page, seen } = await openPage(browser, base, 1280, 800);
        const models = await (await fetch(base + "/v1/models")).json();
        const cardId = models.data[0].id, dimsAll = models.data[0].matryoshka_dimensions;
        await page.waitForFunction((id) => document.querySelector("#model-name").textContent.includes(id),
                                   { timeout: 20000 }, cardId);
        check(true, "the model card loads");
        // three polls of /metrics, so the live plots have lines
        await page.waitForFunction(() => document.querySelector('#l-rps [data-series] b') &&
                                   !/–/.test(document.querySelector('#l-rps [data-series] b').textContent),
                                   { timeout: 20000 });
        await sleep(2500);
        await shot(page, "01-start-1280x800");

        // pairs, retrieval.query -> retrieval.passage, full size
        const Q = await lines(page, "#queries"), P = await lines(page, "#passages");
        check((await page.$eval("#taskA", (e) => e.value)) === "retrieval", "the default task is the retrieval pair");
        const dimsA = Number(await page.$eval("#dimsA", (e) => e.value));
        check(dimsA === Math.max(...dimsAll), "the default size is the full one", dimsA);
        check((await run(page)) === "done", "pairs: the run finishes");
        const qv = await embeddings(base, Q, "retrieval.query", dimsA, false);
        const pv = await embeddings(base, P, "retrieval.passage", dimsA, false);
        checkHeat("pairs", await heat(page, "A"), qv, pv);
        await checkNearest(page, "A", "pairs", qv, pv, false);
        await checkTokens(page, base, "A", "pairs tokens", "Q", Q, "retrieval.query");
        await checkTokens(page, base, "A", "pairs tokens", "P", P, "retrieval.passage");
        const scale = await page.$eval('.run[data-run="A"] .scale-text', (e) => e.textContent);
        check(/−1 blue, 0 white, \+1 red/.test(scale) && /3 decimals/.test(scale), "the colour scale is stated", scale);
        await shot(page, "02-pairs-1280x800");

        // comparison: B = text-matching at the smallest size
        await page.click("#compare");
        await page.select("#taskB", "text-matching");
        const small = Math.min(...dimsAll);
        await page.select("#dimsB", String(small));
        check((await run(page)) === "done", "compare: the run finishes");
        checkHeat("compare A", await heat(page, "A"), qv, pv);
        const qb = await embeddings(base, Q, "text-matching", small, false);
        const pb = await embeddings(base, P, "text-matching", small, false);
        checkHeat("compare B (text-matching, smallest size)", await heat(page, "B"), qb, pb);
        await checkTokens(page, base, "B", "compare tokens", "P", P, "text-matching");
        const sideBySide = await page.evaluate(() => {
            const [a, b] = [...document.querySelectorAll(".run")].map((e) => e.getBoundingClientRect());
            return a && b && Math.abs(a.top - b.top) < 2 && b.left > a.right - 1;
        });
        check(sideBySide, "compare: the two runs are side by side at 1280 px");
        await shot(page, "03-compare-1280x800");
        await page.screenshot({ path: `${SHOTS}/03-compare-1280x800-first-screen.png` });
        // the README's picture (docs/img/playground.png): the top of this state
        await page.screenshot({ path: `${SHOTS}/readme.png`, clip: { x: 0, y: 0, width: 1280, height: 620 } });

        // one list, late chunking, no task, second-smallest size
        await page.click("#compare");
        await page.click('input[name=mode][value="lines"]');
        await page.select("#taskA", "");
        const mid = [...dimsAll].sort((a, b) => a - b)[1];
        await page.select("#dimsA", String(mid));
        await page.click("#late");
        const T = await lines(page, "#texts");
        check((await run(page)) === "done", "lines + late chunking: the run finishes");
        const tv = await embeddings(base, T, null, mid, true);
        const tvPlain = await embeddings(base, T, null, mid, false);
        check(tv.some((v, i) => Math.abs(cos(v, tvPlain[i]) - 1) > 1e-6),
              "late chunking changes the vectors (so the check below can tell it was sent)");
        checkHeat("lines + late chunking", await heat(page, "A"), tv, tv);
        await checkNearest(page, "A", "lines", tv, tv, true);
        await checkTokens(page, base, "A", "lines tokens", "T", T, null);
        await shot(page, "04-lines-late-chunking-1280x800");

        // live panel: the kernels and plots
        const metrics = await (await fetch(base + "/metrics")).text();
        const kernels = /embedserve_build_info\{[^}]*kernels="([^"]*)"/.exec(metrics)[1];
        await sleep(4500); // two more polls after the runs
        const kshown = await page.$eval('#card-dl dd[data-k="CPU kernels"]', (e) => e.textContent).catch(() => null);
        check(kshown === kernels && kernels.length > 0, "live: the card shows the kernels /metrics reports", [kshown, kernels]);
        const tps = await page.$eval('#l-tps [data-series] b', (e) => e.textContent);
        check(/\d/.test(tps), "live: tokens/s has a value", tps);
        const lat = await page.$$eval('#l-lat [data-series] b', (es) => es.map((e) => e.textContent));
        check(lat.length === 3 && lat.every((t) => /\d.*ms$/.test(t)), "live: p50/p90/p99 of the embeddings", lat);
        const drawn = await page.$eval("#c-tps", (c) => {
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 3] && d[i + 2] > 150 && d[i] < 100) n++;
            return n;
        });
        check(drawn > 20, "live: the tokens/s line is drawn", drawn);
        await page.$eval(".live", (e) => e.scrollIntoView());
        await page.screenshot({ path: `${SHOTS}/05-live-1280x800.png` });
        await checkClean("desktop", seen, page);
        await page.close();

        // phone width
        const ph = await openPage(browser, base, 390, 844);
        await ph.page.waitForFunction((id) => document.querySelector("#model-name").textContent.includes(id),
                                      { timeout: 20000 }, cardId);
        check((await run(ph.page)) === "done", "390 px: the run finishes");
        checkHeat("390 px", await heat(ph.page, "A"), qv, pv);
        const wide = await ph.page.evaluate(() => document.documentElement.scrollWidth);
        check(wide <= 390, "390 px: nothing is wider than the screen", wide);
        await sleep(4500);
        await shot(ph.page, "06-pairs-390x844");
        await ph.page.evaluate(() => window.scrollTo(0, 0));
        await ph.page.screenshot({ path: `${SHOTS}/06-pairs-390x844-first-screen.png` });
        await ph.page.$eval(".run", (e) => e.scrollIntoView());
        await ph.page.screenshot({ path: `${SHOTS}/06-pairs-390x844-heatmap.png` });
        await checkClean("phone", ph.seen, ph.page);
        await ph.page.close();
    } finally {
        await stopServer(srv);
    }
}

async function testAuth(browser) {
    const srv = await startServer("auth", ["--api-key", KEY]);
    const { base } = srv;
    try {
        const r = await fetch(base + "/");
        check(r.status === 200, "auth on: / stays open", r.status);
        const { page, seen } = await openPage(browser, base, 1280, 800);
        await page.waitForSelector("#auth:not([hidden])", { timeout: 20000 });
        check(true, "auth on: the key field shows");
        check((await run(page)) === "error", "auth on: a run without the key fails");
        const msg = await page.$eval("#error", (e) => (e.hidden ? "" : e.textContent));
        check(/401/.test(msg) && /API key/.test(msg), "auth on: the failure is shown and names the key", msg);
        await shot(page, "07-auth-no-key-1280x800");
        await page.type("#apikey", KEY);
        await page.click("#keyset");
        await page.waitForFunction(() => /dimensions/.test(document.querySelector("#model-name").textContent),
                                   { timeout: 20000 });
        check((await run(page)) === "done", "auth on: with the key the run works");
        const err = await page.$eval("#error", (e) => e.hidden);
        check(err, "auth on: the error is gone");
        const Q = await lines(page, "#queries"), P = await lines(page, "#passages");
        const dims = Number(await page.$eval("#dimsA", (e) => e.value));
        const qv = await embeddings(base, Q, "retrieval.query", dims, false, KEY);
        const pv = await embeddings(base, P, "retrieval.passage", dims, false, KEY);
        checkHeat("auth on", await heat(page, "A"), qv, pv);
        const leaks = await page.evaluate((k) => ({
            url: location.href.includes(k), local: JSON.stringify({ ...localStorage }).includes(k),
            session: JSON.stringify({ ...sessionStorage }).includes(k), cookie: document.cookie.includes(k) }), KEY);
        check(!leaks.url && !leaks.local && !leaks.session && !leaks.cookie &&
              !seen.requests.some((u) => u.includes(KEY)),
              "auth on: the key is in no URL, storage or cookie", leaks);
        await page.$eval("#apikey", (e) => e.blur());
        await shot(page, "08-auth-key-1280x800");
        // the 401 of the keyless run is a failed fetch that Chromium logs; it is
        // the one console error expected here
        seen.console = seen.console.filter((m) => !/status of 401/.test(m));
        await checkClean("auth", seen, page);
        await page.close();
    } finally {
        await stopServer(srv);
    }
}

async function main() {
    const browser = await puppeteer.launch({
        executablePath: CHROMIUM, headless: true,
        args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--font-render-hinting=none"],
    });
    try {
        for (const t of [testOpen, testAuth]) {
            try {
                await t(browser);
            } catch (e) {
                check(false, `${t.name} threw`, String(e && e.stack || e));
            }
        }
    } finally {
        await browser.close();
    }
    console.log(`screenshots: ${SHOTS}/`);
    console.log(`browser: ${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
}

main();
