/* model_arch.h -- what the engine knows about one model architecture.
 *
 * An architecture is described once, as data (struct eng_arch): how its
 * config.json is recognised, which config fields it reads, the name of every
 * tensor per role, its position scheme, MLP kind, norm placement, whether it
 * carries task adapters (LoRA) and the aliases of its task names. model.c
 * loads any described architecture through this table; encoder.c builds
 * each layer from an attention block (with the position mode) and an FFN
 * block (with the MLP kind). Adding a family is a new description file plus
 * one row in eng_archs[] (model_arch.c), and a new position mode or MLP kind
 * in encoder.c where it is not implemented yet.
 *
 * Internal to engine/ (and the tests): server/ sees only engine.h.
 * Every description is static const data: thread-safe to read.
 */
#ifndef EMB_MODEL_ARCH_H
#define EMB_MODEL_ARCH_H

#include <stdbool.h>
#include <stddef.h>

/* How token positions enter the model. */
enum eng_pos_kind {
    ENG_POS_ROTARY = 0, /* RoPE (NeoX half rotation) on Q and K: implemented */
    ENG_POS_ABSOLUTE,   /* learned position embeddings added to the input: not implemented */
    ENG_POS_ALIBI,      /* symmetric ALiBi bias -slope_h * |i - j| on the scores: implemented */
    ENG_POS_N
};

/* The feed-forward block. */
enum eng_ffn_kind {
    ENG_FFN_GELU = 0, /* down(gelu(up(x))): implemented */
    ENG_FFN_GEGLU,    /* down(gelu(gate) * value), up producing both halves (the
                         description's glu_gate_second says which half is the gate):
                         implemented */
    ENG_FFN_N
};

/* Where a layer's LayerNorms sit. */
enum eng_norm_place {
    ENG_NORM_POST = 0, /* x = LN(x + block(x)) (BERT, XLM-R): implemented */
    ENG_NORM_PRE,      /* x = x + block(LN(x)): not implemented */
    ENG_NORM_N
};

/* Tensor roles. Model-level roles come first; the layer roles' names are
 * formats in which "%d" stands for the layer index. */
enum eng_role {
    ENG_ROLE_TOK_EMBD = 0, /* word embeddings [n_vocab][n_embd] */
    ENG_ROLE_TYPE_EMBD,    /* token-type embeddings [type_vocab][n_embd], row 0 used */
    ENG_ROLE_POS_EMBD,     /* absolute position embeddings (ENG_POS_ABSOLUTE only) */
    ENG_ROLE_EMB_NORM,     /* LayerNorm after the embeddings */
    ENG_ROLE_ATTN_QKV,     /* fused Q|K|V projection [3 n_embd][n_embd], head-major */
    ENG_ROLE_ATTN_Q,       /* or separate Q, K, V projections [n_embd][n_embd] each */
    ENG_ROLE_ATTN_K,       /* (ATTN_QKV's weight name NULL), concatenated into the */
    ENG_ROLE_ATTN_V,       /* fused matrix at load; not with task adapters */
    ENG_ROLE_ATTN_OUT,     /* attention output projection [n_embd][n_embd] */
    ENG_ROLE_ATTN_NORM,    /* LayerNorm after attention (post-LN) */
    ENG_ROLE_FFN_UP,       /* [n_ff][n_embd] (GEGLU: [2 n_ff][n_embd]) */
    ENG_ROLE_FFN_DOWN,     /* [n_embd][n_ff] */
    ENG_ROLE_FFN_NORM,     /* LayerNorm after the FFN (post-LN) */
    /* Optional roles (weight name NULL: the architecture has none). */
    ENG_ROLE_ATTN_Q_NORM, /* LayerNorm over the whole width of Q, before the heads split */
    ENG_ROLE_ATTN_K_NORM, /* the same for K (both or neither) */
    ENG_ROLE_ATTN_NORM2,  /* a second LayerNorm after ATTN_NORM, over its output plus the
                             layer's input again: x = LN2(LN(x + attn) + x) */
    ENG_ROLE_N
};

/* The tensors of one role. w: the weight (a norm's scale); b: the bias, or
 * NULL where the architecture has none; lora_a / lora_b: the task adapters'
 * factors (NULL without adapters). Names are complete safetensors keys. */
struct eng_role_names {
    const char *w, *b, *lora_a, *lora_b;
};

/* One numeric config.json field, stored into struct eng_info at `off`
 * (an int for ENG_FIELD_INT, a float for ENG_FIELD_NUM). A field with
 * `required` false takes `def` when absent (an ENG_FIELD_NUM field also when
 * null); a present value outside [lo, hi] is refused. */
enum eng_field_kind { ENG_FIELD_INT, ENG_FIELD_NUM };
struct eng_field {
    const char *key;
    enum eng_field_kind kind;
    bool required;
    double def, lo, hi;
    size_t off;
};

struct eng_arch {
    const char *name; /* family name for messages and the model card */
    /* Recognition: config.json's "architectures" list names one of these,
     * or its "model_type" is one of these (NULL-terminated lists). */
    const char *const *architectures;
    const char *const *model_types;
    const char *weights_file; /* in the model directory */
    const struct eng_field *fields;
    int n_fields;
    /* the token limit is max_position_embeddings (default max_position_default)
     * minus max_position_offset */
    int max_position_default, max_position_offset;
    int n_type_rows;        /* rows of the token-type table (row 0 is used) */
    const char *hidden_act; /* the one accepted "hidden_act" (absent also accepted) */
    enum eng_pos_kind pos;
    enum eng_ffn_kind ffn;
    enum eng_norm_place norm;
    bool glu_gate_second; /* GEGLU: the second half of up's output gets the GELU (and
                             multiplies the first); false: the first half does */
    /* Task adapters: the config key listing them in adapter order, and the
     * one mapping a task to its instruction prefix; NULL without adapters.
     * lora_rank and lora_alpha are then among the fields. */
    const char *tasks_key, *prefixes_key;
    const char *const (*task_aliases)[2]; /* {alias, task}, n_task_aliases of them */
    int n_task_aliases;
    struct eng_role_names tensors[ENG_ROLE_N];
    /* String settings config.json must carry with exactly this value
     * ({key, value}, n_fixed of them), e.g. {"feed_forward_type", "geglu"}. */
    const char *const (*fixed)[2];
    int n_fixed;
    /* Layout variants: descriptions sharing one `architectures` list (and
     * `model_types`) are told apart by their weights. `marker` names a tensor
     * only this layout has; the first sibling (in eng_archs order) whose
     * marker is in the weights file is used, else the one config.json
     * selected. NULL: no marker. */
    const char *marker;
    /* A prefix every tensor name may carry in the weights file (a checkpoint
     * saved from a ...ForMaskedLM wrapper: "bert."), or NULL. The file's word
     * embeddings decide: under the plain name, else under the prefix. */
    const char *alt_prefix;
};

/* The known architectures, NULL-terminated; the first is the default for a
 * config.json that names none. */
extern const struct eng_arch *const eng_archs[];

/* Descriptions (one file each: engine/model_<family>.c). */
extern const struct eng_arch eng_arch_jina_v3;
extern const struct eng_arch eng_arch_jina_v2;      /* JinaBERT: -small/base-en, de, es, zh */
extern const struct eng_arch eng_arch_jina_v2_code; /* JinaBERT qk-post-norm: -base-code */

/* Names for messages: "rotary", "absolute", "alibi"; "gelu", "geglu"; "post", "pre". */
const char *eng_pos_kind_name(enum eng_pos_kind k);
const char *eng_ffn_kind_name(enum eng_ffn_kind k);

/* Position scheme named by a config.json "position_embedding_type" value, or
 * -1 if the string names none. */
int eng_pos_kind_parse(const char *s);

/* The sibling of `a` (see `marker`) whose marker `has(ctx, name)` finds,
 * else `a`. `has` is asked for complete tensor names. */
const struct eng_arch *eng_arch_variant(const struct eng_arch *a,
                                        bool (*has)(void *ctx, const char *name), void *ctx);

/* ALiBi slopes of n heads into slopes[n]: for n a power of two,
 * slope_h = 2^(-8 (h + 1) / n); otherwise, with p the largest power of two
 * below n, the p slopes for p heads followed by the first n - p of the
 * even-indexed slopes (0, 2, 4, ...) for 2p heads. Computed in double,
 * rounded to float. */
void eng_alibi_slopes(int n, float *slopes);

/* Checks that the engine implements everything `a` asks for (position mode,
 * MLP kind, norm placement, the tensors those need). 0, or -1 with a message
 * naming the architecture and the missing piece. */
int eng_arch_check(const struct eng_arch *a, char *err, size_t errlen);

/* The description config.json selects (root: the parsed file, path: for
 * messages): by "architectures", else by "model_type", else the default.
 * NULL with a message listing the known architectures if it names an
 * unknown one. */
struct cJSON;
const struct eng_arch *eng_arch_find(const struct cJSON *root, const char *path, char *err,
                                     size_t errlen);

/* Loads the model in `dir` with description `a` instead of the one its
 * config.json selects (tests, and tools converting between layouts);
 * otherwise as eng_model_open. */
struct eng_params;
struct eng_model *eng_model_open_arch(const char *dir, const struct eng_arch *a,
                                      const struct eng_params *p, char *err, size_t errlen);

/* Writes role name `fmt` with "%d" replaced by `il` into out[n]. Returns 0,
 * or -1 if it does not fit. */
int eng_tensor_name(char *out, size_t n, const char *fmt, int il);

#endif
