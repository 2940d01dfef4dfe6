/* test_oom.c -- out of memory on the request path, SQLite style.
 *
 * The request pipeline of the server (api_*_parse -> emb_plan_build ->
 * engine -> api_*_render, or api_error_render on the error paths) runs
 * in-process with util/alloc.h's fault injection armed on this thread:
 * allocation N fails (and, in the "persistent" pass, every one after it),
 * for N = 1, 2, ... until a run sees no injected failure. Every failing run
 * must end as the server would answer it -- 500 "out of memory" (or the
 * request's own 4xx, if the failure only hit an optional part of the error
 * body) -- never a crash, a truncated 200 or a leak. Leaks are caught by
 * LeakSanitizer when this suite runs in `make SANITIZE=address,undefined
 * test` (.ci/run does): a leak on any failure path fails test_all at exit.
 * (glibc's mallinfo2 was tried for the plain build; its tcache makes freed
 * chunks look allocated, so it cannot tell a leak from a cache.) */
#include "tests/test.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include <cJSON.h>

#include "util/alloc.h"
#include "server/api.h"
#include "pipeline/batcher.h"
#include "pipeline/embed.h"

struct pipe {
    tok *t;
    struct eng_model *m;
    struct eng_ctx *c;
    struct api_model am;
    const char *names[1];
};

/* One request through the pipeline, as http.c would handle it; returns the
 * HTTP status it would send (500 where http.c sends its fixed oom body) and
 * the body in *out (caller frees; NULL for that fixed body). */
static int run_request(struct pipe *P, bool tokenize, const char *body, char **out, size_t *len) {
    struct api_req r;
    struct api_error e;
    struct emb_plan plan;
    memset(&plan, 0, sizeof(plan));
    float *pooled = NULL;
    int status;
    *out = NULL;
    *len = 0;
    int rc = tokenize ? api_tokenize_parse(body, strlen(body), &P->am, &r, &e)
                      : api_embed_parse(body, strlen(body), &P->am, &r, &e);
    if (rc) goto error;
    struct emb_error pe;
    rc = emb_plan_build(P->t, P->m, &r.opts, r.inputs, r.n_inputs, &plan, &pe);
    if (!rc && !tokenize &&
        !(pooled = mem_malloc(sizeof(float) * (size_t)plan.n_outputs * (size_t)P->am.info->n_embd)))
        rc = EMB_ENOMEM;
    if (!rc && !tokenize) rc = emb_plan_run(P->c, &plan, pooled);
    if (rc) {
        api_plan_error(rc, &pe, &r, &e);
        goto error;
    }
    int dims = tokenize ? 0 : emb_finish(&r.opts, P->am.info->n_embd, pooled, plan.n_outputs);
    *out = tokenize ? api_tokenize_render(&P->am, &r, &plan, P->t, len)
                    : api_embed_render(&P->am, &r, pooled, dims, plan.n_tokens, len);
    status = *out ? 200 : 500;
    goto done;
error:
    *out = api_error_render(&e, "oom-test", len);
    status = *out ? api_err_status(e.code) : 500;
done:
    free(pooled);
    emb_plan_deinit(&plan);
    api_req_deinit(&r); /* harmless after a failed parse (it zeroes r first) */
    return status;
}

/* Whatever is sent is complete JSON; returns the rows of a 200 (else -1). */
static int check_body(const char *what, int status, char *out, size_t len) {
    int rows = -1;
    if (out) {
        cJSON *j = cJSON_ParseWithLength(out, len);
        CHECKM(j != NULL, "%s: a rendered body is not JSON: %.200s", what, out);
        if (status == 200) rows = cJSON_GetArraySize(cJSON_GetObjectItem(j, "data"));
        cJSON_Delete(j);
    }
    free(out);
    return rows;
}

static const struct oom_case {
    const char *name, *body;
    bool tokenize;
    int status, rows; /* the answer without faults */
} cases[] = {
    {"one string", "{\"input\":\"hello world\"}", false, 200, 1},
    {"list, task, dims, all encodings",
     "{\"input\":[\"a\",{\"text\":\"b c\"},\"\"],\"task\":\"retrieval.query\",\"dimensions\":16,"
     "\"embedding_type\":[\"float\",\"base64\",\"binary\",\"ubinary\"]}",
     false, 200, 3},
    {"late chunking", "{\"input\":[\"one.\",\"two!\",\"three?\"],\"late_chunking\":true}", false,
     200, 3},
    {"tokenize with pieces", "{\"input\":[\"naïve café\",\"x\"],\"return_pieces\":true}", true, 200,
     2},
    {"validation error", "{\"input\":[\"a\",true],\"task\":\"x\",\"dimensions\":\"y\"}", false, 422,
     -1},
    {"malformed JSON", "{\"input\":[\"a\",", false, 400, -1},
    {"unknown model", "{\"input\":\"a\",\"model\":\"nope\"}", false, 400, -1},
};

static void oom_loop(struct pipe *P, const struct oom_case *c, bool sticky) {
    int n_fail_runs = 0, bad = 0;
    for (long n = 1; n < 100000; n++) {
        unsigned long f0 = mem_failures();
        mem_fail_at(n, sticky);
        char *out;
        size_t len;
        int st = run_request(P, c->tokenize, c->body, &out, &len);
        mem_fail_at(0, 0);
        int rows = check_body(c->name, st, out, len);
        if (mem_failures() == f0) { /* nothing failed: the normal answer */
            CHECKM(st == c->status && rows == c->rows, "%s: without faults %d (%d rows)", c->name,
                   st, rows);
            break;
        }
        n_fail_runs++;
        bool ok = st == 500 || (st == c->status && c->status != 200);
        if (!ok && bad++ < 3)
            CHECKM(0, "%s: allocation %ld failing (%s) gave status %d", c->name, n,
                   sticky ? "persistent" : "transient", st);
    }
    CHECKM(n_fail_runs >= 3, "%s: only %d failure points found", c->name, n_fail_runs);
    CHECKM(bad == 0, "%s: %d failure points answered wrongly", c->name, bad);
    fprintf(stderr, "oom: %-34s %s: %d failure points, all answered\n", c->name,
            sticky ? "persistent" : "transient", n_fail_runs);
}

/* Out of memory on the engine thread. A job's alive() runs on the engine
 * thread just before its sequences are packed, so it arms the injection
 * there: the batcher's pass arrays cannot grow, the job fails with
 * BATCHER_ENOMEM, and the API layer answers 503 with Retry-After (not a
 * generic 500). done() disarms, also on the engine thread. */
struct engine_oom {
    struct batcher_job job;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

static bool arm_on_engine(struct batcher_job *j) {
    (void)j;
    mem_fail_at(1, 1);
    return true;
}

static void done_on_engine(struct batcher_job *j) {
    mem_fail_at(0, 0);
    struct engine_oom *o = j->arg;
    pthread_mutex_lock(&o->mu);
    o->done = true;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static void test_engine_thread_oom(struct pipe *P, const struct eng_params *p) {
    char err[256];
    struct eng_ctx *c = eng_ctx_new(P->m, p, err, sizeof(err));
    CHECKM(c != NULL, "oom: engine context: %s", err);
    if (!c) return;
    struct batcher_params bp = {.max_batch_tokens = p->max_batch_tokens, .max_queue = 4};
    struct batcher *b = batcher_new(c, &bp, err, sizeof(err)); /* owns c from here */
    CHECKM(b != NULL, "oom: batcher: %s", err);
    if (!b) return;
    struct emb_opts o = emb_opts_defaults();
    o.max_tokens = 512;
    struct emb_text texts[2] = {{"hello world", 11}, {"second input", 12}};
    struct emb_plan plan;
    struct emb_error pe;
    CHECK(emb_plan_build(P->t, P->m, &o, texts, 2, &plan, &pe) == 0);
    float *pooled = malloc(sizeof(float) * 2 * (size_t)eng_model_info(P->m)->n_embd);
    struct engine_oom eo = {.job = {.plan = &plan,
                                    .pooled = pooled,
                                    .done = done_on_engine,
                                    .alive = arm_on_engine,
                                    .arg = &eo}};
    pthread_mutex_init(&eo.mu, NULL);
    pthread_cond_init(&eo.cv, NULL);
    CHECK(batcher_reserve(b) == BATCHER_OK);
    batcher_submit(b, &eo.job);
    pthread_mutex_lock(&eo.mu);
    while (!eo.done)
        pthread_cond_wait(&eo.cv, &eo.mu);
    pthread_mutex_unlock(&eo.mu);
    CHECKM(eo.job.status == BATCHER_ENOMEM, "engine-thread oom: job status %d", eo.job.status);
    struct api_error e;
    CHECK(api_batcher_error(eo.job.status, &e) == API_EOVERLOAD);
    CHECK(api_err_status(e.code) == 503 && api_err_retry_after(e.code) > 0);
    size_t len = 0;
    char *body = api_error_render(&e, "oom-engine", &len);
    cJSON *j = body ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *code = cJSON_GetObjectItem(j, "code");
    CHECK(cJSON_IsString(code) && !strcmp(code->valuestring, "SERVICE_UNAVAILABLE"));
    cJSON_Delete(j);
    free(body);
    batcher_drain(b, 5.0);
    batcher_free(b);
    pthread_cond_destroy(&eo.cv);
    pthread_mutex_destroy(&eo.mu);
    free(pooled);
    emb_plan_deinit(&plan);
    fprintf(stderr, "oom: engine thread: job failed with BATCHER_ENOMEM -> 503 + Retry-After\n");
}

void test_oom(void) {
    struct pipe P;
    memset(&P, 0, sizeof(P));
    char err[256];
    const char *model = test_env("TESTMODEL", "build/testmodel");
    struct eng_params p = eng_params_defaults();
    p.dtype = ENG_DTYPE_F32;
    p.max_batch_tokens = 512;
    P.t = tok_open_dir(model, err, sizeof(err));
    P.m = P.t ? eng_model_open(model, &p, err, sizeof(err)) : NULL;
    P.c = P.m ? eng_ctx_new(P.m, &p, err, sizeof(err)) : NULL;
    CHECKM(P.c != NULL, "oom: cannot open the test model: %s", err);
    if (!P.c) goto out;
    mem_install_cjson(); /* as main() does */
    const struct eng_info *in = eng_model_info(P.m);
    P.names[0] = "jina-embeddings-v3";
    P.am = (struct api_model){.names = P.names,
                              .n_names = 1,
                              .info = in,
                              .max_input_tokens = 8192,
                              .default_task = ENG_TASK_NONE,
                              .max_client_batch = 2048};
    char *out;
    size_t len;
    int st = run_request(&P, false, cases[0].body, &out, &len); /* warm-up: first-use allocations */
    CHECK(check_body("warm-up", st, out, len) == 1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        oom_loop(&P, &cases[i], true);
        oom_loop(&P, &cases[i], false);
    }
    test_engine_thread_oom(&P, &p);
out:
    eng_ctx_free(P.c);
    eng_model_close(P.m);
    tok_close(P.t);
}
