/* test_ops.c -- each kernel against a straight-loop reference in double, on
 * random inputs with odd sizes, by ggml's NMSE (sum (a-b)^2 / sum a^2). */
#include "tests/test.h"

#include "engine/attn_kernels.h"
#include "engine/cpu.h"
#include "engine/engine_impl.h"

#include <math.h>

#include <stdlib.h>
#include <string.h>

#define NMSE_TOL 1e-7

static unsigned rng_state = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1103515245u + 12345u;
    return (float)((rng_state >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

static float *rand_vec(size_t n, float scale) {
    float *v = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        v[i] = frand() * scale;
    return v;
}

static double nmse(const float *ref, const float *got, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)ref[i] - got[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? num / den : num;
}

static void test_gemm(int m, int n, int k, int with_bias) {
    float *x = rand_vec((size_t)m * k, 1), *w = rand_vec((size_t)n * k, 1), *b = rand_vec(n, 1);
    float *y = rand_vec((size_t)m * n, 1), *yr = malloc(sizeof(float) * (size_t)m * n);
    ops_gemm_nt(m, n, k, x, k, w, k, with_bias ? b : NULL, y, n);
    ref_gemm_nt(m, n, k, x, k, w, k, with_bias ? b : NULL, yr, n);
    double e = nmse(yr, y, (size_t)m * n);
    CHECKM(e < NMSE_TOL, "gemm %dx%dx%d bias=%d nmse %.3g", m, n, k, with_bias, e);
    free(x), free(w), free(b), free(y), free(yr);
}

static void test_layernorm(int rows, int n) {
    float *x = rand_vec((size_t)rows * n, 3), *r = rand_vec((size_t)rows * n, 1);
    float *w = rand_vec(n, 1), *b = rand_vec(n, 1), *x2 = malloc(sizeof(float) * rows * n);
    for (int i = 0; i < rows * n; i++)
        x[i] += 5; /* an offset mean, as real activations */
    memcpy(x2, x, sizeof(float) * rows * n);
    ops_add_layernorm(x, r, rows, n, w, b, 1e-5f);
    ref_add_layernorm(x2, r, rows, n, w, b, 1e-5f);
    double e = nmse(x2, x, (size_t)rows * n);
    CHECKM(e < NMSE_TOL, "layernorm %dx%d nmse %.3g", rows, n, e);
    free(x), free(r), free(w), free(b), free(x2);
}

static void test_gelu(int64_t n) {
    float *x = rand_vec((size_t)n, 6), *x2 = malloc(sizeof(float) * n);
    memcpy(x2, x, sizeof(float) * n);
    ops_gelu(x, n);
    ref_gelu(x2, n);
    double e = nmse(x2, x, (size_t)n), mx = 0;
    for (int64_t i = 0; i < n; i++)
        mx = fmax(mx, fabs(x[i] - x2[i]));
    CHECKM(e < NMSE_TOL && mx < 1e-6, "gelu n=%ld nmse %.3g max %.3g", (long)n, e, mx);
    free(x), free(x2);
}

/* The exponential's cut-off: in one row with its maximum at 0 and scores
 * falling by 1.5 a key, a value more than 80.5 below the maximum (u under
 * -116 in units of ln 2) is 0, every one less than 79.5 below is a
 * positive bf16 within 2^-8 of e^x, and l is their sum. */
static void test_softmax_cutoff(void) {
    enum { N = 80 };
    float x[N], m = -INFINITY, l = 0, al;
    uint32_t w[N / 2];
    for (int j = 0; j < N; j++)
        x[j] = -1.5f * (float)j;
    ops_softmax_words(x, 1, N, N, 1.0f, &m, &l, &al, w, N / 2);
    int zero_ok = 1, kept_ok = 1;
    double sum = 0;
    for (int j = 0; j < N; j++) {
        uint32_t u = j % 2 ? w[j / 2] & 0xffff0000u : w[j / 2] << 16;
        float v;
        memcpy(&v, &u, 4);
        sum += v;
        if (x[j] < -80.5f) zero_ok &= v == 0.0f;
        if (x[j] > -79.5f) kept_ok &= v > 0 && fabs(v - exp((double)x[j])) <= 4e-3 * exp(x[j]);
    }
    CHECKM(zero_ok, "softmax: scores more than 80.5 below the maximum give 0");
    CHECKM(kept_ok, "softmax: scores within 79.5 of the maximum give e^x to bf16");
    CHECK(m == 0.0f && fabs(l - sum) <= 1e-6 * sum);
}

/* The online softmax over key blocks of the given sizes (raw scores x,
 * scaled by s inside), P written as bf16 words: each block's values times
 * the rescales of the blocks after it, over the final sum, is the softmax of
 * the whole scaled row (float64 reference) to bf16's rounding; every value
 * is a bf16 (the words' halves), an odd block's last high half is 0, l is
 * the sum of the values as written, m ends at the row's maximum and x is
 * left as it was. */
static void test_softmax_blocks(int rows, const int *blk, int n_blk, float s) {
    int n = 0;
    for (int b = 0; b < n_blk; b++)
        n += blk[b];
    int ld = n + 5, ldp = n / 2 + n_blk + 3;
    float *x = rand_vec((size_t)rows * ld, 21), *ref = malloc(sizeof(float) * rows * ld);
    float *x0 = malloc(sizeof(float) * rows * ld), *p = malloc(sizeof(float) * rows * n);
    uint32_t *pw = malloc(sizeof(uint32_t) * (size_t)rows * ldp);
    float *al = malloc(sizeof(float) * (size_t)rows * n_blk), m[8], l[8], want_m[8];
    memcpy(x0, x, sizeof(float) * rows * ld);
    for (int i = 0; i < rows; i++) {
        want_m[i] = -INFINITY;
        for (int j = 0; j < n; j++)
            want_m[i] = fmaxf(want_m[i], x[(size_t)i * ld + j] * s);
    }
    for (size_t i = 0; i < (size_t)rows * ld; i++)
        ref[i] = x[i] * s;
    ref_softmax_rows(ref, rows, n, ld);
    for (int i = 0; i < rows; i++)
        m[i] = -INFINITY, l[i] = 0;
    int odd_tails_zero = 1;
    for (int b = 0, j0 = 0; b < n_blk; j0 += blk[b++]) {
        for (size_t i = 0; i < (size_t)rows * ldp; i++)
            pw[i] = 0xffffffffu; /* NaN halves: a word it should have written would show */
        float l_before[8];
        memcpy(l_before, l, sizeof(l));
        ops_softmax_words(x + j0, rows, blk[b], ld, s, m, l, al + (size_t)b * rows, pw, ldp);
        for (int i = 0; i < rows; i++) {
            double blk_sum = 0;
            for (int j = 0; j < blk[b]; j++) {
                uint32_t wd = pw[(size_t)i * ldp + j / 2], u = j % 2 ? wd & 0xffff0000u : wd << 16;
                memcpy(&p[(size_t)i * n + j0 + j], &u, 4);
                blk_sum += p[(size_t)i * n + j0 + j];
            }
            if (blk[b] % 2) odd_tails_zero &= pw[(size_t)i * ldp + blk[b] / 2] >> 16 == 0;
            /* l = l alpha + this block's sum of the values as written */
            double want_l = (double)l_before[i] * al[(size_t)b * rows + i] + blk_sum;
            CHECK(fabs(l[i] - want_l) <= 1e-6 * want_l);
        }
    }
    CHECKM(odd_tails_zero, "an odd block's last word has a zero high half");
    double worst = 0;
    for (int i = 0; i < rows; i++) {
        for (int b = 0, j0 = 0; b < n_blk; j0 += blk[b++]) {
            double later = 1; /* rescales applied after block b */
            for (int b2 = b + 1; b2 < n_blk; b2++)
                later *= al[(size_t)b2 * rows + i];
            for (int j = j0; j < j0 + blk[b]; j++) {
                double q = p[(size_t)i * n + j] * later / l[i], r = ref[(size_t)i * ld + j];
                worst = fmax(worst, fabs(q - r) / fmax(r, 1e-30));
            }
        }
        CHECK(al[i] == 0.0f);     /* the first block has nothing to rescale */
        CHECK(m[i] == want_m[i]); /* the running maximum ends at the row's */
    }
    /* bf16 (8 significant bits) rounds each value to within 2^-8 (3.9e-3)
     * relative, to nearest (a truncation would reach 2^-7); the sum's own
     * rounding averages out */
    CHECKM(worst < 4.5e-3, "online softmax over %d blocks, %d keys: worst relative error %.3g",
           n_blk, n, worst);
    CHECKM(memcmp(x, x0, sizeof(float) * rows * ld) == 0, "the scores are only read");
    free(x), free(x0), free(ref), free(al), free(p), free(pw);
}

/* RoPE: rotating by position p then by q equals rotating by p+q only in
 * exact math, so compare against the definition with double angles instead. */
static void test_rope(int d, int pos) {
    float inv[256], cs[256], sn[256], *v = rand_vec(d, 1), *v0 = malloc(sizeof(float) * d);
    memcpy(v0, v, sizeof(float) * d);
    ops_rope_inv_freq(20000.0f, d, inv);
    for (int i = 0; i < d / 2; i++) {
        float th = (float)pos * inv[i];
        cs[i] = cosf(th), sn[i] = sinf(th);
        CHECK_NEAR(inv[i], 1.0 / pow(20000.0, 2.0 * i / d),
                   1e-6 * (1.0 / pow(20000.0, 2.0 * i / d)) + 1e-12);
    }
    ops_rope_head(v, d, cs, sn);
    double mx = 0;
    for (int i = 0; i < d / 2; i++) {
        double th = (double)(float)((float)pos * inv[i]);
        double a = v0[i] * cos(th) - v0[i + d / 2] * sin(th);
        double b = v0[i + d / 2] * cos(th) + v0[i] * sin(th);
        mx = fmax(mx, fmax(fabs(a - v[i]), fabs(b - v[i + d / 2])));
    }
    CHECKM(mx < 1e-5, "rope d=%d pos=%d max %.3g", d, pos, mx);
    free(v), free(v0);
}

/* LoRA down and up against straight loops, odd sizes and a column slice. */
static void test_lora(int n, int n_in, int n_out, int r, int lo, int hi) {
    float *x = rand_vec((size_t)n * n_in, 1), *a = rand_vec((size_t)r * n_in, 1);
    float *bt = rand_vec((size_t)r * n_out, 1), *y = rand_vec((size_t)n * n_out, 1);
    float *y0 = malloc(sizeof(float) * (size_t)n * n_out),
          *t = malloc(sizeof(float) * (size_t)n * r);
    memcpy(y0, y, sizeof(float) * (size_t)n * n_out);
    ops_lora_down(x, n_in, n, n_in, a, r, t);
    double mx = 0;
    for (int i = 0; i < n; i++) {
        ops_lora_up(y + (size_t)i * n_out, lo, hi, t + (size_t)i * r, r, bt, n_out);
        for (int j = 0; j < n_out; j++) {
            double want = y0[(size_t)i * n_out + j];
            if (j >= lo && j < hi)
                for (int k = 0; k < r; k++) {
                    double tk = 0;
                    for (int l = 0; l < n_in; l++)
                        tk += (double)x[(size_t)i * n_in + l] * a[(size_t)k * n_in + l];
                    want += tk * bt[(size_t)k * n_out + j];
                }
            mx = fmax(mx, fabs(want - y[(size_t)i * n_out + j]) / (1 + fabs(want)));
        }
    }
    CHECKM(mx < 1e-5, "lora n=%d in=%d out=%d r=%d [%d,%d): max rel %.3g", n, n_in, n_out, r, lo,
           hi, mx);
    /* each row's T alone is the same bits as in the batch (rows go in pairs) */
    int same = 1;
    for (int i = 0; i < n; i++) {
        float t1[16];
        ops_lora_down(x + (size_t)i * n_in, n_in, 1, n_in, a, r, t1);
        same &= !memcmp(t1, t + (size_t)i * r, sizeof(float) * (size_t)r);
    }
    CHECKM(same, "lora n=%d in=%d r=%d: a row's T depends on its batch", n, n_in, r);
    free(x), free(a), free(bt), free(y), free(y0), free(t);
}

struct team_arg {
    atomic_int hits[8];
};
static void team_fn(void *arg, int ith, int nth) {
    struct team_arg *a = arg;
    CHECK(ith >= 0 && ith < nth && nth <= 8);
    atomic_fetch_add(&a->hits[ith], 1);
}

static void test_team(void) {
    for (int nt = 1; nt <= 4; nt++) {
        struct eng_team *p = team_new(nt);
        struct team_arg a;
        for (int i = 0; i < 8; i++)
            atomic_init(&a.hits[i], 0);
        for (int r = 0; r < 200; r++)
            team_run(p, team_fn, &a);
        int ok = 1;
        for (int i = 0; i < nt; i++)
            ok &= a.hits[i] == 200;
        CHECKM(ok, "team of %d: every thread runs every call once", nt);
        team_free(p);
    }
}

/* One head's attention in double: O[i] = softmax_j(scale Q[i].K[j] -
 * slope |q0 + i - j|) V[j]; worst |O - ref| / max |ref| into *worst. */
static void attn_ref_check(const struct attn_tile *t, double *worst) {
    double *p = malloc(sizeof(double) * (size_t)t->n), big = 1e-30, err = 0;
    for (int i = 0; i < t->nq; i++)
        for (int c = 0; c < t->d; c++) {
            double mx = -INFINITY, sum = 0, o = 0;
            for (int j = 0; j < t->n; j++) {
                double dot = 0;
                for (int k = 0; k < t->d; k++)
                    dot += (double)t->q[i * t->ldq + k] * t->k[j * t->ldk + k];
                p[j] = t->scale * dot - t->slope * fabs((double)(t->q0 + i - j));
                mx = fmax(mx, p[j]);
            }
            for (int j = 0; j < t->n; j++)
                sum += p[j] = exp(p[j] - mx);
            for (int j = 0; j < t->n; j++)
                o += p[j] / sum * t->v[j * t->ldv + c];
            big = fmax(big, fabs(o));
            err = fmax(err, fabs(o - t->o[i * t->ldo + c]));
        }
    *worst = fmax(*worst, err / big);
    free(p);
}

/* The attention kernels of every level this machine runs (generic, AVX2,
 * AVX-512 on x86; NEON on aarch64): each against the float64 reference, and
 * the SIMD ones bit for bit against each other (the same fused chains per
 * query lane, whatever the vector width). Shapes: one key, key counts across
 * the key blocks (96), query tiles with tails, offsets, ALiBi on and off. */
static void test_attn_levels(void) {
    static const int sh[][4] = {/* nq, n, d, q0 */
                                {1, 1, 16, 0},      {5, 37, 64, 3},   {64, 200, 64, 0},
                                {20, 300, 48, 250}, {33, 97, 32, 50}, {64, 96, 64, 17}};
    uint32_t masks[16];
    const char *names[16];
    int nl = cpu_levels(test_cpu_features(), masks, names, 16), n_cmp = 0;
    double worst = 0;
    char list[256] = "";
    for (size_t s = 0; s < sizeof(sh) / sizeof(sh[0]); s++)
        for (int alibi = 0; alibi < 2; alibi++) {
            int nq = sh[s][0], n = sh[s][1], d = sh[s][2], q0 = sh[s][3];
            float *q = rand_vec((size_t)nq * d, 2), *k = rand_vec((size_t)n * d, 2),
                  *v = rand_vec((size_t)n * d, 1), *first_simd = NULL;
            float *scratch = aligned_alloc(64, sizeof(float) * attn_scratch_floats(d));
            const struct attn_kernel *seen[16], *first_kern = NULL;
            int n_seen = 0;
            for (int l = 0; l < nl; l++) {
                const struct attn_kernel *ak = attn_kernel_for(masks[l], d);
                int dup = 0;
                for (int i = 0; i < n_seen; i++)
                    dup |= seen[i] == ak;
                if (dup) continue;
                seen[n_seen++] = ak;
                if (s == 0 && alibi == 0)
                    snprintf(list + strlen(list), sizeof(list) - strlen(list), " %s (%s)", ak->name,
                             names[l]);
                float *o = malloc(sizeof(float) * (size_t)nq * d);
                struct attn_tile t = {.nq = nq,
                                      .n = n,
                                      .d = d,
                                      .q0 = q0,
                                      .q = q,
                                      .k = k,
                                      .v = v,
                                      .ldq = (size_t)d,
                                      .ldk = (size_t)d,
                                      .ldv = (size_t)d,
                                      .o = o,
                                      .ldo = (size_t)d,
                                      .scale = 1.0f / sqrtf((float)d),
                                      .slope = alibi ? 0.0625f : 0.0f,
                                      .scratch = scratch};
                ak->tile(&t);
                attn_ref_check(&t, &worst);
                if (strcmp(ak->name, "generic-attn") == 0) {
                    free(o);
                } else if (!first_simd) {
                    first_simd = o;
                    first_kern = ak;
                } else {
                    CHECKM(!memcmp(first_simd, o, sizeof(float) * (size_t)nq * d),
                           "attention nq=%d n=%d d=%d alibi=%d: %s differs from %s", nq, n, d,
                           alibi, ak->name, first_kern->name);
                    n_cmp++;
                    free(o);
                }
            }
            free(first_simd), free(q), free(k), free(v), free(scratch);
        }
    CHECKM(worst <= 1e-5, "attention: worst error %.3g of the largest output", worst);
    fprintf(stderr, "  ops: attention kernels here:%s; worst %.2g vs float64; %d bitwise\n", list,
            worst, n_cmp);
}

void test_ops(void) {
    const int sizes[][3] = {{1, 1, 1},    {1, 17, 33}, {7, 5, 3},    {13, 31, 64},
                            {64, 96, 80}, {100, 1, 7}, {3, 250, 129}};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        for (int b = 0; b < 2; b++)
            test_gemm(sizes[i][0], sizes[i][1], sizes[i][2], b);
    test_layernorm(1, 1);
    test_layernorm(3, 7);
    test_layernorm(5, 80);
    test_layernorm(2, 1024);
    test_gelu(1);
    test_gelu(1001);
    test_gelu(100003);
    test_softmax_blocks(1, (const int[]){1}, 1, 0.125f);
    test_softmax_blocks(3, (const int[]){512, 512, 100}, 3, 0.125f);
    test_softmax_blocks(4, (const int[]){7, 300, 1, 512, 33}, 5, 1.0f);
    test_softmax_cutoff();
    test_rope(2, 0);
    test_rope(16, 7);
    test_rope(64, 8191);
    test_lora(1, 1, 1, 1, 0, 1);
    test_lora(3, 17, 33, 4, 0, 33);
    test_lora(5, 1024, 100, 4, 16, 80);
    test_lora(2, 80, 240, 3, 5, 239);
    test_lora(4, 100, 50, 8, 0, 50);
    test_team();
    test_attn_levels();
}
