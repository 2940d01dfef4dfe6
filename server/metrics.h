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

/* Most models whose series are kept (label cardinality stays bounded). */
#define MET_MAX_MODELS 8

/* Point-in-time values of one served model, labelled model="<name>". */
struct met_model_gauges {
    const char *model; /* served name */
    int queue_depth;   /* embedding requests admitted and not finished */
    int queue_waiting; /* of those, not yet started by the engine */
    int n_embd, n_layer, n_tasks, max_input_tokens;
};

/* Point-in-time values sampled by the caller when rendering. */
struct met_gauges {
    int requests_active; /* HTTP requests being handled (any route) */
    bool ready;
    int max_batch_tokens;
    int n_models; /* 0 until the models are loaded */
    struct met_model_gauges models[MET_MAX_MODELS];
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

/* Names the served models: the per-model series (inputs, tokens, passes,
 * queue and compute times, drops) are labelled model="<names[i]>" for
 * model index i. The names are borrowed and must outlive the metrics
 * object; at most MET_MAX_MODELS (more are counted as the last). Call once,
 * before the models take requests; until then no per-model series exist. */
void metrics_set_models(struct metrics *m, const char *const *names, int n);

/* One finished embeddings request of model `model`: its inputs, tokens and times. */
void metrics_embed(struct metrics *m, int model, int n_inputs, int64_t n_tokens, double queue_s,
                   double compute_s);

/* One forward pass of model `model`: sequences, distinct requests and tokens in it. */
void metrics_batch(struct metrics *m, int model, int n_seqs, int n_requests, int n_tokens,
                   double seconds);

/* A request for model `model` whose client went away before its work ran. */
void metrics_dropped(struct metrics *m, int model);

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

/* Total batches that held more than one request, over every model (for tests and logs). */
uint64_t metrics_multi_request_batches(struct metrics *m);

#endif
