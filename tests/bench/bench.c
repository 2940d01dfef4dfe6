/* bench.c -- engine throughput and latency on a (usually full-size random)
 * model: `build/bench --model DIR [--dtype f32|bf16|int8] [--threads N]
 * [--runs R] [--quick] [--reduced] [--cpu-features LEVEL]
 * [--batch-only [--task T] | --doc-only N]`, or
 * `build/bench --levels`. tests/bench/run.sh runs it per kernel level and
 * precision and over HTTP, and prints the summary tables (`make bench`).
 *
 * Prints a table and one JSON line. Speed is reported, never asserted: the
 * machines are noisy, so every figure is the median of R runs taken in one
 * process, and the reference rate (a GEMM of the same precision by the
 * kernel the engine runs at the same level) is measured in the same run so
 * that efficiency is a ratio, not a guess.
 *
 * --cpu-features LEVEL (default: EMBEDSERVE_CPU_FEATURES, else auto) forces
 * a kernel level below the machine's own, as the server's setting does.
 * --levels prints, for each level this CPU can run (lowest first), one line
 * "LEVEL DTYPE KERNEL" per precision the engine has a kernel for there: the
 * list run.sh loops over. --reduced is the cheaper set for the lower levels
 * (implies --quick): no mixed-task batch, the warm-up pass is one short
 * query instead of a full batch, the query timed 10 times, and each shape
 * timed R times or until its runs have taken 30 s, at least once.
 */
#include "engine/engine_impl.h"
#include "engine/cpu.h"

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

/* Model FLOPs per token for the linear layers (2 per multiply-add); a
 * gated MLP's up projection is twice as wide. */
static double linear_flops_per_token(const struct eng_model *m) {
    const struct eng_info *in = eng_model_info(m);
    double H = in->n_embd, F = in->n_ff, up = m->arch->ffn == ENG_FFN_GEGLU ? 2 : 1;
    return in->n_layer * 2.0 * (3 * H * H + H * H + (up + 1) * H * F);
}

/* Attention FLOPs for one sequence of n tokens: QK^T and PV. */
static double attention_flops(const struct eng_info *in, double n) {
    return in->n_layer * 2.0 * 2.0 * n * n * in->n_embd;
}

struct shape {
    const char *name;
    int n_seqs, n_tokens;
    int task;    /* -2: cycle through every task and none */
    int n_spans; /* > 0: late chunking, spans of n_tokens / n_spans */
};

/* --reduced: a shape's runs stop once they have taken this long (a
 * generic-level batch pass takes minutes); 0: every run. */
static double shape_budget_s;
enum { REDUCED_SHAPE_S = 30 };

/* One shape's random sequences and output, built once and timed many times. */
struct shape_data {
    int32_t *ids, *spans;
    float *out;
    struct eng_seq *seqs;
    int n_seqs;
};

static void shape_build(struct shape_data *d, const struct eng_info *in, const struct shape *s) {
    int H = in->n_embd, n_out = s->n_spans > 0 ? s->n_spans : 1;
    d->ids = malloc(sizeof(int32_t) * (size_t)s->n_seqs * s->n_tokens);
    d->spans = malloc(sizeof(int32_t) * 2 * (size_t)n_out);
    d->out = malloc(sizeof(float) * (size_t)s->n_seqs * n_out * H);
    d->seqs = calloc((size_t)s->n_seqs, sizeof(*d->seqs));
    d->n_seqs = s->n_seqs;
    unsigned rs = 42;
    for (int k = 0; k < n_out; k++) {
        d->spans[2 * k] = k * s->n_tokens / n_out;
        d->spans[2 * k + 1] = (k + 1) * s->n_tokens / n_out;
    }
    for (int i = 0; i < s->n_seqs; i++) {
        int32_t *q = d->ids + (size_t)i * s->n_tokens;
        for (int t = 0; t < s->n_tokens; t++) {
            rs = rs * 1103515245u + 12345u;
            q[t] = 4 + (int32_t)((rs >> 8) % (unsigned)(in->n_vocab - 5));
        }
        q[0] = 0;
        q[s->n_tokens - 1] = 2;
        int task = s->task == -2 ? i % (in->n_tasks + 1) - 1 : s->task;
        if (task >= in->n_tasks) task = ENG_TASK_NONE; /* a family without adapters */
        d->seqs[i] = (struct eng_seq){q,
                                      s->n_tokens,
                                      task,
                                      s->n_spans,
                                      s->n_spans ? d->spans : NULL,
                                      d->out + (size_t)i * n_out * H};
    }
}

static void shape_free(struct shape_data *d) {
    free(d->ids);
    free(d->spans);
    free(d->out);
    free(d->seqs);
}

/* Seconds of one pass over the shape's sequences. */
static double shape_pass(struct eng_ctx *c, struct shape_data *d) {
    double t0 = now_s();
    ENG_ASSERT(eng_encode(c, d->seqs, d->n_seqs) == 0);
    return now_s() - t0;
}

/* Median (and p90) seconds of `runs` passes over random sequences (fewer
 * once shape_budget_s is spent, at least one). */
static double time_shape(struct eng_ctx *c, const struct eng_info *in, const struct shape *s,
                         int runs, int warm, double *p90) {
    struct shape_data d;
    shape_build(&d, in, s);
    double *t = malloc(sizeof(double) * (size_t)runs);
    if (warm) shape_pass(c, &d); /* page in weights, fault buffers */
    double spent = 0;
    for (int r = 0; r < runs; r++) {
        t[r] = shape_pass(c, &d);
        spent += t[r];
        if (shape_budget_s > 0 && spent >= shape_budget_s) runs = r + 1;
    }
    double med = quantile(t, runs, 0.5);
    if (p90) *p90 = quantile(t, runs, 0.9);
    free(t);
    shape_free(&d);
    return med;
}

/* The cost of b relative to a (b / a - 1), from `runs` pairs of passes
 * taken alternately (a b, b a, a b, ...): each pair sees the same machine
 * load, so the median of the pairs' ratios is not the drift between two
 * timing blocks, and neither shape always runs second. *ta, *tb: the
 * medians of each shape's passes. */
static double time_pairs(struct eng_ctx *c, const struct eng_info *in, const struct shape *a,
                         const struct shape *b, int runs, double *ta, double *tb) {
    struct shape_data da, db;
    shape_build(&da, in, a);
    shape_build(&db, in, b);
    double *t = malloc(sizeof(double) * 3 * (size_t)runs), *t1 = t + runs, *ratio = t + 2 * runs;
    for (int r = 0; r < runs; r++) {
        if (r % 2 == 0) {
            t[r] = shape_pass(c, &da);
            t1[r] = shape_pass(c, &db);
        } else { /* b first: a drift within a pair (clocks, caches) favours neither */
            t1[r] = shape_pass(c, &db);
            t[r] = shape_pass(c, &da);
        }
        ratio[r] = t1[r] / t[r];
    }
    *ta = quantile(t, runs, 0.5);
    *tb = quantile(t1, runs, 0.5);
    double cost = quantile(ratio, runs, 0.5) - 1;
    free(t);
    shape_free(&da);
    shape_free(&db);
    return cost;
}

/* The machine's rate for a 4096x1024x4096 product in one precision, by the
 * kernel the engine picks under cpu_mask, computed the engine's way (columns
 * split over the pool's threads): GFLOP/s. */
struct gemm_job {
    const struct wmat *w;
    const float *x;
    float *y;
    int m;
    void **scratch;
};
static void gemm_phase(void *arg, int ith, int nth) {
    const struct gemm_job *j = arg;
    int n = j->w->n_out, lo = (n / 16) * ith / nth * 16,
        hi = ith == nth - 1 ? n : (n / 16) * (ith + 1) / nth * 16;
    wmat_gemm(j->w, j->m, j->x, j->w->n_in, NULL, j->y, n, lo, hi, j->scratch[ith]);
}
static double gemm_rate(enum wmat_kind kind, uint32_t cpu_mask, int n_threads, int runs) {
    int m = 4096, n = 4096, k = 1024;
    float *w32 = malloc(sizeof(float) * (size_t)n * k), *x = malloc(sizeof(float) * (size_t)m * k);
    float *y = malloc(sizeof(float) * (size_t)m * n);
    unsigned rs = 7;
    for (size_t i = 0; i < (size_t)n * k; i++) {
        rs = rs * 1103515245u + 12345u;
        w32[i] = ((float)((rs >> 8) & 0xFFFF) / 32768.0f - 1.0f) * 0.05f;
    }
    for (size_t i = 0; i < (size_t)m * k; i++)
        x[i] = (float)((int)(i % 13) - 6) * 0.1f;
    struct wmat w;
    double rate = 0;
    if (wmat_init(&w, kind, cpu_mask, w32, n, k) == 0) {
        void *scratch[64] = {0};
        for (int i = 0; i < n_threads && i < 64; i++)
            scratch[i] = malloc(wmat_scratch_bytes(&w, m) + 1);
        struct gemm_job j = {&w, x, y, m, scratch};
        struct eng_team *p = team_new(n_threads);
        double *t = malloc(sizeof(double) * (size_t)runs);
        team_run(p, gemm_phase, &j);
        for (int r = 0; r < runs; r++) {
            double t0 = now_s();
            team_run(p, gemm_phase, &j);
            t[r] = now_s() - t0;
        }
        rate = 2.0 * m * n * k / quantile(t, runs, 0.5) / 1e9;
        team_free(p);
        free(t);
        for (int i = 0; i < n_threads && i < 64; i++)
            free(scratch[i]);
        wmat_deinit(&w);
    }
    free(w32);
    free(x);
    free(y);
    return rate;
}

static enum eng_dtype dtype_parse(const char *s) {
    return !strcmp(s, "bf16")   ? ENG_DTYPE_BF16
           : !strcmp(s, "int8") ? ENG_DTYPE_INT8
           : !strcmp(s, "auto") ? ENG_DTYPE_AUTO
                                : ENG_DTYPE_F32;
}

static const struct {
    const char *name;
    enum wmat_kind kind;
} precisions[] = {{"f32", WMAT_F32}, {"bf16", WMAT_BF16}, {"int8", WMAT_INT8}};

/* --levels: each level of this CPU and the precisions the engine's kernel
 * table (the one the engine consults when it opens a model) has there. */
static int list_levels(void) {
    uint32_t masks[16];
    const char *names[16];
    int n = cpu_levels(cpu_detect(), masks, names, 16);
    for (int i = 0; i < n; i++)
        for (size_t d = 0; d < sizeof(precisions) / sizeof(precisions[0]); d++) {
            const struct gemm_kernel *k = gemm_kernel_for(precisions[d].kind, masks[i]);
            if (k) printf("%s %s %s\n", names[i], precisions[d].name, gemm_kernel_name(k));
        }
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    int threads = 2, runs = 5, quick = 0, only_batch = 0, reduced = 0, only_doc = 0;
    int batch_task = ENG_TASK_NONE; /* --task: the --batch-only batch's adapter */
    const char *label = NULL, *level = getenv("EMBEDSERVE_CPU_FEATURES");
    enum eng_dtype dtype = ENG_DTYPE_F32;
    static const struct option lo[] = {
        {"model", 1, 0, 'm'},  {"threads", 1, 0, 't'},      {"runs", 1, 0, 'r'},
        {"dtype", 1, 0, 'd'},  {"quick", 0, 0, 'q'},        {"batch-only", 0, 0, 'b'},
        {"label", 1, 0, 'l'},  {"cpu-features", 1, 0, 'c'}, {"reduced", 0, 0, 'R'},
        {"levels", 0, 0, 'L'}, {"doc-only", 1, 0, 'D'},     {"task", 1, 0, 'T'},
        {0, 0, 0, 0}};
    int ch;
    openblas_set_num_threads(1);
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (ch == 'm')
            dir = optarg;
        else if (ch == 't')
            threads = atoi(optarg);
        else if (ch == 'r')
            runs = atoi(optarg);
        else if (ch == 'd')
            dtype = dtype_parse(optarg);
        else if (ch == 'q')
            quick = 1;
        else if (ch == 'b')
            only_batch = 1;
        else if (ch == 'D')
            only_doc = atoi(optarg);
        else if (ch == 'T')
            batch_task = atoi(optarg);
        else if (ch == 'l')
            label = optarg;
        else if (ch == 'c')
            level = optarg;
        else if (ch == 'R')
            reduced = quick = 1;
        else if (ch == 'L')
            return list_levels();
        else
            return 2;
    }
    if (!dir || threads < 1 || runs < 1 || only_doc < 0 || only_doc > 8192 ||
        batch_task < ENG_TASK_NONE) {
        fprintf(stderr, "usage: bench --model DIR [--dtype f32|bf16|int8] [--threads N] "
                        "[--runs R] [--quick] [--reduced] [--label NAME] [--cpu-features LEVEL]\n"
                        "             [--batch-only [--task T] | --doc-only N]\n"
                        "       bench --levels\n");
        return 2;
    }
    char err[512];
    struct eng_params p = eng_params_defaults();
    p.n_threads = threads;
    p.dtype = dtype;
    if (cpu_parse_level(level, cpu_detect(), &p.cpu_features, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench: %s\n", err);
        return 2;
    }
    p.max_batch_tokens = 8192;
    double t0 = now_s();
    struct eng_model *m = eng_model_open(dir, &p, err, sizeof(err));
    struct eng_ctx *c = m ? eng_ctx_new(m, &p, err, sizeof(err)) : NULL;
    if (!c) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    double load_s = now_s() - t0;
    const struct eng_info *in = eng_model_info(m);
    enum wmat_kind kind = in->dtype == ENG_DTYPE_BF16   ? WMAT_BF16
                          : in->dtype == ENG_DTYPE_INT8 ? WMAT_INT8
                                                        : WMAT_F32;
    double ref = gemm_rate(kind, in->cpu_features, threads, runs);
    const char *lv = cpu_level_name(in->cpu_features);
    const struct shape batch = {"batch 32x128", 32, 128, only_batch ? batch_task : ENG_TASK_NONE,
                                0};
    const struct shape batch_t = {"batch 32x128 task", 32, 128, 1, 0};
    const struct shape batch_mix = {"batch 32x128 mixed", 32, 128, -2, 0};
    const struct shape query = {"query 1x16", 1, 16, 0, 0};
    const struct shape doc2k = {"document 2048", 1, 2048, 1, 0};
    const struct shape doc8k = {"document 8192", 1, 8192, 1, 0};
    const struct shape late = {"late chunking 64x128", 1, 8192, 1, 64};
    double p90;
    if (only_doc) { /* one document of N tokens with a task: time and efficiency alone */
        const struct shape doc = {"document", 1, only_doc, 1, 0};
        double td = time_shape(c, in, &doc, runs, 0, NULL);
        double eff =
            (only_doc * linear_flops_per_token(m) + attention_flops(in, only_doc)) / td / 1e9 / ref;
        printf("dtype %s, level %s (%s, attention %s), threads %d: document %d tokens %.2f s, "
               "%.1f tok/s, efficiency %.0f%% of %.0f GFLOP/s (attention FLOPs counted)\n",
               eng_dtype_name(in->dtype), lv, in->kernel, in->attn_kernel, threads, only_doc, td,
               only_doc / td, 100 * eff, ref);
        return 0;
    }
    if (reduced) { /* a short pass pages in the weights; then up to REDUCED_SHAPE_S a shape */
        time_shape(c, in, &query, 1, 0, NULL);
        shape_budget_s = REDUCED_SHAPE_S;
    }
    double tb = time_shape(c, in, &batch, runs, !reduced, NULL);
    if (only_batch) { /* the 32x128 batch alone (1-thread scaling figure) */
        printf("dtype %s, level %s (%s), threads %d, task %d: batch 32x128 %.1f tok/s\n",
               eng_dtype_name(in->dtype), lv, in->kernel, threads, batch_task, 4096 / tb);
        printf("{\"dtype\":\"%s\",\"level\":\"%s\",\"kernel\":\"%s\",\"threads\":%d,"
               "\"task\":%d,\"batch_tok_s\":%.1f}\n",
               eng_dtype_name(in->dtype), lv, in->kernel, threads, batch_task, 4096 / tb);
        return 0;
    }
    /* the adapter's cost from alternating no-task and task passes (the
     * medians of those passes, not tb, give the task row's rate) */
    double tb_pair, tbt;
    double task_cost = time_pairs(c, in, &batch, &batch_t, runs, &tb_pair, &tbt);
    double tbm = reduced ? 0 : time_shape(c, in, &batch_mix, runs, 1, NULL);
    int qruns = reduced ? 10 : runs < 20 ? 20 : runs;
    double tq = time_shape(c, in, &query, qruns, 1, &p90);
    double td2 = time_shape(c, in, &doc2k, quick ? 1 : 3, 0, NULL);
    double td8 = quick ? 0 : time_shape(c, in, &doc8k, 1, 0, NULL);
    double tl = quick ? 0 : time_shape(c, in, &late, 1, 0, NULL);
    double lf = linear_flops_per_token(m);
    double eff_b = 32 * 128 * lf / tb / 1e9 / ref;
    double eff_d8 = td8 > 0 ? (8192 * lf + attention_flops(in, 8192)) / td8 / 1e9 / ref : 0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = ru.ru_maxrss / 1048576.0;
    printf("dtype %s, level %s (%s), threads %d, load %.2f s, %s gemm 4096x1024x4096: %.1f "
           "GFLOP/s\n",
           eng_dtype_name(in->dtype), lv, in->kernel, threads, load_s, in->kernel, ref);
    printf("  %-22s %8.1f tok/s  efficiency %.0f%%\n", batch.name, 4096 / tb, 100 * eff_b);
    printf("  %-22s %8.1f tok/s  (task adapter cost %.1f%%: median of %d alternating pairs)\n",
           batch_t.name, 4096 / tbt, 100 * task_cost, runs);
    if (!reduced)
        printf("  %-22s %8.1f tok/s  (cost %.1f%%)\n", batch_mix.name, 4096 / tbm,
               100 * (tbm - tb) / tb);
    printf("  %-22s %8.1f ms p50, %.1f ms p90\n", query.name, 1e3 * tq, 1e3 * p90);
    printf("  %-22s %8.1f tok/s\n", doc2k.name, 2048 / td2);
    if (!quick) {
        printf("  %-22s %8.2f s, efficiency %.0f%% (attention FLOPs counted)\n", doc8k.name, td8,
               100 * eff_d8);
        printf("  %-22s %8.2f s, %.1f tok/s\n", late.name, tl, 8192 / tl);
    }
    printf("  peak RSS %.2f GiB\n", rss);
    /* a labelled run (another model beside the main one) names its model */
    if (label) printf("{\"label\":\"%s\",\"arch\":\"%s\",", label, in->arch);
    printf("%s\"dtype\":\"%s\",\"level\":\"%s\",\"kernel\":\"%s\",\"reduced\":%d,"
           "\"threads\":%d,\"load_s\":%.2f,\"gemm_gflops\":%.1f,"
           "\"batch_tok_s\":%.1f,\"batch_eff\":%.3f,\"batch_task_tok_s\":%.1f,"
           "\"batch_task_cost\":%.4f,\"batch_mixed_tok_s\":%.1f,\"query_p50_ms\":%.2f,\"query_p90_"
           "ms\":%.2f,"
           "\"doc2048_tok_s\":%.1f,\"doc8192_s\":%.2f,\"doc8192_eff\":%.3f,\"late64x128_s\":%.2f,"
           "\"peak_rss_gib\":%.3f}\n",
           label ? "" : "{", eng_dtype_name(in->dtype), lv, in->kernel, reduced, threads, load_s,
           ref, 4096 / tb, eff_b, 4096 / tbt, task_cost, tbm > 0 ? 4096 / tbm : 0, 1e3 * tq,
           1e3 * p90, 2048 / td2, td8, eff_d8, tl, rss);
    eng_ctx_free(c);
    eng_model_close(m);
    return 0;
}
