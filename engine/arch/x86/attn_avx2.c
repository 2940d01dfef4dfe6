/* attn_avx2.c -- the exact attention kernel for AVX2 + FMA (head widths a
 * multiple of 16): attn_kernels.h's fused tile with the query rows in the
 * vector lanes.
 *
 * Once per tile, Q^T: qt[k][r] = scale * Q[r][k] (rows past nq zero). K and
 * V are read in place (the caller passes them compact: rows 3H floats apart
 * would map onto one L1 set and one page each). Per key block of ATTN_KB:
 *   scores   st[j][r] = sum over k in order of K[j][k] qt[k][r], by a 6 x 16
 *            microkernel (6 keys broadcast, 16 queries in two vectors);
 *   softmax  per query lane, over the block's keys in order: ALiBi, the max,
 *            a = e^(m_old - m_new), p = e^(s - m_new), l = l a + sum p;
 *   values   o[r][c] = o[r][c] a_r + sum over the block's keys in order of
 *            p[j][r] V[j][c], by a 6 x 16 microkernel (6 queries broadcast,
 *            16 columns of V).
 * At the end O = o / l. Reductions run in key (or k) order with fused
 * multiply-adds, each per lane: the same code for every tile and thread, so
 * the bits depend only on the sequence and the position.
 */
#include "engine/attn_kernels.h"
#include "engine/cpu.h"

#include <immintrin.h>

#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#define INLINE      static inline __attribute__((always_inline))

enum { MR = 6, TQ = ATTN_TQ, KB = ATTN_KB };

/* e^x, 8 lanes: ops_exp_poly's polynomial and clamp, with fused steps. */
INLINE TARGET_AVX2 __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* st[i][0..16) for keys i < mr (rows of kp, ldk apart), queries qt[k][0..16). */
INLINE TARGET_AVX2 void score_body(const int mr, const float *kp, size_t ldk, int d,
                                   const float *qt, float *st) {
    __m256 acc[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
        acc[i][0] = acc[i][1] = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int k = 0; k < d; k++, qt += TQ) {
        __m256 q0 = _mm256_load_ps(qt), q1 = _mm256_load_ps(qt + 8);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            __m256 kb = _mm256_broadcast_ss(kp + i * ldk + k);
            acc[i][0] = _mm256_fmadd_ps(kb, q0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(kb, q1, acc[i][1]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
        _mm256_store_ps(st + (size_t)i * TQ, acc[i][0]);
        _mm256_store_ps(st + (size_t)i * TQ + 8, acc[i][1]);
    }
}

/* o[r][0..16) for queries r < mr: first ? 0 : o a_r, then + sum over j < kb
 * of st[j][r] vp[j * ldv + 0..16). */
INLINE TARGET_AVX2 void value_body(const int mr, const float *st, const float *vp, size_t ldv,
                                   int kb, float *o, size_t ldo, const float *a, int first) {
    __m256 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        if (first) {
            acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        } else {
            __m256 ar = _mm256_broadcast_ss(a + r);
            acc[r][0] = _mm256_mul_ps(_mm256_load_ps(o + r * ldo), ar);
            acc[r][1] = _mm256_mul_ps(_mm256_load_ps(o + r * ldo + 8), ar);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < kb; j++, vp += ldv, st += TQ) {
        __m256 v0 = _mm256_loadu_ps(vp), v1 = _mm256_loadu_ps(vp + 8);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m256 p = _mm256_broadcast_ss(st + r);
            acc[r][0] = _mm256_fmadd_ps(p, v0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(p, v1, acc[r][1]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        _mm256_store_ps(o + r * ldo, acc[r][0]);
        _mm256_store_ps(o + r * ldo + 8, acc[r][1]);
    }
}

#define MICROS(mr)                                                                           \
    static TARGET_AVX2 void score_##mr(const float *kp, size_t ldk, int d, const float *qt,  \
                                       float *st) {                                          \
        score_body(mr, kp, ldk, d, qt, st);                                                  \
    }                                                                                        \
    static TARGET_AVX2 void value_##mr(const float *st, const float *vp, size_t ldv, int kb, \
                                       float *o, size_t ldo, const float *a, int first) {    \
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

/* The block's online softmax for query lanes [r0, r0 + 8): st[j][r] gets
 * the bias, then becomes p; m, l, a of those lanes are updated. */
INLINE TARGET_AVX2 void softmax8(float *st, int kb, int j0, int qpos0, float slope, float *m,
                                 float *l, float *a, int first) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 qpos =
        _mm256_add_ps(_mm256_set1_ps((float)qpos0), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 mx = _mm256_set1_ps(-__builtin_inff());
    if (slope != 0.0f) {
        __m256 sl = _mm256_set1_ps(slope);
        for (int j = 0; j < kb; j++) {
            __m256 dist =
                _mm256_andnot_ps(sign, _mm256_sub_ps(qpos, _mm256_set1_ps((float)(j0 + j))));
            __m256 s = _mm256_fnmadd_ps(sl, dist, _mm256_load_ps(st + (size_t)j * TQ));
            _mm256_store_ps(st + (size_t)j * TQ, s);
            mx = _mm256_max_ps(mx, s);
        }
    } else {
        for (int j = 0; j < kb; j++)
            mx = _mm256_max_ps(mx, _mm256_load_ps(st + (size_t)j * TQ));
    }
    __m256 mold = first ? mx : _mm256_load_ps(m), mnew = _mm256_max_ps(mold, mx);
    __m256 sum = _mm256_setzero_ps();
    for (int j = 0; j < kb; j++) {
        __m256 p = exp8(_mm256_sub_ps(_mm256_load_ps(st + (size_t)j * TQ), mnew));
        _mm256_store_ps(st + (size_t)j * TQ, p);
        sum = _mm256_add_ps(sum, p);
    }
    if (first) {
        _mm256_store_ps(l, sum);
    } else {
        __m256 al = exp8(_mm256_sub_ps(mold, mnew));
        _mm256_store_ps(a, al);
        _mm256_store_ps(l, _mm256_fmadd_ps(_mm256_load_ps(l), al, sum));
    }
    _mm256_store_ps(m, mnew);
}

static TARGET_AVX2 void tile(const struct attn_tile *t) {
    attn_tile_drive(t, score_mr, value_mr, MR, softmax8, 8);
}

const struct attn_kernel attn_x86_avx2_exact = {
    .name = "avx2-attn",
    .needs = CPU_X86_AVX2,
    .d_mult = 16,
    .tile = tile,
};
