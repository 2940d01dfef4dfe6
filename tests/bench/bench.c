/* bench.c -- engine throughput and latency on a (usually full-size random)
 * model: `build/bench --model DIR [--threads N] [--runs R]`.
 *
 * Prints a table and one JSON line. Speed is reported, never asserted: the
 * machines are noisy, so every figure is the median of R runs taken in one
 * process, and the reference rate (an f32 GEMM of the engine's own kind) is
 * measured in the same run so that efficiency is a ratio, not a guess.
 */
#include "engine/engine_impl.h"

#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(double *v, int n, double q) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return v[(int)floor(q * (n - 1) + 0.5)];
}

/* Model FLOPs per token for the linear layers (2 per multiply-add). */
static double linear_flops_per_token(const struct eng_info *in) {
    double H = in->n_embd, F = in->n_ff;
    return in->n_layer * 2.0 * (3 * H * H + H * H + 2 * H * F);
}

/* Attention FLOPs for one sequence of n tokens: QK^T and PV. */
static double attention_flops(const struct eng_info *in, double n) {
    return in->n_layer * 2.0 * 2.0 * n * n * in->n_embd;
}

struct shape {
    const char *name;
    int n_seqs, n_tokens, task;
};

/* Median seconds of `runs` passes over n_seqs random sequences of n_tokens. */
static double time_shape(struct eng_ctx *c, const struct eng_info *in, const struct shape *s,
                         int runs, double *p90) {
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)s->n_seqs * s->n_tokens);
    float *out = malloc(sizeof(float) * (size_t)s->n_seqs * in->n_embd);
    struct eng_seq *seqs = calloc((size_t)s->n_seqs, sizeof(*seqs));
    unsigned rs = 42;
    for (int i = 0; i < s->n_seqs; i++) {
        int32_t *q = ids + (size_t)i * s->n_tokens;
        for (int t = 0; t < s->n_tokens; t++) {
            rs = rs * 1103515245u + 12345u;
            q[t] = 4 + (int32_t)((rs >> 8) % (unsigned)(in->n_vocab - 5));
        }
        q[0] = 0;
        q[s->n_tokens - 1] = 2;
        seqs[i] = (struct eng_seq){q, s->n_tokens, s->task, 0, NULL, out + (size_t)i * in->n_embd};
    }
    double *t = malloc(sizeof(double) * (size_t)runs);
    eng_encode(c, seqs, s->n_seqs); /* warm-up: page in weights, fault buffers */
    for (int r = 0; r < runs; r++) {
        double t0 = now_s();
        ENG_ASSERT(eng_encode(c, seqs, s->n_seqs) == 0);
        t[r] = now_s() - t0;
    }
    double med = quantile(t, runs, 0.5);
    if (p90) *p90 = quantile(t, runs, 0.9);
    free(t);
    free(ids);
    free(out);
    free(seqs);
    return med;
}

/* f32 GEMM rate of the engine's own kind (4096x1024x4096 split by columns
 * over the pool's threads, OpenBLAS single-threaded in each): GFLOP/s. */
struct gemm_job {
    const float *a, *b;
    float *c;
    int m, n, k;
};
static void gemm_phase(void *arg, int ith, int nth) {
    const struct gemm_job *j = arg;
    int lo = j->n * ith / nth, hi = j->n * (ith + 1) / nth;
    ops_gemm_nt(j->m, hi - lo, j->k, j->a, j->k, j->b + (size_t)lo * j->k, j->k, NULL, j->c + lo,
                j->n);
}
static double gemm_rate(int n_threads, int runs) {
    int m = 4096, n = 4096, k = 1024;
    struct gemm_job j = {malloc(sizeof(float) * (size_t)m * k), malloc(sizeof(float) * (size_t)n * k),
                         malloc(sizeof(float) * (size_t)m * n), m, n, k};
    for (size_t i = 0; i < (size_t)m * k; i++) ((float *)j.a)[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)n * k; i++) ((float *)j.b)[i] = (float)(i % 5) * 0.1f;
    struct eng_pool *p = pool_new(n_threads);
    openblas_set_num_threads(1);
    double *t = malloc(sizeof(double) * (size_t)runs);
    pool_run(p, gemm_phase, &j);
    for (int r = 0; r < runs; r++) {
        double t0 = now_s();
        pool_run(p, gemm_phase, &j);
        t[r] = now_s() - t0;
    }
    double rate = 2.0 * m * n * k / quantile(t, runs, 0.5) / 1e9;
    pool_free(p);
    free((void *)j.a);
    free((void *)j.b);
    free(j.c);
    free(t);
    return rate;
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    int threads = 2, runs = 5, long_doc = 2048;
    const char *only = NULL; /* "doc": time the long document alone */
    enum eng_dtype dtype = ENG_DTYPE_F32;
    static const struct option lo[] = {{"model", 1, 0, 'm'}, {"threads", 1, 0, 't'},
                                       {"runs", 1, 0, 'r'},  {"long", 1, 0, 'l'}, {"only", 1, 0, 'o'}, {"dtype", 1, 0, 'd'},
                                       {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (ch == 'm') dir = optarg;
        else if (ch == 't') threads = atoi(optarg);
        else if (ch == 'r') runs = atoi(optarg);
        else if (ch == 'l') long_doc = atoi(optarg);
        else if (ch == 'o') only = optarg;
        else if (ch == 'd')
            dtype = !strcmp(optarg, "bf16")   ? ENG_DTYPE_BF16
                    : !strcmp(optarg, "int8") ? ENG_DTYPE_INT8
                    : !strcmp(optarg, "auto") ? ENG_DTYPE_AUTO
                                              : ENG_DTYPE_F32;
        else return 2;
    }
    if (!dir || threads < 1 || runs < 1) {
        fprintf(stderr, "usage: bench --model DIR [--threads N] [--runs R] [--long TOKENS]\n");
        return 2;
    }
    char err[512];
    struct eng_params p = eng_params_defaults();
    p.n_threads = threads;
    p.dtype = dtype;
    p.max_batch_tokens = long_doc > 4096 ? long_doc : 4096;
    double t0 = now_s();
    struct eng_model *m = eng_model_open(dir, &p, err, sizeof(err));
    struct eng_ctx *c = m ? eng_ctx_new(m, &p, err, sizeof(err)) : NULL;
    if (!c) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    double load_s = now_s() - t0;
    const struct eng_info *in = eng_model_info(m);
    if (only && !strcmp(only, "doc")) {
        struct shape d = {"document", 1, long_doc, 1};
        double td = time_shape(c, in, &d, runs, NULL);
        printf("document %d tokens: %.2f s, %.1f tok/s\n", long_doc, td, long_doc / td);
        return 0;
    }
    double ref = gemm_rate(threads, runs);
    struct shape batch = {"batch 32x128", 32, 128, ENG_TASK_NONE};
    struct shape batch_t = {"batch 32x128 task", 32, 128, 1};
    struct shape query = {"query 1x16", 1, 16, 0};
    struct shape doc = {"document", 1, long_doc, 1};
    double p90, tb = time_shape(c, in, &batch, runs, NULL), tbt = time_shape(c, in, &batch_t, runs, NULL);
    double tq = time_shape(c, in, &query, runs < 20 ? 20 : runs, &p90);
    double td = time_shape(c, in, &doc, runs < 3 ? runs : 3, NULL);
    double lf = linear_flops_per_token(in);
    double eff_b = 32 * 128 * lf / tb / 1e9 / ref;
    double eff_d = (long_doc * lf + attention_flops(in, long_doc)) / td / 1e9 / ref;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("dtype %s, threads %d, load %.2f s, f32 gemm 4096x1024x4096: %.1f GFLOP/s\n",
           eng_dtype_name(in->dtype), threads, load_s, ref);
    printf("%-22s %10.1f tok/s  efficiency %.0f%%\n", batch.name, 4096 / tb, 100 * eff_b);
    printf("%-22s %10.1f tok/s  (task adapter cost %.1f%%)\n", batch_t.name, 4096 / tbt,
           100 * (tbt - tb) / tb);
    printf("%-22s %10.1f ms p50, %.1f ms p90\n", query.name, 1e3 * tq, 1e3 * p90);
    printf("%-22s %10.1f tok/s  %.2f s for %d tokens, efficiency %.0f%%\n", doc.name,
           long_doc / td, td, long_doc, 100 * eff_d);
    printf("peak RSS %.2f GiB\n", ru.ru_maxrss / 1048576.0);
    printf("{\"threads\":%d,\"gemm_gflops\":%.1f,\"batch_tok_s\":%.1f,\"batch_eff\":%.3f,"
           "\"batch_task_tok_s\":%.1f,\"query_p50_ms\":%.2f,\"query_p90_ms\":%.2f,"
           "\"doc_tokens\":%d,\"doc_s\":%.3f,\"doc_eff\":%.3f,\"peak_rss_gib\":%.3f}\n",
           threads, ref, 4096 / tb, eff_b, 4096 / tbt, 1e3 * tq, 1e3 * p90, long_doc, td, eff_d,
           ru.ru_maxrss / 1048576.0);
    eng_ctx_free(c);
    eng_model_close(m);
    return 0;
}
