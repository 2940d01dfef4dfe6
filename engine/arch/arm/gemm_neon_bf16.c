/* gemm_neon_bf16.c -- the bf16 kernel for aarch64 FEAT_BF16 (Neoverse V1,
 * V2, N2: Graviton3/4; Apple M2 and later): BFMMLA, bf16 products
 * accumulated in f32, on the bf16 word layout of engine/gemm.c (the layout
 * the AVX512_BF16 kernel reads, so the engine's bf16 attention operands,
 * packed by wmat_bf16_pack, work unchanged). The function that uses the
 * instructions carries a target attribute, so the file builds for baseline
 * aarch64; the table in gemm.c only picks this row when the CPU mask has
 * CPU_ARM_BF16.
 *
 * The contract is the bf16 kind's (gemm.h): activations rounded to bf16
 * (to nearest even, BFCVTN), products of bf16 pairs accumulated in f32,
 * within bf16's error bound of the exact product; the bits differ from the
 * x86 bf16 kernel's (another instruction, another summation order), as
 * they may. For one kernel the order depends only on n_in, so a row's
 * result does not depend on its batch.
 *
 * BFMMLA multiplies a 2 x 4 bf16 matrix (two rows of four k) by the
 * transpose of another (two columns of four k) into a 2 x 2 f32 block: 16
 * multiply-adds, twice a BFDOT's. The weights' words hold two k each, so B
 * for columns (c, c + 1) over four k is zip1 of two consecutive words' rows
 * (ZIP1/ZIP2 on 32-bit lanes), as the USMMLA int8 kernel does with its
 * four-k words. Microkernel 4 x 16: 16 q accumulators (2 row pairs x 8
 * column pairs), per four k eight 16-byte loads of W, eight zips, two
 * 16-byte loads of A and 16 BFMMLAs. Blocking: rows in blocks of MC, k in
 * blocks of KC words, the block's activations converted once into tiles of
 * MR rows (L2), then per 16-column panel (its block of words: 16 KiB, L1)
 * each tile.
 */
#include "engine/cpu.h"
#include "engine/engine_impl.h"
#include "engine/gemm_kernels.h"

#include <arm_neon.h>
#include <string.h>

#define INLINE      static inline __attribute__((always_inline))
#define TARGET_BF16 __attribute__((target("arch=armv8.2-a+bf16")))

/* KC: k-words per block (512 k values); MC: rows per block (whole tiles). */
enum { KC = 256, MC = 96, MR = 4 };
_Static_assert(MC % MR == 0, "row tiles fill a row block");

static int imin(int a, int b) {
    return a < b ? a : b;
}

/* ---- activations ----
 * Rows [0, mc) x k-words [k0, k0 + nk) into tiles of MR rows, nks = nk
 * rounded up to even words per row: per pair of words j and pair of rows p,
 * four words [row 2p: 2j, 2j + 1; row 2p + 1: 2j, 2j + 1] at
 * tile + j * 2 MR + 4 p, i.e. the 2 x 4 bf16 A operand of BFMMLA in one
 * 16-byte load. k past n_in and rows past mc are zero. */
static TARGET_BF16 void pack_tiles(const float *x, int ldx, int mc, int n_in, int k0, int nk,
                                   uint32_t *xp) {
    int rows = (mc + MR - 1) / MR * MR, nks = (nk + 1) & ~1;
    for (int r = 0; r < rows; r++) {
        uint32_t *t = xp + (size_t)(r / MR) * MR * nks + (r % MR / 2) * 4 + (r % 2) * 2;
        const float *xr = x + (size_t)r * ldx;
        int j = 0;
        if (r < mc) /* whole groups of four k inside n_in: one BFCVTN */
            for (; 2 * j + 2 <= nk && 2 * (k0 + 2 * j) + 4 <= n_in; j++) {
                bfloat16x4_t b = vcvt_bf16_f32(vld1q_f32(xr + 2 * (k0 + 2 * j)));
                memcpy(t + (size_t)j * 2 * MR, &b, 8);
            }
        for (; 2 * j < nks; j++) { /* the tail of n_in, past it, and rows past mc */
            float v[4];
            for (int i = 0; i < 4; i++) {
                int k = 2 * (k0 + 2 * j) + i, in_block = 2 * j + i / 2 < nk;
                v[i] = r < mc && in_block && k < n_in ? xr[k] : 0.0f;
            }
            bfloat16x4_t b = vcvt_bf16_f32(vld1q_f32(v));
            memcpy(t + (size_t)j * 2 * MR, &b, 8);
        }
    }
}

/* ---- microkernel ---- */

/* One BFMMLA step over a pair of k-words for np row pairs x 16 columns: wb
 * is the second word's row of W, or NULL past the block's last word. */
INLINE TARGET_BF16 void mm_step(const int np, float32x4_t acc[][8], const uint32_t *xp,
                                const uint32_t *w, const uint32_t *wb) {
    bfloat16x8_t a[MR / 2];
#pragma GCC unroll 2
    for (int p = 0; p < np; p++)
        a[p] = vreinterpretq_bf16_u32(vld1q_u32(xp + 4 * p));
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
        uint32x4_t lo = vld1q_u32(w + 4 * v), hi = wb ? vld1q_u32(wb + 4 * v) : vdupq_n_u32(0);
        bfloat16x8_t b0 = vreinterpretq_bf16_u32(vzip1q_u32(lo, hi));
        bfloat16x8_t b1 = vreinterpretq_bf16_u32(vzip2q_u32(lo, hi));
#pragma GCC unroll 2
        for (int p = 0; p < np; p++) {
            acc[p][2 * v] = vbfmmlaq_f32(acc[p][2 * v], a[p], b0);
            acc[p][2 * v + 1] = vbfmmlaq_f32(acc[p][2 * v + 1], a[p], b1);
        }
    }
}

/* mr <= 4 rows x one panel's columns [c0, c1) over nk k-words of one
 * block: acc[p][2 v + h] holds rows 2p, 2p + 1 x columns 4v + 2h, +1.
 * y = first ? s (+ bias) : y + s. */
INLINE TARGET_BF16 void micro_body(const int mr, const uint32_t *xp, const uint32_t *w, int nk,
                                   float *y, size_t ldy, const float *bias, int first, int c0,
                                   int c1) {
    const int np = (mr + 1) / 2;
    float32x4_t acc[MR / 2][8];
#pragma GCC unroll 2
    for (int p = 0; p < np; p++)
        for (int i = 0; i < 8; i++)
            acc[p][i] = vdupq_n_f32(0);
    int k = 0;
    for (; k + 2 <= nk; k += 2, w += 32, xp += 2 * MR)
        mm_step(np, acc, xp, w, w + 16);
    if (k < nk) mm_step(np, acc, xp, w, NULL);
    int whole = c0 == 0 && c1 == 16;
#pragma GCC unroll 4
    for (int r = 0; r < mr; r++) {
        float *yr = y + (size_t)r * ldy, s[16];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            float64x2_t c01 = vreinterpretq_f64_f32(acc[r / 2][2 * v]),
                        c23 = vreinterpretq_f64_f32(acc[r / 2][2 * v + 1]);
            float32x4_t sv =
                vreinterpretq_f32_f64(r % 2 ? vzip2q_f64(c01, c23) : vzip1q_f64(c01, c23));
            if (!whole) {
                vst1q_f32(s + 4 * v, sv);
                continue;
            }
            if (!first)
                sv = vaddq_f32(vld1q_f32(yr + 4 * v), sv);
            else if (bias)
                sv = vaddq_f32(sv, vld1q_f32(bias + 4 * v));
            vst1q_f32(yr + 4 * v, sv);
        }
        if (!whole) gemm_exact_store(yr, s, bias, first, c0, c1);
    }
}

#define MICRO(mr)                                                                                  \
    static TARGET_BF16 void micro_##mr(const uint32_t *xp, const uint32_t *w, int nk, float *y,    \
                                       size_t ldy, const float *bias, int first, int c0, int c1) { \
        micro_body(mr, xp, w, nk, y, ldy, bias, first, c0, c1);                                    \
    }
MICRO(1)
MICRO(2)
MICRO(3)
MICRO(4)

typedef void (*micro_fn)(const uint32_t *xp, const uint32_t *w, int nk, float *y, size_t ldy,
                         const float *bias, int first, int c0, int c1);
static const micro_fn micro_mr[MR + 1] = {NULL, micro_1, micro_2, micro_3, micro_4};

/* ---- driver ---- */

/* Scratch: the packed block of min(m, MC) rows (whole tiles) x min(KC, kw)
 * words (rounded up to even). */
static size_t scratch_bytes(const struct wmat *w, int m) {
    if (m <= 0) return 0;
    size_t rows = (size_t)(imin(m, MC) + MR - 1) / MR * MR;
    return 64 + rows * (size_t)((imin(KC, (w->n_in + 1) / 2) + 1) & ~1) * 4;
}

static void gemm(const struct wmat *w, int m, const float *x, int ldx, const float *bias, float *y,
                 int ldy, int col_lo, int col_hi, void *scratch) {
    ENG_ASSERT(scratch != NULL);
    uint32_t *xp = (uint32_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    int kw = (w->n_in + 1) / 2;
    const uint32_t *wd = w->data;
    int p_lo = col_lo / 16, p_hi = (col_hi + 15) / 16;
    for (int i0 = 0; i0 < m; i0 += MC) {
        int mc = imin(MC, m - i0);
        const float *xb = x + (size_t)i0 * ldx;
        for (int k0 = 0; k0 < kw; k0 += KC) {
            int nk = imin(KC, kw - k0), nks = (nk + 1) & ~1;
            pack_tiles(xb, ldx, mc, w->n_in, k0, nk, xp);
            for (int p = p_lo; p < p_hi; p++) {
                int c0 = col_lo - 16 * p, c1 = col_hi - 16 * p;
                c0 = c0 < 0 ? 0 : c0;
                c1 = c1 > 16 ? 16 : c1;
                const uint32_t *wp = wd + ((size_t)p * kw + (size_t)k0) * 16;
                const float *bp = bias ? bias + 16 * p : NULL;
                for (int r0 = 0; r0 < mc; r0 += MR)
                    micro_mr[imin(MR, mc - r0)](xp + (size_t)r0 * nks, wp, nk,
                                                y + (size_t)(i0 + r0) * ldy + 16 * p, (size_t)ldy,
                                                bp, k0 == 0, c0, c1);
            }
        }
    }
}

const struct gemm_kernel gemm_arm_bf16 = {
    .name = "bf16mm",
    .kind = WMAT_BF16,
    .needs = CPU_ARM_NEON | CPU_ARM_BF16,
    .prepare = gemm_prep_bf16,
    .gemm = gemm,
    .scratch_bytes = scratch_bytes,
};
