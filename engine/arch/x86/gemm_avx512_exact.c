/* gemm_avx512_exact.c -- the exact kernel for AVX-512F: f32 activations
 * times W widened from bf16 in registers, f32 accumulation by vfmadd in k
 * order.
 *
 * The 8 x 32 microkernel covers two 16-column panels: 16 zmm accumulators,
 * per k word (two k values) one 64-byte load of bf16 words per panel,
 * widened into two vectors (even k: the low halves shifted up; odd k: the
 * high halves masked), and one broadcast per row and k. That is 32 FMAs per
 * two loads of W and sixteen broadcasts, against the AVX2 kernel's 12 per
 * two and six: the 32 registers leave room to widen in place, so W is read
 * from its packed panel (L2) with no copy through L1.
 *
 * Each output element is the same fused chain as the AVX2 and NEON kernels'
 * (acc + x * w rounded once, in k order, in the fixed EXACT_KC blocks of
 * gemm_kernels.h, the same epilogue), so all three give the same bits for
 * the same inputs; test_gemm compares them with a scalar fmaf chain. The
 * same code runs for every m, row and slice (tails only stop early or mask
 * their columns), so a row's result does not depend on its batch.
 */
#include "engine/cpu.h"
#include "engine/gemm_kernels.h"

#include <immintrin.h>

#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define INLINE        static inline __attribute__((always_inline))

enum { MR = 8, NV = 2 }; /* MR divides EXACT_MC: whole row tiles per row block */
_Static_assert(EXACT_MC % MR == 0, "row tiles fill a row block");

/* One tile: mr rows x nv panels over one k block of nk values. xp: the
 * tile's rows packed k-major (xp[k * MR + r]); w: panel 0's block (bf16
 * words, or f32 values when !bf16), panel v at w + v * ws (words or
 * floats); y: row 0 at panel 0's column 0; bias: at the same column. */
INLINE TARGET_AVX512 void micro_body(const int mr, const int nv, const int bf16, const float *xp,
                                     const void *w, size_t ws, int nk, float *y, size_t ldy,
                                     const float *bias, int first, const __mmask16 *mask) {
    __m512 acc[MR][NV];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++)
            acc[r][v] = _mm512_setzero_ps();
    if (bf16) {
        const __m512i hi_mask = _mm512_set1_epi32((int)0xffff0000u);
        const uint32_t *wp = w;
#pragma GCC unroll 2
        for (int kw = 0; kw < nk / 2; kw++, wp += 16, xp += 2 * MR) {
            __m512 lo[NV], hi[NV];
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++) {
                __m512i u = _mm512_load_si512((const void *)(wp + v * ws));
                lo[v] = _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
                hi[v] = _mm512_castsi512_ps(_mm512_and_si512(u, hi_mask));
            }
#pragma GCC unroll 8
            for (int r = 0; r < mr; r++) {
                __m512 x0 = _mm512_set1_ps(xp[r]);
#pragma GCC unroll 2
                for (int v = 0; v < nv; v++)
                    acc[r][v] = _mm512_fmadd_ps(x0, lo[v], acc[r][v]);
            }
#pragma GCC unroll 8
            for (int r = 0; r < mr; r++) {
                __m512 x1 = _mm512_set1_ps(xp[MR + r]);
#pragma GCC unroll 2
                for (int v = 0; v < nv; v++)
                    acc[r][v] = _mm512_fmadd_ps(x1, hi[v], acc[r][v]);
            }
        }
    } else {
        const float *wp = w;
#pragma GCC unroll 4
        for (int k = 0; k < nk; k++, wp += 16, xp += MR) {
            __m512 wv[NV];
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++)
                wv[v] = _mm512_load_ps(wp + v * ws);
#pragma GCC unroll 8
            for (int r = 0; r < mr; r++) {
                __m512 xb = _mm512_set1_ps(xp[r]);
#pragma GCC unroll 2
                for (int v = 0; v < nv; v++)
                    acc[r][v] = _mm512_fmadd_ps(xb, wv[v], acc[r][v]);
            }
        }
    }
    /* y = first ? s (+ bias) : y + s, in each panel's columns of the slice */
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) {
            float *yv = y + (size_t)r * ldy + 16 * v;
            __m512 s = acc[r][v];
            if (!first)
                s = _mm512_add_ps(_mm512_maskz_loadu_ps(mask[v], yv), s);
            else if (bias)
                s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(mask[v], bias + 16 * v));
            _mm512_mask_storeu_ps(yv, mask[v], s);
        }
}

typedef void (*micro_fn)(const float *xp, const void *w, size_t ws, int nk, float *y, size_t ldy,
                         const float *bias, int first, const __mmask16 *mask);

#define MICRO(mr, nv, bf)                                                        \
    static TARGET_AVX512 void micro_##mr##_##nv##_##bf(                          \
        const float *xp, const void *w, size_t ws, int nk, float *y, size_t ldy, \
        const float *bias, int first, const __mmask16 *mask) {                   \
        micro_body(mr, nv, bf, xp, w, ws, nk, y, ldy, bias, first, mask);        \
    }
#define MICRO_MR(mr) MICRO(mr, 1, 0) MICRO(mr, 2, 0) MICRO(mr, 1, 1) MICRO(mr, 2, 1)
MICRO_MR(1)
MICRO_MR(2)
MICRO_MR(3)
MICRO_MR(4)
MICRO_MR(5)
MICRO_MR(6)
MICRO_MR(7)
MICRO_MR(8)
#define ROW(mr)                                 \
    {                                           \
        {micro_##mr##_1_0, micro_##mr##_1_1}, { \
            micro_##mr##_2_0, micro_##mr##_2_1  \
        }                                       \
    }
/* [mr - 1][nv - 1][bf16] */
static const micro_fn micro_tab[MR][NV][2] = {ROW(1), ROW(2), ROW(3), ROW(4),
                                              ROW(5), ROW(6), ROW(7), ROW(8)};

static __mmask16 panel_mask(int p, int col_lo, int col_hi) {
    int c0 = col_lo - 16 * p, c1 = col_hi - 16 * p;
    c0 = c0 < 0 ? 0 : c0;
    c1 = c1 > 16 ? 16 : c1;
    if (c1 <= c0) return 0; /* a panel past the slice */
    return (__mmask16)(((1u << c1) - 1) & ~((1u << c0) - 1));
}

/* The blocking of gemm_exact_drive (rows in blocks of EXACT_MC, panels in
 * groups of EXACT_NP, k blocks of EXACT_KC in order with X's block packed),
 * then pairs of panels read in place and tiles of MR rows. */
static void gemm(const struct wmat *w, int m, const float *x, int ldx, const float *bias, float *y,
                 int ldy, int col_lo, int col_hi, void *scratch) {
    (void)scratch;
    _Alignas(64) float xp[EXACT_MC * EXACT_KC]; /* X's block, packed (L2) */
    int n_in = w->n_in, bf16 = w->layout == WMAT_LAYOUT_BF16;
    size_t ws = bf16 ? (size_t)(n_in / 2) * 16 : (size_t)n_in * 16; /* one panel, words or floats */
    int p_lo = col_lo / 16, p_hi = (col_hi + 15) / 16;
    for (int i0 = 0; i0 < m; i0 += EXACT_MC) {
        int mc = m - i0 < EXACT_MC ? m - i0 : EXACT_MC;
        for (int g0 = p_lo; g0 < p_hi; g0 += EXACT_NP) {
            int g1 = p_hi - g0 < EXACT_NP ? p_hi : g0 + EXACT_NP;
            for (int k0 = 0; k0 < n_in; k0 += EXACT_KC) {
                int nk = n_in - k0 < EXACT_KC ? n_in - k0 : EXACT_KC;
                gemm_exact_pack(xp, x + (size_t)i0 * ldx + k0, ldx, mc, nk, MR);
                for (int p = g0; p < g1; p += NV) {
                    int nv = g1 - p < NV ? g1 - p : NV;
                    __mmask16 mask[NV] = {panel_mask(p, col_lo, col_hi),
                                          panel_mask(p + 1, col_lo, col_hi)};
                    const void *wp =
                        bf16 ? (const void *)((const uint32_t *)w->data + p * ws +
                                              (size_t)k0 / 2 * 16)
                             : (const void *)((const float *)w->data + p * ws + (size_t)k0 * 16);
                    const float *bp = bias ? bias + 16 * p : NULL;
                    for (int r0 = 0; r0 < mc; r0 += MR) {
                        int mr = mc - r0 < MR ? mc - r0 : MR;
                        micro_tab[mr - 1][nv - 1][bf16](xp + (size_t)r0 * nk, wp, ws, nk,
                                                        y + (size_t)(i0 + r0) * ldy + 16 * p,
                                                        (size_t)ldy, bp, k0 == 0, mask);
                    }
                }
            }
        }
    }
}

const struct gemm_kernel gemm_x86_avx512_exact = {
    .name = "avx512-exact",
    .kind = WMAT_F32,
    .needs = CPU_X86_AVX512,
    .prepare = gemm_prep_exact,
    .gemm = gemm,
    .scratch_bytes = NULL,
};
