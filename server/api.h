/* api.h -- the JSON edge of the server (spec/api.md): request bodies in,
 * native structs out; results in, response bodies out. JSON (cJSON) stays in
 * this file's .c; nothing here touches HTTP or the engine context.
 *
 * Conventions: functions return 0 or a negative API_E* code and fill a
 * struct api_error whose rendering (api_error_render) is the only place that
 * writes an error body. Rendered bodies are malloc'ed; the caller frees them
 * with free() (or hands them to MHD with free as the callback).
 *
 * Thread-safety: every function is thread-safe (no shared state); the
 * structs belong to one request.
 */
#ifndef EMB_SERVER_API_H
#define EMB_SERVER_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/embed.h"
#include "tokenizer/tokenizer.h"

/* The error table: code, value, HTTP status, OpenAI error.type, Jina code,
 * default message. */
#define API_FOR_EACH_ERROR(X)                                                                      \
    X(API_EJSON, -1, 400, "invalid_request_error", "INPUT_INVALID_JSON",                           \
      "The request body is not valid JSON.")                                                       \
    X(API_EBADREQ, -2, 400, "invalid_request_error", "INPUT_INVALID", "Invalid request.")          \
    X(API_ETOOMANY, -3, 400, "invalid_request_error", "INPUT_LIST_TOO_LONG", "Too many inputs.")   \
    X(API_ETOKENIDS, -4, 400, "invalid_request_error", "INPUT_TOKEN_IDS_NOT_SUPPORTED",            \
      "Token-id input is not supported; send text.")                                               \
    X(API_ETOOLONG, -5, 400, "invalid_request_error", "INPUT_TOKEN_LIMIT_EXCEEDED",                \
      "An input is longer than the model's token limit.")                                          \
    X(API_EMODEL, -6, 400, "invalid_request_error", "INPUT_MODEL_NOT_FOUND", "Model not found.")   \
    X(API_ENOKEY, -7, 401, "authentication_error", "AUTH_MISSING_API_KEY",                         \
      "Authentication required. Provide your API key via the Authorization header: "               \
      "'Authorization: Bearer <api-key>'.")                                                        \
    X(API_EBADKEY, -8, 401, "authentication_error", "AUTH_INVALID_API_KEY", "Invalid API key.")    \
    X(API_ENOTFOUND, -9, 404, "not_found_error", "RESOURCE_NOT_FOUND", "Not found.")               \
    X(API_EMETHOD, -10, 405, "invalid_request_error", "METHOD_NOT_ALLOWED", "Method not allowed.") \
    X(API_ETOOLARGE, -11, 413, "invalid_request_error", "INPUT_PAYLOAD_TOO_LARGE",                 \
      "Request body too large.")                                                                   \
    X(API_EVALIDATION, -12, 422, "invalid_request_error", "INPUT_VALIDATION_ERROR",                \
      "Validation error.")                                                                         \
    X(API_EBUSY, -13, 429, "rate_limit_error", "RATE_CONCURRENCY_LIMIT_EXCEEDED",                  \
      "Too many requests are queued; retry later.")                                                \
    X(API_ENOMEM, -14, 500, "server_error", "INTERNAL_ERROR", "Out of memory.")                    \
    X(API_EINTERNAL, -15, 500, "server_error", "INTERNAL_ERROR",                                   \
      "An unexpected error occurred; contact the operator with the request_id.")                   \
    X(API_EUNAVAIL, -16, 503, "service_unavailable_error", "SERVICE_UNAVAILABLE",                  \
      "The server is not ready; retry later.")                                                     \
    X(API_ENOTIMPL, -17, 501, "invalid_request_error", "NOT_IMPLEMENTED",                          \
      "This request uses an HTTP feature the server does not implement.")

enum api_err {
    API_OK = 0,
#define X(name, val, status, type, code, msg) name = val,
    API_FOR_EACH_ERROR(X)
#undef X
};

int api_err_status(int err);          /* HTTP status; 500 for unknown codes */
const char *api_err_type(int err);    /* OpenAI error.type */
const char *api_err_code(int err);    /* Jina code string */
const char *api_err_message(int err); /* default human message */

#define API_MAX_FIELD_ERRORS 8

/* One entry of a 422's "errors" list. */
struct api_field_error {
    char field[96]; /* "body -> task" */
    char message[200];
    char type[32];   /* pydantic-style: "enum", "missing", "int_type", ... */
    char input[200]; /* the offending value as JSON text, "" if omitted */
};

struct api_error {
    int code;         /* API_E* */
    char detail[600]; /* the human-readable message */
    char param[64];   /* OpenAI error.param: the field at fault, "" = null */
    int n_fields;     /* 422 only */
    struct api_field_error fields[API_MAX_FIELD_ERRORS];
};

/* Resets e and sets code, param (may be NULL) and a printf-style detail
 * (NULL fmt = the table's default message). Returns code. */
int api_error_set(struct api_error *e, int code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Renders e as the superset error body of spec/api.md. request_id may be
 * NULL. Returns a malloc'ed body (*len bytes) or NULL on oom. */
char *api_error_render(const struct api_error *e, const char *request_id, size_t *len);

/* What the parser needs to know about the served model and the limits. */
struct api_model {
    const char *const *names; /* accepted model names; names[0] is reported */
    int n_names;
    bool any_name;                 /* accept every model name */
    int n_embd;                    /* hidden size: dimensions range, output size */
    int max_input_tokens;          /* context_length in /v1/models */
    int n_tasks;                   /* adapters, by index */
    const char *const *task_names; /* [n_tasks] */
    int default_task;              /* adapter index or ENG_TASK_NONE */
    int max_client_batch;          /* most inputs per request */
    bool strict;                   /* unknown fields are 422 */
};

/* Output encodings (embedding_type). */
enum api_enc { API_ENC_FLOAT = 0, API_ENC_BASE64, API_ENC_BINARY, API_ENC_UBINARY, API_ENC_N };

/* A parsed /v1/embeddings or /v1/tokenize body. Owns its texts. */
struct api_req {
    struct emb_text *inputs; /* [n_inputs], s points into arena */
    int32_t n_inputs;
    char *arena;          /* the texts, back to back, each NUL-terminated */
    struct emb_opts opts; /* task, dimensions, normalized, late_chunking, truncate
                             (max_tokens is left at its default; the caller sets it) */
    int n_enc;            /* encodings requested, in order */
    uint8_t enc[API_ENC_N];
    bool enc_list;    /* embedding_type was a list: render an object keyed by type */
    bool want_pieces; /* tokenize: also return token strings */
};

/* Parses an embeddings request. On failure returns API_E* with e filled;
 * r then holds nothing (no deinit needed, though it is harmless). */
int api_embed_parse(const char *body, size_t len, const struct api_model *m, struct api_req *r,
                    struct api_error *e);

/* Same for /v1/tokenize: {"input", "task"?, "truncate"?, "return_pieces"?, "model"?}. */
int api_tokenize_parse(const char *body, size_t len, const struct api_model *m, struct api_req *r,
                       struct api_error *e);

void api_req_deinit(struct api_req *r);

/* Maps a failed emb_plan_build (EMB_ETOOLONG / EMB_EEMPTY / other) to an
 * API error naming the input. Returns e->code. */
int api_plan_error(int emb_rc, const struct emb_error *pe, const struct api_req *r,
                   struct api_error *e);

/* Renders the embeddings response for pooled [n_inputs][n_embd] (not yet
 * truncated or normalised; emb_output is applied per row here). Returns a
 * malloc'ed body or NULL on oom. */
char *api_embed_render(const struct api_model *m, const struct api_req *r, const float *pooled,
                       int64_t n_tokens, size_t *len);

/* Renders /v1/tokenize's answer from the plan built for r. `t` is used for
 * pieces when r->want_pieces. */
char *api_tokenize_render(const struct api_model *m, const struct api_req *r,
                          const struct emb_plan *plan, const tok *t, size_t *len);

/* /v1/models (id == NULL) or /v1/models/{id}. For an id that names no served
 * model returns NULL with *err = API_ENOTFOUND. */
char *api_models_render(const struct api_model *m, const char *id, size_t *len, int *err);

/* Does `name` select the served model (a name, an alias, "jina-ai/" + a
 * name, or anything when any_name)? */
bool api_model_matches(const struct api_model *m, const char *name);

#endif
