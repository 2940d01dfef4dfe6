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
        *return_multivector, *return_pieces;
};

struct field_name {
    const char *name;
    size_t off;
    bool embed, tokenize; /* recognised by which route */
};

#define FO(f) offsetof(struct fields, f)
static const struct field_name field_names[] = {
    {"model", FO(model), true, true},
    {"input", FO(input), true, true},
    {"task", FO(task), true, true},
    {"dimensions", FO(dimensions), true, false},
    {"normalized", FO(normalized), true, false},
    {"normalize", FO(normalize), true, false},
    {"embedding_type", FO(embedding_type), true, false},
    {"encoding_type", FO(encoding_type), true, false},
    {"encoding_format", FO(encoding_format), true, false},
    {"late_chunking", FO(late_chunking), true, false},
    {"truncate", FO(truncate), true, true},
    {"input_type", FO(input_type), true, true},
    {"prompt_name", FO(prompt_name), true, true},
    {"return_multivector", FO(return_multivector), true, false},
    {"return_pieces", FO(return_pieces), false, true},
    {"user", 0, true, true}, /* accepted and ignored */
};
#undef FO

/* Sorts the body's members into f; unknown ones are 422 in strict mode. */
static void collect_fields(const cJSON *body, bool tokenize, bool strict, struct fields *f,
                           struct api_error *e) {
    memset(f, 0, sizeof(*f));
    for (const cJSON *c = body->child; c; c = c->next) {
        const struct field_name *fn = NULL;
        for (size_t i = 0; i < sizeof(field_names) / sizeof(field_names[0]); i++)
            if (!strcmp(c->string, field_names[i].name) &&
                (tokenize ? field_names[i].tokenize : field_names[i].embed))
                fn = &field_names[i];
        if (fn && strcmp(fn->name, "user")) *(const cJSON **)((char *)f + fn->off) = c;
        if (!fn && strict) {
            char field[96];
            snprintf(field, sizeof(field), "body -> %.80s", c->string);
            add_field_error(e, field, "extra_forbidden", c, "Extra inputs are not permitted");
        }
    }
}

static int check_model(const cJSON *v, const struct api_model *m, struct api_error *e) {
    if (is_null(v)) return 0;
    if (!cJSON_IsString(v)) {
        add_field_error(e, "body -> model", "string_type", v, "Input should be a valid string");
        return 0;
    }
    if (api_model_matches(m, v->valuestring)) return 0;
    char avail[256];
    int k = 0;
    for (int i = 0; i < m->n_names && k < (int)sizeof(avail); i++)
        k += snprintf(avail + k, sizeof(avail) - (size_t)k, "%s%s", i ? ", " : "", m->names[i]);
    return api_error_set(e, API_EMODEL, "model", "Model '%.100s' not found. Available models: %s",
                         v->valuestring, avail);
}

/* Adapter index of a task name or alias (the engine's resolver), or -2 if unknown. */
static int task_index(const struct api_model *m, const char *name) {
    int t = eng_task_resolve(m->info, name, NULL, 0);
    return t >= 0 ? t : -2;
}

static void parse_task(const struct fields *f, const struct api_model *m, struct emb_opts *o,
                       struct api_error *e) {
    o->task = m->default_task;
    if (!is_null(f->task)) {
        int t = cJSON_IsString(f->task) ? task_index(m, f->task->valuestring) : -2;
        if (t >= 0) {
            o->task = t;
            return;
        }
        char valid[256];
        int k = 0;
        for (int i = 0; i < m->info->n_tasks && k < (int)sizeof(valid); i++)
            k += snprintf(valid + k, sizeof(valid) - (size_t)k, "%s'%s'", i ? ", " : "",
                          m->info->task_name[i]);
        add_field_error(e, "body -> task", "enum", f->task, "Input should be one of %s (or null)",
                        valid);
        return;
    }
    /* input_type / prompt_name (OpenAI-style senders): query, document, passage */
    const cJSON *hints[2] = {f->input_type, f->prompt_name};
    for (int i = 0; i < 2; i++) {
        if (!cJSON_IsString(hints[i])) continue;
        const char *h = hints[i]->valuestring;
        if (!strcmp(h, "query") || !strcmp(h, "document") || !strcmp(h, "passage")) {
            int t = task_index(m, h);
            if (t >= 0) o->task = t;
            return;
        }
    }
}

static void parse_dimensions(const cJSON *v, const struct api_model *m, struct emb_opts *o,
                             struct api_error *e) {
    o->dimensions = 0;
    if (is_null(v)) return;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(d) || d != floor(d)) {
        add_field_error(e, "body -> dimensions", "int_type", v, "Input should be a valid integer");
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

/* Copies the input texts into r (arena + inputs). */
static int parse_input(const cJSON *v, const struct api_model *m, struct api_req *r,
                       struct api_error *e) {
    if (is_null(v)) {
        add_field_error(e, "body -> input", "missing", NULL, "Field required");
        return 0;
    }
    if (cJSON_IsNumber(v)) return token_ids_error(e);
    bool list = cJSON_IsArray(v);
    int n = list ? cJSON_GetArraySize(v) : 1;
    if (list && n == 0) {
        add_field_error(e, "body -> input", "too_short", v, "List should have at least 1 item");
        return 0;
    }
    if (n > m->max_client_batch)
        return api_error_set(e, API_ETOOMANY, "input",
                             "\"input\" length %d is larger than the largest allowed size %d", n,
                             m->max_client_batch);
    const char **texts = mem_malloc(sizeof(*texts) * (size_t)n);
    if (!texts) return api_error_set(e, API_ENOMEM, NULL, NULL);
    size_t total = 0;
    int hard = 0, i = 0;
    const cJSON *it = list ? v->child : v;
    for (; i < n && !hard; i++, it = list ? it->next : NULL) {
        char field[64];
        snprintf(field, sizeof(field), list ? "body -> input -> %d" : "body -> input", i);
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

static int parse_common(const char *body, size_t len, const struct api_model *m, bool tokenize,
                        struct api_req *r, struct api_error *e) {
    memset(r, 0, sizeof(*r));
    memset(e, 0, sizeof(*e));
    r->opts = emb_opts_defaults();
    cJSON *root = parse_body(body, len, e);
    if (!root) return e->code;
    struct fields f;
    collect_fields(root, tokenize, m->strict, &f, e);
    int rc = check_model(f.model, m, e);
    if (!rc) {
        parse_task(&f, m, &r->opts, e);
        get_bool(f.truncate, "body -> truncate", &r->opts.truncate, e);
        if (tokenize) {
            get_bool(f.return_pieces, "body -> return_pieces", &r->want_pieces, e);
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
        rc = parse_input(f.input, m, r, e);
    }
    if (!rc && e->n_fields) rc = api_validation_finish(e);
    /* max_tokens: the served limit; /v1/tokenize only counts unless told to cut */
    r->opts.max_tokens = tokenize && !r->opts.truncate ? EMB_MAX_TOKENS_UNLIMITED
                                                       : m->max_input_tokens;
    cJSON_Delete(root);
    if (rc) api_req_deinit(r);
    return rc;
}

int api_embed_parse(const char *body, size_t len, const struct api_model *m, struct api_req *r,
                    struct api_error *e) {
    return parse_common(body, len, m, false, r, e);
}

int api_tokenize_parse(const char *body, size_t len, const struct api_model *m, struct api_req *r,
                       struct api_error *e) {
    return parse_common(body, len, m, true, r, e);
}

void api_req_deinit(struct api_req *r) {
    free(r->inputs);
    free(r->arena);
    r->inputs = NULL;
    r->arena = NULL;
    r->n_inputs = 0;
}
