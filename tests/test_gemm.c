/* test_gemm.c -- wmat_gemm in each kind against a straight double loop.
 *
 * Tolerances, per kind (sx = sum_k |x_ik w_jk|, the scale a dot product's
 * rounding error is relative to):
 *   f32   NMSE <= 1e-7 (ggml's test-backend-ops bound).
 *   bf16  against the double product of the bf16-rounded inputs (rounded
 *         here, independently of gemm.c): |err| <= (n_in 2^-24 + 1e-6) sx
 *         (f32 accumulation only); against the exact product:
 *         |err| <= 2^-7 sx (two inputs of 8 significant bits: unit roundoff
 *         2^-8 each), and cosine >= 0.9999.
 *   int8  the rounding bound of the documented scheme, per element:
 *         |err| <= s_w/2 sum|x| + s_x/2 sum|w| + s_x s_w n_in / 4 (+ f32 slack)
 *         with s_w = max|w_j| / 127, s_x = (max(x_i, 0) - min(x_i, 0)) / 255;
 *         and cosine >= 0.999 on realistic activations (Gaussian with
 *         outlier channels; one-sided post-GELU values). Plus the scheme
 *         itself, emulated here in integers (q_w = rint(w 127 / max|w_j|),
 *         q_x = clamp(rint(x / s_x) + z, 0, 255), z = rint(-min(x_i, 0) / s_x)):
 *         |got - s_x s_w (sum q_x q_w - z sum q_w) - b| <= 1e-5 (sx + |b|).
 * Every case also checks that columns outside the slice and the padding of
 * ldy are left untouched. */
#include "tests/test.h"

#include "engine/engine_impl.h"
#include "engine/cpu.h"
#include "engine/gemm.h"
#include "engine/gemm_kernels.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL 1234.5f

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* uniform in [0, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static float nrand(void) { /* standard normal (Box-Muller) */
    double u = urand() + 1e-300, v = urand();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

enum dist { D_UNIFORM, D_GAUSS_OUTLIERS, D_GELU };

/* rows x n values at stride ld: uniform [-1, 1), Gaussian with every 97th
 * channel 6x larger (LayerNorm outputs' outlier channels), or GELU(N(0, 1)). */
static float *make_x(int rows, int n, int ld, enum dist d) {
    float *x = malloc(sizeof(float) * (size_t)rows * ld);
    for (int i = 0; i < rows; i++)
        for (int k = 0; k < ld; k++) {
            float v = 0;
            if (d == D_UNIFORM) v = (float)(2 * urand() - 1);
            if (d == D_GAUSS_OUTLIERS) v = nrand() * (k % 97 == 5 ? 6.0f : 1.0f);
            if (d == D_GELU) {
                v = nrand();
                v = 0.5f * v * (1.0f + erff(v * (float)M_SQRT1_2));
            }
            x[(size_t)i * ld + k] = k < n ? v : NAN; /* padding must never be read */
        }
    return x;
}

static float bf16_round(float f) { /* round to nearest even, independent of gemm.c */
    uint32_t u;
    memcpy(&u, &f, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

/* The int8 scheme of gemm.c's DESIGN comment, restated: weights per row. */
static void quant_w(const float *w, int n_out, int n_in, int32_t **qw, float **sw) {
    *qw = malloc(sizeof(int32_t) * (size_t)n_out * n_in);
    *sw = malloc(sizeof(float) * (size_t)n_out);
    for (int j = 0; j < n_out; j++) {
        float amax = 0;
        for (int k = 0; k < n_in; k++)
            amax = fmaxf(amax, fabsf(w[(size_t)j * n_in + k]));
        float inv = amax > 0 ? 127.0f / amax : 0.0f;
        for (int k = 0; k < n_in; k++) {
            long q = lrintf(w[(size_t)j * n_in + k] * inv);
            (*qw)[(size_t)j * n_in + k] = (int32_t)(q > 127 ? 127 : q < -127 ? -127 : q);
        }
        (*sw)[j] = amax / 127.0f;
    }
}

/* ... and activations per row, asymmetric u8 with a zero point. */
static void quant_x(const float *x, int n_in, int32_t *qx, float *s_x, int32_t *z) {
    float lo = 0, hi = 0;
    for (int k = 0; k < n_in; k++)
        lo = fminf(lo, x[k]), hi = fmaxf(hi, x[k]);
    float s = (hi - lo) / 255.0f;
    if (!(s > 0)) s = 1.0f;
    long zl = lrintf(-lo / s);
    *z = (int32_t)(zl < 0 ? 0 : zl > 255 ? 255 : zl);
    *s_x = s;
    float inv = 1.0f / s;
    for (int k = 0; k < n_in; k++) {
        long q = lrintf(x[k] * inv) + *z;
        qx[k] = (int32_t)(q < 0 ? 0 : q > 255 ? 255 : q);
    }
}

struct gcase {
    enum wmat_kind kind;
    int m, n_out, n_in;
    int ldx_pad, ldy_pad;
    int with_bias;
    enum dist dist;
    uint32_t mask; /* the CPU mask for wmat_init; 0: test_cpu_features() */
};

static const char *kind_str[] = {"f32", "bf16", "int8"};

/* y = the kernel (with the LoRA update if lora is not NULL) over the
 * slices [cuts[i], cuts[i+1]); returns y (m x ldy). */
static float *run_slices_lora(const struct wmat *w, int m, const float *x, int ldx,
                              const float *bias, const struct wmat_lora *lora, int ldy,
                              const int *cuts, int n_cuts) {
    float *y = malloc(sizeof(float) * (size_t)m * ldy);
    for (size_t i = 0; i < (size_t)m * ldy; i++)
        y[i] = SENTINEL;
    void *scratch = malloc(wmat_scratch_bytes(w, m) + 1);
    for (int c = 0; c + 1 < n_cuts; c++)
        wmat_gemm_lora(w, m, x, ldx, bias, lora, y, ldy, cuts[c], cuts[c + 1], scratch);
    free(scratch);
    return y;
}

static float *run_slices(const struct wmat *w, int m, const float *x, int ldx, const float *bias,
                         int ldy, const int *cuts, int n_cuts) {
    return run_slices_lora(w, m, x, ldx, bias, NULL, ldy, cuts, n_cuts);
}

static void check_case(const struct gcase *t, const int *cuts, int n_cuts) {
    int m = t->m, n_out = t->n_out, n_in = t->n_in;
    int ldx = n_in + t->ldx_pad, ldy = n_out + t->ldy_pad;
    float *x = make_x(m, n_in, ldx, t->dist);
    float *wsrc = make_x(n_out, n_in, n_in, D_UNIFORM);
    for (size_t i = 0; i < (size_t)n_out * n_in; i++)
        wsrc[i] *= 0.05f;
    float *bias = make_x(1, n_out, n_out, D_UNIFORM);
    struct wmat w;
    char what[128];
    uint32_t mask = t->mask ? t->mask : test_cpu_features();
    snprintf(what, sizeof(what), "%s (%s) m=%d %dx%d ld+%d/%d bias=%d dist=%d slices=%d",
             kind_str[t->kind], gemm_kernel_name(gemm_kernel_for(t->kind, mask)), m, n_out, n_in,
             t->ldx_pad, t->ldy_pad, t->with_bias, t->dist, n_cuts - 1);
    if (wmat_init(&w, t->kind, mask, wsrc, n_out, n_in) != 0) {
        CHECKM(0, "%s: wmat_init failed", what);
        goto out;
    }
    const float *b = t->with_bias ? bias : NULL;
    float *y = run_slices(&w, m, x, ldx, b, ldy, cuts, n_cuts);
    double num = 0, den = 0, dot = 0, worst = 0, worst_rt = 0;
    int32_t *qw = NULL, *qx = malloc(sizeof(int32_t) * n_in), zx = 0;
    float *sw = NULL, s_xq = 1;
    if (t->kind == WMAT_INT8) quant_w(wsrc, n_out, n_in, &qw, &sw);
    int untouched = 1;
    for (int i = 0; i < m; i++) {
        const float *xi = x + (size_t)i * ldx;
        float xmin = 0, xmax = 0;
        double sum_ax = 0;
        for (int k = 0; k < n_in; k++) {
            xmin = fminf(xmin, xi[k]);
            xmax = fmaxf(xmax, xi[k]);
            sum_ax += fabs(xi[k]);
        }
        if (t->kind == WMAT_INT8) quant_x(xi, n_in, qx, &s_xq, &zx);
        for (int j = 0; j < ldy; j++) {
            float got = y[(size_t)i * ldy + j];
            if (j < cuts[0] || j >= cuts[n_cuts - 1]) {
                untouched &= got == SENTINEL;
                continue;
            }
            const float *wj = wsrc + (size_t)j * n_in;
            double ref = b ? b[j] : 0, ref_r = ref, sx = 0, sum_aw = 0, wmax = 0;
            for (int k = 0; k < n_in; k++) {
                ref += (double)xi[k] * wj[k];
                ref_r += (double)bf16_round(xi[k]) * bf16_round(wj[k]);
                sx += fabs((double)xi[k] * wj[k]);
                sum_aw += fabs(wj[k]);
                wmax = fmax(wmax, fabs(wj[k]));
            }
            double e = got - ref;
            num += e * e, den += ref * ref, dot += ref * got;
            if (t->kind == WMAT_BF16) {
                worst = fmax(worst, fabs(e) / (sx + 1e-30) / ldexp(1, -7));
                worst_rt = fmax(worst_rt,
                                fabs(got - ref_r) / ((n_in * ldexp(1, -24) + 1e-6) * sx + 1e-30));
            } else if (t->kind == WMAT_INT8) {
                double s_w = wmax / 127, s_x = ((double)xmax - xmin) / 255;
                double bound = 0.5 * s_w * sum_ax + 0.5 * s_x * sum_aw + 0.25 * s_x * s_w * n_in;
                bound = bound * 1.001 + 1e-5 * (sx + fabs(ref));
                worst = fmax(worst, fabs(e) / bound);
                int64_t acc = 0;
                for (int k = 0; k < n_in; k++)
                    acc += (int64_t)(qx[k] - zx) * qw[(size_t)j * n_in + k];
                double ref_q = (double)s_xq * sw[j] * (double)acc + (b ? b[j] : 0);
                worst_rt = fmax(worst_rt, fabs(got - ref_q) / (1e-5 * (sx + fabs(b ? b[j] : 0))));
            }
        }
    }
    double nmse = den > 0 ? num / den : num;
    double gg = 0;
    for (int i = 0; i < m; i++)
        for (int j = cuts[0]; j < cuts[n_cuts - 1]; j++)
            gg += (double)y[(size_t)i * ldy + j] * y[(size_t)i * ldy + j];
    double cosine = dot / sqrt(den * gg + 1e-300);
    CHECKM(untouched, "%s: wrote outside its column slice", what);
    if (t->kind == WMAT_F32) CHECKM(nmse <= 1e-7, "%s: nmse %.3g", what, nmse);
    if (t->kind == WMAT_BF16) {
        CHECKM(worst_rt <= 1.0, "%s: vs bf16-rounded inputs, %.3g x the bound", what, worst_rt);
        CHECKM(worst <= 1.0, "%s: vs exact, %.3g x the 2^-7 bound", what, worst);
        CHECKM(cosine >= 0.9999, "%s: cosine %.6f", what, cosine);
    }
    if (t->kind == WMAT_INT8) {
        CHECKM(worst <= 1.0, "%s: %.3g x the rounding bound", what, worst);
        CHECKM(worst_rt <= 1.0, "%s: vs the emulated scheme, %.3g x the bound", what, worst_rt);
        if (t->dist != D_UNIFORM || n_in >= 256)
            CHECKM(cosine >= 0.999, "%s: cosine %.6f", what, cosine);
    }
    if (getenv("TEST_GEMM_VERBOSE"))
        fprintf(stderr, "  %s: nmse %.3g cosine %.7f worst/bound %.3f %.3f\n", what, nmse, cosine,
                worst, worst_rt);
    free(y), free(qw), free(qx), free(sw);
    wmat_deinit(&w);
out:
    free(x), free(wsrc), free(bias);
}

/* Full width, the engine's split in multiples of 16 over 2 and 3 threads,
 * and an unaligned slice (masking inside a panel). */
static void check_shapes(enum wmat_kind kind) {
    static const struct {
        int m, n_out, n_in;
    } sh[] = {{1, 16, 64},   {3, 48, 80},     {17, 1000, 1000}, {5, 16, 1024},
              {2, 48, 4096}, {1, 1024, 1024}, {200, 48, 1024},  {100, 80, 4096},
              {7, 33, 81},   {16, 64, 1001},  {13, 1000, 1024}};
    for (size_t s = 0; s < sizeof(sh) / sizeof(sh[0]); s++) {
        int m = sh[s].m, n_out = sh[s].n_out, n_in = sh[s].n_in;
        int n16 = (n_out + 15) / 16;
        int full[] = {0, n_out};
        int two[] = {0, 16 * (n16 / 2), n_out};
        int three[] = {0, 16 * (n16 / 3), 16 * (2 * n16 / 3), n_out};
        int odd[] = {n_out > 40 ? 5 : 1, n_out > 40 ? 37 : n_out - 1};
        struct gcase t = {kind, m, n_out, n_in, 0, 0, 1, D_UNIFORM};
        check_case(&t, full, 2);
        t.with_bias = 0, t.ldx_pad = 3, t.ldy_pad = 5;
        check_case(&t, two, 3);
        t.with_bias = 1, t.ldx_pad = 16, t.ldy_pad = 17;
        if (n16 >= 3) check_case(&t, three, 4);
        if (n_out > 2) check_case(&t, odd, 2);
    }
}

/* Realistic activations: cosine to the exact product (the int8 figure). */
static void check_realistic(enum wmat_kind kind) {
    static const int sh[][3] = {{64, 1024, 1024}, {64, 1024, 4096}, {32, 3072, 1024}};
    for (int s = 0; s < 3; s++)
        for (int d = D_GAUSS_OUTLIERS; d <= D_GELU; d++) {
            struct gcase t = {kind, sh[s][0], sh[s][1], sh[s][2], 0, 0, 1, (enum dist)d};
            int cuts[] = {0, 16 * (sh[s][1] / 32), sh[s][1]};
            check_case(&t, cuts, 3);
        }
}

/* The engine's use: one team thread per column slice, at once. */
struct par_job {
    const struct wmat *w;
    int m;
    const float *x, *bias;
    float *y;
    void *scratch[2];
};
static void par_phase(void *arg, int ith, int nth) {
    const struct par_job *j = arg;
    int n16 = (j->w->n_out + 15) / 16;
    int lo = 16 * (n16 * ith / nth), hi = 16 * (n16 * (ith + 1) / nth);
    hi = hi < j->w->n_out ? hi : j->w->n_out;
    wmat_gemm(j->w, j->m, j->x, j->w->n_in, j->bias, j->y, j->w->n_out, lo, hi, j->scratch[ith]);
}

static void check_threads(enum wmat_kind kind) {
    int m = 150, n_out = 1000, n_in = 1024;
    float *x = make_x(m, n_in, n_in, D_UNIFORM), *wsrc = make_x(n_out, n_in, n_in, D_UNIFORM);
    float *bias = make_x(1, n_out, n_out, D_UNIFORM);
    struct wmat w;
    if (wmat_init(&w, kind, test_cpu_features(), wsrc, n_out, n_in) != 0) {
        CHECKM(0, "%s: wmat_init failed", kind_str[kind]);
        free(x), free(wsrc), free(bias);
        return;
    }
    int cuts[] = {0, n_out};
    float *y1 = run_slices(&w, m, x, n_in, bias, n_out, cuts, 2);
    float *y2 = malloc(sizeof(float) * (size_t)m * n_out);
    struct par_job j = {&w, m, x, bias, y2, {NULL, NULL}};
    for (int t = 0; t < 2; t++)
        j.scratch[t] = malloc(wmat_scratch_bytes(&w, m) + 1);
    struct eng_team *p = team_new(2);
    team_run(p, par_phase, &j);
    team_free(p);
    /* our kernels do the same arithmetic per element whatever the split:
     * identical results (f32 too: the exact kernels have a fixed order) */
    if (kind == WMAT_F32) {
        double num = 0, den = 0;
        for (size_t i = 0; i < (size_t)m * n_out; i++)
            num += ((double)y1[i] - y2[i]) * ((double)y1[i] - y2[i]), den += (double)y1[i] * y1[i];
        CHECKM(num <= 1e-7 * den, "f32: 2 threads differ from 1 by nmse %.3g", num / den);
    }
    CHECKM(!memcmp(y1, y2, sizeof(float) * (size_t)m * n_out), "%s: 2 threads differ from 1",
           kind_str[kind]);
    CHECK(wmat_scratch_bytes(&w, m) >= wmat_scratch_bytes(&w, 1));
    CHECK(kind != WMAT_F32 || wmat_scratch_bytes(&w, m) == 0);
    CHECK(w.nbytes > 0);
    for (int t = 0; t < 2; t++)
        free(j.scratch[t]);
    free(y1), free(y2), free(x), free(wsrc), free(bias);
    wmat_deinit(&w);
}

/* The int8 kernels of every level this machine runs (generic-int8,
 * avx2-int8, avx512vnni and amx-int8 where present): each within the
 * rounding bound of the float64 product, and all of them the same bits, for
 * row counts 1-13 (every row tail), n_out not a multiple of 16, n_in not a
 * multiple of 4 or past one k block of 1024, column slices inside panels,
 * with and without bias. */
static void check_int8_kernels(void) {
    uint32_t masks[16], kmask[16];
    const char *names[16];
    const struct gemm_kernel *ks[16];
    int nl = cpu_levels(test_cpu_features(), masks, names, 16), nk = 0;
    for (int l = 0; l < nl; l++) {
        const struct gemm_kernel *k = gemm_kernel_for(WMAT_INT8, masks[l]);
        CHECKM(k != NULL, "no int8 kernel at level %s", names[l]);
        if (k && (nk == 0 || ks[nk - 1] != k)) ks[nk] = k, kmask[nk++] = masks[l];
    }
    fprintf(stderr, "  gemm: int8 kernels compared bit for bit:");
    for (int i = 0; i < nk; i++)
        fprintf(stderr, " %s", gemm_kernel_name(ks[i]));
    fprintf(stderr, "\n");
    CHECK(nk >= 1 && !strcmp(gemm_kernel_name(ks[0]), "generic-int8"));
    CHECK(!(test_cpu_features() & CPU_X86_AVX2) || nk >= 2);
    static const struct {
        int n_out, n_in;
    } sh[] = {{16, 4}, {40, 7}, {33, 81}, {100, 1023}, {48, 1030}, {24, 2049}, {64, 1024}};
    int ns = (int)(sizeof(sh) / sizeof(sh[0])), same = 1, runs = 0;
    for (int m = 1; m <= 13 + 2; m++) {
        /* m 14 and 15: past a row block of 96 and a long k, in the last two */
        int rows = m <= 13 ? m : m == 14 ? 101 : 7, s = m <= 13 ? m % ns : m == 14 ? 3 : 5;
        int n_out = sh[s].n_out, n_in = sh[s].n_in, ldx = n_in + m % 3, ldy = n_out + 2;
        float *x = make_x(rows, n_in, ldx, m % 2 ? D_GELU : D_GAUSS_OUTLIERS);
        float *wsrc = make_x(n_out, n_in, n_in, D_UNIFORM),
              *bias = make_x(1, n_out, n_out, D_UNIFORM);
        int n16 = (n_out + 15) / 16;
        int cuts_a[] = {0, n_out}, cuts_b[] = {0, 16 * (n16 / 2), n_out},
            cuts_c[] = {n_out > 8 ? 3 : 0, n_out > 8 ? n_out - 5 : n_out};
        const int *cuts = m % 3 == 0 ? cuts_a : m % 3 == 1 ? cuts_b : cuts_c;
        int n_cuts = m % 3 == 1 ? 3 : 2;
        float *y0 = NULL;
        for (int i = 0; i < nk; i++) {
            struct wmat w;
            if (wmat_init(&w, WMAT_INT8, kmask[i], wsrc, n_out, n_in) != 0) {
                CHECKM(0, "%s: wmat_init failed", gemm_kernel_name(ks[i]));
                continue;
            }
            CHECK(w.k == ks[i]);
            float *y = run_slices(&w, rows, x, ldx, m % 2 ? bias : NULL, ldy, cuts, n_cuts);
            if (!y0)
                y0 = y;
            else {
                int eq = !memcmp(y, y0, sizeof(float) * (size_t)rows * ldy);
                CHECKM(eq, "int8 %s differs from %s: m=%d %dx%d bias=%d", gemm_kernel_name(ks[i]),
                       gemm_kernel_name(ks[0]), rows, n_out, n_in, m % 2);
                same &= eq;
                runs++;
                free(y);
            }
            wmat_deinit(&w);
        }
        free(y0), free(x), free(wsrc), free(bias);
        /* and each kernel against the float64 product and the emulated scheme */
        for (int i = 0; i < nk; i++) {
            struct gcase t = {WMAT_INT8, rows, n_out, n_in, m % 3, 2, m % 2, D_UNIFORM, kmask[i]};
            check_case(&t, cuts, n_cuts);
        }
    }
    fprintf(stderr, "  gemm: int8 kernels %s on %d comparisons\n", same ? "agree" : "DIFFER", runs);
}

/* A mask without AVX-512 (the "avx2" level) hides the bf16 kernels:
 * wmat_init refuses them, f32 still works, int8 runs on the AVX2 int8
 * kernel (the portable one at "generic"); the full mask is untouched
 * (nothing process-wide changes). */
static void check_fallback(void) {
    uint32_t have = test_cpu_features(), low = 0;
    const struct gemm_kernel *had_bf16 = gemm_kernel_for(WMAT_BF16, have),
                             *had_vnni = gemm_kernel_for(WMAT_INT8, have);
    char err[256];
    CHECK(cpu_parse_level("avx2", have, &low, err, sizeof(err)) == 0);
    CHECK(gemm_kernel_for(WMAT_BF16, low) == NULL);
    CHECK(!strcmp(gemm_kernel_name(gemm_kernel_for(WMAT_INT8, low)),
                  have & CPU_X86_AVX2 ? "avx2-int8" : "generic-int8"));
    uint32_t generic = 0;
    CHECK(cpu_parse_level("generic", have, &generic, err, sizeof(err)) == 0);
    CHECK(!strcmp(gemm_kernel_name(gemm_kernel_for(WMAT_INT8, generic)), "generic-int8"));
    /* AMX only at its own level: "avx512bf16" keeps int8 on vpdpbusd */
    uint32_t below_amx = 0, amx = 0;
    CHECK(cpu_parse_level("avx512bf16", have, &below_amx, err, sizeof(err)) == 0);
    CHECK(cpu_parse_level("amx", have, &amx, err, sizeof(err)) == 0);
    CHECK(!(below_amx & CPU_X86_AMX) && (amx & CPU_X86_AMX) == (have & CPU_X86_AMX));
    if (have & CPU_X86_AMX) {
        CHECK(!strcmp(gemm_kernel_name(gemm_kernel_for(WMAT_INT8, amx)), "amx-int8"));
        CHECK(!strcmp(gemm_kernel_name(gemm_kernel_for(WMAT_INT8, below_amx)), "avx512vnni"));
    }
    float src[16 * 64];
    for (int i = 0; i < 16 * 64; i++)
        src[i] = (float)(i % 7) - 3;
    struct wmat w;
    CHECK(wmat_init(&w, WMAT_BF16, low, src, 16, 64) == -1);
    wmat_deinit(&w);
    CHECK(wmat_init(&w, WMAT_INT8, low, src, 16, 64) == 0);
    wmat_deinit(&w);
    CHECK(wmat_init(&w, WMAT_F32, low, src, 16, 64) == 0);
    wmat_deinit(&w);
    CHECK(gemm_kernel_for(WMAT_BF16, have) == had_bf16);
    CHECK(gemm_kernel_for(WMAT_INT8, have) == had_vnni);
    CHECK(cpu_parse_level("pentium", have, &low, err, sizeof(err)) == -1 && strstr(err, "avx2"));
}

/* The exact kind's reduction order depends on nothing but n_in: each row
 * computed alone (m = 1), at another position of another batch, or in
 * other column slices gives the same bits. bf16-valued weights are kept as
 * bf16 (half the bytes), others as f32. */
static void check_exact_order(void) {
    int m = 37, n_out = 200, n_in = 1024 + 64; /* a k tail past the fixed blocks */
    float *x = make_x(m, n_in, n_in, D_GAUSS_OUTLIERS),
          *wsrc = make_x(n_out, n_in, n_in, D_UNIFORM);
    float *bias = make_x(1, n_out, n_out, D_UNIFORM);
    for (size_t i = 0; i < (size_t)n_out * n_in; i++)
        wsrc[i] = bf16_round(wsrc[i]);
    struct wmat wb, wf;
    CHECK(wmat_init(&wb, WMAT_F32, test_cpu_features(), wsrc, n_out, n_in) == 0);
    CHECK(wb.layout == WMAT_LAYOUT_BF16 && wb.nbytes < (size_t)n_out * n_in * 3);
    wsrc[5] += 1e-3f; /* no longer a bf16: the f32 layout */
    CHECK(wmat_init(&wf, WMAT_F32, test_cpu_features(), wsrc, n_out, n_in) == 0);
    CHECK(wf.layout == WMAT_LAYOUT_F32);
    wsrc[5] -= 1e-3f;
    int cuts[] = {0, 48, 112, n_out}, all_cols[] = {0, n_out};
    float *all = run_slices(&wb, m, x, n_in, bias, n_out, cuts, 4);
    int same = 1;
    for (int i = 0; i < m; i++) {
        float *one = run_slices(&wb, 1, x + (size_t)i * n_in, n_in, bias, n_out, all_cols, 2);
        same &= !memcmp(one, all + (size_t)i * n_out, sizeof(float) * (size_t)n_out);
        free(one);
    }
    CHECKM(same, "exact: a row alone differs from the same row in a batch of %d", m);
    /* the rows in reverse order, as another batch would place them */
    float *xr = malloc(sizeof(float) * (size_t)m * n_in);
    for (int i = 0; i < m; i++)
        memcpy(xr + (size_t)i * n_in, x + (size_t)(m - 1 - i) * n_in, sizeof(float) * n_in);
    float *rev = run_slices(&wb, m, xr, n_in, bias, n_out, all_cols, 2);
    same = 1;
    for (int i = 0; i < m; i++)
        same &= !memcmp(rev + (size_t)i * n_out, all + (size_t)(m - 1 - i) * n_out,
                        sizeof(float) * (size_t)n_out);
    CHECKM(same, "exact: a row's result depends on its position in the batch");
    free(xr), free(rev), free(all), free(x), free(wsrc), free(bias);
    wmat_deinit(&wb);
    wmat_deinit(&wf);
}

/* The distinct kernels of `kind` over the levels this CPU runs, lowest
 * level first: kernel i with the lowest level's mask that picks it, and
 * " name (level)" for each into list. Returns how many (at most 16). */
static int kernels_by_level(enum wmat_kind kind, const struct gemm_kernel *seen[16],
                            uint32_t seen_mask[16], char *list, size_t list_len) {
    uint32_t masks[16];
    const char *names[16];
    int nl = cpu_levels(test_cpu_features(), masks, names, 16), n_seen = 0;
    list[0] = '\0';
    for (int li = 0; li < nl; li++) {
        const struct gemm_kernel *k = gemm_kernel_for(kind, masks[li]);
        int dup = !k;
        for (int i = 0; i < n_seen; i++)
            dup |= seen[i] == k;
        if (dup) continue;
        seen_mask[n_seen] = masks[li];
        seen[n_seen++] = k;
        snprintf(list + strlen(list), list_len - strlen(list), " %s (%s)", gemm_kernel_name(k),
                 names[li]);
    }
    return n_seen;
}

/* The exact kind's contract to the bit, in scalar C: per k block of 256
 * values (EXACT_KC), s = the chain over the block's k in order, each step
 * s + x * w rounded once (fused: fmaf; the portable kernel: the product
 * rounded, then the sum); first block y = s (+ b), later blocks y += s.
 * y is m x ldy, columns outside [c_lo, c_hi) left at SENTINEL. */
static float *exact_contract(int fused, int m, const float *x, int ldx, const float *wsrc,
                             int n_out, int n_in, const float *bias, int ldy, int c_lo, int c_hi) {
    float *y = malloc(sizeof(float) * (size_t)m * ldy);
    (void)n_out;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ldy; j++) {
            float *yj = &y[(size_t)i * ldy + j];
            *yj = SENTINEL;
            if (j < c_lo || j >= c_hi) continue;
            const float *xi = x + (size_t)i * ldx, *wj = wsrc + (size_t)j * n_in;
            for (int k0 = 0; k0 < n_in; k0 += 256) {
                float s = 0;
                for (int k = k0; k < n_in && k < k0 + 256; k++) {
                    if (fused) {
                        s = fmaf(xi[k], wj[k], s);
                    } else {
                        volatile float prod = xi[k] * wj[k];
                        s = s + prod;
                    }
                }
                *yj = k0 ? *yj + s : bias ? s + bias[j] : s;
            }
        }
    return y;
}

/* Every exact kernel this CPU can run gives the contract's bits
 * (exact_contract): the vector kernels (AVX2, AVX-512F, NEON) the fused
 * chain, the portable one the unfused chain. So the exact kernels of every
 * instruction set with FMA agree to the bit, and a model's f32 embeddings
 * do not depend on which of them runs. Shapes: k tails, several k blocks,
 * an odd n_in (f32 panels), bf16-valued and other weights, rows past a row
 * block (96) and past each kernel's row tile, slices cut inside panels. */
static void check_exact_levels(void) {
    static const int sh[][4] = {/* m, n_out, n_in, bf16 weights */
                                {7, 40, 81, 0},    {13, 48, 1028, 1}, {37, 72, 770, 0},
                                {1, 64, 2052, 1},  {100, 50, 300, 1}, {9, 33, 512, 1},
                                {97, 200, 1024, 0}};
    const struct gemm_kernel *seen[16];
    uint32_t seen_mask[16];
    char list[256];
    int n_seen = kernels_by_level(WMAT_F32, seen, seen_mask, list, sizeof(list)), n_cmp = 0;
    for (size_t s = 0; s < sizeof(sh) / sizeof(sh[0]); s++) {
        int m = sh[s][0], n_out = sh[s][1], n_in = sh[s][2], ldx = n_in + 3, ldy = n_out + 5;
        float *x = make_x(m, n_in, ldx, s % 2 ? D_GELU : D_GAUSS_OUTLIERS);
        float *wsrc = make_x(n_out, n_in, n_in, D_UNIFORM);
        if (sh[s][3])
            for (size_t i = 0; i < (size_t)n_out * n_in; i++)
                wsrc[i] = bf16_round(wsrc[i]);
        float *bias = s % 2 ? NULL : make_x(1, n_out, n_out, D_UNIFORM);
        int cuts[] = {3, 16, n_out - 5, n_out};
        float *want[2];
        for (int f = 0; f < 2; f++)
            want[f] = exact_contract(f, m, x, ldx, wsrc, n_out, n_in, bias, ldy, cuts[0], n_out);
        for (int i = 0; i < n_seen; i++) {
            struct wmat w;
            if (wmat_init(&w, WMAT_F32, seen_mask[i], wsrc, n_out, n_in) != 0) {
                CHECKM(0, "exact %s: wmat_init failed", gemm_kernel_name(seen[i]));
                continue;
            }
            CHECK(w.layout == (sh[s][3] ? WMAT_LAYOUT_BF16 : WMAT_LAYOUT_F32));
            float *y = run_slices(&w, m, x, ldx, bias, ldy, cuts, 4);
            wmat_deinit(&w);
            int fused = strcmp(gemm_kernel_name(seen[i]), "generic-exact") != 0;
            CHECKM(!memcmp(want[fused], y, sizeof(float) * (size_t)m * ldy),
                   "exact m=%d %dx%d: %s differs from the %s chain's bits", m, n_out, n_in,
                   gemm_kernel_name(seen[i]), fused ? "fused" : "unfused");
            n_cmp++;
            free(y);
        }
        free(want[0]), free(want[1]), free(x), free(wsrc), free(bias);
    }
    fprintf(stderr, "  gemm: exact kernels at the levels here:%s; %d bitwise comparisons\n", list,
            n_cmp);
}

/* The int8 contract to the bit, in scalar C: per k block of 1024 values,
 * acc = sum q_x q_w (i32); first block y = s_x s_w (acc - z colsum) (+ b),
 * later blocks y += s_x s_w acc, each as float(q) * (s_x * s_w) then one
 * add. y is m x ldy, columns outside [c_lo, c_hi) left at SENTINEL. */
static float *int8_contract(int m, const float *x, int ldx, const float *wsrc, int n_out, int n_in,
                            const float *bias, int ldy, int c_lo, int c_hi) {
    int32_t *qw, *qx = malloc(sizeof(int32_t) * n_in), z;
    float *sw, sx, *y = malloc(sizeof(float) * (size_t)m * ldy);
    quant_w(wsrc, n_out, n_in, &qw, &sw);
    for (int i = 0; i < m; i++) {
        quant_x(x + (size_t)i * ldx, n_in, qx, &sx, &z);
        for (int j = 0; j < ldy; j++) {
            float *yj = &y[(size_t)i * ldy + j];
            *yj = SENTINEL;
            if (j < c_lo || j >= c_hi) continue;
            const int32_t *wj = qw + (size_t)j * n_in;
            int32_t colsum = 0;
            for (int k = 0; k < n_in; k++)
                colsum += wj[k];
            for (int k0 = 0; k0 < n_in; k0 += 1024) {
                int32_t acc = 0;
                for (int k = k0; k < n_in && k < k0 + 1024; k++)
                    acc += qx[k] * wj[k];
                if (k0 == 0) acc -= z * colsum;
                float sxw = sx * sw[j], v = (float)acc * sxw;
                *yj = k0 ? *yj + v : bias ? v + bias[j] : v;
            }
        }
    }
    free(qw), free(qx), free(sw);
    return y;
}

/* Every int8 kernel this CPU can run (one per level that has its own: NEON
 * and SDOT on aarch64) gives the contract's bits (int8_contract): the
 * integer sums are exact and the float epilogue is one expression in one
 * order, so the kernels of every instruction set agree to the bit. Shapes
 * with k tails, one and several k blocks (an odd number of words in the
 * last), row tails (AMX: a second 16-row tile of 2 rows), and column
 * slices cut inside panels. */
static void check_int8_levels(void) {
    static const int sh[][3] = {
        {7, 40, 81}, {13, 48, 1028}, {37, 72, 4164}, {1, 64, 2052}, {50, 40, 300}};
    const struct gemm_kernel *seen[16];
    uint32_t seen_mask[16];
    char list[256];
    int n_seen = kernels_by_level(WMAT_INT8, seen, seen_mask, list, sizeof(list)), n_cmp = 0;
    for (size_t s = 0; n_seen && s < sizeof(sh) / sizeof(sh[0]); s++) {
        int m = sh[s][0], n_out = sh[s][1], n_in = sh[s][2], ldx = n_in + 3, ldy = n_out + 5;
        float *x = make_x(m, n_in, ldx, s % 2 ? D_GELU : D_GAUSS_OUTLIERS);
        float *wsrc = make_x(n_out, n_in, n_in, D_UNIFORM);
        float *bias = s % 2 ? NULL : make_x(1, n_out, n_out, D_UNIFORM);
        int cuts[] = {3, 16, n_out - 5, n_out};
        float *want = int8_contract(m, x, ldx, wsrc, n_out, n_in, bias, ldy, cuts[0], n_out);
        for (int i = 0; i < n_seen; i++) {
            struct wmat w;
            if (wmat_init(&w, WMAT_INT8, seen_mask[i], wsrc, n_out, n_in) != 0) {
                CHECKM(0, "int8 %s: wmat_init failed", gemm_kernel_name(seen[i]));
                continue;
            }
            float *y = run_slices(&w, m, x, ldx, bias, ldy, cuts, 4);
            wmat_deinit(&w);
            CHECKM(!memcmp(want, y, sizeof(float) * (size_t)m * ldy),
                   "int8 m=%d %dx%d: %s differs from the contract's bits", m, n_out, n_in,
                   gemm_kernel_name(seen[i]));
            n_cmp++;
            free(y);
        }
        free(want), free(x), free(wsrc), free(bias);
    }
    fprintf(stderr, "  gemm: int8 kernels at the levels here:%s; %d bitwise comparisons\n",
            n_seen ? list : " none", n_cmp);
}

/* wmat_gemm_lora against its contract to the bit: the same kernel's plain
 * product (wmat_gemm), then per row with a task y = fmaf(t_k, b_k, y), k in
 * order, in scalar C here. For every kernel of every kind at the levels
 * here: those that update in their epilogue (AVX-512 bf16 and int8) and
 * those wmat_gemm_lora updates by blocks. Rows in runs of one task, of no
 * task, and single rows of another task (tiles whose rows do not share an
 * adapter); rank 4 (the model's, the epilogue's shared path) and 3 and 6;
 * rows past a row block (96) and a tile, one and several k blocks, column
 * slices cut inside panels and a last panel past n_out. */
static void check_lora_levels(void) {
    static const int sh[][4] = {/* m, n_out, n_in, rank */
                                {7, 40, 64, 4},
                                {101, 72, 1028, 4},
                                {13, 48, 2052, 6},
                                {37, 100, 300, 3},
                                {200, 64, 128, 4}};
    enum { N_TASK = 3 };
    int n_cmp = 0;
    char lists[3][256];
    for (int kind = WMAT_F32; kind <= WMAT_INT8; kind++) {
        const struct gemm_kernel *seen[16];
        uint32_t seen_mask[16];
        int n_seen = kernels_by_level((enum wmat_kind)kind, seen, seen_mask, lists[kind], 256);
        for (size_t s = 0; s < sizeof(sh) / sizeof(sh[0]); s++) {
            int m = sh[s][0], n_out = sh[s][1], n_in = sh[s][2], r = sh[s][3];
            int ldx = n_in + 3, ldy = n_out + 5;
            float *x = make_x(m, n_in, ldx, D_GAUSS_OUTLIERS);
            float *wsrc = make_x(n_out, n_in, n_in, D_UNIFORM);
            float *bias = s % 2 ? NULL : make_x(1, n_out, n_out, D_UNIFORM);
            float *t = make_x(m, r, r, D_GAUSS_OUTLIERS);
            float *bt = make_x(N_TASK * r, n_out, n_out, D_UNIFORM);
            int32_t *task = malloc(sizeof(int32_t) * (size_t)m);
            for (int i = 0; i < m;) { /* runs of 1..20 rows: a task, or none */
                int run = 1 + (int)(urand() * 20), tk = (int)(urand() * (N_TASK + 1)) - 1;
                for (int e = i + run; i < e && i < m; i++)
                    task[i] = tk;
            }
            struct wmat_lora lora = {r, t, task, bt};
            int cuts[] = {3, 16, n_out - 5, n_out};
            for (int i = 0; i < n_seen; i++) {
                struct wmat w;
                if (wmat_init(&w, (enum wmat_kind)kind, seen_mask[i], wsrc, n_out, n_in) != 0) {
                    CHECKM(0, "%s %s: wmat_init failed", kind_str[kind], gemm_kernel_name(seen[i]));
                    continue;
                }
                float *want = run_slices(&w, m, x, ldx, bias, ldy, cuts, 4);
                for (int row = 0; row < m; row++)
                    for (int j = cuts[0]; task[row] >= 0 && j < n_out; j++) {
                        float *yj = &want[(size_t)row * ldy + j];
                        for (int q = 0; q < r; q++)
                            *yj = fmaf(t[row * r + q], bt[((size_t)task[row] * r + q) * n_out + j],
                                       *yj);
                    }
                float *got = run_slices_lora(&w, m, x, ldx, bias, &lora, ldy, cuts, 4);
                int bad = 0;
                for (size_t e = 0; e < (size_t)m * ldy; e++)
                    bad += memcmp(&want[e], &got[e], sizeof(float)) != 0;
                CHECKM(!bad, "%s m=%d %dx%d rank %d: %s: %d values differ from the contract's bits",
                       kind_str[kind], m, n_out, n_in, r, gemm_kernel_name(seen[i]), bad);
                n_cmp++;
                wmat_deinit(&w);
                free(want), free(got);
            }
            free(x), free(wsrc), free(bias), free(t), free(bt), free(task);
        }
    }
    fprintf(stderr, "  gemm: LoRA update, kernels:%s /%s /%s; %d bitwise comparisons\n", lists[0],
            lists[1], lists[2], n_cmp);
}

/* wmat_bf16_pack (attention's K and V^T) against the layout restated:
 * word kk of column j at ((j / 16) * kw + kk) * 32 + (j % 16) * 2, its two
 * halves k = 2 kk, 2 kk + 1 rounded to nearest even, zeros past n_out and
 * n_in; from rows (sk = 1) and from columns (sj = 1), with strides beyond
 * the shape (the padding holds NaN, which must never be read). */
static void check_bf16_pack(void) {
    static const int shapes[][2] = {{1, 1},    {17, 3},   {16, 64},  {64, 37},
                                    {513, 64}, {64, 512}, {31, 130}, {64, 1}};
    const struct gemm_kernel kern = {.name = "test", .kind = WMAT_BF16};
    int bad = 0;
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++)
        for (int by_col = 0; by_col < 2; by_col++) {
            int n_out = shapes[si][0], n_in = shapes[si][1], kw = (n_in + 1) / 2;
            int ld = (by_col ? n_out : n_in) + 7;
            float *src = make_x(by_col ? n_in : n_out, by_col ? n_out : n_in, ld, D_UNIFORM);
            ptrdiff_t sj = by_col ? 1 : ld, sk = by_col ? ld : 1;
            size_t nb = wmat_bf16_bytes(n_out, n_in);
            uint16_t *buf = aligned_alloc(64, nb);
            struct wmat w;
            wmat_bf16_pack(&w, &kern, src, sj, sk, n_out, n_in, buf);
            for (int j = 0; j < ((n_out + 15) & ~15); j++)
                for (int k = 0; k < 2 * kw; k++) {
                    float v = j < n_out && k < n_in ? bf16_round(src[j * sj + k * sk]) : 0.0f;
                    uint32_t u;
                    memcpy(&u, &v, 4);
                    size_t at = ((size_t)(j / 16) * kw + k / 2) * 32 + (size_t)(j % 16) * 2 + k % 2;
                    bad += buf[at] != (uint16_t)(u >> 16);
                }
            CHECK(w.n_out == n_out && w.n_in == n_in && w.data == buf);
            free(buf);
            free(src);
        }
    CHECKM(bad == 0, "wmat_bf16_pack: %d words differ from the layout", bad);
}

/* wmat_int8_pack (attention's K) against wmat_init on the same rows less
 * the center, written out densely: the same panels, column sums and scales
 * byte for byte, with a center and without, rows ld apart (the gap holds
 * NaN, which must never be read). */
static void check_int8_pack(void) {
    static const int shapes[][2] = {{1, 1}, {17, 3}, {16, 64}, {64, 37}, {513, 64}, {31, 1030}};
    const struct gemm_kernel *k8 = gemm_kernel_for(WMAT_INT8, test_cpu_features());
    int bad = 0, n_cmp = 0;
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++)
        for (int centered = 0; centered < 2; centered++) {
            int n_out = shapes[si][0], n_in = shapes[si][1], ld = n_in + 7;
            float *src = make_x(n_out, n_in, ld, D_UNIFORM);
            float *center = make_x(1, n_in, n_in, D_UNIFORM),
                  *dense = malloc(sizeof(float) * (size_t)n_out * n_in);
            for (int j = 0; j < n_out; j++) {
                for (int k = n_in; k < ld; k++)
                    src[(size_t)j * ld + k] = NAN;
                for (int k = 0; k < n_in; k++)
                    dense[(size_t)j * n_in + k] =
                        centered ? src[(size_t)j * ld + k] - center[k] : src[(size_t)j * ld + k];
            }
            struct wmat ref, w;
            CHECK(wmat_init(&ref, WMAT_INT8, test_cpu_features(), dense, n_out, n_in) == 0);
            size_t nb = wmat_int8_bytes(n_out, n_in), n_pad = (size_t)(n_out + 15) & ~(size_t)15;
            size_t data_bytes = n_pad * (size_t)((n_in + 3) / 4) * 4 + n_pad * 4;
            void *buf = aligned_alloc(64, nb);
            wmat_int8_pack(&w, k8, src, ld, centered ? center : NULL, n_out, n_in, buf);
            CHECK(w.kind == WMAT_INT8 && w.n_out == n_out && w.n_in == n_in && w.data == buf &&
                  w.k == k8 && (char *)w.scale + n_pad * 4 <= (char *)buf + nb);
            bad += memcmp(w.data, ref.data, data_bytes) != 0;
            bad += memcmp(w.scale, ref.scale, n_pad * 4) != 0;
            n_cmp += 2;
            wmat_deinit(&ref);
            free(buf), free(src), free(center), free(dense);
        }
    CHECKM(bad == 0, "wmat_int8_pack: %d of %d layouts differ from wmat_init's", bad, n_cmp);
}

/* Activations converted once (wmat_words_from) then multiplied
 * (wmat_gemm_words), the attention's path, for every bf16 and int8 kernel at
 * the levels here: the bits of wmat_gemm on the same floats where the kernel
 * reads words (and for bf16 everywhere: widening a bf16 is exact); kernels
 * without that entry get the int8 words dequantised, within 1e-3 of the
 * squared norm. Shapes: a query tile against a key block and P against V^T,
 * k tails, a second k block, a second row block; a column slice, whose
 * outside stays untouched. Then ops_quant_u8 against the contract's
 * gemm_int8_quant, ties included. */
static void check_words(void) {
    static const int sh[][3] = {/* m, n_out, n_in */
                                {1, 16, 64}, {64, 1024, 64},  {64, 64, 1024},
                                {7, 40, 37}, {100, 33, 1030}, {6, 64, 2049}};
    int n_bits = 0, bad_bits = 0, n_near = 0, bad_near = 0;
    for (int kind = WMAT_BF16; kind <= WMAT_INT8; kind++) {
        const struct gemm_kernel *ks[16];
        uint32_t km[16];
        char list[512];
        int nk = kernels_by_level((enum wmat_kind)kind, ks, km, list, sizeof(list));
        for (int ki = 0; ki < nk; ki++)
            for (size_t si = 0; si < sizeof(sh) / sizeof(sh[0]); si++) {
                int m = sh[si][0], n_out = sh[si][1], n_in = sh[si][2], ldx = n_in + 5;
                int ldw = (n_in + 1) / 2 + 3, c_lo = n_out > 32 ? 16 : 0, c_hi = n_out - 1;
                float *W = make_x(n_out, n_in, n_in, D_UNIFORM),
                      *x = make_x(m, n_in, ldx, D_GAUSS_OUTLIERS);
                struct wmat w;
                CHECK(wmat_init(&w, (enum wmat_kind)kind, km[ki], W, n_out, n_in) == 0);
                size_t sb = wmat_scratch_bytes(&w, m), wb = wmat_words_scratch_bytes(&w, m);
                void *scr = malloc(sb + 64), *wscr = malloc(wb + 64);
                uint32_t *words = malloc(sizeof(uint32_t) * (size_t)m * ldw);
                float *sx = malloc(sizeof(float) * m), *y1 = malloc(sizeof(float) * m * n_out),
                      *y2 = malloc(sizeof(float) * m * n_out);
                int32_t *zx = malloc(sizeof(int32_t) * m);
                for (int i = 0; i < m * n_out; i++)
                    y1[i] = y2[i] = SENTINEL;
                wmat_gemm(&w, m, x, ldx, NULL, y1, n_out, c_lo, c_hi, scr);
                wmat_words_from(&w, m, x, ldx, words, ldw, sx, zx);
                struct wmat_words xw = {words, ldw, kind == WMAT_INT8 ? sx : NULL,
                                        kind == WMAT_INT8 ? zx : NULL};
                wmat_gemm_words(&w, m, &xw, y2, n_out, c_lo, c_hi, wscr);
                if (ks[ki]->gemm_words || kind == WMAT_BF16) {
                    n_bits++;
                    bad_bits += memcmp(y1, y2, sizeof(float) * m * n_out) != 0;
                } else {
                    double num = 0, den = 0;
                    int outside = 0;
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < n_out; j++) {
                            float a = y1[i * n_out + j], b = y2[i * n_out + j];
                            if (j < c_lo || j >= c_hi) {
                                outside += b != SENTINEL;
                                continue;
                            }
                            num += (double)(a - b) * (a - b), den += (double)a * a;
                        }
                    n_near++;
                    bad_near += outside || !(num <= 1e-3 * den);
                }
                wmat_deinit(&w);
                free(W), free(x), free(scr), free(wscr), free(words), free(sx), free(zx);
                free(y1), free(y2);
            }
        fprintf(stderr, "  gemm: words (%s):%s\n", kind_str[kind], list);
    }
    CHECKM(bad_bits == 0, "wmat_gemm_words: %d of %d products differ in bits from wmat_gemm",
           bad_bits, n_bits);
    CHECKM(bad_near == 0, "wmat_gemm_words (widened int8): %d of %d products off", bad_near,
           n_near);
    /* ops_quant_u8: random values, exact ties of rint, both clamps */
    float v[4096];
    uint8_t q[4096];
    float inv = 1.0f / 0.37f;
    int32_t z = 117;
    int bad_q = 0;
    for (int k = 0; k < 4096; k++)
        v[k] = k % 3 == 0 ? ((float)(k % 600) - 300.0f + 0.5f) / inv : (float)(nrand() * 60.0);
    ops_quant_u8(q, v, inv, z, 4096);
    for (int k = 0; k < 4096; k++)
        bad_q += q[k] != gemm_int8_quant(v[k], inv, z);
    CHECKM(bad_q == 0, "ops_quant_u8: %d of 4096 values differ from gemm_int8_quant", bad_q);
}

/* wmat_softmax_words for every bf16 kernel at the levels here: the bits of
 * ops_softmax_words (P's words, m, l, alpha) over three blocks of each
 * width (tails of every kind), with scales up to where most values fall
 * below the exponential's cut-off, and (scale -1) rows whose every score is
 * within 0.12 of the row's maximum, where u - floor(u) is inexact and must
 * round the same way; the words past a row's (n + 1) / 2 untouched. */
static void check_softmax_words(void) {
    static const int widths[] = {1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 97, 100, 1024};
    static const float scales[] = {0.125f, 1.0f, 40.0f, -1.0f};
    const struct gemm_kernel *ks[16];
    uint32_t km[16];
    char list[512];
    int nk = kernels_by_level(WMAT_BF16, ks, km, list, sizeof(list)), n_cmp = 0, bad = 0;
    /* NEAR_REPS: a different rounding of r there changes a bf16 word in
     * about one value of 30000 (where it falls next to a rounding midpoint),
     * so that case runs 40 times over (600k values) */
    enum { ROWS = 5, BLOCKS = 3, NEAR_REPS = 40 };
    for (int ki = 0; ki < nk; ki++)
        for (size_t wi = 0; wi < sizeof(widths) / sizeof(widths[0]); wi++)
            for (size_t si = 0; si < sizeof(scales) / sizeof(scales[0]); si++)
                for (int rep = 0; rep < (scales[si] < 0 && widths[wi] == 1024 ? NEAR_REPS : 1);
                     rep++) {
                    int n = widths[wi], ld = BLOCKS * n + 3, ldp = n / 2 + 4;
                    float *x = make_x(ROWS, BLOCKS * n, ld, D_GAUSS_OUTLIERS), s = scales[si];
                    if (s < 0) { /* scores in (-0.12, 0], full mantissas */
                        for (int i = 0; i < ROWS * ld; i++)
                            x[i] = -0.02f * fabsf(x[i]);
                        s = 1.0f;
                    }
                    float *W = make_x(16, n, n, D_UNIFORM);
                    struct wmat w;
                    CHECK(wmat_init(&w, WMAT_BF16, km[ki], W, 16, n) == 0);
                    float m[2][ROWS], l[2][ROWS], al[2][ROWS];
                    uint32_t *p[2];
                    for (int v = 0; v < 2; v++) {
                        p[v] = malloc(sizeof(uint32_t) * ROWS * (size_t)ldp);
                        for (int i = 0; i < ROWS; i++)
                            m[v][i] = -INFINITY, l[v][i] = 0;
                    }
                    for (int b = 0; b < BLOCKS; b++) {
                        for (int v = 0; v < 2; v++) {
                            for (int i = 0; i < ROWS * ldp; i++)
                                p[v][i] = 0xdeadbeefu;
                            if (v == 0)
                                ops_softmax_words(x + b * n, ROWS, n, ld, s, m[0], l[0], al[0],
                                                  p[0], ldp);
                            else
                                wmat_softmax_words(&w, x + b * n, ROWS, n, ld, s, m[1], l[1], al[1],
                                                   p[1], ldp);
                        }
                        n_cmp++;
                        bad += memcmp(p[0], p[1], sizeof(uint32_t) * ROWS * (size_t)ldp) != 0 ||
                               memcmp(m[0], m[1], sizeof(m[0])) != 0 ||
                               memcmp(l[0], l[1], sizeof(l[0])) != 0 ||
                               memcmp(al[0], al[1], sizeof(al[0])) != 0;
                        for (int i = 0; i < ROWS; i++)
                            for (int q = (n + 1) / 2; q < ldp; q++)
                                bad += p[1][i * ldp + q] != 0xdeadbeefu;
                    }
                    wmat_deinit(&w);
                    free(x), free(W), free(p[0]), free(p[1]);
                }
    fprintf(stderr, "  gemm: softmax words (bf16):%s\n", list);
    CHECKM(bad == 0, "wmat_softmax_words: %d of %d blocks differ in bits from ops_softmax_words",
           bad, n_cmp);
}

/* Float64 attention of the bf16-rounded q (nq x d), k, v (n x d): out[i]
 * = sum_j w_ij v_j, w_i = softmax(s q_i . k_j); mag[i] = sum_j w_ij |v_j|
 * (what an error relative to each weight adds up to); big[i] = max_j s
 * sum_t |q_it k_jt| (what the f32 scores' rounding scales with). */
static void attend_ref(const float *q, const float *k, const float *v, int nq, int n, int d,
                       float s, double *out, double *mag, double *big) {
    double *e = malloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < nq; i++) {
        double mx = -INFINITY, sum = 0;
        big[i] = 0;
        for (int j = 0; j < n; j++) {
            double dot = 0, abs_dot = 0;
            for (int t = 0; t < d; t++) {
                double p = (double)bf16_round(q[i * d + t]) * bf16_round(k[(size_t)j * d + t]);
                dot += p, abs_dot += fabs(p);
            }
            e[j] = s * dot;
            mx = e[j] > mx ? e[j] : mx;
            big[i] = s * abs_dot > big[i] ? s * abs_dot : big[i];
        }
        for (int j = 0; j < n; j++)
            sum += e[j] = exp(e[j] - mx);
        for (int t = 0; t < d; t++) {
            double o = 0, a = 0;
            for (int j = 0; j < n; j++) {
                o += e[j] * bf16_round(v[(size_t)j * d + t]);
                a += e[j] * fabs(bf16_round(v[(size_t)j * d + t]));
            }
            out[(size_t)i * d + t] = o / sum;
            mag[(size_t)i * d + t] = a / sum;
        }
    }
    free(e);
}

/* wmat_attend_words (the fused attention of the kernels that have one)
 * against the float64 attention above, for query tiles of 1 to 70 rows,
 * keys in blocks of 1024 and of 64 (last chunks of 1 to 32 keys, 16 and 17
 * among them: one K panel or two), and scores that are ordinary, spread past
 * the exponential's cut-off, rising along the keys by 12.8 a chunk (the
 * softmax's reference moves every chunk) or falling, or in steps of 2.6 a
 * chunk with little noise (it moves every other chunk, with about a tenth
 * of the mass already summed: a wrong rescale factor shows). Bound per
 * value: each weight is off by P's rounding to bf16 (2^-9), the
 * exponential's error (1e-4, in P and in the sum) and twice its score's
 * f32 error (64 products summed: at most 2^-18 of s sum_t |q_t k_t|), so
 * |O - ref| <= (2^-8 + 2^-17 big_i) sum_j w_j |v_j| (+ 1e-6 max|v| for the
 * f32 sums of P V). Also: rows past nq
 * and columns past d untouched, the queries' words past d never read (NaN
 * there), each row's bits the same computed alone, and -1 (nothing
 * written) from kernels without the fused path. */
static void check_attend_words(void) {
    static const int ns[] = {1, 7, 16, 17, 31, 32, 33, 48, 100, 1024, 1040, 1056, 2085};
    static const int nqs[] = {1, 16, 17, 64, 70};
    enum { D = 64, LDO = D + 8, LDQ = D / 2 + 2 };
    const struct gemm_kernel *ks[16];
    uint32_t km[16];
    char list[512], fused[512] = "";
    int nk = kernels_by_level(WMAT_BF16, ks, km, list, sizeof(list)), n_cases = 0, bad = 0,
        bad_bits = 0, bad_rc = 0, bad_pad = 0;
    double worst = 0;
    for (int ki = 0; ki < nk; ki++) {
        const struct gemm_kernel *kern = gemm_kernel_for(WMAT_BF16, km[ki]);
        int has = 0;
        for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++)
            for (int kb = 1024; kb >= 64; kb /= 16)
                for (int pat = 0; pat < 5; pat++) {
                    int n = ns[ni], nq = nqs[(ni + (size_t)pat) % 5], nb = (n + kb - 1) / kb;
                    if (kb == 64 && n <= 64) continue;
                    float s = pat == 1 ? 1.0f : 0.125f;
                    float *q = make_x(nq, D, D, D_UNIFORM), *k = make_x(n, D, D, D_UNIFORM),
                          *v = make_x(n, D, D, D_GAUSS_OUTLIERS);
                    for (int i = 0; i < nq * D; i++)
                        q[i] *= pat == 1 ? 6.0f : pat == 4 ? 0.1f : 3.0f;
                    for (int j = 0; pat >= 2 && j < n; j++) { /* along dim 0: s q k = 0.5 k */
                        for (int i = 0; j == 0 && i < nq; i++)
                            q[i * D] = 4.0f;
                        k[(size_t)j * D] = pat == 4 ? 5.2f * (float)(j / 32)
                                                    : (pat == 2 ? 0.8f : -0.8f) * (float)j;
                    }
                    struct wmat *w = calloc(2 * (size_t)nb, sizeof(*w));
                    void *buf = aligned_alloc(64, wmat_attend_bytes(n, D, kb));
                    CHECK(wmat_attend_pack(w, kern, k, v, D, n, D, kb, buf) == nb);
                    uint32_t *qw = malloc(sizeof(uint32_t) * (size_t)nq * LDQ);
                    float *sx = malloc(sizeof(float) * nq),
                          *o = malloc(sizeof(float) * (nq + 1) * LDO),
                          *o1 = malloc(sizeof(float) * LDO);
                    int32_t *zx = malloc(sizeof(int32_t) * nq);
                    double *ref = malloc(sizeof(double) * (size_t)nq * D),
                           *mag = malloc(sizeof(double) * (size_t)nq * D),
                           *big = malloc(sizeof(double) * (size_t)nq);
                    memset(qw, 0xff, sizeof(uint32_t) * (size_t)nq * LDQ); /* NaN past d */
                    wmat_words_from(&w[0], nq, q, D, qw, LDQ, sx, zx);
                    struct wmat_words qx = {qw, LDQ, NULL, NULL};
                    for (int i = 0; i < (nq + 1) * LDO; i++)
                        o[i] = -7.0f;
                    int rc = wmat_attend_words(w, nb, &qx, nq, s, o, LDO);
                    if (rc != 0) { /* no fused path: nothing written */
                        bad_rc += kern->attend_words != NULL;
                        for (int i = 0; i < (nq + 1) * LDO; i++)
                            bad_pad += o[i] != -7.0f;
                    } else {
                        has = 1;
                        n_cases++;
                        attend_ref(q, k, v, nq, n, D, s, ref, mag, big);
                        float vmax = 0;
                        for (int i = 0; i < n * D; i++)
                            vmax = fabsf(v[i]) > vmax ? fabsf(v[i]) : vmax;
                        double err = 0; /* the worst error as a fraction of its bound */
                        for (int i = 0; i < nq; i++)
                            for (int t = 0; t < D; t++) {
                                size_t it = (size_t)i * D + t;
                                double bound =
                                    mag[it] * (1.0 / 256 + big[i] / 131072) + 1e-6 * vmax;
                                double e = fabs(o[i * LDO + t] - ref[it]) / bound;
                                err = e > err || e != e ? e : err;
                            }
                        for (int i = 0; i < (nq + 1) * LDO; i++)
                            bad_pad += (i >= nq * LDO || i % LDO >= D) && o[i] != -7.0f;
                        worst = err > worst || err != err ? err : worst;
                        if (!(err <= 1.0)) {
                            bad++;
                            fprintf(stderr, "    %s n %d nq %d blocks of %d pattern %d: %.3g\n",
                                    gemm_kernel_name(kern), n, nq, kb, pat, err);
                        }
                        /* the last row alone: the same bits */
                        struct wmat_words q1 = {qw + (size_t)(nq - 1) * LDQ, LDQ, NULL, NULL};
                        CHECK(wmat_attend_words(w, nb, &q1, 1, s, o1, LDO) == 0);
                        bad_bits += memcmp(o1, o + (size_t)(nq - 1) * LDO, sizeof(float) * D) != 0;
                    }
                    free(q), free(k), free(v), free(w), free(buf), free(qw), free(sx), free(o);
                    free(o1), free(zx), free(ref), free(mag), free(big);
                }
        if (has)
            snprintf(fused + strlen(fused), sizeof(fused) - strlen(fused), " %s",
                     gemm_kernel_name(kern));
    }
    fprintf(stderr, "  gemm: fused attention:%s (%d cases, worst error %.2g of its bound)\n",
            fused[0] ? fused : " none at these levels", n_cases, worst);
    CHECKM(bad == 0, "wmat_attend_words: %d of %d cases past their bound", bad, n_cases);
    CHECKM(bad_bits == 0, "wmat_attend_words: a row's bits depend on the other rows (%d)",
           bad_bits);
    CHECKM(bad_rc == 0, "wmat_attend_words: a kernel with the fused path refused a shape it takes");
    CHECKM(bad_pad == 0, "wmat_attend_words: %d values written outside O's rows and columns",
           bad_pad);
}

void test_wmat(void) {
    check_bf16_pack();
    check_int8_pack();
    check_words();
    check_softmax_words();
    check_attend_words();
    check_fallback();
    check_exact_order();
    check_exact_levels();
    check_int8_kernels();
    check_int8_levels();
    check_lora_levels();
    for (int kind = WMAT_F32; kind <= WMAT_INT8; kind++) {
        const struct gemm_kernel *k = gemm_kernel_for((enum wmat_kind)kind, test_cpu_features());
        fprintf(stderr, "  gemm: %s kernel %s\n", kind_str[kind], gemm_kernel_name(k));
        int ok = k != NULL;
        if (!ok) {
            fprintf(stderr, "  gemm: %s kernels not supported by this CPU: skipped\n",
                    kind_str[kind]);
            struct wmat w;
            float src[16 * 64] = {0};
            CHECK(wmat_init(&w, (enum wmat_kind)kind, test_cpu_features(), src, 16, 64) == -1);
            continue;
        }
        check_shapes((enum wmat_kind)kind);
        check_realistic((enum wmat_kind)kind);
        check_threads((enum wmat_kind)kind);
    }
}
