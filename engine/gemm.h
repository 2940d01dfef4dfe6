/* gemm.h -- prepared weight matrices and Y = X W^T products in several
 * precisions (engine-internal; included by engine/ sources and tests only).
 *
 * A struct wmat holds one linear layer's weight W[n_out][n_in] in the layout
 * and precision its kernel wants, the kernel chosen once, at wmat_init, from
 * a CPU feature mask (engine/cpu.h) by the table in gemm.c. Prepared once at
 * load, immutable after: any number of threads may multiply with it at once.
 *
 * wmat_gemm computes the column slice [col_lo, col_hi) of
 *     Y[m][n_out] = X[m][n_in] . W^T (+ bias)
 * so the engine's threads can split the columns among themselves; it must not
 * start threads of its own (one team of threads: the engine's team).
 */
#ifndef EMB_GEMM_H
#define EMB_GEMM_H

#include <stddef.h>
#include <stdint.h>

enum wmat_kind {
    /* exact: f32 activations, f32 accumulation in a fixed order per output
     * element (bitwise the same whatever m, the row or the column slice);
     * W kept in the checkpoint's precision (bf16 if every value is one) */
    WMAT_F32 = 0,
    WMAT_BF16, /* weights bf16, activations rounded to bf16, f32 accumulation */
    WMAT_INT8, /* weights int8 per output channel, activations int8 per row, i32 accumulation */
};

struct wmat {
    enum wmat_kind kind;
    int n_out, n_in;
    void *data;                  /* owned; kind-specific layout */
    float *scale;                /* owned; [n_out] for WMAT_INT8, else NULL */
    size_t nbytes;               /* bytes held (data + scale) */
    int layout;                  /* enum wmat_layout */
    const struct gemm_kernel *k; /* borrowed: a row of the static kernel table */
};

enum wmat_layout { WMAT_LAYOUT_BF16 = 0, WMAT_LAYOUT_F32, WMAT_LAYOUT_INT8 };

struct gemm_kernel;

/* The kernel that wmat_init would use for `kind` under the CPU mask
 * (CPU_* bits of engine/cpu.h), or NULL if the mask allows none. Thread-safe. */
const struct gemm_kernel *gemm_kernel_for(enum wmat_kind kind, uint32_t cpu_mask);
/* Its name for logs ("avx2-exact", "generic-exact", "avx512bf16", ...). */
const char *gemm_kernel_name(const struct gemm_kernel *k);

/* Prepares w from src, n_out x n_in f32 values (row-major), for the kernel
 * gemm_kernel_for(kind, cpu_mask). Returns 0, or -1 (out of memory, or the
 * mask allows no kernel of the kind). */
int wmat_init(struct wmat *w, enum wmat_kind kind, uint32_t cpu_mask, const float *src, int n_out,
              int n_in);
void wmat_deinit(struct wmat *w);

/* Y[i][j] = sum_k X[i][k] W[j][k] (+ bias[j]) for i < m, col_lo <= j < col_hi.
 * x: [m][ldx] f32, y: [m][ldy] f32, bias NULL or [n_out]. `scratch` must hold
 * wmat_scratch_bytes(w, m) bytes owned by the calling thread (activation
 * conversion); it may be NULL when that is 0. Thread-safe for disjoint y. */
void wmat_gemm(const struct wmat *w, int m, const float *x, int ldx, const float *bias, float *y,
               int ldy, int col_lo, int col_hi, void *scratch);
size_t wmat_scratch_bytes(const struct wmat *w, int m);

/* A low-rank update of some rows of Y (a task's LoRA), each row with its own
 * adapter: row i with task[i] >= 0 gets, on the columns computed,
 *     Y[i][j] += sum_k t[i * rank + k] * bt[(task[i] * rank + k) * n_out + j]
 * as one fused multiply-add per k, in order: Y = fmaf(t_k, b_k, Y) from the
 * product's value. The arrays are borrowed for the call. */
struct wmat_lora {
    int rank;
    const float *t;      /* [m][rank] */
    const int32_t *task; /* [m]; < 0: the row has no update */
    const float *bt;     /* [n_tasks][rank][n_out] */
};

/* wmat_gemm then, if lora is not NULL, its update. Kernels that do it in
 * their epilogue (while the output tile is in registers) give the same bits
 * as the others, which run the update on blocks of Y still in cache. Same
 * scratch and thread-safety as wmat_gemm. */
void wmat_gemm_lora(const struct wmat *w, int m, const float *x, int ldx, const float *bias,
                    const struct wmat_lora *lora, float *y, int ldy, int col_lo, int col_hi,
                    void *scratch);

/* Activations converted once and multiplied many times (attention: a query
 * tile against each key block; P, written as words by the softmax). Words
 * in the kernel kind's activation form, row i at w + i * ld, ld at least
 * the words of n_in: WMAT_BF16, two bf16 per word (even k low, rounded to
 * nearest even); WMAT_INT8, four u8 per word, value sx[i] (q - zx[i]), the
 * contract's per-row parameters (gemm_kernels.h). k past n_in: 0 (bf16) or
 * zx[i] (int8), as the kernels' own conversion pads. */
struct wmat_words {
    const uint32_t *w;
    int ld;
    const float *sx;   /* int8: [m]; bf16: NULL */
    const int32_t *zx; /* int8: [m]; bf16: NULL */
};

/* Converts x ([m][ldx] f32, n_in = w->n_in values per row) into words (and,
 * int8, sx and zx) as w's kernel converts its activations: wmat_gemm_words
 * on them gives the bits wmat_gemm gives on x. Thread-safe (caller memory). */
void wmat_words_from(const struct wmat *w, int m, const float *x, int ldx, uint32_t *words, int ld,
                     float *sx, int32_t *zx);

/* wmat_gemm on words. Kernels with an entry for words read them directly;
 * the others get them widened back into scratch (bf16: exact, the same
 * bits; int8: dequantised, then quantised again by the kernel). scratch:
 * wmat_words_scratch_bytes(w, m) bytes owned by the calling thread. */
void wmat_gemm_words(const struct wmat *w, int m, const struct wmat_words *x, float *y, int ldy,
                     int col_lo, int col_hi, void *scratch);
size_t wmat_words_scratch_bytes(const struct wmat *w, int m);

/* One key block of the attention's online softmax with P written as w's
 * words (w: WMAT_BF16, the matrix that multiplies P): the contract and the
 * bits of ops_softmax_words (engine_impl.h), which kernels with their own
 * bf16 conversion run faster. Thread-safe (caller memory). */
void wmat_softmax_words(const struct wmat *w, const float *x, int n_rows, int n, int ld, float s,
                        float *m, float *l, float *alpha, uint32_t *p, int ldp);

/* One query tile's whole attention, where w's kernel has it fused: the
 * queries' words q (nq rows, bf16, d values) against the key blocks kv[2b]
 * (K_b, n_out keys x d) and kv[2b + 1] (V_b^T, d x the same keys), b <
 * n_blocks, as wmat_bf16_pack leaves them; writes
 *     O[i] = sum_j softmax_j(s q_i . k_j) v_j      to o + i * ldo.
 * Returns 0, or -1 (nothing written) where the kernel has no fused path for
 * this shape: then the caller runs wmat_gemm_words and wmat_softmax_words
 * per block. The bits are the kernel's own (not those of the per-block
 * steps); per row they depend on the row, the keys and the blocks' widths
 * only. Thread-safe (caller memory; the kernel's scratch is its stack). */
int wmat_attend_words(const struct wmat *kv, int n_blocks, const struct wmat_words *q, int nq,
                      float s, float *o, int ldo);
/* One head's keys and values as wmat_attend_words and the per-block steps
 * take them: n keys (rows of kx and vx, ld floats apart, d values each) in
 * blocks of kb, K_b then V_b^T packed into buf (wmat_attend_bytes(n, d, kb)
 * bytes, 64-byte aligned), w[2b] and w[2b + 1] viewing them; k a WMAT_BF16
 * kernel. Returns the blocks. (The encoder packs its own way: int8 keys.) */
size_t wmat_attend_bytes(int n, int d, int kb);
int wmat_attend_pack(struct wmat *w, const struct gemm_kernel *k, const float *kx, const float *vx,
                     ptrdiff_t ld, int n, int d, int kb, void *buf);
/* Whether bf16 kernel k has that fused path for heads of d values (for
 * logs: the caller still checks wmat_attend_words' result). */
int gemm_kernel_attends(const struct gemm_kernel *k, int d);

/* Transient bf16 matrices for attention (K and V^T of one head), packed into
 * caller memory with no allocation. wmat_bf16_bytes: the bytes `buf` needs
 * (a multiple of 64). wmat_bf16_pack: w views buf (64-byte aligned), element
 * (j, k) of W read from src[j * sj + k * sk]; w does not own buf, so it must
 * not be passed to wmat_deinit. k: a WMAT_BF16 kernel (gemm_kernel_for). */
size_t wmat_bf16_bytes(int n_out, int n_in);
void wmat_bf16_pack(struct wmat *w, const struct gemm_kernel *k, const float *src, ptrdiff_t sj,
                    ptrdiff_t sk, int n_out, int n_in, void *buf);

/* The same for int8 (attention's K): W quantised as wmat_init's int8 kind
 * does (symmetric per output row), row j at src + j * ld less center[k]
 * (center: [n_in], or NULL for none); w->data and w->scale both point into
 * buf (wmat_int8_bytes of it, 64-byte aligned). k: a WMAT_INT8 kernel. */
size_t wmat_int8_bytes(int n_out, int n_in);
void wmat_int8_pack(struct wmat *w, const struct gemm_kernel *k, const float *src, ptrdiff_t ld,
                    const float *center, int n_out, int n_in, void *buf);

#endif
