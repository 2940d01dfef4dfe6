/* attn_exact.c -- the portable exact attention kernel (any CPU, any head
 * width): attn_kernels.h's fused tile in ISO C, one multiply then one add
 * per term (no contraction into fused multiply-adds), every sum in key or
 * k order, so its results depend only on the inputs.
 *
 * Per key block: kt[k][j] = K[j0 + j][k]; s[j] = sum over k in order of
 * qs[k] kt[k][j] (qs: the query row times scale), minus the ALiBi bias;
 * the row's running max m and sum l take the block (l = l a + sum of the
 * block's weights in key order, a = e^(m_old - m_new)); o = o a + sum over
 * the block's keys in order of p_j V[j]. At the end O = o / l.
 */
#include "engine/attn_kernels.h"
#include "engine/cpu.h"
#include "engine/engine_impl.h"

static void tile(const struct attn_tile *t) {
    int nq = t->nq, n = t->n, d = t->d;
    size_t dp = ((size_t)d + 15) & ~(size_t)15;
    struct attn_scratch w = attn_scratch_split(t->scratch, d);
    for (int r = 0; r < nq; r++)
        for (int k = 0; k < d; k++)
            w.q[r * dp + k] = t->scale * t->q[r * t->ldq + k];
    for (int j0 = 0; j0 < n; j0 += ATTN_KB) {
        int kb = n - j0 < ATTN_KB ? n - j0 : ATTN_KB, first = j0 == 0;
        for (int j = 0; j < kb; j++)
            for (int k = 0; k < d; k++)
                w.k[(size_t)k * ATTN_KB + j] = t->k[(size_t)(j0 + j) * t->ldk + k];
        for (int r = 0; r < nq; r++) {
            float *s = w.s + (size_t)r * ATTN_KB, *o = w.o + r * dp;
            const float *qs = w.q + r * dp;
            for (int j = 0; j < kb; j++)
                s[j] = qs[0] * w.k[j];
            for (int k = 1; k < d; k++)
                for (int j = 0; j < kb; j++)
                    s[j] = s[j] + qs[k] * w.k[(size_t)k * ATTN_KB + j];
            int qi = t->q0 + r;
            if (t->slope != 0.0f)
                for (int j = 0; j < kb; j++) {
                    int dist = qi > j0 + j ? qi - j0 - j : j0 + j - qi;
                    s[j] = s[j] - t->slope * (float)dist;
                }
            float mx = s[0];
            for (int j = 1; j < kb; j++)
                mx = s[j] > mx ? s[j] : mx;
            float m = first || mx > w.m[r] ? mx : w.m[r];
            float a = first ? 0.0f : ops_exp_poly(w.m[r] - m), sum = 0;
            for (int j = 0; j < kb; j++) {
                s[j] = ops_exp_poly(s[j] - m);
                sum = sum + s[j];
            }
            w.m[r] = m;
            w.l[r] = first ? sum : w.l[r] * a + sum;
            for (int c = 0; c < d; c++)
                o[c] = first ? 0.0f : o[c] * a;
            for (int j = 0; j < kb; j++) {
                const float *v = t->v + (size_t)(j0 + j) * t->ldv;
                float p = s[j];
                for (int c = 0; c < d; c++)
                    o[c] = o[c] + p * v[c];
            }
        }
    }
    for (int r = 0; r < nq; r++) {
        float inv = 1.0f / w.l[r];
        for (int c = 0; c < d; c++)
            t->o[r * t->ldo + c] = w.o[r * dp + c] * inv;
    }
}

const struct attn_kernel attn_generic_exact = {
    .name = "generic-attn",
    .needs = CPU_BASE,
    .d_mult = 1,
    .tile = tile,
};
