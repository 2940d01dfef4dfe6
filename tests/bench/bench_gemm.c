/* bench_gemm.c -- rates of wmat_gemm for the model's shapes in each kind:
 * `build/bench_gemm [--threads N] [--runs R] [--kind K[,K...]] [--m M]...
 *                    [--shape S] [--copies N] [--cpu] [--level L] [--lora]
 *                    [--attention N]`.
 *
 * For m in {16, 128, 512, 4096} (--m, repeatable, picks some), the four
 * linear shapes (n_out x n_in; --shape 0-3 picks one) and 1 and 2 threads
 * (the engine's pool; columns split in multiples of 16 as the engine does),
 * prints the median GFLOP/s (GOP/s for int8) of R runs.
 * Kinds: f32 (the exact kernel on bf16-valued weights, as a bf16
 * checkpoint gives), f32w (the exact kernel on f32 weights), bf16, int8, and
 * sgemm (OpenBLAS on f32 weights, the same split: the reference rate).
 *
 * The weights are cycled through enough copies (>= 96 MiB of f32) that every
 * call reads its W from memory, not from L3, as in the real 24-layer forward
 * pass: m = 16 then measures the memory-bound short query honestly.
 * --copies N caps them (quicker runs where W's reads do not matter: large m).
 *
 * --level L: the kernels of a forced CPU level ("avx2", "generic", ...; see
 * cpu.h), so one machine compares its levels' kernels in one run.
 *
 * --lora: every row with a rank-4 task update (wmat_gemm_lora, the path a
 * request with a task takes; T given, as the engine's down-projection
 * leaves it), so the epilogue's cost is the difference to a run without.
 * sgemm has no such path and is left out.
 *
 * --attention N: instead of the above, one head's bf16 attention (d 64,
 * N keys and N queries, key blocks of 1024 packed as the engine packs
 * them, query tiles of 64, 1 thread) through the engine's two paths: the
 * per-block steps (wmat_gemm_words for Q K^T, wmat_softmax_words,
 * wmat_gemm_words for P V, each timed on its own) and, where the level's
 * bf16 kernel has it, the fused wmat_attend_words. Prints ns per score,
 * medians of R passes.
 *
 * --cpu: time by the process's CPU time divided by the thread count instead
 * of the wall clock. On a shared, busy machine this estimates the rate the
 * kernels get with the cores to themselves (it still counts stalls, and the
 * pool's brief spin between calls); the default wall clock is the real figure.
 */
#include "engine/engine_impl.h"
#include "engine/cpu.h"
#include "engine/gemm.h"

#include <cblas.h>
#include <getopt.h>
#include <string.h>
#include <time.h>

static int use_cpu_time;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(use_cpu_time ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct job {
    const struct wmat *w;
    int m;
    const float *x, *bias;
    float *y;
    void *scratch[64];            /* per thread */
    float **sgemm;                /* K_SGEMM: the copies' f32 weights */
    const struct wmat_lora *lora; /* --lora: the update, else NULL */
    int copy;
};

static void gemm_phase(void *arg, int ith, int nth) {
    const struct job *j = arg;
    /* the engine's split: whole 16-column panels per thread */
    int n16 = (j->w->n_out + 15) / 16;
    int lo = 16 * (n16 * ith / nth), hi = 16 * (n16 * (ith + 1) / nth);
    hi = hi < j->w->n_out ? hi : j->w->n_out;
    if (lo >= hi) return;
    if (j->sgemm)
        ops_gemm_nt(j->m, hi - lo, j->w->n_in, j->x, j->w->n_in,
                    j->sgemm[j->copy] + (size_t)lo * j->w->n_in, j->w->n_in, j->bias + lo,
                    j->y + lo, j->w->n_out);
    else
        wmat_gemm_lora(j->w, j->m, j->x, j->w->n_in, j->bias, j->lora, j->y, j->w->n_out, lo, hi,
                       j->scratch[ith]);
}

enum { K_F32, K_F32W, K_BF16, K_INT8, K_SGEMM, N_KINDS };
static const char *kind_name[] = {"f32", "f32w", "bf16", "int8", "sgemm"};
static const enum wmat_kind kind_wmat[] = {WMAT_F32, WMAT_F32, WMAT_BF16, WMAT_INT8, WMAT_F32};

/* --attention: ns per score of one head's bf16 attention over n keys (see
 * the top), per-block steps and fused, medians of `runs` passes. */
static int attention(uint32_t mask, int n, int runs) {
    enum { D = 64, TQ = 64, KB = 1024, SLD = KB + 16 };
    const struct gemm_kernel *k = gemm_kernel_for(WMAT_BF16, mask);
    if (!k || n < 1) {
        printf("attention: no bf16 kernel at level %s\n", cpu_level_name(mask));
        return n < 1;
    }
    float *q = malloc(sizeof(float) * (size_t)n * D), *kv = malloc(sizeof(float) * (size_t)n * D),
          *v = malloc(sizeof(float) * (size_t)n * D);
    unsigned s = 7;
    for (size_t i = 0; i < (size_t)n * D; i++) {
        float *dst[3] = {q, kv, v};
        for (int a = 0; a < 3; a++) {
            s = s * 1103515245u + 12345u;
            dst[a][i] = (float)((s >> 8) & 0xffff) / 32768.0f - 1.0f;
        }
    }
    struct wmat *w = calloc(2 * (size_t)((n + KB - 1) / KB), sizeof(*w));
    void *buf = aligned_alloc(64, wmat_attend_bytes(n, D, KB));
    int nb = wmat_attend_pack(w, k, kv, v, D, n, D, KB, buf);
    float *S = aligned_alloc(64, sizeof(float) * TQ * SLD), *O = malloc(sizeof(float) * TQ * D),
          *PV = malloc(sizeof(float) * TQ * D), sx[TQ], mx[TQ], sum[TQ], al[TQ];
    uint32_t *qw = malloc(sizeof(uint32_t) * TQ * D / 2),
             *P = malloc(sizeof(uint32_t) * TQ * KB / 2);
    int32_t zx[TQ];
    size_t sb0 = wmat_words_scratch_bytes(&w[0], TQ), sb1 = wmat_words_scratch_bytes(&w[1], TQ);
    void *scr = malloc((sb0 > sb1 ? sb0 : sb1) + 64);
    double *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = calloc((size_t)runs, sizeof(double));
    int fused = 1;
    for (int r = 0; r < runs; r++) /* a pass of each path, each on its own */
        for (int path = 0; path < 2; path++) {
            double t3 = now_s();
            for (int q0 = 0; q0 < n; q0 += TQ) {
                int nq = n - q0 < TQ ? n - q0 : TQ;
                wmat_words_from(&w[0], nq, q + (size_t)q0 * D, D, qw, D / 2, sx, zx);
                struct wmat_words qx = {qw, D / 2, NULL, NULL}, px = {P, KB / 2, NULL, NULL};
                if (path == 1) {
                    fused = fused && wmat_attend_words(w, nb, &qx, nq, 0.125f, O, D) == 0;
                    continue;
                }
                for (int i = 0; i < nq; i++)
                    mx[i] = -INFINITY, sum[i] = 0;
                for (int b = 0; b < nb; b++) {
                    double t0 = now_s();
                    wmat_gemm_words(&w[2 * b], nq, &qx, S, SLD, 0, w[2 * b].n_out, scr);
                    double t1 = now_s();
                    wmat_softmax_words(&w[2 * b + 1], S, nq, w[2 * b].n_out, SLD, 0.125f, mx, sum,
                                       al, P, KB / 2);
                    double t2 = now_s();
                    wmat_gemm_words(&w[2 * b + 1], nq, &px, b ? PV : O, D, 0, D, scr);
                    t[0][r] += t1 - t0, t[1][r] += t2 - t1, t[2][r] += now_s() - t2;
                }
            }
            if (path == 1) t[3][r] = now_s() - t3;
        }
    double sc = 1e9 / ((double)n * n), med[4];
    for (int i = 0; i < 4; i++) {
        qsort(t[i], (size_t)runs, sizeof(double), cmp_double);
        med[i] = t[i][runs / 2] * sc;
        free(t[i]);
    }
    printf("attention, one head, d %d, %d keys, level %s (%s), 1 thread, ns per score, median "
           "of %d:\n  per block: Q K^T %.3f, softmax %.3f, P V %.3f (the three %.3f)\n",
           D, n, cpu_level_name(mask), gemm_kernel_name(k), runs, med[0], med[1], med[2],
           med[0] + med[1] + med[2]);
    if (fused)
        printf("  fused: %.3f\n", med[3]);
    else
        printf("  fused: none at this level\n");
    free(q), free(kv), free(v), free(w), free(buf), free(S), free(O), free(PV), free(qw), free(P);
    free(scr);
    return 0;
}

/* Median GFLOP/s of `runs` runs; each run is a pass over the n_copies copies. */
static double rate(struct eng_team *p, struct wmat *w, float **sgemm, int n_copies, int m,
                   const float *x, const float *bias, const struct wmat_lora *lora, float *y,
                   int runs) {
    int nth = team_n_threads(p);
    struct job j = {.m = m, .x = x, .bias = bias, .y = y, .sgemm = sgemm, .lora = lora};
    size_t sb = wmat_scratch_bytes(&w[0], m);
    for (int t = 0; t < nth; t++)
        j.scratch[t] = sb ? malloc(sb) : NULL;
    double *ts = malloc(sizeof(double) * (size_t)runs);
    for (int r = -1; r < runs; r++) { /* r = -1: warm-up */
        double t0 = now_s();
        for (int c = 0; c < n_copies; c++) {
            j.w = &w[c];
            j.copy = c;
            team_run(p, gemm_phase, &j);
        }
        if (r >= 0) ts[r] = (now_s() - t0) / n_copies / (use_cpu_time ? nth : 1);
    }
    qsort(ts, (size_t)runs, sizeof(double), cmp_double);
    double med = ts[runs / 2];
    for (int t = 0; t < nth; t++)
        free(j.scratch[t]);
    free(ts);
    return 2.0 * m * w[0].n_out * w[0].n_in / med / 1e9;
}

int main(int argc, char **argv) {
    int runs = 7, max_copies = 0, only_shape = -1, only_threads = 0, n_only_m = 0, only_m[8];
    int with_lora = 0, attend_n = 0;
    unsigned kinds = 0; /* bit per kind; 0: all */
    uint32_t mask = cpu_detect();
    static const struct option opts[] = {{"threads", required_argument, 0, 't'},
                                         {"runs", required_argument, 0, 'r'},
                                         {"kind", required_argument, 0, 'k'},
                                         {"m", required_argument, 0, 'm'},
                                         {"cpu", no_argument, 0, 'c'},
                                         {"copies", required_argument, 0, 'C'},
                                         {"shape", required_argument, 0, 's'},
                                         {"level", required_argument, 0, 'l'},
                                         {"lora", no_argument, 0, 'L'},
                                         {"attention", required_argument, 0, 'A'},
                                         {0, 0, 0, 0}};
    char err[256];
    for (int c; (c = getopt_long(argc, argv, "t:r:k:m:cC:s:l:LA:", opts, NULL)) != -1;) {
        if (c == 'l') {
            if (cpu_parse_level(optarg, cpu_detect(), &mask, err, sizeof(err)) != 0) {
                fprintf(stderr, "%s\n", err);
                return 2;
            }
        } else if (c == 't')
            only_threads = atoi(optarg);
        else if (c == 'r')
            runs = atoi(optarg) < 5 ? 5 : atoi(optarg);
        else if (c == 'm' && n_only_m < 8)
            only_m[n_only_m++] = atoi(optarg);
        else if (c == 'c')
            use_cpu_time = 1;
        else if (c == 'L')
            with_lora = 1;
        else if (c == 'A')
            attend_n = atoi(optarg);
        else if (c == 'C')
            max_copies = atoi(optarg);
        else if (c == 's')
            only_shape = atoi(optarg);
        else if (c == 'k') { /* a comma-separated list */
            for (char *t = strtok(optarg, ","); t; t = strtok(NULL, ","))
                for (int k = 0; k < N_KINDS; k++)
                    if (!strcmp(t, kind_name[k])) kinds |= 1u << k;
        } else {
            fprintf(stderr,
                    "usage: %s [--threads N] [--runs R] [--kind f32|f32w|bf16|int8|sgemm[,...]] "
                    "[--m M]... [--shape 0-3] [--copies N] [--cpu] [--level L] [--lora] "
                    "[--attention N]\n",
                    argv[0]);
            return 2;
        }
    }
    openblas_set_num_threads(1);
    if (attend_n) return attention(mask, attend_n, runs);
    static const int shapes[][2] = {{3072, 1024}, {1024, 1024}, {4096, 1024}, {1024, 4096}};
    static const int ms[] = {16, 128, 512, 4096};
    int max_m = 4096, max_in = 4096, max_out = 4096;
    float *x = malloc(sizeof(float) * (size_t)max_m * max_in);
    float *y = malloc(sizeof(float) * (size_t)max_m * max_out);
    float *bias = malloc(sizeof(float) * max_out);
    unsigned s = 1;
    for (size_t i = 0; i < (size_t)max_m * max_in; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)((s >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    for (int i = 0; i < max_out; i++)
        bias[i] = 0.01f * (float)(i % 13);
    enum { RANK = 4 };
    float *lt = malloc(sizeof(float) * (size_t)max_m * RANK);
    float *lbt = malloc(sizeof(float) * (size_t)RANK * max_out);
    int32_t *ltask = calloc((size_t)max_m, sizeof(int32_t)); /* every row task 0 */
    for (size_t i = 0; i < (size_t)max_m * RANK; i++)
        lt[i] = 0.001f * (float)((int)(i % 17) - 8);
    for (size_t i = 0; i < (size_t)RANK * max_out; i++)
        lbt[i] = 0.01f * (float)((int)(i % 11) - 5);
    struct wmat_lora lora = {RANK, lt, ltask, lbt};
    printf("%-5s %-10s %5s | %9s %9s | GFLOP/s (int8: GOP/s), median of %d, %s, level %s%s\n",
           "kind", "n_out x n_in", "m", "1 thread", "2 threads", runs,
           use_cpu_time ? "CPU time / threads" : "wall clock", cpu_level_name(mask),
           with_lora ? ", rank-4 task update on every row" : "");
    /* shape-major, so the kinds of one shape run back to back: on a shared
     * machine their ratio is the figure to read */
    for (int is = 0; is < 4; is++) {
        if (only_shape >= 0 && is != only_shape) continue;
        for (int kind = 0; kind < N_KINDS; kind++) {
            if (kinds && !(kinds & 1u << kind)) continue;
            if (with_lora && kind == K_SGEMM) continue;
            int n_out = shapes[is][0], n_in = shapes[is][1];
            size_t n = (size_t)n_out * n_in;
            int n_copies = (int)((96u << 20) / (n * sizeof(float)));
            n_copies = n_copies < 1 ? 1 : n_copies;
            if (max_copies > 0 && n_copies > max_copies) n_copies = max_copies;
            float *src = malloc(sizeof(float) * n);
            for (size_t i = 0; i < n; i++) {
                s = s * 1103515245u + 12345u;
                src[i] = ((float)((s >> 8) & 0xffff) / 32768.0f - 1.0f) * 0.05f;
            }
            if (kind == K_F32)
                for (size_t i = 0; i < n; i++) { /* bf16 values, as a bf16 checkpoint */
                    uint32_t u;
                    memcpy(&u, &src[i], 4);
                    u &= 0xffff0000u;
                    memcpy(&src[i], &u, 4);
                }
            struct wmat *w = calloc((size_t)n_copies, sizeof(*w));
            float **sg = kind == K_SGEMM ? calloc((size_t)n_copies, sizeof(*sg)) : NULL;
            int ok = 1;
            for (int c = 0; c < n_copies && ok; c++) {
                ok = wmat_init(&w[c], kind_wmat[kind], mask, src, n_out, n_in) == 0;
                if (sg && (sg[c] = malloc(sizeof(float) * n)))
                    memcpy(sg[c], src, sizeof(float) * n);
            }
            free(src);
            if (!ok) {
                printf("%-5s %4dx%-5d  (not supported on this CPU)\n", kind_name[kind], n_out,
                       n_in);
            }
            for (int im = 0; ok && im < 4; im++) {
                int m = ms[im], want = !n_only_m;
                for (int i = 0; i < n_only_m; i++)
                    want |= only_m[i] == m;
                if (!want) continue;
                double r[2] = {0, 0};
                for (int t = 1; t <= 2; t++) {
                    if (only_threads && t != only_threads) continue;
                    struct eng_team *p = team_new(t);
                    r[t - 1] =
                        rate(p, w, sg, n_copies, m, x, bias, with_lora ? &lora : NULL, y, runs);
                    team_free(p);
                }
                printf("%-5s %4dx%-5d %5d | %9.1f %9.1f |\n", kind_name[kind], n_out, n_in, m, r[0],
                       r[1]);
                fflush(stdout);
            }
            for (int c = 0; c < n_copies; c++) {
                wmat_deinit(&w[c]);
                if (sg) free(sg[c]);
            }
            free(sg);
            free(w);
        }
    }
    free(x);
    free(y);
    free(bias);
    free(lt);
    free(lbt);
    free(ltask);
    return 0;
}
