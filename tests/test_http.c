/* test_http.c -- black-box tests of build/embedserve over HTTP (libcurl),
 * on the generated model in $TESTMODEL. Results are compared with the
 * engine's own output, computed in-process through emb_plan_build /
 * emb_plan_run (the code path the offline CLI uses). */
#include "tests/test.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>
#include <curl/curl.h>

#include "pipeline/embed.h"
#include "server/api.h"
#include "server/http.h"
#include "tests/server_proc.h"
#include "util/strbuf.h"

/* ---- the server process ------------------------------------------------ */

struct resp {
    long status;
    char *body;
    size_t len;
    char hdr[4096];
    size_t hlen;
};

static size_t on_data(char *p, size_t sz, size_t n, void *ud) {
    struct resp *r = ud;
    char *b = realloc(r->body, r->len + sz * n + 1);
    if (!b) return 0;
    memcpy(b + r->len, p, sz * n);
    r->body = b;
    r->len += sz * n;
    b[r->len] = '\0';
    return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
    struct resp *r = ud;
    size_t k = sz * n;
    if (r->hlen + k < sizeof(r->hdr)) {
        memcpy(r->hdr + r->hlen, p, k);
        r->hlen += k;
        r->hdr[r->hlen] = '\0';
    }
    return k;
}

/* One request. hdrs is NULL-terminated (may be NULL). Returns the curl code. */
static int http_do(int port, const char *method, const char *path, const char *body, size_t blen,
                   const char *const *hdrs, long timeout_ms, struct resp *r) {
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    struct curl_slist *h = NULL;
    for (int i = 0; hdrs && hdrs[i]; i++)
        h = curl_slist_append(h, hdrs[i]);
    if (body) h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 60000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    int rc = (int)curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

static void resp_free(struct resp *r) {
    free(r->body);
    r->body = NULL;
}

/* This file's servers (several, one after another) append warn-level logs
 * to one file. */
static bool server_start(struct test_srv *s, const char *const *extra) {
    struct test_srv_opts o = {
        .log_level = "warn", .log_name = "test_http_server.log", .log_append = true, .ready_s = 20};
    return test_srv_start(s, &o, extra);
}

/* ---- the reference: the engine in-process ------------------------------- */

struct ref {
    tok *t;
    struct eng_model *m;
    struct eng_ctx *c;
    int n_embd, max_tokens;
};

static bool ref_open(struct ref *R) {
    char err[256];
    const char *model = test_env("TESTMODEL", "build/testmodel");
    struct eng_params p = eng_params_defaults();
    p.max_batch_tokens = 8192;
    p.dtype = ENG_DTYPE_F32; /* the servers below run with --dtype f32 */
    R->t = tok_open_dir(model, err, sizeof(err));
    R->m = R->t ? eng_model_open(model, &p, err, sizeof(err)) : NULL;
    R->c = R->m ? eng_ctx_new(R->m, &p, err, sizeof(err)) : NULL;
    if (!R->c) fprintf(stderr, "reference engine: %s\n", err);
    R->n_embd = R->m ? eng_model_info(R->m)->n_embd : 0;
    R->max_tokens = 8192;
    return R->c != NULL;
}

static void ref_close(struct ref *R) {
    eng_ctx_free(R->c);
    eng_model_close(R->m);
    tok_close(R->t);
}

/* Final embeddings [n][*dims] of texts under o (NULL on error). */
static float *ref_embed(struct ref *R, const char *const *texts, int n, struct emb_opts o,
                        int *dims, int64_t *n_tokens) {
    struct emb_text *tx = calloc((size_t)n, sizeof(*tx));
    for (int i = 0; i < n; i++)
        tx[i] = (struct emb_text){texts[i], strlen(texts[i])};
    struct emb_plan plan;
    struct emb_error e;
    o.max_tokens = R->max_tokens;
    float *pooled = calloc((size_t)n * R->n_embd, sizeof(float));
    float *out = calloc((size_t)n * R->n_embd, sizeof(float));
    int rc = emb_plan_build(R->t, R->m, &o, tx, n, &plan, &e);
    if (!rc) rc = emb_plan_run(R->c, &plan, pooled);
    if (n_tokens) *n_tokens = plan.n_tokens;
    for (int i = 0; !rc && i < n; i++)
        *dims = emb_output(&o, R->n_embd, pooled + (size_t)i * R->n_embd, out + (size_t)i * *dims);
    emb_plan_deinit(&plan);
    free(pooled);
    free(tx);
    if (rc) free(out);
    return rc ? NULL : out;
}

/* ---- helpers ------------------------------------------------------------- */

static cJSON *post(int port, const char *path, const char *body, const char *const *hdrs,
                   long *status) {
    struct resp r;
    http_do(port, "POST", path, body, strlen(body), hdrs, 0, &r);
    *status = r.status;
    cJSON *j = r.body ? cJSON_Parse(r.body) : NULL;
    if (!j) fprintf(stderr, "not JSON (%ld): %.200s\n", r.status, r.body ? r.body : "(none)");
    resp_free(&r);
    return j;
}

static cJSON *embed(int port, const char *body, long *status) {
    return post(port, "/v1/embeddings", body, NULL, status);
}

/* data[i].embedding (float array) of a response, or NULL. */
static const cJSON *emb_at(const cJSON *j, int i) {
    const cJSON *d = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "data"), i);
    return cJSON_GetObjectItem(d, "embedding");
}

/* Max |a - b| between response row i and ref row, or 1e9 on shape error. */
static double row_diff(const cJSON *emb, const float *ref, int dims) {
    if (!ref || !cJSON_IsArray(emb) || cJSON_GetArraySize(emb) != dims) return 1e9;
    double m = 0;
    int k = 0;
    for (const cJSON *c = emb->child; c; c = c->next, k++) {
        double d = fabs((double)(float)c->valuedouble - (double)ref[k]);
        if (d > m) m = d;
    }
    return m;
}

/* Checks every row of a response against ref rows. */
static void check_rows(const cJSON *j, const float *ref, int n, int dims, double tol,
                       const char *what) {
    CHECKM(cJSON_GetArraySize(cJSON_GetObjectItem(j, "data")) == n, "%s: row count", what);
    for (int i = 0; i < n; i++) {
        const cJSON *d = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "data"), i);
        CHECKM(cJSON_GetObjectItem(d, "index") && cJSON_GetObjectItem(d, "index")->valueint == i,
               "%s: index %d", what, i);
        double diff = row_diff(emb_at(j, i), ref ? ref + (size_t)i * dims : NULL, dims);
        CHECKM(ref && diff <= tol, "%s: row %d differs from the engine by %g", what, i, diff);
    }
}

/* The error body shape of docs/api.md. */
static void check_error(const cJSON *j, long status, long want, const char *code,
                        const char *what) {
    CHECKM(status == want, "%s: status %ld, want %ld", what, status, want);
    const cJSON *d = cJSON_GetObjectItem(j, "detail"), *e = cJSON_GetObjectItem(j, "error");
    CHECKM(cJSON_IsString(d) && *d->valuestring, "%s: detail string", what);
    CHECKM(cJSON_IsString(cJSON_GetObjectItem(j, "request_id")), "%s: request_id", what);
    CHECKM(cJSON_IsObject(e) && cJSON_IsString(cJSON_GetObjectItem(e, "message")) &&
               cJSON_IsString(cJSON_GetObjectItem(e, "type")),
           "%s: error object", what);
    const cJSON *c = cJSON_GetObjectItem(j, "code");
    CHECKM(cJSON_IsString(c) && (!code || !strcmp(c->valuestring, code)), "%s: code %s, want %s",
           what, cJSON_IsString(c) ? c->valuestring : "?", code ? code : "any");
    if (want == 422)
        CHECKM(cJSON_GetArraySize(cJSON_GetObjectItem(j, "errors")) > 0, "%s: errors list", what);
}

static const char *const texts3[] = {"The quick brown fox", "", "naïve café 東京 🍣 ∑"};

/* X-Request-Timeout: a deadline that has passed by the time the engine looks
 * at the job gives 504 REQUEST_TIMEOUT; a malformed one 400; a generous one
 * changes nothing. */
static void test_request_timeout(int port) {
    const char *body = "{\"input\":[\"a deadline test\",\"two\"]}";
    long st;
    const char *past[] = {"X-Request-Timeout: 0.000001", NULL};
    cJSON *j = post(port, "/v1/embeddings", body, past, &st);
    check_error(j, st, 504, "REQUEST_TIMEOUT", "X-Request-Timeout 1 us");
    cJSON_Delete(j);
    const char *bad[] = {"X-Request-Timeout: soon", NULL};
    j = post(port, "/v1/embeddings", body, bad, &st);
    check_error(j, st, 400, "INPUT_INVALID", "X-Request-Timeout malformed");
    cJSON_Delete(j);
    const char *ok[] = {"X-Request-Timeout: 30", NULL};
    j = post(port, "/v1/embeddings", body, ok, &st);
    CHECKM(st == 200 && cJSON_GetArraySize(cJSON_GetObjectItem(j, "data")) == 2,
           "X-Request-Timeout 30: status %ld", st);
    cJSON_Delete(j);
}

static void test_basics(int port, struct ref *R) {
    struct resp r;
    const char *gets[] = {"/health", "/live", "/ready", "/v1/models", "/health/"};
    for (int i = 0; i < 5; i++) {
        http_do(port, "GET", gets[i], NULL, 0, NULL, 0, &r);
        CHECKM(r.status == 200, "GET %s -> %ld", gets[i], r.status);
        CHECKM(strstr(r.hdr, "application/json") != NULL, "GET %s content type", gets[i]);
        resp_free(&r);
    }
    http_do(port, "GET", "/v1/models/jina-ai/jina-embeddings-v3", NULL, 0, NULL, 0, &r);
    CHECK(r.status == 200 && strstr(r.body, "\"object\":\"model\""));
    resp_free(&r);
    http_do(port, "GET", "/v1/models/nope", NULL, 0, NULL, 0, &r);
    CHECK(r.status == 404);
    resp_free(&r);

    int dims;
    int64_t ntok;
    struct emb_opts o = emb_opts_defaults();
    float *ref = ref_embed(R, texts3, 3, o, &dims, &ntok);
    long st;
    cJSON *j = embed(port,
                     "{\"model\":\"jina-embeddings-v3\",\"input\":[\"The quick brown fox\","
                     "\"\",\"naïve café 東京 🍣 ∑\"]}",
                     &st);
    CHECK(st == 200);
    check_rows(j, ref, 3, dims, 2e-6, "3 texts");
    const cJSON *u = cJSON_GetObjectItem(j, "usage");
    CHECK(cJSON_GetObjectItem(u, "total_tokens")->valuedouble == (double)ntok);
    CHECK(cJSON_GetObjectItem(u, "prompt_tokens")->valuedouble == (double)ntok);
    CHECK(!strcmp(cJSON_GetObjectItem(j, "object")->valuestring, "list"));
    CHECK(!strcmp(cJSON_GetObjectItem(j, "model")->valuestring, "jina-embeddings-v3"));
    double norm = 0;
    for (const cJSON *c = emb_at(j, 0)->child; c; c = c->next)
        norm += c->valuedouble * c->valuedouble;
    CHECK_NEAR(sqrt(norm), 1.0, 1e-5);
    cJSON_Delete(j);
    /* the same texts as {"text"} objects, mixed, via /embeddings/, model missing */
    j = post(port, "/embeddings/",
             "{\"input\":[{\"text\":\"The quick brown fox\"},\"\","
             "{\"text\":\"naïve café 東京 🍣 ∑\"}]}",
             NULL, &st);
    CHECK(st == 200);
    check_rows(j, ref, 3, dims, 2e-6, "text objects");
    cJSON_Delete(j);
    /* a single string and a single object */
    j = embed(port, "{\"input\":\"The quick brown fox\",\"model\":\"jina-ai/jina-embeddings-v3\"}",
              &st);
    check_rows(j, ref, 1, dims, 2e-6, "single string");
    cJSON_Delete(j);
    j = embed(port, "{\"input\":{\"text\":\"The quick brown fox\"}}", &st);
    check_rows(j, ref, 1, dims, 2e-6, "single object");
    cJSON_Delete(j);
    free(ref);
}

static void test_tasks_dims(int port, struct ref *R) {
    static const struct {
        const char *field;
        const char *task;
    } cases[] = {
        {"\"task\":\"retrieval.query\"", "retrieval.query"},
        {"\"task\":\"query\"", "retrieval.query"},
        {"\"input_type\":\"query\"", "retrieval.query"},
        {"\"task\":\"passage\"", "retrieval.passage"},
        {"\"task\":\"document\"", "retrieval.passage"},
        {"\"prompt_name\":\"document\"", "retrieval.passage"},
        {"\"task\":\"clustering\"", "separation"},
        {"\"task\":\"classification\"", "classification"},
        {"\"task\":\"text-matching\"", "text-matching"},
        {"\"task\":null", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct emb_opts o = emb_opts_defaults();
        o.task = cases[i].task ? eng_task_lookup(R->m, cases[i].task) : ENG_TASK_NONE;
        int dims;
        float *ref = ref_embed(R, texts3, 3, o, &dims, NULL);
        char body[512];
        snprintf(body, sizeof(body),
                 "{%s,\"input\":[\"The quick brown fox\",\"\",\"naïve café 東京 🍣 ∑\"]}",
                 cases[i].field);
        long st;
        cJSON *j = embed(port, body, &st);
        CHECKM(st == 200, "%s -> %ld", cases[i].field, st);
        check_rows(j, ref, 3, dims, 2e-6, cases[i].field);
        cJSON_Delete(j);
        free(ref);
    }
    /* dimensions 1, 7 and full; normalized false; normalize alias */
    static const struct {
        const char *body;
        int dims;
        bool norm;
    } dcases[] = {
        {"{\"input\":[\"The quick brown fox\",\"\",\"naïve café 東京 🍣 ∑\"],\"dimensions\":1}", 1,
         true},
        {"{\"input\":[\"The quick brown fox\",\"\",\"naïve café 東京 🍣 ∑\"],\"dimensions\":7}", 7,
         true},
        {"{\"input\":[\"The quick brown fox\",\"\",\"naïve café 東京 🍣 ∑\"],\"dimensions\":null,"
         "\"normalized\":false}",
         0, false},
        {"{\"input\":[\"The quick brown fox\",\"\",\"naïve café 東京 🍣 ∑\"],\"dimensions\":5,"
         "\"normalize\":false}",
         5, false},
    };
    for (size_t i = 0; i < sizeof(dcases) / sizeof(dcases[0]); i++) {
        struct emb_opts o = emb_opts_defaults();
        o.dimensions = dcases[i].dims;
        o.normalized = dcases[i].norm;
        int dims;
        float *ref = ref_embed(R, texts3, 3, o, &dims, NULL);
        CHECK(dims == (dcases[i].dims ? dcases[i].dims : R->n_embd));
        long st;
        cJSON *j = embed(port, dcases[i].body, &st);
        check_rows(j, ref, 3, dims, 2e-6, dcases[i].body);
        cJSON_Delete(j);
        free(ref);
    }
    char body[256];
    snprintf(body, sizeof(body), "{\"input\":\"x\",\"dimensions\":%d}", R->n_embd);
    long st;
    cJSON *j = embed(port, body, &st);
    CHECK(st == 200 && cJSON_GetArraySize(emb_at(j, 0)) == R->n_embd);
    cJSON_Delete(j);
}

/* Decoded base64 equals the float output; binary/ubinary are the signs. */
static void test_encodings(int port, struct ref *R) {
    (void)R;
    long st;
    cJSON *f = embed(port, "{\"input\":[\"alpha beta\",\"gamma\"],\"dimensions\":13}", &st);
    cJSON *all = embed(port,
                       "{\"input\":[\"alpha beta\",\"gamma\"],\"dimensions\":13,"
                       "\"embedding_type\":[\"float\",\"base64\",\"binary\",\"ubinary\"]}",
                       &st);
    CHECK(st == 200);
    static const char *const single[] = {
        "{\"input\":[\"alpha beta\",\"gamma\"],\"dimensions\":13,\"embedding_type\":\"base64\"}",
        "{\"input\":[\"alpha beta\",\"gamma\"],\"dimensions\":13,\"encoding_type\":\"base64\"}",
        "{\"input\":[\"alpha beta\",\"gamma\"],\"dimensions\":13,\"encoding_format\":\"base64\"}",
        "{\"input\":[\"alpha beta\",\"gamma\"],\"dimensions\":13,\"embedding_type\":null,"
        "\"encoding_format\":\"base64\"}",
    };
    for (int row = 0; row < 2; row++) {
        const cJSON *fl = emb_at(f, row), *obj = emb_at(all, row);
        float want[13];
        int k = 0;
        for (const cJSON *c = fl->child; c && k < 13; c = c->next)
            want[k++] = (float)c->valuedouble;
        CHECK(k == 13);
        const cJSON *b64 = cJSON_GetObjectItem(obj, "base64");
        uint8_t raw[64];
        long n =
            cJSON_IsString(b64) ? b64_decode(b64->valuestring, strlen(b64->valuestring), raw) : -1;
        CHECK(n == 52);
        for (int i = 0; n == 52 && i < 13; i++) {
            uint32_t u = raw[4 * i] | raw[4 * i + 1] << 8 | raw[4 * i + 2] << 16 |
                         (uint32_t)raw[4 * i + 3] << 24;
            float x;
            memcpy(&x, &u, 4);
            CHECKM(x == want[i], "base64 value %d: %.9g vs %.9g", i, x, want[i]);
        }
        const cJSON *ub = cJSON_GetObjectItem(obj, "ubinary"),
                    *bi = cJSON_GetObjectItem(obj, "binary");
        CHECK(cJSON_GetArraySize(ub) == 2 && cJSON_GetArraySize(bi) == 2);
        for (int i = 0; i < 13 && cJSON_GetArraySize(ub) == 2; i++) {
            int ubyte = cJSON_GetArrayItem(ub, i / 8)->valueint;
            int bbyte = cJSON_GetArrayItem(bi, i / 8)->valueint + 128;
            int bit = (ubyte >> (7 - i % 8)) & 1;
            CHECKM(bit == (want[i] > 0), "ubinary bit %d", i);
            CHECKM(((bbyte >> (7 - i % 8)) & 1) == (want[i] > 0), "binary bit %d", i);
        }
        CHECK((cJSON_GetArrayItem(ub, 1)->valueint & 7) == 0); /* zero padding */
        CHECK(row_diff(cJSON_GetObjectItem(obj, "float"), want, 13) == 0);
        for (int s = 0; s < 4; s++) {
            cJSON *j = embed(port, single[s], &st);
            const cJSON *e = emb_at(j, row);
            CHECKM(cJSON_IsString(e) && cJSON_IsString(b64) &&
                       !strcmp(e->valuestring, b64->valuestring),
                   "alias %d gives the same base64", s);
            cJSON_Delete(j);
        }
    }
    cJSON *j =
        embed(port, "{\"input\":\"alpha beta\",\"dimensions\":13,\"encoding_format\":null}", &st);
    CHECK(st == 200 && cJSON_GetArraySize(emb_at(j, 0)) == 13);
    cJSON_Delete(j);
    cJSON_Delete(f);
    cJSON_Delete(all);
}

/* A text of about n_words words. */
static char *words(int n) {
    char *s = malloc((size_t)n * 6 + 1);
    s[0] = '\0';
    size_t k = 0;
    for (int i = 0; i < n; i++)
        k += (size_t)sprintf(s + k, "%s", i % 2 ? "word " : "text ");
    return s;
}

static int n_tokens_of(int port, const char *text) {
    cJSON *in = cJSON_CreateObject();
    cJSON_AddStringToObject(in, "input", text);
    char *body = cJSON_PrintUnformatted(in);
    long st;
    cJSON *j = post(port, "/v1/tokenize", body, NULL, &st);
    const cJSON *d = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "data"), 0);
    int n = st == 200 ? cJSON_GetObjectItem(d, "n_tokens")->valueint : -1;
    CHECK(st == 200 && cJSON_GetArraySize(cJSON_GetObjectItem(d, "tokens")) == n);
    cJSON_Delete(j);
    cJSON_free(body);
    cJSON_Delete(in);
    return n;
}

static char *body_of(const char *const *texts, int n, const char *extra) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "input", cJSON_CreateStringArray(texts, n));
    char *b = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!extra) return b;
    char *w = malloc(strlen(b) + strlen(extra) + 4);
    sprintf(w, "{%s,%s", extra, b + 1);
    cJSON_free(b);
    return w;
}

static void test_long_inputs(int port, struct ref *R) {
    char *big = words(6000); /* well over 8192 tokens */
    int nt = n_tokens_of(port, big);
    CHECKM(nt > 8192, "long text has %d tokens", nt);
    const char *one[] = {big};
    char *b = body_of(one, 1, NULL);
    long st;
    cJSON *j = embed(port, b, &st);
    check_error(j, st, 400, "INPUT_TOKEN_LIMIT_EXCEEDED", "over-long input");
    CHECK(strstr(cJSON_GetObjectItem(j, "detail")->valuestring, "Input 0") != NULL);
    cJSON_Delete(j);
    free(b);
    b = body_of(one, 1, "\"truncate\":true");
    j = embed(port, b, &st);
    CHECK(st == 200 &&
          cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), "total_tokens")->valueint == 8192);
    struct emb_opts o = emb_opts_defaults();
    o.truncate = true;
    int dims;
    float *ref = ref_embed(R, one, 1, o, &dims, NULL);
    check_rows(j, ref, 1, dims, 2e-6, "truncated");
    free(ref);
    cJSON_Delete(j);
    free(b);
    /* late chunking: under the limit equals the engine's late-chunked output */
    const char *chunks[] = {"First chunk about cats.", "Second chunk, dogs.", "Third: birds 鳥."};
    o = emb_opts_defaults();
    o.late_chunking = true;
    o.task = eng_task_lookup(R->m, "retrieval.passage");
    int64_t ntok;
    ref = ref_embed(R, chunks, 3, o, &dims, &ntok);
    b = body_of(chunks, 3, "\"late_chunking\":true,\"task\":\"retrieval.passage\"");
    j = embed(port, b, &st);
    CHECK(st == 200);
    check_rows(j, ref, 3, dims, 2e-6, "late chunking");
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), "total_tokens")->valuedouble ==
          (double)ntok);
    cJSON_Delete(j);
    free(ref);
    free(b);
    /* late chunking with a single input equals the ordinary embedding */
    o.late_chunking = false;
    ref = ref_embed(R, chunks, 1, o, &dims, NULL);
    b = body_of(chunks, 1, "\"late_chunking\":true,\"task\":\"retrieval.passage\"");
    j = embed(port, b, &st);
    check_rows(j, ref, 1, dims, 1e-5, "late chunking, one input");
    cJSON_Delete(j);
    free(ref);
    free(b);
    /* over 8192 joined tokens: 400 even with truncate */
    char *half = words(2500);
    const char *two[] = {half, half};
    b = body_of(two, 2, "\"late_chunking\":true,\"truncate\":true");
    j = embed(port, b, &st);
    check_error(j, st, 400, "INPUT_TOKEN_LIMIT_EXCEEDED", "late chunking over the limit");
    cJSON_Delete(j);
    free(b);
    free(half);
    free(big);
}

static void test_batch_limit(int port, struct ref *R) {
    enum { N = 2048 };
    const char **t = malloc(sizeof(*t) * (N + 1));
    char(*buf)[32] = malloc(32 * (N + 1));
    for (int i = 0; i <= N; i++) {
        snprintf(buf[i], 32, "input number %d%s", i, i % 3 ? " more" : "");
        t[i] = buf[i];
    }
    char *b = body_of(t, N + 1, NULL);
    long st;
    cJSON *j = embed(port, b, &st);
    check_error(j, st, 400, NULL, "2049 inputs");
    CHECK(!strcmp(cJSON_GetObjectItem(j, "detail")->valuestring,
                  "\"input\" length 2049 is larger than the largest allowed size 2048"));
    cJSON_Delete(j);
    free(b);
    b = body_of(t, N, "\"task\":\"separation\"");
    j = embed(port, b, &st);
    CHECK(st == 200);
    struct emb_opts o = emb_opts_defaults();
    o.task = eng_task_lookup(R->m, "separation");
    int dims;
    float *ref = ref_embed(R, t, N, o, &dims, NULL);
    check_rows(j, ref, N, dims, 2e-6, "2048 inputs");
    free(ref);
    cJSON_Delete(j);
    free(b);
    free(buf);
    free(t);
}

static void test_errors(int port) {
    static const struct {
        const char *body;
        long status;
        const char *code;
    } cases[] = {
        {"{\"input\":", 400, "INPUT_INVALID_JSON"},
        {"", 400, "INPUT_INVALID_JSON"},
        {"[1,2]", 422, NULL},
        {"{}", 422, NULL},
        {"{\"input\":[]}", 422, NULL},
        {"{\"input\":null}", 422, NULL},
        {"{\"input\":[\"a\",{\"image\":\"http://x/y.png\"}]}", 422, NULL},
        {"{\"input\":[{\"url\":\"x\"}]}", 422, NULL},
        {"{\"input\":[true]}", 422, NULL},
        {"{\"input\":[[1,2,3]]}", 400, "INPUT_TOKEN_IDS_NOT_SUPPORTED"},
        {"{\"input\":[1,2,3]}", 400, "INPUT_TOKEN_IDS_NOT_SUPPORTED"},
        {"{\"input\":\"a\",\"model\":\"jina-clip-v2\"}", 400, "INPUT_MODEL_NOT_FOUND"},
        {"{\"input\":\"a\",\"model\":5}", 422, NULL},
        {"{\"input\":\"a\",\"task\":\"retrieval\"}", 422, NULL},
        {"{\"input\":\"a\",\"dimensions\":100000}", 422, NULL},
        {"{\"input\":\"a\",\"dimensions\":-1}", 422, NULL},
        {"{\"input\":\"a\",\"dimensions\":2.5}", 422, NULL},
        {"{\"input\":\"a\",\"dimensions\":\"8\"}", 422, NULL},
        {"{\"input\":\"a\",\"normalized\":\"yes\"}", 422, NULL},
        {"{\"input\":\"a\",\"embedding_type\":\"int8\"}", 422, NULL},
        {"{\"input\":\"a\",\"embedding_type\":[]}", 422, NULL},
        {"{\"input\":\"a\",\"late_chunking\":1}", 422, NULL},
        {"{\"input\":\"a\",\"return_multivector\":true}", 422, NULL},
        {"{\"input\":[\"a\",\"\"],\"late_chunking\":true}", 422, NULL},
        {"{\"input\":\"a\\u0000b\"}", 400, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long st;
        cJSON *j = embed(port, cases[i].body, &st);
        check_error(j, st, cases[i].status, cases[i].code, cases[i].body);
        cJSON_Delete(j);
    }
    /* lenient: extra OpenAI/Jina fields are accepted */
    long st;
    cJSON *j = embed(port,
                     "{\"input\":\"a\",\"user\":\"u\",\"return_multivector\":false,"
                     "\"unknown_field\":1,\"encoding_format\":\"float\"}",
                     &st);
    CHECK(st == 200);
    cJSON_Delete(j);
    struct resp r;
    http_do(port, "GET", "/nope", NULL, 0, NULL, 0, &r);
    cJSON *e = cJSON_Parse(r.body);
    check_error(e, r.status, 404, NULL, "unknown route");
    cJSON_Delete(e);
    resp_free(&r);
    http_do(port, "GET", "/v1/embeddings", NULL, 0, NULL, 0, &r);
    e = cJSON_Parse(r.body);
    check_error(e, r.status, 405, NULL, "wrong method");
    CHECK(strstr(r.hdr, "Allow: POST") != NULL);
    cJSON_Delete(e);
    resp_free(&r);
    /* X-Request-Id is echoed, on success and on error */
    const char *hdr[] = {"X-Request-Id: my-id-123", NULL};
    http_do(port, "POST", "/v1/embeddings", "{\"input\":\"a\"}", 13, hdr, 0, &r);
    CHECK(r.status == 200 && strstr(r.hdr, "X-Request-Id: my-id-123"));
    resp_free(&r);
    http_do(port, "POST", "/v1/embeddings", "{", 1, hdr, 0, &r);
    CHECK(r.status == 400 && strstr(r.body, "\"request_id\":\"my-id-123\""));
    resp_free(&r);
    /* auth is off: any Authorization header is fine */
    const char *none[] = {"Authorization: Bearer None", NULL};
    j = post(port, "/v1/embeddings", "{\"input\":\"a\"}", none, &st);
    CHECK(st == 200);
    cJSON_Delete(j);
}

/* ---- concurrency -------------------------------------------------------- */

struct client {
    int port, id;
    char *body;
    cJSON *result;
    long status;
};

static void *client_main(void *arg) {
    struct client *c = arg;
    c->result = embed(c->port, c->body, &c->status);
    return NULL;
}

static char *mixed_body(int id) {
    static const char *const tasks[] = {"", "\"task\":\"retrieval.query\",",
                                        "\"task\":\"retrieval.passage\",",
                                        "\"task\":\"separation\",", "\"task\":\"text-matching\","};
    int n = 1 + id % 7 * 3;
    cJSON *in = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        char t[160];
        snprintf(t, sizeof(t), "client %d input %d %s", id, i,
                 (id + i) % 4 ? "short"
                              : "a somewhat longer text with more words in it to vary sizes");
        cJSON_AddItemToArray(in, cJSON_CreateString(t));
    }
    char *arr = cJSON_PrintUnformatted(in);
    cJSON_Delete(in);
    char *b = malloc(strlen(arr) + 128);
    /* full size (dimensions omitted) or Matryoshka-cut to 16 */
    sprintf(b, "{%s%s\"input\":%s}", tasks[id % 5], id % 3 ? "" : "\"dimensions\":16,", arr);
    cJSON_free(arr);
    return b;
}

static void test_concurrency(int port) {
    enum { N = 32 };
    struct client cl[N];
    for (int i = 0; i < N; i++)
        cl[i] = (struct client){port, i, mixed_body(i), NULL, 0};
    cJSON *seq[N];
    for (int i = 0; i < N; i++) {
        long st;
        seq[i] = embed(port, cl[i].body, &st);
        CHECK(st == 200);
    }
    double multi0 = test_srv_metric(port, "embedserve_multi_request_batches_total");
    for (int round = 0; round < 3; round++) {
        pthread_t th[N];
        for (int i = 0; i < N; i++)
            pthread_create(&th[i], NULL, client_main, &cl[i]);
        for (int i = 0; i < N; i++)
            pthread_join(th[i], NULL);
        for (int i = 0; i < N; i++) {
            CHECK(cl[i].status == 200);
            const cJSON *a = cJSON_GetObjectItem(cl[i].result, "data");
            const cJSON *b = cJSON_GetObjectItem(seq[i], "data");
            int n = cJSON_GetArraySize(b);
            CHECKM(cJSON_GetArraySize(a) == n, "client %d rows", i);
            double worst = 0;
            for (int k = 0; k < n; k++) {
                const cJSON *ea = cJSON_GetObjectItem(cJSON_GetArrayItem(a, k), "embedding");
                const cJSON *eb = cJSON_GetObjectItem(cJSON_GetArrayItem(b, k), "embedding");
                if (cJSON_GetArraySize(ea) != cJSON_GetArraySize(eb)) worst = 1e9;
                for (const cJSON *x = ea ? ea->child : NULL, *y = eb ? eb->child : NULL; x && y;
                     x = x->next, y = y->next)
                    worst = fmax(worst, fabs(x->valuedouble - y->valuedouble));
            }
            CHECKM(worst < 2e-6, "client %d: concurrent rows differ from sequential by %g", i,
                   worst);
            cJSON_Delete(cl[i].result);
        }
    }
    double multi = test_srv_metric(port, "embedserve_multi_request_batches_total");
    CHECKM(multi > multi0, "no forward pass held more than one request (%g -> %g)", multi0, multi);
    CHECK(test_srv_metric(port, "embedserve_batches_total") > 0);
    struct resp r;
    http_do(port, "GET", "/metrics", NULL, 0, NULL, 0, &r);
    CHECK(r.body &&
          strstr(r.body, "embedserve_requests_total{route=\"/v1/embeddings\",status=\"200\"}"));
    CHECK(r.body && strstr(r.body, "embedserve_inference_duration_seconds_bucket"));
    CHECK(r.body && strstr(r.body, "embedserve_model_info{"));
    resp_free(&r);
    for (int i = 0; i < N; i++) {
        cJSON_Delete(seq[i]);
        free(cl[i].body);
    }
}

/* A client that gives up while its request is queued: server stays healthy. */
static void test_disconnect(int port) {
    enum { N = 2048 };
    const char **t = malloc(sizeof(*t) * N);
    char *w = words(60);
    for (int i = 0; i < N; i++)
        t[i] = w;
    char *b = body_of(t, N, NULL);
    for (int i = 0; i < 4; i++) {
        struct resp r;
        int rc = http_do(port, "POST", "/v1/embeddings", b, strlen(b), NULL, 30 + 20 * i, &r);
        (void)rc;
        resp_free(&r);
    }
    long st;
    cJSON *j = embed(port, "{\"input\":\"still alive?\"}", &st);
    CHECK(st == 200);
    cJSON_Delete(j);
    free(b);
    free(w);
    free(t);
}

/* ---- servers with other settings --------------------------------------- */

static void test_auth_strict_limits(void) {
    struct test_srv s;
    const char *args[] = {"--api-key", "k1,k2",
                          "--strict",  "--max-body-bytes",
                          "4096",      "--served-model-name",
                          "mine",      "--served-model-name",
                          "other",     NULL};
    CHECK(server_start(&s, args));
    long st;
    cJSON *j = embed(s.port, "{\"input\":\"a\"}", &st);
    check_error(j, st, 401, "AUTH_MISSING_API_KEY", "no key");
    cJSON_Delete(j);
    const char *bad[] = {"Authorization: Bearer k3", NULL},
               *good[] = {"Authorization: Bearer k2", NULL};
    j = post(s.port, "/v1/embeddings", "{\"input\":\"a\"}", bad, &st);
    check_error(j, st, 401, "AUTH_INVALID_API_KEY", "wrong key");
    cJSON_Delete(j);
    j = post(s.port, "/v1/embeddings", "{\"input\":\"a\",\"model\":\"other\"}", good, &st);
    CHECK(st == 200 && !strcmp(cJSON_GetObjectItem(j, "model")->valuestring, "mine"));
    cJSON_Delete(j);
    j = post(s.port, "/v1/embeddings", "{\"input\":\"a\",\"model\":\"jina-embeddings-v3\"}", good,
             &st);
    check_error(j, st, 400, "INPUT_MODEL_NOT_FOUND", "model not served");
    cJSON_Delete(j);
    j = post(s.port, "/v1/embeddings", "{\"input\":\"a\",\"bogus\":1}", good, &st);
    check_error(j, st, 422, NULL, "strict: unknown field");
    cJSON_Delete(j);
    j = post(s.port, "/v1/embeddings",
             "{\"input\":\"a\",\"encoding_format\":\"float\",\"user\":\"x\"}", good, &st);
    CHECK(st == 200);
    cJSON_Delete(j);
    struct resp r;
    http_do(s.port, "GET", "/health", NULL, 0, NULL, 0, &r);
    CHECK(r.status == 200); /* health needs no key */
    resp_free(&r);
    http_do(s.port, "GET", "/", NULL, 0, NULL, 0, &r);
    CHECK(r.status == 200 && r.len > 0); /* nor does the page */
    resp_free(&r);
    http_do(s.port, "GET", "/ui/app.js", NULL, 0, NULL, 0, &r);
    CHECK(r.status == 200 && r.len > 0);
    resp_free(&r);
    char *big = words(1200);
    const char *one[] = {big};
    char *b = body_of(one, 1, NULL);
    http_do(s.port, "POST", "/v1/embeddings", b, strlen(b), good, 0, &r);
    cJSON *e = cJSON_Parse(r.body ? r.body : "");
    check_error(e, r.status, 413, NULL, "body over the limit");
    cJSON_Delete(e);
    resp_free(&r);
    free(b);
    free(big);
    CHECK(test_srv_stop(&s) == 0);
}

/* ---- other APIs on the same port (TEI, Ollama), task-carrying names ---- */

/* Max |a - b| between a JSON float array and ref (1e9 on shape error). */
static double arr_diff(const cJSON *a, const float *ref, int dims) {
    return row_diff(a, ref, dims);
}

/* The vectors of /v1/embeddings for texts3 under `extra` (a JSON member). */
static cJSON *v1_rows(int port, const char *extra) {
    char body[512];
    snprintf(body, sizeof(body),
             "{%s\"input\":[\"The quick brown fox\",\"\",\"naïve café 東京 🍣 ∑\"]}", extra);
    long st;
    cJSON *j = embed(port, body, &st);
    CHECKM(st == 200, "/v1/embeddings %s -> %ld", extra, st);
    return j;
}

/* Row i of a /v1/embeddings answer vs a bare array. */
static double v1_vs(const cJSON *v1, int i, const cJSON *arr) {
    const cJSON *e = emb_at(v1, i);
    int n = cJSON_GetArraySize(e);
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n || n == 0) return 1e9;
    double m = 0;
    const cJSON *b = arr->child;
    for (const cJSON *a = e->child; a && b; a = a->next, b = b->next)
        m = fmax(m, fabs(a->valuedouble - b->valuedouble));
    return m;
}

static void test_model_task_names(int port, struct ref *R) {
    /* "<name>:<task>" (aliases too) selects the task when the request names
     * none; task and input_type still win over it */
    static const struct {
        const char *extra, *task;
    } cases[] = {
        {"\"model\":\"jina-embeddings-v3:retrieval.query\",", "retrieval.query"},
        {"\"model\":\"jina-embeddings-v3:query\",", "retrieval.query"},
        {"\"model\":\"jina-ai/jina-embeddings-v3:document\",", "retrieval.passage"},
        {"\"model\":\"jina-embeddings-v3:clustering\",", "separation"},
        {"\"model\":\"jina-embeddings-v3:query\",\"task\":\"classification\",", "classification"},
        {"\"model\":\"jina-embeddings-v3:query\",\"input_type\":\"search_document\",",
         "retrieval.passage"},
        {"\"input_type\":\"search_query\",", "retrieval.query"},
        {"\"input_type\":\"classification\",", "classification"},
        {"\"input_type\":\"clustering\",", "separation"},
        {"\"input_type\":\"passage\",\"prompt_name\":\"query\",", "retrieval.passage"},
        {"\"model\":\"jina-embeddings-v3:latest\",", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct emb_opts o = emb_opts_defaults();
        o.task = cases[i].task ? eng_task_lookup(R->m, cases[i].task) : ENG_TASK_NONE;
        int dims;
        float *ref = ref_embed(R, texts3, 3, o, &dims, NULL);
        cJSON *j = v1_rows(port, cases[i].extra);
        check_rows(j, ref, 3, dims, 2e-6, cases[i].extra);
        cJSON_Delete(j);
        free(ref);
    }
    long st;
    cJSON *j = embed(port, "{\"input\":\"a\",\"model\":\"jina-embeddings-v3:nosuchtask\"}", &st);
    check_error(j, st, 400, "INPUT_MODEL_NOT_FOUND", "unknown task in the model name");
    cJSON_Delete(j);
    j = embed(port, "{\"input\":\"a\",\"input_type\":\"image\"}", &st);
    check_error(j, st, 422, NULL, "unknown input_type");
    cJSON_Delete(j);
    j = embed(port, "{\"input\":\"a\",\"prompt_name\":\"nope\"}", &st);
    check_error(j, st, 422, NULL, "unknown prompt_name");
    cJSON_Delete(j);
    /* /v1/models lists one entry per task; /v1/models/<id> answers them */
    struct resp r;
    http_do(port, "GET", "/v1/models", NULL, 0, NULL, 0, &r);
    j = cJSON_Parse(r.body ? r.body : "");
    const struct eng_info *in = eng_model_info(R->m);
    const cJSON *data = cJSON_GetObjectItem(j, "data");
    CHECKM(cJSON_GetArraySize(data) == 1 + in->n_tasks, "/v1/models lists %d entries",
           cJSON_GetArraySize(data));
    for (int t = 0; t < in->n_tasks; t++) {
        char id[128];
        snprintf(id, sizeof(id), "jina-embeddings-v3:%s", in->task_name[t]);
        const cJSON *m = cJSON_GetArrayItem(data, 1 + t);
        CHECKM(m && !strcmp(cJSON_GetObjectItem(m, "id")->valuestring, id) &&
                   !strcmp(cJSON_GetObjectItem(m, "task")->valuestring, in->task_name[t]),
               "/v1/models entry %s", id);
    }
    cJSON_Delete(j);
    resp_free(&r);
    http_do(port, "GET", "/v1/models/jina-embeddings-v3:passage", NULL, 0, NULL, 0, &r);
    j = cJSON_Parse(r.body ? r.body : "");
    CHECK(
        r.status == 200 && j &&
        !strcmp(cJSON_GetObjectItem(j, "id")->valuestring, "jina-embeddings-v3:retrieval.passage"));
    cJSON_Delete(j);
    resp_free(&r);
    http_do(port, "GET", "/v1/models/jina-embeddings-v3:bogus", NULL, 0, NULL, 0, &r);
    CHECK(r.status == 404);
    resp_free(&r);
}

/* TEI's shapes, and its vectors equal /v1/embeddings' for the same input
 * and task. */
static void test_tei(int port, struct ref *R) {
    long st;
    cJSON *v1 = v1_rows(port, "\"task\":\"retrieval.query\",\"dimensions\":64,");
    cJSON *j = post(port, "/embed",
                    "{\"inputs\":[\"The quick brown fox\",\"\",\"naïve café 東京 🍣 ∑\"],"
                    "\"prompt_name\":\"retrieval.query\",\"dimensions\":64,\"normalize\":true,"
                    "\"truncate\":false,\"truncation_direction\":\"Right\"}",
                    NULL, &st);
    CHECKM(st == 200 && cJSON_IsArray(j) && cJSON_GetArraySize(j) == 3, "/embed -> %ld", st);
    for (int i = 0; i < 3; i++)
        CHECKM(v1_vs(v1, i, cJSON_GetArrayItem(j, i)) <= 2e-6, "/embed row %d equals /v1", i);
    cJSON_Delete(j);
    /* TEI answers embeddings at its root too (huggingface_hub's InferenceClient posts there) */
    j = post(port, "/",
             "{\"inputs\":\"The quick brown fox\",\"prompt_name\":\"query\","
             "\"dimensions\":64}",
             NULL, &st);
    CHECKM(st == 200 && v1_vs(v1, 0, cJSON_GetArrayItem(j, 0)) <= 2e-6, "POST / -> %ld", st);
    cJSON_Delete(j);
    cJSON_Delete(v1);
    /* a single string, no task, not normalised: the engine's numbers */
    struct emb_opts o = emb_opts_defaults();
    o.normalized = false;
    int dims;
    float *ref = ref_embed(R, texts3, 1, o, &dims, NULL);
    j = post(port, "/embed", "{\"inputs\":\"The quick brown fox\",\"normalize\":false}", NULL, &st);
    CHECKM(st == 200 && cJSON_GetArraySize(j) == 1 &&
               arr_diff(cJSON_GetArrayItem(j, 0), ref, dims) <= 2e-6,
           "/embed single string");
    cJSON_Delete(j);
    free(ref);
    /* errors: {"error","error_type"} with TEI's statuses */
    static const struct {
        const char *body;
        long status;
    } bad[] = {
        {"{\"inputs\":\"a\",\"truncation_direction\":\"Left\"}", 422},
        {"{\"inputs\":\"a\",\"truncation_direction\":\"up\"}", 422},
        {"{\"inputs\":\"a\",\"dimensions\":\"x\"}", 422},
        {"{}", 422},
        {"{\"inputs\":", 422},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = post(port, "/embed", bad[i].body, NULL, &st);
        const cJSON *e = cJSON_GetObjectItem(j, "error"), *t = cJSON_GetObjectItem(j, "error_type");
        CHECKM(st == bad[i].status && cJSON_IsString(e) && *e->valuestring && cJSON_IsString(t) &&
                   !strcmp(t->valuestring, "validation") && !cJSON_GetObjectItem(j, "detail"),
               "/embed %s -> %ld", bad[i].body, st);
        if (i == 0) CHECK(strstr(e->valuestring, "not supported") != NULL);
        cJSON_Delete(j);
    }
    char *big = words(6000);
    cJSON *o2 = cJSON_CreateObject();
    cJSON_AddStringToObject(o2, "inputs", big);
    char *b = cJSON_PrintUnformatted(o2);
    j = post(port, "/embed", b, NULL, &st);
    CHECKM(st == 413 && !strcmp(cJSON_GetObjectItem(j, "error_type")->valuestring, "validation"),
           "/embed over the token limit -> %ld", st);
    cJSON_Delete(j);
    cJSON_AddBoolToObject(o2, "truncate", true);
    cJSON_free(b);
    b = cJSON_PrintUnformatted(o2);
    j = post(port, "/embed", b, NULL, &st);
    CHECKM(st == 200 && cJSON_GetArraySize(j) == 1, "/embed truncate:true -> %ld", st);
    cJSON_Delete(j);
    cJSON_free(b);
    cJSON_Delete(o2);
    free(big);
    /* /tokenize: per input a list of {id, text, special, start, stop} */
    j = post(port, "/tokenize", "{\"inputs\":[\"hello world\",\"a\"]}", NULL, &st);
    CHECKM(st == 200 && cJSON_GetArraySize(j) == 2, "/tokenize -> %ld", st);
    const cJSON *t0 = cJSON_GetArrayItem(j, 0);
    int n0 = cJSON_GetArraySize(t0);
    CHECK(n0 >= 3 && cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(t0, 0), "special")) &&
          cJSON_GetObjectItem(cJSON_GetArrayItem(t0, 0), "id")->valueint == tok_bos(R->t) &&
          cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(t0, n0 - 1), "special")) &&
          cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetArrayItem(t0, 1), "special")) &&
          cJSON_IsString(cJSON_GetObjectItem(cJSON_GetArrayItem(t0, 1), "text")) &&
          cJSON_GetObjectItem(cJSON_GetArrayItem(t0, 1), "start") &&
          cJSON_GetObjectItem(cJSON_GetArrayItem(t0, 1), "stop"));
    cJSON_Delete(j);
    j = post(port, "/tokenize", "{\"inputs\":\"hello world\",\"add_special_tokens\":false}", NULL,
             &st);
    CHECKM(st == 200 && cJSON_GetArraySize(cJSON_GetArrayItem(j, 0)) == n0 - 2,
           "/tokenize without special tokens");
    cJSON_Delete(j);
    struct resp r;
    http_do(port, "GET", "/info", NULL, 0, NULL, 0, &r);
    j = cJSON_Parse(r.body ? r.body : "");
    CHECK(r.status == 200 && cJSON_IsString(cJSON_GetObjectItem(j, "model_id")) &&
          cJSON_GetObjectItem(j, "max_input_length")->valueint == 8192 &&
          cJSON_GetObjectItem(j, "max_client_batch_size")->valueint == 2048 &&
          cJSON_IsFalse(cJSON_GetObjectItem(j, "auto_truncate")) &&
          cJSON_IsString(cJSON_GetObjectItem(j, "version")));
    cJSON_Delete(j);
    resp_free(&r);
}

static void test_ollama(int port, struct ref *R) {
    long st;
    (void)R;
    /* the task comes from the model name: equal to /v1 with that task */
    cJSON *v1 = v1_rows(port, "\"task\":\"retrieval.passage\",");
    cJSON *j = post(port, "/api/embed",
                    "{\"model\":\"jina-embeddings-v3:retrieval.passage\",\"input\":[\"The quick "
                    "brown fox\",\"\",\"naïve café 東京 🍣 ∑\"],\"keep_alive\":\"5m\","
                    "\"options\":{\"num_ctx\":8192}}",
                    NULL, &st);
    const cJSON *emb = cJSON_GetObjectItem(j, "embeddings");
    CHECKM(st == 200 && cJSON_GetArraySize(emb) == 3, "/api/embed -> %ld", st);
    for (int i = 0; i < 3; i++)
        CHECKM(v1_vs(v1, i, cJSON_GetArrayItem(emb, i)) <= 2e-6, "/api/embed row %d equals /v1", i);
    CHECK(!strcmp(cJSON_GetObjectItem(j, "model")->valuestring,
                  "jina-embeddings-v3:retrieval.passage") &&
          cJSON_GetObjectItem(j, "total_duration")->valuedouble > 0 &&
          cJSON_IsNumber(cJSON_GetObjectItem(j, "load_duration")) &&
          cJSON_GetObjectItem(j, "prompt_eval_count")->valueint > 0);
    cJSON_Delete(j);
    /* legacy /api/embeddings: {embedding} */
    j = post(port, "/api/embeddings",
             "{\"model\":\"jina-embeddings-v3:document\",\"prompt\":\"The quick brown fox\"}", NULL,
             &st);
    CHECKM(st == 200 && v1_vs(v1, 0, cJSON_GetObjectItem(j, "embedding")) <= 2e-6,
           "/api/embeddings equals /v1 (%ld)", st);
    cJSON_Delete(j);
    cJSON_Delete(v1);
    j = post(port, "/api/embed",
             "{\"model\":\"jina-embeddings-v3\",\"input\":\"a\",\"dimensions\":8}", NULL, &st);
    CHECK(st == 200 &&
          cJSON_GetArraySize(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "embeddings"), 0)) == 8);
    cJSON_Delete(j);
    j = post(port, "/api/embed", "{\"model\":\"jina-embeddings-v3\",\"input\":[]}", NULL, &st);
    CHECK(st == 200 && cJSON_GetArraySize(cJSON_GetObjectItem(j, "embeddings")) == 0);
    cJSON_Delete(j);
    j = post(port, "/api/embeddings", "{\"model\":\"jina-embeddings-v3\",\"prompt\":\"\"}", NULL,
             &st);
    CHECK(st == 200 && cJSON_GetArraySize(cJSON_GetObjectItem(j, "embedding")) == 0);
    cJSON_Delete(j);
    /* errors: {"error"} with Ollama's statuses */
    static const struct {
        const char *path, *body;
        long status;
    } bad[] = {
        {"/api/embed", "{\"input\":\"a\"}", 400},
        {"/api/embed", "{\"model\":\"llama3\",\"input\":\"a\"}", 404},
        {"/api/embed", "{\"model\":\"jina-embeddings-v3\",\"input\":[1,2]}", 400},
        {"/api/embed", "{\"model\":\"jina-embeddings-v3\",\"input\":\"a\",\"truncate\":1}", 400},
        {"/api/embed", "not json", 400},
        {"/api/embeddings", "{\"model\":\"jina-embeddings-v3\",\"prompt\":[\"a\"]}", 400},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = post(port, bad[i].path, bad[i].body, NULL, &st);
        const cJSON *e = cJSON_GetObjectItem(j, "error");
        CHECKM(st == bad[i].status && cJSON_IsString(e) && *e->valuestring &&
                   cJSON_GetArraySize(j) == 1,
               "%s %s -> %ld", bad[i].path, bad[i].body, st);
        cJSON_Delete(j);
    }
    /* truncate defaults to true here; false fails an over-long input */
    char *big = words(6000);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", "jina-embeddings-v3");
    cJSON_AddStringToObject(o, "input", big);
    char *b = cJSON_PrintUnformatted(o);
    j = post(port, "/api/embed", b, NULL, &st);
    CHECKM(st == 200 && cJSON_GetObjectItem(j, "prompt_eval_count")->valueint == 8192,
           "/api/embed truncates by default (%ld)", st);
    cJSON_Delete(j);
    cJSON_free(b);
    cJSON_AddBoolToObject(o, "truncate", false);
    b = cJSON_PrintUnformatted(o);
    j = post(port, "/api/embed", b, NULL, &st);
    CHECKM(st == 400 && cJSON_IsString(cJSON_GetObjectItem(j, "error")),
           "/api/embed truncate:false over the limit -> %ld", st);
    cJSON_Delete(j);
    cJSON_free(b);
    cJSON_Delete(o);
    free(big);
    struct resp r;
    http_do(port, "GET", "/api/tags", NULL, 0, NULL, 0, &r);
    j = cJSON_Parse(r.body ? r.body : "");
    const cJSON *models = cJSON_GetObjectItem(j, "models");
    CHECK(r.status == 200 && cJSON_GetArraySize(models) >= 2 &&
          !strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(models, 0), "name")->valuestring,
                  "jina-embeddings-v3:latest"));
    cJSON_Delete(j);
    resp_free(&r);
    http_do(port, "GET", "/api/version", NULL, 0, NULL, 0, &r);
    j = cJSON_Parse(r.body ? r.body : "");
    CHECK(r.status == 200 && cJSON_IsString(cJSON_GetObjectItem(j, "version")));
    cJSON_Delete(j);
    resp_free(&r);
}

/* /openapi.json against the tables the code runs on: every route of the
 * route table is in the document and nothing else is, every request field
 * the parser accepts is in the schema of each kind that accepts it, and
 * every property of a request schema is a field the parser accepts. */
static void test_openapi(int port) {
    struct resp r;
    http_do(port, "GET", "/openapi.json", NULL, 0, NULL, 0, &r);
    cJSON *j = cJSON_Parse(r.body ? r.body : "");
    CHECKM(r.status == 200 && j && !strcmp(cJSON_GetObjectItem(j, "openapi")->valuestring, "3.1.0"),
           "/openapi.json -> %ld", r.status);
    resp_free(&r);
    if (!j) return;
    struct api_route_doc docs[64];
    int n = http_route_docs(docs, 64);
    CHECK(n > 0 && n <= 64);
    const cJSON *paths = cJSON_GetObjectItem(j, "paths");
    int n_ops = 0;
    for (const cJSON *p = paths ? paths->child : NULL; p; p = p->next)
        n_ops += cJSON_GetArraySize(p);
    CHECKM(n_ops == n, "the document has %d operations, the route table %d", n_ops, n);
    const cJSON *schemas = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "components"), "schemas");
    for (int i = 0; i < n && i < 64; i++) {
        char name[128];
        size_t pl = strlen(docs[i].path);
        snprintf(name, sizeof(name), "%s%s", docs[i].path,
                 pl > 1 && docs[i].path[pl - 1] == '/' ? "{id}" : "");
        const cJSON *op = cJSON_GetObjectItem(cJSON_GetObjectItem(paths, name),
                                              !strcmp(docs[i].method, "GET") ? "get" : "post");
        CHECKM(op != NULL, "route %s %s is in the document", docs[i].method, name);
        if (!op) continue;
        CHECKM(cJSON_GetObjectItem(cJSON_GetObjectItem(op, "responses"), "200") != NULL,
               "%s: 200 documented", name);
        if (docs[i].auth)
            CHECKM(cJSON_GetObjectItem(cJSON_GetObjectItem(op, "responses"), "401") != NULL,
                   "%s: 401 documented", name);
        if (docs[i].kind < 0) continue;
        const cJSON *ref = cJSON_GetObjectItem(
            cJSON_GetObjectItem(
                cJSON_GetObjectItem(
                    cJSON_GetObjectItem(cJSON_GetObjectItem(op, "requestBody"), "content"),
                    "application/json"),
                "schema"),
            "$ref");
        CHECKM(cJSON_IsString(ref), "%s: request schema", name);
        if (!cJSON_IsString(ref)) continue;
        const char *sname = strrchr(ref->valuestring, '/') + 1;
        const cJSON *props = cJSON_GetObjectItem(cJSON_GetObjectItem(schemas, sname), "properties");
        int want = 0;
        for (int f = 0; f < api_n_fields; f++) {
            if (!(api_field_doc(f)->kinds & API_KB(docs[i].kind))) continue;
            want++;
            CHECKM(cJSON_GetObjectItem(props, api_field_doc(f)->name) != NULL, "%s: field %s", name,
                   api_field_doc(f)->name);
        }
        CHECKM(cJSON_GetArraySize(props) == want, "%s: %d properties, the parser accepts %d", name,
               cJSON_GetArraySize(props), want);
    }
    cJSON_Delete(j);
}

/* ---- the page at `/` ------------------------------------------------------ */

/* GET path answers 200 with exactly the bytes of file (under web/), the
 * content type ctype and the page's headers. */
static void check_asset(int port, const char *path, const char *file, const char *ctype) {
    struct resp r;
    http_do(port, "GET", path, NULL, 0, NULL, 0, &r);
    size_t n = 0;
    char *want = test_read_file(file, &n);
    char ct[160];
    snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
    CHECKM(r.status == 200 && want && r.len == n && !memcmp(r.body, want, n),
           "GET %s: the bytes of %s (%ld, %zu bytes)", path, file, r.status, r.len);
    CHECKM(strstr(r.hdr, ct) && strstr(r.hdr, "ETag: \"") &&
               strstr(r.hdr, "Cache-Control: no-cache") &&
               strstr(r.hdr, "X-Content-Type-Options: nosniff") &&
               strstr(r.hdr, "Content-Security-Policy: default-src 'none'; script-src 'self'; "
                             "style-src 'self'; connect-src 'self';") &&
               !strstr(r.hdr, "unsafe-"),
           "GET %s: headers %s", path, r.hdr);
    free(want);
    resp_free(&r);
}

/* The page and its files are served as built from web/; conditional GET,
 * HEAD; the API at the same paths is untouched; not in the OpenAPI
 * document (it describes the API). */
static void test_ui(int port) {
    check_asset(port, "/", "web/index.html", "text/html; charset=utf-8");
    check_asset(port, "/ui/app.js", "web/app.js", "text/javascript; charset=utf-8");
    check_asset(port, "/ui/style.css", "web/style.css", "text/css; charset=utf-8");
    check_asset(port, "/ui/icon.svg", "web/icon.svg", "image/svg+xml");
    struct resp r;
    http_do(port, "GET", "/", NULL, 0, NULL, 0, &r);
    char etag[64] = "", inm[96];
    const char *e = strstr(r.hdr, "ETag: ");
    if (e) sscanf(e + 6, "%63[^\r\n]", etag);
    resp_free(&r);
    snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
    const char *h[] = {inm, NULL};
    http_do(port, "GET", "/", NULL, 0, h, 0, &r);
    CHECKM(*etag && r.status == 304 && r.len == 0, "If-None-Match %s -> %ld", etag, r.status);
    resp_free(&r);
    const char *stale[] = {"If-None-Match: \"0000000000000000\"", NULL};
    http_do(port, "GET", "/", NULL, 0, stale, 0, &r);
    CHECKM(r.status == 200 && r.len > 0, "a stale ETag gets the page: %ld", r.status);
    resp_free(&r);
    http_do(port, "HEAD", "/ui/app.js", NULL, 0, NULL, 0, &r);
    CHECKM(r.status == 200 && r.len == 0 && strstr(r.hdr, "text/javascript"), "HEAD -> %ld",
           r.status);
    resp_free(&r);
    http_do(port, "GET", "/ui/nope.js", NULL, 0, NULL, 0, &r);
    cJSON *j = cJSON_Parse(r.body ? r.body : "");
    check_error(j, r.status, 404, NULL, "an unknown file under /ui/");
    cJSON_Delete(j);
    resp_free(&r);
    http_do(port, "PUT", "/", "{}", 2, NULL, 0, &r);
    CHECKM(r.status == 405 && strstr(r.hdr, "Allow: GET, HEAD, POST"), "PUT / -> %ld %s", r.status,
           r.hdr);
    resp_free(&r);
    long st;
    j = post(port, "/", "{\"inputs\":\"a\"}", NULL, &st);
    CHECKM(st == 200 && cJSON_IsArray(j), "POST / is still TEI's embed: %ld", st);
    cJSON_Delete(j);
    http_do(port, "GET", "/openapi.json", NULL, 0, NULL, 0, &r);
    j = cJSON_Parse(r.body ? r.body : "");
    const cJSON *root = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "paths"), "/");
    CHECKM(root && cJSON_GetObjectItem(root, "post") && !cJSON_GetObjectItem(root, "get") &&
               !strstr(r.body, "/ui/"),
           "the OpenAPI document has POST / only");
    cJSON_Delete(j);
    resp_free(&r);
}

/* --no-ui: GET / is what it was before the page (405: the root takes TEI's
 * POST), the files are 404, the API is unchanged. */
static void test_no_ui(void) {
    struct test_srv s;
    const char *args[] = {"--no-ui", NULL};
    CHECK(server_start(&s, args));
    struct resp r;
    http_do(s.port, "GET", "/", NULL, 0, NULL, 0, &r);
    cJSON *j = cJSON_Parse(r.body ? r.body : "");
    /* the root is TEI's route: its error shape */
    CHECKM(r.status == 405 && cJSON_IsString(cJSON_GetObjectItem(j, "error")) &&
               strstr(r.hdr, "Allow: POST\r") && !strstr(r.hdr, "Content-Security-Policy"),
           "--no-ui: GET / -> %ld %s", r.status, r.hdr);
    cJSON_Delete(j);
    resp_free(&r);
    http_do(s.port, "GET", "/ui/app.js", NULL, 0, NULL, 0, &r);
    j = cJSON_Parse(r.body ? r.body : "");
    check_error(j, r.status, 404, NULL, "--no-ui: /ui/app.js");
    cJSON_Delete(j);
    resp_free(&r);
    long st;
    j = post(s.port, "/", "{\"inputs\":\"a\"}", NULL, &st);
    CHECK(st == 200 && cJSON_IsArray(j));
    cJSON_Delete(j);
    CHECK(test_srv_stop(&s) == 0);
}

/* --auto-truncate and --cors-allow-origin (a list, then "*"). */
static void test_auto_truncate_cors(void) {
    struct test_srv s;
    const char *args[] = {"--auto-truncate",
                          "--max-input-tokens",
                          "16",
                          "--cors-allow-origin",
                          "https://a.example, https://b.example",
                          "--api-key",
                          "k",
                          NULL};
    CHECK(server_start(&s, args));
    const char *key[] = {"Authorization: Bearer k", NULL};
    char *big = words(100);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "input", big);
    char *b = cJSON_PrintUnformatted(o);
    long st;
    cJSON *j = post(s.port, "/v1/embeddings", b, key, &st);
    CHECKM(st == 200 &&
               cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), "total_tokens")->valueint == 16,
           "auto-truncate: /v1/embeddings -> %ld", st);
    cJSON_Delete(j);
    cJSON_AddBoolToObject(o, "truncate", false);
    cJSON_free(b);
    b = cJSON_PrintUnformatted(o);
    j = post(s.port, "/v1/embeddings", b, key, &st);
    check_error(j, st, 400, "INPUT_TOKEN_LIMIT_EXCEEDED", "auto-truncate: truncate false wins");
    cJSON_Delete(j);
    cJSON_free(b);
    cJSON_Delete(o);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "inputs", big);
    b = cJSON_PrintUnformatted(o);
    j = post(s.port, "/embed", b, key, &st);
    CHECKM(st == 200, "auto-truncate: /embed -> %ld", st);
    cJSON_Delete(j);
    cJSON_free(b);
    cJSON_Delete(o);
    free(big);
    struct resp r;
    http_do(s.port, "GET", "/info", NULL, 0, key, 0, &r);
    CHECK(r.status == 200 && strstr(r.body, "\"auto_truncate\":true"));
    resp_free(&r);
    /* CORS: preflight without a key; the header on answers and errors */
    const char *pre[] = {"Origin: https://b.example", "Access-Control-Request-Method: POST",
                         "Access-Control-Request-Headers: authorization,content-type", NULL};
    http_do(s.port, "OPTIONS", "/v1/embeddings", NULL, 0, pre, 0, &r);
    CHECKM(r.status == 204 && strstr(r.hdr, "Access-Control-Allow-Origin: https://b.example") &&
               strstr(r.hdr, "Access-Control-Allow-Methods: ") &&
               strstr(r.hdr, "Authorization, Content-Type") &&
               strstr(r.hdr, "Access-Control-Max-Age: ") && strstr(r.hdr, "Vary: Origin"),
           "preflight: %ld %s", r.status, r.hdr);
    resp_free(&r);
    const char *orig_a[] = {"Origin: https://a.example", NULL},
               *orig_x[] = {"Origin: https://x.example", NULL};
    http_do(s.port, "POST", "/v1/embeddings", "{\"input\":\"a\"}", 13, orig_a, 0, &r);
    CHECKM(r.status == 401 && strstr(r.hdr, "Access-Control-Allow-Origin: https://a.example") &&
               strstr(r.hdr, "Vary: Origin"),
           "CORS header on an error: %s", r.hdr);
    resp_free(&r);
    http_do(s.port, "GET", "/health", NULL, 0, orig_x, 0, &r);
    CHECK(r.status == 200 && !strstr(r.hdr, "Access-Control-Allow-Origin") &&
          strstr(r.hdr, "Vary: Origin"));
    resp_free(&r);
    CHECK(test_srv_stop(&s) == 0);
    const char *star[] = {"--cors-allow-origin", "*", NULL};
    CHECK(server_start(&s, star));
    http_do(s.port, "GET", "/v1/models", NULL, 0, orig_x, 0, &r);
    CHECK(r.status == 200 && strstr(r.hdr, "Access-Control-Allow-Origin: *") &&
          !strstr(r.hdr, "Vary: Origin"));
    resp_free(&r);
    http_do(s.port, "GET", "/v1/models", NULL, 0, NULL, 0, &r);
    CHECK(r.status == 200 && !strstr(r.hdr, "Access-Control-Allow-Origin"));
    resp_free(&r);
    CHECK(test_srv_stop(&s) == 0);
    /* off by default: OPTIONS is a 405 and no header is sent */
    CHECK(server_start(&s, NULL));
    http_do(s.port, "OPTIONS", "/v1/embeddings", NULL, 0, pre, 0, &r);
    CHECK(r.status == 405 && !strstr(r.hdr, "Access-Control"));
    resp_free(&r);
    CHECK(test_srv_stop(&s) == 0);
}

struct shot {
    int port;
    const char *body;
    long timeout_ms; /* 0: http_do's default */
    long status;
    struct resp r;
};

static void *shot_main(void *arg) {
    struct shot *s = arg;
    http_do(s->port, "POST", "/v1/embeddings", s->body, strlen(s->body), NULL, s->timeout_ms,
            &s->r);
    s->status = s->r.status;
    return NULL;
}

/* A full queue answers 429 with Retry-After; SIGTERM finishes in-flight work. */
static void test_queue_and_sigterm(void) {
    struct test_srv s;
    const char *args[] = {"--max-queue", "1", "--max-batch-tokens", "256", NULL};
    CHECK(server_start(&s, args));
    enum { N = 8, M = 2048 };
    const char **t = malloc(sizeof(*t) * M);
    char *w = words(40);
    for (int i = 0; i < M; i++)
        t[i] = w;
    char *b = body_of(t, M, NULL);
    struct shot sh[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        sh[i] = (struct shot){.port = s.port, .body = b};
        pthread_create(&th[i], NULL, shot_main, &sh[i]);
    }
    int n200 = 0, n429 = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        n200 += sh[i].status == 200;
        if (sh[i].status == 429) {
            n429++;
            CHECK(strstr(sh[i].r.hdr, "Retry-After:") != NULL);
            cJSON *e = cJSON_Parse(sh[i].r.body);
            check_error(e, 429, 429, "RATE_CONCURRENCY_LIMIT_EXCEEDED", "queue full");
            cJSON_Delete(e);
        }
        resp_free(&sh[i].r);
    }
    CHECKM(n200 >= 1 && n429 >= 1 && n200 + n429 == N, "queue: %d ok, %d 429", n200, n429);
    CHECK(test_srv_stop(&s) == 0);
    /* SIGTERM while requests are queued and running: all complete, exit 0.
     * What is checked is that a drain completes admitted work, so the
     * shutdown and client timeouts are long enough for any machine
     * (sanitizer builds on shared cores): four 256-input requests, about
     * 50 passes of 256 tokens each, all admitted before the signal. */
    enum { M2 = 256 };
    char *b2 = body_of(t, M2, NULL);
    const char *args2[] = {"--max-batch-tokens", "256", "--shutdown-timeout", "600", NULL};
    CHECK(server_start(&s, args2));
    for (int i = 0; i < 4; i++) {
        sh[i] = (struct shot){.port = s.port, .body = b2, .timeout_ms = 600000};
        pthread_create(&th[i], NULL, shot_main, &sh[i]);
    }
    /* SIGTERM once all four are admitted (a request still uploading at that
     * moment would rightly get 503) */
    for (int i = 0; i < 200 && test_srv_metric(s.port, "embedserve_queue_depth") < 4; i++)
        usleep(25000);
    CHECK(test_srv_stop(&s) == 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECKM(sh[i].status == 200, "in-flight request %d at SIGTERM: %ld", i, sh[i].status);
        cJSON *j = cJSON_Parse(sh[i].r.body ? sh[i].r.body : "");
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "data")) == M2);
        cJSON_Delete(j);
        resp_free(&sh[i].r);
    }
    free(b2);
    free(b);
    free(w);
    free(t);
}

/* Bad settings are refused at startup with a message naming the setting. */
static void test_bad_settings(void) {
    const char *build = test_env("BUILD", "build");
    char cmd[1024];
    static const char *const bad[][2] = {
        {"--port 70000", "--port"},          {"--max-queue 0", "--max-queue"},
        {"--log-level loud", "--log-level"}, {"--default-task nope", "--default-task"},
        {"--frobnicate 1", "--frobnicate"},
    };
    for (int i = 0; i < 5; i++) {
        snprintf(cmd, sizeof(cmd), "%s/embedserve --model %s %s 2>&1", build,
                 test_env("TESTMODEL", "build/testmodel"), bad[i][0]);
        FILE *p = popen(cmd, "r");
        char out[4096] = "";
        size_t n = fread(out, 1, sizeof(out) - 1, p);
        out[n] = '\0';
        int st = pclose(p);
        CHECKM(st != 0 && strstr(out, bad[i][1]), "'%s' refused naming the setting: %s", bad[i][0],
               out);
    }
    snprintf(cmd, sizeof(cmd), "EMBEDSERVE_PORT=abc %s/embedserve --model x 2>&1", build);
    FILE *p = popen(cmd, "r");
    char out[1024] = "";
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    CHECK(pclose(p) != 0 && strstr(out, "EMBEDSERVE_PORT"));
    snprintf(cmd, sizeof(cmd), "%s/embedserve --model /nonexistent --port 0 2>&1", build);
    p = popen(cmd, "r");
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    CHECKM(pclose(p) != 0 && strstr(out, "cannot load"), "missing model: %s", out);
}

void test_http(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct ref R;
    if (!ref_open(&R)) {
        CHECKM(0, "cannot open the test model at %s", test_env("TESTMODEL", "build/testmodel"));
        return;
    }
    struct test_srv s;
    const char *args[] = {"--max-batch-tokens", "512", NULL};
    bool up = server_start(&s, args);
    CHECKM(up, "server did not become ready (see %s/test_http_server.log)",
           test_env("BUILD", "build"));
    if (up) {
        test_basics(s.port, &R);
        test_tasks_dims(s.port, &R);
        test_encodings(s.port, &R);
        test_long_inputs(s.port, &R);
        test_batch_limit(s.port, &R);
        test_errors(s.port);
        test_model_task_names(s.port, &R);
        test_tei(s.port, &R);
        test_ollama(s.port, &R);
        test_openapi(s.port);
        test_ui(s.port);
        test_request_timeout(s.port);
        test_concurrency(s.port);
        test_disconnect(s.port);
        CHECK(test_srv_stop(&s) == 0);
    }
    test_auth_strict_limits();
    test_auto_truncate_cors();
    test_no_ui();
    test_queue_and_sigterm();
    test_bad_settings();
    ref_close(&R);
    curl_global_cleanup();
}
