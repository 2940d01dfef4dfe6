/* gemm_avx2.c -- the exact kernel for AVX2 + FMA: f32 activations times W
 * widened in registers, f32 accumulation by vfmadd in k order.
 *
 * The 6 x 16 microkernel keeps 12 ymm accumulators, two weight vectors and
 * one broadcast in the 16 registers (W widened from bf16 per panel block by
 * the driver, into L1: widening inside this loop costs two more registers,
 * and GCC then spills accumulators). The same code runs for every m, row
 * and slice (tails only stop early), so a row's result does not depend on
 * its batch.
 */
#include "engine/cpu.h"
#include "engine/gemm_kernels.h"

#include <immintrin.h>

#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#define INLINE      static inline __attribute__((always_inline))

enum { MR = 6 };

INLINE TARGET_AVX2 void micro_body(const int mr, const float *xp, const float *w, int nk, float *y,
                                   size_t ldy, const float *bias, int first, int c0, int c1) {
    __m256 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int k = 0; k < nk; k++, w += 16, xp += MR) {
        __m256 w0 = _mm256_load_ps(w), w1 = _mm256_load_ps(w + 8);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m256 xb = _mm256_broadcast_ss(xp + r);
            acc[r][0] = _mm256_fmadd_ps(xb, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(xb, w1, acc[r][1]);
        }
    }
    if (c0 == 0 && c1 == 16) { /* a whole panel: the epilogue in registers */
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            float *yr = y + (size_t)r * ldy;
            __m256 s0 = acc[r][0], s1 = acc[r][1];
            if (!first) {
                s0 = _mm256_add_ps(_mm256_loadu_ps(yr), s0);
                s1 = _mm256_add_ps(_mm256_loadu_ps(yr + 8), s1);
            } else if (bias) {
                s0 = _mm256_add_ps(s0, _mm256_loadu_ps(bias));
                s1 = _mm256_add_ps(s1, _mm256_loadu_ps(bias + 8));
            }
            _mm256_storeu_ps(yr, s0);
            _mm256_storeu_ps(yr + 8, s1);
        }
        return;
    }
    _Alignas(32) float s[MR][16];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        _mm256_store_ps(s[r], acc[r][0]);
        _mm256_store_ps(s[r] + 8, acc[r][1]);
    }
    for (int r = 0; r < mr; r++)
        gemm_exact_store(y + (size_t)r * ldy, s[r], bias, first, c0, c1);
}

#define MICRO(mr)                                                                                  \
    static TARGET_AVX2 void micro_##mr(const float *xp, const float *w, int nk, float *y,          \
                                       size_t ldy, const float *bias, int first, int c0, int c1) { \
        micro_body(mr, xp, w, nk, y, ldy, bias, first, c0, c1);                                    \
    }
MICRO(1)
MICRO(2)
MICRO(3)
MICRO(4)
MICRO(5)
MICRO(6)

/* The driver's microkernel: a switch of direct calls (inlined into it). */
INLINE TARGET_AVX2 void micro(int mr, const float *xp, const float *w, int nk, float *y, size_t ldy,
                              const float *bias, int first, int c0, int c1) {
    switch (mr) {
    case 6: micro_6(xp, w, nk, y, ldy, bias, first, c0, c1); break;
    case 5: micro_5(xp, w, nk, y, ldy, bias, first, c0, c1); break;
    case 4: micro_4(xp, w, nk, y, ldy, bias, first, c0, c1); break;
    case 3: micro_3(xp, w, nk, y, ldy, bias, first, c0, c1); break;
    case 2: micro_2(xp, w, nk, y, ldy, bias, first, c0, c1); break;
    default: micro_1(xp, w, nk, y, ldy, bias, first, c0, c1); break;
    }
}

/* bf16 words -> f32 rows: the low halves (even k) shifted up, the high
 * halves (odd k) masked; 16 columns = two vectors per k. */
INLINE TARGET_AVX2 void widen(float *dst, const uint32_t *src, int nk) {
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
#pragma GCC unroll 2
    for (int kw = 0; kw < nk / 2; kw++, src += 16, dst += 32) {
        __m256i u0 = _mm256_load_si256((const __m256i *)src),
                u1 = _mm256_load_si256((const __m256i *)(src + 8));
        _mm256_store_si256((__m256i *)dst, _mm256_slli_epi32(u0, 16));
        _mm256_store_si256((__m256i *)(dst + 8), _mm256_slli_epi32(u1, 16));
        _mm256_store_si256((__m256i *)(dst + 16), _mm256_and_si256(u0, hi));
        _mm256_store_si256((__m256i *)(dst + 24), _mm256_and_si256(u1, hi));
    }
}

static TARGET_AVX2 void gemm(const struct wmat *w, int m, const float *x, int ldx,
                             const float *bias, float *y, int ldy, int col_lo, int col_hi,
                             void *scratch) {
    (void)scratch;
    gemm_exact_drive(w, m, x, ldx, bias, y, ldy, col_lo, col_hi, micro, widen, MR);
}

const struct gemm_kernel gemm_x86_avx2_exact = {
    .name = "avx2-exact",
    .kind = WMAT_F32,
    .needs = CPU_X86_AVX2,
    .prepare = gemm_prep_exact,
    .gemm = gemm,
    .scratch_bytes = NULL,
};
