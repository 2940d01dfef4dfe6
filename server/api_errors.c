/* api_errors.c -- the API's error vocabulary (see api.h): the one table of
 * codes, HTTP statuses and wire names, the one error body, and the one
 * translation of the pipeline's and the batcher's codes into it. */
#include "server/api.h"
#include "server/api_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/batcher.h"
#include "util/strbuf.h"

/* ---- the error table ----------------------------------------------------- */

struct err_row {
    int err, status, retry_after;
    const char *type, *code, *msg;
};

static const struct err_row err_rows[] = {
#define X(name, val, status, retry, type, code, msg) {name, status, retry, type, code, msg},
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

int api_err_retry_after(int err) {
    const struct err_row *r = err_row(err);
    return r ? r->retry_after : 0;
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

void api_put_key(struct strbuf *s, const char *key) {
    sb_json_str(s, key, strlen(key));
    sb_putc(s, ':');
}

void api_put_str_field(struct strbuf *s, const char *key, const char *val) {
    api_put_key(s, key);
    sb_json_str(s, val, strlen(val));
}

char *api_error_render(const struct api_error *e, const char *request_id, size_t *len) {
    struct strbuf s;
    sb_init(&s);
    sb_putc(&s, '{');
    api_put_str_field(&s, "detail", e->detail);
    sb_putc(&s, ',');
    api_put_str_field(&s, "code", api_err_code(e->code));
    sb_putc(&s, ',');
    api_put_key(&s, "request_id");
    if (request_id)
        sb_json_str(&s, request_id, strlen(request_id));
    else
        sb_puts(&s, "null");
    sb_puts(&s, ",\"error\":{");
    api_put_str_field(&s, "message", e->detail);
    sb_putc(&s, ',');
    api_put_str_field(&s, "type", api_err_type(e->code));
    sb_puts(&s, ",\"param\":");
    if (*e->param)
        sb_json_str(&s, e->param, strlen(e->param));
    else
        sb_puts(&s, "null");
    sb_putc(&s, ',');
    api_put_str_field(&s, "code", api_err_code(e->code));
    sb_putc(&s, '}');
    if (e->code == API_EVALIDATION) {
        sb_puts(&s, ",\"errors\":[");
        for (int i = 0; i < e->n_fields; i++) {
            const struct api_field_error *f = &e->fields[i];
            sb_puts(&s, i ? ",{" : "{");
            api_put_str_field(&s, "field", f->field);
            sb_putc(&s, ',');
            api_put_str_field(&s, "message", f->message);
            sb_putc(&s, ',');
            api_put_str_field(&s, "type", f->type);
            sb_puts(&s, ",\"input\":");
            sb_puts(&s, *f->input ? f->input : "null");
            sb_putc(&s, '}');
        }
        sb_putc(&s, ']');
    }
    sb_puts(&s, "}");
    return sb_detach(&s, len);
}

/* ---- 422 field errors ------------------------------------------------------ */

void api_field_errorv(struct api_error *e, const char *field, const char *type,
                      const char *input_json, const char *fmt, va_list ap) {
    e->code = API_EVALIDATION;
    if (e->n_fields == 0) /* param: the field without "body -> " ("" for the body itself) */
        snprintf(e->param, sizeof(e->param), "%s", strncmp(field, "body -> ", 8) ? "" : field + 8);
    if (e->n_fields >= API_MAX_FIELD_ERRORS) return;
    struct api_field_error *f = &e->fields[e->n_fields++];
    snprintf(f->field, sizeof(f->field), "%s", field);
    snprintf(f->type, sizeof(f->type), "%s", type);
    vsnprintf(f->message, sizeof(f->message), fmt, ap);
    f->input[0] = '\0';
    if (input_json && strlen(input_json) < sizeof(f->input))
        memcpy(f->input, input_json, strlen(input_json) + 1);
}

void api_field_error(struct api_error *e, const char *field, const char *type,
                     const char *input_json, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    api_field_errorv(e, field, type, input_json, fmt, ap);
    va_end(ap);
}

/* Writes the 422 detail from the collected field errors. */
int api_validation_finish(struct api_error *e) {
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

/* ---- other modules' codes ------------------------------------------------ */

int api_plan_error(int emb_rc, const struct emb_error *pe, const struct api_req *r,
                   struct api_error *e) {
    memset(e, 0, sizeof(*e));
    if (emb_rc == EMB_ETOOLONG && r->opts.late_chunking)
        return api_error_set(e, API_ETOOLONG, "input",
                             "With late_chunking all inputs are joined into one sequence of more "
                             "than the limit of %d tokens (counting <s>, </s> and the task "
                             "prefix). Send fewer or shorter inputs.",
                             pe->limit);
    if (emb_rc == EMB_ETOOLONG)
        return api_error_set(e, API_ETOOLONG, "input",
                             "Input %d has more than the limit of %d tokens (counting <s>, </s> "
                             "and the task prefix). Shorten it or set \"truncate\": true.",
                             pe->index, pe->limit);
    if (emb_rc == EMB_EEMPTY) {
        char field[64];
        snprintf(field, sizeof(field), "body -> input -> %d", pe->index);
        api_field_error(e, field, "value_error", NULL,
                        "With late_chunking every input needs at least one token; input %d is "
                        "empty",
                        pe->index);
        return api_validation_finish(e);
    }
    if (emb_rc == EMB_ENOMEM) return api_error_set(e, API_ENOMEM, NULL, NULL);
    return api_error_set(e, API_EINTERNAL, NULL, NULL);
}

int api_batcher_error(int batcher_rc, struct api_error *e) {
    memset(e, 0, sizeof(*e));
    switch (batcher_rc) {
    case BATCHER_EFULL:
        return api_error_set(e, API_EBUSY, NULL,
                             "Concurrency limit exceeded: the request queue is full; retry later.");
    case BATCHER_ESHUTDOWN: return api_error_set(e, API_EUNAVAIL, NULL, NULL);
    case BATCHER_ENOMEM: return api_error_set(e, API_EOVERLOAD, NULL, NULL);
    case BATCHER_ETIMEDOUT: return api_error_set(e, API_ETIMEOUT, NULL, NULL);
    default: return api_error_set(e, API_EINTERNAL, NULL, NULL);
    }
}

/* ---- TEI and Ollama error bodies ------------------------------------------ */

enum api_dialect api_kind_dialect(int kind) {
    switch (kind) {
    case API_K_TEI_EMBED:
    case API_K_TEI_TOKENIZE: return API_D_TEI;
    case API_K_OLLAMA_EMBED:
    case API_K_OLLAMA_LEGACY: return API_D_OLLAMA;
    default: return API_D_JINA;
    }
}

/* TEI's error_type and status: its router answers "validation" errors
 * (too many inputs, an input over the limit) with 413, its tokenizer's
 * with 422, "overloaded" with 429, "unhealthy" with 503 and "backend"
 * with 424. Malformed or mistyped bodies get 422 here, as its JSON
 * extractor answers them. */
static const char *tei_error_type(int err, int *status) {
    switch (err) {
    case API_ETOOMANY:
    case API_ETOOLONG:
    case API_ETOOLARGE: *status = 413; return "validation";
    case API_EJSON:
    case API_EBADREQ:
    case API_ETOKENIDS:
    case API_EVALIDATION:
    case API_EMODEL: *status = 422; return "validation";
    case API_EBUSY: *status = 429; return "overloaded";
    case API_ETIMEOUT: *status = 504; return "overloaded"; /* waited past its deadline */
    case API_EUNAVAIL:
    case API_EOVERLOAD: *status = 503; return "unhealthy";
    case API_ENOMEM:
    case API_EINTERNAL: *status = 424; return "backend";
    default: *status = api_err_status(err); return "validation"; /* 401, 404, 405 */
    }
}

/* Ollama answers bad requests with 400, an unknown model with 404 and a
 * full queue with 503 ("server busy"). */
static int ollama_status(int err) {
    switch (err) {
    case API_EJSON:
    case API_EBADREQ:
    case API_ETOOMANY:
    case API_ETOOLONG:
    case API_ETOKENIDS:
    case API_EVALIDATION: return 400;
    case API_EMODEL: return 404;
    case API_EBUSY: return 503;
    default: return api_err_status(err);
    }
}

int api_err_status_as(int err, enum api_dialect d) {
    int status = api_err_status(err);
    if (d == API_D_TEI) tei_error_type(err, &status);
    if (d == API_D_OLLAMA) status = ollama_status(err);
    return status;
}

char *api_error_render_as(const struct api_error *e, enum api_dialect d, const char *request_id,
                          size_t *len) {
    if (d == API_D_JINA) return api_error_render(e, request_id, len);
    struct strbuf s;
    sb_init(&s);
    sb_putc(&s, '{');
    api_put_str_field(&s, "error", e->detail);
    if (d == API_D_TEI) {
        int status;
        sb_putc(&s, ',');
        api_put_str_field(&s, "error_type", tei_error_type(e->code, &status));
    }
    sb_putc(&s, '}');
    return sb_detach(&s, len);
}
