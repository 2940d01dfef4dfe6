/* test_tokenizer.c -- the XLM-R id layout, unknown characters, the buffer
 * contract, truncation through emb_plan_build, and encoding from 8 threads.
 * Golden ids come from Python's sentencepiece with the fairseq mapping
 * (tests/reference.py's tokeniser), compared in test_engine; here the layout
 * is checked against the sentencepiece model directly. */
#include "tests/test.h"

#include "pipeline/embed.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

static const char *samples[] = {
    "Hello world",
    "Привет, мир! Как дела?",
    "这是一个测试句子。",
    "日本語のテキストです",
    "مرحبا بالعالم",
    "emoji 🚀🎉 and   runs   of spaces\tand\ttabs",
    "",
    "ꙮ𓀀 rare characters",
    "Ünïcödé çömbïnïng e\xcc\x81",
    "code: for (int i = 0; i < n; i++) { x[i] = 0; }",
};
#define N_SAMPLES ((int)(sizeof(samples) / sizeof(samples[0])))

struct golden {
    int32_t ids[N_SAMPLES][512];
    int32_t n[N_SAMPLES];
};

static void layout_cases(const tok *t) {
    int32_t ids[64];
    CHECK(tok_n_vocab(t) > 4);
    CHECK(!strcmp(tok_piece(t, TOK_BOS), "<s>") && !strcmp(tok_piece(t, TOK_PAD), "<pad>") &&
          !strcmp(tok_piece(t, TOK_EOS), "</s>") && !strcmp(tok_piece(t, TOK_UNK), "<unk>"));
    CHECK(!strcmp(tok_piece(t, tok_n_vocab(t) - 1), "<mask>"));
    CHECK(!strcmp(tok_piece(t, tok_n_vocab(t)), ""));
    /* no special ids inside the encoding; all ids in range */
    int n = tok_encode(t, samples[1], strlen(samples[1]), ids, 64), ok = n > 0;
    for (int i = 0; i < n; i++)
        ok &= ids[i] > TOK_EOS && ids[i] < tok_n_vocab(t) - 1;
    CHECKM(ok, "ids of ordinary text avoid specials and <mask>");
    /* the first piece of a word carries the sentencepiece word marker */
    n = tok_encode(t, "Hello", 5, ids, 64);
    CHECK(n >= 1 && !strncmp(tok_piece(t, ids[0]), "\xe2\x96\x81", 3));
    /* a character outside the model's coverage is <unk> = 3 */
    n = tok_encode(t, "\xea\x99\xae", 3, ids, 64); /* U+A66E, not in the corpus */
    int has_unk = 0;
    for (int i = 0; i < n; i++)
        has_unk |= ids[i] == TOK_UNK;
    CHECKM(has_unk, "U+A66E maps to <unk> (3)");
    /* buffer too small -> -needed; empty -> 0 */
    int full = tok_encode(t, samples[0], strlen(samples[0]), ids, 64);
    CHECK(full > 1 && tok_encode(t, samples[0], strlen(samples[0]), ids, 1) == -full);
    CHECK(tok_encode(t, "", 0, ids, 64) == 0);
    int32_t *a = NULL;
    CHECK(tok_encode_alloc(t, "", 0, &a) == 0 && a == NULL);
    /* embedded NUL and invalid UTF-8 do not break it */
    CHECK(tok_encode(t, "a\0b", 3, ids, 64) >= 1);
    CHECK(tok_encode(t, "\xff\xfe\xc3", 3, ids, 64) >= 0);
}

static void truncation_cases(const tok *t, const struct eng_model *m) {
    struct emb_text x = {samples[0], strlen(samples[0])};
    struct emb_opts o = emb_opts_defaults();
    struct emb_plan p;
    struct emb_error e;
    int32_t body[64];
    int nb = tok_encode(t, x.s, x.len, body, 64);
    o.max_tokens = nb + 2;
    CHECK(emb_plan_build(t, m, &o, &x, 1, &p, &e) == 0 && p.seqs[0].n_ids == nb + 2);
    CHECK(p.seqs[0].ids[0] == TOK_BOS && p.seqs[0].ids[nb + 1] == TOK_EOS);
    emb_plan_deinit(&p);
    o.max_tokens = nb + 1;
    CHECK(emb_plan_build(t, m, &o, &x, 1, &p, &e) == EMB_ETOOLONG && e.index == 0 &&
          e.n_tokens == nb + 2 && e.limit == nb + 1);
    emb_plan_deinit(&p);
    o.truncate = true;
    o.max_tokens = 3;
    CHECK(emb_plan_build(t, m, &o, &x, 1, &p, &e) == 0 && p.seqs[0].n_ids == 3 &&
          p.seqs[0].ids[1] == body[0] && p.seqs[0].ids[2] == TOK_EOS);
    CHECK(p.n_tokens == 3);
    emb_plan_deinit(&p);
}

/* A deterministic long text: sample sentences joined by runs of 1-3 spaces
 * (and now and then a tab or newline), so chunk cuts fall at many kinds of
 * places, plus one long run without spaces. */
static char *long_text(size_t want, size_t *len, unsigned seed) {
    char *s = malloc(want + 1024);
    size_t n = 0;
    while (n < want) {
        seed = seed * 1103515245u + 12345u;
        const char *x = samples[(seed >> 16) % N_SAMPLES];
        size_t k = strlen(x);
        memcpy(s + n, x, k);
        n += k;
        int sp = 1 + (int)((seed >> 8) % 3);
        for (int i = 0; i < sp; i++)
            s[n++] = (seed >> 4) % 7 == 0 && i == 0 ? '\n' : ' ';
        if ((seed >> 12) % 97 == 0) {
            size_t r = 70 * 1024; /* > the 64 KiB chunk: forces a run past it */
            for (size_t i = 0; i < r && n < want + 512; i++)
                s[n++] = "abcxyz"[(i * 7 + seed) % 6];
        }
    }
    s[n] = '\0';
    *len = n;
    return s;
}

static bool ids_equal(const int32_t *a, int32_t na, const int32_t *b, int32_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, sizeof(int32_t) * (size_t)na));
}

/* tok_encode_prefix gives exactly the first max_ids ids of tokenising the
 * whole string, for many random limits (i.e. cut points) and for the
 * unlimited case, over texts long enough to be cut into chunks (more than
 * min_ids ids); and it does not tokenise what the limit cannot use (time:
 * under max_ms, or with max_ms = 0 under a quarter of the whole text's). */
static void prefix_cases(const tok *t, int32_t min_ids, double max_ms) {
    size_t len;
    char *text = long_text(600 * 1024, &len, 7);
    static const char head[] = "Represent the query for retrieving evidence documents: ";
    size_t hl = strlen(head);
    char *joined = malloc(hl + len);
    memcpy(joined, head, hl);
    memcpy(joined + hl, text, len);
    int32_t *all = NULL, *whole = NULL, *got = NULL;
    int32_t n_all = tok_encode_alloc(t, joined, hl + len, &all);
    int32_t n_plain = tok_encode_alloc(t, text, len, &whole);
    CHECKM(n_all > min_ids && n_plain > min_ids, "%d and %d ids", n_all, n_plain);
    bool more = true;
    int32_t n = tok_encode_prefix(t, head, hl, text, len, INT32_MAX, &got, &more);
    CHECKM(!more && ids_equal(got, n, all, n_all), "unlimited: %d ids vs %d whole", n, n_all);
    free(got);
    n = tok_encode_prefix(t, "", 0, text, len, INT32_MAX, &got, &more);
    CHECKM(!more && ids_equal(got, n, whole, n_plain), "no head: %d vs %d", n, n_plain);
    free(got);
    int bad = 0, cases = 0;
    unsigned seed = 99;
    for (int i = 0; i < 60; i++) {
        seed = seed * 1103515245u + 12345u;
        int32_t lim = (int32_t)((seed >> 8) % (uint32_t)(n_all + 10));
        if (i < 4) lim = (int32_t[]){0, 1, n_all - 1, n_all}[i];
        n = tok_encode_prefix(t, head, hl, text, len, lim, &got, &more);
        int32_t want = lim < n_all ? lim : n_all;
        if (!ids_equal(got, n, all, want) || more != (n_all > lim)) {
            bad++;
            fprintf(stderr, "  prefix limit %d: %d ids (more %d), want %d of %d\n", lim, n, more,
                    want, n_all);
        }
        free(got);
        cases++;
    }
    CHECKM(bad == 0, "%d of %d random limits differ from the whole text cut", bad, cases);
    /* a space-free run longer than the long-run threshold, cut inside it */
    size_t rl = 600 * 1024;
    char *run = malloc(rl);
    for (size_t i = 0; i < rl; i++)
        run[i] = "abcdefghij"[(i * i + i / 3) % 10];
    int32_t *rall = NULL;
    int32_t n_run = tok_encode_alloc(t, run, rl, &rall);
    bad = 0;
    int32_t lims[] = {0, 5, 1000, 8190, n_run - 1, n_run, n_run + 5};
    for (int i = 0; i < (int)(sizeof(lims) / sizeof(lims[0])); i++) {
        n = tok_encode_prefix(t, "", 0, run, rl, lims[i], &got, &more);
        int32_t want = lims[i] < n_run ? lims[i] : n_run;
        bad += !ids_equal(got, n, rall, want) || more != (n_run > lims[i]);
        free(got);
    }
    CHECKM(bad == 0, "space-free run: %d limits differ", bad);
    free(rall);
    free(run);
    /* work follows the limit: 8192 ids of a 5 MB text cost about what 8192
     * ids of a short text do, far less than the whole text */
    size_t bl;
    char *big = long_text(5 << 20, &bl, 3);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    n = tok_encode_prefix(t, "", 0, big, bl, 8190, &got, &more);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    fprintf(stderr, "  tok_encode_prefix: 8190 ids of a %zu-byte text in %.1f ms\n", bl, ms);
    if (max_ms > 0) {
        CHECKM(n == 8190 && more && ms < max_ms, "8190 ids of 5 MB: %d ids in %.1f ms", n, ms);
    } else {
        /* relative to the whole text: the sanitizer builds instrument this
         * tokenizer's code (not libsentencepiece), so an absolute bound
         * would measure the instrumentation */
        int32_t *w = NULL;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int32_t nw = tok_encode_alloc(t, big, bl, &w);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double wms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
        fprintf(stderr, "  tok_encode_alloc: the whole text (%d ids) in %.1f ms\n", nw, wms);
        CHECKM(n == 8190 && more && nw > 8190 && ms < wms / 4,
               "8190 ids of 5 MB: %d ids in %.1f ms, the whole text in %.1f ms", n, ms, wms);
        free(w);
    }
    free(got);
    free(big);
    free(all);
    free(whole);
    free(joined);
    free(text);
}

struct thread_arg {
    const tok *t;
    const struct golden *g;
    int mismatches;
};

static void *encode_many(void *varg) {
    struct thread_arg *a = varg;
    int32_t ids[512];
    for (int round = 0; round < 200; round++) {
        int i = round % N_SAMPLES;
        int n = tok_encode(a->t, samples[i], strlen(samples[i]), ids, 512);
        if (n != a->g->n[i] || memcmp(ids, a->g->ids[i], sizeof(int32_t) * (size_t)n))
            a->mismatches++;
    }
    return NULL;
}

static void concurrency_case(const tok *t) {
    static struct golden g;
    for (int i = 0; i < N_SAMPLES; i++)
        g.n[i] = tok_encode(t, samples[i], strlen(samples[i]), g.ids[i], 512);
    pthread_t th[8];
    struct thread_arg args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (struct thread_arg){t, &g, 0};
        pthread_create(&th[i], NULL, encode_many, &args[i]);
    }
    int bad = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        bad += args[i].mismatches;
    }
    CHECKM(bad == 0, "8 threads x 200 encodings: %d differ from single-threaded", bad);
}

/* ---- tokenizer.json (Hugging Face) ------------------------------------ */

/* The committed tokenizer.json fixtures (tests/tokref/gen_tokenizer_json.mjs
 * made them with Hugging Face's tokenizers): the shapes of the v2 models. */
static const char *const hf_kinds[] = {"wordpiece", "wordpiece-cased", "bpe", "bpe-zh"};
#define N_HF_KINDS ((int)(sizeof(hf_kinds) / sizeof(hf_kinds[0])))

static tok *hf_open(const char *kind) {
    char path[256], err[512] = "";
    snprintf(path, sizeof(path), "tests/data/tokenizers/%s.json", kind);
    tok *t = tok_open(path, err, sizeof(err));
    CHECKM(t != NULL, "%s: %s", kind, err);
    return t;
}

/* writes text with the first `from` after `anchor` replaced by `to` into
 * path, then opens it: NULL is expected, with `want` in the reason */
static void hf_refused(const char *text, const char *anchor, const char *from, const char *to,
                       const char *path, const char *want) {
    const char *a = strstr(text, anchor), *f = a ? strstr(a, from) : NULL;
    CHECKM(f != NULL, "fixture has no \"%s\" after \"%s\"", from, anchor);
    if (!f) return;
    FILE *o = fopen(path, "w");
    fwrite(text, 1, (size_t)(f - text), o);
    fputs(to, o);
    fputs(f + strlen(from), o);
    fclose(o);
    char err[512] = "";
    tok *t = tok_open(path, err, sizeof(err));
    CHECKM(t == NULL && strstr(err, want), "%s -> %s: refused with \"%s\" (%s)", from, to, want,
           err);
    tok_close(t);
}

static void hf_refusals(void) {
    char dir[] = "/tmp/tokhf-XXXXXX", path[256], err[512] = "";
    CHECK(mkdtemp(dir) != NULL);
    char *wp = test_read_file("tests/data/tokenizers/wordpiece.json", NULL);
    char *bpe = test_read_file("tests/data/tokenizers/bpe.json", NULL);
    snprintf(path, sizeof(path), "%s/x.json", dir);
    if (wp && bpe) {
        hf_refused(wp, "\"normalizer\"", "\"BertNormalizer\"", "\"NFKC\"", path,
                   "normalizer \"NFKC\" is not supported");
        hf_refused(wp, "\"pre_tokenizer\"", "\"BertPreTokenizer\"", "\"Metaspace\"", path,
                   "pre_tokenizer \"Metaspace\" is not supported");
        hf_refused(wp, "\"model\"", "\"WordPiece\"", "\"Unigram\"", path,
                   "model \"Unigram\" is not supported");
        hf_refused(wp, "\"post_processor\"", "\"TemplateProcessing\"", "\"ByteLevel\"", path,
                   "post_processor \"ByteLevel\" is not supported");
        hf_refused(wp, "\"post_processor\"", "\"Sequence\"", "\"Fake\"", path,
                   "TemplateProcessing is supported only");
        hf_refused(bpe, "\"model\"", "\"dropout\": null", "\"dropout\": 0.1", path, "dropout");
        hf_refused(bpe, "\"model\"", "\"byte_fallback\": false", "\"byte_fallback\": true", path,
                   "byte_fallback");
        hf_refused(bpe, "\"post_processor\"", "{", "null, \"x\": {", path, "no post_processor");
        hf_refused(bpe, "\"merges\"", "]", "", path, "not valid JSON");
    }
    free(wp);
    free(bpe);
    /* a FIFO is refused at once rather than blocking the load */
    snprintf(path, sizeof(path), "%s/fifo.json", dir);
    CHECK(mkfifo(path, 0600) == 0);
    CHECK(tok_open(path, err, sizeof(err)) == NULL && strstr(err, "not a regular file"));
    unlink(path);
    /* a directory with only tokenizer.json opens it; an empty one names both */
    CHECK(tok_open_dir(dir, err, sizeof(err)) == NULL && strstr(err, TOK_MODEL_FILE) &&
          strstr(err, TOK_HF_FILE));
    snprintf(path, sizeof(path), "%s/" TOK_HF_FILE, dir);
    char *src = test_read_file("tests/data/tokenizers/bpe.json", NULL);
    FILE *o = fopen(path, "w");
    if (src && o) fputs(src, o);
    if (o) fclose(o);
    free(src);
    tok *t = tok_open_dir(dir, err, sizeof(err));
    CHECKM(t && tok_bos(t) == 0 && tok_eos(t) == 2, "tok_open_dir with tokenizer.json: %s", err);
    tok_close(t);
    unlink(path);
    snprintf(path, sizeof(path), "%s/x.json", dir);
    unlink(path);
    rmdir(dir);
}

/* the sequence tokens, the vocabulary, the buffer contract, invalid UTF-8 */
static void hf_layout(tok *t, const char *kind) {
    bool wp = !strncmp(kind, "wordpiece", 9);
    CHECK(tok_n_vocab(t) == 4000);
    CHECK(tok_bos(t) == (wp ? 2 : 0) && tok_eos(t) == (wp ? 3 : 2));
    CHECK(!strcmp(tok_piece(t, tok_bos(t)), wp ? "[CLS]" : "<s>") &&
          !strcmp(tok_piece(t, tok_eos(t)), wp ? "[SEP]" : "</s>"));
    CHECK(!strcmp(tok_piece(t, 4000), "") && !strcmp(tok_piece(t, -1), ""));
    int32_t ids[64], ids2[64];
    int full = tok_encode(t, samples[0], strlen(samples[0]), ids, 64);
    CHECK(full > 1 && tok_encode(t, samples[0], strlen(samples[0]), ids, 1) == -full);
    CHECK(tok_encode(t, "", 0, ids, 64) == 0);
    /* each invalid UTF-8 sequence reads as U+FFFD */
    static const char bad[] = "ab\xff cd\xe2\x82 x\xc0\xafy";
    static const char fixed[] = "ab\xef\xbf\xbd cd\xef\xbf\xbd x\xef\xbf\xbd\xef\xbf\xbdy";
    int nb = tok_encode(t, bad, sizeof(bad) - 1, ids, 64);
    int nf = tok_encode(t, fixed, sizeof(fixed) - 1, ids2, 64);
    CHECKM(nb > 0 && ids_equal(ids, nb, ids2, nf), "%s: invalid UTF-8 as U+FFFD", kind);
    /* the post-processor's tokens typed in the text are those tokens */
    const char *special = wp ? "x [SEP] y" : "x </s> y";
    int ns = tok_encode(t, special, strlen(special), ids, 64), found = 0;
    for (int i = 0; i < ns; i++)
        found |= ids[i] == tok_eos(t);
    CHECKM(found, "%s: \"%s\" contains the sequence end token", kind, special);
}

/* every allocation of an encoding failing in turn: TOK_EFAIL or the right
 * ids, never a crash (leaks: the sanitizer build) */
static void hf_oom(const tok *t, const char *kind) {
    static const char text[] = "Ünïcödé e\xcc\x81 Привет, 这是 x </s> [SEP] code: x[i] = 0; 🚀";
    int32_t *want = NULL, *got = NULL;
    int32_t nw = tok_encode_alloc(t, text, sizeof(text) - 1, &want);
    int fails = 0, bad = 0;
    long n = 1;
    for (; n < 100000; n++) {
        unsigned long f0 = mem_failures();
        mem_fail_at(n, 0);
        int32_t ng = tok_encode_alloc(t, text, sizeof(text) - 1, &got);
        mem_fail_at(0, 0);
        bool failed = mem_failures() != f0;
        if (failed) fails++;
        if (failed ? ng != TOK_EFAIL : !ids_equal(got, ng, want, nw)) bad++;
        free(got);
        got = NULL;
        if (!failed) break;
    }
    CHECKM(nw > 0 && fails > 10 && bad == 0, "%s: %d allocation failures, %d wrong results", kind,
           fails, bad);
    free(want);
}

/* random bytes (valid UTF-8 or not, specials, spaces): no crash, ids in
 * range, and any prefix limit gives the first ids of the whole encoding */
static void hf_random(const tok *t, const char *kind) {
    static const char *const parts[] = {" ",        "  ", "a",    "Z",        "9",     "é",
                                        "\xcc\x81", "中", "\xff", "\xe2\x82", "[SEP]", "</s>",
                                        "<mask>",   "\t", "\n",   "\0",       "🚀",     "\xf0\x9f",
                                        "'s",       ".",  "ß",    "İ",        "ﬁ",     "가"};
    unsigned seed = 2024;
    int bad = 0;
    char buf[512];
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = 0;
        seed = seed * 1103515245u + 12345u;
        int k = (int)((seed >> 16) % 40);
        for (int i = 0; i < k; i++) {
            seed = seed * 1103515245u + 12345u;
            const char *p = parts[(seed >> 16) % (sizeof(parts) / sizeof(parts[0]))];
            size_t pl = p[0] ? strlen(p) : 1;
            if ((seed >> 8) % 5 == 0) { /* a raw random byte */
                buf[n++] = (char)(seed >> 3);
                continue;
            }
            memcpy(buf + n, p, pl);
            n += pl;
        }
        int32_t *all = NULL, *pre = NULL;
        bool more;
        int32_t na = tok_encode_alloc(t, buf, n, &all);
        int32_t lim = (int32_t)((seed >> 4) % 12);
        int32_t np = tok_encode_prefix(t, "", 0, buf, n, lim, &pre, &more);
        bool ok = na >= 0 && np == (na < lim ? na : lim) && more == (na > lim) &&
                  (np == 0 || !memcmp(all, pre, sizeof(int32_t) * (size_t)np));
        for (int32_t i = 0; ok && i < na; i++)
            ok = all[i] >= 0 && all[i] < tok_n_vocab(t);
        bad += !ok;
        free(all);
        free(pre);
    }
    CHECKM(bad == 0, "%s: %d of 3000 random inputs misbehave", kind, bad);
}

static void hf_cases(void) {
    hf_refusals();
    for (int k = 0; k < N_HF_KINDS; k++) {
        tok *t = hf_open(hf_kinds[k]);
        if (!t) continue;
        hf_layout(t, hf_kinds[k]);
        hf_oom(t, hf_kinds[k]);
        hf_random(t, hf_kinds[k]);
        if (k == 0 || k == 2) { /* one WordPiece, one byte-level BPE */
            /* WordPiece makes one [UNK] of each 70 KB space-free run */
            prefix_cases(t, 10000, 0);
            concurrency_case(t);
        }
        tok_close(t);
    }
}

void test_tokenizer(void) {
    const char *dir = test_env("TESTMODEL", "build/testmodel");
    char path[4096], err[512] = "";
    CHECK(tok_open("/nonexistent.model", err, sizeof(err)) == NULL &&
          strstr(err, "/nonexistent.model"));
    snprintf(path, sizeof(path), "%s/config.json", dir); /* not a sentencepiece model */
    CHECK(tok_open(path, err, sizeof(err)) == NULL && strstr(err, "sentencepiece"));
    snprintf(path, sizeof(path), "%s/sentencepiece.bpe.model", dir);
    tok *t = tok_open(path, err, sizeof(err));
    CHECKM(t != NULL, "%s", err);
    struct eng_params p = eng_params_defaults();
    struct eng_model *m = eng_model_open(dir, &p, err, sizeof(err));
    CHECKM(m != NULL, "%s", err);
    if (!t || !m) goto out;
    CHECK(tok_n_vocab(t) == eng_model_info(m)->n_vocab);
    layout_cases(t);
    truncation_cases(t, m);
    prefix_cases(t, 50000, 500);
    concurrency_case(t);
out:
    eng_model_close(m);
    tok_close(t);
    hf_cases();
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* One corpus line of reference.mjs: hex UTF-8, a tab, ids. Returns the
 * number of ids (text into *text, malloc'ed) or -1. */
static int parse_ref_line(char *line, char **text, size_t *tlen, int32_t *ids, int max) {
    char *tab = strchr(line, '\t');
    if (!tab) return -1;
    size_t n = (size_t)(tab - line) / 2;
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)(hexval(line[2 * i]) * 16 + hexval(line[2 * i + 1]));
    s[n] = '\0';
    *text = s, *tlen = n;
    int k = 0;
    for (char *p = tab + 1; *p && k < max;) {
        char *e;
        long v = strtol(p, &e, 10);
        if (e == p) break;
        ids[k++] = (int32_t)v;
        p = e;
    }
    return k;
}

/* Every corpus text gives the ids Hugging Face's tokenizers gives (the
 * sequence tokens included): tests/stage_tokref.sh writes the reference ids
 * into TOKREF_DIR with the npm package, then runs this suite. */
void test_tokref(void) {
    const char *dir = test_env("TOKREF_DIR", "build/tokref");
    enum { MAXID = 1 << 16 };
    int32_t *want = malloc(sizeof(int32_t) * MAXID);
    for (int k = 0; k < N_HF_KINDS; k++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s.ids", dir, hf_kinds[k]);
        char *data = test_read_file(path, NULL);
        CHECKM(data != NULL, "%s: missing (made by tests/stage_tokref.sh)", path);
        tok *t = hf_open(hf_kinds[k]);
        if (!data || !t) {
            free(data);
            tok_close(t);
            continue;
        }
        int lines = 0, bad = 0;
        for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
            char *text;
            size_t tlen;
            int nw = parse_ref_line(line, &text, &tlen, want, MAXID);
            if (nw < 0) continue;
            int32_t *got = NULL;
            int32_t n = tok_encode_alloc(t, text, tlen, &got);
            bool same = n >= 0 && n + 2 == nw && want[0] == tok_bos(t) &&
                        want[nw - 1] == tok_eos(t) &&
                        (n == 0 || !memcmp(got, want + 1, sizeof(int32_t) * (size_t)n));
            if (!same && bad++ < 5) {
                fprintf(stderr, "  %s: text \"%.80s\"%s\n    want", hf_kinds[k], text,
                        tlen > 80 ? "..." : "");
                for (int i = 0; i < nw && i < 40; i++)
                    fprintf(stderr, " %d", want[i]);
                fprintf(stderr, "\n    got  %d", tok_bos(t));
                for (int i = 0; i < n && i < 39; i++)
                    fprintf(stderr, " %d", got[i]);
                fprintf(stderr, " %d (%d ids)\n", tok_eos(t), n);
            }
            free(got);
            free(text);
            lines++;
        }
        fprintf(stderr, "  %s: %d of %d corpus texts equal the reference\n", hf_kinds[k],
                lines - bad, lines);
        CHECKM(lines >= 1000 && bad == 0, "%s: %d of %d texts differ from tokenizers", hf_kinds[k],
               bad, lines);
        free(data);
        tok_close(t);
    }
    free(want);
}
