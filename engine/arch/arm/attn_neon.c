/* attn_neon.c -- the exact attention kernel for aarch64 Advanced SIMD
 * (head widths a multiple of 16): the AVX2 kernel's algorithm and order
 * (engine/arch/x86/attn_avx2.c) in 4-lane vectors, query rows in the lanes.
 *
 * Scores: 6 keys (broadcast by LD1R) x 16 queries (four q registers), 24
 * accumulators; values: 6 queries (FMLA by element from one q and one d
 * register) x 16 columns of V (four q registers). Every step is the same
 * fused operation per lane as the AVX2 kernel's (FMLA / FMLS rounding once,
 * the same exp polynomial, sums in key order), so the two give the same
 * bits for the same inputs, and the bits depend only on the sequence.
 */
#include "engine/attn_kernels.h"
#include "engine/cpu.h"

#include <arm_neon.h>

#define INLINE static inline __attribute__((always_inline))

enum { MR = 6, TQ = ATTN_TQ, KB = ATTN_KB };

/* e^x, 4 lanes: ops_exp_poly's polynomial and clamp, with fused steps. */
INLINE float32x4_t exp4(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.0f)), vdupq_n_f32(88.0f));
    float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.0f / 5040);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 720), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

/* st[i][0..16) for keys i < mr (rows of kp, ldk apart), queries qt[k][0..16). */
INLINE void score_body(const int mr, const float *kp, size_t ldk, int d, const float *qt,
                       float *st) {
    float32x4_t acc[MR][4];
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
        acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = vdupq_n_f32(0);
#pragma GCC unroll 2
    for (int k = 0; k < d; k++, qt += TQ) {
        float32x4_t q0 = vld1q_f32(qt), q1 = vld1q_f32(qt + 4), q2 = vld1q_f32(qt + 8),
                    q3 = vld1q_f32(qt + 12);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            float32x4_t kb = vld1q_dup_f32(kp + i * ldk + k);
            acc[i][0] = vfmaq_f32(acc[i][0], kb, q0);
            acc[i][1] = vfmaq_f32(acc[i][1], kb, q1);
            acc[i][2] = vfmaq_f32(acc[i][2], kb, q2);
            acc[i][3] = vfmaq_f32(acc[i][3], kb, q3);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < 4; v++)
            vst1q_f32(st + (size_t)i * TQ + 4 * v, acc[i][v]);
}

/* acc + v * p[lane]: FMLA (by element), one rounding */
#define FMA_LANE(acc, v, pq, pd, r) \
    ((r) < 4 ? vfmaq_laneq_f32(acc, v, pq, (r)&3) : vfmaq_lane_f32(acc, v, pd, (r)&1))

/* o[r][0..16) for queries r < mr: first ? 0 : o a_r, then + sum over j < kb
 * of st[j][r] vp[j * ldv + 0..16). */
INLINE void value_body(const int mr, const float *st, const float *vp, size_t ldv, int kb, float *o,
                       size_t ldo, const float *a, int first) {
    float32x4_t acc[MR][4];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < 4; v++)
            acc[r][v] = first ? vdupq_n_f32(0) : vmulq_n_f32(vld1q_f32(o + r * ldo + 4 * v), a[r]);
#pragma GCC unroll 2
    for (int j = 0; j < kb; j++, vp += ldv, st += TQ) {
        float32x4_t v0 = vld1q_f32(vp), v1 = vld1q_f32(vp + 4), v2 = vld1q_f32(vp + 8),
                    v3 = vld1q_f32(vp + 12);
        /* lanes past mr are read (the buffer has them) but never used */
        float32x4_t pq = vld1q_f32(st);
        float32x2_t pd = vld1_f32(st + 4);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            switch (r) { /* the lane must be a constant */
#define ROW(R)                                          \
    case R:                                             \
        acc[R][0] = FMA_LANE(acc[R][0], v0, pq, pd, R); \
        acc[R][1] = FMA_LANE(acc[R][1], v1, pq, pd, R); \
        acc[R][2] = FMA_LANE(acc[R][2], v2, pq, pd, R); \
        acc[R][3] = FMA_LANE(acc[R][3], v3, pq, pd, R); \
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
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < 4; v++)
            vst1q_f32(o + r * ldo + 4 * v, acc[r][v]);
}

#define MICROS(mr)                                                                           \
    static void score_##mr(const float *kp, size_t ldk, int d, const float *qt, float *st) { \
        score_body(mr, kp, ldk, d, qt, st);                                                  \
    }                                                                                        \
    static void value_##mr(const float *st, const float *vp, size_t ldv, int kb, float *o,   \
                           size_t ldo, const float *a, int first) {                          \
        value_body(mr, st, vp, ldv, kb, o, ldo, a, first);                                   \
    }
MICROS(1)
MICROS(2)
MICROS(3)
MICROS(4)
MICROS(5)
MICROS(6)

static const attn_score_fn score_mr[MR + 1] = {NULL,    score_1, score_2, score_3,
                                               score_4, score_5, score_6};
static const attn_value_fn value_mr[MR + 1] = {NULL,    value_1, value_2, value_3,
                                               value_4, value_5, value_6};

/* The block's online softmax for query lanes [r0, r0 + 4): as the AVX2
 * kernel's softmax8, lane for lane. */
INLINE void softmax4(float *st, int kb, int j0, int qpos0, float slope, float *m, float *l,
                     float *a, int first) {
    static const float iota[4] = {0, 1, 2, 3};
    float32x4_t qpos = vaddq_f32(vdupq_n_f32((float)qpos0), vld1q_f32(iota));
    float32x4_t mx = vdupq_n_f32(-__builtin_inff());
    if (slope != 0.0f) {
        float32x4_t sl = vdupq_n_f32(slope);
        for (int j = 0; j < kb; j++) {
            float32x4_t dist = vabsq_f32(vsubq_f32(qpos, vdupq_n_f32((float)(j0 + j))));
            float32x4_t s = vfmsq_f32(vld1q_f32(st + (size_t)j * TQ), sl, dist);
            vst1q_f32(st + (size_t)j * TQ, s);
            mx = vmaxq_f32(mx, s);
        }
    } else {
        for (int j = 0; j < kb; j++)
            mx = vmaxq_f32(mx, vld1q_f32(st + (size_t)j * TQ));
    }
    float32x4_t mold = first ? mx : vld1q_f32(m), mnew = vmaxq_f32(mold, mx);
    float32x4_t sum = vdupq_n_f32(0);
    for (int j = 0; j < kb; j++) {
        float32x4_t p = exp4(vsubq_f32(vld1q_f32(st + (size_t)j * TQ), mnew));
        vst1q_f32(st + (size_t)j * TQ, p);
        sum = vaddq_f32(sum, p);
    }
    if (first) {
        vst1q_f32(l, sum);
    } else {
        float32x4_t al = exp4(vsubq_f32(mold, mnew));
        vst1q_f32(a, al);
        vst1q_f32(l, vfmaq_f32(sum, vld1q_f32(l), al));
    }
    vst1q_f32(m, mnew);
}

static void tile(const struct attn_tile *t) {
    attn_tile_drive(t, score_mr, value_mr, MR, softmax4, 4);
}

const struct attn_kernel attn_arm_neon_exact = {
    .name = "neon-attn",
    .needs = CPU_ARM_NEON,
    .d_mult = 16,
    .tile = tile,
};
