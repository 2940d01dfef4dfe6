/* attn_avx512.c -- the exact attention kernel for AVX-512F (head widths a
 * multiple of 16): attn_avx2.c's tile with 16 query lanes in one zmm.
 *
 * The same steps, in the same order, per lane: scores by a 16 x 16
 * microkernel (16 keys broadcast, 16 queries in one vector), the block's
 * online softmax over 16 lanes with the same exp polynomial, values by a
 * 16 x 16 microkernel (16 queries broadcast, 16 columns of V). Every lane
 * runs the AVX2 kernel's fused chains (the dot products over k in order,
 * the sums over keys in order, the same rescales), only twice as wide and
 * with twice the rows per call, so the two kernels give the same bits
 * (test_ops compares them): a model's embeddings do not change between
 * an AVX2 and an AVX-512 machine's attention.
 */
#include "engine/attn_kernels.h"
#include "engine/cpu.h"

#include <immintrin.h>

#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define INLINE        static inline __attribute__((always_inline))

enum { MR = 16, TQ = ATTN_TQ, KB = ATTN_KB };
_Static_assert(KB % MR == 0 && TQ % MR == 0, "whole tiles of keys and queries");

/* e^x, 16 lanes: ops_exp_poly's polynomial and clamp, with fused steps. */
INLINE TARGET_AVX512 __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i e =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

/* st[i][0..16) for keys i < mr (rows of kp, ldk apart), queries qt[k][0..16). */
INLINE TARGET_AVX512 void score_body(const int mr, const float *kp, size_t ldk, int d,
                                     const float *qt, float *st) {
    __m512 acc[MR];
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++)
        acc[i] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int k = 0; k < d; k++, qt += TQ) {
        __m512 q = _mm512_load_ps(qt);
#pragma GCC unroll 16
        for (int i = 0; i < mr; i++)
            acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(kp[i * ldk + k]), q, acc[i]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++)
        _mm512_store_ps(st + (size_t)i * TQ, acc[i]);
}

/* o[r][0..16) for queries r < mr: first ? 0 : o a_r, then + sum over j < kb
 * of st[j][r] vp[j * ldv + 0..16). */
INLINE TARGET_AVX512 void value_body(const int mr, const float *st, const float *vp, size_t ldv,
                                     int kb, float *o, size_t ldo, const float *a, int first) {
    __m512 acc[MR];
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
        acc[r] = first ? _mm512_setzero_ps()
                       : _mm512_mul_ps(_mm512_load_ps(o + r * ldo), _mm512_set1_ps(a[r]));
#pragma GCC unroll 2
    for (int j = 0; j < kb; j++, vp += ldv, st += TQ) {
        __m512 v = _mm512_loadu_ps(vp);
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(st[r]), v, acc[r]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
        _mm512_store_ps(o + r * ldo, acc[r]);
}

#define MICROS(mr)                                                                             \
    static TARGET_AVX512 void score_##mr(const float *kp, size_t ldk, int d, const float *qt,  \
                                         float *st) {                                          \
        score_body(mr, kp, ldk, d, qt, st);                                                    \
    }                                                                                          \
    static TARGET_AVX512 void value_##mr(const float *st, const float *vp, size_t ldv, int kb, \
                                         float *o, size_t ldo, const float *a, int first) {    \
        value_body(mr, st, vp, ldv, kb, o, ldo, a, first);                                     \
    }
MICROS(1)
MICROS(2)
MICROS(3)
MICROS(4)
MICROS(5)
MICROS(6)
MICROS(7)
MICROS(8)
MICROS(9)
MICROS(10)
MICROS(11)
MICROS(12)
MICROS(13)
MICROS(14)
MICROS(15)
MICROS(16)

static const attn_score_fn score_mr[MR + 1] = {
    NULL,    score_1,  score_2,  score_3,  score_4,  score_5,  score_6,  score_7, score_8,
    score_9, score_10, score_11, score_12, score_13, score_14, score_15, score_16};
static const attn_value_fn value_mr[MR + 1] = {
    NULL,    value_1,  value_2,  value_3,  value_4,  value_5,  value_6,  value_7, value_8,
    value_9, value_10, value_11, value_12, value_13, value_14, value_15, value_16};

/* The block's online softmax for query lanes [r0, r0 + 16): st[j][r] gets
 * the bias, then becomes p; m, l, a of those lanes are updated. */
INLINE TARGET_AVX512 void softmax16(float *st, int kb, int j0, int qpos0, float slope, float *m,
                                    float *l, float *a, int first) {
    __m512 qpos =
        _mm512_add_ps(_mm512_set1_ps((float)qpos0),
                      _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    __m512 mx = _mm512_set1_ps(-__builtin_inff());
    if (slope != 0.0f) {
        __m512 sl = _mm512_set1_ps(slope);
        for (int j = 0; j < kb; j++) {
            __m512 dist = _mm512_abs_ps(_mm512_sub_ps(qpos, _mm512_set1_ps((float)(j0 + j))));
            __m512 s = _mm512_fnmadd_ps(sl, dist, _mm512_load_ps(st + (size_t)j * TQ));
            _mm512_store_ps(st + (size_t)j * TQ, s);
            mx = _mm512_max_ps(mx, s);
        }
    } else {
        for (int j = 0; j < kb; j++)
            mx = _mm512_max_ps(mx, _mm512_load_ps(st + (size_t)j * TQ));
    }
    __m512 mold = first ? mx : _mm512_load_ps(m), mnew = _mm512_max_ps(mold, mx);
    __m512 sum = _mm512_setzero_ps();
    for (int j = 0; j < kb; j++) {
        __m512 p = exp16(_mm512_sub_ps(_mm512_load_ps(st + (size_t)j * TQ), mnew));
        _mm512_store_ps(st + (size_t)j * TQ, p);
        sum = _mm512_add_ps(sum, p);
    }
    if (first) {
        _mm512_store_ps(l, sum);
    } else {
        __m512 al = exp16(_mm512_sub_ps(mold, mnew));
        _mm512_store_ps(a, al);
        _mm512_store_ps(l, _mm512_fmadd_ps(_mm512_load_ps(l), al, sum));
    }
    _mm512_store_ps(m, mnew);
}

static TARGET_AVX512 void tile(const struct attn_tile *t) {
    attn_tile_drive(t, score_mr, value_mr, MR, softmax16, 16);
}

const struct attn_kernel attn_x86_avx512_exact = {
    .name = "avx512-attn",
    .needs = CPU_X86_AVX512,
    .d_mult = 16,
    .tile = tile,
};
