/* gemm_avx2_int8.c -- the int8 kernel for AVX2, on the int8 word layout of
 * engine/gemm.c and the contract of gemm_kernels.h: the same bits as the
 * portable and the VNNI kernels.
 *
 * vpmaddubsw (u8 x s8) would saturate its s16 pair sums (255 * 127 * 2 >
 * 32767), so the products go through vpmaddwd on s16 pairs: each weight word
 * (four s8, k = 4w .. 4w + 3) is widened in registers into its even bytes
 * (k, k + 2: shifted up then arithmetically down by 8 within 16-bit lanes)
 * and its odd bytes (k + 1, k + 3: shifted down by 8), and the activations
 * are packed per row as the matching s16 pairs (x_k | x_k+2 << 16 and
 * x_k+1 | x_k+3 << 16). Two vpmaddwd and two vpaddd per row, 8 columns and
 * word: exact i32 sums (each pair sum is at most 2 * 255 * 127).
 *
 * Blocking, per call on the caller's column slice:
 *   rows in blocks of MC (row parameters over the whole k, once)
 *     k blocks of INT8_KC_WORDS: the block's activations packed into
 *     scratch, in tiles of MR rows interleaved per word (one stream, L2)
 *       each panel of 16 columns: its k block (16 KiB) stays in L1
 *         each tile of MR rows: the microkernel, MR x 2 ymm accumulators
 */
#include "engine/cpu.h"
#include "engine/engine_impl.h"
#include "engine/gemm_kernels.h"

#include <immintrin.h>

#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#define INLINE      static inline __attribute__((always_inline))

enum { MR = 4, MC = 96 };
_Static_assert(MC % MR == 0, "row tiles divide the row block");

struct scratch {
    float *sx, *inv; /* [MC] */
    int32_t *zx;     /* [MC] */
    uint32_t *xp;    /* [MC / MR][nk][MR][2] s16 pairs (even, odd) of one k block */
};

static size_t scratch_bytes(const struct wmat *w, int m) {
    if (m <= 0) return 0;
    size_t rows = (size_t)(m < MC ? m : MC), kw = (size_t)(w->n_in + 3) / 4;
    rows = (rows + MR - 1) / MR * MR;
    kw = kw < INT8_KC_WORDS ? kw : INT8_KC_WORDS;
    return 64 + 3 * MC * 4 + rows * kw * 8;
}

static struct scratch scratch_carve(void *mem) {
    uintptr_t p = ((uintptr_t)mem + 63) & ~(uintptr_t)63;
    return (struct scratch){(float *)p, (float *)(p + MC * 4), (int32_t *)(p + 2 * MC * 4),
                            (uint32_t *)(p + 3 * MC * 4)};
}

/* Row parameters of rows [0, mc): lo and hi by vector min and max from 0,
 * then the shared gemm_int8_range_params. */
static TARGET_AVX2 void params(const float *x, int ldx, int mc, int n_in, const struct scratch *s) {
    for (int r = 0; r < mc; r++) {
        const float *xr = x + (size_t)r * ldx;
        __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_setzero_ps();
        int k = 0;
        for (; k + 8 <= n_in; k += 8) {
            __m256 v = _mm256_loadu_ps(xr + k);
            vlo = _mm256_min_ps(vlo, v);
            vhi = _mm256_max_ps(vhi, v);
        }
        _Alignas(32) float l8[8], h8[8];
        _mm256_store_ps(l8, vlo);
        _mm256_store_ps(h8, vhi);
        float lo = 0, hi = 0;
        for (int i = 0; i < 8; i++) {
            lo = l8[i] < lo ? l8[i] : lo;
            hi = h8[i] > hi ? h8[i] : hi;
        }
        for (; k < n_in; k++) {
            lo = xr[k] < lo ? xr[k] : lo;
            hi = xr[k] > hi ? xr[k] : hi;
        }
        gemm_int8_range_params(lo, hi, &s->sx[r], &s->zx[r], &s->inv[r]);
    }
}

/* Rows [0, mc) of the block, words [k0, k0 + nk): tile t, word k, row r at
 * xp[((t * nk + k) * MR + r) * 2] (even pair) and + 1 (odd pair). Rows of
 * the last tile past mc are not written (their results are not stored).
 * The vector form of gemm_int8_quant for whole words (cvtps2dq rounds as
 * lrintf, to nearest even; max 0, min 255 the clamp), the scalar one for
 * the word that crosses n_in: the same q (the suite compares the outputs
 * with the portable kernel's bit for bit). */
static TARGET_AVX2 void pack(const float *x, int ldx, int mc, int n_in, int k0, int nk,
                             const struct scratch *s) {
    /* i32 lanes q0 q1 q2 q3 -> u16 q0 q2 | q1 q3: the even and the odd pair */
    const __m128i order =
        _mm_setr_epi8(0, -128, 8, -128, 4, -128, 12, -128, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i zero = _mm_setzero_si128(), top = _mm_set1_epi32(255);
    int whole = n_in / 4 - k0; /* words of the block with all four k < n_in */
    whole = whole < 0 ? 0 : whole > nk ? nk : whole;
    for (int r = 0; r < mc; r++) {
        const float *xr = x + (size_t)r * ldx + 4 * (size_t)k0;
        uint32_t *d = s->xp + ((size_t)(r / MR) * nk * MR + r % MR) * 2;
        float inv = s->inv[r];
        int32_t z = s->zx[r];
        __m128 vinv = _mm_set1_ps(inv);
        __m128i vz = _mm_set1_epi32(z);
        int k = 0;
        for (; k < whole; k++, d += 2 * MR) {
            __m128i q = _mm_cvtps_epi32(_mm_mul_ps(_mm_loadu_ps(xr + 4 * k), vinv));
            q = _mm_min_epi32(_mm_max_epi32(_mm_add_epi32(q, vz), zero), top);
            _mm_storel_epi64((__m128i *)d, _mm_shuffle_epi8(q, order));
        }
        for (; k < nk; k++, d += 2 * MR) {
            int e = 4 * (k0 + k);
            uint32_t q[4];
            for (int b = 0; b < 4; b++)
                q[b] = e + b < n_in ? gemm_int8_quant(xr[4 * k + b], inv, z) : (uint32_t)z;
            d[0] = q[0] | q[2] << 16;
            d[1] = q[1] | q[3] << 16;
        }
    }
}

/* One tile: mr rows x the panel's 16 columns over nk words, then the
 * epilogue into columns [c0, c1) of Y. */
INLINE TARGET_AVX2 void micro_body(const int mr, const uint32_t *xp, const uint32_t *w, int nk,
                                   float *y, size_t ldy, const float *bias, int first, int c0,
                                   int c1, const float *sx, const int32_t *zx, const float *sw,
                                   const int32_t *csum) {
    __m256i acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int k = 0; k < nk; k++, w += 16, xp += 2 * MR) {
        __m256i w0 = _mm256_load_si256((const __m256i *)w),
                w1 = _mm256_load_si256((const __m256i *)(w + 8));
        __m256i e0 = _mm256_srai_epi16(_mm256_slli_epi16(w0, 8), 8), o0 = _mm256_srai_epi16(w0, 8);
        __m256i e1 = _mm256_srai_epi16(_mm256_slli_epi16(w1, 8), 8), o1 = _mm256_srai_epi16(w1, 8);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m256i xe = _mm256_set1_epi32((int)xp[2 * r]),
                    xo = _mm256_set1_epi32((int)xp[2 * r + 1]);
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(e0, xe));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(e1, xe));
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(o0, xo));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(o1, xo));
        }
    }
    if (c0 == 0 && c1 == 16) { /* a whole panel: the shared epilogue's operations, in registers */
        __m256 sw0 = _mm256_loadu_ps(sw), sw1 = _mm256_loadu_ps(sw + 8);
        __m256i cs0 = _mm256_loadu_si256((const __m256i *)csum),
                cs1 = _mm256_loadu_si256((const __m256i *)(csum + 8));
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            float *yr = y + (size_t)r * ldy;
            __m256 vs = _mm256_set1_ps(sx[r]);
            __m256 s0 = _mm256_mul_ps(vs, sw0), s1 = _mm256_mul_ps(vs, sw1);
            __m256i q0 = acc[r][0], q1 = acc[r][1];
            if (first) {
                __m256i z = _mm256_set1_epi32(zx[r]);
                q0 = _mm256_sub_epi32(q0, _mm256_mullo_epi32(z, cs0));
                q1 = _mm256_sub_epi32(q1, _mm256_mullo_epi32(z, cs1));
            }
            __m256 v0 = _mm256_mul_ps(_mm256_cvtepi32_ps(q0), s0);
            __m256 v1 = _mm256_mul_ps(_mm256_cvtepi32_ps(q1), s1);
            if (!first) {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(yr));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(yr + 8));
            } else if (bias) {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(bias));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(bias + 8));
            }
            _mm256_storeu_ps(yr, v0);
            _mm256_storeu_ps(yr + 8, v1);
        }
        return;
    }
    _Alignas(32) int32_t a[MR][16];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        _mm256_store_si256((__m256i *)a[r], acc[r][0]);
        _mm256_store_si256((__m256i *)(a[r] + 8), acc[r][1]);
    }
    for (int r = 0; r < mr; r++) {
        float *yr = y + (size_t)r * ldy;
        for (int c = c0; c < c1; c++)
            yr[c] = first ? gemm_int8_first(a[r][c], zx[r], csum[c], sx[r], sw[c],
                                            bias ? bias + c : NULL)
                          : gemm_int8_next(yr[c], a[r][c], sx[r], sw[c]);
    }
}

#define MICRO(mr)                                                                                \
    static TARGET_AVX2 void micro_##mr(const uint32_t *xp, const uint32_t *w, int nk, float *y,  \
                                       size_t ldy, const float *bias, int first, int c0, int c1, \
                                       const float *sx, const int32_t *zx, const float *sw,      \
                                       const int32_t *csum) {                                    \
        micro_body(mr, xp, w, nk, y, ldy, bias, first, c0, c1, sx, zx, sw, csum);                \
    }
MICRO(1)
MICRO(2)
MICRO(3)
MICRO(4)
_Static_assert(MR == 4, "the MICRO table spells out MR = 4");

typedef void (*micro_fn)(const uint32_t *, const uint32_t *, int, float *, size_t, const float *,
                         int, int, int, const float *, const int32_t *, const float *,
                         const int32_t *);
static const micro_fn micros[MR] = {micro_1, micro_2, micro_3, micro_4};

static void gemm(const struct wmat *w, int m, const float *x, int ldx, const float *bias, float *y,
                 int ldy, int col_lo, int col_hi, void *scratch) {
    ENG_ASSERT(scratch != NULL);
    struct scratch s = scratch_carve(scratch);
    int n_in = w->n_in, kw = (n_in + 3) / 4;
    int p_lo = col_lo / 16, p_hi = (col_hi + 15) / 16;
    const uint32_t *wd = w->data;
    const int32_t *colsum = gemm_int8_colsum(w);
    for (int i0 = 0; i0 < m; i0 += MC) {
        int mc = m - i0 < MC ? m - i0 : MC;
        const float *xb = x + (size_t)i0 * ldx;
        float *yb = y + (size_t)i0 * ldy;
        params(xb, ldx, mc, n_in, &s);
        for (int k0 = 0; k0 < kw; k0 += INT8_KC_WORDS) {
            int nk = kw - k0 < INT8_KC_WORDS ? kw - k0 : INT8_KC_WORDS;
            pack(xb, ldx, mc, n_in, k0, nk, &s);
            for (int p = p_lo; p < p_hi; p++) {
                const uint32_t *wp = wd + ((size_t)p * kw + k0) * 16;
                int c0 = col_lo - 16 * p, c1 = col_hi - 16 * p;
                c0 = c0 < 0 ? 0 : c0;
                c1 = c1 > 16 ? 16 : c1;
                const float *bp = bias ? bias + 16 * p : NULL;
                for (int r0 = 0; r0 < mc; r0 += MR) {
                    int mr = mc - r0 < MR ? mc - r0 : MR;
                    micros[mr - 1](s.xp + (size_t)r0 * nk * 2, wp, nk,
                                   yb + (size_t)r0 * ldy + 16 * p, (size_t)ldy, bp, k0 == 0, c0, c1,
                                   s.sx + r0, s.zx + r0, w->scale + 16 * p, colsum + 16 * p);
                }
            }
        }
    }
}

const struct gemm_kernel gemm_x86_avx2_int8 = {
    .name = "avx2-int8",
    .kind = WMAT_INT8,
    .needs = CPU_X86_AVX2,
    .prepare = gemm_prep_int8,
    .gemm = gemm,
    .scratch_bytes = scratch_bytes,
};
