/* api.c -- JSON <-> native structs for the HTTP API (see api.h and
 * spec/api.md). Requests are parsed with cJSON and copied out; responses are
 * rendered straight into a strbuf (a cJSON tree of 2048 x 1024 numbers
 * would cost more than the numbers themselves). */
#include "server/api.h"
#include "server/alloc.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "server/strbuf.h"

/* ---- the error table ----------------------------------------------------- */

struct err_row {
    int err, status;
    const char *type, *code, *msg;
};

static const struct err_row err_rows[] = {
#define X(name, val, status, type, code, msg) {name, status, type, code, msg},
    API_FOR_EACH_ERROR(X)
#undef X
};

static const struct err_row *err_row(int err) {
    for (size_t i = 0; i < sizeof(err_rows) / sizeof(err_rows[0]); i++)
        if (err_rows[i].err == err) return &err_rows[i];
    return NULL;
}

int api_err_status(int err) {
    const struct err_row *r = err_row(err);
    return r ? r->status : 500;
}

const char *api_err_type(int err) {
    const struct err_row *r = err_row(err);
    return r ? r->type : "server_error";
}

const char *api_err_code(int err) {
    const struct err_row *r = err_row(err);
    return r ? r->code : "INTERNAL_ERROR";
}

const char *api_err_message(int err) {
    const struct err_row *r = err_row(err);
    return r ? r->msg : "internal error";
}

int api_error_set(struct api_error *e, int code, const char *param, const char *fmt, ...) {
    e->code = code;
    e->n_fields = 0;
    snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
    if (!fmt) {
        snprintf(e->detail, sizeof(e->detail), "%s", api_err_message(code));
        return code;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->detail, sizeof(e->detail), fmt, ap);
    va_end(ap);
    return code;
}

static void put_key(struct strbuf *s, const char *key) {
    sb_json_str(s, key, strlen(key));
    sb_putc(s, ':');
}

static void put_str_field(struct strbuf *s, const char *key, const char *val) {
    put_key(s, key);
    sb_json_str(s, val, strlen(val));
}

char *api_error_render(const struct api_error *e, const char *request_id, size_t *len) {
    struct strbuf s;
    sb_init(&s);
    sb_putc(&s, '{');
    put_str_field(&s, "detail", e->detail);
    sb_putc(&s, ',');
    put_str_field(&s, "code", api_err_code(e->code));
    sb_putc(&s, ',');
    put_key(&s, "request_id");
    if (request_id)
        sb_json_str(&s, request_id, strlen(request_id));
    else
        sb_puts(&s, "null");
    sb_puts(&s, ",\"error\":{");
    put_str_field(&s, "message", e->detail);
    sb_putc(&s, ',');
    put_str_field(&s, "type", api_err_type(e->code));
    sb_puts(&s, ",\"param\":");
    if (*e->param)
        sb_json_str(&s, e->param, strlen(e->param));
    else
        sb_puts(&s, "null");
    sb_putc(&s, ',');
    put_str_field(&s, "code", api_err_code(e->code));
    sb_putc(&s, '}');
    if (e->code == API_EVALIDATION) {
        sb_puts(&s, ",\"errors\":[");
        for (int i = 0; i < e->n_fields; i++) {
            const struct api_field_error *f = &e->fields[i];
            sb_puts(&s, i ? ",{" : "{");
            put_str_field(&s, "field", f->field);
            sb_putc(&s, ',');
            put_str_field(&s, "message", f->message);
            sb_putc(&s, ',');
            put_str_field(&s, "type", f->type);
            sb_puts(&s, ",\"input\":");
            sb_puts(&s, *f->input ? f->input : "null");
            sb_putc(&s, '}');
        }
        sb_putc(&s, ']');
    }
    sb_puts(&s, "}");
    return sb_detach(&s, len);
}

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
            if (obj) put_key(s, c->string ? c->string : "");
            put_value(s, c, depth + 1);
        }
        sb_putc(s, obj ? '}' : ']');
    } else {
        sb_puts(s, "null");
    }
}

/* Adds a 422 field error (beyond API_MAX_FIELD_ERRORS they are counted in
 * the detail only). */
static void add_field_error(struct api_error *e, const char *field, const char *type,
                            const cJSON *input, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void add_field_error(struct api_error *e, const char *field, const char *type,
                            const cJSON *input, const char *fmt, ...) {
    e->code = API_EVALIDATION;
    if (e->n_fields == 0) /* param: the field without "body -> " ("" for the body itself) */
        snprintf(e->param, sizeof(e->param), "%s", strncmp(field, "body -> ", 8) ? "" : field + 8);
    if (e->n_fields >= API_MAX_FIELD_ERRORS) return;
    struct api_field_error *f = &e->fields[e->n_fields++];
    snprintf(f->field, sizeof(f->field), "%s", field);
    snprintf(f->type, sizeof(f->type), "%s", type);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof(f->message), fmt, ap);
    va_end(ap);
    f->input[0] = '\0';
    if (input) {
        struct strbuf s;
        sb_init(&s);
        put_value(&s, input, 0);
        if (!s.oom && s.len < sizeof(f->input)) memcpy(f->input, s.buf, s.len + 1);
        sb_deinit(&s);
    }
}

/* Writes the 422 detail from the collected field errors. */
static int finish_validation(struct api_error *e) {
    if (e->n_fields == 1) {
        snprintf(e->detail, sizeof(e->detail), "Validation error: '%s' %s", e->fields[0].field,
                 e->fields[0].message);
        return API_EVALIDATION;
    }
    int k = snprintf(e->detail, sizeof(e->detail), "Validation errors in %d fields:", e->n_fields);
    for (int i = 0; i < e->n_fields && k < (int)sizeof(e->detail); i++)
        k += snprintf(e->detail + k, sizeof(e->detail) - (size_t)k, "%s '%s' %s", i ? ";" : "",
                      e->fields[i].field, e->fields[i].message);
    return API_EVALIDATION;
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

static const char *const task_aliases[][2] = {
    {"query", "retrieval.query"},
    {"passage", "retrieval.passage"},
    {"document", "retrieval.passage"},
    {"clustering", "separation"},
};

/* Adapter index of a task name or alias, or -2 if unknown. */
static int task_index(const struct api_model *m, const char *name) {
    for (size_t i = 0; i < sizeof(task_aliases) / sizeof(task_aliases[0]); i++)
        if (!strcmp(name, task_aliases[i][0])) name = task_aliases[i][1];
    for (int i = 0; i < m->n_tasks; i++)
        if (!strcmp(name, m->task_names[i])) return i;
    return -2;
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
        for (int i = 0; i < m->n_tasks && k < (int)sizeof(valid); i++)
            k += snprintf(valid + k, sizeof(valid) - (size_t)k, "%s'%s'", i ? ", " : "",
                          m->task_names[i]);
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
    } else if (d < 1 || d > m->n_embd) {
        add_field_error(e, "body -> dimensions", d < 1 ? "greater_than_equal" : "less_than_equal",
                        v, "Input should be between 1 and %d", m->n_embd);
    } else {
        o->dimensions = (int)d; /* omitted or null = full size */
    }
}

static const char *const enc_names[API_ENC_N] = {"float", "base64", "binary", "ubinary"};

static int enc_index(const cJSON *v) {
    for (int i = 0; cJSON_IsString(v) && i < API_ENC_N; i++)
        if (!strcmp(v->valuestring, enc_names[i])) return i;
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
    r->arena = emb_malloc(total ? total : 1);
    r->inputs = emb_malloc(sizeof(*r->inputs) * (size_t)n);
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
    const char **texts = emb_malloc(sizeof(*texts) * (size_t)n);
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
    unsigned long oom0 = emb_alloc_failures();
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!root && emb_alloc_failures() != oom0) { /* cJSON says NULL for oom too */
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
        const char *pe = cJSON_GetErrorPtr();
        (void)pe; /* not thread-safe in cJSON; the offset below is computed locally */
        api_error_set(e, API_EJSON, NULL,
                      "The request body is not valid JSON (error near byte %ld of %zu).",
                      at < 0 ? 0 : at, len);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        add_field_error(e, "body", "model_attributes_type", NULL, "Input should be a JSON object");
        finish_validation(e);
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
    if (!rc && e->n_fields) rc = finish_validation(e);
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

int api_plan_error(int emb_rc, const struct emb_error *pe, const struct api_req *r,
                   struct api_error *e) {
    memset(e, 0, sizeof(*e));
    if (emb_rc == EMB_ETOOLONG && r->opts.late_chunking)
        return api_error_set(e, API_ETOOLONG, "input",
                             "With late_chunking all inputs are joined into one sequence of %lld "
                             "tokens, more than the limit of %d tokens (counting <s>, </s> and "
                             "the task prefix). Send fewer or shorter inputs.",
                             (long long)pe->n_tokens, pe->limit);
    if (emb_rc == EMB_ETOOLONG)
        return api_error_set(e, API_ETOOLONG, "input",
                             "Input %d has %lld tokens, more than the limit of %d tokens "
                             "(counting <s>, </s> and the task prefix). Shorten it or set "
                             "\"truncate\": true.",
                             pe->index, (long long)pe->n_tokens, pe->limit);
    if (emb_rc == EMB_EEMPTY) {
        char field[64];
        snprintf(field, sizeof(field), "body -> input -> %d", pe->index);
        add_field_error(e, field, "value_error", NULL,
                        "With late_chunking every input needs at least one token; input %d is "
                        "empty",
                        pe->index);
        return finish_validation(e);
    }
    if (emb_rc == EMB_ENOMEM) return api_error_set(e, API_ENOMEM, NULL, NULL);
    return api_error_set(e, API_EINTERNAL, NULL, NULL);
}

/* ---- responses ---------------------------------------------------------- */

bool api_model_matches(const struct api_model *m, const char *name) {
    if (m->any_name) return true;
    const char *bare = strncmp(name, "jina-ai/", 8) ? NULL : name + 8;
    for (int i = 0; i < m->n_names; i++)
        if (!strcmp(name, m->names[i]) || (bare && !strcmp(bare, m->names[i]))) return true;
    return false;
}

/* ubinary: bit = value > 0, MSB first (numpy packbits); binary = that - 128. */
static void put_packed(struct strbuf *s, const float *v, int n, bool signed_form) {
    sb_putc(s, '[');
    for (int i = 0; i < n; i += 8) {
        int byte = 0;
        for (int b = 0; b < 8; b++)
            byte |= (i + b < n && v[i + b] > 0.0f) << (7 - b);
        sb_printf(s, i ? ",%d" : "%d", signed_form ? byte - 128 : byte);
    }
    sb_putc(s, ']');
}

static void put_base64_f32(struct strbuf *s, const float *v, int n) {
    uint8_t *le = emb_malloc(4 * (size_t)n + 1);
    if (!le) {
        s->oom = true;
        return;
    }
    for (int i = 0; i < n; i++) { /* little-endian float32, whatever the host */
        uint32_t u;
        memcpy(&u, &v[i], 4);
        le[4 * i] = (uint8_t)u, le[4 * i + 1] = (uint8_t)(u >> 8);
        le[4 * i + 2] = (uint8_t)(u >> 16), le[4 * i + 3] = (uint8_t)(u >> 24);
    }
    sb_putc(s, '"');
    sb_base64(s, le, 4 * (size_t)n);
    sb_putc(s, '"');
    free(le);
}

static void put_encoded(struct strbuf *s, int enc, const float *v, int n) {
    switch (enc) {
    case API_ENC_BASE64: put_base64_f32(s, v, n); return;
    case API_ENC_BINARY: put_packed(s, v, n, true); return;
    case API_ENC_UBINARY: put_packed(s, v, n, false); return;
    default:
        sb_putc(s, '[');
        for (int i = 0; i < n; i++) {
            if (i) sb_putc(s, ',');
            sb_f32(s, v[i]);
        }
        sb_putc(s, ']');
    }
}

static void put_usage(struct strbuf *s, int64_t n_tokens) {
    sb_printf(s, "\"usage\":{\"total_tokens\":%lld,\"prompt_tokens\":%lld}", (long long)n_tokens,
              (long long)n_tokens);
}

char *api_embed_render(const struct api_model *m, const struct api_req *r, const float *pooled,
                       int64_t n_tokens, size_t *len) {
    int n_embd = m->n_embd;
    float *row = emb_malloc(sizeof(float) * (size_t)n_embd);
    struct strbuf s;
    sb_init(&s);
    if (!row) return NULL;
    int dims = r->opts.dimensions > 0 && r->opts.dimensions < n_embd ? r->opts.dimensions : n_embd;
    sb_reserve(&s, 128 + (size_t)r->n_inputs * (64 + (size_t)dims * 13 * (size_t)r->n_enc));
    sb_puts(&s, "{\"model\":");
    sb_json_str(&s, m->names[0], strlen(m->names[0]));
    sb_puts(&s, ",\"object\":\"list\",");
    put_usage(&s, n_tokens);
    sb_puts(&s, ",\"data\":[");
    for (int i = 0; i < r->n_inputs && !s.oom; i++) {
        int n = emb_output(&r->opts, n_embd, pooled + (size_t)i * n_embd, row);
        for (int j = 0; j < n; j++)
            if (!isfinite(row[j])) row[j] = 0.0f; /* never NaN/Inf on the wire */
        sb_printf(&s, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", i ? "," : "", i);
        if (r->enc_list) sb_putc(&s, '{');
        for (int k = 0; k < r->n_enc; k++) {
            if (r->enc_list) sb_printf(&s, "%s\"%s\":", k ? "," : "", enc_names[r->enc[k]]);
            put_encoded(&s, r->enc[k], row, n);
        }
        sb_puts(&s, r->enc_list ? "}}" : "}");
    }
    sb_puts(&s, "]}");
    free(row);
    return sb_detach(&s, len);
}

char *api_tokenize_render(const struct api_model *m, const struct api_req *r,
                          const struct emb_plan *plan, const tok *t, size_t *len) {
    struct strbuf s;
    sb_init(&s);
    sb_puts(&s, "{\"model\":");
    sb_json_str(&s, m->names[0], strlen(m->names[0]));
    sb_puts(&s, ",\"object\":\"list\",");
    put_usage(&s, plan->n_tokens);
    sb_puts(&s, ",\"data\":[");
    for (int32_t i = 0; i < plan->n_seqs && !s.oom; i++) {
        const struct emb_seq *q = &plan->seqs[i];
        sb_printf(&s, "%s{\"object\":\"tokens\",\"index\":%d,\"n_tokens\":%d,\"tokens\":[",
                  i ? "," : "", q->first_out, q->n_ids);
        for (int32_t j = 0; j < q->n_ids; j++)
            sb_printf(&s, j ? ",%d" : "%d", q->ids[j]);
        sb_putc(&s, ']');
        if (r->want_pieces) {
            sb_puts(&s, ",\"pieces\":[");
            for (int32_t j = 0; j < q->n_ids; j++) {
                const char *p = tok_piece(t, q->ids[j]);
                if (j) sb_putc(&s, ',');
                sb_json_str(&s, p, strlen(p));
            }
            sb_putc(&s, ']');
        }
        sb_putc(&s, '}');
    }
    sb_puts(&s, "]}");
    return sb_detach(&s, len);
}

/* One model object: OpenAI's keys plus Jina's (OpenRouter-style) ones. */
static void put_model(struct strbuf *s, const struct api_model *m) {
    sb_puts(s, "{\"id\":");
    sb_json_str(s, m->names[0], strlen(m->names[0]));
    sb_puts(s, ",\"object\":\"model\",\"created\":1725840000,\"owned_by\":\"jinaai\","
               "\"hugging_face_id\":\"jinaai/jina-embeddings-v3\","
               "\"name\":\"Jina AI: Jina Embeddings v3 (self-hosted)\","
               "\"input_modalities\":[\"text\"],\"output_modalities\":[\"embeddings\"],"
               "\"quantization\":\"\",");
    sb_printf(s, "\"context_length\":%d,\"max_output_length\":%d,\"dimensions\":%d,",
              m->max_input_tokens, m->n_embd, m->n_embd);
    sb_puts(s, "\"pricing\":{\"prompt\":\"0\",\"completion\":\"0\",\"image\":\"0\","
               "\"request\":\"0\"},\"supported_sampling_parameters\":[],"
               "\"supported_features\":[],\"tasks\":[");
    for (int i = 0; i < m->n_tasks; i++) {
        if (i) sb_putc(s, ',');
        sb_json_str(s, m->task_names[i], strlen(m->task_names[i]));
    }
    sb_puts(s, "],\"aliases\":[");
    for (int i = 1; i < m->n_names; i++) {
        if (i > 1) sb_putc(s, ',');
        sb_json_str(s, m->names[i], strlen(m->names[i]));
    }
    sb_puts(s, "],\"description\":\"jina-embeddings-v3 served by embedserve\"}");
}

char *api_models_render(const struct api_model *m, const char *id, size_t *len, int *err) {
    *err = 0;
    if (id && !api_model_matches(m, id)) {
        *err = API_ENOTFOUND;
        return NULL;
    }
    struct strbuf s;
    sb_init(&s);
    if (!id) sb_puts(&s, "{\"object\":\"list\",\"data\":[");
    put_model(&s, m);
    if (!id) sb_puts(&s, "]}");
    char *out = sb_detach(&s, len);
    if (!out) *err = API_ENOMEM;
    return out;
}
