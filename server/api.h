/* api.h -- the JSON edge of the server (docs/api.md): request bodies in,
 * native structs out; results in, response bodies out. JSON (cJSON) stays in
 * the api_*.c files, split by role: api_errors.c (the error vocabulary and
 * its HTTP mapping), api_parse.c (requests), api_render.c (responses),
 * api_models.c (model names and the /v1/models card). Nothing here touches
 * HTTP connections or the engine context.
 *
 * Conventions: functions return 0 or a negative API_E* code and fill a
 * struct api_error whose rendering (api_error_render) is the only place that
 * writes an error body. The other modules' codes (EMB_E*, BATCHER_E*) become
 * API_E* codes only here (api_plan_error, api_batcher_error); the table below
 * is the only place an API_E* code becomes an HTTP status. Rendered bodies
 * are malloc'ed; the caller frees them with free() (or hands them to MHD
 * with free as the callback).
 *
 * Thread-safety: every function is thread-safe (no shared state); the
 * structs belong to one request.
 */
#ifndef EMB_SERVER_API_H
#define EMB_SERVER_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/embed.h"
#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

/* The error table: code, value, HTTP status, seconds for Retry-After (0 =
 * none), OpenAI error.type, Jina code, default message. */
#define API_FOR_EACH_ERROR(X)                                                                      \
    X(API_EJSON, -1, 400, 0, "invalid_request_error", "INPUT_INVALID_JSON",                        \
      "The request body is not valid JSON.")                                                       \
    X(API_EBADREQ, -2, 400, 0, "invalid_request_error", "INPUT_INVALID", "Invalid request.")       \
    X(API_ETOOMANY, -3, 400, 0, "invalid_request_error", "INPUT_LIST_TOO_LONG",                    \
      "Too many inputs.")                                                                          \
    X(API_ETOKENIDS, -4, 400, 0, "invalid_request_error", "INPUT_TOKEN_IDS_NOT_SUPPORTED",         \
      "Token-id input is not supported; send text.")                                               \
    X(API_ETOOLONG, -5, 400, 0, "invalid_request_error", "INPUT_TOKEN_LIMIT_EXCEEDED",             \
      "An input is longer than the model's token limit.")                                          \
    X(API_EMODEL, -6, 400, 0, "invalid_request_error", "INPUT_MODEL_NOT_FOUND",                    \
      "Model not found.")                                                                          \
    X(API_ENOKEY, -7, 401, 0, "authentication_error", "AUTH_MISSING_API_KEY",                      \
      "Authentication required. Provide your API key via the Authorization header: "               \
      "'Authorization: Bearer <api-key>'.")                                                        \
    X(API_EBADKEY, -8, 401, 0, "authentication_error", "AUTH_INVALID_API_KEY", "Invalid API key.") \
    X(API_ENOTFOUND, -9, 404, 0, "not_found_error", "RESOURCE_NOT_FOUND", "Not found.")            \
    X(API_EMETHOD, -10, 405, 0, "invalid_request_error", "METHOD_NOT_ALLOWED",                     \
      "Method not allowed.")                                                                       \
    X(API_ETOOLARGE, -11, 413, 0, "invalid_request_error", "INPUT_PAYLOAD_TOO_LARGE",              \
      "Request body too large.")                                                                   \
    X(API_EVALIDATION, -12, 422, 0, "invalid_request_error", "INPUT_VALIDATION_ERROR",             \
      "Validation error.")                                                                         \
    X(API_EBUSY, -13, 429, 1, "rate_limit_error", "RATE_CONCURRENCY_LIMIT_EXCEEDED",               \
      "Too many requests are queued; retry later.")                                                \
    X(API_ENOMEM, -14, 500, 0, "server_error", "INTERNAL_ERROR", "Out of memory.")                 \
    X(API_EINTERNAL, -15, 500, 0, "server_error", "INTERNAL_ERROR",                                \
      "An unexpected error occurred; contact the operator with the request_id.")                   \
    X(API_EUNAVAIL, -16, 503, 5, "service_unavailable_error", "SERVICE_UNAVAILABLE",               \
      "The server is not ready; retry later.")                                                     \
    X(API_EOVERLOAD, -17, 503, 5, "service_unavailable_error", "SERVICE_UNAVAILABLE",              \
      "The server ran out of memory for this request's batch; retry later.")                       \
    X(API_ENOTIMPL, -18, 501, 0, "invalid_request_error", "NOT_IMPLEMENTED",                       \
      "This request uses an HTTP feature the server does not implement.")                          \
    X(API_ETIMEOUT, -19, 504, 0, "timeout_error", "REQUEST_TIMEOUT",                               \
      "The request's deadline passed before its embeddings were computed.")
enum api_err {
    API_OK = 0,
#define X(name, val, status, retry, type, code, msg) name = val,
    API_FOR_EACH_ERROR(X)
#undef X
};

int api_err_status(int err);          /* HTTP status; 500 for unknown codes */
int api_err_retry_after(int err);     /* seconds for a Retry-After header; 0 = none */
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

/* Renders e as the error body (docs/api.md, "Errors"). request_id may be
 * NULL. Returns a malloc'ed body (*len bytes) or NULL on oom. */
char *api_error_render(const struct api_error *e, const char *request_id, size_t *len);

/* Which API a request speaks: picks the accepted fields (api_field_doc), the
 * answer's shape and the error body (docs/api.md, "Other APIs"). */
enum api_kind {
    API_K_EMBED = 0,     /* Jina/OpenAI POST /v1/embeddings */
    API_K_TOKENIZE,      /* POST /v1/tokenize */
    API_K_TEI_EMBED,     /* TEI POST /embed */
    API_K_TEI_TOKENIZE,  /* TEI POST /tokenize */
    API_K_OLLAMA_EMBED,  /* Ollama POST /api/embed */
    API_K_OLLAMA_LEGACY, /* Ollama POST /api/embeddings */
    API_K_N
};
#define API_KB(k) (1u << (k))

/* One request field the parser accepts: the table behind both the parser
 * and the OpenAPI document (api_openapi_render), so they cannot drift. */
struct api_field_doc {
    const char *name;
    unsigned kinds;     /* API_KB() of the request kinds that accept it */
    const char *schema; /* JSON Schema of the value (a JSON object text) */
    const char *doc;    /* what it does; the default is stated here */
};
/* Field i (0 <= i < api_n_fields) of the request-field table, or NULL.
 * Static data: thread-safe. */
const struct api_field_doc *api_field_doc(int i);
extern const int api_n_fields;

/* Error body shapes: Jina/OpenAI (docs/api.md), TEI {"error","error_type"},
 * Ollama {"error"}. */
enum api_dialect { API_D_JINA = 0, API_D_TEI, API_D_OLLAMA };
enum api_dialect api_kind_dialect(int kind);

/* HTTP status of err when answered in dialect d (TEI and Ollama map some
 * codes differently: see api_errors.c). */
int api_err_status_as(int err, enum api_dialect d);

/* Renders e in dialect d (API_D_JINA = api_error_render). */
char *api_error_render_as(const struct api_error *e, enum api_dialect d, const char *request_id,
                          size_t *len);

/* What the parser needs to know about the served model and the limits. */
struct api_model {
    const char *const *names; /* accepted model names; names[0] is reported */
    int n_names;
    bool any_name;               /* accept every model name */
    const struct eng_info *info; /* what the engine loaded: hidden size (dimensions range,
                                    output size), tasks, Matryoshka sizes, dtype, name
                                    (borrowed; outlives the api_model) */
    int max_input_tokens;        /* per-sequence token limit; context_length in /v1/models */
    int default_task;            /* adapter index or ENG_TASK_NONE */
    int max_client_batch;        /* most inputs per request */
    bool strict;                 /* unknown fields are 422 */
    bool auto_truncate;          /* default of `truncate` on the embedding routes */
    int max_batch_tokens;        /* for TEI's /info */
    int max_queue;               /* for TEI's /info */
};

/* Output encodings (embedding_type). */
enum api_enc { API_ENC_FLOAT = 0, API_ENC_BASE64, API_ENC_BINARY, API_ENC_UBINARY, API_ENC_N };

/* A parsed /v1/embeddings or /v1/tokenize body. Owns its texts. */
struct api_req {
    struct emb_text *inputs; /* [n_inputs], s points into arena */
    int32_t n_inputs;
    char *arena;          /* the texts, back to back, each NUL-terminated */
    struct emb_opts opts; /* complete: task, dimensions, normalized, late_chunking,
                             truncate, and max_tokens (m->max_input_tokens; for
                             /v1/tokenize without truncate, EMB_MAX_TOKENS_UNLIMITED) */
    int n_enc;            /* encodings requested, in order */
    uint8_t enc[API_ENC_N];
    bool enc_list;    /* embedding_type was a list: render an object keyed by type */
    bool want_pieces; /* tokenize: also return token strings */
    bool no_special;  /* TEI tokenize with add_special_tokens false: leave out <s>, </s> */
    char model[128];  /* the model name as sent ("" if none): Ollama echoes it */
    int model_index;  /* which of the served models answers (api_parse_n): 0 = the default */
};

/* Parses an embeddings request. On failure returns API_E* with e filled;
 * r then holds nothing (no deinit needed, though it is harmless). */
int api_embed_parse(const char *body, size_t len, const struct api_model *m, struct api_req *r,
                    struct api_error *e);

/* Same for /v1/tokenize: {"input", "task"?, "truncate"?, "return_pieces"?, "model"?}. */
int api_tokenize_parse(const char *body, size_t len, const struct api_model *m, struct api_req *r,
                       struct api_error *e);

/* Any request kind (api_embed_parse = API_K_EMBED, api_tokenize_parse =
 * API_K_TOKENIZE). Fields and defaults per kind: api_field_doc; errors are
 * API_E* codes as for the others, rendered per dialect by the caller. */
int api_parse(int kind, const char *body, size_t len, const struct api_model *m, struct api_req *r,
              struct api_error *e);

/* Any request kind against several served models: `model` picks one
 * (api_model_pick; absent = models[0]) into r->model_index, and the rest of
 * the body is read against that model (its tasks, width, limits). An unknown
 * name is API_EMODEL listing every model's names. api_parse is the n = 1
 * case. */
int api_parse_n(int kind, const char *body, size_t len, const struct api_model *models,
                int n_models, struct api_req *r, struct api_error *e);

void api_req_deinit(struct api_req *r);

/* Maps a failed emb_plan_build / emb_plan_run (EMB_ETOOLONG / EMB_EEMPTY /
 * EMB_ENOMEM / other) to an API error naming the input. Returns e->code. */
int api_plan_error(int emb_rc, const struct emb_error *pe, const struct api_req *r,
                   struct api_error *e);

/* Maps a batcher code (BATCHER_EFULL from batcher_reserve, or a finished
 * job's status) to an API error: EFULL -> API_EBUSY, ESHUTDOWN ->
 * API_EUNAVAIL, ENOMEM -> API_EOVERLOAD, ETIMEDOUT -> API_ETIMEOUT (504),
 * anything else -> API_EINTERNAL.
 * Returns e->code. */
int api_batcher_error(int batcher_rc, struct api_error *e);

/* Name of an embedding_type ("float", "base64", "binary", "ubinary"). */
const char *api_enc_name(int enc);

/* Renders the embeddings response for finished vectors [n_inputs][dims]
 * (truncated and normalised already: emb_finish). Only formats. Returns a
 * malloc'ed body or NULL on oom. */
char *api_embed_render(const struct api_model *m, const struct api_req *r, const float *vecs,
                       int dims, int64_t n_tokens, size_t *len);

/* Renders /v1/tokenize's answer from the plan built for r. `t` is used for
 * pieces when r->want_pieces. */
char *api_tokenize_render(const struct api_model *m, const struct api_req *r,
                          const struct emb_plan *plan, const tok *t, size_t *len);

/* /v1/models (id == NULL) or /v1/models/{id}: the card of the served model,
 * built from m->info (name, tasks, Matryoshka sizes, dtype) and
 * m->max_input_tokens. For an id that names no served
 * model returns NULL with *err = API_ENOTFOUND. */
char *api_models_render(const struct api_model *m, const char *id, size_t *len, int *err);

/* GET /health: {"status":"ok","models":[<each model's name>]}, the list
 * empty while the models load (n = 0). */
char *api_health_render(const struct api_model *models, int n, size_t *len);

/* /v1/models over several models: each model's card and its task cards, in
 * order; with an id, the card of the model api_model_pick finds. */
char *api_models_render_n(const struct api_model *models, int n, const char *id, size_t *len,
                          int *err);

/* Which of models[n] a request's model name selects: the first whose names
 * (api_model_resolve, "*" aside) match, else the first that accepts any
 * name; -1 if none. *task as for api_model_resolve. */
int api_model_pick(const struct api_model *models, int n, const char *name, int *task);

/* The names a served model answers to, each once, in order: `given` (the
 * first model's --served-model-name and --model-alias values; none for the
 * others), the last part of config.json's _name_or_path
 * ("jina-embeddings-v3"), _name_or_path itself, and the directory's last
 * part; with in == NULL only `given`. Writes up to max malloc'ed strings
 * into out (the caller frees each) and returns how many, or -1 on oom
 * (nothing to free then). */
int api_model_names(const char *dir, const struct eng_info *in, const char *const *given,
                    int n_given, char **out, int max);

/* Refuses two models that share a name (a request could not pick between
 * them): 0, or -1 with a message naming both models and the name. */
int api_models_check_names(const struct api_model *models, int n, char *err, size_t errlen);

/* Does `name` select the served model (a name, an alias, "jina-ai/" + a
 * name, or anything when any_name)? A name may carry a task after its last
 * ':' ("jina-embeddings-v3:retrieval.query", task aliases allowed, resolved
 * by eng_task_resolve) or Ollama's ":latest". */
bool api_model_matches(const struct api_model *m, const char *name);

/* Same, and the task the name carries: *task = adapter index, or -2 when
 * the name carries none. */
bool api_model_resolve(const struct api_model *m, const char *name, int *task);

/* The TEI and Ollama answers for finished vectors (see api_embed_render):
 * TEI /embed a bare [[...]]; Ollama /api/embed {model, embeddings,
 * total_duration, load_duration, prompt_eval_count}; /api/embeddings
 * {embedding}. total_ns: the request's time so far. */
char *api_embed_render_as(int kind, const struct api_model *m, const struct api_req *r,
                          const float *vecs, int dims, int64_t n_tokens, int64_t total_ns,
                          size_t *len);

/* TEI /tokenize: per input a list of {id, text, special, start, stop}
 * (start/stop null: the tokenizer keeps no offsets). */
char *api_tei_tokenize_render(const struct api_req *r, const struct emb_plan *plan, const tok *t,
                              size_t *len);

/* TEI GET /info, Ollama GET /api/tags and GET /api/version. */
char *api_tei_info_render(const struct api_model *m, const char *version, size_t *len);
char *api_ollama_tags_render(const struct api_model *m, size_t *len);
/* /api/tags over several models: each model's "<name>:latest" and task tags. */
char *api_ollama_tags_render_n(const struct api_model *models, int n, size_t *len);
char *api_ollama_version_render(size_t *len);

/* One route as the OpenAPI document describes it. */
struct api_route_doc {
    const char *path;
    const char *method; /* "GET" or "POST" */
    int kind;           /* request kind for POST bodies, -1 for none */
    bool auth;
    const char *summary;
};

/* GET /openapi.json: OpenAPI 3.1 built from routes[n] (the server's route
 * table), the request fields and the error table. Returns a malloc'ed body. */
char *api_openapi_render(const struct api_model *m, const struct api_route_doc *routes, int n,
                         const char *version, size_t *len);

#endif
