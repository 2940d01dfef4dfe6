/* gemm_int8.c -- the portable int8 kernel (any CPU), on the int8 word layout
 * of engine/gemm.c and the contract of gemm_kernels.h (u8 activations with a
 * zero point times s8 weights, exact i32 sums per k block, the shared float
 * epilogue): its results are the same bits as every other int8 kernel's.
 *
 * Blocking: rows in blocks of MC (quantised once per call and thread, whole
 * k, into scratch), then k blocks of INT8_KC_WORDS, then panels of 16
 * columns (one panel's k block, 16 KiB, stays in L1 while the rows pass). */
#include "engine/cpu.h"
#include "engine/engine_impl.h"
#include "engine/gemm_kernels.h"

enum { MC = 96 };

struct scratch {
    float *sx, *inv; /* [MC] */
    int32_t *zx;     /* [MC] */
    uint8_t *qx;     /* [MC][4 kw] quantised activations of the row block */
};

static size_t scratch_bytes(const struct wmat *w, int m) {
    if (m <= 0) return 0;
    size_t rows = (size_t)(m < MC ? m : MC), kw = (size_t)(w->n_in + 3) / 4;
    return 64 + 3 * MC * 4 + rows * kw * 4;
}

static struct scratch scratch_carve(void *mem) {
    uintptr_t p = ((uintptr_t)mem + 63) & ~(uintptr_t)63;
    return (struct scratch){(float *)p, (float *)(p + MC * 4), (int32_t *)(p + 2 * MC * 4),
                            (uint8_t *)(p + 3 * MC * 4)};
}

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
        for (int r = 0; r < mc; r++) {
            const float *xr = x + (size_t)(i0 + r) * ldx;
            uint8_t *q = s.qx + (size_t)r * kw * 4;
            gemm_int8_row_params(xr, n_in, &s.sx[r], &s.zx[r], &s.inv[r]);
            for (int k = 0; k < 4 * kw; k++)
                q[k] = k < n_in ? gemm_int8_quant(xr[k], s.inv[r], s.zx[r]) : (uint8_t)s.zx[r];
        }
        for (int k0 = 0; k0 < kw; k0 += INT8_KC_WORDS) {
            int nk = kw - k0 < INT8_KC_WORDS ? kw - k0 : INT8_KC_WORDS;
            for (int p = p_lo; p < p_hi; p++) {
                const int8_t *wp = (const int8_t *)(wd + ((size_t)p * kw + k0) * 16);
                int c0 = col_lo - 16 * p, c1 = col_hi - 16 * p;
                c0 = c0 < 0 ? 0 : c0;
                c1 = c1 > 16 ? 16 : c1;
                for (int r = 0; r < mc; r++) {
                    const uint8_t *q = s.qx + (size_t)r * kw * 4 + (size_t)k0 * 4;
                    int32_t acc[16] = {0};
                    for (int k = 0; k < nk; k++) {
                        const int8_t *wk = wp + (size_t)k * 64;
                        int32_t q0 = q[4 * k], q1 = q[4 * k + 1], q2 = q[4 * k + 2],
                                q3 = q[4 * k + 3];
                        for (int c = 0; c < 16; c++)
                            acc[c] += q0 * wk[4 * c] + q1 * wk[4 * c + 1] + q2 * wk[4 * c + 2] +
                                      q3 * wk[4 * c + 3];
                    }
                    float *yr = y + (size_t)(i0 + r) * ldy + 16 * p;
                    for (int c = c0; c < c1; c++) {
                        int j = 16 * p + c;
                        yr[c] = k0 == 0 ? gemm_int8_first(acc[c], s.zx[r], colsum[j], s.sx[r],
                                                          w->scale[j], bias ? bias + j : NULL)
                                        : gemm_int8_next(yr[c], acc[c], s.sx[r], w->scale[j]);
                    }
                }
            }
        }
    }
}

const struct gemm_kernel gemm_generic_int8 = {
    .name = "generic-int8",
    .kind = WMAT_INT8,
    .needs = CPU_BASE,
    .prepare = gemm_prep_int8,
    .gemm = gemm,
    .scratch_bytes = scratch_bytes,
};
