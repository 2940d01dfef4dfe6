/* engine.h -- the embedding-model inference engine.
 *
 * Loads a model directory (config.json + weights) of a known architecture
 * (jina-embeddings-v3: the XLM-RoBERTa encoder with rotary positions and
 * per-sequence task LoRA adapters; jina-embeddings-v2: JinaBERT with ALiBi
 * and a gated MLP, no adapters, in its en and code layouts), validates every
 * tensor against the config, and runs the encoder over packed batches of
 * token sequences, mean-pooling each requested span. docs/model.md describes
 * the math.
 *
 * Conventions (whole header):
 * - Status-returning functions return 0 on success or a negative ENG_E* code.
 * - Constructors return a pointer or NULL and write a one-line reason into
 *   err[errlen] (always NUL-terminated when errlen > 0).
 * - Every *_close / *_free accepts NULL.
 *
 * Thread-safety:
 * - A struct eng_model is immutable after eng_model_open returns: any number
 *   of threads may read it (eng_model_info, eng_task_resolve) concurrently.
 * - A struct eng_ctx holds activation buffers and worker threads; it must be
 *   used by one thread at a time (the server's engine thread). The one
 *   exception is eng_ctx_cancel, which any thread may call at any time.
 */
#ifndef EMB_ENGINE_H
#define EMB_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ENG_MAX_TASKS        8
#define ENG_MAX_MATRYOSHKA   16
#define ENG_MAX_PREFIX_BYTES 4096 /* longest task instruction accepted from config.json */
#define ENG_TASK_NONE        (-1) /* base weights: no adapter, no prefix */

/* Error codes: negative and from -101 down, so that no code equals an
 * adapter index (>= 0) or ENG_TASK_NONE (-1). eng_strerror names each. */
#define ENG_FOR_EACH_ERROR(X)                                               \
    X(ENG_EINVAL, -101, "invalid argument (token id, task, span or count)") \
    X(ENG_ETOOLONG, -102, "the batch exceeds the context's token capacity") \
    X(ENG_ENOMEM, -103, "out of memory")                                    \
    X(ENG_EIO, -104, "model files missing, truncated or inconsistent")      \
    X(ENG_ENOTASK, -105, "no task of that name")                            \
    X(ENG_ECANCELED, -106, "the forward pass was cancelled (eng_ctx_cancel)")
enum eng_error {
#define ENG_ERROR_ENUM(name, value, text) name = (value),
    ENG_FOR_EACH_ERROR(ENG_ERROR_ENUM)
#undef ENG_ERROR_ENUM
};

/* A static description of an ENG_E* code ("unknown engine error" for any
 * other value). Thread-safe. */
const char *eng_strerror(int code);

/* Numeric precision of the weights used for the matrix products. */
enum eng_dtype {
    ENG_DTYPE_AUTO = 0, /* bf16 where the CPU has AVX512_BF16, else f32 */
    ENG_DTYPE_F32,      /* exact mode: f32 activations and accumulation, weights kept in the
                           checkpoint's precision; bitwise independent of the batch */
    ENG_DTYPE_BF16,     /* bf16 weights and activations, f32 accumulation (AVX512_BF16) */
    ENG_DTYPE_INT8,     /* int8 per-channel weights, u8 activations with a zero point per row,
                           i32 accumulation; on every CPU (AVX512_VNNI, AVX2, portable C: the
                           same bits at each level); opt-in: AUTO never picks it */
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
    /* Copy the word-embedding table (250002 rows: 512 MB in bf16) into memory
     * at load. By default (false) each token's row is read from the weights
     * file when a batch needs it: the process's resident memory is that much
     * smaller and the results are the same bits. */
    bool embeddings_in_memory;
};

/* Model facts read from config.json (through the architecture's
 * description); the server's model card comes from here (name, arch, tasks,
 * Matryoshka sizes, max_position, dtype). Strings are owned by the model and
 * live until eng_model_close. */
struct eng_info {
    int n_embd;    /* hidden_size */
    int n_layer;   /* num_hidden_layers */
    int n_head;    /* num_attention_heads */
    int n_ff;      /* intermediate_size */
    int n_vocab;   /* vocab_size */
    int lora_rank; /* 0 for a family without task adapters */
    float lora_alpha;
    float rope_base; /* rotary positions only */
    float ln_eps;
    int max_position; /* the model's token limit: max_position_embeddings less the
                         family's offset (2 for XLM-R: 8194 -> 8192; 0 for v2) */
    int n_tasks;      /* task adapters (len(lora_adaptations)); 0 without */
    const char *task_name[ENG_MAX_TASKS];   /* adapter index -> name */
    const char *task_prefix[ENG_MAX_TASKS]; /* adapter index -> instruction ("" if none) */
    int n_matryoshka; /* Matryoshka sizes the model was trained for (config.json's */
    int matryoshka[ENG_MAX_MATRYOSHKA]; /* "matryoshka_dimensions" within 1..n_embd) */
    const char *name; /* _name_or_path, or "" (the model card's Hugging Face id) */
    const char *arch; /* the architecture family: "jina-embeddings-v3",
                         "jina-embeddings-v2" or "jina-embeddings-v2-code" */
    const char *const (*task_alias)[2]; /* [n_task_alias] {alias, task name} of the family */
    int n_task_alias;
    enum eng_dtype dtype;      /* precision the matrix products run in (never AUTO) */
    uint32_t cpu_features;     /* the CPU_* bits in use (requested and present) */
    const char *kernel;        /* the matrix-product kernel ("avx2-exact", "avx512bf16", ...) */
    const char *attn_kernel;   /* the attention kernel ("avx2-attn", "generic-attn", or the
                                  bf16 product kernel in the low-precision modes; int8:
                                  "<Q K^T's int8 kernel>/<P V's bf16 kernel>") */
    bool embeddings_in_memory; /* the word table was copied (eng_params), or is read from
                                  the weights file per token */
    size_t embeddings_bytes;   /* the word table's size in the file */
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

/* Opens the model in directory `dir`: reads config.json, recognises the
 * architecture (an unknown one is refused with a message listing the known
 * ones), maps its weights file (model.safetensors), validates presence,
 * dtype (BF16, F16 or F32), shape and file bounds of every tensor, and
 * prepares the weights for `p->dtype`. Returns NULL with a message naming
 * the file and tensor on any problem. The caller frees the result with
 * eng_model_close. */
struct eng_model *eng_model_open(const char *dir, const struct eng_params *p, char *err,
                                 size_t errlen);
void eng_model_close(struct eng_model *m);

/* Borrowed; valid until eng_model_close. Thread-safe. */
const struct eng_info *eng_model_info(const struct eng_model *m);

/* The one task-name resolver for requests, settings and the CLI. Accepts
 * the model's adapter names ("retrieval.query", ...) and its family's
 * aliases (in->task_alias: "query", "passage", "document", "clustering" for
 * jina-embeddings-v3). Returns the adapter index (>= 0), ENG_TASK_NONE for
 * name == NULL, or ENG_ENOTASK for any other name ("" and "none"
 * included: callers that give those a meaning test them first), writing
 * into err[errlen] (if err is not NULL) a message that names the bad task and
 * lists the valid names. Takes the info, not the model, so a caller holding
 * only the facts (the API layer, its tests) resolves the same way.
 * Thread-safe; `in` is borrowed for the call. */
int eng_task_resolve(const struct eng_info *in, const char *name, char *err, size_t errlen);

/* eng_task_resolve without the message (kept for existing callers). */
int eng_task_lookup(const struct eng_model *m, const char *name);

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
 * must not exceed eng_ctx_capacity. Returns 0, ENG_ETOOLONG, ENG_EINVAL
 * (bad id, task or span; nothing is written then), or ENG_ECANCELED (see
 * eng_ctx_cancel; nothing is written then either), or ENG_EIO (the word
 * embeddings are read from the weights file, and it was rewritten or cut
 * short in place since eng_model_open; nothing is written). One thread at a time. */
int eng_encode(struct eng_ctx *c, const struct eng_seq *seqs, int32_t n_seqs);

/* Asks the eng_encode running on c to stop early: it returns ENG_ECANCELED
 * at its next check -- before each layer's attention and MLP blocks, between
 * the MLP's token chunks, and between attention tiles -- so within a fraction
 * of one layer, without writing any output. If no pass is running, the next
 * eng_encode on c is the one cancelled (at its first check); the request is
 * used up by the pass that honours it. Thread-safe and lock-free: the one
 * function that may run while another thread is inside eng_encode on c (a
 * shutdown timer, a signal-handling thread). */
void eng_ctx_cancel(struct eng_ctx *c);

/* Final embedding from a pooled vector: keeps the first `dims` values
 * (Matryoshka; dims <= 0 or > n_embd means all), then L2-normalises them if
 * `normalize` (eps 1e-12, as F.normalize). Writes `dims` floats to out, which
 * may alias pooled. Returns the number of values written. Thread-safe. */
int eng_embd_finish(const float *pooled, int n_embd, int dims, bool normalize, float *out);

#ifdef __cplusplus
}
#endif
#endif
