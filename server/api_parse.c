/* api_parse.c -- request bodies (JSON, parsed with cJSON and copied out)
 * to native structs (see api.h). */
#include "server/api.h"
#include "server/api_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "util/alloc.h"
#include "util/strbuf.h"

/* ---- parsing helpers ----------------------------------------------------- */

/* Renders a JSON value for an error's "input" (small values only: at most
 * 16 items per container, depth 3, strings cut at 100 bytes). */
static void put_value(struct strbuf *s, const cJSON *v, int depth) {
    if (cJSON_IsString(v)) {
        size_t n = strlen(v->valuestring);
        sb_json_str(s, v->valuestring, n > 100 ? 100 : n);
    } else if (cJSON_IsNumber(v)) {
        if (isfinite(v->valuedouble))
            sb_printf(s, "%.17g", v->valuedouble);
        else
            sb_puts(s, "null");
    } else if (cJSON_IsBool(v)) {
        sb_puts(s, cJSON_IsTrue(v) ? "true" : "false");
    } else if ((cJSON_IsArray(v) || cJSON_IsObject(v)) && depth < 3) {
        bool obj = cJSON_IsObject(v);
        sb_putc(s, obj ? '{' : '[');
        int i = 0;
        for (const cJSON *c = v->child; c && i < 16; c = c->next, i++) {
            if (i) sb_putc(s, ',');
            if (obj) api_put_key(s, c->string ? c->string : "");
            put_value(s, c, depth + 1);
        }
        sb_putc(s, obj ? '}' : ']');
    } else {
        sb_puts(s, "null");
    }
}

/* Adds a 422 field error (beyond API_MAX_FIELD_ERRORS they are counted in
 * the detail only); `input` is echoed back, cut (put_value). */
static void add_field_error(struct api_error *e, const char *field, const char *type,
                            const cJSON *input, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void add_field_error(struct api_error *e, const char *field, const char *type,
                            const cJSON *input, const char *fmt, ...) {
    char echo[sizeof(e->fields[0].input)] = "";
    if (input) {
        struct strbuf s;
        sb_init(&s);
        put_value(&s, input, 0);
        if (!s.oom && s.len < sizeof(echo)) memcpy(echo, s.buf, s.len + 1);
        sb_deinit(&s);
    }
    va_list ap;
    va_start(ap, fmt);
    api_field_errorv(e, field, type, input ? echo : NULL, fmt, ap);
    va_end(ap);
}

static bool is_null(const cJSON *v) {
    return !v || cJSON_IsNull(v);
}

/* Optional bool: absent/null keeps *out. */
static void get_bool(const cJSON *v, const char *field, bool *out, struct api_error *e) {
    if (is_null(v)) return;
    if (cJSON_IsBool(v))
        *out = cJSON_IsTrue(v);
    else
        add_field_error(e, field, "bool_type", v, "Input should be a valid boolean");
}

/* ---- fields ------------------------------------------------------------- */

/* The request's recognised fields (last occurrence wins, as in Python's json). */
struct fields {
    const cJSON *model, *input, *task, *dimensions, *normalized, *normalize, *embedding_type,
        *encoding_type, *encoding_format, *late_chunking, *truncate, *input_type, *prompt_name,
        *return_multivector, *return_pieces, *truncation_direction, *add_special_tokens;
};

#define K_JINA (API_KB(API_K_EMBED) | API_KB(API_K_TOKENIZE))
#define K_TEI  (API_KB(API_K_TEI_EMBED) | API_KB(API_K_TEI_TOKENIZE))
#define K_OLL  (API_KB(API_K_OLLAMA_EMBED) | API_KB(API_K_OLLAMA_LEGACY))
#define K_EMB  API_KB(API_K_EMBED)
#define K_TOK  API_KB(API_K_TOKENIZE)
#define K_TEIE API_KB(API_K_TEI_EMBED)
#define K_OLLE API_KB(API_K_OLLAMA_EMBED)
#define S_STR  "{\"type\":\"string\"}"
#define S_BOOL "{\"type\":\"boolean\"}"
#define S_INPUT                                                                              \
    "{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"array\",\"items\":{\"oneOf\":[{\"type\":" \
    "\"string\"},{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"}}}]}}]}"
#define S_STRS \
    "{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"array\",\"items\":{\"type\":\"string\"}}]}"
#define S_ENC                                                                                   \
    "{\"oneOf\":[{\"enum\":[\"float\",\"base64\",\"binary\",\"ubinary\"]},{\"type\":\"array\"," \
    "\"items\":{\"enum\":[\"float\",\"base64\",\"binary\",\"ubinary\"]}}]}"

/* The one table of request fields: the parser sorts a body's members by it
 * (collect_fields) and the OpenAPI document lists it, so a field cannot be
 * accepted without being documented. `off` places the member in struct
 * fields; SIZE_MAX marks fields that are accepted and ignored. */
struct field_name {
    struct api_field_doc d;
    size_t off;
};

#define FO(f)   offsetof(struct fields, f)
#define IGNORED ((size_t)-1)
static const struct field_name field_names[] = {
    {{"model", K_JINA | K_OLL, S_STR,
      "model name: picks one of the served models by a name or alias (default: the first "
      "model), optionally with ':<task>' (e.g. jina-embeddings-v3:retrieval.query); required by "
      "the Ollama routes"},
     FO(model)},
    {{"input", K_JINA | K_OLLE, S_INPUT, "text or list of texts (required)"}, FO(input)},
    {{"inputs", K_TEI, S_STRS, "text or list of texts (required)"}, FO(input)},
    {{"prompt", API_KB(API_K_OLLAMA_LEGACY), S_STR, "one text"}, FO(input)},
    {{"task", K_JINA, "{\"type\":[\"string\",\"null\"]}",
      "adapter: retrieval.query, retrieval.passage, separation, classification, text-matching or "
      "an alias (query, passage, document, clustering); default: the model name's task, else "
      "--default-task; ignored by a model without tasks"},
     FO(task)},
    {{"input_type", K_JINA, S_STR,
      "used when task is absent: query/search_query -> retrieval.query, "
      "document/search_document/passage -> retrieval.passage, classification, clustering -> "
      "separation (any task name too)"},
     FO(input_type)},
    {{"prompt_name", K_JINA | K_TEI, S_STR,
      "used when task and input_type are absent: a task name or alias"},
     FO(prompt_name)},
    {{"dimensions", K_EMB | K_TEIE | K_OLLE, "{\"type\":[\"integer\",\"null\"],\"minimum\":0}",
      "Matryoshka size to cut to (default / 0: full size); a model without Matryoshka sizes "
      "takes its full size or more"},
     FO(dimensions)},
    {{"normalized", K_EMB, S_BOOL, "L2-normalise (default true)"}, FO(normalized)},
    {{"normalize", K_EMB | K_TEIE, S_BOOL, "L2-normalise (default true)"}, FO(normalize)},
    {{"embedding_type", K_EMB, S_ENC, "output encoding(s) (default float)"}, FO(embedding_type)},
    {{"encoding_type", K_EMB, S_ENC, "same as embedding_type"}, FO(encoding_type)},
    {{"encoding_format", K_EMB, S_ENC, "same as embedding_type (OpenAI)"}, FO(encoding_format)},
    {{"late_chunking", K_EMB, S_BOOL, "embed the inputs as one context (default false)"},
     FO(late_chunking)},
    {{"truncate", K_JINA | K_TEIE | K_OLLE, S_BOOL,
      "cut over-long inputs instead of failing (default: --auto-truncate on the embedding "
      "routes, true on /api/embed, false on /v1/tokenize)"},
     FO(truncate)},
    {{"truncation_direction", K_TEIE, "{\"enum\":[\"Right\",\"right\",\"Left\",\"left\"]}",
      "Right (default) keeps the start; Left is answered 422 (not supported)"},
     FO(truncation_direction)},
    {{"return_multivector", K_EMB, S_BOOL, "false only (single-vector model)"},
     FO(return_multivector)},
    {{"return_pieces", K_TOK, S_BOOL, "also return the token strings (default false)"},
     FO(return_pieces)},
    {{"add_special_tokens", API_KB(API_K_TEI_TOKENIZE), S_BOOL,
      "include <s> and </s> (default true)"},
     FO(add_special_tokens)},
    {{"user", K_JINA, S_STR, "accepted and ignored"}, IGNORED},
    {{"keep_alive", K_OLL, "{}", "accepted and ignored (the model stays loaded)"}, IGNORED},
    {{"options", K_OLL, "{\"type\":\"object\"}", "accepted and ignored"}, IGNORED},
};
#undef FO
#define N_FIELDS ((int)(sizeof(field_names) / sizeof(field_names[0])))

/* The public view of the table (api.h). */
const int api_n_fields = N_FIELDS;

const struct api_field_doc *api_field_doc(int i) {
    return i >= 0 && i < N_FIELDS ? &field_names[i].d : NULL;
}

static bool jina_kind(int kind) {
    return kind == API_K_EMBED || kind == API_K_TOKENIZE;
}

/* Sorts the body's members into f; unknown ones are 422 in strict mode
 * (Jina's routes only: TEI and Ollama ignore unknown fields). */
static void collect_fields(const cJSON *body, int kind, bool strict, struct fields *f,
                           struct api_error *e) {
    memset(f, 0, sizeof(*f));
    for (const cJSON *c = body->child; c; c = c->next) {
        const struct field_name *fn = NULL;
        for (int i = 0; i < N_FIELDS; i++)
            if (!strcmp(c->string, field_names[i].d.name) &&
                (field_names[i].d.kinds & API_KB(kind)))
                fn = &field_names[i];
        if (fn && fn->off != IGNORED) *(const cJSON **)((char *)f + fn->off) = c;
        if (!fn && strict && jina_kind(kind)) {
            char field[96];
            snprintf(field, sizeof(field), "body -> %.80s", c->string);
            add_field_error(e, field, "extra_forbidden", c, "Extra inputs are not permitted");
        }
    }
}

/* Picks the model the name selects (absent: the first) into
 * r->model_index; *name_task = the task the name carries (or -2). */
static int check_model(const cJSON *v, const struct api_model *models, int n_models, int kind,
                       int *name_task, struct api_req *r, struct api_error *e) {
    *name_task = -2;
    r->model_index = 0;
    bool ollama = api_kind_dialect(kind) == API_D_OLLAMA;
    if (is_null(v)) {
        if (ollama) return api_error_set(e, API_EBADREQ, "model", "model is required");
        return 0;
    }
    if (!cJSON_IsString(v)) {
        if (ollama) return api_error_set(e, API_EBADREQ, "model", "model must be a string");
        add_field_error(e, "body -> model", "string_type", v, "Input should be a valid string");
        return 0;
    }
    snprintf(r->model, sizeof(r->model), "%s", v->valuestring);
    int pick = api_model_pick(models, n_models, v->valuestring, name_task);
    if (pick >= 0) {
        r->model_index = pick;
        return 0;
    }
    if (ollama)
        return api_error_set(e, API_EMODEL, "model",
                             "model \"%.100s\" not found, try pulling it first", v->valuestring);
    char avail[400];
    int k = 0;
    for (int j = 0; j < n_models; j++)
        for (int i = 0; i < models[j].n_names && k < (int)sizeof(avail); i++)
            k += snprintf(avail + k, sizeof(avail) - (size_t)k, "%s%s", k ? ", " : "",
                          models[j].names[i]);
    return api_error_set(e, API_EMODEL, "model", "Model '%.100s' not found. Available models: %s",
                         v->valuestring, avail);
}

/* Adapter index of a task name or alias (the engine's resolver), or -2 if unknown. */
static int task_index(const struct api_model *m, const char *name) {
    int t = eng_task_resolve(m->info, name, NULL, 0);
    return t >= 0 ? t : -2;
}

/* input_type values of other embedding APIs that are not task aliases
 * (Cohere's); the rest (query, document, passage, classification,
 * clustering, task names) go to the engine's resolver as they are. */
static const char *const input_type_map[][2] = {
    {"search_query", "query"},
    {"search_document", "document"},
};

static void valid_tasks(const struct api_model *m, char *valid, size_t n) {
    int k = 0;
    for (int i = 0; i < m->info->n_tasks && k >= 0 && (size_t)k < n; i++)
        k += snprintf(valid + k, n - (size_t)k, "%s'%s'", i ? ", " : "", m->info->task_name[i]);
}

/* task > input_type > prompt_name > the model name's task > --default-task.
 * A model without task adapters takes the three and ignores them: clients
 * such as LangChain send them whatever the model. */
static void parse_task(const struct fields *f, const struct api_model *m, int name_task,
                       struct emb_opts *o, struct api_error *e) {
    o->task = name_task >= 0 ? name_task : m->default_task;
    if (m->info->n_tasks == 0) {
        o->task = ENG_TASK_NONE;
        return;
    }
    char valid[256] = "";
    valid_tasks(m, valid, sizeof(valid));
    if (!is_null(f->task)) {
        int t = cJSON_IsString(f->task) ? task_index(m, f->task->valuestring) : -2;
        if (t >= 0) {
            o->task = t;
            return;
        }
        add_field_error(e, "body -> task", "enum", f->task, "Input should be one of %s (or null)",
                        valid);
        return;
    }
    if (!is_null(f->input_type)) {
        const char *h = cJSON_IsString(f->input_type) ? f->input_type->valuestring : NULL;
        for (size_t i = 0; h && i < sizeof(input_type_map) / sizeof(input_type_map[0]); i++)
            if (!strcmp(h, input_type_map[i][0])) h = input_type_map[i][1];
        int t = h ? task_index(m, h) : -2;
        if (t >= 0) {
            o->task = t;
            return;
        }
        add_field_error(e, "body -> input_type", "enum", f->input_type,
                        "Input should be 'query', 'search_query', 'document', 'search_document', "
                        "'passage', 'classification', 'clustering' or a task (%s)",
                        valid);
        return;
    }
    if (!is_null(f->prompt_name)) {
        int t = cJSON_IsString(f->prompt_name) ? task_index(m, f->prompt_name->valuestring) : -2;
        if (t >= 0)
            o->task = t;
        else
            add_field_error(e, "body -> prompt_name", "enum", f->prompt_name,
                            "Prompt name should be a task (%s) or one of its aliases", valid);
    }
}

static void parse_dimensions(const cJSON *v, const struct api_model *m, struct emb_opts *o,
                             struct api_error *e) {
    o->dimensions = 0;
    if (is_null(v)) return;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(d) || d != floor(d)) {
        add_field_error(e, "body -> dimensions", "int_type", v, "Input should be a valid integer");
    } else if (m->info->n_matryoshka == 0 && d >= m->info->n_embd) {
        return; /* not trained for shorter vectors: any size from the width up is the whole */
    } else if (m->info->n_matryoshka == 0) {
        add_field_error(e, "body -> dimensions", "greater_than_equal", v,
                        "This model has no Matryoshka sizes: dimensions should be at least %d "
                        "(its full width) or omitted",
                        m->info->n_embd);
    } else if (d < 1 || d > m->info->n_embd) {
        add_field_error(e, "body -> dimensions", d < 1 ? "greater_than_equal" : "less_than_equal",
                        v, "Input should be between 1 and %d", m->info->n_embd);
    } else {
        o->dimensions = (int)d; /* omitted or null = full size */
    }
}

static int enc_index(const cJSON *v) {
    for (int i = 0; cJSON_IsString(v) && i < API_ENC_N; i++)
        if (!strcmp(v->valuestring, api_enc_name(i))) return i;
    return -1;
}

static void add_enc_error(struct api_error *e, const char *field, const cJSON *v) {
    add_field_error(e, field, "enum", v,
                    "Input should be 'float', 'base64', 'binary' or 'ubinary', or a list of them");
}

/* embedding_type > encoding_type > encoding_format; null counts as absent. */
static void parse_encoding(const struct fields *f, struct api_req *r, struct api_error *e) {
    const cJSON *cand[3] = {f->embedding_type, f->encoding_type, f->encoding_format};
    const char *names[3] = {"body -> embedding_type", "body -> encoding_type",
                            "body -> encoding_format"};
    r->n_enc = 1;
    r->enc[0] = API_ENC_FLOAT;
    r->enc_list = false;
    for (int i = 0; i < 3; i++) {
        const cJSON *v = cand[i];
        if (is_null(v)) continue;
        if (!cJSON_IsArray(v)) {
            int k = enc_index(v);
            if (k < 0)
                add_enc_error(e, names[i], v);
            else
                r->enc[0] = (uint8_t)k;
            return;
        }
        r->n_enc = 0;
        r->enc_list = true;
        for (const cJSON *c = v->child; c; c = c->next) {
            int k = enc_index(c);
            if (k < 0) return add_enc_error(e, names[i], v);
            bool dup = false;
            for (int j = 0; j < r->n_enc; j++)
                dup |= r->enc[j] == k;
            if (!dup) r->enc[r->n_enc++] = (uint8_t)k;
        }
        if (r->n_enc == 0) add_enc_error(e, names[i], v);
        return;
    }
}

/* ---- input ------------------------------------------------------------- */

/* The member `name` of obj; of duplicates the last, as for the top-level
 * fields (and Python's json), so a key resolves the same way at every
 * level. NULL if absent. */
static const cJSON *member(const cJSON *obj, const char *name) {
    const cJSON *found = NULL;
    for (const cJSON *c = obj->child; c; c = c->next)
        if (c->string && !strcmp(c->string, name)) found = c;
    return found;
}

/* The text of one input item, or NULL after recording the error. Returns
 * API_ETOKENIDS through *hard for token-id items. */
static const char *item_text(const cJSON *it, const char *field, struct api_error *e, int *hard) {
    if (cJSON_IsString(it)) return it->valuestring;
    if (cJSON_IsNumber(it) || (cJSON_IsArray(it) && cJSON_IsNumber(it->child))) {
        *hard = API_ETOKENIDS;
        return NULL;
    }
    if (cJSON_IsObject(it)) {
        const cJSON *t = member(it, "text");
        if (cJSON_IsString(t)) return t->valuestring;
        static const char *media[] = {"image", "url", "bytes", "pdf"};
        for (int i = 0; i < 4; i++) {
            if (member(it, media[i])) {
                add_field_error(e, field, "value_error", NULL,
                                "'%s' inputs are not supported by this text-only model; send "
                                "text as a string or {\"text\": ...}",
                                media[i]);
                return NULL;
            }
        }
    }
    add_field_error(e, field, "string_type", it,
                    "Input should be a valid string or an object {\"text\": string}");
    return NULL;
}

/* Packs the n texts (total bytes with NULs) into r->arena / r->inputs. */
static int copy_texts(const char **texts, int n, size_t total, struct api_req *r,
                      struct api_error *e) {
    r->arena = mem_malloc(total ? total : 1);
    r->inputs = mem_malloc(sizeof(*r->inputs) * (size_t)n);
    if (!r->arena || !r->inputs) return api_error_set(e, API_ENOMEM, NULL, NULL);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(texts[i]);
        memcpy(r->arena + at, texts[i], len + 1);
        r->inputs[i] = (struct emb_text){r->arena + at, len};
        at += len + 1;
    }
    r->n_inputs = n;
    return 0;
}

static int token_ids_error(struct api_error *e) {
    return api_error_set(e, API_ETOKENIDS, "input",
                         "'input' holds token ids; this server embeds text only. Send strings "
                         "(LangChain OpenAIEmbeddings: set check_embedding_ctx_length=False).");
}

/* Ollama's input rules: a string ("" = no input) or a list of strings
 * ([] = no input); anything else is 400 "invalid input type". */
static int parse_ollama_input(const cJSON *v, const struct api_model *m, struct api_req *r,
                              struct api_error *e) {
    if (is_null(v)) return 0;
    if (cJSON_IsString(v)) {
        const char *t = v->valuestring;
        return *t ? copy_texts(&t, 1, strlen(t) + 1, r, e) : 0;
    }
    if (!cJSON_IsArray(v)) return api_error_set(e, API_EBADREQ, "input", "invalid input type");
    int n = cJSON_GetArraySize(v);
    if (n > m->max_client_batch)
        return api_error_set(e, API_ETOOMANY, "input",
                             "input has %d items, more than the limit of %d", n,
                             m->max_client_batch);
    if (n == 0) return 0;
    const char **texts = mem_malloc(sizeof(*texts) * (size_t)n);
    if (!texts) return api_error_set(e, API_ENOMEM, NULL, NULL);
    size_t total = 0;
    int i = 0;
    for (const cJSON *it = v->child; it; it = it->next, i++) {
        if (!cJSON_IsString(it)) {
            free(texts);
            return api_error_set(e, API_EBADREQ, "input", "invalid input type");
        }
        texts[i] = it->valuestring;
        total += strlen(texts[i]) + 1;
    }
    int rc = copy_texts(texts, n, total, r, e);
    free(texts);
    return rc;
}

/* Copies the input texts into r (arena + inputs). `name` is the field. */
static int parse_input(const cJSON *v, const char *name, const struct api_model *m,
                       struct api_req *r, struct api_error *e) {
    char fname[40];
    snprintf(fname, sizeof(fname), "body -> %s", name);
    if (is_null(v)) {
        add_field_error(e, fname, "missing", NULL, "Field required");
        return 0;
    }
    if (cJSON_IsNumber(v)) return token_ids_error(e);
    bool list = cJSON_IsArray(v);
    int n = list ? cJSON_GetArraySize(v) : 1;
    if (list && n == 0) {
        add_field_error(e, fname, "too_short", v, "List should have at least 1 item");
        return 0;
    }
    if (n > m->max_client_batch)
        return api_error_set(e, API_ETOOMANY, name,
                             "\"%s\" length %d is larger than the largest allowed size %d", name, n,
                             m->max_client_batch);
    const char **texts = mem_malloc(sizeof(*texts) * (size_t)n);
    if (!texts) return api_error_set(e, API_ENOMEM, NULL, NULL);
    size_t total = 0;
    int hard = 0, i = 0;
    const cJSON *it = list ? v->child : v;
    for (; i < n && !hard; i++, it = list ? it->next : NULL) {
        char field[64];
        if (list)
            snprintf(field, sizeof(field), "%s -> %d", fname, i);
        else
            snprintf(field, sizeof(field), "%s", fname);
        texts[i] = item_text(it, field, e, &hard);
        if (texts[i]) total += strlen(texts[i]) + 1;
    }
    int rc = 0;
    if (hard)
        rc = token_ids_error(e);
    else if (e->n_fields == 0)
        rc = copy_texts(texts, n, total, r, e);
    free(texts);
    return rc;
}

/* ---- whole requests ---------------------------------------------------- */

/* cJSON ends strings at NUL, so a "\u0000" escape would silently cut a text
 * short. Refuse it instead. (Backslashes only occur inside JSON strings.) */
static bool has_nul_escape(const char *p, size_t n) {
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] != '\\') continue;
        if (p[i + 1] == 'u' && i + 5 < n && !strncmp(p + i + 2, "0000", 4)) return true;
        i++; /* skip the escaped character */
    }
    return false;
}

/* Length of the valid UTF-8 prefix of s (strict: no overlong forms, no
 * UTF-16 surrogates, nothing above U+10FFFF); == strlen(s) if all valid. */
static size_t utf8_valid_prefix(const char *str) {
    const unsigned char *s = (const unsigned char *)str, *p = s;
    while (*p) {
        unsigned c = *p;
        int n;
        unsigned lo = 0x80, hi = 0xbf; /* the second byte's range */
        if (c < 0x80) {
            p++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0) lo = 0xa0; /* overlong */
            if (c == 0xed) hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0) lo = 0x90; /* overlong */
            if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
        } else {
            break;
        }
        if (p[1] < lo || p[1] > hi) break;
        int k = 2;
        while (k <= n && p[k] >= 0x80 && p[k] <= 0xbf)
            k++;
        if (k <= n) break;
        p += n + 1;
    }
    return (size_t)(p - s);
}

/* Finds the first string (member name or value) anywhere under v that is
 * not valid UTF-8; writes its field path ("body -> input -> 2") and the
 * byte offset of the first bad byte. */
static bool find_bad_utf8(const cJSON *v, char *path, size_t cap, size_t *at) {
    size_t plen = strlen(path);
    if (v->string) {
        size_t ok = utf8_valid_prefix(v->string);
        if (v->string[ok]) return *at = ok, true; /* the path names the object */
    }
    if (cJSON_IsString(v) && v->valuestring) {
        size_t ok = utf8_valid_prefix(v->valuestring);
        if (v->valuestring[ok]) return *at = ok, true;
    }
    int i = 0;
    for (const cJSON *c = v->child; c; c = c->next, i++) {
        if (c->string && !c->string[utf8_valid_prefix(c->string)]) {
            char name[64];
            size_t n = 0;
            for (const char *q = c->string; *q && n + 1 < sizeof(name); q++)
                name[n++] = *q;
            name[n] = '\0';
            name[utf8_valid_prefix(name)] = '\0'; /* not cut inside a character */
            snprintf(path + plen, cap - plen, " -> %s", name);
        } else if (c->string) {
            path[plen] = '\0'; /* a bad key: named by its object's path */
        } else {
            snprintf(path + plen, cap - plen, " -> %d", i);
        }
        if (find_bad_utf8(c, path, cap, at)) return true;
        path[plen] = '\0';
    }
    return false;
}

/* JSON text -> cJSON object, or an error. */
static cJSON *parse_body(const char *body, size_t len, struct api_error *e) {
    if (len == 0) {
        api_error_set(e, API_EJSON, NULL, "The request body is empty; expected a JSON object.");
        return NULL;
    }
    if (has_nul_escape(body, len)) {
        api_error_set(e, API_EBADREQ, "input",
                      "Strings containing NUL characters (\\u0000) are not supported.");
        return NULL;
    }
    if (memchr(body, '\0', len)) { /* cJSON would silently end the text there */
        api_error_set(e, API_EJSON, NULL,
                      "The request body is not valid JSON: it contains a NUL byte.");
        return NULL;
    }
    const char *end = NULL;
    unsigned long oom0 = mem_failures();
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!root && mem_failures() != oom0) { /* cJSON says NULL for oom too */
        api_error_set(e, API_ENOMEM, NULL, NULL);
        return NULL;
    }
    if (root && end) {
        while (end < body + len && strchr(" \t\r\n", *end))
            end++;
        if (end < body + len) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        long at = end ? (long)(end - body) : -1;
        /* (not cJSON_GetErrorPtr: it is a global, not thread-safe; the
         * offset is computed locally) */
        api_error_set(e, API_EJSON, NULL,
                      "The request body is not valid JSON (error near byte %ld of %zu).",
                      at < 0 ? 0 : at, len);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        add_field_error(e, "body", "model_attributes_type", NULL, "Input should be a JSON object");
        api_validation_finish(e);
        cJSON_Delete(root);
        return NULL;
    }
    /* JSON text is UTF-8 (RFC 8259); cJSON passes other bytes through, and
     * the tokenizer would embed them silently. */
    char path[256] = "body";
    size_t at = 0;
    if (find_bad_utf8(root, path, sizeof(path), &at)) {
        const char *param = strncmp(path, "body -> ", 8) ? NULL : path + 8;
        char top[64] = "";
        if (param) snprintf(top, sizeof(top), "%.*s", (int)strcspn(param, " "), param);
        api_error_set(e, API_EBADREQ, param ? top : NULL,
                      "Invalid UTF-8 in %s at byte %zu of the string.", path, at);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

static void parse_direction(const cJSON *v, struct api_error *e) {
    if (is_null(v)) return;
    const char *d = cJSON_IsString(v) ? v->valuestring : "";
    if (!strcmp(d, "Right") || !strcmp(d, "right")) return;
    if (!strcmp(d, "Left") || !strcmp(d, "left"))
        add_field_error(e, "body -> truncation_direction", "value_error", v,
                        "truncation_direction 'Left' is not supported: this server truncates on "
                        "the right (it keeps the start of an over-long input)");
    else
        add_field_error(e, "body -> truncation_direction", "enum", v,
                        "Input should be 'Right' or 'Left'");
}

int api_parse(int kind, const char *body, size_t len, const struct api_model *m, struct api_req *r,
              struct api_error *e) {
    return api_parse_n(kind, body, len, m, 1, r, e);
}

int api_parse_n(int kind, const char *body, size_t len, const struct api_model *models,
                int n_models, struct api_req *r, struct api_error *e) {
    memset(r, 0, sizeof(*r));
    memset(e, 0, sizeof(*e));
    r->opts = emb_opts_defaults();
    r->n_enc = 1;
    r->enc[0] = API_ENC_FLOAT;
    cJSON *root = parse_body(body, len, e);
    if (!root) return e->code;
    bool tokenize = kind == API_K_TOKENIZE || kind == API_K_TEI_TOKENIZE;
    bool ollama = api_kind_dialect(kind) == API_D_OLLAMA;
    struct fields f;
    collect_fields(root, kind, models[0].strict, &f, e);
    int name_task = -2;
    int rc = check_model(f.model, models, n_models, kind, &name_task, r, e);
    const struct api_model *m = &models[r->model_index];
    if (!rc) {
        parse_task(&f, m, name_task, &r->opts, e);
        /* truncate: the server's default on the embedding routes, Ollama's
         * own default (true) on its routes; /v1/tokenize only counts */
        r->opts.truncate = ollama ? true : !tokenize && m->auto_truncate;
        get_bool(f.truncate, "body -> truncate", &r->opts.truncate, e);
        parse_direction(f.truncation_direction, e);
        if (tokenize) {
            get_bool(f.return_pieces, "body -> return_pieces", &r->want_pieces, e);
            bool special = true;
            get_bool(f.add_special_tokens, "body -> add_special_tokens", &special, e);
            r->no_special = !special;
        } else {
            parse_dimensions(f.dimensions, m, &r->opts, e);
            const cJSON *norm = is_null(f.normalized) ? f.normalize : f.normalized;
            get_bool(norm, is_null(f.normalized) ? "body -> normalize" : "body -> normalized",
                     &r->opts.normalized, e);
            get_bool(f.late_chunking, "body -> late_chunking", &r->opts.late_chunking, e);
            parse_encoding(&f, r, e);
            bool multi = false;
            get_bool(f.return_multivector, "body -> return_multivector", &multi, e);
            if (multi)
                add_field_error(e, "body -> return_multivector", "value_error",
                                f.return_multivector,
                                "Multi-vector output is not supported by this model");
        }
        if (kind == API_K_OLLAMA_LEGACY && !is_null(f.input) && !cJSON_IsString(f.input))
            rc = api_error_set(e, API_EBADREQ, "prompt", "prompt must be a string");
        else if (ollama)
            rc = parse_ollama_input(f.input, m, r, e);
        else
            rc = parse_input(
                f.input, kind == API_K_TEI_EMBED || kind == API_K_TEI_TOKENIZE ? "inputs" : "input",
                m, r, e);
    }
    if (!rc && e->n_fields) {
        rc = api_validation_finish(e);
        /* Ollama answers 400 {"error"} with the first complaint */
        if (ollama)
            api_error_set(e, API_EBADREQ, NULL, "%s: %s", e->fields[0].field, e->fields[0].message);
    }
    /* max_tokens: the served limit; /v1/tokenize only counts unless told to cut */
    r->opts.max_tokens =
        tokenize && !r->opts.truncate ? EMB_MAX_TOKENS_UNLIMITED : m->max_input_tokens;
    cJSON_Delete(root);
    if (rc) api_req_deinit(r);
    return rc;
}

int api_embed_parse(const char *body, size_t len, const struct api_model *m, struct api_req *r,
                    struct api_error *e) {
    return api_parse(API_K_EMBED, body, len, m, r, e);
}

int api_tokenize_parse(const char *body, size_t len, const struct api_model *m, struct api_req *r,
                       struct api_error *e) {
    return api_parse(API_K_TOKENIZE, body, len, m, r, e);
}

void api_req_deinit(struct api_req *r) {
    free(r->inputs);
    free(r->arena);
    r->inputs = NULL;
    r->arena = NULL;
    r->n_inputs = 0;
}
