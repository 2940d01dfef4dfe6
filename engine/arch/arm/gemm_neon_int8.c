/* gemm_neon_int8.c -- the int8 kernels for aarch64, fastest first: USMMLA
 * (FEAT_I8MM: Neoverse V1/V2/N2, Graviton3/4), SDOT (FEAT_DotProd, Armv8.2
 * and later: Neoverse N1/V1/V2, Graviton2-4, Ampere Altra, Apple M) and
 * plain Advanced SIMD (SMULL/SMLAL/SADALP: every Armv8.0 core, e.g.
 * Cortex-A72/Graviton1). Every function that uses I8MM or SDOT carries a
 * target attribute, so the file builds for baseline aarch64; the table in
 * gemm.c only picks those rows when the CPU mask has CPU_ARM_I8MM or
 * CPU_ARM_DOTPROD.
 *
 * Quantisation: the contract of the AVX-512 VNNI kernel (gemm_avx512.c),
 * on the same int8 word layout (gemm_prep_int8): weights s8 symmetric per
 * output row, activations u8 asymmetric per input row over its whole k
 * (s_x = (max(x, 0) - min(x, 0)) / 255, zero point z), i32 sums over k
 * blocks of 1024 values, and per block
 *     first block:  Y  = s_x s_w (acc - z colsum) (+ b)
 *     later blocks: Y += s_x s_w acc
 * in that float order. Integer sums are exact, so these kernels give the
 * same bits as the x86 int8 kernels for the same inputs.
 *
 * SDOT and SMULL multiply s8 by s8, not u8 by s8 (USMMLA does u8 x s8):
 * the activations are stored as q_x - 128 (an s8) and the block's sum of
 * q_w times 128 added back: sum (q_x - 128) q_w + 128 sum q_w = sum q_x q_w, the same integer.
 * The weights' column sums per k block (bsum below) are computed once at
 * load into the tail of w->scale, after scale[n_pad] (n_pad / 16 * 64 bytes
 * per block: 16 KiB for the 4096-wide FFN down projection).
 *
 * Blocking, per call, on the caller's column slice [col_lo, col_hi):
 *   for each block of MC rows        (a scale and zero point per row)
 *     for each block of KC k-words:  quantise MC x 4 KC activations into
 *                                    tiles of MR rows, k-major (L2)
 *       for each panel of 16 columns: its KC words (16 KiB) stay in L1
 *         for each tile of MR rows:  the microkernel
 * SDOT microkernel, 6 x 16: 24 q accumulators (4 columns each), per k-word
 * four 16-byte loads of W (16 columns x 4 k), one q and one d load of the
 * six rows' activation words, and 24 SDOTs by element: 1 load per 4 SDOTs,
 * the shape that keeps Neoverse's two (N1) or four (V1) SIMD pipes busy.
 * Plain NEON microkernel, 2 x 16: per two k-words and row, each 16-byte W
 * vector (4 columns x 4 k) is multiplied bytewise with the row's word
 * repeated (SMULL/SMULL2 into s16), the next k-word's added (SMLAL: two
 * products of s8 by s8 fit an s16: |sum| <= 2 * 128 * 127 = 32512), then
 * widened pairwise into s32 (SADALP); two s32 lanes per column, added
 * (ADDP) at the end. USMMLA microkernel, 4 x 16: see micro_mm_body. The
 * same code runs for every m, row and slice: a row's result does not
 * depend on its batch.
 */
#include "engine/cpu.h"
#include "engine/engine_impl.h"
#include "engine/gemm_kernels.h"

#include <arm_neon.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define INLINE      static inline __attribute__((always_inline))
#define TARGET_DOT  __attribute__((target("arch=armv8.2-a+dotprod")))
#define TARGET_MM   __attribute__((target("arch=armv8.2-a+i8mm")))
#define TARGET_BASE /* baseline Armv8.0 Advanced SIMD */

/* KC: k-words per block (1024 k values): the x86 int8 kernels' block, which
 * fixes where the float epilogue runs, so it must stay equal to theirs. MC:
 * rows per block (a multiple of both MRs). */
enum { KC = 256, MC = 96, MR_DOT = 6, MR_NEON = 2, MR_MM = 4 };

static int imin(int a, int b) {
    return a < b ? a : b;
}

/* ---- weights: gemm_prep_int8's layout plus per-block column sums ---- */

static int prep_int8(struct wmat *w, const float *src) {
    if (gemm_prep_int8(w, src) != 0) return -1;
    int kw = (w->n_in + 3) / 4, nb = (kw + KC - 1) / KC, n_pad = (w->n_out + 15) & ~15;
    size_t bytes = (size_t)n_pad * 4 * (1 + (size_t)nb);
    float *s = NULL;
    if (posix_memalign((void **)&s, 64, bytes) != 0) {
        free(w->data);
        free(w->scale);
        w->data = NULL;
        w->scale = NULL;
        return -1;
    }
    memcpy(s, w->scale, (size_t)n_pad * 4);
    int32_t *bsum = (int32_t *)(s + n_pad);
    const int8_t *d = w->data;
    for (int b = 0; b < nb; b++)
        for (int j = 0; j < n_pad; j++) {
            const int8_t *col = d + ((size_t)(j / 16) * kw * 16 + j % 16) * 4;
            int32_t sum = 0;
            for (int k = b * KC; k < imin(kw, (b + 1) * KC); k++)
                for (int t = 0; t < 4; t++)
                    sum += col[(size_t)k * 64 + t];
            bsum[(size_t)b * n_pad + j] = sum;
        }
    free(w->scale);
    w->scale = s;
    w->nbytes += (size_t)nb * n_pad * 4;
    return 0;
}

/* ---- activations ---- */

/* Row parameters over the whole row, as the x86 kernels: the range
 * [min(x, 0), max(x, 0)] onto [0, 255]. */
static void quant_params(const float *x, int ldx, int rows, int n_in, float *sx, int32_t *zx,
                         float *inv) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * ldx;
        float32x4_t vmin = vdupq_n_f32(0), vmax = vdupq_n_f32(0);
        int k = 0;
        for (; k + 4 <= n_in; k += 4) {
            float32x4_t v = vld1q_f32(xr + k);
            vmin = vminq_f32(vmin, v);
            vmax = vmaxq_f32(vmax, v);
        }
        float lo = vminvq_f32(vmin), hi = vmaxvq_f32(vmax);
        for (; k < n_in; k++)
            lo = fminf(lo, xr[k]), hi = fmaxf(hi, xr[k]);
        float s = (hi - lo) / 255.0f;
        if (!(s > 0)) s = 1.0f; /* an all-zero row */
        long z = lrintf(-lo / s);
        zx[r] = (int32_t)(z < 0 ? 0 : z > 255 ? 255 : z);
        sx[r] = s;
        inv[r] = 1.0f / s;
    }
}

/* Rows [0, mc) x k-words [k0, k0 + nk) into tiles of mr_max rows, each
 * tile mr_max * nks words (nks: nk, or nk rounded up to even for USMMLA).
 * Dot layout (mm = 0): word kw of tile row r at [kw * mr_max + r], bytes
 * q_x - 128 (s8). USMMLA layout (mm = 1): per pair of k-words j and pair of
 * rows p, four words [row 2p: 2j, 2j + 1; row 2p + 1: 2j, 2j + 1] at
 * [j * 2 mr_max + 4 p], bytes q_x (u8), a zero word past nk. q_x =
 * clamp(rint(x / s_x) + z, 0, 255), k past n_in giving z (its W is zero).
 * The last tile's rows past mc are zero. */
INLINE size_t tile_word(int mm, int mr_max, int nks, int r, int kw) {
    size_t t = (size_t)(r / mr_max) * mr_max * nks;
    int rr = r % mr_max;
    return mm ? t + (size_t)(kw / 2) * 2 * mr_max + (rr / 2) * 4 + (rr % 2) * 2 + kw % 2
              : t + (size_t)kw * mr_max + rr;
}

static void pack_tiles(const float *x, int ldx, int mc, int n_in, int k0, int nk, const int32_t *zx,
                       const float *inv, int32_t *xp, int mr_max, int mm) {
    int rows = (mc + mr_max - 1) / mr_max * mr_max, nks = mm ? (nk + 1) & ~1 : nk;
    int shift = mm ? 0 : 128;
    for (int r = 0; r < rows; r++) {
        if (r >= mc) {
            for (int kw = 0; kw < nks; kw++)
                xp[tile_word(mm, mr_max, nks, r, kw)] = 0;
            continue;
        }
        const float *xr = x + (size_t)r * ldx;
        float32x4_t vinv = vdupq_n_f32(inv[r]);
        int32x4_t vz = vdupq_n_s32(zx[r]), v0 = vdupq_n_s32(0), v255 = vdupq_n_s32(255),
                  vsh = vdupq_n_s32(shift);
        int kw = 0;
        for (; kw < nk && 4 * (k0 + kw) + 4 <= n_in; kw++) { /* one word: four k */
            float32x4_t v = vld1q_f32(xr + 4 * (k0 + kw));
            int32x4_t q = vaddq_s32(vcvtnq_s32_f32(vmulq_f32(v, vinv)), vz);
            q = vsubq_s32(vminq_s32(vmaxq_s32(q, v0), v255), vsh);
            int8x8_t b = vmovn_s16(vcombine_s16(vmovn_s32(q), vdup_n_s16(0)));
            xp[tile_word(mm, mr_max, nks, r, kw)] = vget_lane_s32(vreinterpret_s32_s8(b), 0);
        }
        for (; kw < nk; kw++) { /* the tail of n_in, and past it */
            uint32_t word = 0;
            for (int i = 0; i < 4; i++) {
                int k = 4 * (k0 + kw) + i;
                long q = lrintf((k < n_in ? xr[k] : 0.0f) * inv[r]) + zx[r];
                q = q < 0 ? 0 : q > 255 ? 255 : q;
                word |= (uint32_t)(uint8_t)(q - shift) << (8 * i);
            }
            memcpy(&xp[tile_word(mm, mr_max, nks, r, kw)], &word, 4);
        }
        for (; kw < nks; kw++) /* USMMLA's pair padding: its W is zeroed in the kernel */
            xp[tile_word(mm, mr_max, nks, r, kw)] = 0;
    }
}

/* ---- epilogue ---- */

/* What a microkernel call stores into: mr rows of one panel, columns [c0, c1). */
struct epi {
    float *y;            /* row 0, the panel's column 0 */
    size_t ldy;          /* floats */
    const float *bias;   /* at the panel's column 0, or NULL */
    int first;           /* first k block: Y = ... (+ bias); later: Y += ... */
    int c0, c1;          /* the slice's columns inside the panel */
    const float *sx;     /* [mr] row scales */
    const int32_t *zx;   /* [mr] row zero points */
    const float *sw;     /* [16] column scales */
    const int32_t *csum; /* [16] column sums of q_w over all k */
    const int32_t *bsum; /* [16] column sums of q_w over this k block */
};

/* acc holds sum (q_x - 128) q_w of this block when `shifted` (SDOT, SMULL;
 * sum q_x q_w for USMMLA): add back 128 bsum, then the x86 kernels' expression: q = acc (- z
 * colsum, first block), s = float(q) * (s_x s_w), Y = s (+ b) or Y + s. */
INLINE void epilogue(const int mr, int32x4_t acc[][4], const struct epi *e, const int shifted) {
    float32x4_t sw[4];
    int32x4_t cs[4], b128[4];
    for (int v = 0; v < 4; v++) {
        sw[v] = vld1q_f32(e->sw + 4 * v);
        cs[v] = vld1q_s32(e->csum + 4 * v);
        b128[v] = vshlq_n_s32(vld1q_s32(e->bsum + 4 * v), 7);
    }
    int whole = e->c0 == 0 && e->c1 == 16;
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        float *yr = e->y + (size_t)r * e->ldy;
        float sr[16];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            int32x4_t q = shifted ? vaddq_s32(acc[r][v], b128[v]) : acc[r][v];
            if (e->first) q = vmlsq_n_s32(q, cs[v], e->zx[r]);
            float32x4_t s = vmulq_f32(vcvtq_f32_s32(q), vmulq_n_f32(sw[v], e->sx[r]));
            if (!whole) {
                vst1q_f32(sr + 4 * v, s);
                continue;
            }
            if (!e->first)
                s = vaddq_f32(vld1q_f32(yr + 4 * v), s);
            else if (e->bias)
                s = vaddq_f32(s, vld1q_f32(e->bias + 4 * v));
            vst1q_f32(yr + 4 * v, s);
        }
        if (!whole) gemm_exact_store(yr, sr, e->bias, e->first, e->c0, e->c1);
    }
}

/* ---- microkernels ---- */

/* SDOT, mr <= 6 rows x 16 columns over nk k-words: xp[kw * 6 + r] the
 * rows' words, w[kw * 64 + 4 l + i] byte i of column l's word kw. */
INLINE TARGET_DOT void micro_dot_body(const int mr, const int32_t *xp, const int8_t *w, int nk,
                                      const struct epi *e) {
    int32x4_t acc[MR_DOT][4];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
        acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = vdupq_n_s32(0);
#pragma GCC unroll 2
    for (int k = 0; k < nk; k++, w += 64, xp += MR_DOT) {
        int8x16_t w0 = vld1q_s8(w), w1 = vld1q_s8(w + 16), w2 = vld1q_s8(w + 32),
                  w3 = vld1q_s8(w + 48);
        int8x16_t xq = vreinterpretq_s8_s32(vld1q_s32(xp));  /* rows 0-3 */
        int8x8_t xd = vreinterpret_s8_s32(vld1_s32(xp + 4)); /* rows 4-5 */
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            switch (r) { /* the lane must be a constant */
#define ROWQ(R)                                            \
    case R:                                                \
        acc[R][0] = vdotq_laneq_s32(acc[R][0], w0, xq, R); \
        acc[R][1] = vdotq_laneq_s32(acc[R][1], w1, xq, R); \
        acc[R][2] = vdotq_laneq_s32(acc[R][2], w2, xq, R); \
        acc[R][3] = vdotq_laneq_s32(acc[R][3], w3, xq, R); \
        break;
#define ROWD(R)                                               \
    case R:                                                   \
        acc[R][0] = vdotq_lane_s32(acc[R][0], w0, xd, R - 4); \
        acc[R][1] = vdotq_lane_s32(acc[R][1], w1, xd, R - 4); \
        acc[R][2] = vdotq_lane_s32(acc[R][2], w2, xd, R - 4); \
        acc[R][3] = vdotq_lane_s32(acc[R][3], w3, xd, R - 4); \
        break;
                ROWQ(0)
                ROWQ(1)
                ROWQ(2)
                ROWQ(3)
                ROWD(4)
                ROWD(5)
#undef ROWQ
#undef ROWD
            }
        }
    }
    epilogue(mr, acc, e, 1);
}

/* Plain NEON, mr <= 2 rows x 16 columns; xp[kw * 2 + r]. */
INLINE void micro_neon_body(const int mr, const int32_t *xp, const int8_t *w, int nk,
                            const struct epi *e) {
    int32x4_t acc[MR_NEON][8]; /* [r][2 v + h]: columns 4v + 2h, 4v + 2h + 1, two lanes each */
#pragma GCC unroll 2
    for (int r = 0; r < mr; r++)
        for (int i = 0; i < 8; i++)
            acc[r][i] = vdupq_n_s32(0);
    int k = 0;
    for (; k + 2 <= nk; k += 2, w += 128, xp += 2 * MR_NEON) {
        int8x16_t x0[MR_NEON], x1[MR_NEON];
#pragma GCC unroll 2
        for (int r = 0; r < mr; r++) {
            x0[r] = vreinterpretq_s8_s32(vld1q_dup_s32(xp + r));
            x1[r] = vreinterpretq_s8_s32(vld1q_dup_s32(xp + MR_NEON + r));
        }
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            int8x16_t wa = vld1q_s8(w + 16 * v), wb = vld1q_s8(w + 64 + 16 * v);
#pragma GCC unroll 2
            for (int r = 0; r < mr; r++) {
                int16x8_t lo = vmull_s8(vget_low_s8(wa), vget_low_s8(x0[r]));
                int16x8_t hi = vmull_high_s8(wa, x0[r]);
                lo = vmlal_s8(lo, vget_low_s8(wb), vget_low_s8(x1[r]));
                hi = vmlal_high_s8(hi, wb, x1[r]);
                acc[r][2 * v] = vpadalq_s16(acc[r][2 * v], lo);
                acc[r][2 * v + 1] = vpadalq_s16(acc[r][2 * v + 1], hi);
            }
        }
    }
    if (k < nk) { /* an odd last k-word */
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            int8x16_t wa = vld1q_s8(w + 16 * v);
#pragma GCC unroll 2
            for (int r = 0; r < mr; r++) {
                int8x16_t x = vreinterpretq_s8_s32(vld1q_dup_s32(xp + r));
                acc[r][2 * v] =
                    vpadalq_s16(acc[r][2 * v], vmull_s8(vget_low_s8(wa), vget_low_s8(x)));
                acc[r][2 * v + 1] = vpadalq_s16(acc[r][2 * v + 1], vmull_high_s8(wa, x));
            }
        }
    }
    int32x4_t sum[MR_NEON][4];
#pragma GCC unroll 2
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < 4; v++)
            sum[r][v] = vpaddq_s32(acc[r][2 * v], acc[r][2 * v + 1]);
    epilogue(mr, sum, e, 1);
}

/* One USMMLA step over a pair of k-words for mr rows x 16 columns: wb is
 * the second word's row of W, or zeros past the block's last word. B for
 * columns (c, c + 1) is the 2 x 8 s8 matrix zip1 of the two words' 32-bit
 * lanes gives; A for rows (2p, 2p + 1) one 16-byte load of the tile. */
INLINE TARGET_MM void mm_step(const int np, int32x4_t acc[][8], const int32_t *xp, const int8_t *w,
                              const int8_t *wb) {
    uint8x16_t a[MR_MM / 2];
#pragma GCC unroll 4
    for (int p = 0; p < np; p++)
        a[p] = vreinterpretq_u8_s32(vld1q_s32(xp + 4 * p));
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
        int32x4_t lo = vreinterpretq_s32_s8(vld1q_s8(w + 16 * v));
        int32x4_t hi = wb ? vreinterpretq_s32_s8(vld1q_s8(wb + 16 * v)) : vdupq_n_s32(0);
        int8x16_t b0 = vreinterpretq_s8_s32(vzip1q_s32(lo, hi));
        int8x16_t b1 = vreinterpretq_s8_s32(vzip2q_s32(lo, hi));
#pragma GCC unroll 4
        for (int p = 0; p < np; p++) {
            acc[p][2 * v] = vusmmlaq_s32(acc[p][2 * v], a[p], b0);
            acc[p][2 * v + 1] = vusmmlaq_s32(acc[p][2 * v + 1], a[p], b1);
        }
    }
}

/* USMMLA (FEAT_I8MM), mr <= 4 rows x 16 columns (16 accumulators; six rows
 * would need 24 and spill): u8 activations times s8
 * weights, 2 x 2 outputs of 8 k per instruction (twice SDOT's products).
 * acc[p][2 v + h] holds rows 2p, 2p + 1 x columns 4v + 2h, 4v + 2h + 1. */
INLINE TARGET_MM void micro_mm_body(const int mr, const int32_t *xp, const int8_t *w, int nk,
                                    const struct epi *e) {
    const int np = (mr + 1) / 2;
    int32x4_t acc[MR_MM / 2][8];
#pragma GCC unroll 4
    for (int p = 0; p < np; p++)
        for (int i = 0; i < 8; i++)
            acc[p][i] = vdupq_n_s32(0);
    int k = 0;
    for (; k + 2 <= nk; k += 2, w += 128, xp += 2 * MR_MM)
        mm_step(np, acc, xp, w, w + 64);
    if (k < nk) mm_step(np, acc, xp, w, NULL);
    int32x4_t rows[MR_MM][4];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            int64x2_t c01 = vreinterpretq_s64_s32(acc[r / 2][2 * v]),
                      c23 = vreinterpretq_s64_s32(acc[r / 2][2 * v + 1]);
            rows[r][v] = vreinterpretq_s32_s64(r % 2 ? vzip2q_s64(c01, c23) : vzip1q_s64(c01, c23));
        }
    epilogue(mr, rows, e, 0);
}

typedef void (*micro_fn)(int mr, const int32_t *xp, const int8_t *w, int nk, const struct epi *e);

#define MICRO(name, attr, body, mr)                                          \
    static attr void name##_##mr(const int32_t *xp, const int8_t *w, int nk, \
                                 const struct epi *e) {                      \
        body(mr, xp, w, nk, e);                                              \
    }
MICRO(mdot, TARGET_DOT, micro_dot_body, 1)
MICRO(mdot, TARGET_DOT, micro_dot_body, 2)
MICRO(mdot, TARGET_DOT, micro_dot_body, 3)
MICRO(mdot, TARGET_DOT, micro_dot_body, 4)
MICRO(mdot, TARGET_DOT, micro_dot_body, 5)
MICRO(mdot, TARGET_DOT, micro_dot_body, 6)
MICRO(mmm, TARGET_MM, micro_mm_body, 1)
MICRO(mmm, TARGET_MM, micro_mm_body, 2)
MICRO(mmm, TARGET_MM, micro_mm_body, 3)
MICRO(mmm, TARGET_MM, micro_mm_body, 4)
MICRO(mneon, TARGET_BASE, micro_neon_body, 1)
MICRO(mneon, TARGET_BASE, micro_neon_body, 2)

static void micro_dot(int mr, const int32_t *xp, const int8_t *w, int nk, const struct epi *e) {
    switch (mr) {
    case 6: mdot_6(xp, w, nk, e); break;
    case 5: mdot_5(xp, w, nk, e); break;
    case 4: mdot_4(xp, w, nk, e); break;
    case 3: mdot_3(xp, w, nk, e); break;
    case 2: mdot_2(xp, w, nk, e); break;
    default: mdot_1(xp, w, nk, e); break;
    }
}

static void micro_mm(int mr, const int32_t *xp, const int8_t *w, int nk, const struct epi *e) {
    switch (mr) {
    case 4: mmm_4(xp, w, nk, e); break;
    case 3: mmm_3(xp, w, nk, e); break;
    case 2: mmm_2(xp, w, nk, e); break;
    default: mmm_1(xp, w, nk, e); break;
    }
}

static void micro_neon(int mr, const int32_t *xp, const int8_t *w, int nk, const struct epi *e) {
    if (mr == 2)
        mneon_2(xp, w, nk, e);
    else
        mneon_1(xp, w, nk, e);
}

/* ---- driver ---- */

/* Scratch: sx, zx, inv [MC] each, then the packed block of min(m, MC) rows
 * (rounded up to whole tiles) x min(KC, kw) words (rounded up to even). */
static size_t scratch_bytes(const struct wmat *w, int m, int mr_max) {
    if (m <= 0) return 0;
    size_t rows = (size_t)(imin(m, MC) + mr_max - 1) / mr_max * mr_max;
    return 64 + 3 * MC * 4 + 64 + rows * (size_t)((imin(KC, (w->n_in + 3) / 4) + 1) & ~1) * 4;
}
static size_t scratch_dot(const struct wmat *w, int m) {
    return scratch_bytes(w, m, MR_DOT);
}
static size_t scratch_neon(const struct wmat *w, int m) {
    return scratch_bytes(w, m, MR_NEON);
}
static size_t scratch_mm(const struct wmat *w, int m) {
    return scratch_bytes(w, m, MR_MM);
}

INLINE void drive(const struct wmat *w, int m, const float *x, int ldx, const float *bias, float *y,
                  int ldy, int col_lo, int col_hi, void *scratch, micro_fn micro, int mr_max,
                  int mm) {
    ENG_ASSERT(scratch != NULL);
    uintptr_t p0 = ((uintptr_t)scratch + 63) & ~(uintptr_t)63;
    float *sx = (float *)p0, *inv = (float *)(p0 + 2 * MC * 4);
    int32_t *zx = (int32_t *)(p0 + MC * 4);
    int32_t *xp = (int32_t *)((p0 + 3 * MC * 4 + 63) & ~(uintptr_t)63);
    int kw = (w->n_in + 3) / 4, n_pad = (w->n_out + 15) & ~15;
    const int8_t *wd = w->data;
    const int32_t *csum = (const int32_t *)(wd + (size_t)n_pad * kw * 4);
    const int32_t *bsum = (const int32_t *)(w->scale + n_pad);
    int p_lo = col_lo / 16, p_hi = (col_hi + 15) / 16;
    for (int i0 = 0; i0 < m; i0 += MC) {
        int mc = imin(MC, m - i0);
        const float *xb = x + (size_t)i0 * ldx;
        quant_params(xb, ldx, mc, w->n_in, sx, zx, inv);
        for (int k0 = 0, b = 0; k0 < kw; k0 += KC, b++) {
            int nk = imin(KC, kw - k0);
            int nks = mm ? (nk + 1) & ~1 : nk;
            pack_tiles(xb, ldx, mc, w->n_in, k0, nk, zx, inv, xp, mr_max, mm);
            for (int p = p_lo; p < p_hi; p++) {
                int c0 = col_lo - 16 * p, c1 = col_hi - 16 * p;
                struct epi e = {
                    .ldy = (size_t)ldy,
                    .bias = bias ? bias + 16 * p : NULL,
                    .first = k0 == 0,
                    .c0 = c0 < 0 ? 0 : c0,
                    .c1 = c1 > 16 ? 16 : c1,
                    .sw = w->scale + 16 * p,
                    .csum = csum + 16 * p,
                    .bsum = bsum + (size_t)b * n_pad + 16 * p,
                };
                const int8_t *wp = wd + ((size_t)p * kw + (size_t)k0) * 64;
                for (int r0 = 0; r0 < mc; r0 += mr_max) {
                    e.y = y + (size_t)(i0 + r0) * ldy + 16 * p;
                    e.sx = sx + r0;
                    e.zx = zx + r0;
                    micro(imin(mr_max, mc - r0), xp + (size_t)r0 * nks, wp, nk, &e);
                }
            }
        }
    }
}

static void gemm_dot(const struct wmat *w, int m, const float *x, int ldx, const float *bias,
                     float *y, int ldy, int col_lo, int col_hi, void *scratch) {
    drive(w, m, x, ldx, bias, y, ldy, col_lo, col_hi, scratch, micro_dot, MR_DOT, 0);
}

static void gemm_neon(const struct wmat *w, int m, const float *x, int ldx, const float *bias,
                      float *y, int ldy, int col_lo, int col_hi, void *scratch) {
    drive(w, m, x, ldx, bias, y, ldy, col_lo, col_hi, scratch, micro_neon, MR_NEON, 0);
}

static void gemm_mm(const struct wmat *w, int m, const float *x, int ldx, const float *bias,
                    float *y, int ldy, int col_lo, int col_hi, void *scratch) {
    drive(w, m, x, ldx, bias, y, ldy, col_lo, col_hi, scratch, micro_mm, MR_MM, 1);
}

const struct gemm_kernel gemm_arm_i8mm_int8 = {
    .name = "i8mm-int8",
    .kind = WMAT_INT8,
    .needs = CPU_ARM_NEON | CPU_ARM_I8MM,
    .prepare = prep_int8,
    .gemm = gemm_mm,
    .scratch_bytes = scratch_mm,
};

const struct gemm_kernel gemm_arm_dotprod_int8 = {
    .name = "dotprod-int8",
    .kind = WMAT_INT8,
    .needs = CPU_ARM_NEON | CPU_ARM_DOTPROD,
    .prepare = prep_int8,
    .gemm = gemm_dot,
    .scratch_bytes = scratch_dot,
};

const struct gemm_kernel gemm_arm_neon_int8 = {
    .name = "neon-int8",
    .kind = WMAT_INT8,
    .needs = CPU_ARM_NEON,
    .prepare = prep_int8,
    .gemm = gemm_neon,
    .scratch_bytes = scratch_neon,
};
