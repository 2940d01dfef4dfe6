/* http.h -- the libmicrohttpd server: routes, auth, request lifecycle.
 *
 * Lifecycle (driven by main.c):
 *   http_start          listen and serve; /health answers, /ready and the
 *                       model routes answer 503 until the engine is attached
 *   http_attach_models  each model's tokenizer + model + batcher in: /ready
 *                       turns 200
 *   http_quiesce        stop accepting connections; new requests on open
 *                       connections get 503 and "Connection: close"
 *   http_wait_idle      wait for requests in progress to be answered
 *   http_stop           MHD_stop_daemon (no connection may be suspended:
 *                       the batcher must have been drained first)
 *
 * Thread-safety: these functions belong to the main thread; the server's
 * own callbacks run on MHD's threads and the engine thread.
 */
#ifndef EMB_SERVER_HTTP_H
#define EMB_SERVER_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "engine/engine.h"
#include "pipeline/batcher.h"
#include "server/api.h"
#include "server/metrics.h"
#include "tokenizer/tokenizer.h"

struct http_server;

/* Starts serving per cfg (borrowed: must outlive the server). metrics is
 * borrowed too. Returns NULL with a reason in err (e.g. port in use). */
struct http_server *http_start(const struct cfg *cfg, struct metrics *metrics, char *err,
                               size_t errlen);

/* The port actually bound (useful with --port 0). */
int http_port(const struct http_server *s);

/* Most names one served model answers to. */
#define HTTP_MAX_NAMES 16

/* One served model as main() hands it over: its own tokenizer, weights and
 * batcher (its own queue, passes and engine threads). All pointers are
 * borrowed until http_stop. */
struct http_model {
    const char *dir;               /* its --model directory (one of its names) */
    const tok *tok;                /* the model's tokenizer */
    const struct eng_model *model; /* its weights and facts (eng_model_info) */
    struct batcher *batcher;       /* its queue and engine thread */
    int default_task;              /* adapter index or ENG_TASK_NONE */
    int max_input_tokens;          /* the effective per-sequence limit */
};

/* Makes the model routes live for models[0..n) (1 <= n <= CFG_MAX_MODELS;
 * models[0] is the default: requests that name no model, TEI's /info).
 * Names each model (api_model_names; the first also takes
 * --served-model-name and --model-alias), refuses two models that share a
 * name, labels the per-model metrics with each model's first name, derives
 * the memory budget (--max-memory 0) from what the process holds now, and
 * turns /ready 200. The array is copied. Returns 0, or -1 with the reason in
 * err (a shared name, oom); the routes stay unready then. */
int http_attach_models(struct http_server *s, const struct http_model *models, int n, char *err,
                       size_t errlen);

void http_quiesce(struct http_server *s);

/* Returns true if every request finished within timeout_s seconds. */
bool http_wait_idle(struct http_server *s, double timeout_s);

/* The route table as the OpenAPI document describes it: copies up to max
 * entries into out and returns how many routes there are. Thread-safe
 * (the table is constant). */
int http_route_docs(struct api_route_doc *out, int max);

/* Stops MHD and frees the server. Accepts NULL. */
void http_stop(struct http_server *s);

#endif
