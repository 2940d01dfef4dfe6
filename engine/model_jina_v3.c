/* model_jina_v3.c -- jina-embeddings-v3: the XLM-RoBERTa "flash" encoder
 * with rotary positions, post-LN layers, an exact-GELU MLP and five task
 * LoRA adapters stored inside every linear and embedding tensor
 * (docs/model.md describes the math). The checkpoint keeps the adapters as
 * torch parametrizations: a weight W of module M is saved as
 * M.parametrizations.weight.original, its factors as ...weight.0.lora_A/B. */
#include "engine/engine_impl.h"

#include <stddef.h>

#define PARAM(m)  "roberta." m ".parametrizations.weight.original"
#define LORA_A(m) "roberta." m ".parametrizations.weight.0.lora_A"
#define LORA_B(m) "roberta." m ".parametrizations.weight.0.lora_B"
/* an adapted linear or embedding; a plain LayerNorm */
#define ADAPTED(m, bias) \
    { PARAM(m), bias, LORA_A(m), LORA_B(m) }
#define LINEAR(m) ADAPTED(m, "roberta." m ".bias")
#define NORM(m) \
    { "roberta." m ".weight", "roberta." m ".bias", NULL, NULL }
#define LAYER "encoder.layers.%d."

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
    INT_FIELD("lora_rank", 1, 256, lora_rank),
    NUM_FIELD("lora_alpha", 1.0, 0, 1e6, lora_alpha),
    NUM_FIELD("rotary_emb_base", 10000.0, 1.0, 1e12, rope_base),
    NUM_FIELD("layer_norm_eps", 1e-5, 0, 1, ln_eps),
};

static const char *const architectures[] = {"XLMRobertaModel", "XLMRobertaLoRA", NULL};

/* Short names clients send for the tasks (Jina's API and LangChain's
 * input_type values). */
static const char *const task_aliases[][2] = {
    {"query", "retrieval.query"},
    {"passage", "retrieval.passage"},
    {"document", "retrieval.passage"},
    {"clustering", "separation"},
};

const struct eng_arch eng_arch_jina_v3 = {
    .name = "jina-embeddings-v3",
    .architectures = architectures,
    .model_types = NULL, /* the published config.json has no model_type */
    .weights_file = "model.safetensors",
    .fields = fields,
    .n_fields = (int)(sizeof(fields) / sizeof(fields[0])),
    .max_position_default = 8194,
    .max_position_offset = 2, /* XLM-R convention: 8194 = 8192 + pad + 1 */
    .n_type_rows = 1,
    .hidden_act = "gelu",
    .pos = ENG_POS_ROTARY,
    .ffn = ENG_FFN_GELU,
    .norm = ENG_NORM_POST,
    .tasks_key = "lora_adaptations",
    .prefixes_key = "task_instructions",
    .task_aliases = task_aliases,
    .n_task_aliases = (int)(sizeof(task_aliases) / sizeof(task_aliases[0])),
    .tensors =
        {
            [ENG_ROLE_TOK_EMBD] = ADAPTED("embeddings.word_embeddings", NULL),
            [ENG_ROLE_TYPE_EMBD] = ADAPTED("embeddings.token_type_embeddings", NULL),
            [ENG_ROLE_POS_EMBD] = {NULL, NULL, NULL, NULL}, /* rotary: none */
            [ENG_ROLE_EMB_NORM] = NORM("emb_ln"),
            [ENG_ROLE_ATTN_QKV] = LINEAR(LAYER "mixer.Wqkv"),
            [ENG_ROLE_ATTN_OUT] = LINEAR(LAYER "mixer.out_proj"),
            [ENG_ROLE_ATTN_NORM] = NORM(LAYER "norm1"),
            [ENG_ROLE_FFN_UP] = LINEAR(LAYER "mlp.fc1"),
            [ENG_ROLE_FFN_DOWN] = LINEAR(LAYER "mlp.fc2"),
            [ENG_ROLE_FFN_NORM] = NORM(LAYER "norm2"),
        },
};
