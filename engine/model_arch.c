/* model_arch.c -- the table of known architectures, recognising one from
 * config.json, and checking that the engine implements what it describes.
 * The descriptions themselves live one per file (engine/model_<family>.c). */
#include "engine/engine_impl.h"

#include <cJSON.h>
#include <math.h>
#include <string.h>

/* The first entry is the default for a config.json that names no architecture. */
const struct eng_arch *const eng_archs[] = {&eng_arch_jina_v3, &eng_arch_jina_v2,
                                            &eng_arch_jina_v2_code, NULL};

static const char *const pos_names[ENG_POS_N] = {"rotary", "absolute", "alibi"};
static const char *const ffn_names[ENG_FFN_N] = {"gelu", "geglu"};
static const char *const norm_names[ENG_NORM_N] = {"post", "pre"};

const char *eng_pos_kind_name(enum eng_pos_kind k) {
    return (unsigned)k < ENG_POS_N ? pos_names[k] : "?";
}

const char *eng_ffn_kind_name(enum eng_ffn_kind k) {
    return (unsigned)k < ENG_FFN_N ? ffn_names[k] : "?";
}

int eng_pos_kind_parse(const char *s) {
    for (int k = 0; s && k < ENG_POS_N; k++)
        if (!strcmp(s, pos_names[k])) return k;
    return -1;
}

static bool in_list(const char *const *list, const char *s) {
    for (; list && *list; list++)
        if (!strcmp(*list, s)) return true;
    return false;
}

/* "jina-embeddings-v3 (architectures A, B; model_type c), ..." into err. */
static void known_list(char *out, size_t n) {
    size_t k = 0;
    out[0] = 0;
    for (int i = 0; eng_archs[i] && k < n; i++) {
        const struct eng_arch *a = eng_archs[i];
        k += (size_t)snprintf(out + k, n - k, "%s%s (architectures", i ? ", " : "", a->name);
        for (int j = 0; a->architectures && a->architectures[j] && k < n; j++)
            k += (size_t)snprintf(out + k, n - k, "%s %s", j ? "," : "", a->architectures[j]);
        for (int j = 0; a->model_types && a->model_types[j] && k < n; j++)
            k += (size_t)snprintf(out + k, n - k, "%s %s", j ? "," : "; model_type",
                                  a->model_types[j]);
        if (k < n) k += (size_t)snprintf(out + k, n - k, ")");
    }
}

const struct eng_arch *eng_arch_find(const cJSON *root, const char *path, char *err,
                                     size_t errlen) {
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type"), *e;
    char known[512];
    if (archs && !cJSON_IsNull(archs) && !cJSON_IsArray(archs)) {
        snprintf(err, errlen, "%s: \"architectures\" must be a list of names", path);
        return NULL;
    }
    if (mt && !cJSON_IsNull(mt) && !cJSON_IsString(mt)) {
        snprintf(err, errlen, "%s: \"model_type\" must be a string", path);
        return NULL;
    }
    cJSON_ArrayForEach(e, archs) {
        for (int i = 0; cJSON_IsString(e) && eng_archs[i]; i++)
            if (in_list(eng_archs[i]->architectures, e->valuestring)) return eng_archs[i];
    }
    for (int i = 0; cJSON_IsString(mt) && eng_archs[i]; i++)
        if (in_list(eng_archs[i]->model_types, mt->valuestring)) return eng_archs[i];
    if (cJSON_GetArraySize(archs) == 0 && !cJSON_IsString(mt)) return eng_archs[0];
    e = cJSON_GetArrayItem(archs, 0);
    known_list(known, sizeof(known));
    snprintf(err, errlen,
             "%s: unknown model architecture \"%.80s\" (model_type \"%.40s\"); "
             "known: %s",
             path, cJSON_IsString(e) ? e->valuestring : "",
             cJSON_IsString(mt) ? mt->valuestring : "", known);
    return NULL;
}

const struct eng_arch *eng_arch_variant(const struct eng_arch *a,
                                        bool (*has)(void *ctx, const char *name), void *ctx) {
    char nm[256];
    for (int i = 0; eng_archs[i]; i++) {
        const struct eng_arch *b = eng_archs[i];
        if (b->architectures != a->architectures || b->model_types != a->model_types || !b->marker)
            continue;
        if (eng_tensor_name(nm, sizeof(nm), b->marker, 0) == 0 && has(ctx, nm)) return b;
    }
    return a;
}

/* 2^(-8 (i + 1) / n) for head i of n (n a power of two), computed in double
 * and rounded to float once (the published code builds the slopes in double
 * and stores them in a float tensor). */
static float alibi_pow2_slope(int i, int n) {
    return (float)exp2(-8.0 * (i + 1) / n);
}

void eng_alibi_slopes(int n, float *slopes) {
    int p = 1;
    while (p * 2 <= n)
        p *= 2;
    for (int h = 0; h < p && h < n; h++)
        slopes[h] = alibi_pow2_slope(h, p);
    for (int k = 0; p + k < n; k++)
        slopes[p + k] = alibi_pow2_slope(2 * k, 2 * p);
}

int eng_arch_check(const struct eng_arch *a, char *err, size_t errlen) {
    const struct eng_role_names *t = a->tensors;
    bool lora = a->tasks_key != NULL;
    if (!enc_pos_supported(a->pos)) {
        snprintf(err, errlen, "%s: position scheme \"%s\" is not implemented by this engine",
                 a->name, eng_pos_kind_name(a->pos));
        return -1;
    }
    if (!enc_ffn_supported(a->ffn)) {
        snprintf(err, errlen, "%s: MLP kind \"%s\" is not implemented by this engine", a->name,
                 eng_ffn_kind_name(a->ffn));
        return -1;
    }
    if (!enc_norm_supported(a->norm)) {
        snprintf(err, errlen, "%s: %s-LayerNorm layers are not implemented by this engine", a->name,
                 (unsigned)a->norm < ENG_NORM_N ? norm_names[a->norm] : "?");
        return -1;
    }
    bool split = !t[ENG_ROLE_ATTN_QKV].w;
    if (split && (lora || !t[ENG_ROLE_ATTN_Q].w || !t[ENG_ROLE_ATTN_K].w || !t[ENG_ROLE_ATTN_V].w ||
                  !t[ENG_ROLE_ATTN_Q].b != !t[ENG_ROLE_ATTN_K].b ||
                  !t[ENG_ROLE_ATTN_Q].b != !t[ENG_ROLE_ATTN_V].b)) {
        snprintf(err, errlen,
                 "%s: separate Q, K, V projections need all three (biases on all or none) "
                 "and no task adapters",
                 a->name);
        return -1;
    }
    if (!t[ENG_ROLE_ATTN_Q_NORM].w != !t[ENG_ROLE_ATTN_K_NORM].w) {
        snprintf(err, errlen, "%s: a norm on queries needs one on keys (and the reverse)", a->name);
        return -1;
    }
    for (int r = 0; r < ENG_ROLE_N; r++) {
        bool optional =
            r == ENG_ROLE_ATTN_Q_NORM || r == ENG_ROLE_ATTN_K_NORM || r == ENG_ROLE_ATTN_NORM2;
        if (optional) {
            if (t[r].w && (!t[r].b || t[r].lora_a || t[r].lora_b)) {
                snprintf(err, errlen,
                         "%s: the description's tensor names for role %d are incomplete", a->name,
                         r);
                return -1;
            }
            continue;
        }
        bool qkv_part = r == ENG_ROLE_ATTN_Q || r == ENG_ROLE_ATTN_K || r == ENG_ROLE_ATTN_V;
        bool want = (r != ENG_ROLE_POS_EMBD || a->pos == ENG_POS_ABSOLUTE) &&
                    (r != ENG_ROLE_ATTN_QKV || !split) && (!qkv_part || split);
        bool norm = r == ENG_ROLE_EMB_NORM || r == ENG_ROLE_ATTN_NORM || r == ENG_ROLE_FFN_NORM;
        bool lin = r == ENG_ROLE_ATTN_QKV || r == ENG_ROLE_ATTN_OUT || r == ENG_ROLE_FFN_UP ||
                   r == ENG_ROLE_FFN_DOWN;
        bool has_lora = r == ENG_ROLE_TOK_EMBD || r == ENG_ROLE_TYPE_EMBD || lin;
        if ((want && !t[r].w) || (want && norm && !t[r].b) ||
            (want && lora && has_lora && (!t[r].lora_a || !t[r].lora_b)) ||
            (!lora && (t[r].lora_a || t[r].lora_b))) {
            snprintf(err, errlen, "%s: the description's tensor names for role %d are incomplete",
                     a->name, r);
            return -1;
        }
    }
    if (a->n_type_rows < 1 || (lora && (!a->prefixes_key))) {
        snprintf(err, errlen, "%s: incomplete description", a->name);
        return -1;
    }
    return 0;
}

int eng_tensor_name(char *out, size_t n, const char *fmt, int il) {
    const char *at = strstr(fmt, "%d");
    int k = at ? snprintf(out, n, "%.*s%d%s", (int)(at - fmt), fmt, il, at + 2)
               : snprintf(out, n, "%s", fmt);
    return k >= 0 && (size_t)k < n ? 0 : -1;
}
