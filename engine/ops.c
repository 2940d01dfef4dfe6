/* ops.c -- the forward pass's kernels, and naive references for the tests.
 *
 * Matrix products go to OpenBLAS's cblas_sgemm. The engine calls it from
 * its own worker threads on disjoint slices with OpenBLAS set to one thread
 * (eng_ctx_new), so exactly one team of threads exists: no oversubscription.
 */
#include "engine/engine_impl.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* The elementwise kernels are written branch-free so the compiler
 * vectorises them; target_clones builds AVX-512, AVX2 + FMA (x86-64-v3) and
 * baseline copies and picks one at load time from the CPU's features. (Each
 * string is one clone: "avx2,fma" would be two, and an AVX2 machine ran the
 * one without FMA, where fmaf is a library call.) */
#if defined(__x86_64__) && !defined(EMB_NO_TARGET_CLONES)
#define OPS_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define OPS_CLONES /* other ISAs: the baseline build (NEON on aarch64) */
#endif

/* Sum of n floats, or of their squared deviations from `mean`, in double:
 * 8 lanes each summing every 8th value in order, the tail, then the lanes in
 * order. A fixed order (bits depend on n only) that the compiler vectorises
 * (one sequential chain of double adds was latency-bound). */
static inline double sum8_f64(const float *x, int n, float mean, int dev) {
    double acc[8] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) {
            double v = dev ? (double)(x[j + l] - mean) : (double)x[j + l];
            acc[l] += dev ? v * v : v;
        }
    double s = 0;
    for (; j < n; j++) {
        double v = dev ? (double)(x[j] - mean) : (double)x[j];
        s += dev ? v * v : v;
    }
    for (int l = 0; l < 8; l++)
        s += acc[l];
    return s;
}

OPS_CLONES void ops_add_layernorm(float *x, const float *r, int n_rows, int n, const float *w,
                                  const float *b, float eps) {
    for (int i = 0; i < n_rows; i++) {
        float *xi = x + (size_t)i * n;
        const float *ri = r ? r + (size_t)i * n : NULL;
        if (ri)
            for (int j = 0; j < n; j++)
                xi[j] += ri[j];
        /* two-pass mean / biased variance of f32 values, summed in double */
        float mean = (float)(sum8_f64(xi, n, 0, 0) / n);
        double var = sum8_f64(xi, n, mean, 1);
        float inv = (float)(1.0 / sqrt(var / n + eps));
        for (int j = 0; j < n; j++)
            xi[j] = (xi[j] - mean) * inv * w[j] + b[j];
    }
}

/* erf(x) as an odd/even rational function on [-4, 4] (erf = +-1 in f32
 * outside); max abs error 4.2e-7 (checked in tests/test_ops.c). */
static inline float erf_rational(float x) {
    x = x < -4.0f ? -4.0f : x;
    x = x > 4.0f ? 4.0f : x;
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return x * p / q;
}

OPS_CLONES void ops_gelu(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erf_rational(x[i] * 0.70710678f));
}

OPS_CLONES void ops_scale(float *x, int64_t n, float s) {
    for (int64_t i = 0; i < n; i++)
        x[i] *= s;
}

/* 16 floats as one GCC/Clang generic vector: one zmm with AVX-512, two ymm
 * with AVX2, four q registers on NEON. Written out because the compilers
 * turn the same loops over a float[16] into 16 scalar chains. */
typedef float ops_v16 __attribute__((vector_size(64)));
typedef int32_t ops_i16 __attribute__((vector_size(64)));
typedef uint32_t ops_u16 __attribute__((vector_size(64)));

/* v = p[0..16) (unaligned; a macro: a function returning a vector by value
 * would have an ABI that differs between the target_clones) */
#define V16_LOAD(v, p) memcpy(&(v), (p), sizeof(ops_v16))

/* The lane-wise maximum of two vectors (x86 has it in one instruction). */
#define V16_MAX(a, b) ((ops_v16)(((ops_i16)(b) & ((b) > (a))) | ((ops_i16)(a) & ~((b) > (a)))))

/* Maximum of n >= 1 floats, four vectors of 16 lanes at a time (a maximum
 * is exact in any order): one running maximum is a dependency chain of
 * compare and blend (it made the attention softmax's maximum cost more than
 * its exponentials, first as a scalar chain, then as one vector chain). */
static inline __attribute__((always_inline)) float max16(const float *x, int n) {
    float mx = x[0];
    int j = 0;
    if (n >= 16) {
        ops_v16 acc, v;
        V16_LOAD(acc, x);
        j = 16;
        if (n >= 64) {
            ops_v16 a1, a2, a3;
            V16_LOAD(a1, x + 16);
            V16_LOAD(a2, x + 32);
            V16_LOAD(a3, x + 48);
            for (j = 64; j + 64 <= n; j += 64) {
                V16_LOAD(v, x + j);
                acc = V16_MAX(acc, v);
                V16_LOAD(v, x + j + 16);
                a1 = V16_MAX(a1, v);
                V16_LOAD(v, x + j + 32);
                a2 = V16_MAX(a2, v);
                V16_LOAD(v, x + j + 48);
                a3 = V16_MAX(a3, v);
            }
            acc = V16_MAX(acc, a1);
            a2 = V16_MAX(a2, a3);
            acc = V16_MAX(acc, a2);
        }
        for (; j + 16 <= n; j += 16) {
            V16_LOAD(v, x + j);
            acc = V16_MAX(acc, v);
        }
        for (int l = 0; l < 16; l++)
            mx = acc[l] > mx ? acc[l] : mx;
    }
    for (; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    return mx;
}

/* One word of two bf16 (lo in the low half), each rounded to nearest even
 * as gemm.c's bf16_from_f32 (NaN stays NaN), branch-free so the loops
 * vectorise. */
static inline __attribute__((always_inline)) uint32_t bf16_word(float lo, float hi) {
    uint32_t a, b;
    memcpy(&a, &lo, sizeof(a));
    memcpy(&b, &hi, sizeof(b));
    uint32_t ra = (a + 0x7fffu + ((a >> 16) & 1)) >> 16, rb = (b + 0x7fffu + ((b >> 16) & 1)) >> 16;
    ra = (a & 0x7fffffffu) > 0x7f800000u ? (a >> 16) | 0x40 : ra;
    rb = (b & 0x7fffffffu) > 0x7f800000u ? (b >> 16) | 0x40 : rb;
    return ra | rb << 16;
}

OPS_CLONES void ops_bf16_pairs(uint32_t *restrict w, const float *restrict x, int n) {
    for (int i = 0; i < n; i++)
        w[i] = bf16_word(x[2 * i], x[2 * i + 1]);
}

OPS_CLONES void ops_bf16_zip(uint32_t *restrict w, const float *restrict a, const float *restrict b,
                             int n) {
    for (int i = 0; i < n; i++)
        w[i] = bf16_word(a[i], b[i]);
}

/* The int8 weight quantisation (gemm.c's layout, per row; attention's K
 * per layer). Written to vectorise: the maximum as compare-and-select (finite
 * values: the same as fmaxf, NaN skipped as there), the rounding to nearest
 * even by adding and subtracting 1.5 * 2^23, which is lrintf's for the
 * |t| <= 2^22 that a scaled value (at most 127) can be. */
OPS_CLONES float ops_absmax(const float *restrict x, const float *restrict c, int n) {
    float m[16] = {0}; /* lane maxima (a max reduction only vectorises with -ffast-math) */
    int k = 0;
    for (; k + 16 <= n; k += 16)
        for (int l = 0; l < 16; l++) {
            float a = fabsf(c ? x[k + l] - c[k + l] : x[k + l]);
            m[l] = a > m[l] ? a : m[l];
        }
    for (; k < n; k++) {
        float a = fabsf(c ? x[k] - c[k] : x[k]);
        m[0] = a > m[0] ? a : m[0];
    }
    for (int l = 1; l < 16; l++)
        m[0] = m[l] > m[0] ? m[l] : m[0];
    return m[0];
}

static inline __attribute__((always_inline)) int32_t quant_s8(float v, float inv) {
    float t = v * inv;
    float r = t + 12582912.0f; /* two statements: never one fused step */
    r = r - 12582912.0f;
    r = r >= -127.0f ? (r <= 127.0f ? r : 127.0f) : -127.0f; /* NaN: -127, as lrintf's clamp */
    return (int32_t)r;
}

OPS_CLONES int32_t ops_quant_s8(int8_t *restrict q, const float *restrict x,
                                const float *restrict c, float inv, int n) {
    int32_t sum = 0;
    if (c)
        for (int k = 0; k < n; k++) {
            int32_t v = quant_s8(x[k] - c[k], inv);
            q[k] = (int8_t)v;
            sum += v;
        }
    else
        for (int k = 0; k < n; k++) {
            int32_t v = quant_s8(x[k], inv);
            q[k] = (int8_t)v;
            sum += v;
        }
    return sum;
}

OPS_CLONES void ops_quant_u8(uint8_t *restrict q, const float *restrict x, float inv, int32_t z,
                             int n) {
    for (int k = 0; k < n; k++) {
        float r = x[k] * inv + 12582912.0f; /* two statements: never one fused step */
        r = r - 12582912.0f;
        int32_t v = (int32_t)r + z;
        q[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

/* ops_softmax_words, 16 values at a time in generic vectors (GCC's -O2
 * vectorises the scalar form poorly). With c1 = s log2(e) and c2 =
 * -(m log2(e)), each rounded to f32 once per row: u = x c1 + c2 (one fused
 * step: s x - m in units of ln 2, to 2^-24 (|x c1| + |c2|) + 2^-18 for
 * |u| < 128: under 1e-5 of the result while |m| is below a few hundred);
 * 0 where u < OPS_SOFTMAX_ULO (e^-80: nothing beside the block's maximum
 * of 1; NaN gives 0 too); else f = floor(u) (the nearest integer by the
 * rounding constant, less 1 where that exceeds u), r = u - f rounded to
 * nearest (exact but for u in (-0.5, 0), where r may round up to 1),
 * P(r) = 1 + r (c1 + r (c2 + r c3)), a minimax fit of 2^r on [0, 1]
 * (8.6e-5 relative: bf16 rounds to 2^-8), and f added to the exponent bits
 * (the results are normal); then rounded to bf16 (to nearest even). An
 * AVX-512 kernel takes f by vrndscaleps and the scaling by vscalefps, the
 * same values (not vreduceps for r: it rounds its subtraction down).
 * Sums: of each step's 32 values, the words' odd value then the even one
 * added to lane t of sum a0 (steps at j = 0, 64, ...) or a1 (j = 32, 96,
 * ...); the lanes of a0 + a1 then added as a tree (8, 4, 2, 1 lanes apart).
 * The function contracts the vector steps' a * b + c into one fused step
 * (its optimize attribute: ISO C mode does not), as a kernel's fma
 * instructions do; the row's scalar steps (alpha by ops_exp_poly_fused,
 * l's update by fmaf) are fused explicitly, so no compiler's choice enters
 * them. The steps and their order are the contract that a kernel's own
 * softmax (gemm_kernels.h) reproduces bit for bit. */
#define SOFTMAX_V16(e, xp)                                                      \
    do {                                                                        \
        ops_v16 u_, k_, n_, r_, p_;                                             \
        V16_LOAD(u_, xp);                                                       \
        u_ = u_ * c1 + c2;                                                      \
        k_ = u_ + 12582912.0f;                                                  \
        n_ = k_ - 12582912.0f;                                                  \
        ops_u16 dn_ = (ops_u16)(n_ > u_) & 1u; /* floor: 1 below the nearest */ \
        r_ = u_ - (n_ - __builtin_convertvector(dn_, ops_v16));                 \
        p_ = r_ * OPS_SOFTMAX_C3 + OPS_SOFTMAX_C2;                              \
        p_ = p_ * r_ + OPS_SOFTMAX_C1;                                          \
        p_ = p_ * r_ + 1.0f;                                                    \
        e = (ops_u16)p_ + (((ops_u16)k_ - dn_) << 23);                          \
        e &= (ops_u16)(u_ >= ulo);                                              \
        e = (e + 0x7fffu + ((e >> 16) & 1u)) & 0xffff0000u;                     \
    } while (0)

/* The rounded values e0 (j .. j + 15) and e1 (the next 16) as 16 words
 * (even j low) at dst, nw of them; each word's odd value, then its even
 * one, as floats, added to sum. */
#define SOFTMAX_STORE(dst, nw, sum)                         \
    do {                                                    \
        ops_u16 ev_ = __builtin_shuffle(e0, e1, even);      \
        ops_u16 od_ = __builtin_shuffle(e0, e1, even + 1u); \
        sum += (ops_v16)od_;                                \
        sum += (ops_v16)ev_;                                \
        ops_u16 w_ = ev_ >> 16 | od_;                       \
        memcpy(dst, &w_, sizeof(uint32_t) * (size_t)(nw));  \
    } while (0)

__attribute__((optimize("fp-contract=fast"))) OPS_CLONES void
ops_softmax_words(const float *x, int n_rows, int n, int ld, float s, float *m, float *l,
                  float *alpha, uint32_t *p, int ldp) {
    const ops_u16 even = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    for (int i = 0; i < n_rows; i++) {
        const float *xi = x + (size_t)i * ld;
        uint32_t *pi = p + (size_t)i * ldp;
        float mx = max16(xi, n) * s;
        float m_new = mx > m[i] ? mx : m[i];
        alpha[i] = m[i] == -INFINITY ? 0.0f : ops_exp_poly_fused(m[i] - m_new);
        ops_v16 c1 = {0}, c2 = {0}, ulo = {0}, a0 = {0}, a1 = {0};
        c1 += s * OPS_SOFTMAX_LOG2E, c2 += -(m_new * OPS_SOFTMAX_LOG2E), ulo += OPS_SOFTMAX_ULO;
        ops_u16 e0, e1;
        int j = 0;
        for (; j + 32 <= n; j += 32) {
            SOFTMAX_V16(e0, xi + j);
            SOFTMAX_V16(e1, xi + j + 16);
            if (j % 64)
                SOFTMAX_STORE(pi + j / 2, 16, a1);
            else
                SOFTMAX_STORE(pi + j / 2, 16, a0);
        }
        if (j < n) { /* the tail through a zero-padded copy */
            float buf[32] = {0};
            memcpy(buf, xi + j, sizeof(float) * (size_t)(n - j));
            SOFTMAX_V16(e0, buf);
            SOFTMAX_V16(e1, buf + 16);
            for (int t = n - j; t < 32; t++) { /* past n: 0 (adds nothing), not 2^c2 */
                if (t < 16)
                    e0[t] = 0;
                else
                    e1[t - 16] = 0;
            }
            if (j % 64)
                SOFTMAX_STORE(pi + j / 2, (n - j + 1) / 2, a1);
            else
                SOFTMAX_STORE(pi + j / 2, (n - j + 1) / 2, a0);
        }
        float t[16];
        a0 += a1;
        memcpy(t, &a0, sizeof(t));
        for (int w = 8; w >= 1; w /= 2) /* the lanes' tree */
            for (int q = 0; q < w; q++)
                t[q] += t[q + w];
        l[i] = fmaf(l[i], alpha[i], t[0]);
        m[i] = m_new;
    }
}
#undef SOFTMAX_V16
#undef SOFTMAX_STORE

/* x . a over n_in values: 16 lanes, each a chain of fused multiply-adds in
 * k order, the tail fused onto 0, then the lanes added in order (the same
 * sum whichever caller, row or batch, and whichever clone: fmaf is exact). */
static inline float lora_dot_end(const float *acc, const float *restrict x, const float *restrict a,
                                 int j, int n_in) {
    float s = 0;
    for (; j < n_in; j++)
        s = fmaf(x[j], a[j], s);
    for (int l = 0; l < 16; l++)
        s += acc[l];
    return s;
}

/* Ranks [k, k + 4) of rows [0, nr) (nr 1 or 2, a constant once inlined):
 * each x vector loaded once for four products, each A vector once for the
 * rows, 4 * nr independent chains of 16 lanes. Two rows keep AVX-512's two
 * FMA ports busy past the chains' latency (4 zmm chains do not) and halve
 * the reads of A, which for fc2 (64 KiB) come from L2; with 8-lane or
 * 4-lane vectors their 32 or 64 accumulator registers would not fit, so
 * those builds take rows one at a time (the same bits either way). */
static inline __attribute__((always_inline)) void lora_down4(const float *restrict x, int ldx,
                                                             const int nr, int n_in,
                                                             const float *restrict a, int r, int k,
                                                             float *restrict t) {
    const float *restrict a0 = a + (size_t)k * n_in, *restrict a1 = a0 + n_in,
                          *restrict a2 = a1 + n_in, *restrict a3 = a2 + n_in;
    float c[2][4][16] = {{{0}}};
    int j = 0;
    for (; j + 16 <= n_in; j += 16)
        for (int q = 0; q < nr; q++)
            for (int l = 0; l < 16; l++) {
                float v = x[(size_t)q * ldx + j + l];
                c[q][0][l] = fmaf(v, a0[j + l], c[q][0][l]);
                c[q][1][l] = fmaf(v, a1[j + l], c[q][1][l]);
                c[q][2][l] = fmaf(v, a2[j + l], c[q][2][l]);
                c[q][3][l] = fmaf(v, a3[j + l], c[q][3][l]);
            }
    for (int q = 0; q < nr; q++) {
        const float *xq = x + (size_t)q * ldx;
        float *tq = t + (size_t)q * r + k;
        tq[0] = lora_dot_end(c[q][0], xq, a0, j, n_in);
        tq[1] = lora_dot_end(c[q][1], xq, a1, j, n_in);
        tq[2] = lora_dot_end(c[q][2], xq, a2, j, n_in);
        tq[3] = lora_dot_end(c[q][3], xq, a3, j, n_in);
    }
}

OPS_CLONES void ops_lora_down(const float *restrict x, int ldx, int n, int n_in,
                              const float *restrict a, int r, float *restrict t) {
    int r4 = r & ~3;
#if defined(__x86_64__) && !defined(EMB_NO_TARGET_CLONES)
    int pairs = __builtin_cpu_supports("avx512f"); /* the clone running is the AVX-512 one */
#else
    int pairs = 0;
#endif
    for (int k = 0; k < r4; k += 4) { /* four ranks (the model's rank 4) per pass */
        int i = 0;
        for (; pairs && i + 2 <= n; i += 2)
            lora_down4(x + (size_t)i * ldx, ldx, 2, n_in, a, r, k, t + (size_t)i * r);
        for (; i < n; i++)
            lora_down4(x + (size_t)i * ldx, ldx, 1, n_in, a, r, k, t + (size_t)i * r);
    }
    for (int i = 0; i < n; i++) { /* the ranks past a multiple of four, one at a time */
        const float *restrict xi = x + (size_t)i * ldx;
        for (int k = r4; k < r; k++) {
            const float *restrict ak = a + (size_t)k * n_in;
            float acc[16] = {0};
            int j = 0;
            for (; j + 16 <= n_in; j += 16)
                for (int l = 0; l < 16; l++)
                    acc[l] = fmaf(xi[j + l], ak[j + l], acc[l]);
            t[(size_t)i * r + k] = lora_dot_end(acc, xi, ak, j, n_in);
        }
    }
}

/* restrict matters: without it GCC cannot vectorise the in-place update.
 * One fused multiply-add per rank, in rank order (wmat_gemm_lora's order,
 * which the kernels that update in their epilogue follow too). */
OPS_CLONES void ops_lora_up(float *restrict y, int lo, int hi, const float *restrict t, int r,
                            const float *restrict bt, int n_out) {
    int k = 0;
    for (; k + 4 <= r; k += 4) { /* rank 4 (the model's) in one pass over y */
        const float t0 = t[k], t1 = t[k + 1], t2 = t[k + 2], t3 = t[k + 3];
        const float *restrict b0 = bt + (size_t)k * n_out, *restrict b1 = b0 + n_out,
                              *restrict b2 = b1 + n_out, *restrict b3 = b2 + n_out;
        for (int j = lo; j < hi; j++)
            y[j] = fmaf(t3, b3[j], fmaf(t2, b2[j], fmaf(t1, b1[j], fmaf(t0, b0[j], y[j]))));
    }
    for (; k < r; k++) {
        const float tk = t[k], *restrict bk = bt + (size_t)k * n_out;
        for (int j = lo; j < hi; j++)
            y[j] = fmaf(tk, bk[j], y[j]);
    }
}

void ops_rope_inv_freq(float base, int d, float *inv_freq) {
    /* torch: 1.0 / (base ** (arange(0, d, 2, dtype=float32) / d)), all f32 */
    for (int i = 0; i < d / 2; i++)
        inv_freq[i] = 1.0f / powf(base, (float)(2 * i) / (float)d);
}

void ops_rope_head(float *v, int d, const float *cos_t, const float *sin_t) {
    int h = d / 2;
    for (int i = 0; i < h; i++) {
        float a = v[i], b = v[i + h];
        v[i] = a * cos_t[i] - b * sin_t[i];
        v[i + h] = b * cos_t[i] + a * sin_t[i];
    }
}

void ops_gemm_nt(int m, int n, int k, const float *x, int ldx, const float *w, int ldw,
                 const float *bias, float *y, int ldy) {
    if (m <= 0 || n <= 0) return;
    float beta = 0.0f;
    if (bias) {
        for (int i = 0; i < m; i++)
            memcpy(y + (size_t)i * ldy, bias, sizeof(float) * (size_t)n);
        beta = 1.0f;
    }
    /* Y[m][n] = X[m][k] . W[n][k]^T (+ Y) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, ldx, w, ldw, beta, y,
                ldy);
}

/* ---- naive references: straight loops in double, for tests/test_ops.c ---- */

void ref_add_layernorm(float *x, const float *r, int n_rows, int n, const float *w, const float *b,
                       float eps) {
    for (int i = 0; i < n_rows; i++) {
        float *xi = x + (size_t)i * n;
        double mean = 0, var = 0;
        for (int j = 0; j < n; j++)
            mean += (double)xi[j] + (r ? r[(size_t)i * n + j] : 0);
        mean /= n;
        for (int j = 0; j < n; j++) {
            double d = (double)xi[j] + (r ? r[(size_t)i * n + j] : 0) - mean;
            var += d * d;
        }
        var /= n;
        for (int j = 0; j < n; j++) {
            double v = (double)xi[j] + (r ? r[(size_t)i * n + j] : 0);
            xi[j] = (float)((v - mean) / sqrt(var + eps) * w[j] + b[j]);
        }
    }
}

void ref_gelu(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0))));
}

void ref_softmax_rows(float *x, int n_rows, int n, int ld) {
    for (int i = 0; i < n_rows; i++) {
        float *xi = x + (size_t)i * ld;
        double sum = 0;
        for (int j = 0; j < n; j++)
            sum += exp((double)xi[j]);
        for (int j = 0; j < n; j++)
            xi[j] = (float)(exp((double)xi[j]) / sum);
    }
}

void ref_gemm_nt(int m, int n, int k, const float *x, int ldx, const float *w, int ldw,
                 const float *bias, float *y, int ldy) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = bias ? bias[j] : 0;
            for (int l = 0; l < k; l++)
                s += (double)x[(size_t)i * ldx + l] * w[(size_t)j * ldw + l];
            y[(size_t)i * ldy + j] = (float)s;
        }
}
