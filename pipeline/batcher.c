/* batcher.c -- the queue and the engine thread (see batcher.h).
 *
 * DESIGN
 * HTTP threads append jobs to `queue` under `mu` (a three-line critical
 * section, redis bio.c style) and signal `cond`. The engine thread moves
 * the whole queue onto its private `active` list, then builds one pass
 * within max_batch_tokens (a pass always takes at least one sequence; the
 * context's capacity covers the longest legal one). Passes are shared
 * fairly, not first come first served: each pass first gives one sequence
 * to every job that has not run yet, then to every job with few sequences
 * left, and fills the budget left in arrival order. So a one-input request waits at most
 * about two passes (the one running when it arrives, then its own) however
 * big the jobs ahead of it, while big jobs still finish oldest first; a
 * job's own sequences run in order and every job completes. Between passes each job's alive()
 * callback is asked whether the client is still connected (if not, the job is dropped with
 * BATCHER_EGONE) and its deadline is checked (BATCHER_ETIMEDOUT). After
 * eng_encode, each job whose sequences have all run (or that failed) is
 * unlinked, its slot freed, and done() is called; from then on the job
 * belongs to the submitter again.
 *
 * Shutdown: batcher_drain sets `draining` (no new slots) and its deadline,
 * and waits on `idle` until `admitted` reaches 0. While draining, a pass
 * holds no more tokens than fit before the deadline (at the last pass's
 * tokens per second; at least drain_batch_tokens), and a pass that would
 * end past the deadline is not started: its jobs fail with
 * BATCHER_ESHUTDOWN. The pass running when the drain starts is cancelled
 * at once (eng_ctx_cancel) if it would end past the deadline (estimated at
 * the last pass's speed), and its sequences are planned again for the time
 * left, so small jobs still run. On timeout drain sets `fail_all` and
 * cancels the running pass, which stops within a fraction of a layer; the
 * engine thread then completes everything not yet computed with
 * BATCHER_ESHUTDOWN. Jobs whose passes all completed before that are
 * delivered. batcher_free then sets `stop` and joins. */
#include "pipeline/batcher.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

struct batcher {
    struct eng_ctx *ctx; /* engine thread only (after batcher_new) */
    struct batcher_params p;
    int n_embd;
    pthread_t thread;

    pthread_mutex_t mu;  /* guards the fields down to `idle` */
    pthread_cond_t cond; /* engine thread: work arrived or stop */
    struct batcher_job *queue_head, *queue_tail;
    int admitted; /* reserved + queued + running */
    int waiting;  /* submitted, not yet started */
    bool draining, fail_all, stop;
    double drain_deadline; /* monotonic; set with draining */
    bool running;          /* a pass is in eng_encode */
    double pass_end;       /* its estimated end (monotonic; 0 = unknown) */
    pthread_cond_t idle;   /* drain: admitted dropped */

    /* Engine thread only. */
    struct batcher_job *active; /* jobs pulled from the queue, in arrival order */
    struct eng_seq *seqs;       /* [cap_seqs] the pass being built */
    struct batcher_job **owner; /* [cap_seqs] job of each sequence in the pass */
    int cap_seqs;
    int pass_no;
    int budget;           /* token budget of the pass being built */
    double sec_per_token; /* of the last pass: estimates whether a pass fits the drain */
};

int batcher_reserve(struct batcher *b) {
    int rc = BATCHER_OK;
    pthread_mutex_lock(&b->mu);
    if (b->draining)
        rc = BATCHER_ESHUTDOWN;
    else if (b->admitted >= b->p.max_queue)
        rc = BATCHER_EFULL;
    else
        b->admitted++;
    pthread_mutex_unlock(&b->mu);
    return rc;
}

static void release_slot(struct batcher *b) {
    pthread_mutex_lock(&b->mu);
    if (--b->admitted == 0) pthread_cond_broadcast(&b->idle);
    pthread_mutex_unlock(&b->mu);
}

void batcher_unreserve(struct batcher *b) {
    release_slot(b);
}

void batcher_submit(struct batcher *b, struct batcher_job *j) {
    j->status = BATCHER_OK;
    j->t_submit = clock_now();
    j->t_start = j->t_end = 0;
    j->n_passes = j->next_seq = j->seqs_done = 0;
    j->last_pass = -1;
    j->next = NULL;
    pthread_mutex_lock(&b->mu);
    if (b->queue_tail)
        b->queue_tail->next = j;
    else
        b->queue_head = j;
    b->queue_tail = j;
    b->waiting++;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->mu);
}

int batcher_depth(struct batcher *b, int *waiting) {
    pthread_mutex_lock(&b->mu);
    int n = b->admitted;
    if (waiting) *waiting = b->waiting;
    pthread_mutex_unlock(&b->mu);
    return n;
}

bool batcher_saturated(struct batcher *b) {
    pthread_mutex_lock(&b->mu);
    bool full = b->admitted >= b->p.max_queue;
    pthread_mutex_unlock(&b->mu);
    return full;
}

/* Engine thread: hands j back to its submitter. j must be unlinked. */
static void finish(struct batcher *b, struct batcher_job *j, int status) {
    if (status && !j->status) j->status = status;
    j->t_end = clock_now();
    if (j->n_passes == 0) {
        pthread_mutex_lock(&b->mu);
        b->waiting--;
        pthread_mutex_unlock(&b->mu);
    }
    release_slot(b);
    j->done(j); /* j is not ours any more */
}

/* Engine thread: waits for work; moves the queue onto `active`. Returns
 * false when it is time to exit. Sets *fail_all from the drain state. */
static bool take_queue(struct batcher *b, bool *fail_all) {
    pthread_mutex_lock(&b->mu);
    while (!b->queue_head && !b->active && !b->stop)
        pthread_cond_wait(&b->cond, &b->mu);
    struct batcher_job *q = b->queue_head;
    b->queue_head = b->queue_tail = NULL;
    *fail_all = b->fail_all;
    bool run = !(b->stop && !q && !b->active);
    pthread_mutex_unlock(&b->mu);
    struct batcher_job **tail = &b->active;
    while (*tail)
        tail = &(*tail)->next;
    *tail = q;
    return run;
}

static int grow_pass(struct batcher *b, int need) {
    if (need <= b->cap_seqs) return 0;
    int cap = b->cap_seqs ? b->cap_seqs * 2 : 256;
    while (cap < need)
        cap *= 2;
    struct eng_seq *s = mem_realloc(b->seqs, sizeof(*s) * (size_t)cap);
    if (!s) return -1;
    b->seqs = s;
    struct batcher_job **o = mem_realloc(b->owner, sizeof(*o) * (size_t)cap);
    if (!o) return -1;
    b->owner = o;
    b->cap_seqs = cap;
    return 0;
}

/* Appends job j's sequences to the pass while they fit (emb_pass_take).
 * Returns false when the pass is full. */
static bool take_seqs(struct batcher *b, struct batcher_job *j, int *n, long *toks) {
    const struct emb_plan *pl = j->plan;
    if (grow_pass(b, *n + (pl->n_seqs - j->next_seq))) {
        j->status = BATCHER_ENOMEM;
        return false;
    }
    struct emb_pass p = {b->seqs, b->cap_seqs, *n, *toks, b->budget, eng_ctx_capacity(b->ctx)};
    int before = *n;
    int rc = emb_pass_take(&p, pl, &j->next_seq, j->pooled, b->n_embd);
    if (rc == EMB_EENGINE) { /* cannot happen with consistent limits; fail, don't crash */
        LOG_ERROR("sequence of %d tokens exceeds the context capacity %d",
                  pl->seqs[j->next_seq].n_ids, p.capacity);
        j->status = BATCHER_EENGINE;
    }
    for (int i = before; i < p.n; i++)
        b->owner[i] = j;
    *n = p.n;
    *toks = p.tokens;
    if (p.n > before && j->last_pass != b->pass_no) {
        j->last_pass = b->pass_no;
        if (j->n_passes++ == 0) {
            j->t_start = clock_now();
            pthread_mutex_lock(&b->mu);
            b->waiting--;
            pthread_mutex_unlock(&b->mu);
        }
    }
    return rc != 0;
}

/* Unlinks and finishes every job that is complete, failed or gone. */
static void sweep(struct batcher *b, bool fail_all) {
    struct batcher_job **pp = &b->active;
    while (*pp) {
        struct batcher_job *j = *pp;
        bool complete = j->seqs_done == j->plan->n_seqs;
        bool failed = j->status != BATCHER_OK || (fail_all && !complete);
        if (!complete && !failed) {
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        finish(b, j, fail_all && !complete ? BATCHER_ESHUTDOWN : 0);
    }
}

/* Drops jobs whose clients went away or whose deadline passed (only between
 * passes). */
static void drop_gone(struct batcher *b) {
    double now = clock_now();
    for (struct batcher_job *j = b->active; j; j = j->next) {
        if (j->status == BATCHER_OK && j->deadline > 0 && now >= j->deadline &&
            j->seqs_done < j->plan->n_seqs) {
            j->status = BATCHER_ETIMEDOUT;
            continue;
        }
        if (j->status == BATCHER_OK && j->alive && !j->alive(j)) {
            j->status = BATCHER_EGONE;
            if (b->p.on_drop) b->p.on_drop(b->p.observer_arg);
        }
    }
}

/* Takes at most one more sequence of job j into the pass (the first round of
 * a pass). Returns false when the pass is full. */
static bool take_one(struct batcher *b, struct batcher_job *j, int *n, long *toks) {
    struct emb_plan one = *j->plan;
    const struct emb_plan *full = j->plan;
    if (j->next_seq >= full->n_seqs) return true;
    one.n_seqs = j->next_seq + 1;
    j->plan = &one;
    bool more = take_seqs(b, j, n, toks);
    j->plan = full;
    return more;
}

/* The token budget of the next pass: the setting; while draining, no more
 * than fits in the time left before the deadline at the last pass's speed,
 * but at least drain_batch_tokens. So the drain runs full passes while there
 * is time, then short ones, and the deadline is kept to within one short
 * pass (fits_drain refuses a pass that would end after it). */
static int pass_budget(struct batcher *b) {
    pthread_mutex_lock(&b->mu);
    double dl = b->draining ? b->drain_deadline : 0;
    pthread_mutex_unlock(&b->mu);
    int budget = b->p.max_batch_tokens, floor_toks = b->p.drain_batch_tokens;
    if (dl <= 0 || floor_toks <= 0 || floor_toks >= budget || b->sec_per_token <= 0) return budget;
    double fit = (dl - clock_now()) / b->sec_per_token;
    if (fit < (double)budget) budget = fit > (double)floor_toks ? (int)fit : floor_toks;
    return budget;
}

/* False when draining and a pass of toks tokens, at the last pass's speed,
 * would end after the shutdown deadline. */
static bool fits_drain(struct batcher *b, long toks) {
    pthread_mutex_lock(&b->mu);
    double dl = b->draining ? b->drain_deadline : 0;
    pthread_mutex_unlock(&b->mu);
    return dl <= 0 || clock_now() + b->sec_per_token * (double)toks <= dl;
}

/* A job with at most this many sequences left gets one in every pass. */
#define SMALL_JOB_SEQS 8

/* Builds and runs one pass over the active jobs. Fair share: first every job
 * that has not run yet gets one sequence, then every job with at most
 * SMALL_JOB_SEQS left (both in arrival order); then the budget left is
 * filled in arrival order. So a small request waits at most about two
 * passes behind any big one, while big jobs still run oldest first (sharing
 * the budget evenly between big jobs would make each finish only at the
 * end, and a drain that runs out of time deliver none of them). */
static void run_pass(struct batcher *b) {
    int n = 0, n_req = 0;
    long toks = 0;
    b->pass_no++;
    b->budget = pass_budget(b);
    bool room = true;
    for (int round = 0; round < 3 && room; round++) {
        for (struct batcher_job *j = b->active; j && room; j = j->next) {
            if (j->status != BATCHER_OK) continue;
            if (round == 0 && j->n_passes > 0) continue;     /* new jobs first */
            if (round == 1 && (j->last_pass == b->pass_no || /* had its one */
                               j->plan->n_seqs - j->next_seq > SMALL_JOB_SEQS))
                continue;
            int before = n;
            bool was_in = j->last_pass == b->pass_no;
            room = round < 2 ? take_one(b, j, &n, &toks) : take_seqs(b, j, &n, &toks);
            n_req += n > before && !was_in;
        }
    }
    if (n == 0) return;
    if (!fits_drain(b, toks)) { /* it would end past the shutdown timeout: fail, don't start */
        for (int i = 0; i < n; i++)
            b->owner[i]->status = BATCHER_ESHUTDOWN;
        return;
    }
    double t0 = clock_now();
    pthread_mutex_lock(&b->mu);
    bool late = b->fail_all; /* the drain timed out while this pass was built */
    b->running = !late;
    b->pass_end = b->sec_per_token > 0 ? t0 + b->sec_per_token * (double)toks : 0;
    pthread_mutex_unlock(&b->mu);
    int rc = late ? ENG_ECANCELED : eng_encode(b->ctx, b->seqs, n);
    double dt = clock_now() - t0;
    pthread_mutex_lock(&b->mu);
    b->running = false;
    pthread_mutex_unlock(&b->mu);
    if (rc == ENG_ECANCELED) {
        /* cut short by the drain (batcher_drain): nothing was computed, so
         * the pass's sequences go back to their jobs; the next pass is
         * planned for the time left, or everything fails at the deadline */
        for (int i = 0; i < n; i++)
            b->owner[i]->next_seq--;
        LOG_INFO("shutdown: a pass of %d sequences, %ld tokens was cancelled after %.1f ms", n,
                 toks, dt * 1e3);
        return;
    }
    if (rc)
        LOG_ERROR("a pass of %d sequences, %ld tokens failed: %s%s", n, toks, eng_strerror(rc),
                  rc == ENG_EIO ? " (the weights file changed since it was loaded: restart the "
                                  "server, or run it with --embeddings-in-memory)"
                                : "");
    for (int i = 0; i < n; i++) {
        b->owner[i]->seqs_done++;
        if (rc) b->owner[i]->status = rc == ENG_ENOMEM ? BATCHER_ENOMEM : BATCHER_EENGINE;
    }
    if (toks > 0 && dt > 0) b->sec_per_token = dt / (double)toks;
    if (b->p.on_pass) b->p.on_pass(b->p.observer_arg, n, n_req, (int)toks, dt);
    LOG_DEBUG("pass %d: %d sequences from %d requests, %ld tokens, %.1f ms", b->pass_no, n, n_req,
              toks, dt * 1e3);
}

static void *engine_main(void *arg) {
    struct batcher *b = arg;
    bool fail_all = false;
    while (take_queue(b, &fail_all)) {
        drop_gone(b);
        sweep(b, fail_all); /* finishes gone jobs, or everything when failing all */
        run_pass(b);
        sweep(b, false);
    }
    return NULL;
}

struct batcher *batcher_new(struct eng_ctx *ctx, const struct batcher_params *p, char *err,
                            size_t errlen) {
    struct batcher *b = calloc(1, sizeof(*b));
    if (!b) {
        snprintf(err, errlen, "out of memory");
        eng_ctx_free(ctx);
        return NULL;
    }
    b->ctx = ctx;
    b->p = *p;
    b->n_embd = eng_model_info(eng_ctx_model(ctx))->n_embd;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cond, NULL);
    pthread_cond_init(&b->idle, NULL);
    if (pthread_create(&b->thread, NULL, engine_main, b)) {
        snprintf(err, errlen, "cannot start the engine thread");
        pthread_mutex_destroy(&b->mu);
        pthread_cond_destroy(&b->cond);
        pthread_cond_destroy(&b->idle);
        eng_ctx_free(ctx);
        free(b);
        return NULL;
    }
    return b;
}

void batcher_drain(struct batcher *b, double timeout_s) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += (time_t)timeout_s;
    dl.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
    if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&b->mu);
    b->draining = true;
    b->drain_deadline = clock_now() + timeout_s;
    /* a pass that cannot end before the deadline is cut now, so the time
     * left goes to passes that can (it is re-planned with the drain budget) */
    if (b->running && b->pass_end > b->drain_deadline) {
        LOG_INFO("shutdown: the running pass would end %.1f s after the timeout: cancelling it",
                 b->pass_end - b->drain_deadline);
        eng_ctx_cancel(b->ctx);
    }
    while (b->admitted > 0) {
        if (pthread_cond_timedwait(&b->idle, &b->mu, &dl) && b->admitted > 0 && !b->fail_all) {
            LOG_WARN("shutdown timeout: failing %d unfinished requests with 503", b->admitted);
            b->fail_all = true;
            /* the pass running now (if any) stops within a fraction of a layer */
            if (b->running) eng_ctx_cancel(b->ctx);
            pthread_cond_signal(&b->cond);
            dl.tv_sec += 3600; /* now just wait for the current pass */
        }
    }
    pthread_mutex_unlock(&b->mu);
}

void batcher_free(struct batcher *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stop = true;
    b->draining = true;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    eng_ctx_free(b->ctx);
    free(b->seqs);
    free(b->owner);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cond);
    pthread_cond_destroy(&b->idle);
    free(b);
}
