/* gemm.c -- prepared weight matrices (struct wmat): their layouts, the
 * kernel table and the dispatch. The contract is in gemm.h; the kernels live
 * in engine/arch/ (one file per instruction set), their interface in
 * gemm_kernels.h.
 *
 * Weight layouts (see gemm_kernels.h). W is cut into panels of 16 output
 * columns; panel p holds columns [16p, 16p + 16) for the whole of k, as
 * words of G consecutive k values (G = 2 bf16, or 4 int8) in one uint32,
 * word-major (word kw of column 16p + l is panel[kw * 16 + l]), or as f32
 * (value k of column 16p + l is panel[k * 16 + l]). n_out is padded to a
 * multiple of 16 and n_in to a multiple of G, with zeros. Panels of 16 let
 * the caller slice columns at any multiple of 16 (other slice ends work too).
 */
#include "engine/gemm.h"
#include "engine/cpu.h"
#include "engine/engine_impl.h"
#include "engine/gemm_kernels.h"

#include <math.h>
#include <string.h>
#include <sys/mman.h>

/* ---- the kernel table: per kind, fastest first ---- */

static const struct gemm_kernel *const kernels[] = {
#if defined(__x86_64__)
    &gemm_x86_amx_bf16,     /* bf16 */
    &gemm_x86_avx512_bf16,  /* bf16 */
    &gemm_x86_amx_int8,     /* int8 */
    &gemm_x86_avx512_vnni,  /* int8 */
    &gemm_x86_avx2_int8,    /* int8 */
    &gemm_x86_avx512_exact, /* f32 */
    &gemm_x86_avx2_exact,   /* f32 */
#elif defined(__aarch64__)
    &gemm_arm_bf16,         /* bf16: BFMMLA (FEAT_BF16) */
    &gemm_arm_i8mm_int8,    /* int8: USMMLA (FEAT_I8MM) */
    &gemm_arm_dotprod_int8, /* int8: SDOT (FEAT_DotProd) */
    &gemm_arm_neon_int8,    /* int8: SMULL/SADALP (Armv8.0) */
    &gemm_arm_neon_exact,
#endif
    &gemm_generic_int8,  /* int8 */
    &gemm_generic_exact, /* f32 */
};

const struct gemm_kernel *gemm_kernel_for(enum wmat_kind kind, uint32_t cpu_mask) {
    cpu_mask |= CPU_BASE;
    for (size_t i = 0; i < sizeof(kernels) / sizeof(kernels[0]); i++)
        if (kernels[i]->kind == kind && (kernels[i]->needs & ~cpu_mask) == 0) return kernels[i];
    return NULL;
}

const char *gemm_kernel_name(const struct gemm_kernel *k) {
    return k ? k->name : "none";
}

/* ---- preparing weights ---- */

/* Round-to-nearest-even f32 -> bf16, as vcvtne2ps2bf16 (NaN stays NaN). */
static uint16_t bf16_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* Weight storage: 64-byte aligned; from 2 MiB up, 2 MiB aligned and advised
 * onto transparent huge pages, which makes the first touch (page faults)
 * ~5x cheaper on these VMs (startup) and spares the TLB while streaming W. */
static void *alloc64(size_t n) {
    size_t huge = (size_t)2 << 20;
    void *p = NULL;
    if (posix_memalign(&p, n >= huge ? huge : 64, n ? n : 64) != 0) return NULL;
    if (n >= huge) madvise(p, n & ~(huge - 1), MADV_HUGEPAGE); /* advice only: ignore failure */
    return p;
}

/* bf16: panels [n_pad / 16][kw][16] words of two bf16 (even k low). */
int gemm_prep_bf16(struct wmat *w, const float *src) {
    int kw = (w->n_in + 1) / 2, n_pad = (w->n_out + 15) & ~15;
    size_t n_words = (size_t)n_pad * kw;
    uint16_t *d = alloc64(n_words * 4);
    if (!d) return -1;
    for (int j = 0; j < n_pad; j++) {
        uint16_t *col = d + ((size_t)(j / 16) * kw * 16 + j % 16) * 2;
        for (int k = 0; k < 2 * kw; k++) {
            float v = j < w->n_out && k < w->n_in ? src[(size_t)j * w->n_in + k] : 0.0f;
            col[(size_t)(k / 2) * 32 + k % 2] = bf16_from_f32(v);
        }
    }
    w->data = d;
    w->nbytes = n_words * 4;
    w->layout = WMAT_LAYOUT_BF16;
    return 0;
}

size_t wmat_bf16_bytes(int n_out, int n_in) {
    size_t kw = (size_t)(n_in + 1) / 2, n_pad = (size_t)(n_out + 15) & ~(size_t)15;
    return (n_pad * kw * 4 + 63) & ~(size_t)63;
}

/* One word of two bf16, lo in the low half. */
static uint32_t bf16_word(float lo, float hi) {
    return (uint32_t)bf16_from_f32(lo) | (uint32_t)bf16_from_f32(hi) << 16;
}

/* Attention packs K and V^T of every (sequence, head) per layer: with the
 * short sequences of a batch that is as many values as the products touch,
 * so the rows are converted by the vectorised ops_bf16_pairs/ops_bf16_zip
 * (the same rounding as bf16_from_f32). */
void wmat_bf16_pack(struct wmat *w, const struct gemm_kernel *kern, const float *src, ptrdiff_t sj,
                    ptrdiff_t sk, int n_out, int n_in, void *buf) {
    int kw = (n_in + 1) / 2, n_pad = (n_out + 15) & ~15;
    uint32_t *d = buf;
    ENG_ASSERT(kern && kern->kind == WMAT_BF16);
    *w = (struct wmat){.kind = WMAT_BF16, .n_out = n_out, .n_in = n_in, .data = buf, .k = kern};
    /* same layout as prep_bf16: panels of 16 columns, words of 2 k values
     * (word kk of column j at d[((j / 16) * kw + kk) * 16 + j % 16]) */
    if (sk == 1) { /* rows of W contiguous (K): each row's words, then into the panel */
        uint32_t row_w[256];
        for (int j = 0; j < n_pad; j++) {
            uint32_t *col = d + (size_t)(j / 16) * kw * 16 + j % 16;
            const float *row = src + j * sj;
            for (int k0 = 0; k0 < kw; k0 += 256) {
                int nw = kw - k0 < 256 ? kw - k0 : 256, full = 0;
                if (j < n_out) {
                    full = n_in % 2 == 0 || k0 + nw < kw ? nw : nw - 1;
                    ops_bf16_pairs(row_w, row + 2 * k0, full);
                }
                for (int kk = full; kk < nw; kk++) /* the odd last k, or a padding row */
                    row_w[kk] = j < n_out ? bf16_word(row[2 * (k0 + kk)], 0.0f) : 0;
                for (int kk = 0; kk < nw; kk++)
                    col[(size_t)(k0 + kk) * 16] = row_w[kk];
            }
        }
        return;
    }
    /* columns of W contiguous (V^T: sj = 1): a word's 16 lanes side by side */
    for (int p = 0; p < n_pad / 16; p++)
        for (int kk = 0; kk < kw; kk++) {
            uint32_t *out = d + ((size_t)p * kw + kk) * 16;
            int j0 = p * 16, k = 2 * kk;
            if (j0 + 16 <= n_out && k + 1 < n_in && sj == 1) {
                ops_bf16_zip(out, src + j0 + k * sk, src + j0 + (k + 1) * sk, 16);
                continue;
            }
            for (int jj = 0; jj < 16; jj++) {
                int in_j = j0 + jj < n_out;
                float lo = in_j ? src[(j0 + jj) * sj + k * sk] : 0.0f;
                float hi = in_j && k + 1 < n_in ? src[(j0 + jj) * sj + (k + 1) * sk] : 0.0f;
                out[jj] = bf16_word(lo, hi);
            }
        }
}

/* The int8 layout: panels [n_pad / 16][kw][16] words of four s8 in d, then
 * colsum[n_pad] (int32); scale[n_pad]. Row j of W is src + j * ld, less
 * center[k] when center is not NULL, quantised symmetrically by ops.c's
 * vectorised row loops; rows past n_out and k past n_in are zeros. */
static void int8_layout(const float *src, ptrdiff_t ld, const float *center, int n_out, int n_in,
                        int8_t *d, float *scale) {
    int kw = (n_in + 3) / 4, n_pad = (n_out + 15) & ~15;
    int32_t *colsum = (int32_t *)(d + (size_t)n_pad * kw * 4);
    int8_t q[1024];
    for (int j = 0; j < n_pad; j++) {
        const float *row = j < n_out ? src + j * ld : src;
        uint32_t *col = (uint32_t *)d + (size_t)(j / 16) * kw * 16 + j % 16;
        float amax = j < n_out ? ops_absmax(row, center, n_in) : 0.0f;
        float inv = amax > 0 ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int k0 = 0; k0 < 4 * kw; k0 += 1024) { /* q: 256 words at a time */
            int nk = 4 * kw - k0 < 1024 ? 4 * kw - k0 : 1024, nv = n_in - k0 < nk ? n_in - k0 : nk;
            nv = j < n_out ? nv : 0;
            sum += ops_quant_s8(q, row + k0, center ? center + k0 : NULL, inv, nv);
            memset(q + nv, 0, (size_t)(nk - nv));
            for (int kk = 0; kk < nk / 4; kk++)
                memcpy(&col[(size_t)(k0 / 4 + kk) * 16], &q[4 * kk], 4);
        }
        colsum[j] = sum;
        scale[j] = amax / 127.0f;
    }
}

int gemm_prep_int8(struct wmat *w, const float *src) {
    int kw = (w->n_in + 3) / 4, n_pad = (w->n_out + 15) & ~15;
    size_t n_words = (size_t)n_pad * kw;
    int8_t *d = alloc64(n_words * 4 + (size_t)n_pad * 4);
    float *scale = alloc64((size_t)n_pad * sizeof(float));
    if (!d || !scale) {
        free(d);
        free(scale);
        return -1;
    }
    int8_layout(src, w->n_in, NULL, w->n_out, w->n_in, d, scale);
    w->data = d;
    w->scale = scale;
    w->nbytes = n_words * 4 + (size_t)n_pad * 8;
    w->layout = WMAT_LAYOUT_INT8;
    return 0;
}

size_t wmat_int8_bytes(int n_out, int n_in) {
    size_t kw = (size_t)(n_in + 3) / 4, n_pad = (size_t)(n_out + 15) & ~(size_t)15;
    return (n_pad * kw * 4 + n_pad * 8 + 63) & ~(size_t)63;
}

void wmat_int8_pack(struct wmat *w, const struct gemm_kernel *kern, const float *src, ptrdiff_t ld,
                    const float *center, int n_out, int n_in, void *buf) {
    size_t kw = (size_t)(n_in + 3) / 4, n_pad = (size_t)(n_out + 15) & ~(size_t)15;
    float *scale = (float *)((char *)buf + n_pad * kw * 4 + n_pad * 4);
    ENG_ASSERT(kern && kern->kind == WMAT_INT8);
    *w = (struct wmat){.kind = WMAT_INT8,
                       .n_out = n_out,
                       .n_in = n_in,
                       .data = buf,
                       .scale = scale,
                       .layout = WMAT_LAYOUT_INT8,
                       .k = kern};
    int8_layout(src, ld, center, n_out, n_in, buf, scale);
}

/* f32 panels [n_pad / 16][n_in][16]. */
static int prep_f32(struct wmat *w, const float *src) {
    int n_pad = (w->n_out + 15) & ~15;
    size_t n = (size_t)n_pad * w->n_in;
    float *d = alloc64(n * sizeof(float));
    if (!d) return -1;
    for (int j = 0; j < n_pad; j++) {
        float *col = d + (size_t)(j / 16) * w->n_in * 16 + j % 16;
        for (int k = 0; k < w->n_in; k++)
            col[(size_t)k * 16] = j < w->n_out ? src[(size_t)j * w->n_in + k] : 0.0f;
    }
    w->data = d;
    w->nbytes = n * sizeof(float);
    w->layout = WMAT_LAYOUT_F32;
    return 0;
}

int gemm_prep_exact(struct wmat *w, const float *src) {
    size_t n = (size_t)w->n_out * w->n_in;
    int bf16 = w->n_in % 2 == 0;
    for (size_t i = 0; bf16 && i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], sizeof(u));
        bf16 = (u & 0xffffu) == 0;
    }
    return bf16 ? gemm_prep_bf16(w, src) : prep_f32(w, src);
}

int wmat_init(struct wmat *w, enum wmat_kind kind, uint32_t cpu_mask, const float *src, int n_out,
              int n_in) {
    memset(w, 0, sizeof(*w));
    w->kind = kind;
    w->n_out = n_out;
    w->n_in = n_in;
    w->k = gemm_kernel_for(kind, cpu_mask);
    if (n_out <= 0 || n_in <= 0 || !w->k) return -1;
    return w->k->prepare(w, src);
}

void wmat_deinit(struct wmat *w) {
    if (!w) return;
    free(w->data);
    free(w->scale);
    w->data = NULL;
    w->scale = NULL;
    w->nbytes = 0;
}

size_t wmat_scratch_bytes(const struct wmat *w, int m) {
    return w->k && w->k->scratch_bytes ? w->k->scratch_bytes(w, m) : 0;
}

void wmat_gemm(const struct wmat *w, int m, const float *x, int ldx, const float *bias, float *y,
               int ldy, int col_lo, int col_hi, void *scratch) {
    wmat_gemm_lora(w, m, x, ldx, bias, NULL, y, ldy, col_lo, col_hi, scratch);
}

/* Blocks of the update when the kernel has no epilogue for it: small enough
 * that the update finds its block of Y in L2 (a whole column slice of a
 * 96-row block is up to 1.5 MB: the update then read Y back from L3 and
 * cost more than its rank-4 products). The exact kernels work in the same
 * 96-row x 256-column blocks inside one call, so cutting the call there
 * costs them nothing; the low-precision ones convert X once per call, so
 * they keep the slice. */
enum { LORA_ROWS = 96, LORA_COLS = 256 };

void wmat_gemm_lora(const struct wmat *w, int m, const float *x, int ldx, const float *bias,
                    const struct wmat_lora *lora, float *y, int ldy, int col_lo, int col_hi,
                    void *scratch) {
    if (m <= 0 || col_lo >= col_hi) return;
    ENG_ASSERT(col_lo >= 0 && col_hi <= w->n_out && ldx >= w->n_in && ldy >= col_hi && w->k);
    if (!lora) {
        w->k->gemm(w, m, x, ldx, bias, y, ldy, col_lo, col_hi, scratch);
        return;
    }
    if (w->k->gemm_lora) {
        w->k->gemm_lora(w, m, x, ldx, bias, lora, y, ldy, col_lo, col_hi, scratch);
        return;
    }
    int r = lora->rank, bc = w->kind == WMAT_F32 ? LORA_COLS : col_hi - col_lo;
    for (int i0 = 0; i0 < m; i0 += LORA_ROWS) {
        int nb = m - i0 < LORA_ROWS ? m - i0 : LORA_ROWS;
        for (int c0 = col_lo; c0 < col_hi; c0 += bc) {
            int c1 = col_hi - c0 < bc ? col_hi : c0 + bc;
            w->k->gemm(w, nb, x + (size_t)i0 * ldx, ldx, bias, y + (size_t)i0 * ldy, ldy, c0, c1,
                       scratch);
            for (int i = i0; i < i0 + nb; i++)
                if (lora->task[i] >= 0)
                    ops_lora_up(y + (size_t)i * ldy, c0, c1, lora->t + (size_t)i * r, r,
                                lora->bt + (size_t)lora->task[i] * r * w->n_out, w->n_out);
        }
    }
}

/* ---- activations converted once: words ---- */

void wmat_words_from(const struct wmat *w, int m, const float *x, int ldx, uint32_t *words, int ld,
                     float *sx, int32_t *zx) {
    int n_in = w->n_in;
    for (int i = 0; i < m; i++) {
        const float *xr = x + (size_t)i * ldx;
        uint32_t *wr = words + (size_t)i * ld;
        if (w->kind == WMAT_BF16) {
            ops_bf16_pairs(wr, xr, n_in / 2);
            if (n_in % 2) wr[n_in / 2] = bf16_word(xr[n_in - 1], 0.0f);
            continue;
        }
        ENG_ASSERT(w->kind == WMAT_INT8);
        float inv;
        gemm_int8_row_params(xr, n_in, &sx[i], &zx[i], &inv);
        uint8_t *q = (uint8_t *)wr;
        ops_quant_u8(q, xr, inv, zx[i], n_in);
        for (int k = n_in; k < (n_in + 3) / 4 * 4; k++)
            q[k] = (uint8_t)zx[i];
    }
}

/* The widened rows' bytes at the start of the fallback's scratch. */
static size_t words_widened_bytes(const struct wmat *w, int m) {
    return ((size_t)m * w->n_in * sizeof(float) + 63) / 64 * 64;
}

size_t wmat_words_scratch_bytes(const struct wmat *w, int m) {
    if (w->k && w->k->gemm_words) return 0;
    return words_widened_bytes(w, m) + wmat_scratch_bytes(w, m);
}

void wmat_softmax_words(const struct wmat *w, const float *x, int n_rows, int n, int ld, float s,
                        float *m, float *l, float *alpha, uint32_t *p, int ldp) {
    ENG_ASSERT(w->kind == WMAT_BF16 && w->k);
    if (w->k->softmax_words)
        w->k->softmax_words(x, n_rows, n, ld, s, m, l, alpha, p, ldp);
    else
        ops_softmax_words(x, n_rows, n, ld, s, m, l, alpha, p, ldp);
}

size_t wmat_attend_bytes(int n, int d, int kb) {
    size_t bytes = 0;
    for (int j0 = 0; j0 < n; j0 += kb) {
        int nk = n - j0 < kb ? n - j0 : kb;
        bytes += wmat_bf16_bytes(nk, d) + wmat_bf16_bytes(d, nk);
    }
    return bytes;
}

int wmat_attend_pack(struct wmat *w, const struct gemm_kernel *k, const float *kx, const float *vx,
                     ptrdiff_t ld, int n, int d, int kb, void *buf) {
    char *p = buf;
    int nb = 0;
    for (int j0 = 0; j0 < n; j0 += kb, nb++) {
        int nk = n - j0 < kb ? n - j0 : kb;
        wmat_bf16_pack(&w[2 * nb], k, kx + (size_t)j0 * ld, ld, 1, nk, d, p);
        p += wmat_bf16_bytes(nk, d);
        wmat_bf16_pack(&w[2 * nb + 1], k, vx + (size_t)j0 * ld, 1, ld, d, nk, p);
        p += wmat_bf16_bytes(d, nk);
    }
    return nb;
}

int gemm_kernel_attends(const struct gemm_kernel *k, int d) {
    return k && k->attend_words && k->attend_d == d;
}

int wmat_attend_words(const struct wmat *kv, int n_blocks, const struct wmat_words *q, int nq,
                      float s, float *o, int ldo) {
    ENG_ASSERT(n_blocks > 0 && nq > 0 && kv[0].k);
    if (kv[0].kind != WMAT_BF16 || !gemm_kernel_attends(kv[0].k, kv[0].n_in) || kv[1].k != kv[0].k)
        return -1;
    return kv[0].k->attend_words(kv, n_blocks, q, nq, s, o, ldo);
}

void wmat_gemm_words(const struct wmat *w, int m, const struct wmat_words *x, float *y, int ldy,
                     int col_lo, int col_hi, void *scratch) {
    if (m <= 0 || col_lo >= col_hi) return;
    ENG_ASSERT(col_lo >= 0 && col_hi <= w->n_out && ldy >= col_hi && w->k);
    ENG_ASSERT(w->kind == WMAT_BF16 || w->kind == WMAT_INT8);
    if (w->k->gemm_words) {
        w->k->gemm_words(w, m, x, y, ldy, col_lo, col_hi);
        return;
    }
    /* widened back: bf16 exactly (a bf16 is the top half of its f32) */
    int n_in = w->n_in;
    float *xf = scratch;
    for (int i = 0; i < m; i++) {
        const uint32_t *wr = x->w + (size_t)i * x->ld;
        float *fr = xf + (size_t)i * n_in;
        if (w->kind == WMAT_BF16) {
            for (int k = 0; k < n_in; k++) {
                uint32_t u = k % 2 ? wr[k / 2] & 0xffff0000u : wr[k / 2] << 16;
                memcpy(&fr[k], &u, sizeof(u));
            }
            continue;
        }
        for (int k = 0; k < n_in; k++)
            fr[k] = x->sx[i] * (float)(((const uint8_t *)wr)[k] - x->zx[i]);
    }
    void *ks = (char *)scratch + words_widened_bytes(w, m);
    w->k->gemm(w, m, xf, n_in, NULL, y, ldy, col_lo, col_hi, ks);
}
