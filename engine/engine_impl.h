/* engine_impl.h -- internals shared by the engine/ sources and the unit tests.
 * Not part of the public API: server/ includes only engine.h. */
#ifndef EMB_ENGINE_IMPL_H
#define EMB_ENGINE_IMPL_H

#include "engine/engine.h"
#include "engine/gemm.h"
#include "engine/model_arch.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Always-on assert for broken invariants (ggml's GGML_ASSERT). */
#define ENG_ASSERT(x)                                                                  \
    do {                                                                               \
        if (!(x)) {                                                                    \
            fprintf(stderr, "%s:%d: ENG_ASSERT(%s) failed\n", __FILE__, __LINE__, #x); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

/* ---- safetensors.c: a validating reader of one mmaped .safetensors file ---- */

enum st_dtype { ST_F32, ST_F16, ST_BF16, ST_OTHER };

struct st_tensor {
    char *name;
    char dtype_name[16]; /* as written in the header, e.g. "BF16" */
    enum st_dtype dtype;
    int n_dims;
    int64_t shape[8];
    int64_t n_elem;
    const void *data;  /* inside the mapping */
    uint64_t file_off; /* where data starts in the file */
    size_t nbytes;
};

struct st_file {
    char *path;
    void *map; /* read-only private mapping of the whole file */
    int fd;    /* the file, open read-only until st_close */
    size_t size;
    struct st_tensor *tensors;
    int n_tensors;
};

/* Maps `path` and validates the header (length, JSON, every entry's dtype,
 * shape, and data_offsets inside the file and consistent with the shape).
 * NULL + message on any problem. Free with st_close. */
struct st_file *st_open(const char *path, char *err, size_t errlen);
void st_close(struct st_file *f);
/* Borrowed; NULL if absent. */
const struct st_tensor *st_find(const struct st_file *f, const char *name);
/* Drops the mapping's pages that lie wholly inside t's data (after t has
 * been copied elsewhere), so they stop counting towards RSS; reading t again
 * faults them back in from the file. */
void st_release(const struct st_tensor *t);
/* A heap copy of t's data in its own dtype (NULL when out of memory; the
 * caller frees it); the mapping's pages are given back as it goes. */
void *st_copy(const struct st_tensor *t);
/* Element i of a F32/F16/BF16 tensor's data as float. */
float st_get_f32(enum st_dtype dt, const void *data, int64_t i);
/* Converts n elements of `src` (dtype dt) to f32 into dst. */
void st_to_f32(enum st_dtype dt, const void *src, float *dst, int64_t n);

/* A table read one row at a time (the word embeddings: 250002 rows of which
 * a batch needs a few hundred): a heap copy, or rows read from the file with
 * pread on demand, so the table costs no resident memory (the kernel's page
 * cache holds what is read often) and a file cut short after loading is an
 * error, not a SIGBUS. */
struct st_rows {
    const void *mem;             /* [n_rows][row_len] in the file's dtype (owned), or NULL */
    int fd;                      /* without mem: its own descriptor of the file, else -1 */
    uint64_t off;                /* without mem: file offset of row 0 */
    int64_t file_size, mtime_ns; /* without mem: the file as opened (st_rows_check) */
    int64_t n_rows, row_len;
    size_t row_bytes;
    enum st_dtype dt;
};
/* Sets up r over tensor t of f (rows = its first dimension): copied into
 * memory if in_memory, else read from f's file (which r keeps open after
 * st_close). 0, or -1 with err. Free with st_rows_close. */
int st_rows_open(struct st_rows *r, const struct st_file *f, const struct st_tensor *t,
                 bool in_memory, char *err, size_t errlen);
void st_rows_close(struct st_rows *r); /* accepts a zeroed or closed r */
/* 0 while the file behind r is as opened (same size and modification
 * time, which every write sets; always 0 for a copy), -1 once it was
 * written or cut in place. Renaming or deleting its name changes neither:
 * r reads the file it opened. One fstat: a caller checks once per batch.
 * Thread-safe. */
int st_rows_check(const struct st_rows *r);
/* Row i widened to f32 into out[row_len]. 0, or -1 when i is out of range or
 * the file no longer holds the row. Thread-safe (pread at an offset). */
int st_rows_get_f32(const struct st_rows *r, int64_t i, float *out);

/* ---- team.c: a fixed team of worker threads for data-parallel phases ---- */

struct eng_team;
/* n_threads - 1 workers are started; the caller of team_run is thread 0. */
struct eng_team *team_new(int n_threads);
void team_free(struct eng_team *p);
int team_n_threads(const struct eng_team *p);
/* Runs fn(arg, ith, nth) for ith = 0..nth-1 on all threads and returns when
 * every call has returned. Not reentrant; one caller at a time. */
void team_run(struct eng_team *p, void (*fn)(void *arg, int ith, int nth), void *arg);

/* ---- model.c: weights ---- */

struct eng_linear {
    struct wmat w;  /* W [n_out][n_in], prepared for the model's dtype */
    const float *b; /* [n_out], or NULL where the architecture has no bias */
    int n_in, n_out;
    const float *lora_a;  /* [n_tasks][rank][n_in]; NULL without adapters */
    const float *lora_bt; /* [n_tasks][rank][n_out]: scale * B^T, laid out for the row update */
};

struct eng_layer {
    struct eng_linear qkv, out, fc1, fc2;       /* fc1: [2 n_ff][n_embd] for a GEGLU MLP */
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* [n_embd] */
    /* optional roles (NULL where the architecture has none): LayerNorms on Q
     * and K over the whole width, and the second post-attention LayerNorm */
    const float *qn_w, *qn_b, *kn_w, *kn_b, *ln1b_w, *ln1b_b;
};

struct eng_model {
    const struct eng_arch *arch; /* the description it was loaded by (static) */
    const char *prefix;          /* "" or the description's alt_prefix, before every name */
    struct eng_info info;
    float lora_scale; /* lora_alpha / lora_rank */
    struct st_file *st;
    char *strings; /* owned storage behind info's strings */
    /* word embeddings stay in the file's dtype (never widened: 250002 x 1024),
       read from the file per token unless info.embeddings_in_memory */
    struct st_rows tok_embd; /* [n_vocab][n_embd] */
    const void *tok_lora_a;  /* [n_tasks][n_vocab][rank] (embedding A/B roles swapped) */
    enum st_dtype tok_lora_a_dt;
    void *owned;             /* the heap copy behind tok_lora_a, in the file's dtype */
    const float *tok_lora_b; /* [n_tasks][rank][n_embd] */
    const float *type_embd;  /* [1 + n_tasks][n_embd]: row 0 no task, row 1+t task t, merged */
    const float *emb_ln_w, *emb_ln_b;
    struct eng_layer *layers;
    float *arena; /* biases, norms, LoRA factors and embedding LoRA B, widened */
    size_t arena_floats;
    size_t layer_floats;  /* arena floats of one layer (all layers alike) */
    int load_threads;     /* threads that prepare the layers at load */
    char attn_kernel[64]; /* storage behind info.attn_kernel */
};

/* ---- encoder.c: what the forward pass implements (checked at load) ---- */

bool enc_pos_supported(enum eng_pos_kind k);
bool enc_ffn_supported(enum eng_ffn_kind k);
bool enc_norm_supported(enum eng_norm_place p);
/* The attention kernel a context of this model runs: a bf16 product kernel
 * in the low-precision modes where the CPU has one, else the exact
 * attention kernel for the head width (attn_kernels.h). Thread-safe. */
const struct gemm_kernel *enc_attn_bf16_kernel(const struct eng_info *in);
/* The attention kernels' names for logs into buf ("avx2-attn", "avx512bf16",
 * "amx-bf16 fused" where one kernel runs it all (wmat_attend_words: heads of
 * its width, rotary positions), int8 mode: "avx512vnni/avx512bf16" for
 * Q K^T / P V), for a model with positions pos. */
void enc_attn_kernel_name(const struct eng_info *in, enum eng_pos_kind pos, char *buf, size_t n);

/* ---- ops.c: kernels, each with a naive reference for the tests ---- */

/* x[i] = LayerNorm(x[i] + r[i]) for n_rows rows of n (r may be NULL). */
void ops_add_layernorm(float *x, const float *r, int n_rows, int n, const float *w, const float *b,
                       float eps);
void ops_gelu(float *x, int64_t n);           /* exact erf GELU, in place */
void ops_scale(float *x, int64_t n, float s); /* x *= s */
/* One key block of an online softmax over n_rows rows of raw scores x
 * (n values each, row stride ld; only read), scaled by s > 0, with P
 * written as bf16 words. Per row i, with m[i] the running maximum of the
 * scaled scores (-INFINITY before the first block) and l[i] the running
 * sum: m[i] takes this block's maximum into account; P's row i holds
 * e^(s x[i][j] - m[i]) (to 1e-4 relative while |m| is below a few
 * hundred; 0 below e^-80) rounded to bf16 (to nearest even), two per word
 * (j even low) at p + i * ldp, (n + 1) / 2 words (an odd n's last high
 * half 0); alpha[i] = e^(m_old - m[i]) (0 on the first block);
 * l[i] = l[i] alpha[i] + the sum of the rounded values (what P V
 * multiplies). A caller rescales what it accumulated by alpha, adds this
 * block's P V, and divides by l at the end. wmat_softmax_words (gemm.h)
 * is the same step, with the bf16 kernel's own instructions where it has
 * them. */
void ops_softmax_words(const float *x, int n_rows, int n, int ld, float s, float *m, float *l,
                       float *alpha, uint32_t *p, int ldp);
/* The exponential's constants of ops_softmax_words (see ops.c): the
 * cut-off below which a value is 0 (in units of ln 2), log2(e) as f32, and
 * the minimax polynomial's coefficients. */
#define OPS_SOFTMAX_ULO   -116.0f
#define OPS_SOFTMAX_LOG2E 1.44269504f
#define OPS_SOFTMAX_C1    0.695116520f
#define OPS_SOFTMAX_C2    0.227646112f
#define OPS_SOFTMAX_C3    0.0770660192f
/* NeoX rotary on one head vector of d values at position pos (cos/sin: [d/2]). */
void ops_rope_head(float *v, int d, const float *cos_t, const float *sin_t);
/* Y[m][n] = X[m][k] . W[n][k]^T (+ bias[n] if not NULL); ld* are row strides. */
void ops_gemm_nt(int m, int n, int k, const float *x, int ldx, const float *w, int ldw,
                 const float *bias, float *y, int ldy);
/* LoRA side path. Down, for rows i < n: t[i][k] = x[i] . a[k] (a: [r][n_in]),
 * 16 lanes of fmaf in k order then the lanes in order: the same bits for a
 * row whatever its batch, on every CPU.
 * Up, for one row: y[lo..hi) += sum_k t[k] * bt[k][lo..hi) (bt: [r][n_out],
 * the LoRA scale already folded in), as y = fmaf(t[k], bt[k][j], y), k in order. */
void ops_lora_down(const float *restrict x, int ldx, int n, int n_in, const float *restrict a,
                   int r, float *restrict t);
void ops_lora_up(float *restrict y, int lo, int hi, const float *restrict t, int r,
                 const float *restrict bt, int n_out);
/* bf16 words (two values each, the first in the low half, rounded to
 * nearest even): w[i] = (x[2i], x[2i + 1]) for i < n; zip: w[i] = (a[i], b[i]). */
void ops_bf16_pairs(uint32_t *restrict w, const float *restrict x, int n);
void ops_bf16_zip(uint32_t *restrict w, const float *restrict a, const float *restrict b, int n);
/* Symmetric int8 quantisation of one row, less c (c NULL: nothing):
 * absmax = max |x[k] - c[k]| (0 if none; NaN skipped); quant: q[k] =
 * clamp(rint((x[k] - c[k]) * inv), -127, 127), to nearest even, returning
 * the sum of the q[k]. */
float ops_absmax(const float *restrict x, const float *restrict c, int n);
int32_t ops_quant_s8(int8_t *restrict q, const float *restrict x, const float *restrict c,
                     float inv, int n);
/* The int8 kind's activation quantisation (gemm_kernels.h's
 * gemm_int8_quant, vectorised): q[k] = clamp(rint(x[k] * inv) + z, 0, 255)
 * for |x[k] * inv| <= 2^22 (a row scaled by its own range: at most 255). */
void ops_quant_u8(uint8_t *restrict q, const float *restrict x, float inv, int32_t z, int n);
/* inv_freq[i] = 1 / base^(2i/d) in f32, as the reference's rotary embedding. */
void ops_rope_inv_freq(float base, int d, float *inv_freq);

/* e^x for x in [-87, 88] (clamped outside): 2^n * P(r), r = x - n ln2 in [-ln2/2, ln2/2],
 * P the degree-7 Taylor polynomial (relative error < 1e-8 before rounding). MAD(a, b, c)
 * is each a * b + c step: ops_exp_poly rounds the product and the sum apart (what ISO C
 * mode compiles), ops_exp_poly_fused takes each as one fused step (fmaf), the same bits
 * whichever compiler and flags build the caller. Inline: softmax and the attention
 * kernels share them. */
#define OPS_EXP_POLY(name, MAD)                                                     \
    static inline float name(float x) {                                             \
        x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;                            \
        float n = MAD(x, 1.44269504f, 12582912.0f) - 12582912.0f;     /* nearest */ \
        float r = MAD(-n, -2.12194440e-4f, MAD(-n, 0.693359375f, x)); /* hi, lo */  \
        float p = 1.0f / 5040;                                                      \
        p = MAD(p, r, 1.0f / 720);                                                  \
        p = MAD(p, r, 1.0f / 120);                                                  \
        p = MAD(p, r, 1.0f / 24);                                                   \
        p = MAD(p, r, 1.0f / 6);                                                    \
        p = MAD(p, r, 0.5f);                                                        \
        p = MAD(p, r, 1.0f);                                                        \
        p = MAD(p, r, 1.0f);                                                        \
        int32_t bits = ((int32_t)n + 127) << 23;                                    \
        float scale;                                                                \
        memcpy(&scale, &bits, 4);                                                   \
        return p * scale;                                                           \
    }
#define OPS_MAD_ROUNDED(a, b, c) ((a) * (b) + (c))
OPS_EXP_POLY(ops_exp_poly, OPS_MAD_ROUNDED)
OPS_EXP_POLY(ops_exp_poly_fused, fmaf)
#undef OPS_MAD_ROUNDED
#undef OPS_EXP_POLY

/* Naive references (tests only). */
void ref_add_layernorm(float *x, const float *r, int n_rows, int n, const float *w, const float *b,
                       float eps);
void ref_gelu(float *x, int64_t n);
void ref_softmax_rows(float *x, int n_rows, int n, int ld);
void ref_gemm_nt(int m, int n, int k, const float *x, int ldx, const float *w, int ldw,
                 const float *bias, float *y, int ldy);

#endif
