/* test_batcher.c -- the batcher's scheduling, in process on the test model:
 * fair sharing of passes between a big job and a small one (counted in
 * passes, so the bound holds whatever the machine's speed), per-job
 * deadlines, and the pass budget while draining. */
#include "tests/test.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/batcher.h"
#include "pipeline/embed.h"
#include "util/clock.h"

struct waiter {
    struct batcher_job job;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int pass_at_done;
};

static atomic_int n_passes;

/* The engine thread's pause after each pass (ns; test_fairness sets it):
 * passes of the tiny test model take well under a millisecond with the
 * vector kernels, so without a pace the big job could end while this
 * thread is between two small jobs, which says nothing about fairness. */
static atomic_long pass_pause_ns;

static void on_pass(void *arg, int n_seqs, int n_requests, int n_tokens, double seconds) {
    (void)arg, (void)n_seqs, (void)n_requests, (void)seconds;
    (void)n_tokens;
    atomic_fetch_add(&n_passes, 1);
    long ns = atomic_load(&pass_pause_ns);
    if (ns) nanosleep(&(struct timespec){ns / 1000000000, ns % 1000000000}, NULL);
}

static void on_done(struct batcher_job *j) {
    struct waiter *w = j->arg;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    w->pass_at_done = atomic_load(&n_passes);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void waiter_init(struct waiter *w, const struct emb_plan *plan, float *pooled) {
    memset(w, 0, sizeof(*w));
    w->job = (struct batcher_job){.plan = plan, .pooled = pooled, .done = on_done, .arg = w};
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

/* Waits up to 60 s; false on timeout. */
static bool waiter_wait(struct waiter *w) {
    double until = clock_now() + 60;
    pthread_mutex_lock(&w->mu);
    while (!w->done && clock_now() < until) {
        pthread_mutex_unlock(&w->mu);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
        pthread_mutex_lock(&w->mu);
    }
    bool done = w->done;
    pthread_mutex_unlock(&w->mu);
    return done;
}

static void waiter_deinit(struct waiter *w) {
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

#define BIG_INPUTS 24
#define BUDGET     48

struct fixture {
    tok *t;
    struct eng_model *m;
    struct eng_params p;
    int n_embd;
    struct emb_plan big, small;
    char *texts[BIG_INPUTS];
};

static struct batcher *start(struct fixture *f, int budget, int drain_budget) {
    char err[256];
    struct eng_ctx *c = eng_ctx_new(f->m, &f->p, err, sizeof(err));
    CHECKM(c != NULL, "batcher: context: %s", err);
    if (!c) return NULL;
    struct batcher_params bp = {.max_batch_tokens = budget,
                                .max_queue = 8,
                                .drain_batch_tokens = drain_budget,
                                .on_pass = on_pass};
    struct batcher *b = batcher_new(c, &bp, err, sizeof(err));
    CHECKM(b != NULL, "batcher: %s", err);
    return b;
}

/* A big job (BIG_INPUTS sequences, each filling most of a pass) is running;
 * a one-input job submitted then must finish within two passes, and the big
 * job's results must be complete and equal to running it alone. */
static void test_fairness(struct fixture *f) {
    struct batcher *b = start(f, BUDGET, 0);
    if (!b) return;
    size_t nb = (size_t)f->big.n_outputs * (size_t)f->n_embd;
    float *big_out = calloc(nb, sizeof(float)), *ref = calloc(nb, sizeof(float));
    float *small_out = calloc((size_t)f->n_embd, sizeof(float));
    struct waiter wb, ws;
    waiter_init(&wb, &f->big, big_out);
    waiter_init(&ws, &f->small, small_out);
    atomic_store(&n_passes, 0);
    atomic_store(&pass_pause_ns, 20000000); /* 24 passes >= 0.48 s; 5 small jobs ~0.2 s */
    CHECK(batcher_reserve(b) == BATCHER_OK);
    batcher_submit(b, &wb.job);
    double until = clock_now() + 30;
    while (atomic_load(&n_passes) < 2 && clock_now() < until)
        nanosleep(&(struct timespec){0, 100000}, NULL);
    /* five 1-input jobs one after another while the big one runs: each
     * waits at most two passes (the one running when it arrives, its own) */
    int worst_wait = 0, small_status = BATCHER_OK, last_done = 0;
    for (int q = 0; q < 5; q++) {
        waiter_deinit(&ws);
        waiter_init(&ws, &f->small, small_out);
        int p0 = atomic_load(&n_passes);
        CHECK(batcher_reserve(b) == BATCHER_OK);
        batcher_submit(b, &ws.job);
        CHECK(waiter_wait(&ws));
        if (ws.pass_at_done - p0 > worst_wait) worst_wait = ws.pass_at_done - p0;
        if (ws.job.status != BATCHER_OK) small_status = ws.job.status;
        last_done = ws.pass_at_done;
    }
    CHECK(waiter_wait(&wb));
    atomic_store(&pass_pause_ns, 0);
    int waited = worst_wait;
    CHECKM(small_status == BATCHER_OK && waited <= 2,
           "fairness: a 1-input job behind a %d-sequence job took %d passes (status %d); want <= 2",
           f->big.n_seqs, waited, small_status);
    CHECKM(wb.job.status == BATCHER_OK && wb.pass_at_done > last_done,
           "fairness: the big job (status %d) should still be running when the small ones end",
           wb.job.status);
    fprintf(stderr, "batcher: 1-input jobs behind a %d-sequence job: at most %d passes (big: %d)\n",
            f->big.n_seqs, waited, wb.job.n_passes);
    /* in order and complete: the same vectors as the plan run alone */
    char err[256];
    struct eng_ctx *c = eng_ctx_new(f->m, &f->p, err, sizeof(err));
    CHECK(c && emb_plan_run(c, &f->big, ref) == 0);
    double worst = 0;
    for (size_t i = 0; i < nb; i++) {
        double d = fabs((double)big_out[i] - ref[i]) / (1.0 + fabs((double)ref[i]));
        if (d > worst) worst = d;
    }
    CHECKM(worst < 1e-4, "fairness: interleaved results differ from the plan alone by %g", worst);
    eng_ctx_free(c);
    batcher_drain(b, 5.0);
    batcher_free(b);
    waiter_deinit(&wb);
    waiter_deinit(&ws);
    free(big_out);
    free(ref);
    free(small_out);
}

/* A job whose deadline has passed is dropped with BATCHER_ETIMEDOUT before
 * its work runs; one with a future deadline completes. */
static void test_deadline(struct fixture *f) {
    struct batcher *b = start(f, BUDGET, 0);
    if (!b) return;
    float *out = calloc((size_t)f->big.n_outputs * (size_t)f->n_embd, sizeof(float));
    struct waiter w;
    waiter_init(&w, &f->big, out);
    w.job.deadline = clock_now() - 1;
    CHECK(batcher_reserve(b) == BATCHER_OK);
    batcher_submit(b, &w.job);
    CHECK(waiter_wait(&w));
    CHECKM(w.job.status == BATCHER_ETIMEDOUT && w.job.n_passes == 0,
           "deadline: status %d after %d passes; want BATCHER_ETIMEDOUT, none", w.job.status,
           w.job.n_passes);
    waiter_deinit(&w);
    waiter_init(&w, &f->small, out);
    w.job.deadline = clock_now() + 60;
    CHECK(batcher_reserve(b) == BATCHER_OK);
    batcher_submit(b, &w.job);
    CHECK(waiter_wait(&w) && w.job.status == BATCHER_OK);
    int depth = batcher_depth(b, NULL);
    CHECKM(depth == 0, "deadline: %d jobs still admitted", depth);
    batcher_drain(b, 5.0);
    batcher_free(b);
    waiter_deinit(&w);
    free(out);
}

/* Draining. The first pass's observer starts batcher_drain (on another
 * thread) and waits until it has begun, so every later pass runs while
 * draining. With a long timeout the job completes with its results; with a
 * timeout of 0 no pass is started after the one running, the job fails with
 * BATCHER_ESHUTDOWN, and the drain returns at once. */
static struct batcher *drain_b;
static double drain_timeout;
static atomic_int drain_started, later_passes;
static pthread_t drain_th;

static void *drain_thread(void *arg) {
    (void)arg;
    batcher_drain(drain_b, drain_timeout);
    return NULL;
}

static void on_pass_drain(void *arg, int n_seqs, int n_requests, int n_tokens, double seconds) {
    (void)arg, (void)n_seqs, (void)n_requests, (void)n_tokens, (void)seconds;
    if (atomic_load(&drain_started)) {
        atomic_fetch_add(&later_passes, 1);
        return;
    }
    atomic_store(&drain_started, 1);
    if (pthread_create(&drain_th, NULL, drain_thread, NULL)) return;
    double until = clock_now() + 10;
    while (clock_now() < until) { /* until the drain refuses new work */
        int rc = batcher_reserve(drain_b);
        if (rc == BATCHER_ESHUTDOWN) break;
        if (rc == BATCHER_OK) batcher_unreserve(drain_b);
        nanosleep(&(struct timespec){0, 100000}, NULL);
    }
}

static void drain_case(struct fixture *f, double timeout_s) {
    char err[256];
    struct eng_ctx *c = eng_ctx_new(f->m, &f->p, err, sizeof(err));
    if (!c) return;
    struct batcher_params bp = {.max_batch_tokens = BUDGET,
                                .max_queue = 8,
                                .drain_batch_tokens = BUDGET / 2,
                                .on_pass = on_pass_drain};
    struct batcher *b = drain_b = batcher_new(c, &bp, err, sizeof(err));
    CHECKM(b != NULL, "batcher: %s", err);
    if (!b) return;
    drain_timeout = timeout_s;
    atomic_store(&drain_started, 0);
    atomic_store(&later_passes, 0);
    float *out = calloc((size_t)f->big.n_outputs * (size_t)f->n_embd, sizeof(float));
    struct waiter w;
    waiter_init(&w, &f->big, out);
    CHECK(batcher_reserve(b) == BATCHER_OK);
    batcher_submit(b, &w.job);
    CHECK(waiter_wait(&w));
    double t0 = clock_now();
    if (atomic_load(&drain_started)) pthread_join(drain_th, NULL);
    double waited = clock_now() - t0;
    int later = atomic_load(&later_passes);
    if (timeout_s > 0) {
        CHECKM(w.job.status == BATCHER_OK && w.job.seqs_done == f->big.n_seqs,
               "drain: status %d, %d of %d sequences", w.job.status, w.job.seqs_done,
               f->big.n_seqs);
    } else {
        CHECKM(w.job.status == BATCHER_ESHUTDOWN && later == 0 && waited < 5,
               "drain with timeout 0: status %d, %d passes after it began, returned %.2f s "
               "after the job; want BATCHER_ESHUTDOWN, none, at once",
               w.job.status, later, waited);
    }
    batcher_free(b);
    waiter_deinit(&w);
    free(out);
}

static void test_drain_budget(struct fixture *f) {
    drain_case(f, 60);
    drain_case(f, 0);
}

void test_batcher(void) {
    struct fixture f;
    memset(&f, 0, sizeof(f));
    char err[256];
    const char *model = test_env("TESTMODEL", "build/testmodel");
    f.p = eng_params_defaults();
    f.p.dtype = ENG_DTYPE_F32;
    f.p.max_batch_tokens = 4 * BUDGET;
    f.t = tok_open_dir(model, err, sizeof(err));
    f.m = f.t ? eng_model_open(model, &f.p, err, sizeof(err)) : NULL;
    CHECKM(f.m != NULL, "batcher: cannot open the test model: %s", err);
    if (!f.m) goto out;
    f.n_embd = eng_model_info(f.m)->n_embd;
    struct emb_opts o = emb_opts_defaults();
    o.max_tokens = BUDGET - 8;
    o.truncate = true;
    struct emb_text texts[BIG_INPUTS];
    for (int i = 0; i < BIG_INPUTS; i++) {
        f.texts[i] = malloc(512);
        int n = 0;
        for (int k = 0; k < 60; k++)
            n += snprintf(f.texts[i] + n, (size_t)(512 - n), "w%d ", (i * 7 + k) % 50);
        texts[i] = (struct emb_text){f.texts[i], (size_t)n};
    }
    struct emb_error pe;
    struct emb_text one = {"hello world", 11};
    CHECK(emb_plan_build(f.t, f.m, &o, texts, BIG_INPUTS, &f.big, &pe) == 0);
    CHECK(emb_plan_build(f.t, f.m, &o, &one, 1, &f.small, &pe) == 0);
    CHECKM(f.big.n_seqs == BIG_INPUTS && f.big.seqs[0].n_ids > BUDGET / 2,
           "batcher: big plan of %d sequences, first %d tokens", f.big.n_seqs,
           f.big.n_seqs ? f.big.seqs[0].n_ids : 0);
    test_fairness(&f);
    test_deadline(&f);
    test_drain_budget(&f);
out:
    emb_plan_deinit(&f.big);
    emb_plan_deinit(&f.small);
    for (int i = 0; i < BIG_INPUTS; i++)
        free(f.texts[i]);
    eng_model_close(f.m);
    tok_close(f.t);
}
