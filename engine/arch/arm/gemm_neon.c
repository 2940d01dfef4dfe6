/* gemm_neon.c -- the exact kernel for aarch64 Advanced SIMD (NEON, part of
 * every ARMv8-A core): f32 activations times W widened from bf16 by the
 * driver, f32 accumulation by fused multiply-add (FMLA by element) in k
 * order.
 *
 * The 6 x 16 microkernel keeps 24 q accumulators, four weight vectors and
 * the six activations of one k (a q and a d register) in the 32 vector
 * registers: per k, four 16-byte loads of W, two of X and 24 FMLAs, the
 * shape that keeps Neoverse N1/V1's two FMA pipes busy from L1. Each
 * element is the same fused chain as the AVX2 kernel's (acc + x * w,
 * rounded once, in k order, the same blocks and epilogue), so the two give
 * the same bits for the same inputs. The same code runs for every m, row
 * and slice (tails only stop early): a row's result does not depend on its
 * batch.
 */
#include "engine/cpu.h"
#include "engine/gemm_kernels.h"

#include <arm_neon.h>

#define INLINE static inline __attribute__((always_inline))

enum { MR = 6 };

/* acc + w * x[lane]: FMLA (by element), one rounding */
#define FMA_LANE(acc, w, xq, xd, r) \
    ((r) < 4 ? vfmaq_laneq_f32(acc, w, xq, (r)&3) : vfmaq_lane_f32(acc, w, xd, (r)&1))

INLINE void micro_body(const int mr, const float *xp, const float *w, int nk, float *y, size_t ldy,
                       const float *bias, int first, int c0, int c1) {
    float32x4_t acc[MR][4];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
        acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = vdupq_n_f32(0);
#pragma GCC unroll 2
    for (int k = 0; k < nk; k++, w += 16, xp += MR) {
        float32x4_t w0 = vld1q_f32(w), w1 = vld1q_f32(w + 4), w2 = vld1q_f32(w + 8),
                    w3 = vld1q_f32(w + 12);
        /* rows past mr of a tail tile are in the buffer but never used */
        float32x4_t xq = vld1q_f32(xp);
        float32x2_t xd = vld1_f32(xp + 4);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            switch (r) { /* the lane must be a constant */
#define ROW(R)                                          \
    case R:                                             \
        acc[R][0] = FMA_LANE(acc[R][0], w0, xq, xd, R); \
        acc[R][1] = FMA_LANE(acc[R][1], w1, xq, xd, R); \
        acc[R][2] = FMA_LANE(acc[R][2], w2, xq, xd, R); \
        acc[R][3] = FMA_LANE(acc[R][3], w3, xq, xd, R); \
        break;
                ROW(0)
                ROW(1)
                ROW(2)
                ROW(3)
                ROW(4)
                ROW(5)
#undef ROW
            }
        }
    }
    if (c0 == 0 && c1 == 16) { /* a whole panel: the epilogue in registers */
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            float *yr = y + (size_t)r * ldy;
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                float32x4_t s = acc[r][j];
                if (!first)
                    s = vaddq_f32(vld1q_f32(yr + 4 * j), s);
                else if (bias)
                    s = vaddq_f32(s, vld1q_f32(bias + 4 * j));
                vst1q_f32(yr + 4 * j, s);
            }
        }
        return;
    }
    float s[MR][16];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < 4; j++)
            vst1q_f32(s[r] + 4 * j, acc[r][j]);
    for (int r = 0; r < mr; r++)
        gemm_exact_store(y + (size_t)r * ldy, s[r], bias, first, c0, c1);
}

#define MICRO(mr)                                                                         \
    static void micro_##mr(const float *xp, const float *w, int nk, float *y, size_t ldy, \
                           const float *bias, int first, int c0, int c1) {                \
        micro_body(mr, xp, w, nk, y, ldy, bias, first, c0, c1);                           \
    }
MICRO(1)
MICRO(2)
MICRO(3)
MICRO(4)
MICRO(5)
MICRO(6)

/* The driver's microkernel: a switch of direct calls (inlined into it). */
INLINE void micro(int mr, const float *xp, const float *w, int nk, float *y, size_t ldy,
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
 * halves (odd k) masked; 16 columns = four vectors per k. */
INLINE void widen(float *dst, const uint32_t *src, int nk) {
    const uint32x4_t hi = vdupq_n_u32(0xffff0000u);
    for (int kw = 0; kw < nk / 2; kw++, src += 16, dst += 32)
        for (int j = 0; j < 4; j++) {
            uint32x4_t u = vld1q_u32(src + 4 * j);
            vst1q_f32(dst + 4 * j, vreinterpretq_f32_u32(vshlq_n_u32(u, 16)));
            vst1q_f32(dst + 16 + 4 * j, vreinterpretq_f32_u32(vandq_u32(u, hi)));
        }
}

static void gemm(const struct wmat *w, int m, const float *x, int ldx, const float *bias, float *y,
                 int ldy, int col_lo, int col_hi, void *scratch) {
    (void)scratch;
    gemm_exact_drive(w, m, x, ldx, bias, y, ldy, col_lo, col_hi, micro, widen, MR);
}

const struct gemm_kernel gemm_arm_neon_exact = {
    .name = "neon-exact",
    .kind = WMAT_F32,
    .needs = CPU_ARM_NEON,
    .prepare = gemm_prep_exact,
    .gemm = gemm,
    .scratch_bytes = NULL,
};
