/* ops.c -- the forward pass's kernels, and naive references for the tests.
 *
 * Matrix products go to OpenBLAS's cblas_sgemm. The engine calls it from
 * its own worker threads on disjoint slices with OpenBLAS set to one thread
 * (eng_ctx_new), so exactly one team of threads exists: no oversubscription.
 */
#include "engine/engine_impl.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void ops_add_layernorm(float *x, const float *r, int n_rows, int n, const float *w,
                       const float *b, float eps) {
    for (int i = 0; i < n_rows; i++) {
        float *xi = x + (size_t)i * n;
        const float *ri = r ? r + (size_t)i * n : NULL;
        if (ri)
            for (int j = 0; j < n; j++) xi[j] += ri[j];
        /* two-pass mean / biased variance in f32 with a double accumulator */
        double sum = 0;
        for (int j = 0; j < n; j++) sum += xi[j];
        float mean = (float)(sum / n);
        double var = 0;
        for (int j = 0; j < n; j++) {
            float d = xi[j] - mean;
            var += (double)d * d;
        }
        float inv = (float)(1.0 / sqrt(var / n + eps));
        for (int j = 0; j < n; j++) xi[j] = (xi[j] - mean) * inv * w[j] + b[j];
    }
}

void ops_gelu(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

void ops_softmax_rows(float *x, int n_rows, int n, int ld) {
    for (int i = 0; i < n_rows; i++) {
        float *xi = x + (size_t)i * ld;
        float mx = xi[0];
        for (int j = 1; j < n; j++) mx = xi[j] > mx ? xi[j] : mx;
        float sum = 0;
        for (int j = 0; j < n; j++) {
            xi[j] = expf(xi[j] - mx);
            sum += xi[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < n; j++) xi[j] *= inv;
    }
}

void ops_rope_inv_freq(float base, int d, float *inv_freq) {
    /* torch: 1.0 / (base ** (arange(0, d, 2, dtype=float32) / d)), all f32 */
    for (int i = 0; i < d / 2; i++) inv_freq[i] = 1.0f / powf(base, (float)(2 * i) / (float)d);
}

void ops_rope_head(float *v, int d, const float *cos_t, const float *sin_t) {
    int h = d / 2;
    for (int i = 0; i < h; i++) {
        float a = v[i], b = v[i + h];
        v[i] = a * cos_t[i] - b * sin_t[i];
        v[i + h] = b * cos_t[i] + a * sin_t[i];
    }
}

void ops_gemm_nt(int m, int n, int k, const float *x, int ldx, const float *w, int ldw,
                 const float *bias, float *y, int ldy) {
    if (m <= 0 || n <= 0) return;
    float beta = 0.0f;
    if (bias) {
        for (int i = 0; i < m; i++) memcpy(y + (size_t)i * ldy, bias, sizeof(float) * (size_t)n);
        beta = 1.0f;
    }
    /* Y[m][n] = X[m][k] . W[n][k]^T (+ Y) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, ldx, w, ldw, beta, y,
                ldy);
}

/* ---- naive references: straight loops in double, for tests/test_ops.c ---- */

void ref_add_layernorm(float *x, const float *r, int n_rows, int n, const float *w,
                       const float *b, float eps) {
    for (int i = 0; i < n_rows; i++) {
        float *xi = x + (size_t)i * n;
        double mean = 0, var = 0;
        for (int j = 0; j < n; j++) mean += (double)xi[j] + (r ? r[(size_t)i * n + j] : 0);
        mean /= n;
        for (int j = 0; j < n; j++) {
            double d = (double)xi[j] + (r ? r[(size_t)i * n + j] : 0) - mean;
            var += d * d;
        }
        var /= n;
        for (int j = 0; j < n; j++) {
            double v = (double)xi[j] + (r ? r[(size_t)i * n + j] : 0);
            xi[j] = (float)((v - mean) / sqrt(var + eps) * w[j] + b[j]);
        }
    }
}

void ref_gelu(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0))));
}

void ref_softmax_rows(float *x, int n_rows, int n, int ld) {
    for (int i = 0; i < n_rows; i++) {
        float *xi = x + (size_t)i * ld;
        double sum = 0;
        for (int j = 0; j < n; j++) sum += exp((double)xi[j]);
        for (int j = 0; j < n; j++) xi[j] = (float)(exp((double)xi[j]) / sum);
    }
}

void ref_gemm_nt(int m, int n, int k, const float *x, int ldx, const float *w, int ldw,
                 const float *bias, float *y, int ldy) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = bias ? bias[j] : 0;
            for (int l = 0; l < k; l++) s += (double)x[(size_t)i * ldx + l] * w[(size_t)j * ldw + l];
            y[(size_t)i * ldy + j] = (float)s;
        }
}
