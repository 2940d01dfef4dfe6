/* gemm.h -- prepared weight matrices and Y = X W^T products in several
 * precisions (engine-internal; included by engine/ sources and tests only).
 *
 * A struct wmat holds one linear layer's weight W[n_out][n_in] in the layout
 * and precision its kernel wants (f32 row-major for OpenBLAS; bf16 packed for
 * AVX512_BF16; int8 per-output-channel scales for VNNI). Prepared once at
 * load, immutable after: any number of threads may multiply with it at once.
 *
 * wmat_gemm computes the column slice [col_lo, col_hi) of
 *     Y[m][n_out] = X[m][n_in] . W^T (+ bias)
 * so the engine's threads can split the columns among themselves; it must not
 * start threads of its own (one team of threads: the engine's pool).
 */
#ifndef EMB_GEMM_H
#define EMB_GEMM_H

#include <stddef.h>
#include <stdint.h>

enum wmat_kind {
    WMAT_F32 = 0, /* exact: OpenBLAS sgemm */
    WMAT_BF16,    /* weights bf16, activations rounded to bf16, f32 accumulation */
    WMAT_INT8,    /* weights int8 per output channel, activations int8 per row, i32 accumulation */
};

struct wmat {
    enum wmat_kind kind;
    int n_out, n_in;
    void *data;    /* owned; kind-specific layout */
    float *scale;  /* owned; [n_out] for WMAT_INT8, else NULL */
    size_t nbytes; /* bytes held (data + scale) */
};

/* CPU features the kernels need (cpuid + OS support), cached. */
int gemm_cpu_has_bf16(void); /* AVX512F + AVX512_BF16 */
int gemm_cpu_has_vnni(void); /* AVX512F + AVX512BW + AVX512_VNNI */
/* Forgets the cached answer, so the next query reads cpuid and the
 * EMBEDSERVE_NO_AVX512 environment variable (=1: report neither) again.
 * For tests; not thread-safe against concurrent wmat_init. */
void gemm_cpu_reset(void);

/* Prepares w from src, n_out x n_in f32 values (row-major). Returns 0, or -1
 * (out of memory, or the CPU lacks the kind's instructions). */
int wmat_init(struct wmat *w, enum wmat_kind kind, const float *src, int n_out, int n_in);
void wmat_deinit(struct wmat *w);

/* Y[i][j] = sum_k X[i][k] W[j][k] (+ bias[j]) for i < m, col_lo <= j < col_hi.
 * x: [m][ldx] f32, y: [m][ldy] f32, bias NULL or [n_out]. `scratch` must hold
 * wmat_scratch_bytes(w, m) bytes owned by the calling thread (activation
 * conversion); it may be NULL when that is 0. Thread-safe for disjoint y. */
void wmat_gemm(const struct wmat *w, int m, const float *x, int ldx, const float *bias, float *y,
               int ldy, int col_lo, int col_hi, void *scratch);
size_t wmat_scratch_bytes(const struct wmat *w, int m);

/* Transient bf16 matrices for attention (K and V^T of one head), packed into
 * caller memory with no allocation. wmat_bf16_bytes: the bytes `buf` needs
 * (a multiple of 64). wmat_bf16_pack: w views buf (64-byte aligned), element
 * (j, k) of W read from src[j * sj + k * sk]; w does not own buf, so it must
 * not be passed to wmat_deinit. Needs gemm_cpu_has_bf16(). */
size_t wmat_bf16_bytes(int n_out, int n_in);
void wmat_bf16_pack(struct wmat *w, const float *src, ptrdiff_t sj, ptrdiff_t sk, int n_out,
                    int n_in, void *buf);

#endif
