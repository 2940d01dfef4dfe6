/* metrics.h -- Prometheus counters and histograms for /metrics.
 *
 * Thread-safety: every function is thread-safe (one mutex guards all
 * values; critical sections are a few additions, no I/O, no allocation).
 */
#ifndef EMB_SERVER_METRICS_H
#define EMB_SERVER_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Route labels (a fixed set, so label cardinality stays bounded). */
enum met_route {
    MET_R_EMBEDDINGS,
    MET_R_TOKENIZE,
    MET_R_MODELS,
    MET_R_HEALTH,
    MET_R_READY,
    MET_R_METRICS,
    MET_R_OTHER,
    MET_R_N
};

/* Point-in-time values sampled by the caller when rendering. */
struct met_gauges {
    int queue_depth;     /* embedding requests admitted and not finished */
    int queue_waiting;   /* of those, not yet started by the engine */
    int requests_active; /* HTTP requests being handled (any route) */
    bool ready;
    const char *model; /* served name */
    int n_embd, n_layer, n_tasks, max_input_tokens, max_batch_tokens;
};

struct metrics;

/* Returns NULL on oom; free with metrics_free (accepts NULL). */
struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* One finished HTTP request. */
void metrics_request(struct metrics *m, int route, int status, double seconds);

/* One finished embeddings request: its inputs, tokens and times. */
void metrics_embed(struct metrics *m, int n_inputs, int64_t n_tokens, double queue_s,
                   double compute_s);

/* One forward pass: sequences, distinct requests and tokens in it. */
void metrics_batch(struct metrics *m, int n_seqs, int n_requests, int n_tokens, double seconds);

/* A request whose client went away before its work ran. */
void metrics_dropped(struct metrics *m);

/* Renders the text exposition format (version 0.0.4). Returns a malloc'ed
 * body or NULL on oom. */
char *metrics_render(struct metrics *m, const struct met_gauges *g, size_t *len);

/* Total batches that held more than one request (for tests and logs). */
uint64_t metrics_multi_request_batches(struct metrics *m);

#endif
