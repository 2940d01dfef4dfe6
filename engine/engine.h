/* engine.h -- the jina-embeddings-v3 inference engine.
 *
 * Loads a model directory (config.json + model.safetensors), validates every
 * tensor against the config, and runs the XLM-RoBERTa encoder with rotary
 * positions and per-sequence task LoRA adapters over packed batches of token
 * sequences, mean-pooling each requested span.
 *
 * Conventions (whole header):
 * - Status-returning functions return 0 on success or a negative ENG_E* code.
 * - Constructors return a pointer or NULL and write a one-line reason into
 *   err[errlen] (always NUL-terminated when errlen > 0).
 * - Every *_close / *_free accepts NULL.
 *
 * Thread-safety:
 * - A struct eng_model is immutable after eng_model_open returns: any number
 *   of threads may read it (eng_model_info, eng_task_lookup) concurrently.
 * - A struct eng_ctx holds activation buffers and worker threads; it must be
 *   used by one thread at a time (the server's engine thread).
 */
#ifndef EMB_ENGINE_H
#define EMB_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ENG_MAX_TASKS     8
#define ENG_MAX_MATRYOSHKA 16
#define ENG_TASK_NONE     (-1) /* base weights: no adapter, no prefix */

/* Error codes (negative). */
#define ENG_EINVAL   (-1) /* bad argument: ids out of range, bad span, bad task */
#define ENG_ETOOLONG (-2) /* the batch does not fit the context's token capacity */
#define ENG_ENOMEM   (-3)
#define ENG_EIO      (-4) /* model files missing, truncated or inconsistent */
#define ENG_ENOTASK  (-5) /* eng_task_lookup: no adapter of that name (distinct from
                             ENG_TASK_NONE, which is also -1 like ENG_EINVAL) */

/* Numeric precision of the weights used for the matrix products. */
enum eng_dtype {
    ENG_DTYPE_AUTO = 0, /* bf16 where the CPU has AVX512_BF16, else f32 */
    ENG_DTYPE_F32,      /* exact mode: f32 activations and accumulation, weights kept in the
                           checkpoint's precision; bitwise independent of the batch */
    ENG_DTYPE_BF16,     /* bf16 weights and activations, f32 accumulation (AVX512_BF16) */
    ENG_DTYPE_INT8,     /* int8 per-channel weights, int8 activations (AVX512_VNNI) */
};

/* "f32", "bf16", "int8" or "auto". */
const char *eng_dtype_name(enum eng_dtype dt);

struct eng_params {
    int n_threads;        /* threads for the forward pass, >= 1 */
    int max_batch_tokens; /* token capacity of one eng_encode call, summed over sequences */
    enum eng_dtype dtype;
    /* CPU features the kernels may use: CPU_* bits of engine/cpu.h (e.g. from
     * cpu_parse_level); 0 = all this CPU has. Never more than the CPU has. */
    uint32_t cpu_features;
};

/* Model facts read from config.json. Strings are owned by the model and live
 * until eng_model_close. */
struct eng_info {
    int n_embd;  /* hidden_size */
    int n_layer; /* num_hidden_layers */
    int n_head;  /* num_attention_heads */
    int n_ff;    /* intermediate_size */
    int n_vocab; /* vocab_size */
    int lora_rank;
    float lora_alpha;
    float rope_base;
    float ln_eps;
    int max_position; /* max_position_embeddings - 2: the model's token limit (8192) */
    int n_tasks;      /* len(lora_adaptations) */
    const char *task_name[ENG_MAX_TASKS];   /* adapter index -> name */
    const char *task_prefix[ENG_MAX_TASKS]; /* adapter index -> instruction ("" if none) */
    int n_matryoshka;
    int matryoshka[ENG_MAX_MATRYOSHKA];
    const char *name; /* _name_or_path, or "" */
    enum eng_dtype dtype; /* precision the matrix products run in (never AUTO) */
    uint32_t cpu_features; /* the CPU_* bits in use (requested and present) */
    const char *kernel;    /* the matrix-product kernel ("avx2-exact", "avx512bf16", ...) */
};

/* One sequence of an eng_encode batch. All pointers are borrowed for the call. */
struct eng_seq {
    const int32_t *ids;   /* [n_ids] model token ids, <s> ... </s> included */
    int32_t n_ids;        /* >= 1 */
    int32_t task;         /* adapter index 0..n_tasks-1, or ENG_TASK_NONE */
    int32_t n_spans;      /* pooled outputs; 0 = one span over the whole sequence */
    const int32_t *spans; /* [n_spans][2] half-open token ranges [start, end), non-empty */
    float *out;           /* [max(n_spans,1)][n_embd] span means of the last hidden state */
};

/* Defaults: 1 thread, 8192 tokens, ENG_DTYPE_AUTO. */
struct eng_params eng_params_defaults(void);

/* Opens the model in directory `dir`: reads config.json, maps
 * model.safetensors, validates presence, dtype (BF16, F16 or F32), shape and
 * file bounds of every tensor, and prepares the weights for `p->dtype`.
 * Returns NULL with a message naming the file and tensor on any problem.
 * The caller frees the result with eng_model_close. */
struct eng_model *eng_model_open(const char *dir, const struct eng_params *p, char *err,
                                 size_t errlen);
void eng_model_close(struct eng_model *m);

/* Borrowed; valid until eng_model_close. Thread-safe. */
const struct eng_info *eng_model_info(const struct eng_model *m);

/* Adapter index of a task name ("retrieval.query", ...), or ENG_TASK_NONE
 * for NULL, or ENG_ENOTASK for an unknown name. Thread-safe. */
int eng_task_lookup(const struct eng_model *m, const char *name);

/* Bytes of weights held in memory (excluding the mapped file), for logs. */
size_t eng_model_weight_bytes(const struct eng_model *m);

/* A context: activation buffers sized for p->max_batch_tokens, plus
 * p->n_threads - 1 worker threads. `m` must outlive it. Free with
 * eng_ctx_free. */
struct eng_ctx *eng_ctx_new(const struct eng_model *m, const struct eng_params *p, char *err,
                            size_t errlen);
void eng_ctx_free(struct eng_ctx *c);

/* Token capacity of one eng_encode call. */
int eng_ctx_capacity(const struct eng_ctx *c);

/* The model the context runs (borrowed). */
const struct eng_model *eng_ctx_model(const struct eng_ctx *c);

/* Runs one forward pass over all `n_seqs` sequences packed together (matrix
 * products over all their tokens, attention within each sequence) and writes
 * each sequence's span means into seq->out (not normalised). The sum of n_ids
 * must not exceed eng_ctx_capacity. Returns 0, ENG_ETOOLONG, or ENG_EINVAL
 * (bad id, task or span; nothing is written then). One thread at a time. */
int eng_encode(struct eng_ctx *c, const struct eng_seq *seqs, int32_t n_seqs);

/* Final embedding from a pooled vector: keeps the first `dims` values
 * (Matryoshka; dims <= 0 or > n_embd means all), then L2-normalises them if
 * `normalize` (eps 1e-12, as F.normalize). Writes `dims` floats to out, which
 * may alias pooled. Returns the number of values written. Thread-safe. */
int eng_embd_finish(const float *pooled, int n_embd, int dims, bool normalize, float *out);

#ifdef __cplusplus
}
#endif
#endif
