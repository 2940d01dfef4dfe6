/* gemm_avx512.c -- the AVX-512 kernels: bf16 (AVX512_BF16, vdpbf16ps) and
 * int8 (AVX512_VNNI, vpdpbusd), on the bf16 and int8 word layouts of
 * engine/gemm.c, and the same two kinds on AMX tiles (tdpbf16ps, tdpbusd;
 * Intel Xeon from Sapphire Rapids on), which share their blocks, packing
 * and epilogues (section "AMX tiles" below). Every function that uses the
 * instructions carries a target attribute, so the file builds for baseline
 * x86-64; the kernel table only picks these rows when the CPU mask has the
 * bits.
 *
 * Blocking, per call, on the caller's column slice [col_lo, col_hi):
 *   for each block of MC rows        (int8: a scale/zero point per row, whole k)
 *     for each block of KC_K k:      convert MC x KC_K activations into scratch
 *       for each NV panels:          W micro-panel NV*16 x KC_K, stays in L2
 *         for each MR rows:          microkernel, MR x NV zmm accumulators
 * so every activation is converted once per call and thread, W streams from
 * memory once per row block (once in all for m <= MC: the short query), and
 * the microkernel issues MR*NV dot-product instructions per NV loads + MR
 * broadcasts. One zmm load is one k-word for 16 columns, exactly the operand
 * that vdpbf16ps / vpdpbusd multiply with a broadcast activation word.
 *
 * int8 quantisation (documented choice): weights symmetric per output row,
 * s_w[j] = max|W[j]| / 127, q_w in [-127, 127] (s8); activations asymmetric
 * per input row, computed at call time over the row's whole k: the range
 * [min(x, 0), max(x, 0)] maps to u8 [0, 255] with s_x = range / 255 and a
 * zero point z (0 is exact). vpdpbusd needs u8 x s8, so
 *   Y[i][j] = s_x[i] s_w[j] (sum_k q_x[i][k] q_w[j][k] - z[i] colsum[j]) + b[j]
 * with colsum[j] = sum_k q_w[j][k] precomputed at init (the usual VNNI
 * compensation term). Asymmetric activations keep the full 8 bits for the
 * one-sided inputs of fc2 (after GELU).
 */
#include "engine/cpu.h"
#include "engine/engine_impl.h"
#include "engine/gemm_kernels.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define TARGET_BF16   __attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl")))
#define TARGET_VNNI   __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define TARGET_AMX                                                                             \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16,amx-tile,amx-int8," \
                          "amx-bf16")))
#define INLINE static inline __attribute__((always_inline))

/* Microkernel: MR rows x NV panels of 16 columns (MR * NV zmm accumulators).
 * Blocks: MC rows x KC_K k values, i.e. KC_K / G words: the activations of a
 * block take MC * KC_K / G * 4 bytes of scratch, a W micro-panel
 * NV * 16 * KC_K / G * 4 bytes (128 KiB bf16, 64 KiB int8: L2). PF_WORDS:
 * software prefetch distance along a W panel, which helps the memory-bound
 * short query (m = 16) by ~10%. Measured on this Zen machine by bench_gemm:
 * MC in 48..192 and KC_K 1024 vs 512 differ by less than the noise except
 * bf16, where one k block for n_in = 1024 is ~8% faster than two. */
enum { MR = 6, NV = 4, MC = 96, KC_K = 1024, PF_WORDS = 16 };
/* AMX: rows in pairs of 16-row tiles (AMX_MR), the same row blocks of MC
 * (384 measured no faster); a block's rows are read in whole tiles, so
 * scratch holds them rounded up to 16, the rows past m zeroed. AMX_LDC:
 * the stored sums' row. */
enum { AMX_TILE_ROWS = 16, AMX_MR = 32, AMX_LDC = 32 };
_Static_assert(MC % AMX_MR == 0, "AMX row pairs divide the row block");

/* n rounded up to whole tiles of rows. */
static int amx_rows(int n) {
    return (n + AMX_TILE_ROWS - 1) & ~(AMX_TILE_ROWS - 1);
}
/* int8: the k blocks of the shared contract (gemm_kernels.h), so that the
 * outputs are the same bits as the portable and AVX2 int8 kernels'. */
_Static_assert(KC_K / 4 == INT8_KC_WORDS, "int8 k blocks are the contract's");

static int imin(int a, int b) {
    return a < b ? a : b;
}

/* ---- scratch: per row block, int8 row parameters then activation words ---- */

struct scratch {
    float *sx;    /* [MC] int8 row scale */
    int32_t *zx;  /* [MC] int8 row zero point */
    float *inv;   /* [MC] 1 / sx */
    uint32_t *xw; /* [MC][ld] activation words of one k block (AMX: whole tiles of rows) */
    int ld;       /* words per row: a block's, or fewer for a small k; multiple of 16 */
};

static int words_per_k(enum wmat_kind kind, int n_in) {
    return kind == WMAT_BF16 ? (n_in + 1) / 2 : (n_in + 3) / 4;
}

/* k-words per block */
static int block_words(enum wmat_kind kind) {
    return kind == WMAT_BF16 ? KC_K / 2 : KC_K / 4;
}

static int scratch_ld(const struct wmat *w) {
    return imin(block_words(w->kind), (words_per_k(w->kind, w->n_in) + 15) & ~15);
}

static size_t wmat_scratch_lowp(const struct wmat *w, int m) {
    if (m <= 0) return 0;
    size_t rows = (size_t)imin(m, MC);
    return 64 + 3 * MC * 4 + 64 + rows * (size_t)scratch_ld(w) * 4;
}

static size_t scratch_amx(const struct wmat *w, int m) {
    return m <= 0 ? 0 : wmat_scratch_lowp(w, amx_rows(imin(m, MC)));
}

static struct scratch scratch_carve(const struct wmat *w, void *mem) {
    uintptr_t p = ((uintptr_t)mem + 63) & ~(uintptr_t)63;
    struct scratch s;
    s.sx = (float *)p;
    s.zx = (int32_t *)(p + MC * 4);
    s.inv = (float *)(p + 2 * MC * 4);
    s.xw = (uint32_t *)((p + 3 * MC * 4 + 63) & ~(uintptr_t)63);
    s.ld = scratch_ld(w);
    return s;
}

/* ---- microkernels ---- */

/* One microkernel call: MR x NV*16 outputs over nk k-words of one k block. */
struct kern {
    int nk;              /* k-words in this block */
    const uint32_t *x;   /* activation words of row 0; row r at x + r * ldx */
    int ldx;             /* words */
    const uint32_t *w;   /* panel 0 at this block's first word; panel v at w + v * wstride */
    size_t wstride;      /* words */
    float *y;            /* Y row 0, column 16 * (first panel) */
    size_t ldy;          /* floats */
    const float *bias;   /* at y's column, or NULL */
    int first;           /* first k block: Y = acc (+ bias); later blocks: Y += acc */
    __mmask16 mask[NV];  /* each panel's columns inside [col_lo, col_hi) */
    const float *sx;     /* int8: [MR] row scales */
    const int32_t *zx;   /* int8: [MR] row zero points */
    const float *sw;     /* int8: column scales at y's column */
    const int32_t *csum; /* int8: column sums of q_w at y's column */
    /* the LoRA update (the *_lora kernels, last k block): T of row 0 (row
     * r at lt + r * rank), each row's B^T at y's column (NULL: no task) */
    const float *lt;
    const float *lb[MR];
    size_t ldb; /* floats between B^T's rank rows (n_out) */
    int rank;
    const int32_t *c; /* AMX: the tile's sums (int32; bf16: float bits), row r at c + r * AMX_LDC */
};

/* The LoRA update of the tile's outputs (the *_lora kernels): each output
 * s takes, k in order, s = fma(t_k, B^T[k], s) (wmat_gemm_lora's order)
 * before it is stored. The epilogues go panel by panel so that a panel's
 * four B^T vectors, loaded once, serve every row of a tile of one task (the
 * usual tile: lora_shared); rows of mixed tasks load their own. */
INLINE int lora_shared(const struct kern *a, const int mr) {
    const float *b0 = a->lb[0];
    int shared = a->rank == 4 && b0;
#pragma GCC unroll 8
    for (int r = 1; r < mr; r++)
        shared &= a->lb[r] == b0;
    return shared;
}

/* Panel v's B^T vectors of a shared tile. */
INLINE TARGET_AVX512 void lora_panel(const struct kern *a, int v, __mmask16 k, __m512 b[4]) {
    const float *bv = a->lb[0] + 16 * v;
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++)
        b[q] = _mm512_maskz_loadu_ps(k, bv + q * a->ldb);
}

/* s with row r's update for panel v: from b (shared) or its own B^T. */
INLINE TARGET_AVX512 __m512 lora_add(const struct kern *a, int r, int v, __mmask16 k, int shared,
                                     const __m512 b[4], __m512 s) {
    const float *t = a->lt + (size_t)r * a->rank;
    if (shared) {
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++)
            s = _mm512_fmadd_ps(_mm512_set1_ps(t[q]), b[q], s);
        return s;
    }
    const float *lb = a->lb[r];
    for (int q = 0; lb && q < a->rank; q++)
        s = _mm512_fmadd_ps(_mm512_set1_ps(t[q]),
                            _mm512_maskz_loadu_ps(k, lb + q * a->ldb + 16 * v), s);
    return s;
}

/* What Y takes for one zmm of 16 columns, masked to the slice: the first k
 * block s (+ bias), later blocks Y + s. */
INLINE TARGET_AVX512 __m512 y_value(const float *yv, const float *bv, int first, __mmask16 k,
                                    __m512 s) {
    if (!first)
        s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(k, yv));
    else if (bv)
        s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(k, bv));
    return s;
}

INLINE TARGET_AVX512 void bf16_out(const struct kern *a, __m512 acc[MR][NV], const int mr,
                                   const int nv, const int lora);

/* lora (a constant): the variant for the last k block of a call with a
 * LoRA update (lora_add). */
INLINE TARGET_BF16 void kern_bf16(const struct kern *a, const int mr, const int nv,
                                  const int lora) {
    __m512 acc[MR][NV];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            acc[r][v] = _mm512_setzero_ps();
    const uint32_t *x = a->x, *w = a->w;
    size_t ws = a->wstride, ldx = (size_t)a->ldx;
    for (int k = 0; k < a->nk; k++, w += 16) {
        __m512bh wv[NV];
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) {
            wv[v] = (__m512bh)_mm512_load_si512(w + v * ws);
            _mm_prefetch((const char *)(w + v * ws + 16 * PF_WORDS), _MM_HINT_T0);
        }
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m512bh xb = (__m512bh)_mm512_set1_epi32((int)x[r * ldx + k]);
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++)
                acc[r][v] = _mm512_dpbf16_ps(acc[r][v], xb, wv[v]);
        }
    }
    bf16_out(a, acc, mr, nv, lora);
}

/* The bf16 tile's outputs from its sums acc: the first k block's (+ bias),
 * or Y + acc on later ones, with the LoRA update when lora, stored. */
INLINE TARGET_AVX512 void bf16_out(const struct kern *a, __m512 acc[MR][NV], const int mr,
                                   const int nv, const int lora) {
    /* locals: the masked stores below may alias *a as far as the compiler knows */
    float *y = a->y;
    const float *bias = a->bias;
    size_t ldy = a->ldy;
    int first = a->first, shared = lora && lora_shared(a, mr);
    __mmask16 mask[NV];
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++)
        mask[v] = a->mask[v];
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++) {
        __mmask16 k = mask[v];
        __m512 b[4];
        if (shared) lora_panel(a, v, k, b);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            float *yv = y + r * ldy + 16 * v;
            __m512 s = y_value(yv, bias ? bias + 16 * v : NULL, first, k, acc[r][v]);
            if (lora) s = lora_add(a, r, v, k, shared, b, s);
            _mm512_mask_storeu_ps(yv, k, s);
        }
    }
}

/* Row r's value for panel v: s_x s_w (acc - z colsum) (+ bias) on the
 * first k block, Y + s_x s_w acc on later ones. */
INLINE TARGET_VNNI __m512 int8_value(const struct kern *a, __m512i q, int r, int v, __mmask16 k,
                                     __m512 sw, __m512i csum) {
    if (a->first) q = _mm512_sub_epi32(q, _mm512_mullo_epi32(_mm512_set1_epi32(a->zx[r]), csum));
    return y_value(
        a->y + r * a->ldy + 16 * v, a->bias ? a->bias + 16 * v : NULL, a->first, k,
        _mm512_mul_ps(_mm512_cvtepi32_ps(q), _mm512_mul_ps(_mm512_set1_ps(a->sx[r]), sw)));
}

/* The int8 tile's outputs from its exact sums acc: dequantised, s_x s_w
 * (acc - z colsum) (+ bias) on the first k block, Y + s_x s_w acc on later
 * ones, with the LoRA update when lora, stored. Every int8 kernel of this
 * file ends here, so their bits are one expression's. */
INLINE TARGET_VNNI void int8_out(const struct kern *a, __m512i acc[MR][NV], const int mr,
                                 const int nv, const int lora) {
    float *y = a->y;
    size_t ldy = a->ldy;
    __mmask16 mask[NV];
    __m512 sw[NV];
    __m512i csum[NV];
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++) {
        mask[v] = a->mask[v];
        sw[v] = _mm512_loadu_ps(a->sw + 16 * v);
        csum[v] = _mm512_loadu_si512(a->csum + 16 * v);
    }
    if (!lora) { /* rows outer: measured faster on AMX without an update */
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++)
                _mm512_mask_storeu_ps(y + r * ldy + 16 * v, mask[v],
                                      int8_value(a, acc[r][v], r, v, mask[v], sw[v], csum[v]));
        return;
    }
    int shared = lora_shared(a, mr); /* panels outer: B's vectors serve every row */
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++) {
        __m512 b[4];
        if (shared) lora_panel(a, v, mask[v], b);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m512 s = int8_value(a, acc[r][v], r, v, mask[v], sw[v], csum[v]);
            _mm512_mask_storeu_ps(y + r * ldy + 16 * v, mask[v],
                                  lora_add(a, r, v, mask[v], shared, b, s));
        }
    }
}

INLINE TARGET_VNNI void kern_int8(const struct kern *a, const int mr, const int nv,
                                  const int lora) {
    __m512i acc[MR][NV];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            acc[r][v] = _mm512_setzero_si512();
    const uint32_t *x = a->x, *w = a->w;
    size_t ws = a->wstride, ldx = (size_t)a->ldx;
    for (int k = 0; k < a->nk; k++, w += 16) {
        __m512i wv[NV];
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) {
            wv[v] = _mm512_load_si512(w + v * ws);
            _mm_prefetch((const char *)(w + v * ws + 16 * PF_WORDS), _MM_HINT_T0);
        }
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m512i xb = _mm512_set1_epi32((int)x[r * ldx + k]); /* u8 x 4 */
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++)
                acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], xb, wv[v]);
        }
    }
    int8_out(a, acc, mr, nv, lora);
}

typedef void (*kern_fn)(const struct kern *);

/* One specialisation per (mr, nv): full blocks and the row/panel tails;
 * body is a kernel with its lora argument bound. */
#define KERN_DEF(name, attr, body, mr, nv)                      \
    static attr void name##_##mr##_##nv(const struct kern *a) { \
        body(a, mr, nv);                                        \
    }
#define KERN_ROW(name, attr, body, mr) \
    KERN_DEF(name, attr, body, mr, 1)  \
    KERN_DEF(name, attr, body, mr, 2)  \
    KERN_DEF(name, attr, body, mr, 3) KERN_DEF(name, attr, body, mr, 4)
#define KERN_ALL(name, attr, body) \
    KERN_ROW(name, attr, body, 1)  \
    KERN_ROW(name, attr, body, 2)  \
    KERN_ROW(name, attr, body, 3)  \
    KERN_ROW(name, attr, body, 4) KERN_ROW(name, attr, body, 5) KERN_ROW(name, attr, body, 6)
#define KERN_TAB_ROW(name, mr) \
    { name##_##mr##_1, name##_##mr##_2, name##_##mr##_3, name##_##mr##_4 }
#define KERN_TAB(name)                                                          \
    {                                                                           \
        KERN_TAB_ROW(name, 1), KERN_TAB_ROW(name, 2), KERN_TAB_ROW(name, 3),    \
            KERN_TAB_ROW(name, 4), KERN_TAB_ROW(name, 5), KERN_TAB_ROW(name, 6) \
    }
/* The AMX epilogues: two panels at most (the tiles' pair). */
#define KERN_ROW2(name, attr, body, mr) \
    KERN_DEF(name, attr, body, mr, 1) KERN_DEF(name, attr, body, mr, 2)
#define KERN_ALL2(name, attr, body) \
    KERN_ROW2(name, attr, body, 1)  \
    KERN_ROW2(name, attr, body, 2)  \
    KERN_ROW2(name, attr, body, 3)  \
    KERN_ROW2(name, attr, body, 4) KERN_ROW2(name, attr, body, 5) KERN_ROW2(name, attr, body, 6)
#define KERN_TAB_ROW2(name, mr) \
    { name##_##mr##_1, name##_##mr##_2 }
#define KERN_TAB2(name)                                                            \
    {                                                                              \
        KERN_TAB_ROW2(name, 1), KERN_TAB_ROW2(name, 2), KERN_TAB_ROW2(name, 3),    \
            KERN_TAB_ROW2(name, 4), KERN_TAB_ROW2(name, 5), KERN_TAB_ROW2(name, 6) \
    }

_Static_assert(MR == 6 && NV == 4, "the KERN_* tables spell out MR = 6, NV = 4");
#define KBF16(a, mr, nv)  kern_bf16(a, mr, nv, 0)
#define KBF16L(a, mr, nv) kern_bf16(a, mr, nv, 1)
#define KINT8(a, mr, nv)  kern_int8(a, mr, nv, 0)
#define KINT8L(a, mr, nv) kern_int8(a, mr, nv, 1)
KERN_ALL(kbf16, TARGET_BF16, KBF16)
KERN_ALL(kbf16_lora, TARGET_BF16, KBF16L)
KERN_ALL(kint8, TARGET_VNNI, KINT8)
KERN_ALL(kint8_lora, TARGET_VNNI, KINT8L)
/* AMX: the sums of rows [0, mr) x panels [0, nv) read from a->c (int32
 * for int8, float for bf16), then the kind's epilogue. */
INLINE TARGET_VNNI void kern_amx_out(const struct kern *a, const int mr, const int nv,
                                     const int lora) {
    __m512i acc[MR][NV];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            acc[r][v] = _mm512_load_si512(a->c + r * AMX_LDC + 16 * v);
    int8_out(a, acc, mr, nv, lora);
}
INLINE TARGET_AVX512 void kern_amxbf_out(const struct kern *a, const int mr, const int nv,
                                         const int lora) {
    __m512 acc[MR][NV];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            acc[r][v] = _mm512_castsi512_ps(_mm512_load_si512(a->c + r * AMX_LDC + 16 * v));
    bf16_out(a, acc, mr, nv, lora);
}
#define KAMX(a, mr, nv)    kern_amx_out(a, mr, nv, 0)
#define KAMXL(a, mr, nv)   kern_amx_out(a, mr, nv, 1)
#define KAMXBF(a, mr, nv)  kern_amxbf_out(a, mr, nv, 0)
#define KAMXBFL(a, mr, nv) kern_amxbf_out(a, mr, nv, 1)
KERN_ALL2(kamx, TARGET_VNNI, KAMX)
KERN_ALL2(kamx_lora, TARGET_VNNI, KAMXL)
KERN_ALL2(kamxbf, TARGET_AVX512, KAMXBF)
KERN_ALL2(kamxbf_lora, TARGET_AVX512, KAMXBFL)
/* [lora][mr - 1][nv - 1] */
static const kern_fn kern_bf16_tab[2][MR][NV] = {KERN_TAB(kbf16), KERN_TAB(kbf16_lora)};
static const kern_fn kern_int8_tab[2][MR][NV] = {KERN_TAB(kint8), KERN_TAB(kint8_lora)};
static const kern_fn kern_amx_tab[2][MR][2] = {KERN_TAB2(kamx), KERN_TAB2(kamx_lora)};
static const kern_fn kern_amxbf_tab[2][MR][2] = {KERN_TAB2(kamxbf), KERN_TAB2(kamxbf_lora)};

/* ---- activation conversion into scratch ---- */

/* xw[r][0..nk) = bf16 words of x[r][2 k0 .. 2 (k0 + nk)), zero past n_in. */
static TARGET_BF16 void pack_bf16(const float *x, int ldx, int rows, int n_in, int k0, int nk,
                                  uint32_t *xw, int ld) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * ldx;
        uint32_t *dr = xw + (size_t)r * ld;
        for (int kk = 0; kk < nk; kk += 16) {
            int e = 2 * (k0 + kk); /* first float */
            int n_lo = imin(16, n_in - e), n_hi = imin(16, n_in - e - 16);
            __mmask16 m_lo = n_lo >= 16 ? 0xffff : n_lo > 0 ? (__mmask16)((1u << n_lo) - 1) : 0;
            __mmask16 m_hi = n_hi >= 16 ? 0xffff : n_hi > 0 ? (__mmask16)((1u << n_hi) - 1) : 0;
            __m512 lo = _mm512_maskz_loadu_ps(m_lo, xr + e);
            __m512 hi = _mm512_maskz_loadu_ps(m_hi, xr + e + 16);
            __m512i v = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
            int left = nk - kk;
            _mm512_mask_storeu_epi32(dr + kk, left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1),
                                     v);
        }
    }
}

/* Row parameters for int8 activations over the whole row: the vector form
 * of gemm_int8_row_params (the same min, max and float expressions). */
static TARGET_VNNI void quant_params(const float *x, int ldx, int rows, int n_in, float *sx,
                                     int32_t *zx, float *inv) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * ldx;
        __m512 vmin = _mm512_setzero_ps(), vmax = _mm512_setzero_ps();
        for (int k = 0; k < n_in; k += 16) {
            int n = imin(16, n_in - k);
            __mmask16 m = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
            __m512 v = _mm512_maskz_loadu_ps(m, xr + k); /* masked lanes are 0: in range */
            vmin = _mm512_min_ps(vmin, v);
            vmax = _mm512_max_ps(vmax, v);
        }
        float lo = _mm512_reduce_min_ps(vmin), hi = _mm512_reduce_max_ps(vmax);
        float s = (hi - lo) / 255.0f;
        if (!(s > 0)) s = 1.0f; /* an all-zero row */
        long z = lrintf(-lo / s);
        zx[r] = (int32_t)(z < 0 ? 0 : z > 255 ? 255 : z);
        sx[r] = s;
        inv[r] = 1.0f / s;
    }
}

/* xw[r][0..nk) = u8 words of x[r][4 k0 .. 4 (k0 + nk)), quantised with the
 * row's parameters; k past n_in gives the zero point (its W is zero). The
 * vector form of gemm_int8_quant: cvtps2dq rounds as lrintf (to nearest
 * even), max 0 then the unsigned saturation to 255 are its clamp. */
static TARGET_VNNI void pack_int8(const float *x, int ldx, int rows, int n_in, int k0, int nk,
                                  const int32_t *zx, const float *inv, uint32_t *xw, int ld) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * ldx;
        uint8_t *dr = (uint8_t *)(xw + (size_t)r * ld);
        __m512 vinv = _mm512_set1_ps(inv[r]);
        __m512i vz = _mm512_set1_epi32(zx[r]), zero = _mm512_setzero_si512();
        for (int kk = 0; kk < 4 * nk; kk += 16) {
            int e = 4 * k0 + kk, n = imin(16, n_in - e);
            __mmask16 m = n >= 16 ? 0xffff : n > 0 ? (__mmask16)((1u << n) - 1) : 0;
            __m512 v = _mm512_maskz_loadu_ps(m, xr + e);
            __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, vinv)), vz);
            q = _mm512_max_epi32(q, zero);
            _mm_storeu_si128((__m128i *)(dr + kk), _mm512_cvtusepi32_epi8(q)); /* clamps at 255 */
        }
    }
}

/* ---- drivers ---- */

/* Bits of panel p's lanes inside [col_lo, col_hi). */
static __mmask16 panel_mask(int p, int col_lo, int col_hi) {
    int lo = col_lo - 16 * p, hi = col_hi - 16 * p;
    lo = lo < 0 ? 0 : lo;
    hi = hi > 16 ? 16 : hi;
    unsigned m = hi <= lo ? 0 : ((1u << hi) - 1) & ~((1u << lo) - 1);
    return (__mmask16)m;
}

/* Panel p's words from k word k0 on (panels a->wstride words apart). */
static const uint32_t *panel_words(const struct wmat *w, const struct kern *a, int p, int k0) {
    return (const uint32_t *)w->data + (size_t)p * a->wstride + (size_t)k0 * 16;
}

/* Points a at panels [p, p + nv) of one k block (k0 its first word): the
 * panels' masks inside [col_lo, col_hi), W, bias and, int8, the column
 * scales and sums. */
static void kern_panels(const struct wmat *w, struct kern *a, int p, int nv, const float *bias,
                        int col_lo, int col_hi, int k0) {
    const uint32_t *wd = w->data;
    for (int v = 0; v < nv; v++)
        a->mask[v] = panel_mask(p + v, col_lo, col_hi);
    a->w = panel_words(w, a, p, k0);
    a->bias = bias ? bias + 16 * p : NULL;
    if (w->kind == WMAT_INT8) {
        a->sw = w->scale + 16 * p;
        /* colsum follows the panels: n_pad / 16 panels of wstride words */
        a->csum = (const int32_t *)(wd + (size_t)((w->n_out + 15) / 16) * a->wstride) + 16 * p;
    }
}

/* Points a at the block's rows [r0, r0 + mr) (at most MR) for panel p:
 * their words, Y, int8 row parameters and the LoRA update's rows. */
static void kern_rows(const struct wmat *w, struct kern *a, const struct wmat_words *s, int r0,
                      int mr, int p, const struct wmat_lora *lora, float *y, int ldy) {
    a->x = s->w + (size_t)r0 * s->ld;
    a->y = y + (size_t)r0 * ldy + 16 * p;
    a->sx = s->sx ? s->sx + r0 : NULL; /* bf16: none */
    a->zx = s->zx ? s->zx + r0 : NULL;
    if (lora) {
        a->lt = lora->t + (size_t)r0 * lora->rank;
        for (int r = 0; r < mr; r++) {
            int32_t t = lora->task[r0 + r];
            a->lb[r] = t < 0 ? NULL : lora->bt + (size_t)t * lora->rank * w->n_out + 16 * p;
        }
    }
}

/* Runs the NV-panel x MR-row loops of one (row block, k block): s holds
 * the block's activation words (row r at s->w + r * s->ld, its first word
 * the block's) and, int8, the rows' parameters. */
static void run_block(const struct wmat *w, const kern_fn tab[2][MR][NV], struct kern *a,
                      const struct wmat_words *s, int mc, const float *bias,
                      const struct wmat_lora *lora, float *y, int ldy, int col_lo, int col_hi,
                      int k0) {
    int p_lo = col_lo / 16, p_hi = (col_hi + 15) / 16;
    for (int p = p_lo; p < p_hi; p += NV) {
        int nv = imin(NV, p_hi - p);
        kern_panels(w, a, p, nv, bias, col_lo, col_hi, k0);
        for (int r0 = 0; r0 < mc; r0 += MR) {
            int mr = imin(MR, mc - r0);
            kern_rows(w, a, s, r0, mr, p, lora, y, ldy);
            tab[lora != NULL][mr - 1][nv - 1](a);
        }
    }
}

/* ---- AMX tiles: int8 (tdpbusd) and bf16 (tdpbf16ps) ----
 *
 * The same blocks, packing and epilogues as the vector kernels; only a k
 * block's sums come from the tiles: tiles 0-3 hold the sums of 32 rows x 2
 * panels (16 x 16 each, int32 or f32), tiles 4-5 two 16-row tiles of
 * activation words (row-major, 16 words a step), 6-7 two panels' 16 words
 * (a panel's words are exactly a B tile's rows: 16 columns of four s8 or
 * two bf16). The words past the last multiple of 16 of a k block go
 * through vpdpbusd / vdpbf16ps onto the stored sums, in k order.
 * int8: the sums are exact integers whatever adds them, so the outputs are
 * the VNNI kernel's bits, and the contract's. bf16: tdpbf16ps adds each
 * word's two products in its own order and rounding (not vdpbf16ps's), so
 * the bits are this kernel's own; every row of every call takes the same
 * steps (tiles of 16 rows whatever m, the tail words after), so they do
 * not depend on the batch. */

struct amx_cfg { /* palette 1's 64-byte tile configuration */
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

/* Every tile 16 rows x 64 bytes. Tile state is per thread: each call
 * configures at its start and releases at its end. The configuration is
 * a static object: gcc does not see ldtilecfg read its operand, and drops
 * the stores into a local one. */
static TARGET_AMX void amx_begin(void) {
    static const struct amx_cfg cfg = {
        .palette = 1,
        .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
        .rows = {16, 16, 16, 16, 16, 16, 16, 16},
    };
    _tile_loadconfig(&cfg);
}

static TARGET_AMX void amx_end(void) {
    _tile_release();
}

/* The k loop of amx_dots for one instruction (DP: _tile_dpbusd or
 * _tile_dpbf16ps), with as many row tiles and panels as asked. */
#define AMX_STEPS(DP)                            \
    do {                                         \
        if (two_rows && two_panels)              \
            for (int k = 0; k < nk16; k += 16) { \
                _tile_loadd(4, x0 + k, ldxb);    \
                _tile_loadd(6, w0 + 16 * k, 64); \
                DP(0, 4, 6);                     \
                _tile_loadd(7, w1 + 16 * k, 64); \
                DP(1, 4, 7);                     \
                _tile_loadd(5, x1 + k, ldxb);    \
                DP(2, 5, 6);                     \
                DP(3, 5, 7);                     \
            }                                    \
        else if (two_rows)                       \
            for (int k = 0; k < nk16; k += 16) { \
                _tile_loadd(4, x0 + k, ldxb);    \
                _tile_loadd(6, w0 + 16 * k, 64); \
                _tile_loadd(5, x1 + k, ldxb);    \
                DP(0, 4, 6);                     \
                DP(2, 5, 6);                     \
            }                                    \
        else if (two_panels)                     \
            for (int k = 0; k < nk16; k += 16) { \
                _tile_loadd(4, x0 + k, ldxb);    \
                _tile_loadd(6, w0 + 16 * k, 64); \
                _tile_loadd(7, w1 + 16 * k, 64); \
                DP(0, 4, 6);                     \
                DP(1, 4, 7);                     \
            }                                    \
        else                                     \
            for (int k = 0; k < nk16; k += 16) { \
                _tile_loadd(4, x0 + k, ldxb);    \
                _tile_loadd(6, w0 + 16 * k, 64); \
                DP(0, 4, 6);                     \
            }                                    \
    } while (0)

/* Tiles 0-3 = the sums over words [0, nk16) (a multiple of 16) of rows x0
 * (16 rows, ldxb bytes apart) and x0 + 16 rows (two_rows) with panels w0
 * and w1 (two_panels); the halves not asked for are zero. Returns once the
 * tile instructions are issued: they run on while the caller goes on. */
static TARGET_AMX void amx_dots(int bf16, const uint32_t *x0, size_t ldxb, const uint32_t *w0,
                                const uint32_t *w1, int nk16, int two_rows, int two_panels) {
    const uint32_t *x1 = (const uint32_t *)((const char *)x0 + 16 * ldxb);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    if (bf16)
        AMX_STEPS(_tile_dpbf16ps);
    else
        AMX_STEPS(_tile_dpbusd);
}

/* c[32][AMX_LDC] = tiles 0-3 (waits for amx_dots' sums). */
static TARGET_AMX void amx_store(int32_t *c) {
    _tile_stored(0, c, AMX_LDC * 4);
    _tile_stored(1, c + 16, AMX_LDC * 4);
    _tile_stored(2, c + 16 * AMX_LDC, AMX_LDC * 4);
    _tile_stored(3, c + 16 * AMX_LDC + 16, AMX_LDC * 4);
}

/* Tiles 0-3 straight to Y (ldyb bytes between rows): rows 0-15 and 16-31,
 * columns 0-15 and 16-31 from y. */
static TARGET_AMX void amx_store_to(float *y, size_t ldyb) {
    float *y1 = (float *)((char *)y + 16 * ldyb);
    _tile_stored(0, y, ldyb);
    _tile_stored(1, y + 16, ldyb);
    _tile_stored(2, y1, ldyb);
    _tile_stored(3, y1 + 16, ldyb);
}
#undef AMX_STEPS

/* Adds words [k_lo, k_hi) of rows [0, rows) (x, ld words apart) times
 * panels [0, nv) (w, ws words apart) to the sums c, k in order. */
static TARGET_AMX void amx_tail(int32_t *c, int bf16, const uint32_t *x, int ld, const uint32_t *w,
                                size_t ws, int k_lo, int k_hi, int rows, int nv) {
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++) {
            int32_t *cv = c + r * AMX_LDC + 16 * v;
            __m512i acc = _mm512_load_si512(cv);
            for (int k = k_lo; k < k_hi; k++) {
                __m512i xb = _mm512_set1_epi32((int)x[(size_t)r * ld + k]);
                __m512i wv = _mm512_load_si512(w + v * ws + 16 * (size_t)k);
                if (bf16)
                    acc = _mm512_castps_si512(
                        _mm512_dpbf16_ps(_mm512_castsi512_ps(acc), (__m512bh)xb, (__m512bh)wv));
                else
                    acc = _mm512_dpbusd_epi32(acc, xb, wv);
            }
            _mm512_store_si512(cv, acc);
        }
}

/* One tile pair's place in run_block_amx: panels [p, p + nv), rows
 * [r0, r0 + rows) of the block, its sums in c. */
struct amx_pair {
    int p, nv, r0, rows;
    const int32_t *c;
};

/* The epilogue of pair q, by tiles of MR rows. */
static void amx_out(const struct wmat *w, struct kern *a, const struct wmat_words *s,
                    const struct amx_pair *q, const float *bias, const struct wmat_lora *lora,
                    float *y, int ldy, int col_lo, int col_hi, int k0) {
    const kern_fn(*tab)[MR][2] = w->kind == WMAT_BF16 ? kern_amxbf_tab : kern_amx_tab;
    kern_panels(w, a, q->p, q->nv, bias, col_lo, col_hi, k0);
    for (int g = 0; g < q->rows; g += MR) {
        int mr = imin(MR, q->rows - g);
        kern_rows(w, a, s, q->r0 + g, mr, q->p, lora, y, ldy);
        a->c = q->c + g * AMX_LDC;
        tab[lora != NULL][mr - 1][q->nv - 1](a);
    }
}

/* run_block on AMX: panels in pairs, rows in pairs of tiles (s holds
 * whole tiles: rows up to mc rounded up to 16). Software-pipelined: a
 * pair's tile instructions are issued, then the previous pair's epilogue
 * runs on the vector units while the tiles compute, then the pair's sums
 * are stored (two buffers of sums alternate). */
static __attribute__((target("prfchw"))) void
run_block_amx(const struct wmat *w, struct kern *a, const struct wmat_words *s, int mc,
              const float *bias, const struct wmat_lora *lora, float *y, int ldy, int col_lo,
              int col_hi, int k0) {
    _Alignas(64) int32_t c[2][AMX_MR * AMX_LDC];
    int bf16 = w->kind == WMAT_BF16, cur = 0;
    int p_lo = col_lo / 16, p_hi = (col_hi + 15) / 16, nk16 = a->nk & ~15;
    struct amx_pair prev = {0}; /* c NULL: no pair waits for its epilogue */
    /* bf16 sums that are the outputs as they are (the first k block, all
     * its words on the tiles, no bias, no update): whole tile pairs go from
     * the tiles straight to Y, the same bits without the copy through c
     * (the attention's products) */
    int direct = bf16 && a->first && nk16 == a->nk && !bias && !lora;
    for (int p = p_lo; p < p_hi; p += 2) {
        int nv = imin(2, p_hi - p);
        const uint32_t *w0 = panel_words(w, a, p, k0);
        for (int r0 = 0; r0 < mc; r0 += AMX_MR) {
            int rows = imin(AMX_MR, mc - r0);
            const uint32_t *x0 = s->w + (size_t)r0 * s->ld;
            /* the next panel pair's Y lines of these rows, for writing: Y's
             * rows are n_out floats apart and each visit writes 128 bytes of
             * one, a pattern the hardware prefetchers do not follow, so the
             * epilogue's stores missed to memory (with it: 1-thread batch
             * +13%, measured on an Intel Xeon) */
            if (p + 2 < p_hi)
                for (int r = 0; r < rows; r++) {
                    float *yn = y + (size_t)(r0 + r) * ldy + 16 * (p + 2);
                    __builtin_prefetch(yn, 1, 3);
                    __builtin_prefetch(yn + 16, 1, 3);
                }
            amx_dots(bf16, x0, (size_t)s->ld * 4, w0, w0 + a->wstride, nk16, rows > 16, nv == 2);
            if (direct && rows == AMX_MR && nv == 2 && 16 * p >= col_lo && 16 * p + 32 <= col_hi) {
                amx_store_to(y + (size_t)r0 * ldy + 16 * p, (size_t)ldy * 4);
                continue;
            }
            if (prev.c) amx_out(w, a, s, &prev, bias, lora, y, ldy, col_lo, col_hi, k0);
            amx_store(c[cur]);
            if (nk16 < a->nk)
                amx_tail(c[cur], bf16, x0, s->ld, w0, a->wstride, nk16, a->nk, rows, nv);
            prev = (struct amx_pair){p, nv, r0, rows, c[cur]};
            cur ^= 1;
        }
    }
    if (prev.c) amx_out(w, a, s, &prev, bias, lora, y, ldy, col_lo, col_hi, k0);
}

/* amx: the sums on AMX tiles (run_block_amx; scratch by scratch_amx). */
static void gemm_lowp(const struct wmat *w, int m, const float *x, int ldx, const float *bias,
                      const struct wmat_lora *lora, float *y, int ldy, int col_lo, int col_hi,
                      void *scratch, int amx) {
    int int8 = w->kind == WMAT_INT8;
    int kw = words_per_k(w->kind, w->n_in), kc = block_words(w->kind);
    struct scratch s = scratch_carve(w, scratch);
    struct kern a = {0};
    a.ldx = s.ld;
    a.wstride = (size_t)kw * 16;
    a.ldy = (size_t)ldy;
    a.ldb = (size_t)w->n_out;
    a.rank = lora ? lora->rank : 0;
    for (int i0 = 0; i0 < m; i0 += MC) {
        int mc = imin(MC, m - i0);
        const float *xb = x + (size_t)i0 * ldx;
        float *yb = y + (size_t)i0 * ldy;
        struct wmat_lora lb; /* this row block's rows of the update */
        if (lora) {
            lb = *lora;
            lb.t += (size_t)i0 * lora->rank;
            lb.task += i0;
        }
        if (int8) quant_params(xb, ldx, mc, w->n_in, s.sx, s.zx, s.inv);
        if (amx) /* the last tile's rows past mc: zero words, read and left unused */
            memset(s.xw + (size_t)mc * s.ld, 0,
                   sizeof(uint32_t) * (size_t)s.ld * (amx_rows(mc) - mc));
        for (int k0 = 0; k0 < kw; k0 += kc) {
            a.nk = imin(kc, kw - k0);
            a.first = k0 == 0;
            if (int8)
                pack_int8(xb, ldx, mc, w->n_in, k0, a.nk, s.zx, s.inv, s.xw, s.ld);
            else
                pack_bf16(xb, ldx, mc, w->n_in, k0, a.nk, s.xw, s.ld);
            struct wmat_words xs = {s.xw, s.ld, s.sx, s.zx};
            const struct wmat_lora *lk = lora && k0 + kc >= kw ? &lb : NULL;
            if (amx)
                run_block_amx(w, &a, &xs, mc, bias, lk, yb, ldy, col_lo, col_hi, k0);
            else
                run_block(w, int8 ? kern_int8_tab : kern_bf16_tab, &a, &xs, mc, bias, lk, yb, ldy,
                          col_lo, col_hi, k0);
        }
    }
}

/* wmat_gemm_words: the same blocks on the caller's words, nothing converted. */
static void gemm_words(const struct wmat *w, int m, const struct wmat_words *x, float *y, int ldy,
                       int col_lo, int col_hi) {
    int int8 = w->kind == WMAT_INT8;
    int kw = words_per_k(w->kind, w->n_in), kc = block_words(w->kind);
    struct kern a = {0};
    a.ldx = x->ld;
    a.wstride = (size_t)kw * 16;
    a.ldy = (size_t)ldy;
    for (int i0 = 0; i0 < m; i0 += MC) {
        int mc = imin(MC, m - i0);
        for (int k0 = 0; k0 < kw; k0 += kc) {
            a.nk = imin(kc, kw - k0);
            a.first = k0 == 0;
            struct wmat_words xs = {x->w + (size_t)i0 * x->ld + k0, x->ld, int8 ? x->sx + i0 : NULL,
                                    int8 ? x->zx + i0 : NULL};
            run_block(w, int8 ? kern_int8_tab : kern_bf16_tab, &a, &xs, mc, NULL, NULL,
                      y + (size_t)i0 * ldy, ldy, col_lo, col_hi, k0);
        }
    }
}

static void gemm_avx512(const struct wmat *w, int m, const float *x, int ldx, const float *bias,
                        float *y, int ldy, int col_lo, int col_hi, void *scratch) {
    ENG_ASSERT(scratch != NULL);
    gemm_lowp(w, m, x, ldx, bias, NULL, y, ldy, col_lo, col_hi, scratch, 0);
}

/* ---- the attention's softmax, P written as this kernel's words ---- */

/* 2^(x c1 + c2) for 16 scores (mask k: the others 0), ops_softmax_words'
 * steps: u = fma(x, c1, c2); 0 below OPS_SOFTMAX_ULO; else P(u - floor u)
 * scaled by 2^floor(u) (vscalefps takes floor(u) itself: exact for these
 * normal results). */
static inline TARGET_BF16 __attribute__((always_inline)) __m512
softmax_exp16(const float *x, __mmask16 k, __m512 c1, __m512 c2) {
    __m512 u = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x), c1, c2);
    k = _mm512_mask_cmp_ps_mask(k, u, _mm512_set1_ps(OPS_SOFTMAX_ULO), _CMP_GE_OQ);
    /* floor(u) by vrndscaleps (round down, no #P), then u - floor(u) to
     * nearest as the portable form does (vreduceps would round that
     * subtraction down too: other bits where it is inexact, u in (-0.5, 0)) */
    __m512 r = _mm512_sub_ps(u, _mm512_roundscale_ps(u, 0x09));
    __m512 p = _mm512_fmadd_ps(r, _mm512_set1_ps(OPS_SOFTMAX_C3), _mm512_set1_ps(OPS_SOFTMAX_C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(OPS_SOFTMAX_C1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(k, p, u); /* p 2^floor(u) */
}

/* The first n lanes of 16 (none for n <= 0). */
static inline __mmask16 lanes16(int n) {
    return n >= 16 ? 0xffff : n > 0 ? (__mmask16)((1u << n) - 1) : 0;
}

/* 32 scores (lanes k0, k1 of each half; the others 0) into 16 words at p
 * (lanes kw), each word's odd value then its even one added to *a. */
static inline TARGET_BF16 __attribute__((always_inline)) void
softmax_step32(const float *x, __mmask16 k0, __mmask16 k1, __m512 c1, __m512 c2, uint32_t *p,
               __mmask16 kw, __m512 *a) {
    __m512 e0 = softmax_exp16(x, k0, c1, c2), e1 = softmax_exp16(x + 16, k1, c1, c2);
    __m512i w = (__m512i)_mm512_cvtne2ps_pbh(e1, e0);
    *a = _mm512_add_ps(
        *a, _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32((int)0xffff0000u))));
    *a = _mm512_add_ps(*a, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    _mm512_mask_storeu_epi32(p, kw, w);
}

/* The sum of t's 16 lanes as a tree: halves added 8, 4, 2, 1 apart. */
INLINE TARGET_AVX512 float sum16_tree(__m512 t) {
    __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(t),
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1)));
    __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
    __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
    return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

/* ops_softmax_words (engine_impl.h) bit for bit: vcvtne2ps2bf16 rounds 32
 * values into 16 words (even j low, to nearest even; it flushes subnormal
 * inputs, and there are none), the two sums take the words' halves back as
 * floats, and the row's scalar steps are the same explicit fused steps. */
static TARGET_BF16 void softmax_words_bf16(const float *x, int n_rows, int n, int ld, float s,
                                           float *m, float *l, float *alpha, uint32_t *p, int ldp) {
    for (int i = 0; i < n_rows; i++) {
        const float *xi = x + (size_t)i * ld;
        uint32_t *pi = p + (size_t)i * ldp;
        __m512 v0 = _mm512_set1_ps(-INFINITY), v1 = v0;
        int j = 0;
        for (; j + 32 <= n; j += 32) {
            v0 = _mm512_max_ps(v0, _mm512_loadu_ps(xi + j));
            v1 = _mm512_max_ps(v1, _mm512_loadu_ps(xi + j + 16));
        }
        for (; j < n; j += 16) /* lanes past n keep -inf */
            v0 = _mm512_max_ps(
                v0, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), lanes16(n - j), xi + j));
        float mx = _mm512_reduce_max_ps(_mm512_max_ps(v0, v1)) * s;
        float m_new = mx > m[i] ? mx : m[i];
        alpha[i] = m[i] == -INFINITY ? 0.0f : ops_exp_poly_fused(m[i] - m_new);
        __m512 c1 = _mm512_set1_ps(s * OPS_SOFTMAX_LOG2E),
               c2 = _mm512_set1_ps(-(m_new * OPS_SOFTMAX_LOG2E));
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;
        for (j = 0; j + 64 <= n; j += 64) { /* two sums: more in flight */
            softmax_step32(xi + j, 0xffff, 0xffff, c1, c2, pi + j / 2, 0xffff, &a0);
            softmax_step32(xi + j + 32, 0xffff, 0xffff, c1, c2, pi + j / 2 + 16, 0xffff, &a1);
        }
        for (; j < n; j += 32) {
            int left = n - j, nw = left >= 32 ? 16 : (left + 1) / 2;
            __mmask16 k0 = lanes16(left), k1 = lanes16(left - 16), kw = lanes16(nw);
            if (j % 64) /* (not one call through a chosen pointer: that kept both in memory) */
                softmax_step32(xi + j, k0, k1, c1, c2, pi + j / 2, kw, &a1);
            else
                softmax_step32(xi + j, k0, k1, c1, c2, pi + j / 2, kw, &a0);
        }
        /* the lanes' tree: (a0 + a1), then halves added */
        l[i] = fmaf(l[i], alpha[i], sum16_tree(_mm512_add_ps(a0, a1)));
        m[i] = m_new;
    }
}

static void gemm_avx512_lora(const struct wmat *w, int m, const float *x, int ldx,
                             const float *bias, const struct wmat_lora *lora, float *y, int ldy,
                             int col_lo, int col_hi, void *scratch) {
    ENG_ASSERT(scratch != NULL);
    gemm_lowp(w, m, x, ldx, bias, lora, y, ldy, col_lo, col_hi, scratch, 0);
}

const struct gemm_kernel gemm_x86_avx512_bf16 = {
    .name = "avx512bf16",
    .kind = WMAT_BF16,
    .needs = CPU_X86_AVX512 | CPU_X86_AVX512_BF16,
    .prepare = gemm_prep_bf16,
    .gemm = gemm_avx512,
    .scratch_bytes = wmat_scratch_lowp,
    .gemm_lora = gemm_avx512_lora,
    .gemm_words = gemm_words,
    .softmax_words = softmax_words_bf16,
};

const struct gemm_kernel gemm_x86_avx512_vnni = {
    .name = "avx512vnni",
    .kind = WMAT_INT8,
    .needs = CPU_X86_AVX512 | CPU_X86_AVX512_VNNI,
    .prepare = gemm_prep_int8,
    .gemm = gemm_avx512,
    .scratch_bytes = wmat_scratch_lowp,
    .gemm_lora = gemm_avx512_lora,
    .gemm_words = gemm_words,
};

static void gemm_amx_lora(const struct wmat *w, int m, const float *x, int ldx, const float *bias,
                          const struct wmat_lora *lora, float *y, int ldy, int col_lo, int col_hi,
                          void *scratch) {
    ENG_ASSERT(scratch != NULL);
    amx_begin();
    gemm_lowp(w, m, x, ldx, bias, lora, y, ldy, col_lo, col_hi, scratch, 1);
    amx_end();
}

static void gemm_amx(const struct wmat *w, int m, const float *x, int ldx, const float *bias,
                     float *y, int ldy, int col_lo, int col_hi, void *scratch) {
    gemm_amx_lora(w, m, x, ldx, bias, NULL, y, ldy, col_lo, col_hi, scratch);
}

/* gemm_words on AMX: the caller's words as they are for rows in whole
 * pairs of tiles; the last rows (fewer than AMX_MR) through a zero-padded
 * copy, since a tile reads 16 rows. */
static void gemm_words_amx(const struct wmat *w, int m, const struct wmat_words *x, float *y,
                           int ldy, int col_lo, int col_hi) {
    _Alignas(64) uint32_t pad[AMX_MR * (KC_K / 2)]; /* a k block of either kind's words */
    int int8 = w->kind == WMAT_INT8;
    int kw = words_per_k(w->kind, w->n_in), kc = block_words(w->kind), whole = m & ~(AMX_MR - 1);
    struct kern a = {0};
    a.wstride = (size_t)kw * 16;
    a.ldy = (size_t)ldy;
    amx_begin();
    for (int i0 = 0; i0 < m; i0 += MC) {
        int mc = imin(MC, m - i0), padded = i0 + mc > whole;
        for (int k0 = 0; k0 < kw; k0 += kc) {
            a.nk = imin(kc, kw - k0);
            a.first = k0 == 0;
            struct wmat_words xs = {x->w + (size_t)i0 * x->ld + k0, x->ld, int8 ? x->sx + i0 : NULL,
                                    int8 ? x->zx + i0 : NULL};
            int mw = padded ? whole - i0 : mc; /* rows read in place */
            if (mw > 0)
                run_block_amx(w, &a, &xs, mw, NULL, NULL, y + (size_t)i0 * ldy, ldy, col_lo, col_hi,
                              k0);
            if (!padded) continue;
            int rows = m - whole; /* the rows' words past nk are never read */
            memset(pad + (size_t)rows * kc, 0,
                   sizeof(uint32_t) * (size_t)kc * (amx_rows(rows) - rows));
            for (int r = 0; r < rows; r++)
                memcpy(pad + (size_t)r * kc, x->w + (size_t)(whole + r) * x->ld + k0,
                       sizeof(uint32_t) * (size_t)a.nk);
            struct wmat_words xt = {pad, kc, int8 ? x->sx + whole : NULL,
                                    int8 ? x->zx + whole : NULL};
            run_block_amx(w, &a, &xt, rows, NULL, NULL, y + (size_t)whole * ldy, ldy, col_lo,
                          col_hi, k0);
        }
    }
    amx_end();
}

/* ---- AMX: one query tile's whole attention (wmat_attend_words) ----
 *
 * The keys pass in chunks of 32 through the tiles, and nothing larger than
 * a chunk's 16 x 32 scores is written out: per key block (its K and V^T, 256 KB at 1024 keys, stay
 * in L2) and per 16 query rows, tiles 0-3 hold the rows' output O (16 x 64
 * f32, kept in memory between blocks), 4-5 a chunk's scores S = Q K^T
 * (16 x 32), 6 an A operand (the queries' words, then P's), 7 a B operand
 * (a K panel's words, then a V^T panel's). A chunk's scores go through 2 KB
 * of L1 to the vector units, which write P's 16 x 16 words for P V. The
 * tiles run ahead: chunk c + 2's scores and chunk c - 1's P V are issued
 * between the quarters of chunk c's softmax (attend_keys).
 * The softmax's reference m (per row, in units of s·score) is not the exact
 * running maximum: it moves only when a score exceeds it by more than
 * ATTEND_TAU (or on the row's first chunk), to that chunk's maximum, and
 * then O (stored, scaled, loaded back) and the row's sum are scaled by
 * e^(m_old - m_new). Between moves P's values are up to e^ATTEND_TAU (bf16
 * and the f32 sums take that) and O needs no round trip. P = 2^u
 * (attend_exp16); the row's sum adds the values before P's
 * rounding, so it is not exactly the sum of what P V multiplies (within P's
 * rounding): sixteen lanes, lane l adding keys l and l + 16 of each chunk,
 * the chunks in order, the lanes added as a tree at the end.
 * Bits: the amx level's own, like its products; per row they depend only
 * on the row, its keys and the blocks' widths, never on the batch or the
 * other rows. */
enum { ATTEND_TAU = 5, ATTEND_GROUPS = 4 /* 16-row groups per pass over the blocks */ };

/* One group of 16 query rows: its output and softmax state. */
struct attend_rows {
    _Alignas(64) float o[16 * 64];   /* O between blocks, rows 256 bytes apart */
    _Alignas(64) float sum[16 * 16]; /* each row's sums, 16 lanes */
    float m[16], thr[16], c2[16], al[16];
    const uint32_t *q; /* the rows' query words, ldqb bytes apart */
    size_t ldqb;
};

/* attend_words_amx's scratch, on its stack (about 40 KB). Scores in a ring
 * of four (three in use at a time: chunks c to c + 2) and P in two, so that
 * the tiles fill one while the vector units read another. */
struct attend_buf {
    struct attend_rows g[ATTEND_GROUPS];
    _Alignas(64) float s[4][16 * 32];      /* chunks' scores, rows 128 bytes apart */
    _Alignas(64) uint32_t p[2][16 * 16];   /* P's words of a chunk */
    _Alignas(64) uint32_t q[16 * 32];      /* the last rows' queries, zero-padded to 16 */
    _Alignas(64) uint32_t kt[2 * 32 * 16]; /* the last chunk's two K panels, zero-padded */
    _Alignas(64) uint32_t vt[4 * 16 * 16]; /* its V^T words of the four panels, zero-padded */
};

/* 2^(x c1 + c2) for 16 scores in a register, 0 below OPS_SOFTMAX_ULO, in
 * fewer steps than softmax_exp16 on the port the tiles hold (vrndscaleps is
 * two uops there; measured 2.5% faster here): u's nearest integer n by the
 * 1.5 * 2^23 addition (|u| < 2^22), r = u - n (exact, in [-0.5, 0.5]), 2^r
 * by a degree-3 minimax polynomial (1.0e-4 relative), scaled by 2^n. */
INLINE TARGET_AMX __m512 attend_exp16(__m512 x, __m512 c1, __m512 c2) {
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 u = _mm512_fmadd_ps(x, c1, c2);
    __mmask16 k = _mm512_cmp_ps_mask(u, _mm512_set1_ps(OPS_SOFTMAX_ULO), _CMP_GE_OQ);
    __m512 n = _mm512_sub_ps(_mm512_add_ps(u, magic), magic), r = _mm512_sub_ps(u, n);
    __m512 p = _mm512_fmadd_ps(r, _mm512_set1_ps(0.0550086908f), _mm512_set1_ps(0.242210627f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.693282902f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(k, p, n);
}

/* Row r's reference moves to the chunk's maximum (mx: the lanes' maxima;
 * called on the row's first chunk, and when the maximum exceeds the
 * reference by more than ATTEND_TAU): its sum scaled now, its O later by
 * g->al[r]. Returns whether O needs that (not on the first chunk: O is 0). */
static TARGET_AMX __attribute__((noinline)) int attend_move(struct attend_rows *g, int r, __m512 mx,
                                                            float s) {
    float m_old = g->m[r], m_new = _mm512_reduce_max_ps(mx) * s;
    m_new = m_new > m_old ? m_new : m_old;
    float alpha = m_old == -INFINITY ? 0.0f : ops_exp_poly_fused(m_old - m_new);
    g->m[r] = m_new;
    g->thr[r] = (m_new + (float)ATTEND_TAU) / s;
    g->c2[r] = -(m_new * OPS_SOFTMAX_LOG2E);
    __m512 *sum = (__m512 *)(g->sum + 16 * r);
    *sum = _mm512_mul_ps(*sum, _mm512_set1_ps(alpha));
    if (m_old == -INFINITY) return 0; /* O is still 0 before the first chunk */
    g->al[r] = alpha;
    return 1;
}

/* A chunk's softmax: scores x (lanes past `left` keys are not keys) into
 * P's words p; returns whether some row's O must be rescaled. */
INLINE TARGET_AMX int attend_softmax(struct attend_rows *g, const float *x, uint32_t *p, int left,
                                     float s, int r_lo, int r_hi) {
    __mmask16 k0 = lanes16(left), k1 = lanes16(left - 16);
    __m512 c1 = _mm512_set1_ps(s * OPS_SOFTMAX_LOG2E), ninf = _mm512_set1_ps(-INFINITY);
    int resc = 0;
    for (int r = r_lo; r < r_hi; r++) {
        __m512 x0 = _mm512_mask_loadu_ps(ninf, k0, x + 32 * r);
        __m512 x1 = _mm512_mask_loadu_ps(ninf, k1, x + 32 * r + 16);
        __m512 mx = _mm512_max_ps(x0, x1);
        if (_mm512_cmp_ps_mask(mx, _mm512_set1_ps(g->thr[r]), _CMP_GT_OQ))
            resc |= attend_move(g, r, mx, s);
        __m512 c2 = _mm512_set1_ps(g->c2[r]);
        __m512 e0 = attend_exp16(x0, c1, c2), e1 = attend_exp16(x1, c1, c2);
        _mm512_store_si512(p + 16 * r, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
        __m512 *sum = (__m512 *)(g->sum + 16 * r);
        *sum = _mm512_add_ps(*sum, _mm512_add_ps(e0, e1));
    }
    return resc;
}

/* Tiles 0-3 (O: 16 rows x 64) to and from g->o. */
static TARGET_AMX void attend_store_o(struct attend_rows *g) {
    _tile_stored(0, g->o, 256);
    _tile_stored(1, g->o + 16, 256);
    _tile_stored(2, g->o + 32, 256);
    _tile_stored(3, g->o + 48, 256);
}

static TARGET_AMX void attend_load_o(const struct attend_rows *g) {
    _tile_loadd(0, g->o, 256);
    _tile_loadd(1, g->o + 16, 256);
    _tile_loadd(2, g->o + 32, 256);
    _tile_loadd(3, g->o + 48, 256);
}

/* O's rows scaled by g->al, which goes back to 1 (rows that did not move
 * keep 1 throughout). */
static TARGET_AMX void attend_rescale(struct attend_rows *g) {
    attend_store_o(g);
    for (int r = 0; r < 16; r++) {
        __m512 a = _mm512_set1_ps(g->al[r]);
        g->al[r] = 1.0f;
        for (int v = 0; v < 4; v++)
            _mm512_store_ps(g->o + 64 * r + 16 * v,
                            _mm512_mul_ps(_mm512_load_ps(g->o + 64 * r + 16 * v), a));
    }
    attend_load_o(g);
}

/* The last block's partial chunk (keys [j, nk), j a multiple of 32) as
 * whole tiles: its K panels and V^T words copied, the rest zero. */
static void attend_tail(struct attend_buf *b, const struct wmat *K, const struct wmat *V, int j) {
    int nk = K->n_out, kw = (nk + 1) / 2;
    const uint32_t *kd = (const uint32_t *)K->data + (size_t)(j / 16) * 32 * 16;
    memset(b->kt, 0, sizeof(b->kt));
    memcpy(b->kt, kd, sizeof(uint32_t) * 32 * 16 * (nk - j > 16 ? 2 : 1));
    memset(b->vt, 0, sizeof(b->vt));
    for (int p = 0; p < 4; p++)
        memcpy(b->vt + 256 * p, (const uint32_t *)V->data + ((size_t)p * kw + j / 2) * 16,
               sizeof(uint32_t) * 16 * (size_t)(kw - j / 2));
}

/* Chunk j (32 keys from j) of block (K, V): its K panels' words, V^T's
 * words (vs words between panels) and how many of its keys there are. */
struct attend_chunk {
    const uint32_t *k, *v;
    size_t vs;
    int left;
};

INLINE struct attend_chunk attend_chunk_at(const struct wmat *K, const struct attend_buf *b,
                                           int j) {
    int nk = K->n_out;
    if (nk - j < 32) return (struct attend_chunk){b->kt, b->vt, 256, nk - j};
    return (struct attend_chunk){(const uint32_t *)K->data + (size_t)(j / 16) * 32 * 16,
                                 (const uint32_t *)K[1].data + (size_t)(j / 2) * 16,
                                 (size_t)(nk + 1) / 2 * 16, 32};
}

/* Tiles 4-5 = group g's scores against chunk k's 32 keys (attend_store_s
 * then stores them). */
INLINE TARGET_AMX void attend_scores(const struct attend_rows *g, const uint32_t *k) {
    _tile_zero(4);
    _tile_zero(5);
    _tile_loadd(6, g->q, g->ldqb);
    _tile_loadd(7, k, 64);
    _tile_dpbf16ps(4, 6, 7);
    _tile_loadd(7, k + 512, 64); /* the next panel */
    _tile_dpbf16ps(5, 6, 7);
    _tile_loadd(6, g->q + 16, g->ldqb);
    _tile_loadd(7, k + 256, 64); /* words 16-31 */
    _tile_dpbf16ps(4, 6, 7);
    _tile_loadd(7, k + 768, 64);
    _tile_dpbf16ps(5, 6, 7);
}

/* Tiles 4-5 to x (rows 128 bytes apart). */
INLINE TARGET_AMX void attend_store_s(float *x) {
    _tile_stored(4, x, 128);
    _tile_stored(5, x + 16, 128);
}

/* Tiles v0, v0 + 1 += P's words p (16 rows of 16 words, loaded into tile 6
 * when v0 is 0; kept there for v0 2) times chunk ch's V^T words of panels
 * v0, v0 + 1. */
INLINE TARGET_AMX void attend_pv(const uint32_t *p, const struct attend_chunk *ch, int v0) {
    if (v0 == 0) {
        _tile_loadd(6, p, 64);
        _tile_loadd(7, ch->v, 64);
        _tile_dpbf16ps(0, 6, 7);
        _tile_loadd(7, ch->v + ch->vs, 64);
        _tile_dpbf16ps(1, 6, 7);
    } else {
        _tile_loadd(7, ch->v + 2 * ch->vs, 64);
        _tile_dpbf16ps(2, 6, 7);
        _tile_loadd(7, ch->v + 3 * ch->vs, 64);
        _tile_dpbf16ps(3, 6, 7);
    }
}

/* Group g over block K's keys (O in tiles 0-3 throughout). The
 * tile work runs in between the quarters of each chunk's softmax: chunk
 * c + 2's scores after the first (stored after the last, so that no tile
 * store waits on the tiles early: it would hold up retirement), chunk
 * c - 1's P V (before any rescale of O, which then includes it) after the
 * second and third. The vector units and the tiles each have work while
 * the other waits, and no value goes from one to the other in less than
 * an iteration. */
static TARGET_AMX void attend_keys(struct attend_buf *b, struct attend_rows *g,
                                   const struct wmat *K, float s) {
    int nc = (K->n_out + 31) / 32;
    struct attend_chunk ch[4]; /* chunk c's at ch[c & 3] */
    for (int c = 0; c < 2 && c < nc; c++) {
        ch[c] = attend_chunk_at(K, b, 32 * c);
        attend_scores(g, ch[c].k);
        attend_store_s(b->s[c]);
    }
    for (int c = 0; c < nc; c++) {
        const float *x = b->s[c & 3];
        uint32_t *p = b->p[c & 1];
        const struct attend_chunk *pc = &ch[(c - 1) & 3];
        int left = ch[c & 3].left;
        int resc = attend_softmax(g, x, p, left, s, 0, 4);
        if (c + 2 < nc) {
            ch[(c + 2) & 3] = attend_chunk_at(K, b, 32 * (c + 2));
            attend_scores(g, ch[(c + 2) & 3].k);
        }
        resc |= attend_softmax(g, x, p, left, s, 4, 8);
        if (c) attend_pv(b->p[(c - 1) & 1], pc, 0);
        resc |= attend_softmax(g, x, p, left, s, 8, 12);
        if (c) attend_pv(b->p[(c - 1) & 1], pc, 2);
        resc |= attend_softmax(g, x, p, left, s, 12, 16);
        if (c + 2 < nc) attend_store_s(b->s[(c + 2) & 3]);
        if (resc) attend_rescale(g);
    }
    attend_pv(b->p[(nc - 1) & 1], &ch[(nc - 1) & 3], 0);
    attend_pv(b->p[(nc - 1) & 1], &ch[(nc - 1) & 3], 2);
}

static TARGET_AMX int attend_words_amx(const struct wmat *kv, int n_blocks,
                                       const struct wmat_words *q, int nq, float s, float *o,
                                       int ldo) {
    const struct wmat *last = &kv[2 * (n_blocks - 1)];
    if (q->ld < 32 || !(s > 0)) return -1; /* (wmat_attend_words checked d for block 0) */
    for (int i = 0; i < n_blocks; i++) {
        const struct wmat *K = &kv[2 * i], *V = K + 1;
        if (K->kind != WMAT_BF16 || V->kind != WMAT_BF16 || K->n_in != 64 || V->n_out != 64 ||
            V->n_in != K->n_out || (i < n_blocks - 1 && K->n_out % 32))
            return -1;
    }
    struct attend_buf b;
    if (last->n_out % 32) attend_tail(&b, last, last + 1, last->n_out & ~31);
    amx_begin();
    for (int i0 = 0; i0 < nq; i0 += 16 * ATTEND_GROUPS) {
        int ng = imin(ATTEND_GROUPS, (nq - i0 + 15) / 16);
        for (int gi = 0; gi < ng; gi++) {
            struct attend_rows *g = &b.g[gi];
            int r0 = i0 + 16 * gi, rows = imin(16, nq - r0);
            g->q = q->w + (size_t)r0 * q->ld;
            g->ldqb = (size_t)q->ld * 4;
            if (rows < 16) { /* a tile reads 16 rows */
                memset(b.q, 0, sizeof(b.q));
                for (int r = 0; r < rows; r++)
                    memcpy(b.q + 32 * r, g->q + (size_t)r * q->ld, 32 * sizeof(uint32_t));
                g->q = b.q, g->ldqb = 128;
            }
            for (int r = 0; r < 16; r++)
                g->m[r] = -INFINITY, g->thr[r] = -INFINITY, g->c2[r] = 0, g->al[r] = 1.0f;
            memset(g->sum, 0, sizeof(g->sum));
            memset(g->o, 0, sizeof(g->o));
        }
        /* blocks outer: a block's K and V^T words (256 KB at 1024 keys)
         * serve every group from L2. Passes of 64-256 keys, whose words
         * would stay in L1 for the groups after the first, measured 5-15%
         * slower: each pass starts and drains the pipeline below. */
        for (int bi = 0; bi < n_blocks; bi++)
            for (int gi = 0; gi < ng; gi++) {
                attend_load_o(&b.g[gi]);
                attend_keys(&b, &b.g[gi], &kv[2 * bi], s);
                attend_store_o(&b.g[gi]);
            }
        for (int gi = 0; gi < ng; gi++) {
            const struct attend_rows *g = &b.g[gi];
            int r0 = i0 + 16 * gi, rows = imin(16, nq - r0);
            for (int r = 0; r < rows; r++) {
                __m512 inv = _mm512_set1_ps(1.0f / sum16_tree(_mm512_load_ps(g->sum + 16 * r)));
                for (int v = 0; v < 4; v++)
                    _mm512_storeu_ps(o + (size_t)(r0 + r) * ldo + 16 * v,
                                     _mm512_mul_ps(_mm512_load_ps(g->o + 64 * r + 16 * v), inv));
            }
        }
    }
    amx_end();
    return 0;
}

/* The bf16 layout as it is; the bits are this kernel's own (see above). */
const struct gemm_kernel gemm_x86_amx_bf16 = {
    .name = "amx-bf16",
    .kind = WMAT_BF16,
    .needs = CPU_X86_AVX512 | CPU_X86_AVX512_BF16 | CPU_X86_AMX,
    .prepare = gemm_prep_bf16,
    .gemm = gemm_amx,
    .scratch_bytes = scratch_amx,
    .gemm_lora = gemm_amx_lora,
    .gemm_words = gemm_words_amx,
    .softmax_words = softmax_words_bf16,
    .attend_words = attend_words_amx,
    .attend_d = 64,
};

/* The VNNI kernel's layout and bits. */
const struct gemm_kernel gemm_x86_amx_int8 = {
    .name = "amx-int8",
    .kind = WMAT_INT8,
    .needs = CPU_X86_AVX512 | CPU_X86_AVX512_VNNI | CPU_X86_AMX,
    .prepare = gemm_prep_int8,
    .gemm = gemm_amx,
    .scratch_bytes = scratch_amx,
    .gemm_lora = gemm_amx_lora,
    .gemm_words = gemm_words_amx,
};
