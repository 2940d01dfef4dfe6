/* gemm_exact.c -- the portable exact kernel (any CPU): f32 activations times
 * W widened from bf16 words (or read as f32), f32 accumulation, one
 * multiply then one add per term in k order (ISO C: no contraction into
 * fused multiply-adds), so its results depend only on the inputs. */
#include "engine/cpu.h"
#include "engine/gemm_kernels.h"

#include <string.h>

enum { MR = 4 };

static void micro(int mr, const float *x, size_t ldx, const void *w, int layout, int nk,
                  float (*acc)[16]) {
    float a[MR][16] = {{0}};
    float wv[2][16];
    for (int k = 0; k < nk; k += 2) {
        int two = k + 1 < nk;
        if (layout == WMAT_LAYOUT_BF16) {
            const uint32_t *wd = (const uint32_t *)w + (size_t)k / 2 * 16;
            for (int c = 0; c < 16; c++) {
                uint32_t lo = wd[c] << 16, hi = wd[c] & 0xffff0000u;
                memcpy(&wv[0][c], &lo, 4);
                memcpy(&wv[1][c], &hi, 4);
            }
        } else {
            const float *wf = (const float *)w + (size_t)k * 16;
            memcpy(wv[0], wf, sizeof(wv[0]));
            if (two) memcpy(wv[1], wf + 16, sizeof(wv[1]));
        }
        for (int r = 0; r < mr; r++) {
            float x0 = x[(size_t)r * ldx + k];
            for (int c = 0; c < 16; c++) a[r][c] = a[r][c] + x0 * wv[0][c];
            if (!two) continue;
            float x1 = x[(size_t)r * ldx + k + 1];
            for (int c = 0; c < 16; c++) a[r][c] = a[r][c] + x1 * wv[1][c];
        }
    }
    memcpy(acc, a, sizeof(float) * 16 * (size_t)mr);
}

static void gemm(const struct wmat *w, int m, const float *x, int ldx, const float *bias,
                 float *y, int ldy, int col_lo, int col_hi, void *scratch) {
    (void)scratch;
    gemm_exact_run(w, m, x, ldx, bias, y, ldy, col_lo, col_hi, micro, MR);
}

const struct gemm_kernel gemm_generic_exact = {
    .name = "generic-exact",
    .kind = WMAT_F32,
    .needs = CPU_BASE,
    .prepare = gemm_prep_exact,
    .gemm = gemm,
    .scratch_bytes = NULL,
};
