/* fuzz_api.c -- fuzzes the JSON edge: request body -> struct api_req
 * (api_embed_parse / api_tokenize_parse), then renders what a server would
 * send back (the embeddings response on success, the error body on
 * failure). Invariants: every rendered body is valid JSON, a parsed request
 * respects the model's limits, and nothing leaks (ASan/LSan).
 *
 * Input: byte 0 = flags (bit 0 strict, bit 1 tokenize route, bit 2 accept
 * any model name, bits 3-5 default task), the rest = the body. */
#include "tests/fuzz/fuzz.h"

#include <math.h>
#include <string.h>

#include <cJSON.h>

#include "util/alloc.h"
#include "server/api.h"

#define N_EMBD 24

static const char *const names[] = {"jina-embeddings-v3", "alias-1"};
static const struct eng_info info = {
    .n_embd = N_EMBD,
    .n_tasks = 5,
    .task_name = {"retrieval.query", "retrieval.passage", "separation", "classification",
                  "text-matching"},
    .n_matryoshka = 2,
    .matryoshka = {8, N_EMBD},
    .name = "jinaai/jina-embeddings-v3",
    .dtype = ENG_DTYPE_F32,
};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    mem_install_cjson();
    return 0;
}

static void check_json(const char *body, size_t len) {
    if (!body) return; /* oom: the server sends a fixed body */
    cJSON *j = cJSON_ParseWithLength(body, len);
    FUZZ_CHECK(j != NULL);
    cJSON_Delete(j);
}

static void check_request(const struct api_model *m, const struct api_req *r, bool tokenize) {
    FUZZ_CHECK(r->n_inputs >= 1 && r->n_inputs <= m->max_client_batch);
    FUZZ_CHECK(tokenize || (r->n_enc >= 1 && r->n_enc <= API_ENC_N));
    FUZZ_CHECK(r->opts.dimensions >= 0 && r->opts.dimensions <= m->info->n_embd);
    FUZZ_CHECK(r->opts.task == ENG_TASK_NONE || (r->opts.task >= 0 && r->opts.task < m->info->n_tasks));
    for (int i = 0; i < r->n_inputs; i++)
        FUZZ_CHECK(strlen(r->inputs[i].s) == r->inputs[i].len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t flags = data[0];
    int dt = (flags >> 3) & 7;
    struct api_model m = {.names = names,
                          .n_names = 2,
                          .any_name = flags & 4,
                          .info = &info,
                          .max_input_tokens = 8192,
                          .default_task = dt < 5 ? dt : ENG_TASK_NONE,
                          .max_client_batch = 16,
                          .strict = flags & 1};
    /* a private copy without a terminating NUL, so ASan sees over-reads */
    size_t len = size - 1;
    char *body = malloc(len ? len : 1);
    if (len) memcpy(body, data + 1, len);
    struct api_req r;
    struct api_error e;
    bool tokenize = flags & 2;
    int rc = tokenize ? api_tokenize_parse(body, len, &m, &r, &e)
                      : api_embed_parse(body, len, &m, &r, &e);
    size_t out_len = 0;
    char *out;
    if (rc) {
        FUZZ_CHECK(rc == e.code && api_err_status(rc) >= 400);
        FUZZ_CHECK(e.code != API_EVALIDATION || e.n_fields >= 1);
        out = api_error_render(&e, "fuzz-id", &out_len);
    } else {
        check_request(&m, &r, tokenize);
        float *pooled = malloc(sizeof(float) * (size_t)r.n_inputs * N_EMBD);
        for (int i = 0; i < r.n_inputs * N_EMBD; i++) /* varied signs and sizes, a zero row */
            pooled[i] = i < N_EMBD ? 0.0f : (float)(sin(i * 1.7) * pow(10.0, i % 9 - 4));
        int dims = emb_finish(&r.opts, N_EMBD, pooled, r.n_inputs);
        out = tokenize ? NULL : api_embed_render(&m, &r, pooled, dims, 7, &out_len);
        FUZZ_CHECK(tokenize || out);
        free(pooled);
        api_req_deinit(&r);
    }
    check_json(out, out_len);
    free(out);
    /* /v1/models/{id}: the id comes from the URL */
    char id[64];
    size_t n = len < sizeof(id) - 1 ? len : sizeof(id) - 1;
    memcpy(id, body, n);
    id[n] = '\0';
    int err = 0;
    out = api_models_render(&m, id, &out_len, &err);
    FUZZ_CHECK(out || err);
    check_json(out, out_len);
    free(out);
    free(body);
    return 0;
}
