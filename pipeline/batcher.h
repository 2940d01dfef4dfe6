/* batcher.h -- the job queue in front of the one engine thread.
 *
 * HTTP threads tokenise a request into an emb_plan, wrap it in a
 * batcher_job and submit it; the engine thread packs sequences from all
 * queued jobs (any tasks mixed) into forward passes of at most
 * max_batch_tokens tokens, sharing each pass fairly between jobs (a small
 * job waits about two passes behind any big one; see batcher.c), writes
 * each job's pooled rows and calls its done() callback once all of the job's sequences have run (a
 * big job spans several passes; a pass can hold pieces of many jobs).
 *
 * Admission: batcher_reserve takes one of max_queue slots before the caller
 * spends work on tokenising; batcher_submit consumes it, batcher_unreserve
 * gives it back unused. A slot is freed when its job finishes, just before
 * done() runs.
 *
 * Ownership: the job (and its plan and pooled buffer) belongs to the
 * submitter; the batcher only borrows it from batcher_submit until it calls
 * done(), after which it never touches the job again.
 *
 * Thread-safety: batcher_reserve / unreserve / submit / depth / saturated
 * are thread-safe. batcher_new, batcher_drain and batcher_free belong to the
 * thread that runs startup and shutdown (main). done() and alive() run on
 * the engine thread and must not block for long.
 */
#ifndef EMB_PIPELINE_BATCHER_H
#define EMB_PIPELINE_BATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "pipeline/embed.h"

/* Job status / reserve results: the batcher's own codes, in their own range
 * (-2xx) so they cannot pass for another module's; the server maps them to
 * HTTP in its API layer (api_batcher_error). */
#define BATCHER_OK        0
#define BATCHER_EFULL     (-201) /* max_queue requests already admitted */
#define BATCHER_ESHUTDOWN (-202) /* draining or stopped */
#define BATCHER_EGONE     (-203) /* the client disconnected; the job was dropped */
#define BATCHER_EENGINE   (-204) /* the engine refused a pass */
#define BATCHER_ENOMEM    (-205) /* out of memory on the engine thread (a pass, or its buffers) */
#define BATCHER_ETIMEDOUT (-206) /* the job's deadline passed; its remaining work was dropped */

struct batcher_job {
    /* Set by the submitter; read-only while queued. */
    const struct emb_plan *plan; /* sequences to run (borrowed) */
    float *pooled;               /* [plan->n_outputs][n_embd] out: unnormalised span means */
    void (*done)(struct batcher_job *j);  /* engine thread; the job is the submitter's again */
    bool (*alive)(struct batcher_job *j); /* engine thread; false drops the job (may be NULL) */
    void *arg;                            /* for the callbacks */
    double deadline; /* monotonic seconds (clock_now); 0 = none. Checked between passes:
                      * past it, an unfinished job completes with BATCHER_ETIMEDOUT */

    /* Results, valid in done(). */
    int status;      /* BATCHER_OK or a BATCHER_E* code */
    double t_submit; /* monotonic seconds */
    double t_start;  /* first pass that held one of its sequences (0 if none) */
    double t_end;    /* when it finished */
    int n_passes;    /* forward passes it took part in */

    /* Engine thread only. */
    int32_t next_seq;  /* next sequence to schedule */
    int32_t seqs_done; /* sequences computed */
    int last_pass;     /* pass counter value when last scheduled */
    struct batcher_job *next;
};

struct batcher_params {
    int max_batch_tokens;   /* token budget of a pass (a longer single sequence runs alone) */
    int max_queue;          /* admitted requests before BATCHER_EFULL */
    int drain_batch_tokens; /* while draining, passes shrink to what fits before the
                             * deadline, but not below this (0 = never shrink) */
    /* Observers, called on the engine thread (may be NULL; must not block):
     * after each pass, and for each job dropped because its client left. */
    void (*on_pass)(void *arg, int n_seqs, int n_requests, int n_tokens, double seconds);
    void (*on_drop)(void *arg);
    void *observer_arg;
};

struct batcher;

/* Starts the engine thread. Takes ownership of ctx (freed by batcher_free),
 * whose capacity must hold any single sequence the plans can contain.
 * Returns NULL with a reason in err on failure (ctx is then freed too). */
struct batcher *batcher_new(struct eng_ctx *ctx, const struct batcher_params *p, char *err,
                            size_t errlen);

/* Takes an admission slot: BATCHER_OK, BATCHER_EFULL or BATCHER_ESHUTDOWN. */
int batcher_reserve(struct batcher *b);
void batcher_unreserve(struct batcher *b);

/* Queues j (status and timings are reset here). Needs a reserved slot. If
 * the batcher has been told to fail everything, j completes with
 * BATCHER_ESHUTDOWN through done() like any other job. */
void batcher_submit(struct batcher *b, struct batcher_job *j);

/* Admitted requests (reserved or queued or running); *waiting (may be NULL)
 * gets those submitted but not yet started. */
int batcher_depth(struct batcher *b, int *waiting);

/* True when no slot is free. */
bool batcher_saturated(struct batcher *b);

/* Shutdown step: refuses new reservations, lets admitted jobs finish in
 * passes that shrink (to drain_batch_tokens at least) as the deadline nears,
 * does not start a pass that would end after timeout_s, and then fails the
 * jobs still unfinished with BATCHER_ESHUTDOWN. A pass that would end after
 * timeout_s is cancelled in the engine (eng_ctx_cancel): the one running when
 * the drain starts at once, if its estimate already passes the deadline (its
 * sequences are then planned again for the time left), any other at the
 * deadline; so this returns within timeout_s plus a fraction of one layer.
 * Jobs whose sequences were all computed are delivered. Returns when
 * nothing is admitted. */
void batcher_drain(struct batcher *b, double timeout_s);

/* Stops and joins the engine thread and frees the context. Call after
 * batcher_drain. Accepts NULL. */
void batcher_free(struct batcher *b);

#endif
