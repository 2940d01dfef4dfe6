/* test_api.c -- the JSON edge, without a network: float printing, base64,
 * request parsing (every field, alias, default and error), response and
 * error rendering, the error vocabulary's HTTP mapping, the model card. */
#include "tests/test.h"

#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "pipeline/batcher.h"
#include "server/api.h"
#include "util/strbuf.h"

/* ---- fmt_f32 -------------------------------------------------------------- */

/* Fewest %.*e significant digits that read back as a (the definition). */
static int ref_digits(float a) {
    char b[64];
    for (int p = 1; p <= 9; p++) {
        snprintf(b, sizeof(b), "%.*e", p - 1, (double)a);
        if (strtof(b, NULL) == a) return p;
    }
    return 99;
}

/* Significant digits in a fmt_f32 output. */
static int out_digits(const char *s) {
    char d[40];
    int n = 0;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') d[n++] = *s;
    int b = 0;
    while (b < n && d[b] == '0')
        b++;
    while (n > b && d[n - 1] == '0')
        n--;
    return n - b;
}

static uint32_t rng_state = 12345;
static uint32_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void test_floats(void) {
    char o[FMT_F32_MAX];
    int bad = 0, longer = 0, n = 0;
    for (int i = 0; i < 400000; i++) {
        uint32_t bits = rng();
        float v;
        if (i % 2)
            v = ((float)(rng() % 2000001) - 1e6f) * 1e-7f; /* embedding-like values */
        else
            memcpy(&v, &bits, 4);
        if (!isfinite(v) || v == 0) continue;
        n++;
        fmt_f32(o, v);
        float back = strtof(o, NULL);
        bad += memcmp(&back, &v, 4) != 0;
        longer += out_digits(o) != ref_digits(fabsf(v));
    }
    CHECKM(bad == 0, "%d of %d floats did not round-trip", bad, n);
    CHECKM(longer == 0, "%d of %d floats were not shortest", longer, n);
    static const struct {
        float v;
        const char *s;
    } cases[] = {{1.0f, "1.0"},         {0.1f, "0.1"},
                 {-0.0f, "-0.0"},       {0.0f, "0.0"},
                 {1e-5f, "1e-05"},      {123456789.0f, "123456790.0"},
                 {0.3f, "0.3"},         {3.4028235e38f, "3.4028235e+38"},
                 {1.4e-45f, "1e-45"},   {-2.5f, "-2.5"},
                 {0.00012f, "0.00012"}, {16777216.0f, "16777216.0"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fmt_f32(o, cases[i].v);
        CHECKM(!strcmp(o, cases[i].s), "fmt_f32(%g) = %s, want %s", (double)cases[i].v, o,
               cases[i].s);
    }
    fmt_f32(o, NAN);
    CHECK(!strcmp(o, "0.0"));
    fmt_f32(o, INFINITY);
    CHECK(!strcmp(o, "0.0"));
    /* every output is a JSON number */
    fmt_f32(o, -1.2345678e-30f);
    cJSON *j = cJSON_Parse(o);
    CHECK(cJSON_IsNumber(j) && (float)j->valuedouble == -1.2345678e-30f);
    cJSON_Delete(j);
}

static void test_base64(void) {
    uint8_t in[64], out[64];
    for (int i = 0; i < 64; i++)
        in[i] = (uint8_t)(rng() & 255);
    for (size_t n = 0; n <= 64; n++) {
        struct strbuf s;
        sb_init(&s);
        sb_base64(&s, in, n);
        CHECK(s.len == b64_len(n));
        long m = s.buf ? b64_decode(s.buf, s.len, out) : (n == 0 ? 0 : -1);
        CHECKM(m == (long)n && !memcmp(in, out, n), "base64 round trip of %zu bytes", n);
        sb_deinit(&s);
    }
    struct strbuf s;
    sb_init(&s);
    sb_base64(&s, "foobar", 6);
    CHECK(!strcmp(s.buf, "Zm9vYmFy"));
    sb_deinit(&s);
    sb_base64(&s, "fo", 2);
    CHECK(!strcmp(s.buf, "Zm8="));
    sb_deinit(&s);
    CHECK(b64_decode("Zm9=v", 5, out) < 0 && b64_decode("Z===", 4, out) < 0);
}

static void test_json_str(void) {
    struct strbuf s;
    sb_init(&s);
    sb_json_str(&s, "a\"b\\c\n\x01\xff\xe6\x9d\xb1", 11);
    CHECKM(!strcmp(s.buf, "\"a\\\"b\\\\c\\n\\u0001\xEF\xBF\xBD\xe6\x9d\xb1\""), "%s", s.buf);
    cJSON *j = cJSON_Parse(s.buf);
    CHECK(cJSON_IsString(j));
    cJSON_Delete(j);
    sb_deinit(&s);
}

/* ---- request parsing ------------------------------------------------------ */

/* What the engine would report for a small model with the five tasks. */
/* The jina-embeddings-v3 aliases, as the engine's description gives them. */
static const char *const test_aliases[][2] = {
    {"query", "retrieval.query"},
    {"passage", "retrieval.passage"},
    {"document", "retrieval.passage"},
    {"clustering", "separation"},
};
static const struct eng_info test_info = {
    .task_alias = test_aliases,
    .n_task_alias = 4,
    .n_embd = 16,
    .n_tasks = 5,
    .task_name = {"retrieval.query", "retrieval.passage", "separation", "classification",
                  "text-matching"},
    .n_matryoshka = 2,
    .matryoshka = {8, 16},
    .name = "jinaai/jina-embeddings-v3",
    .dtype = ENG_DTYPE_F32,
};
static const char *const model_names[] = {"jina-embeddings-v3", "alias-one"};

static struct api_model test_model(bool strict) {
    struct api_model m = {.names = model_names,
                          .n_names = 2,
                          .info = &test_info,
                          .max_input_tokens = 8192,
                          .default_task = ENG_TASK_NONE,
                          .max_client_batch = 4,
                          .strict = strict};
    return m;
}

static int parse(const char *body, bool strict, struct api_req *r, struct api_error *e) {
    struct api_model m = test_model(strict);
    return api_embed_parse(body, strlen(body), &m, r, e);
}

static void test_parse_ok(void) {
    static const struct {
        const char *body;
        int n, task, dims;
        bool norm, late, trunc;
        int enc0, n_enc;
        bool list;
    } ok[] = {
        {"{\"input\":\"a\"}", 1, -1, 0, true, false, false, API_ENC_FLOAT, 1, false},
        {"{\"input\":[\"a\",{\"text\":\"b\"},\"\"],\"model\":\"jina-embeddings-v3\"}", 3, -1, 0,
         true, false, false, 0, 1, false},
        {"{\"input\":{\"text\":\"a\"},\"model\":\"jina-ai/jina-embeddings-v3\"}", 1, -1, 0, true,
         false, false, 0, 1, false},
        {"{\"input\":\"a\",\"model\":\"alias-one\",\"task\":\"query\"}", 1, 0, 0, true, false,
         false, 0, 1, false},
        {"{\"input\":\"a\",\"task\":\"document\"}", 1, 1, 0, true, false, false, 0, 1, false},
        {"{\"input\":\"a\",\"task\":\"clustering\"}", 1, 2, 0, true, false, false, 0, 1, false},
        {"{\"input\":\"a\",\"task\":\"text-matching\",\"dimensions\":16}", 1, 4, 16, true, false,
         false, 0, 1, false},
        {"{\"input\":\"a\",\"input_type\":\"passage\"}", 1, 1, 0, true, false, false, 0, 1, false},
        {"{\"input\":\"a\",\"prompt_name\":\"query\",\"task\":null}", 1, 0, 0, true, false, false,
         0, 1, false},
        {"{\"input\":\"a\",\"task\":\"separation\",\"input_type\":\"query\"}", 1, 2, 0, true, false,
         false, 0, 1, false},
        {"{\"input\":\"a\",\"dimensions\":1,\"normalized\":false}", 1, -1, 1, false, false, false,
         0, 1, false},
        {"{\"input\":\"a\",\"dimensions\":8.0,\"normalize\":false}", 1, -1, 8, false, false, false,
         0, 1, false},
        {"{\"input\":\"a\",\"dimensions\":null,\"normalized\":null}", 1, -1, 0, true, false, false,
         0, 1, false},
        {"{\"input\":\"a\",\"normalized\":true,\"normalize\":false}", 1, -1, 0, true, false, false,
         0, 1, false},
        {"{\"input\":[\"a\",\"b\"],\"late_chunking\":true,\"truncate\":true}", 2, -1, 0, true, true,
         true, 0, 1, false},
        {"{\"input\":\"a\",\"embedding_type\":\"base64\"}", 1, -1, 0, true, false, false,
         API_ENC_BASE64, 1, false},
        {"{\"input\":\"a\",\"encoding_type\":\"ubinary\",\"encoding_format\":\"base64\"}", 1, -1, 0,
         true, false, false, API_ENC_UBINARY, 1, false},
        {"{\"input\":\"a\",\"embedding_type\":\"binary\",\"encoding_type\":\"ubinary\"}", 1, -1, 0,
         true, false, false, API_ENC_BINARY, 1, false},
        {"{\"input\":\"a\",\"encoding_format\":\"base64\"}", 1, -1, 0, true, false, false,
         API_ENC_BASE64, 1, false},
        {"{\"input\":\"a\",\"encoding_format\":null}", 1, -1, 0, true, false, false, 0, 1, false},
        {"{\"input\":\"a\",\"embedding_type\":null,\"encoding_format\":\"base64\"}", 1, -1, 0, true,
         false, false, API_ENC_BASE64, 1, false},
        {"{\"input\":\"a\",\"embedding_type\":[\"ubinary\",\"float\",\"ubinary\"]}", 1, -1, 0, true,
         false, false, API_ENC_UBINARY, 2, true},
        {"{\"input\":\"a\",\"user\":\"u\",\"return_multivector\":false,\"x\":[1]}", 1, -1, 0, true,
         false, false, 0, 1, false},
        {"{\"input\":\"b\",\"input\":[\"a\",\"c\"]}", 2, -1, 0, true, false, false, 0, 1, false},
        {"  {\"input\":\"a\"}\n ", 1, -1, 0, true, false, false, 0, 1, false},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct api_req r;
        struct api_error e;
        int rc = parse(ok[i].body, false, &r, &e);
        CHECKM(rc == 0, "%s: rc %d (%s)", ok[i].body, rc, rc ? e.detail : "");
        if (rc) continue;
        CHECKM(r.n_inputs == ok[i].n && r.opts.task == ok[i].task &&
                   r.opts.dimensions == ok[i].dims && r.opts.normalized == ok[i].norm &&
                   r.opts.late_chunking == ok[i].late && r.opts.truncate == ok[i].trunc &&
                   r.enc[0] == ok[i].enc0 && r.n_enc == ok[i].n_enc && r.enc_list == ok[i].list,
               "%s: parsed wrong", ok[i].body);
        api_req_deinit(&r);
    }
    struct api_req r;
    struct api_error e;
    CHECK(parse("{\"input\":[\"x\",{\"text\":\"h\\u00e9\"},\"\"]}", false, &r, &e) == 0);
    CHECK(r.n_inputs == 3 && !strcmp(r.inputs[0].s, "x") && !strcmp(r.inputs[1].s, "h\xc3\xa9") &&
          r.inputs[1].len == 3 && r.inputs[2].len == 0);
    api_req_deinit(&r);
    /* the server-wide default task applies when none is named */
    struct api_model m = test_model(false);
    m.default_task = 1;
    CHECK(api_embed_parse("{\"input\":\"a\"}", 13, &m, &r, &e) == 0 && r.opts.task == 1);
    api_req_deinit(&r);
    m.any_name = true;
    const char *b = "{\"input\":\"a\",\"model\":\"whatever\"}";
    CHECK(api_embed_parse(b, strlen(b), &m, &r, &e) == 0);
    api_req_deinit(&r);
}

static void test_parse_errors(void) {
    static const struct {
        const char *body;
        bool strict;
        int code;
        const char *param; /* expected error.param or NULL */
    } bad[] = {
        {"", false, API_EJSON, NULL},
        {"{", false, API_EJSON, NULL},
        {"{\"input\":\"a\"} x", false, API_EJSON, NULL},
        {"[\"a\"]", false, API_EVALIDATION, NULL},
        {"{}", false, API_EVALIDATION, "input"},
        {"{\"input\":[]}", false, API_EVALIDATION, "input"},
        {"{\"input\":null}", false, API_EVALIDATION, "input"},
        {"{\"input\":true}", false, API_EVALIDATION, "input"},
        {"{\"input\":[\"a\",5]}", false, API_ETOKENIDS, "input"},
        {"{\"input\":[[1,2]]}", false, API_ETOKENIDS, "input"},
        {"{\"input\":3}", false, API_ETOKENIDS, "input"},
        {"{\"input\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", false, API_ETOOMANY, "input"},
        {"{\"input\":[{\"image\":\"x\"}]}", false, API_EVALIDATION, "input -> 0"},
        {"{\"input\":[{\"bytes\":\"x\"}]}", false, API_EVALIDATION, "input -> 0"},
        {"{\"input\":[{\"pdf\":\"x\"}]}", false, API_EVALIDATION, "input -> 0"},
        {"{\"input\":[{\"txt\":\"x\"}]}", false, API_EVALIDATION, "input -> 0"},
        {"{\"input\":\"a\",\"model\":\"nope\"}", false, API_EMODEL, "model"},
        {"{\"input\":\"a\",\"model\":[]}", false, API_EVALIDATION, "model"},
        {"{\"input\":\"a\",\"task\":\"Query\"}", false, API_EVALIDATION, "task"},
        {"{\"input\":\"a\",\"task\":1}", false, API_EVALIDATION, "task"},
        {"{\"input\":\"a\",\"dimensions\":17}", false, API_EVALIDATION, "dimensions"},
        {"{\"input\":\"a\",\"dimensions\":-3}", false, API_EVALIDATION, "dimensions"},
        {"{\"input\":\"a\",\"dimensions\":1.5}", false, API_EVALIDATION, "dimensions"},
        {"{\"input\":\"a\",\"dimensions\":1e400}", false, API_EVALIDATION, "dimensions"},
        {"{\"input\":\"a\",\"dimensions\":true}", false, API_EVALIDATION, "dimensions"},
        {"{\"input\":\"a\",\"normalized\":1}", false, API_EVALIDATION, "normalized"},
        {"{\"input\":\"a\",\"normalize\":\"no\"}", false, API_EVALIDATION, "normalize"},
        {"{\"input\":\"a\",\"late_chunking\":\"true\"}", false, API_EVALIDATION, "late_chunking"},
        {"{\"input\":\"a\",\"truncate\":0}", false, API_EVALIDATION, "truncate"},
        {"{\"input\":\"a\",\"embedding_type\":\"float16\"}", false, API_EVALIDATION,
         "embedding_type"},
        {"{\"input\":\"a\",\"embedding_type\":[\"float\",3]}", false, API_EVALIDATION,
         "embedding_type"},
        {"{\"input\":\"a\",\"embedding_type\":[]}", false, API_EVALIDATION, "embedding_type"},
        {"{\"input\":\"a\",\"encoding_format\":\"hex\"}", false, API_EVALIDATION,
         "encoding_format"},
        {"{\"input\":\"a\",\"return_multivector\":true}", false, API_EVALIDATION,
         "return_multivector"},
        {"{\"input\":\"a\",\"extra\":1}", true, API_EVALIDATION, "extra"},
        {"{\"input\":\"a\\u0000\"}", false, API_EBADREQ, "input"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct api_req r;
        struct api_error e;
        int rc = parse(bad[i].body, bad[i].strict, &r, &e);
        CHECKM(rc == bad[i].code && e.code == rc, "%s: rc %d, want %d", bad[i].body, rc,
               bad[i].code);
        CHECKM(!bad[i].param || !strcmp(e.param, bad[i].param), "%s: param '%s', want '%s'",
               bad[i].body, e.param, bad[i].param);
        CHECKM(*e.detail, "%s: empty detail", bad[i].body);
        CHECKM(rc != API_EVALIDATION || e.n_fields > 0, "%s: no field errors", bad[i].body);
        if (rc == 0) api_req_deinit(&r);
    }
    struct api_req r;
    struct api_error e;
    parse("{\"input\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", false, &r, &e);
    CHECK(!strcmp(e.detail, "\"input\" length 5 is larger than the largest allowed size 4"));
    parse("{\"input\":\"a\",\"task\":\"x\",\"dimensions\":0.5,\"u\":1}", true, &r, &e);
    CHECK(e.n_fields == 3 && strstr(e.detail, "Validation errors in 3 fields"));
    CHECK(!strcmp(e.fields[0].field, "body -> u") && !strcmp(e.fields[0].type, "extra_forbidden"));
    parse("{\"input\":\"a\",\"model\":\"nope\"}", false, &r, &e);
    CHECK(strstr(e.detail, "Model 'nope' not found. Available models: jina-embeddings-v3") != NULL);
    /* tokenize accepts its own fields only in strict mode */
    struct api_model m = test_model(true);
    const char *tb = "{\"input\":[\"a\"],\"return_pieces\":true,\"task\":\"query\"}";
    CHECK(api_tokenize_parse(tb, strlen(tb), &m, &r, &e) == 0 && r.want_pieces && r.opts.task == 0);
    api_req_deinit(&r);
    tb = "{\"input\":[\"a\"],\"dimensions\":3}";
    CHECK(api_tokenize_parse(tb, strlen(tb), &m, &r, &e) == API_EVALIDATION);
}

/* ---- rendering ------------------------------------------------------------- */

static void test_render(void) {
    struct api_model m = test_model(false);
    struct api_req r;
    struct api_error e;
    const char *b = "{\"input\":[\"a\",\"b\",\"c\"],\"dimensions\":12,"
                    "\"embedding_type\":[\"float\",\"base64\",\"binary\",\"ubinary\"]}";
    CHECK(api_embed_parse(b, strlen(b), &m, &r, &e) == 0);
    float pooled[3 * 16];
    for (int i = 0; i < 48; i++)
        pooled[i] = (float)((int)(rng() % 2001) - 1000) / 337.0f;
    pooled[16 + 3] = 0.0f; /* a zero is not "> 0" */
    float fin[3 * 16];     /* finished first (Matryoshka, normalisation), then rendered */
    memcpy(fin, pooled, sizeof(fin));
    int dims = emb_finish(&r.opts, 16, fin, 3);
    CHECK(dims == 12);
    size_t len = 0;
    char *out = api_embed_render(&m, &r, fin, dims, 42, &len);
    cJSON *j = out ? cJSON_ParseWithLength(out, len) : NULL;
    CHECK(j != NULL);
    const cJSON *u = cJSON_GetObjectItem(j, "usage");
    CHECK(cJSON_GetObjectItem(u, "total_tokens")->valueint == 42 &&
          cJSON_GetObjectItem(u, "prompt_tokens")->valueint == 42);
    CHECK(!strcmp(cJSON_GetObjectItem(j, "model")->valuestring, "jina-embeddings-v3"));
    const cJSON *data = cJSON_GetObjectItem(j, "data");
    CHECK(cJSON_GetArraySize(data) == 3);
    for (int i = 0; i < 3; i++) {
        const cJSON *d = cJSON_GetArrayItem(data, i);
        CHECK(cJSON_GetObjectItem(d, "index")->valueint == i);
        CHECK(!strcmp(cJSON_GetObjectItem(d, "object")->valuestring, "embedding"));
        const cJSON *emb = cJSON_GetObjectItem(d, "embedding");
        float want[16];
        struct emb_opts o = r.opts;
        int n = emb_output(&o, 16, pooled + 16 * i, want);
        CHECK(n == 12);
        const cJSON *fl = cJSON_GetObjectItem(emb, "float");
        CHECK(cJSON_GetArraySize(fl) == 12);
        double norm = 0;
        for (int k = 0; k < 12; k++) {
            float got = (float)cJSON_GetArrayItem(fl, k)->valuedouble;
            CHECKM(got == want[k], "row %d value %d: %.9g vs %.9g", i, k, got, want[k]);
            norm += got * got;
        }
        CHECK_NEAR(norm, 1.0, 1e-5);
        uint8_t raw[64];
        const char *s64 = cJSON_GetObjectItem(emb, "base64")->valuestring;
        CHECK(b64_decode(s64, strlen(s64), raw) == 48 && !memcmp(raw, want, 48));
        const cJSON *ub = cJSON_GetObjectItem(emb, "ubinary"),
                    *bi = cJSON_GetObjectItem(emb, "binary");
        CHECK(cJSON_GetArraySize(ub) == 2 && cJSON_GetArraySize(bi) == 2);
        for (int k = 0; k < 12; k++) {
            int byte = cJSON_GetArrayItem(ub, k / 8)->valueint;
            CHECK(((byte >> (7 - k % 8)) & 1) == (want[k] > 0));
            CHECK(cJSON_GetArrayItem(bi, k / 8)->valueint == byte - 128);
        }
    }
    cJSON_Delete(j);
    free(out);
    api_req_deinit(&r);
    /* error bodies: the superset shape, and 422's errors list */
    parse("{\"input\":\"a\",\"task\":\"x\"}", false, &r, &e);
    out = api_error_render(&e, "rid-1", &len);
    j = cJSON_Parse(out);
    const cJSON *err = cJSON_GetObjectItem(j, "error");
    CHECK(cJSON_IsString(cJSON_GetObjectItem(j, "detail")));
    CHECK(!strcmp(cJSON_GetObjectItem(j, "code")->valuestring, "INPUT_VALIDATION_ERROR"));
    CHECK(!strcmp(cJSON_GetObjectItem(j, "request_id")->valuestring, "rid-1"));
    CHECK(!strcmp(cJSON_GetObjectItem(err, "type")->valuestring, "invalid_request_error"));
    CHECK(!strcmp(cJSON_GetObjectItem(err, "param")->valuestring, "task"));
    const cJSON *fe = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "errors"), 0);
    CHECK(!strcmp(cJSON_GetObjectItem(fe, "field")->valuestring, "body -> task") &&
          !strcmp(cJSON_GetObjectItem(fe, "input")->valuestring, "x"));
    cJSON_Delete(j);
    free(out);
    for (int code = -1; code >= -17; code--) {
        api_error_set(&e, code, NULL, NULL);
        out = api_error_render(&e, NULL, &len);
        j = cJSON_Parse(out);
        CHECKM(j && cJSON_IsNull(cJSON_GetObjectItem(j, "request_id")), "error %d renders", code);
        CHECK(api_err_status(code) >= 400 && api_err_status(code) <= 503);
        cJSON_Delete(j);
        free(out);
    }
    CHECK(api_err_status(API_EBUSY) == 429 && api_err_status(API_ETOOLARGE) == 413 &&
          api_err_status(API_EVALIDATION) == 422 && api_err_status(API_EUNAVAIL) == 503);
    int errc;
    out = api_models_render(&m, NULL, &len, &errc);
    j = cJSON_Parse(out);
    const cJSON *m0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "data"), 0);
    CHECK(!strcmp(cJSON_GetObjectItem(m0, "id")->valuestring, "jina-embeddings-v3") &&
          !strcmp(cJSON_GetObjectItem(m0, "object")->valuestring, "model"));
    cJSON_Delete(j);
    free(out);
    CHECK(!api_models_render(&m, "other", &len, &errc) && errc == API_ENOTFOUND);
}

/* The one mapping of other modules' codes, and Retry-After from the table. */
static void test_error_mapping(void) {
    struct api_error e;
    static const struct {
        int batcher_rc, api, status, retry;
    } cases[] = {
        {BATCHER_EFULL, API_EBUSY, 429, 1},
        {BATCHER_ESHUTDOWN, API_EUNAVAIL, 503, 5},
        {BATCHER_ENOMEM, API_EOVERLOAD, 503, 5}, /* out of memory on the engine thread */
        {BATCHER_EENGINE, API_EINTERNAL, 500, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECKM(api_batcher_error(cases[i].batcher_rc, &e) == cases[i].api && e.code == cases[i].api,
               "batcher code %d", cases[i].batcher_rc);
        CHECK(api_err_status(e.code) == cases[i].status);
        CHECK(api_err_retry_after(e.code) == cases[i].retry);
    }
    /* every 429 and 503 says when to retry; nothing else does */
    for (int code = -1; code >= -17; code--) {
        int st = api_err_status(code), ra = api_err_retry_after(code);
        CHECKM(st == 429 ? ra == 1 : st == 503 ? ra == 5 : ra == 0, "retry-after of %d", code);
    }
    struct emb_error pe = {0, 0, 8};
    struct api_req r;
    memset(&r, 0, sizeof(r));
    CHECK(api_plan_error(EMB_ENOMEM, &pe, &r, &e) == API_ENOMEM && api_err_status(e.code) == 500);
    CHECK(api_plan_error(EMB_EENGINE, &pe, &r, &e) == API_EINTERNAL);
}

/* Parsing returns complete options: max_tokens included. */
static void test_parse_max_tokens(void) {
    struct api_model m = test_model(false);
    m.max_input_tokens = 300;
    struct api_req r;
    struct api_error e;
    const char *b = "{\"input\":\"a\"}";
    CHECK(api_embed_parse(b, strlen(b), &m, &r, &e) == 0 && r.opts.max_tokens == 300);
    api_req_deinit(&r);
    CHECK(api_tokenize_parse(b, strlen(b), &m, &r, &e) == 0 &&
          r.opts.max_tokens == EMB_MAX_TOKENS_UNLIMITED && !r.opts.late_chunking);
    api_req_deinit(&r);
    const char *t = "{\"input\":\"a\",\"truncate\":true}";
    CHECK(api_tokenize_parse(t, strlen(t), &m, &r, &e) == 0 && r.opts.max_tokens == 300);
    api_req_deinit(&r);
}

/* The /v1/models card comes from what the engine loaded. */
static void test_model_card(void) {
    struct api_model m = test_model(false);
    size_t len = 0;
    int errc;
    char *out = api_models_render(&m, "jina-embeddings-v3", &len, &errc);
    cJSON *j = out ? cJSON_ParseWithLength(out, len) : NULL;
    CHECK(j != NULL);
    const cJSON *hf = cJSON_GetObjectItem(j, "hugging_face_id");
    CHECK(cJSON_IsString(hf) && !strcmp(hf->valuestring, "jinaai/jina-embeddings-v3"));
    const cJSON *own = cJSON_GetObjectItem(j, "owned_by");
    CHECK(cJSON_IsString(own) && !strcmp(own->valuestring, "jinaai"));
    const cJSON *q = cJSON_GetObjectItem(j, "quantization");
    CHECK(cJSON_IsString(q) && !strcmp(q->valuestring, "f32"));
    CHECK(cJSON_GetObjectItem(j, "dimensions")->valueint == 16 &&
          cJSON_GetObjectItem(j, "context_length")->valueint == 8192);
    const cJSON *md = cJSON_GetObjectItem(j, "matryoshka_dimensions");
    CHECK(cJSON_GetArraySize(md) == 2 && cJSON_GetArrayItem(md, 0)->valueint == 8 &&
          cJSON_GetArrayItem(md, 1)->valueint == 16);
    const cJSON *tasks = cJSON_GetObjectItem(j, "tasks");
    CHECK(cJSON_GetArraySize(tasks) == 5 &&
          !strcmp(cJSON_GetArrayItem(tasks, 4)->valuestring, "text-matching"));
    const cJSON *al = cJSON_GetObjectItem(j, "aliases");
    CHECK(cJSON_GetArraySize(al) == 1 &&
          !strcmp(cJSON_GetArrayItem(al, 0)->valuestring, "alias-one"));
    cJSON_Delete(j);
    free(out);
}

/* Task-carrying model names, input_type, auto-truncate, and the TEI and
 * Ollama request kinds with their error dialects. */
static void test_compat_parse(void) {
    struct api_model m = test_model(true);
    static const struct {
        const char *name;
        bool ok;
        int task;
    } names[] = {
        {"jina-embeddings-v3", true, -2},
        {"jina-embeddings-v3:query", true, 0},
        {"jina-embeddings-v3:retrieval.passage", true, 1},
        {"jina-ai/jina-embeddings-v3:document", true, 1},
        {"alias-one:clustering", true, 2},
        {"jina-embeddings-v3:latest", true, -2},
        {"jina-embeddings-v3:bogus", false, -2},
        {"other:query", false, -2},
        {"jina-embeddings-v3:", false, -2},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int t = 99;
        bool ok = api_model_resolve(&m, names[i].name, &t);
        CHECKM(ok == names[i].ok && (!ok || t == names[i].task), "resolve %s: %d %d", names[i].name,
               ok, t);
    }
    struct api_model any = m;
    any.any_name = true;
    int t = 99;
    CHECK(api_model_resolve(&any, "whatever:passage", &t) && t == 1);
    CHECK(api_model_resolve(&any, "nomic-embed-text:v1.5", &t) && t == -2);

    static const struct {
        int kind;
        const char *body;
        int rc, task, n;
        bool trunc, norm;
    } ok[] = {
        {API_K_EMBED, "{\"input\":\"a\",\"model\":\"jina-embeddings-v3:query\"}", 0, 0, 1, false,
         true},
        {API_K_EMBED,
         "{\"input\":\"a\",\"model\":\"jina-embeddings-v3:query\",\"task\":\"separation\"}", 0, 2,
         1, false, true},
        {API_K_EMBED, "{\"input\":\"a\",\"input_type\":\"search_query\"}", 0, 0, 1, false, true},
        {API_K_EMBED, "{\"input\":\"a\",\"input_type\":\"search_document\"}", 0, 1, 1, false, true},
        {API_K_EMBED, "{\"input\":\"a\",\"input_type\":\"classification\"}", 0, 3, 1, false, true},
        {API_K_EMBED, "{\"input\":\"a\",\"input_type\":\"clustering\"}", 0, 2, 1, false, true},
        {API_K_EMBED, "{\"input\":\"a\",\"input_type\":\"image\"}", API_EVALIDATION, 0, 0, false,
         true},
        {API_K_EMBED, "{\"input\":\"a\",\"prompt_name\":\"nope\"}", API_EVALIDATION, 0, 0, false,
         true},
        {API_K_TEI_EMBED,
         "{\"inputs\":[\"a\",\"b\"],\"normalize\":false,\"prompt_name\":\"query\","
         "\"truncate\":true,\"extra\":1}",
         0, 0, 2, true, false},
        {API_K_TEI_EMBED, "{\"inputs\":\"a\",\"truncation_direction\":\"Left\"}", API_EVALIDATION,
         0, 0, false, true},
        {API_K_TEI_EMBED, "{\"input\":\"a\"}", API_EVALIDATION, 0, 0, false, true},
        {API_K_TEI_TOKENIZE, "{\"inputs\":\"a\",\"add_special_tokens\":false}", 0, -1, 1, false,
         true},
        {API_K_OLLAMA_EMBED,
         "{\"model\":\"jina-embeddings-v3:passage\",\"input\":[\"a\",\"\"],"
         "\"keep_alive\":\"5m\",\"options\":{}}",
         0, 1, 2, true, true},
        {API_K_OLLAMA_EMBED, "{\"model\":\"jina-embeddings-v3\",\"input\":\"\"}", 0, -1, 0, true,
         true},
        {API_K_OLLAMA_EMBED,
         "{\"model\":\"jina-embeddings-v3\",\"input\":\"a\",\"truncate\":false}", 0, -1, 1, false,
         true},
        {API_K_OLLAMA_EMBED, "{\"input\":\"a\"}", API_EBADREQ, 0, 0, false, true},
        {API_K_OLLAMA_EMBED, "{\"model\":\"llama3\",\"input\":\"a\"}", API_EMODEL, 0, 0, false,
         true},
        {API_K_OLLAMA_EMBED, "{\"model\":\"jina-embeddings-v3\",\"input\":[\"a\",2]}", API_EBADREQ,
         0, 0, false, true},
        {API_K_OLLAMA_LEGACY, "{\"model\":\"jina-embeddings-v3:query\",\"prompt\":\"a\"}", 0, 0, 1,
         true, true},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct api_req r;
        struct api_error e;
        int rc = api_parse(ok[i].kind, ok[i].body, strlen(ok[i].body), &m, &r, &e);
        CHECKM(rc == ok[i].rc, "%s: rc %d, want %d (%s)", ok[i].body, rc, ok[i].rc, e.detail);
        if (!rc)
            CHECKM(r.n_inputs == ok[i].n && r.opts.truncate == ok[i].trunc &&
                       r.opts.normalized == ok[i].norm && r.opts.task == ok[i].task,
                   "%s: n %d truncate %d normalized %d task %d", ok[i].body, r.n_inputs,
                   r.opts.truncate, r.opts.normalized, r.opts.task);
        api_req_deinit(&r);
    }
    /* --auto-truncate: the embedding routes' default; /v1/tokenize keeps counting */
    m.auto_truncate = true;
    struct api_req r;
    struct api_error e;
    CHECK(api_parse(API_K_EMBED, "{\"input\":\"a\"}", 13, &m, &r, &e) == 0 && r.opts.truncate);
    api_req_deinit(&r);
    CHECK(api_parse(API_K_EMBED, "{\"input\":\"a\",\"truncate\":false}", 30, &m, &r, &e) == 0 &&
          !r.opts.truncate);
    api_req_deinit(&r);
    CHECK(api_parse(API_K_TOKENIZE, "{\"input\":\"a\"}", 13, &m, &r, &e) == 0 && !r.opts.truncate);
    api_req_deinit(&r);
    CHECK(api_parse(API_K_TEI_EMBED, "{\"inputs\":\"a\"}", 14, &m, &r, &e) == 0 && r.opts.truncate);
    api_req_deinit(&r);
    /* error dialects */
    static const struct {
        int err, tei, ollama;
    } st[] = {
        {API_ETOOLONG, 413, 400},  {API_ETOOMANY, 413, 400}, {API_EVALIDATION, 422, 400},
        {API_EMODEL, 422, 404},    {API_EBUSY, 429, 503},    {API_EUNAVAIL, 503, 503},
        {API_EINTERNAL, 424, 500}, {API_ENOKEY, 401, 401},
    };
    for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++)
        CHECKM(api_err_status_as(st[i].err, API_D_TEI) == st[i].tei &&
                   api_err_status_as(st[i].err, API_D_OLLAMA) == st[i].ollama &&
                   api_err_status_as(st[i].err, API_D_JINA) == api_err_status(st[i].err),
               "dialect statuses of %d", st[i].err);
    api_error_set(&e, API_EBUSY, NULL, "busy \"now\"");
    size_t len;
    char *b = api_error_render_as(&e, API_D_TEI, "id", &len);
    cJSON *j = cJSON_Parse(b);
    CHECK(j && cJSON_GetArraySize(j) == 2 &&
          !strcmp(cJSON_GetObjectItem(j, "error")->valuestring, "busy \"now\"") &&
          !strcmp(cJSON_GetObjectItem(j, "error_type")->valuestring, "overloaded"));
    cJSON_Delete(j);
    free(b);
    b = api_error_render_as(&e, API_D_OLLAMA, "id", &len);
    j = cJSON_Parse(b);
    CHECK(j && cJSON_GetArraySize(j) == 1 && cJSON_IsString(cJSON_GetObjectItem(j, "error")));
    cJSON_Delete(j);
    free(b);
}

/* ---- several models; a model without tasks or Matryoshka sizes ---------- */

/* What the engine reports for a model family without task adapters or
 * Matryoshka training (jina-embeddings-v2: n_tasks 0, lora_rank 0,
 * n_matryoshka 0). */
static const struct eng_info taskless_info = {
    .n_embd = 12,
    .name = "jinaai/jina-embeddings-v2-base-en",
    .arch = "jina-embeddings-v2",
    .dtype = ENG_DTYPE_F32,
};
static const char *const taskless_names[] = {"jina-embeddings-v2-base-en", "v2"};

/* models[0]: the v3-like test model; models[1]: the task-less one. */
static void two_models(struct api_model models[2]) {
    models[0] = test_model(false);
    models[1] = (struct api_model){.names = taskless_names,
                                   .n_names = 2,
                                   .info = &taskless_info,
                                   .max_input_tokens = 512,
                                   .default_task = ENG_TASK_NONE,
                                   .max_client_batch = 4};
}

static void test_taskless(void) {
    struct api_model models[2];
    two_models(models);
    struct api_req r;
    struct api_error e;
    /* task, input_type and prompt_name: accepted and ignored, whatever they say */
    static const char *const ignored[] = {
        "{\"model\":\"v2\",\"input\":\"a\",\"task\":\"retrieval.query\"}",
        "{\"model\":\"v2\",\"input\":\"a\",\"task\":\"no-such-task\"}",
        "{\"model\":\"v2\",\"input\":\"a\",\"input_type\":\"search_query\"}",
        "{\"model\":\"v2\",\"input\":\"a\",\"input_type\":\"query\",\"task\":\"passage\"}",
        "{\"model\":\"v2\",\"input\":\"a\",\"prompt_name\":\"query\"}",
        "{\"model\":\"jina-ai/jina-embeddings-v2-base-en\",\"input\":[\"a\",\"b\"],"
        "\"late_chunking\":true}",
        "{\"model\":\"v2:latest\",\"input\":\"a\"}",
    };
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
        int rc = api_parse_n(API_K_EMBED, ignored[i], strlen(ignored[i]), models, 2, &r, &e);
        CHECKM(rc == 0 && r.model_index == 1 && r.opts.task == ENG_TASK_NONE &&
                   r.opts.max_tokens == 512,
               "%s: rc %d (%s) model %d task %d", ignored[i], rc, e.detail, r.model_index,
               r.opts.task);
        api_req_deinit(&r);
    }
    /* the same fields still pick the task on the model that has tasks */
    const char *q = "{\"input\":\"a\",\"input_type\":\"search_query\"}";
    CHECK(api_parse_n(API_K_EMBED, q, strlen(q), models, 2, &r, &e) == 0 && r.model_index == 0 &&
          r.opts.task == 0);
    api_req_deinit(&r);
    q = "{\"input\":\"a\",\"task\":\"no-such-task\"}";
    CHECK(api_parse_n(API_K_EMBED, q, strlen(q), models, 2, &r, &e) == API_EVALIDATION);
    /* dimensions without Matryoshka sizes: the width or more is the whole
     * vector; below it, 422 */
    static const struct {
        const char *dims;
        int rc, want;
    } dims[] = {{"12", 0, 0},
                {"13", 0, 0},
                {"4096", 0, 0},
                {"null", 0, 0},
                {"11", API_EVALIDATION, 0},
                {"1", API_EVALIDATION, 0},
                {"0", API_EVALIDATION, 0},
                {"-5", API_EVALIDATION, 0},
                {"12.5", API_EVALIDATION, 0},
                {"\"12\"", API_EVALIDATION, 0}};
    for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"model\":\"v2\",\"input\":\"a\",\"dimensions\":%s}",
                 dims[i].dims);
        int rc = api_parse_n(API_K_EMBED, body, strlen(body), models, 2, &r, &e);
        CHECKM(rc == dims[i].rc && (rc || r.opts.dimensions == dims[i].want),
               "dimensions %s: rc %d dims %d (%s)", dims[i].dims, rc, rc ? -1 : r.opts.dimensions,
               e.detail);
        if (rc == API_EVALIDATION && !strcmp(dims[i].dims, "11"))
            CHECKM(strstr(e.detail, "at least 12"), "the 422 names the width: %s", e.detail);
        api_req_deinit(&r);
    }
    /* with Matryoshka sizes, above the width stays a 422 */
    q = "{\"input\":\"a\",\"dimensions\":17}";
    CHECK(api_parse_n(API_K_EMBED, q, strlen(q), models, 2, &r, &e) == API_EVALIDATION);
    /* TEI and Ollama bodies reach the task-less model too */
    q = "{\"model\":\"v2\",\"input\":\"a\",\"truncate\":true}";
    CHECK(api_parse_n(API_K_OLLAMA_EMBED, q, strlen(q), models, 2, &r, &e) == 0 &&
          r.model_index == 1);
    api_req_deinit(&r);
    q = "{\"model\":\"v2\",\"input\":\"a\",\"task\":\"query\"}";
    CHECK(api_parse_n(API_K_TOKENIZE, q, strlen(q), models, 2, &r, &e) == 0 && r.model_index == 1 &&
          r.opts.task == ENG_TASK_NONE);
    api_req_deinit(&r);
}

static void test_pick_model(void) {
    struct api_model models[2];
    two_models(models);
    struct api_req r;
    struct api_error e;
    int task;
    CHECK(api_model_pick(models, 2, "jina-embeddings-v3", &task) == 0 && task == -2);
    CHECK(api_model_pick(models, 2, "alias-one:query", &task) == 0 && task == 0);
    CHECK(api_model_pick(models, 2, "jina-ai/v2", &task) == 1);
    CHECK(api_model_pick(models, 2, "v2:query", &task) == -1); /* no task of that name there */
    CHECK(api_model_pick(models, 2, "nope", &task) == -1);
    /* "*" on the first model: another model's names still reach that model */
    models[0].any_name = true;
    CHECK(api_model_pick(models, 2, "v2", &task) == 1);
    CHECK(api_model_pick(models, 2, "nope", &task) == 0);
    models[0].any_name = false;
    /* unknown: the error lists every model's names */
    const char *q = "{\"model\":\"nope\",\"input\":\"a\"}";
    CHECK(api_parse_n(API_K_EMBED, q, strlen(q), models, 2, &r, &e) == API_EMODEL);
    CHECKM(strstr(e.detail, "Available models: jina-embeddings-v3, alias-one, "
                            "jina-embeddings-v2-base-en, v2"),
           "%s", e.detail);
    /* no model: the first */
    q = "{\"input\":\"a\"}";
    CHECK(api_parse_n(API_K_EMBED, q, strlen(q), models, 2, &r, &e) == 0 && r.model_index == 0 &&
          r.opts.max_tokens == 8192);
    api_req_deinit(&r);
    /* /v1/models: each model and its task cards; an id picks its model */
    size_t len;
    int err;
    char *out = api_models_render_n(models, 2, NULL, &len, &err);
    cJSON *j = cJSON_Parse(out);
    const cJSON *d = cJSON_GetObjectItem(j, "data");
    CHECKM(cJSON_GetArraySize(d) == 7, "1 + 5 task cards + 1: %d", cJSON_GetArraySize(d));
    const cJSON *last = cJSON_GetArrayItem(d, 6);
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(last, "id")),
                  "jina-embeddings-v2-base-en") &&
          cJSON_GetArraySize(cJSON_GetObjectItem(last, "tasks")) == 0 &&
          cJSON_GetArraySize(cJSON_GetObjectItem(last, "matryoshka_dimensions")) == 0 &&
          cJSON_GetNumberValue(cJSON_GetObjectItem(last, "dimensions")) == 12);
    cJSON_Delete(j);
    free(out);
    out = api_models_render_n(models, 2, "v2", &len, &err);
    CHECK(out && strstr(out, "\"id\":\"jina-embeddings-v2-base-en\"") &&
          strstr(out, "\"context_length\":512"));
    free(out);
    CHECK(!api_models_render_n(models, 2, "v2:query", &len, &err) && err == API_ENOTFOUND);
    out = api_ollama_tags_render_n(models, 2, &len);
    CHECK(out && strstr(out, "jina-embeddings-v3:latest") &&
          strstr(out, "jina-embeddings-v2-base-en:latest") &&
          !strstr(out, "jina-embeddings-v2-base-en:retrieval"));
    free(out);
}

static void test_model_names(void) {
    char *names[16];
    struct eng_info in = {.name = "jinaai/jina-embeddings-v2-base-en"};
    int n = api_model_names("/models/v2-en/", &in, NULL, 0, names, 16);
    CHECK(n == 3 && !strcmp(names[0], "jina-embeddings-v2-base-en") &&
          !strcmp(names[1], "jinaai/jina-embeddings-v2-base-en") && !strcmp(names[2], "v2-en"));
    for (int i = 0; i < n; i++)
        free(names[i]);
    /* given names first, each name once; "." names nothing */
    const char *given[] = {"mine", "jina-embeddings-v2-base-en", "mine"};
    n = api_model_names(".", &in, given, 3, names, 16);
    CHECK(n == 3 && !strcmp(names[0], "mine") && !strcmp(names[1], "jina-embeddings-v2-base-en") &&
          !strcmp(names[2], "jinaai/jina-embeddings-v2-base-en"));
    for (int i = 0; i < n; i++)
        free(names[i]);
    /* no _name_or_path: the directory; without the info, the given names only */
    in.name = "";
    n = api_model_names("models/plain", &in, NULL, 0, names, 16);
    CHECK(n == 1 && !strcmp(names[0], "plain"));
    free(names[0]);
    n = api_model_names("models/plain", NULL, given, 1, names, 16);
    CHECK(n == 1 && !strcmp(names[0], "mine"));
    free(names[0]);
    /* two models sharing a name are refused, naming both */
    struct api_model models[2];
    two_models(models);
    char err[600];
    CHECK(api_models_check_names(models, 2, err, sizeof(err)) == 0);
    static const char *const clash[] = {"other", "alias-one"};
    models[1].names = clash;
    CHECK(api_models_check_names(models, 2, err, sizeof(err)) == -1 && strstr(err, "'alias-one'") &&
          strstr(err, "'jina-embeddings-v3'") && strstr(err, "'other'"));
}

void test_api(void) {
    test_floats();
    test_base64();
    test_json_str();
    test_parse_ok();
    test_parse_errors();
    test_render();
    test_error_mapping();
    test_parse_max_tokens();
    test_model_card();
    test_compat_parse();
    test_taskless();
    test_pick_model();
    test_model_names();
}
