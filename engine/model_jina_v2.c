/* model_jina_v2.c -- jina-embeddings-v2 (JinaBERT): a BERT encoder without
 * position embeddings, with symmetric ALiBi on the attention scores, post-LN
 * layers and a gated-GELU MLP; no task adapters (docs/model.md describes the
 * math). Two layouts share config.json's "architectures":
 * - the en family (-small-en, -base-en, -base-de, -base-es, -base-zh):
 *   mlp.gated_layers (GELU on the first half), mlp.wo, mlp.layernorm;
 * - -base-code ("qk post-norm"): LayerNorms on Q and K over the whole width,
 *   a second LayerNorm after attention that adds the layer input again,
 *   mlp.up_gated_layer (GELU on the second half), mlp.down_layer, and
 *   layer_norm_2 after the MLP.
 * The weights file tells them apart (marker). Checkpoints saved from the
 * masked-LM wrapper carry every name under "bert.". */
#include "engine/engine_impl.h"

#include <stddef.h>

#define T(m) "encoder.layer.%d." m
#define WB(m) \
    { m ".weight", m ".bias", NULL, NULL }
#define W_ONLY(m) \
    { m ".weight", NULL, NULL, NULL }
#define LAYER_WB(m)   WB(T(m))
#define LAYER_ONLY(m) W_ONLY(T(m))

#define INT_FIELD(key, lo, hi, field) \
    { key, ENG_FIELD_INT, true, 0, lo, hi, offsetof(struct eng_info, field) }
#define NUM_FIELD(key, def, lo, hi, field) \
    { key, ENG_FIELD_NUM, false, def, lo, hi, offsetof(struct eng_info, field) }

static const struct eng_field fields[] = {
    INT_FIELD("hidden_size", 2, 65536, n_embd),
    INT_FIELD("num_hidden_layers", 1, 256, n_layer),
    INT_FIELD("num_attention_heads", 1, 1024, n_head),
    INT_FIELD("intermediate_size", 1, 1 << 20, n_ff),
    INT_FIELD("vocab_size", 4, 1 << 24, n_vocab),
    NUM_FIELD("layer_norm_eps", 1e-12, 0, 1, ln_eps),
};

/* JinaBertForMaskedLM in the published configs; JinaBertModel when saved
 * from the bare encoder. Shared by both layouts (the marker decides). */
static const char *const architectures[] = {"JinaBertForMaskedLM", "JinaBertModel", NULL};

static const char *const fixed[][2] = {
    {"model_type", "bert"},
    {"feed_forward_type", "geglu"},
};

#define V2_COMMON                                                                             \
    .architectures = architectures, .model_types = NULL, .weights_file = "model.safetensors", \
    .fields = fields, .n_fields = (int)(sizeof(fields) / sizeof(fields[0])),                  \
    .max_position_default = 8192, .max_position_offset = 0, .n_type_rows = 2,                 \
    .hidden_act = "gelu", .pos = ENG_POS_ALIBI, .ffn = ENG_FFN_GEGLU, .norm = ENG_NORM_POST,  \
    .tasks_key = NULL, .prefixes_key = NULL, .task_aliases = NULL, .n_task_aliases = 0,       \
    .fixed = fixed, .n_fixed = (int)(sizeof(fixed) / sizeof(fixed[0])), .alt_prefix = "bert."

/* No position embeddings (ALiBi); separate Q, K, V projections (the fused
 * QKV role stays unnamed). */
#define V2_EMBEDDINGS_AND_ATTENTION                                    \
    [ENG_ROLE_TOK_EMBD] = W_ONLY("embeddings.word_embeddings"),        \
    [ENG_ROLE_TYPE_EMBD] = W_ONLY("embeddings.token_type_embeddings"), \
    [ENG_ROLE_EMB_NORM] = WB("embeddings.LayerNorm"),                  \
    [ENG_ROLE_ATTN_Q] = LAYER_WB("attention.self.query"),              \
    [ENG_ROLE_ATTN_K] = LAYER_WB("attention.self.key"),                \
    [ENG_ROLE_ATTN_V] = LAYER_WB("attention.self.value"),              \
    [ENG_ROLE_ATTN_OUT] = LAYER_WB("attention.output.dense"),          \
    [ENG_ROLE_ATTN_NORM] = LAYER_WB("attention.output.LayerNorm")

const struct eng_arch eng_arch_jina_v2 = {
    .name = "jina-embeddings-v2",
    V2_COMMON,
    .glu_gate_second = false, /* gelu(first half) * second half */
    .marker = T("mlp.gated_layers.weight"),
    .tensors =
        {
            V2_EMBEDDINGS_AND_ATTENTION,
            [ENG_ROLE_FFN_UP] = LAYER_ONLY("mlp.gated_layers"), /* [2 F][H], no bias */
            [ENG_ROLE_FFN_DOWN] = LAYER_WB("mlp.wo"),
            [ENG_ROLE_FFN_NORM] = LAYER_WB("mlp.layernorm"),
        },
};

const struct eng_arch eng_arch_jina_v2_code = {
    .name = "jina-embeddings-v2-code",
    V2_COMMON,
    .glu_gate_second = true, /* first half ("up") * gelu(second half) */
    .marker = T("mlp.up_gated_layer.weight"),
    .tensors =
        {
            V2_EMBEDDINGS_AND_ATTENTION,
            [ENG_ROLE_FFN_UP] = LAYER_ONLY("mlp.up_gated_layer"), /* [2 F][H], no bias */
            [ENG_ROLE_FFN_DOWN] = LAYER_WB("mlp.down_layer"),
            [ENG_ROLE_FFN_NORM] = LAYER_WB("layer_norm_2"),
            [ENG_ROLE_ATTN_Q_NORM] = LAYER_WB("attention.self.layer_norm_q"),
            [ENG_ROLE_ATTN_K_NORM] = LAYER_WB("attention.self.layer_norm_k"),
            [ENG_ROLE_ATTN_NORM2] = LAYER_WB("layer_norm_1"),
        },
};
