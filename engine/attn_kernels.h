/* attn_kernels.h -- the exact attention kernels (engine-internal; included
 * by engine/encoder.c, engine/attn.c and the kernel files under
 * engine/arch/).
 *
 * One call computes one query tile of one head, fused and tiled: the keys
 * pass in blocks of ATTN_KB (the block's scores in the caller's scratch,
 * which stays in L1/L2), each block's scores get the ALiBi bias, an online softmax
 * (running max and sum per query row) turns them into weights, and the
 * weighted values are added into the tile's output, rescaled when the max
 * grows. No [rows][n] score matrix exists.
 *
 * Order: every reduction (the dot products over d in order, each block's
 * sums over its keys in order, the blocks in order from key 0) depends only
 * on n, the query's position and the kernel: never on the batch, the tile's
 * thread or the other tiles. So a kernel gives the same bits for a
 * sequence whatever shares its batch.
 *
 * attn_kernel_for() picks, once per context, the first row of attn.c's
 * table whose CPU bits the mask has and which takes the head width. Rows are
 * immutable: thread-safe. A call touches only its output rows and scratch.
 */
#ifndef EMB_ATTN_KERNELS_H
#define EMB_ATTN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

enum {
    ATTN_TQ = 64, /* most query rows of one call */
    ATTN_KB = 96, /* keys per block */
};

/* One query tile of one head. Row i of Q, K, V, O is at q + i * ld, ...
 * (K and V compact, ld = d, for speed: the tiles of a head all read them);
 * Q has nq rows (positions q0 ..), K and V have n (positions 0 ..).
 * O[i] = sum_j softmax_j(scale * Q[i] . K[j] - slope * |q0 + i - j|) V[j]
 * (slope 0: no bias). */
struct attn_tile {
    int nq, n, d, q0;
    const float *q, *k, *v;
    size_t ldq, ldk, ldv;
    float *o;
    size_t ldo;
    float scale, slope;
    float *scratch; /* attn_scratch_floats(d) floats, 64-byte aligned */
};

struct attn_kernel {
    const char *name; /* for logs: "avx2-attn", ... */
    uint32_t needs;   /* CPU_* bits */
    int d_mult;       /* head widths it takes: multiples of d_mult */
    void (*tile)(const struct attn_tile *t);
};

/* The fastest kernel for this mask and head width (the generic one takes
 * every width). */
const struct attn_kernel *attn_kernel_for(uint32_t cpu_mask, int d);

/* Floats of scratch one call needs (any kernel), a multiple of 16. */
size_t attn_scratch_floats(int d);

/* The scratch layout every kernel uses, offsets in floats (each a multiple
 * of 16, so 64-byte aligned when the scratch is):
 *   q [ATTN_TQ + 8][dp]   the query tile, scaled, packed as the kernel likes
 *                         (dp: d rounded up to 16)
 *   k [ATTN_KB][dp]       a key block, packed (generic kernel)
 *   v [ATTN_KB][dp]       (spare)
 *   s  [ATTN_TQ * ATTN_KB] the block's scores, then its weights
 *   o  [ATTN_TQ][dp]      the running output
 *   m, l, a [ATTN_TQ]     running max, running sum, this block's rescale */
struct attn_scratch {
    float *q, *k, *v, *s, *o, *m, *l, *a;
};
static inline struct attn_scratch attn_scratch_split(float *base, int d) {
    size_t dp = ((size_t)d + 15) & ~(size_t)15;
    struct attn_scratch s;
    s.q = base;
    s.k = s.q + (ATTN_TQ + 8) * dp;
    s.v = s.k + ATTN_KB * dp;
    s.s = s.v + ATTN_KB * dp;
    s.o = s.s + ATTN_TQ * ATTN_KB;
    s.m = s.o + ATTN_TQ * dp;
    s.l = s.m + ATTN_TQ;
    s.a = s.l + ATTN_TQ;
    return s;
}

/* The SIMD kernels' microkernels (for mr <= their MR rows): score: s[j][r]
 * for j < mr keys and the 16 query lanes at q (k-major, ATTN_TQ apart);
 * value: o[r][c] = o[r][c] a_r + sum over kb keys of p[j][r] V[j][c] for
 * r < mr queries and 16 columns; softmax: the block's online softmax for
 * `width` query lanes from s (see the kernels). */
typedef void (*attn_score_fn)(const float *k, size_t ldk, int d, const float *q, float *s);
typedef void (*attn_value_fn)(const float *p, const float *v, size_t ldv, int kb, float *o,
                              size_t ldo, const float *a, int first);
typedef void (*attn_softmax_fn)(float *s, int kb, int j0, int qpos0, float slope, float *m,
                                float *l, float *a, int first);

/* The SIMD kernels' shared tile: Q^T scaled into scratch, then per key
 * block of ATTN_KB the scores (score_mr[mr], mr <= mr_max keys at a time,
 * 16 queries per call), the online softmax (`width` lanes per call) and the
 * values (value_mr[mr], 16 columns per call); at the end O = o / l. Inlined
 * into each kernel (under its target attribute), so the calls are direct
 * where the compiler sees the tables. */
static inline __attribute__((always_inline)) void
attn_tile_drive(const struct attn_tile *t, const attn_score_fn *score_mr,
                const attn_value_fn *value_mr, int mr_max, attn_softmax_fn softmax, int width) {
    int nq = t->nq, n = t->n, d = t->d, nq16 = (nq + 15) & ~15;
    struct attn_scratch w = attn_scratch_split(t->scratch, d);
    /* Q^T, scaled; lanes past nq zero (their scores are computed, unused) */
    for (int k = 0; k < d; k++)
        for (int r = 0; r < nq16; r++)
            w.q[(size_t)k * ATTN_TQ + r] = r < nq ? t->scale * t->q[r * t->ldq + k] : 0.0f;
    for (int j0 = 0; j0 < n; j0 += ATTN_KB) {
        int kb = n - j0 < ATTN_KB ? n - j0 : ATTN_KB, first = j0 == 0;
        for (int j = 0; j < kb; j += mr_max) {
            int mr = kb - j < mr_max ? kb - j : mr_max;
            for (int r = 0; r < nq16; r += 16)
                score_mr[mr](t->k + (size_t)(j0 + j) * t->ldk, t->ldk, d, w.q + r,
                             w.s + (size_t)j * ATTN_TQ + r);
        }
        for (int r = 0; r < nq; r += width)
            softmax(w.s + r, kb, j0, t->q0 + r, t->slope, w.m + r, w.l + r, w.a + r, first);
        for (int c = 0; c < d; c += 16)
            for (int r = 0; r < nq; r += mr_max) {
                int mr = nq - r < mr_max ? nq - r : mr_max;
                value_mr[mr](w.s + r, t->v + (size_t)j0 * t->ldv + c, t->ldv, kb,
                             w.o + (size_t)r * d + c, (size_t)d, w.a + r, first);
            }
    }
    for (int r = 0; r < nq; r++) { /* one rounded multiply per value, as a vector one */
        float inv = 1.0f / w.l[r];
        for (int c = 0; c < d; c++)
            t->o[r * t->ldo + c] = w.o[(size_t)r * d + c] * inv;
    }
}

/* The kernels (engine/arch/...). */
extern const struct attn_kernel attn_generic_exact;
#if defined(__x86_64__)
extern const struct attn_kernel attn_x86_avx512_exact;
extern const struct attn_kernel attn_x86_avx2_exact;
#elif defined(__aarch64__)
extern const struct attn_kernel attn_arm_neon_exact;
#endif

#endif
