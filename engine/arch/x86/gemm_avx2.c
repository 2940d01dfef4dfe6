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

INLINE TARGET_AVX2 void micro_body(const int mr, const float *x, size_t ldx, const float *w,
                                   int nk, float (*out)[16]) {
    __m256 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int k = 0; k < nk; k++, w += 16) {
        __m256 w0 = _mm256_load_ps(w), w1 = _mm256_load_ps(w + 8);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m256 xb = _mm256_broadcast_ss(x + (size_t)r * ldx + k);
            acc[r][0] = _mm256_fmadd_ps(xb, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(xb, w1, acc[r][1]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        _mm256_store_ps(out[r], acc[r][0]);
        _mm256_store_ps(out[r] + 8, acc[r][1]);
    }
}

#define MICRO(mr)                                                                                 \
    static TARGET_AVX2 void micro_##mr(const float *x, size_t ldx, const float *w, int nk,       \
                                       float (*out)[16]) {                                        \
        micro_body(mr, x, ldx, w, nk, out);                                                       \
    }
MICRO(1)
MICRO(2)
MICRO(3)
MICRO(4)
MICRO(5)
MICRO(6)

static void micro(int mr, const float *x, size_t ldx, const float *w, int nk, float (*out)[16]) {
    static void (*const tab[MR])(const float *, size_t, const float *, int, float (*)[16]) = {
        micro_1, micro_2, micro_3, micro_4, micro_5, micro_6};
    tab[mr - 1](x, ldx, w, nk, out);
}

static void gemm(const struct wmat *w, int m, const float *x, int ldx, const float *bias,
                 float *y, int ldy, int col_lo, int col_hi, void *scratch) {
    (void)scratch;
    gemm_exact_run(w, m, x, ldx, bias, y, ldy, col_lo, col_hi, micro, MR);
}

const struct gemm_kernel gemm_x86_avx2_exact = {
    .name = "avx2-exact",
    .kind = WMAT_F32,
    .needs = CPU_X86_AVX2,
    .prepare = gemm_prep_exact,
    .gemm = gemm,
    .scratch_bytes = NULL,
};
