/* gemm_kernels.h -- the kernel table behind struct wmat (engine-internal;
 * included by engine/gemm.c and the kernel files under engine/arch/).
 *
 * A kernel is one row of gemm.c's table: the weight kind it computes, the
 * CPU bits it needs, how it lays out W (prepare) and its product (gemm, with
 * the contract of wmat_gemm). gemm_kernel_for() picks, once per matrix, the
 * first row of the kind whose bits the mask has. A new kernel is one file
 * here plus one row in that table. Rows are immutable: thread-safe.
 */
#ifndef EMB_GEMM_KERNELS_H
#define EMB_GEMM_KERNELS_H

#include "engine/gemm.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct gemm_kernel {
    const char *name; /* for logs: "avx2-exact", "avx512bf16", ... */
    enum wmat_kind kind;
    uint32_t needs; /* CPU_* bits */
    /* lays W (n_out x n_in f32, row-major) out into w->data; 0 or -1 (memory) */
    int (*prepare)(struct wmat *w, const float *src);
    void (*gemm)(const struct wmat *w, int m, const float *x, int ldx, const float *bias, float *y,
                 int ldy, int col_lo, int col_hi, void *scratch);
    size_t (*scratch_bytes)(const struct wmat *w, int m); /* NULL: none */
    /* the product with a LoRA update in its epilogue (wmat_gemm_lora's
     * contract); NULL: wmat_gemm_lora runs gemm, then the update, by blocks */
    void (*gemm_lora)(const struct wmat *w, int m, const float *x, int ldx, const float *bias,
                      const struct wmat_lora *lora, float *y, int ldy, int col_lo, int col_hi,
                      void *scratch);
    /* wmat_gemm_words' product on words as they are (no scratch); NULL:
     * gemm.c widens them and calls gemm */
    void (*gemm_words)(const struct wmat *w, int m, const struct wmat_words *x, float *y, int ldy,
                       int col_lo, int col_hi);
    /* bf16 kinds: ops_softmax_words (engine_impl.h) bit for bit, with this
     * kernel's own conversion; NULL: wmat_softmax_words calls that one */
    void (*softmax_words)(const float *x, int n_rows, int n, int ld, float s, float *m, float *l,
                          float *alpha, uint32_t *p, int ldp);
    /* bf16 kinds, optional: wmat_attend_words for heads of attend_d values
     * (-1 for other shapes); NULL: no fused attention */
    int (*attend_words)(const struct wmat *kv, int n_blocks, const struct wmat_words *q, int nq,
                        float s, float *o, int ldo);
    int attend_d;
};

/* Shared weight layouts (gemm.c), each in panels of 16 output columns,
 * n_out padded to a multiple of 16 with zeros:
 * - bf16 words: [n_pad / 16][kw][16] uint32, two bf16 per word (even k in
 *   the low half), kw = ceil(n_in / 2); w->layout = WMAT_LAYOUT_BF16.
 * - int8 words: [n_pad / 16][kw][16] words of four s8, then colsum[n_pad]
 *   int32; w->scale[n_pad] (symmetric per output row).
 * - f32: [n_pad / 16][n_in][16] floats; w->layout = WMAT_LAYOUT_F32. */
int gemm_prep_bf16(struct wmat *w, const float *src);
int gemm_prep_int8(struct wmat *w, const float *src);
/* Exact kinds: bf16 words when every value of W is a bf16 and n_in is even
 * (a bf16 checkpoint: half the memory, nothing lost), else f32 panels. */
int gemm_prep_exact(struct wmat *w, const float *src);

/* The kernels (engine/arch/...). */
extern const struct gemm_kernel gemm_generic_exact;
extern const struct gemm_kernel gemm_generic_int8;
#if defined(__x86_64__)
extern const struct gemm_kernel gemm_x86_avx2_exact;
extern const struct gemm_kernel gemm_x86_avx512_exact;
extern const struct gemm_kernel gemm_x86_avx2_int8;
extern const struct gemm_kernel gemm_x86_avx512_bf16;
extern const struct gemm_kernel gemm_x86_avx512_vnni;
extern const struct gemm_kernel gemm_x86_amx_bf16;
extern const struct gemm_kernel gemm_x86_amx_int8;
#elif defined(__aarch64__)
extern const struct gemm_kernel gemm_arm_neon_exact;
extern const struct gemm_kernel gemm_arm_bf16;
extern const struct gemm_kernel gemm_arm_i8mm_int8;
extern const struct gemm_kernel gemm_arm_dotprod_int8;
extern const struct gemm_kernel gemm_arm_neon_int8;
#endif

/* Fixed k block of the exact kernels: each output element is
 * sum over blocks in order (first block + bias), each block a sequential
 * fused (or, generic, unfused) multiply-add chain over its k values. The
 * order depends on nothing but n_in: not m, not the row, not the slice.
 * EXACT_MC rows of X (one k block: 96 KB) and EXACT_NP panels of Y (96 KB)
 * stay in L2 while the k blocks pass; one panel's k block, widened, in L1. */
enum { EXACT_KC = 256, EXACT_MC = 96, EXACT_NP = 16 };

/* An exact microkernel: for r < mr (mr <= its MR), columns c in [c0, c1)
 * of one panel: s = sum over k < nk, in order, of xp[k * MR + r] *
 * w[k * 16 + c] (xp: the tile's rows packed k-major by the driver; w: one
 * panel's k block as f32, 64-byte aligned), then
 * y[r * ldy + c] = first ? s (+ bias[c]) : y[r * ldy + c] + s. */
typedef void (*gemm_exact_micro)(int mr, const float *xp, const float *w, int nk, float *y,
                                 size_t ldy, const float *bias, int first, int c0, int c1);
/* Widens one panel's k block of bf16 words (nk / 2 rows of 16 words, nk
 * even) into f32 dst[nk][16]: exact, a bf16 is the top half of its f32. */
typedef void (*gemm_exact_widen)(float *dst, const uint32_t *src, int nk);

#define EXACT_INLINE static inline __attribute__((always_inline))

/* The portable epilogue of one row (the microkernels' partial panels). */
EXACT_INLINE void gemm_exact_store(float *yr, const float *s, const float *bias, int first, int c0,
                                   int c1) {
    for (int c = c0; c < c1; c++)
        yr[c] = !first ? yr[c] + s[c] : bias ? s[c] + bias[c] : s[c];
}

EXACT_INLINE void gemm_exact_widen_c(float *dst, const uint32_t *src, int nk) {
    for (int kw = 0; kw < nk / 2; kw++)
        for (int c = 0; c < 16; c++) {
            uint32_t u = src[kw * 16 + c], lo = u << 16, hi = u & 0xffff0000u;
            memcpy(&dst[(2 * kw) * 16 + c], &lo, 4);
            memcpy(&dst[(2 * kw + 1) * 16 + c], &hi, 4);
        }
}

/* X's block of rows [0, mc) x k [0, nk) into tiles of mr_max rows, each
 * k-major (xp[tile * mr_max * nk + k * mr_max + r]): the microkernel then
 * reads one stream instead of mr_max rows ldx apart (which share L1 sets
 * when ldx is a multiple of 1024 floats). Rows past mc are not written. */
EXACT_INLINE void gemm_exact_pack(float *xp, const float *x, int ldx, int mc, int nk, int mr_max) {
    for (int r0 = 0; r0 < mc; r0 += mr_max) {
        int mr = mc - r0 < mr_max ? mc - r0 : mr_max;
        float *t = xp + (size_t)r0 * nk;
        for (int r = 0; r < mr; r++) {
            const float *xr = x + (size_t)(r0 + r) * ldx;
            for (int k = 0; k < nk; k++)
                t[k * mr_max + r] = xr[k];
        }
    }
}

/* The exact kernels' shared driver, inlined into each kernel so that its
 * micro and widen are direct calls: rows in blocks of EXACT_MC, columns in
 * groups of EXACT_NP panels, then k blocks of EXACT_KC in order (X's block
 * packed), each panel of the group (widened once if bf16), each row tile of
 * mr_max (a divisor of EXACT_MC). Each output element sees its k blocks in
 * order whatever m, the row or the slice. Stack: 112 KB. */
EXACT_INLINE void gemm_exact_drive(const struct wmat *w, int m, const float *x, int ldx,
                                   const float *bias, float *y, int ldy, int col_lo, int col_hi,
                                   gemm_exact_micro micro, gemm_exact_widen widen, int mr_max) {
    _Alignas(64) float wbuf[EXACT_KC * 16];     /* one panel's k block widened from bf16 (L1) */
    _Alignas(64) float xp[EXACT_MC * EXACT_KC]; /* X's block, packed (L2) */
    int n_in = w->n_in, bf16 = w->layout == WMAT_LAYOUT_BF16;
    int p_lo = col_lo / 16, p_hi = (col_hi + 15) / 16;
    for (int i0 = 0; i0 < m; i0 += EXACT_MC) {
        int mc = m - i0 < EXACT_MC ? m - i0 : EXACT_MC;
        for (int g0 = p_lo; g0 < p_hi; g0 += EXACT_NP) {
            int g1 = p_hi - g0 < EXACT_NP ? p_hi : g0 + EXACT_NP;
            for (int k0 = 0; k0 < n_in; k0 += EXACT_KC) {
                int nk = n_in - k0 < EXACT_KC ? n_in - k0 : EXACT_KC;
                gemm_exact_pack(xp, x + (size_t)i0 * ldx + k0, ldx, mc, nk, mr_max);
                for (int p = g0; p < g1; p++) {
                    const float *wp;
                    if (bf16) {
                        widen(wbuf,
                              (const uint32_t *)w->data + (size_t)p * (n_in / 2) * 16 +
                                  (size_t)k0 / 2 * 16,
                              nk);
                        wp = wbuf;
                    } else {
                        wp = (const float *)w->data + (size_t)p * n_in * 16 + (size_t)k0 * 16;
                    }
                    int c0 = col_lo - 16 * p, c1 = col_hi - 16 * p;
                    c0 = c0 < 0 ? 0 : c0;
                    c1 = c1 > 16 ? 16 : c1;
                    const float *bp = bias ? bias + 16 * p : NULL;
                    for (int r0 = 0; r0 < mc; r0 += mr_max) {
                        int mr = mc - r0 < mr_max ? mc - r0 : mr_max;
                        micro(mr, xp + (size_t)r0 * nk, wp, nk,
                              y + (size_t)(i0 + r0) * ldy + 16 * p, (size_t)ldy, bp, k0 == 0, c0,
                              c1);
                    }
                }
            }
        }
    }
}

/* ---- the int8 kind's contract, shared by every int8 kernel ----
 * Weights: gemm_prep_int8 (s8 symmetric per output row, scale s_w, colsum).
 * Activations: u8 asymmetric per row over the row's whole k, computed at
 * call time: gemm_int8_row_params, then gemm_int8_quant per value (k past
 * n_in takes the zero point z: its W is zero). Products: exact i32 sums
 * over k blocks of INT8_KC_WORDS words (1024 k values), in order; each
 * block is dequantised into Y by gemm_int8_first (the first block, with the
 * zero-point compensation and the bias) or gemm_int8_next (later blocks).
 * Integer sums do not depend on their order, so any kernel that keeps this
 * block split and these float expressions gives the same bits (the vector
 * kernels spell the same operations: cvt, mul, add; round to nearest even). */
enum { INT8_KC_WORDS = 256 };

/* Row parameters: [lo, hi] = [min(x, 0), max(x, 0)] maps onto [0, 255]:
 * s = (hi - lo) / 255 (1 for an all-zero row), z = rint(-lo / s) in
 * [0, 255] (0 is exact), inv = 1 / s. */
EXACT_INLINE void gemm_int8_range_params(float lo, float hi, float *s, int32_t *z, float *inv) {
    float sc = (hi - lo) / 255.0f;
    if (!(sc > 0)) sc = 1.0f; /* an all-zero row */
    long zl = lrintf(-lo / sc);
    *z = (int32_t)(zl < 0 ? 0 : zl > 255 ? 255 : zl);
    *s = sc;
    *inv = 1.0f / sc;
}

/* The same from the row itself (a vector kernel may find lo and hi its own
 * way: min and max are exact in any order). */
EXACT_INLINE void gemm_int8_row_params(const float *x, int n_in, float *s, int32_t *z, float *inv) {
    float lo = 0, hi = 0;
    for (int k = 0; k < n_in; k++) {
        lo = x[k] < lo ? x[k] : lo;
        hi = x[k] > hi ? x[k] : hi;
    }
    gemm_int8_range_params(lo, hi, s, z, inv);
}

/* One activation: clamp(rint(v * inv) + z, 0, 255) (rint: the current
 * rounding mode, to nearest even by default, as cvtps2dq). */
EXACT_INLINE uint8_t gemm_int8_quant(float v, float inv, int32_t z) {
    long q = lrintf(v * inv) + z;
    return (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
}

/* Y of the first k block: (acc - z colsum) s_x s_w (+ bias), the
 * compensation in wrapping i32 (it never wraps for the model's shapes). */
EXACT_INLINE float gemm_int8_first(int32_t acc, int32_t z, int32_t colsum, float sx, float sw,
                                   const float *bias) {
    int32_t q = (int32_t)((uint32_t)acc - (uint32_t)z * (uint32_t)colsum);
    float v = (float)q * (sx * sw);
    return bias ? v + *bias : v;
}

/* Y after a later k block: y + acc s_x s_w (two statements: a compiler
 * that contracts by default, FP_CONTRACT on, fuses only within one). */
EXACT_INLINE float gemm_int8_next(float y, int32_t acc, float sx, float sw) {
    float v = (float)acc * (sx * sw);
    return v + y;
}

/* The colsum row of an int8 matrix (after its n_pad / 16 panels). */
EXACT_INLINE const int32_t *gemm_int8_colsum(const struct wmat *w) {
    size_t kw = (size_t)(w->n_in + 3) / 4, n_pad = (size_t)(w->n_out + 15) & ~(size_t)15;
    return (const int32_t *)((const uint32_t *)w->data + n_pad * kw);
}

#endif
