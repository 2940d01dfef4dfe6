/* metrics.c -- see metrics.h. Names follow Prometheus conventions
 * (embedserve_*_total counters, *_seconds histograms), and no two families
 * share a sample name in either format: a histogram X owns X_bucket, X_sum
 * and X_count, and an OpenMetrics counter X owns X_total, so a counter
 * "X_total" next to a histogram "X" would be two families called X. */
#include "server/metrics.h"

#include <dirent.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "util/strbuf.h"

#define MAX_BUCKETS 24

struct hist {
    const double *le; /* upper bounds, ascending */
    int n_le;
    uint64_t count[MAX_BUCKETS + 1]; /* per bucket (not cumulative); last = +Inf */
    double sum;
    uint64_t n;
};

/* Seconds: from a probe (1 ms) to the longest request the limits allow. One
 * request may carry --max-client-batch 2048 inputs of --max-input-tokens
 * 8192 tokens (16.8 M tokens); at the full model's CPU speed that is hours,
 * and the HTTP timeout does not cut it (it applies to idle connections). */
static const double sec_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,  0.1,  0.25,
                                0.5,   1,      2.5,   5,    10,    30,    60,   120,
                                300,   600,    1800,  3600, 7200,  14400, 28800};
/* Per forward pass: up to --max-batch-tokens (at most 2^24) tokens, so as
 * many sequences of 3+ tokens. */
static const double seq_le[] = {1,   2,    4,    8,    16,    32,    64,     128,     256,
                                512, 1024, 2048, 4096, 16384, 65536, 262144, 1048576, 4194304};
static const double req_le[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256};
static const double tok_le[] = {16,    64,    256,   1024,   2048,    4096,    8192,
                                16384, 32768, 65536, 262144, 1048576, 4194304, 16777216};

static const int status_codes[] = {200, 400, 401, 404, 405, 413, 422, 429, 500, 503, 0};
#define N_STATUS ((int)(sizeof(status_codes) / sizeof(status_codes[0])))
static const char *const route_names[MET_R_N] = {
    "/v1/embeddings", "/v1/tokenize", "/v1/models", "/health", "/ready", "/metrics", "other"};

/* What is counted per served model. */
struct met_model {
    const char *name;
    struct hist queue_dur, compute_dur, batch_dur, batch_seqs, batch_reqs, batch_toks;
    uint64_t inputs, tokens, batches, dropped, multi_batches;
};

struct metrics {
    pthread_mutex_t mu; /* guards everything below */
    uint64_t requests[MET_R_N][N_STATUS];
    uint64_t other_status[MET_R_N];
    struct hist req_dur[MET_R_N];
    int n_models;
    struct met_model models[MET_MAX_MODELS];
    struct met_build build;
    double start_s; /* metrics_new's wall time: the start time when /proc cannot say */
};

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

#define HIST_INIT(h, bounds)                                    \
    do {                                                        \
        (h).le = (bounds);                                      \
        (h).n_le = (int)(sizeof(bounds) / sizeof((bounds)[0])); \
    } while (0)

struct metrics *metrics_new(void) {
    struct metrics *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    m->start_s = wall_now();
    for (int r = 0; r < MET_R_N; r++)
        HIST_INIT(m->req_dur[r], sec_le);
    for (int i = 0; i < MET_MAX_MODELS; i++) {
        struct met_model *mm = &m->models[i];
        HIST_INIT(mm->queue_dur, sec_le);
        HIST_INIT(mm->compute_dur, sec_le);
        HIST_INIT(mm->batch_dur, sec_le);
        HIST_INIT(mm->batch_seqs, seq_le);
        HIST_INIT(mm->batch_reqs, req_le);
        HIST_INIT(mm->batch_toks, tok_le);
    }
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
    hist_add(&m->req_dur[route], seconds);
    pthread_mutex_unlock(&m->mu);
}

void metrics_set_build(struct metrics *m, const struct met_build *b) {
    pthread_mutex_lock(&m->mu);
    m->build = *b;
    pthread_mutex_unlock(&m->mu);
}

void metrics_set_models(struct metrics *m, const char *const *names, int n) {
    pthread_mutex_lock(&m->mu);
    m->n_models = n < MET_MAX_MODELS ? n : MET_MAX_MODELS;
    for (int i = 0; i < m->n_models; i++)
        m->models[i].name = names[i];
    pthread_mutex_unlock(&m->mu);
}

/* The series of model index i (caller holds mu). */
static struct met_model *model_of(struct metrics *m, int i) {
    return &m->models[i < 0 ? 0 : i < MET_MAX_MODELS ? i : MET_MAX_MODELS - 1];
}

void metrics_embed(struct metrics *m, int model, int n_inputs, int64_t n_tokens, double queue_s,
                   double compute_s) {
    pthread_mutex_lock(&m->mu);
    struct met_model *mm = model_of(m, model);
    mm->inputs += (uint64_t)n_inputs;
    mm->tokens += (uint64_t)n_tokens;
    hist_add(&mm->queue_dur, queue_s);
    hist_add(&mm->compute_dur, compute_s);
    pthread_mutex_unlock(&m->mu);
}

void metrics_batch(struct metrics *m, int model, int n_seqs, int n_requests, int n_tokens,
                   double seconds) {
    pthread_mutex_lock(&m->mu);
    struct met_model *mm = model_of(m, model);
    mm->batches++;
    mm->multi_batches += n_requests > 1;
    hist_add(&mm->batch_dur, seconds);
    hist_add(&mm->batch_seqs, n_seqs);
    hist_add(&mm->batch_reqs, n_requests);
    hist_add(&mm->batch_toks, n_tokens);
    pthread_mutex_unlock(&m->mu);
}

void metrics_dropped(struct metrics *m, int model) {
    pthread_mutex_lock(&m->mu);
    model_of(m, model)->dropped++;
    pthread_mutex_unlock(&m->mu);
}

uint64_t metrics_multi_request_batches(struct metrics *m) {
    pthread_mutex_lock(&m->mu);
    uint64_t n = 0;
    for (int i = 0; i < MET_MAX_MODELS; i++)
        n += m->models[i].multi_batches;
    pthread_mutex_unlock(&m->mu);
    return n;
}

/* A label value in the exposition formats: \\, \" and \n escaped. */
static void put_label(struct strbuf *s, const char *v) {
    sb_putc(s, '"');
    for (const char *p = v ? v : ""; *p; p++) {
        if (*p == '\\' || *p == '"')
            sb_putc(s, '\\'), sb_putc(s, *p);
        else if (*p == '\n')
            sb_puts(s, "\\n");
        else
            sb_putc(s, *p);
    }
    sb_putc(s, '"');
}

/* # HELP / # TYPE lines. A counter's family is named without "_total" in
 * OpenMetrics (its sample keeps the suffix); the text format names the
 * family as the sample. */
static void put_family(struct strbuf *s, enum met_format f, const char *name, const char *type,
                       const char *help) {
    bool counter = !strcmp(type, "counter");
    const char *sfx = counter && f == MET_FMT_TEXT ? "_total" : "";
    sb_printf(s, "# HELP %s%s %s\n# TYPE %s%s %s\n", name, sfx, help, name, sfx, type);
}

/* One histogram's samples; `label` is "" or `name="value",`. */
static void put_hist_samples(struct strbuf *s, const char *name, const char *label,
                             const struct hist *h) {
    uint64_t cum = 0;
    for (int i = 0; i < h->n_le; i++) {
        cum += h->count[i];
        sb_printf(s, "%s_bucket{%sle=\"%g\"} %llu\n", name, label, h->le[i],
                  (unsigned long long)cum);
    }
    const char *open = *label ? "{" : "";
    size_t ll = strlen(label);
    char lab[320];
    snprintf(lab, sizeof(lab), "%.*s", ll ? (int)ll - 1 : 0, label); /* without the comma */
    const char *close = *label ? "}" : "";
    sb_printf(s, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, label, (unsigned long long)h->n);
    sb_printf(s, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", name, open, lab, close, h->sum, name,
              open, lab, close, (unsigned long long)h->n);
}

/* `model="<name>",` (escaped) into out[n], for a histogram's label prefix. */
static void model_label(const char *name, char *out, size_t n) {
    struct strbuf s;
    sb_init(&s);
    sb_puts(&s, "model=");
    put_label(&s, name);
    sb_putc(&s, ',');
    size_t len = 0;
    char *t = sb_detach(&s, &len);
    snprintf(out, n, "%s", t ? t : "");
    free(t);
}

/* A histogram with one series per model; `off` is the offset of the
 * struct hist inside struct met_model. */
static void put_model_hist(struct strbuf *s, enum met_format f, const char *name, const char *help,
                           const struct metrics *m, size_t off) {
    put_family(s, f, name, "histogram", help);
    for (int i = 0; i < m->n_models; i++) {
        char label[300];
        model_label(m->models[i].name, label, sizeof(label));
        put_hist_samples(s, name, label, (const struct hist *)((const char *)&m->models[i] + off));
    }
}

/* A counter with one series per model; name is the family name, without
 * "_total"; `off` the offset of the uint64_t inside struct met_model. */
static void put_model_counter(struct strbuf *s, enum met_format f, const char *name,
                              const char *help, const struct metrics *m, size_t off) {
    put_family(s, f, name, "counter", help);
    for (int i = 0; i < m->n_models; i++) {
        sb_printf(s, "%s_total{model=", name);
        put_label(s, m->models[i].name);
        sb_printf(s, "} %llu\n",
                  (unsigned long long)*(const uint64_t *)((const char *)&m->models[i] + off));
    }
}

static void put_gauge(struct strbuf *s, enum met_format f, const char *name, const char *help,
                      double v) {
    put_family(s, f, name, "gauge", help);
    sb_printf(s, "%s %.17g\n", name, v);
}

static void put_requests(struct strbuf *s, enum met_format f, const struct metrics *m) {
    const char *n = "embedserve_requests";
    put_family(s, f, n, "counter", "HTTP requests by route and status.");
    for (int r = 0; r < MET_R_N; r++) {
        for (int i = 0; i < N_STATUS - 1; i++)
            if (m->requests[r][i])
                sb_printf(s, "%s_total{route=\"%s\",status=\"%d\"} %llu\n", n, route_names[r],
                          status_codes[i], (unsigned long long)m->requests[r][i]);
        if (m->other_status[r])
            sb_printf(s, "%s_total{route=\"%s\",status=\"other\"} %llu\n", n, route_names[r],
                      (unsigned long long)m->other_status[r]);
    }
}

static void put_durations(struct strbuf *s, enum met_format f, const struct metrics *m) {
    const char *n = "embedserve_request_duration_seconds";
    put_family(s, f, n, "histogram", "End-to-end HTTP request time, by route.");
    for (int r = 0; r < MET_R_N; r++) {
        if (!m->req_dur[r].n) continue;
        char label[64];
        snprintf(label, sizeof(label), "route=\"%s\",", route_names[r]);
        put_hist_samples(s, n, label, &m->req_dur[r]);
    }
}

static void put_gauges(struct strbuf *s, enum met_format f, const struct met_gauges *g) {
    int n = g->n_models < MET_MAX_MODELS ? g->n_models : MET_MAX_MODELS;
    put_family(s, f, "embedserve_queue_depth", "gauge",
               "Embedding requests admitted and not finished, by model.");
    for (int i = 0; i < n; i++) {
        sb_puts(s, "embedserve_queue_depth{model=");
        put_label(s, g->models[i].model);
        sb_printf(s, "} %d\n", g->models[i].queue_depth);
    }
    put_family(s, f, "embedserve_queue_waiting", "gauge",
               "Admitted requests the engine has not started, by model.");
    for (int i = 0; i < n; i++) {
        sb_puts(s, "embedserve_queue_waiting{model=");
        put_label(s, g->models[i].model);
        sb_printf(s, "} %d\n", g->models[i].queue_waiting);
    }
    put_gauge(s, f, "embedserve_requests_active", "HTTP requests being handled.",
              g->requests_active);
    put_gauge(s, f, "embedserve_ready",
              "1 when every model is loaded and no model's queue is full.", g->ready);
    put_family(s, f, "embedserve_model_info", "gauge", "The served models.");
    for (int i = 0; i < n; i++) {
        const struct met_model_gauges *mg = &g->models[i];
        sb_puts(s, "embedserve_model_info{model=");
        put_label(s, mg->model);
        sb_printf(s,
                  ",n_embd=\"%d\",n_layer=\"%d\",n_tasks=\"%d\",max_input_tokens=\"%d\","
                  "max_batch_tokens=\"%d\"} 1\n",
                  mg->n_embd, mg->n_layer, mg->n_tasks, mg->max_input_tokens, g->max_batch_tokens);
    }
}

static void put_build(struct strbuf *s, enum met_format f, const struct met_build *b) {
    put_family(s, f, "embedserve_build_info", "gauge",
               "Version, git commit, matrix-product precision and CPU kernels in use.");
    sb_puts(s, "embedserve_build_info{version=");
    put_label(s, b->version ? b->version : "unknown");
    sb_puts(s, ",commit=");
    put_label(s, b->commit ? b->commit : "unknown");
    sb_puts(s, ",dtype=");
    put_label(s, b->dtype ? b->dtype : "");
    sb_puts(s, ",kernels=");
    put_label(s, b->kernels ? b->kernels : "");
    sb_puts(s, "} 1\n");
}

/* ---- process_* (the names every Prometheus client library uses) ---------- */

struct proc_stat {
    bool ok;
    double cpu_s, start_s, vsize, rss;
};

/* /proc/self/stat fields 14-15 (utime, stime), 22 (starttime), 23 (vsize)
 * and 24 (rss in pages), counted after the ")" that closes the command. */
static struct proc_stat read_proc_stat(void) {
    struct proc_stat ps = {0};
    char buf[1024];
    FILE *fp = fopen("/proc/self/stat", "r");
    if (!fp) return ps;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p) return ps;
    unsigned long long v[24] = {0}; /* v[i] = field i+3 */
    int k = 0;
    p += 2;         /* ") " */
    if (*p) p += 2; /* field 3, the state letter */
    for (k = 1; k < 22 && *p; k++) {
        char *end;
        v[k] = strtoull(p, &end, 10);
        if (end == p) break;
        p = end + (*end == ' ');
    }
    if (k < 22) return ps;
    double tck = (double)sysconf(_SC_CLK_TCK);
    if (tck <= 0) tck = 100;
    ps.cpu_s = (double)(v[14 - 3] + v[15 - 3]) / tck;
    ps.vsize = (double)v[23 - 3];
    ps.rss = (double)v[24 - 3] * (double)sysconf(_SC_PAGESIZE);
    double btime = 0;
    if ((fp = fopen("/proc/stat", "r"))) {
        char line[256];
        while (fgets(line, sizeof(line), fp))
            if (!strncmp(line, "btime ", 6)) btime = strtod(line + 6, NULL);
        fclose(fp);
    }
    ps.start_s = btime > 0 ? btime + (double)v[22 - 3] / tck : 0;
    ps.ok = true;
    return ps;
}

/* Open descriptors: the entries of /proc/self/fd, less the one reading it. */
static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

static void put_process(struct strbuf *s, enum met_format f, double start_fallback) {
    struct proc_stat ps = read_proc_stat();
    if (ps.ok) {
        put_family(s, f, "process_cpu_seconds", "counter",
                   "User and system CPU time spent, in seconds.");
        sb_printf(s, "process_cpu_seconds_total %.2f\n", ps.cpu_s);
        put_gauge(s, f, "process_resident_memory_bytes", "Resident memory size in bytes.", ps.rss);
        put_gauge(s, f, "process_virtual_memory_bytes", "Virtual memory size in bytes.", ps.vsize);
    }
    put_gauge(s, f, "process_start_time_seconds",
              "Start time of the process since the Unix epoch, in seconds.",
              ps.ok && ps.start_s > 0 ? ps.start_s : start_fallback);
    int fds = count_fds();
    if (fds >= 0) put_gauge(s, f, "process_open_fds", "Open file descriptors.", fds);
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY)
        put_gauge(s, f, "process_max_fds", "Limit on open file descriptors.", (double)rl.rlim_cur);
}

const char *metrics_content_type(enum met_format f) {
    return f == MET_FMT_OPENMETRICS ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                                    : "text/plain; version=0.0.4; charset=utf-8";
}

enum met_format metrics_format_for(const char *accept) {
    return accept && strstr(accept, "application/openmetrics-text") ? MET_FMT_OPENMETRICS
                                                                    : MET_FMT_TEXT;
}

char *metrics_render(struct metrics *m, const struct met_gauges *g, enum met_format f,
                     size_t *len) {
    struct strbuf s;
    sb_init(&s);
    pthread_mutex_lock(&m->mu);
    struct metrics c = *m; /* a consistent snapshot; formatted outside the lock */
    pthread_mutex_unlock(&m->mu);
    put_requests(&s, f, &c);
    put_durations(&s, f, &c);
#define MM(field) offsetof(struct met_model, field)
    put_model_hist(&s, f, "embedserve_queue_duration_seconds",
                   "Embedding requests: admission to first forward pass.", &c, MM(queue_dur));
    put_model_hist(&s, f, "embedserve_inference_duration_seconds",
                   "Embedding requests: first forward pass to last.", &c, MM(compute_dur));
    put_model_hist(&s, f, "embedserve_batch_duration_seconds", "Forward pass time.", &c,
                   MM(batch_dur));
    put_model_hist(&s, f, "embedserve_batch_sequences", "Sequences per forward pass.", &c,
                   MM(batch_seqs));
    put_model_hist(&s, f, "embedserve_batch_requests", "Distinct requests per forward pass.", &c,
                   MM(batch_reqs));
    /* Its _sum is the total of tokens fed to forward passes (there is no
     * separate counter: "embedserve_batch_tokens_total" would clash). */
    put_model_hist(&s, f, "embedserve_batch_tokens", "Tokens per forward pass.", &c,
                   MM(batch_toks));
    put_model_counter(&s, f, "embedserve_inputs", "Inputs embedded.", &c, MM(inputs));
    put_model_counter(&s, f, "embedserve_tokens", "Tokens of embedded inputs (usage).", &c,
                      MM(tokens));
    put_model_counter(&s, f, "embedserve_batches", "Forward passes run.", &c, MM(batches));
    put_model_counter(&s, f, "embedserve_multi_request_batches",
                      "Forward passes that held more than one request.", &c, MM(multi_batches));
    put_model_counter(&s, f, "embedserve_dropped_requests",
                      "Requests dropped because the client disconnected.", &c, MM(dropped));
#undef MM
    put_gauges(&s, f, g);
    put_build(&s, f, &c.build);
    put_process(&s, f, c.start_s);
    if (f == MET_FMT_OPENMETRICS) sb_puts(&s, "# EOF\n");
    return sb_detach(&s, len);
}
