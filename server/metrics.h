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

/* What /metrics reports as embedserve_build_info. All strings are borrowed
 * and must outlive the metrics object (string literals, or model-owned
 * strings while the model is loaded). */
struct met_build {
    const char *version; /* release, e.g. "0.1.0" */
    const char *commit;  /* git commit the binary was built from, or "unknown" */
    const char *dtype;   /* matrix-product precision in use ("f32", "bf16", ...) */
    const char *kernels; /* CPU kernels the engine chose */
};

/* Returns NULL on oom; free with metrics_free (accepts NULL). */
struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* Sets the build/engine description (once the model is loaded; before that
 * embedserve_build_info carries version and commit only). */
void metrics_set_build(struct metrics *m, const struct met_build *b);

/* One finished HTTP request; `seconds` goes to that route's duration
 * histogram, so cheap probes do not dilute the embedding latency. */
void metrics_request(struct metrics *m, int route, int status, double seconds);

/* One finished embeddings request: its inputs, tokens and times. */
void metrics_embed(struct metrics *m, int n_inputs, int64_t n_tokens, double queue_s,
                   double compute_s);

/* One forward pass: sequences, distinct requests and tokens in it. */
void metrics_batch(struct metrics *m, int n_seqs, int n_requests, int n_tokens, double seconds);

/* A request whose client went away before its work ran. */
void metrics_dropped(struct metrics *m);

/* Exposition formats metrics_render writes. */
enum met_format {
    MET_FMT_TEXT,        /* Prometheus text format 0.0.4 */
    MET_FMT_OPENMETRICS, /* OpenMetrics 1.0.0 text (counters TYPE'd without _total, "# EOF") */
};

/* The Content-Type of a format. */
const char *metrics_content_type(enum met_format f);

/* The format a scraper asks for in its Accept header (NULL = text). */
enum met_format metrics_format_for(const char *accept);

/* Renders every metric, the gauges in *g and the process_* metrics (read
 * from /proc/self). Returns a malloc'ed body or NULL on oom. */
char *metrics_render(struct metrics *m, const struct met_gauges *g, enum met_format f, size_t *len);

/* Total batches that held more than one request (for tests and logs). */
uint64_t metrics_multi_request_batches(struct metrics *m);

#endif
