/* http.h -- the libmicrohttpd server: routes, auth, request lifecycle.
 *
 * Lifecycle (driven by main.c):
 *   http_start          listen and serve; /health answers, /ready and the
 *                       model routes answer 503 until the engine is attached
 *   http_attach_engine  tokenizer + model + batcher in: /ready turns 200
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

/* Makes the model routes live. default_task is an adapter index or
 * ENG_TASK_NONE; max_input_tokens the effective per-sequence limit. All
 * pointers are borrowed until http_stop. Returns 0 or -1 (oom). */
int http_attach_engine(struct http_server *s, const tok *t, const struct eng_model *m,
                       struct batcher *b, int default_task, int max_input_tokens);

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
