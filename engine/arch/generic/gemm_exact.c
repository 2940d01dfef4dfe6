/* gemm_exact.c -- the portable exact kernel (any CPU): f32 activations times
 * W (f32, or widened from bf16 by the driver), f32 accumulation, one
 * multiply then one add per term in k order (ISO C: no contraction into
 * fused multiply-adds), so its results depend only on the inputs. */
#include "engine/cpu.h"
#include "engine/gemm_kernels.h"

enum { MR = 4 };

static void micro(int mr, const float *xp, const float *w, int nk, float *y, size_t ldy,
                  const float *bias, int first, int c0, int c1) {
    float a[MR][16] = {{0}};
    for (int k = 0; k < nk; k++) {
        const float *wk = w + (size_t)k * 16;
        for (int r = 0; r < mr; r++) {
            float xv = xp[k * MR + r];
            for (int c = 0; c < 16; c++)
                a[r][c] = a[r][c] + xv * wk[c];
        }
    }
    for (int r = 0; r < mr; r++)
        gemm_exact_store(y + (size_t)r * ldy, a[r], bias, first, c0, c1);
}

static void widen(float *dst, const uint32_t *src, int nk) {
    gemm_exact_widen_c(dst, src, nk);
}

static void gemm(const struct wmat *w, int m, const float *x, int ldx, const float *bias, float *y,
                 int ldy, int col_lo, int col_hi, void *scratch) {
    (void)scratch;
    gemm_exact_drive(w, m, x, ldx, bias, y, ldy, col_lo, col_hi, micro, widen, MR);
}

const struct gemm_kernel gemm_generic_exact = {
    .name = "generic-exact",
    .kind = WMAT_F32,
    .needs = CPU_BASE,
    .prepare = gemm_prep_exact,
    .gemm = gemm,
    .scratch_bytes = NULL,
};
