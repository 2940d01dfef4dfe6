/* gemm_kernels.h -- the kernel table behind struct wmat (engine-internal;
 * included by engine/gemm.c and the kernel files under engine/arch/).
 *
 * A kernel is one row of gemm.c's table: the weight kind it computes, the
 * CPU bits it needs, how it lays out W (prepare) and its product (gemm, with
 * the contract of wmat_gemm). gemm_kernel_for() picks, once per matrix, the
 * first row of the kind whose bits the mask has. A new kernel is one file
 * here plus one row in that table. Rows are immutable: thread-safe.
 */
#ifndef EMB_GEMM_KERNELS_H
#define EMB_GEMM_KERNELS_H

#include "engine/gemm.h"

#include <stddef.h>
#include <stdint.h>

struct gemm_kernel {
    const char *name;   /* for logs: "avx2-exact", "avx512bf16", ... */
    enum wmat_kind kind;
    uint32_t needs;     /* CPU_* bits */
    /* lays W (n_out x n_in f32, row-major) out into w->data; 0 or -1 (memory) */
    int (*prepare)(struct wmat *w, const float *src);
    void (*gemm)(const struct wmat *w, int m, const float *x, int ldx, const float *bias,
                 float *y, int ldy, int col_lo, int col_hi, void *scratch);
    size_t (*scratch_bytes)(const struct wmat *w, int m); /* NULL: none */
};

/* Shared weight layouts (gemm.c), each in panels of 16 output columns,
 * n_out padded to a multiple of 16 with zeros:
 * - bf16 words: [n_pad / 16][kw][16] uint32, two bf16 per word (even k in
 *   the low half), kw = ceil(n_in / 2); w->layout = WMAT_LAYOUT_BF16.
 * - int8 words: [n_pad / 16][kw][16] words of four s8, then colsum[n_pad]
 *   int32; w->scale[n_pad] (symmetric per output row).
 * - f32: [n_pad / 16][n_in][16] floats; w->layout = WMAT_LAYOUT_F32. */
int gemm_prep_bf16(struct wmat *w, const float *src);
int gemm_prep_int8(struct wmat *w, const float *src);
/* Exact kinds: bf16 words when every value of W is a bf16 and n_in is even
 * (a bf16 checkpoint: half the memory, nothing lost), else f32 panels. */
int gemm_prep_exact(struct wmat *w, const float *src);

/* The kernels (engine/arch/...). */
extern const struct gemm_kernel gemm_generic_exact;
#if defined(__x86_64__)
extern const struct gemm_kernel gemm_x86_avx2_exact;
extern const struct gemm_kernel gemm_x86_avx512_bf16;
extern const struct gemm_kernel gemm_x86_avx512_vnni;
#endif

/* Fixed k block of the exact kernels: each output element is
 * sum over blocks in order (first block + bias), each block a sequential
 * fused (or, generic, unfused) multiply-add chain over its k values. The
 * order depends on nothing but n_in: not m, not the row, not the slice. */
enum { EXACT_KC = 256, EXACT_MC = 96 };

/* An exact microkernel: acc[r][0..16) = sum over k < nk, in order, of
 * x[r * ldx + k] * w[k * 16 + column], for r < mr (mr <= its MR); w is one
 * panel's k block as f32 (64-byte aligned; the driver widens bf16 panels
 * into an L1-resident buffer first: exact, and the weights stay bf16 in
 * memory). */
typedef void (*gemm_exact_micro)(int mr, const float *x, size_t ldx, const float *w, int nk,
                                 float (*acc)[16]);

/* The exact kernels' shared driver (gemm.c): k blocks of EXACT_KC in order,
 * rows in tiles of mr_max, panels of the slice, then the epilogue
 * Y = acc (+ bias) on the first block and Y += acc on the later ones. */
void gemm_exact_run(const struct wmat *w, int m, const float *x, int ldx, const float *bias,
                    float *y, int ldy, int col_lo, int col_hi, gemm_exact_micro micro, int mr_max);

#endif
