/* metrics.c -- see metrics.h. Names follow Prometheus conventions
 * (embedserve_*_total counters, *_seconds histograms). */
#include "server/metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/strbuf.h"

#define MAX_BUCKETS 16

struct hist {
    const double *le; /* upper bounds, ascending */
    int n_le;
    uint64_t count[MAX_BUCKETS + 1]; /* per bucket (not cumulative); last = +Inf */
    double sum;
    uint64_t n;
};

static const double sec_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                0.25,  0.5,    1,     2.5,  5,     10,   30};
static const double seq_le[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
static const double req_le[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128};
static const double tok_le[] = {16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536};

static const int status_codes[] = {200, 400, 401, 404, 405, 413, 422, 429, 500, 503, 0};
#define N_STATUS ((int)(sizeof(status_codes) / sizeof(status_codes[0])))
static const char *const route_names[MET_R_N] = {
    "/v1/embeddings", "/v1/tokenize", "/v1/models", "/health", "/ready", "/metrics", "other"};

struct metrics {
    pthread_mutex_t mu; /* guards everything below */
    uint64_t requests[MET_R_N][N_STATUS];
    uint64_t other_status[MET_R_N];
    struct hist req_dur, queue_dur, compute_dur, batch_dur, batch_seqs, batch_reqs, batch_toks;
    uint64_t inputs, tokens, batches, batch_tokens, dropped, multi_batches;
};

#define HIST_INIT(h, bounds)                                    \
    do {                                                        \
        (h).le = (bounds);                                      \
        (h).n_le = (int)(sizeof(bounds) / sizeof((bounds)[0])); \
    } while (0)

struct metrics *metrics_new(void) {
    struct metrics *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    HIST_INIT(m->req_dur, sec_le);
    HIST_INIT(m->queue_dur, sec_le);
    HIST_INIT(m->compute_dur, sec_le);
    HIST_INIT(m->batch_dur, sec_le);
    HIST_INIT(m->batch_seqs, seq_le);
    HIST_INIT(m->batch_reqs, req_le);
    HIST_INIT(m->batch_toks, tok_le);
    return m;
}

void metrics_free(struct metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static void hist_add(struct hist *h, double v) {
    int i = 0;
    while (i < h->n_le && v > h->le[i])
        i++;
    h->count[i]++;
    h->sum += v;
    h->n++;
}

void metrics_request(struct metrics *m, int route, int status, double seconds) {
    if (route < 0 || route >= MET_R_N) route = MET_R_OTHER;
    int si = 0;
    while (status_codes[si] && status_codes[si] != status)
        si++;
    pthread_mutex_lock(&m->mu);
    if (status_codes[si])
        m->requests[route][si]++;
    else
        m->other_status[route]++;
    hist_add(&m->req_dur, seconds);
    pthread_mutex_unlock(&m->mu);
}

void metrics_embed(struct metrics *m, int n_inputs, int64_t n_tokens, double queue_s,
                   double compute_s) {
    pthread_mutex_lock(&m->mu);
    m->inputs += (uint64_t)n_inputs;
    m->tokens += (uint64_t)n_tokens;
    hist_add(&m->queue_dur, queue_s);
    hist_add(&m->compute_dur, compute_s);
    pthread_mutex_unlock(&m->mu);
}

void metrics_batch(struct metrics *m, int n_seqs, int n_requests, int n_tokens, double seconds) {
    pthread_mutex_lock(&m->mu);
    m->batches++;
    m->batch_tokens += (uint64_t)n_tokens;
    m->multi_batches += n_requests > 1;
    hist_add(&m->batch_dur, seconds);
    hist_add(&m->batch_seqs, n_seqs);
    hist_add(&m->batch_reqs, n_requests);
    hist_add(&m->batch_toks, n_tokens);
    pthread_mutex_unlock(&m->mu);
}

void metrics_dropped(struct metrics *m) {
    pthread_mutex_lock(&m->mu);
    m->dropped++;
    pthread_mutex_unlock(&m->mu);
}

uint64_t metrics_multi_request_batches(struct metrics *m) {
    pthread_mutex_lock(&m->mu);
    uint64_t n = m->multi_batches;
    pthread_mutex_unlock(&m->mu);
    return n;
}

static void put_hist(struct strbuf *s, const char *name, const char *help, const struct hist *h) {
    sb_printf(s, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < h->n_le; i++) {
        cum += h->count[i];
        sb_printf(s, "%s_bucket{le=\"%g\"} %llu\n", name, h->le[i], (unsigned long long)cum);
    }
    sb_printf(s, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
              (unsigned long long)h->n, name, h->sum, name, (unsigned long long)h->n);
}

static void put_counter(struct strbuf *s, const char *name, const char *help, uint64_t v) {
    sb_printf(s, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
              (unsigned long long)v);
}

static void put_gauge(struct strbuf *s, const char *name, const char *help, double v) {
    sb_printf(s, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", name, help, name, name, v);
}

static void put_requests(struct strbuf *s, const struct metrics *m) {
    const char *n = "embedserve_requests_total";
    sb_printf(s, "# HELP %s HTTP requests by route and status.\n# TYPE %s counter\n", n, n);
    for (int r = 0; r < MET_R_N; r++) {
        for (int i = 0; i < N_STATUS - 1; i++)
            if (m->requests[r][i])
                sb_printf(s, "%s{route=\"%s\",status=\"%d\"} %llu\n", n, route_names[r],
                          status_codes[i], (unsigned long long)m->requests[r][i]);
        if (m->other_status[r])
            sb_printf(s, "%s{route=\"%s\",status=\"other\"} %llu\n", n, route_names[r],
                      (unsigned long long)m->other_status[r]);
    }
}

static void put_gauges(struct strbuf *s, const struct met_gauges *g) {
    put_gauge(s, "embedserve_queue_depth", "Embedding requests admitted and not finished.",
              g->queue_depth);
    put_gauge(s, "embedserve_queue_waiting", "Admitted requests the engine has not started.",
              g->queue_waiting);
    put_gauge(s, "embedserve_requests_active", "HTTP requests being handled.", g->requests_active);
    put_gauge(s, "embedserve_ready", "1 when the model is loaded and the queue has room.",
              g->ready);
    sb_puts(s, "# HELP embedserve_model_info The served model.\n"
               "# TYPE embedserve_model_info gauge\nembedserve_model_info{model=");
    sb_json_str(s, g->model ? g->model : "", g->model ? strlen(g->model) : 0);
    sb_printf(s,
              ",n_embd=\"%d\",n_layer=\"%d\",n_tasks=\"%d\",max_input_tokens=\"%d\","
              "max_batch_tokens=\"%d\"} 1\n",
              g->n_embd, g->n_layer, g->n_tasks, g->max_input_tokens, g->max_batch_tokens);
}

char *metrics_render(struct metrics *m, const struct met_gauges *g, size_t *len) {
    struct strbuf s;
    sb_init(&s);
    pthread_mutex_lock(&m->mu);
    struct metrics c = *m; /* a consistent snapshot; formatted outside the lock */
    pthread_mutex_unlock(&m->mu);
    put_requests(&s, &c);
    put_hist(&s, "embedserve_request_duration_seconds", "End-to-end HTTP request time.",
             &c.req_dur);
    put_hist(&s, "embedserve_queue_duration_seconds",
             "Embedding requests: admission to first forward pass.", &c.queue_dur);
    put_hist(&s, "embedserve_inference_duration_seconds",
             "Embedding requests: first forward pass to last.", &c.compute_dur);
    put_hist(&s, "embedserve_batch_duration_seconds", "Forward pass time.", &c.batch_dur);
    put_hist(&s, "embedserve_batch_sequences", "Sequences per forward pass.", &c.batch_seqs);
    put_hist(&s, "embedserve_batch_requests", "Distinct requests per forward pass.", &c.batch_reqs);
    put_hist(&s, "embedserve_batch_tokens", "Tokens per forward pass.", &c.batch_toks);
    put_counter(&s, "embedserve_inputs_total", "Inputs embedded.", c.inputs);
    put_counter(&s, "embedserve_tokens_total", "Tokens of embedded inputs (usage).", c.tokens);
    put_counter(&s, "embedserve_batches_total", "Forward passes run.", c.batches);
    put_counter(&s, "embedserve_batch_tokens_total", "Tokens fed to forward passes.",
                c.batch_tokens);
    put_counter(&s, "embedserve_multi_request_batches_total",
                "Forward passes that held more than one request.", c.multi_batches);
    put_counter(&s, "embedserve_dropped_requests_total",
                "Requests dropped because the client disconnected.", c.dropped);
    put_gauges(&s, g);
    return sb_detach(&s, len);
}
