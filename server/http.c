/* http.c -- libmicrohttpd glue: routing, auth, bodies, suspend/resume.
 *
 * DESIGN: the life of one request (struct req, hung off MHD's *req_cls)
 * 1. First access-handler call: the req is created (request id, route).
 *    Unknown route (404), wrong method (405), bad auth (401) and an
 *    announced Content-Length over the limit (413) are answered right here,
 *    before any body is read.
 * 2. Body calls: bytes are appended up to max_body_bytes (more are counted
 *    and discarded; the final call answers 413).
 * 3. Final call: GET routes answer at once. POST /v1/embeddings parses the
 *    JSON, takes a batcher slot (429 if none), tokenises on this HTTP
 *    thread (emb_plan_build), then suspends the connection and submits the
 *    job -- suspend first, because resuming a connection that is not
 *    suspended is undefined in MHD.
 * 4. The engine thread runs the job and calls job_done(), which marks the
 *    req done and calls MHD_resume_connection; it touches nothing after.
 * 5. MHD calls the handler again on an HTTP thread: the vectors are
 *    finished there (emb_finish), rendered (floats/base64) and queued.
 * 6. MHD_OPTION_NOTIFY_COMPLETED: metrics, the access log line, and the
 *    only free() of the req and everything it owns.
 * A client that disconnects while its job waits is noticed by the engine
 * thread (job_alive polls the socket for POLLRDHUP between passes); the job
 * is dropped and the connection resumed, and MHD then closes it. */
#include "server/http.h"
#include "util/alloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "server/api.h"
#include "util/clock.h"
#include "util/log.h"

enum phase { PH_RECEIVING = 0, PH_QUEUED, PH_DONE, PH_ANSWERED };

struct http_server {
    const struct cfg *cfg;
    struct metrics *metrics;
    struct MHD_Daemon *d;
    int port;
    MHD_socket quiesced_fd;

    /* Set once by http_attach_engine before `ready` turns true (release),
     * read-only afterwards. */
    const tok *tok;
    const struct eng_model *model;
    struct batcher *batcher;
    struct api_model am;
    const char **names; /* storage behind am.names */
    int max_input_tokens;

    atomic_bool ready;    /* model attached */
    atomic_bool draining; /* shutting down */
    atomic_int active;    /* reqs alive (created, not yet completed) */
    atomic_uint next_id;
    unsigned id_seed;
};

struct req {
    struct http_server *s;
    struct MHD_Connection *conn;
    const struct route *route;
    char method[8];
    char path[96]; /* for the access log, cut */
    char id[72];   /* X-Request-Id */
    double t0;
    _Atomic int phase; /* enum phase */

    char *body; /* [len] received body, owned */
    size_t len, cap;
    bool too_large;

    struct api_req areq;    /* parsed body, owned */
    struct emb_plan plan;   /* tokenised sequences, owned */
    float *pooled;          /* [n_inputs][n_embd] engine output, owned */
    struct batcher_job job; /* borrowed by the batcher while queued */
    int fd;                 /* client socket, for job_alive */

    int status; /* answered status, for logs and metrics */
    int n_inputs;
    long long n_tokens;
    double queue_ms, compute_ms;
};

typedef enum MHD_Result (*route_fn)(struct req *r);

struct route {
    const char *path;
    bool prefix;        /* path is a prefix ("/v1/models/") */
    const char *method; /* GET routes also take HEAD */
    int metric;         /* enum met_route */
    bool auth;          /* needs an API key when keys are configured */
    route_fn fn;
};

/* ---- responses ---------------------------------------------------------- */

/* Queues status + body (malloc'ed; ownership moves to MHD). Extra header
 * pair hn/hv may be NULL. */
static enum MHD_Result respond(struct req *r, int status, const char *ctype, char *body, size_t len,
                               const char *hn, const char *hv) {
    static const char oom_body[] = "{\"detail\":\"out of memory\",\"code\":\"INTERNAL_ERROR\"}";
    struct MHD_Response *resp;
    if (body) {
        resp = MHD_create_response_from_buffer_with_free_callback(len, body, free);
    } else {
        status = 500;
        ctype = "application/json";
        resp = MHD_create_response_from_buffer(sizeof(oom_body) - 1, (void *)oom_body,
                                               MHD_RESPMEM_PERSISTENT);
    }
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    if (hn && hv) MHD_add_response_header(resp, hn, hv);
    if (atomic_load(&r->s->draining)) MHD_add_response_header(resp, "Connection", "close");
    r->status = status;
    atomic_store(&r->phase, PH_ANSWERED);
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result respond_json(struct req *r, int status, char *body, size_t len) {
    return respond(r, status, "application/json", body, len, NULL, NULL);
}

static enum MHD_Result respond_error(struct req *r, const struct api_error *e) {
    size_t len = 0;
    char *body = api_error_render(e, r->id, &len);
    int status = api_err_status(e->code), retry = api_err_retry_after(e->code);
    const char *hn = NULL, *hv = NULL;
    char secs[16];
    if (retry > 0) {
        snprintf(secs, sizeof(secs), "%d", retry);
        hn = "Retry-After", hv = secs;
    }
    if (status == 405) hn = "Allow", hv = !strcmp(r->route->method, "GET") ? "GET, HEAD" : "POST";
    if (status >= 500) LOG_ERROR("request %s: %d %s", r->id, status, e->detail);
    return respond(r, status, "application/json", body, len, hn, hv);
}

static enum MHD_Result respond_code(struct req *r, int code, const char *param, const char *msg) {
    struct api_error e;
    memset(&e, 0, sizeof(e));
    if (msg)
        api_error_set(&e, code, param, "%s", msg);
    else
        api_error_set(&e, code, param, NULL);
    return respond_error(r, &e);
}

static char *dup_str(const char *s, size_t *len) {
    *len = strlen(s);
    return mem_strdup(s);
}

/* ---- handlers ----------------------------------------------------------- */

static bool is_ready(const struct http_server *s) {
    return atomic_load_explicit(&s->ready, memory_order_acquire) && !atomic_load(&s->draining);
}

static enum MHD_Result not_ready(struct req *r) {
    bool draining = atomic_load(&r->s->draining);
    return respond_code(r, API_EUNAVAIL, NULL,
                        draining ? "The server is shutting down." : "The model is still loading.");
}

static enum MHD_Result handle_health(struct req *r) {
    size_t len;
    char *b = dup_str("{\"status\":\"ok\"}", &len);
    return respond_json(r, 200, b, len);
}

static enum MHD_Result handle_ready(struct req *r) {
    struct http_server *s = r->s;
    if (!is_ready(s)) return not_ready(r);
    if (batcher_saturated(s->batcher))
        return respond_code(r, API_EUNAVAIL, NULL, "The request queue is full.");
    size_t len;
    char *b = dup_str("{\"status\":\"ready\"}", &len);
    return respond_json(r, 200, b, len);
}

static enum MHD_Result handle_metrics(struct req *r) {
    struct http_server *s = r->s;
    struct met_gauges g = {0};
    g.requests_active = atomic_load(&s->active);
    g.ready = is_ready(s);
    g.max_batch_tokens = s->cfg->max_batch_tokens;
    if (atomic_load_explicit(&s->ready, memory_order_acquire)) {
        const struct eng_info *in = eng_model_info(s->model);
        g.queue_depth = batcher_depth(s->batcher, &g.queue_waiting);
        g.ready = g.ready && g.queue_depth < s->cfg->max_queue;
        g.model = s->am.names[0];
        g.n_embd = in->n_embd, g.n_layer = in->n_layer, g.n_tasks = in->n_tasks;
        g.max_input_tokens = s->max_input_tokens;
    }
    size_t len = 0;
    char *b = metrics_render(s->metrics, &g, &len);
    return respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", b, len, NULL, NULL);
}

static enum MHD_Result handle_models(struct req *r) {
    struct http_server *s = r->s;
    if (!atomic_load_explicit(&s->ready, memory_order_acquire)) return not_ready(r);
    const char *id = NULL;
    if (r->route->prefix) id = r->path + strlen(r->route->path);
    size_t len = 0;
    int err = 0;
    char *b = api_models_render(&s->am, id && *id ? id : NULL, &len, &err);
    if (err == API_ENOTFOUND) {
        char msg[200];
        snprintf(msg, sizeof(msg), "Model '%.100s' not found.", id);
        return respond_code(r, API_ENOTFOUND, "model", msg);
    }
    return respond_json(r, 200, b, len);
}

static enum MHD_Result handle_tokenize(struct req *r) {
    struct http_server *s = r->s;
    if (!is_ready(s)) return not_ready(r);
    struct api_error e;
    if (api_tokenize_parse(r->body, r->len, &s->am, &r->areq, &e)) return respond_error(r, &e);
    struct emb_error pe;
    int rc = emb_plan_build(s->tok, s->model, &r->areq.opts, r->areq.inputs, r->areq.n_inputs,
                            &r->plan, &pe);
    if (rc) {
        api_plan_error(rc, &pe, &r->areq, &e);
        return respond_error(r, &e);
    }
    r->n_inputs = r->areq.n_inputs;
    r->n_tokens = r->plan.n_tokens;
    size_t len = 0;
    char *b = api_tokenize_render(&s->am, &r->areq, &r->plan, s->tok, &len);
    return respond_json(r, 200, b, len);
}

/* Engine thread: the job is finished (or dropped); wake the connection. */
static void job_done(struct batcher_job *j) {
    struct req *r = j->arg;
    atomic_store(&r->phase, PH_DONE);
    MHD_resume_connection(r->conn); /* r belongs to the HTTP side from here */
}

/* Engine thread: is the client still connected? */
static bool job_alive(struct batcher_job *j) {
    struct req *r = j->arg;
    if (r->fd < 0) return true;
    struct pollfd p = {.fd = r->fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return true;
    return !(p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static int client_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* The request's deadline (monotonic seconds; 0 = none): --request-timeout,
 * shortened by an X-Request-Timeout header (seconds, > 0, may be
 * fractional). A malformed header is the client's error. */
static int request_deadline(struct req *r, double *deadline, struct api_error *e) {
    double limit = r->s->cfg->request_timeout;
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Timeout");
    if (h) {
        char *end;
        double v = strtod(h, &end);
        while (*end == ' ' || *end == '\t')
            end++;
        if (end == h || *end || !(v > 0) || v > 1e9)
            return api_error_set(e, API_EBADREQ, NULL,
                                 "X-Request-Timeout must be a positive number of seconds.");
        if (limit <= 0 || v < limit) limit = v;
    }
    *deadline = limit > 0 ? clock_now() + limit : 0;
    return 0;
}

/* Parse, admit, tokenise, then suspend and queue. */
static enum MHD_Result handle_embeddings(struct req *r) {
    struct http_server *s = r->s;
    if (!is_ready(s)) return not_ready(r);
    struct api_error e;
    double deadline = 0;
    if (request_deadline(r, &deadline, &e)) return respond_error(r, &e);
    if (api_embed_parse(r->body, r->len, &s->am, &r->areq, &e)) return respond_error(r, &e);
    r->n_inputs = r->areq.n_inputs;
    int rc = batcher_reserve(s->batcher);
    if (rc == BATCHER_ESHUTDOWN) return not_ready(r);
    if (rc) {
        api_batcher_error(rc, &e);
        return respond_error(r, &e);
    }
    struct emb_error pe;
    rc = emb_plan_build(s->tok, s->model, &r->areq.opts, r->areq.inputs, r->areq.n_inputs, &r->plan,
                        &pe);
    int n_embd = s->am.info->n_embd;
    if (!rc && !(r->pooled = mem_malloc(sizeof(float) * (size_t)r->plan.n_outputs * n_embd)))
        rc = EMB_ENOMEM;
    if (rc) {
        batcher_unreserve(s->batcher);
        api_plan_error(rc, &pe, &r->areq, &e);
        return respond_error(r, &e);
    }
    r->n_tokens = r->plan.n_tokens;
    r->job = (struct batcher_job){.plan = &r->plan,
                                  .pooled = r->pooled,
                                  .done = job_done,
                                  .alive = job_alive,
                                  .arg = r,
                                  .deadline = deadline};
    r->fd = client_fd(r->conn);
    atomic_store(&r->phase, PH_QUEUED);
    MHD_suspend_connection(r->conn);
    batcher_submit(s->batcher, &r->job);
    return MHD_YES;
}

/* Back on an HTTP thread after the engine: render the answer. */
static enum MHD_Result embeddings_done(struct req *r) {
    struct batcher_job *j = &r->job;
    r->queue_ms =
        j->t_start > 0 ? (j->t_start - j->t_submit) * 1e3 : (j->t_end - j->t_submit) * 1e3;
    r->compute_ms = j->t_start > 0 ? (j->t_end - j->t_start) * 1e3 : 0;
    if (j->status == BATCHER_EGONE) {
        r->status = 499; /* nobody to answer: close */
        return MHD_NO;
    }
    if (j->status == BATCHER_ESHUTDOWN) return not_ready(r);
    if (j->status != BATCHER_OK) {
        struct api_error e;
        api_batcher_error(j->status, &e);
        return respond_error(r, &e);
    }
    metrics_embed(r->s->metrics, r->n_inputs, r->n_tokens, r->queue_ms / 1e3, r->compute_ms / 1e3);
    /* finish the numbers (Matryoshka, normalisation), then render them */
    int dims = emb_finish(&r->areq.opts, r->s->am.info->n_embd, r->pooled, r->plan.n_outputs);
    size_t len = 0;
    char *b = api_embed_render(&r->s->am, &r->areq, r->pooled, dims, r->plan.n_tokens, &len);
    return respond_json(r, 200, b, len);
}

/* ---- routing and auth ---------------------------------------------------- */

static const struct route routes[] = {
    {"/v1/embeddings", false, "POST", MET_R_EMBEDDINGS, true, handle_embeddings},
    {"/embeddings", false, "POST", MET_R_EMBEDDINGS, true, handle_embeddings},
    {"/v1/tokenize", false, "POST", MET_R_TOKENIZE, true, handle_tokenize},
    {"/v1/models", false, "GET", MET_R_MODELS, true, handle_models},
    {"/v1/models/", true, "GET", MET_R_MODELS, true, handle_models},
    {"/health", false, "GET", MET_R_HEALTH, false, handle_health},
    {"/live", false, "GET", MET_R_HEALTH, false, handle_health},
    {"/ready", false, "GET", MET_R_READY, false, handle_ready},
    {"/metrics", false, "GET", MET_R_METRICS, false, handle_metrics},
};
static const struct route route_404 = {"", false, "GET", MET_R_OTHER, false, NULL};

/* Route of a path (trailing slash ignored), or NULL. */
static const struct route *find_route(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *rt = &routes[i];
        size_t pl = strlen(rt->path);
        if (rt->prefix ? (n > pl && !strncmp(path, rt->path, pl))
                       : (n == pl && !strncmp(path, rt->path, pl)))
            return rt;
    }
    return NULL;
}

static bool method_ok(const struct route *rt, const char *method) {
    if (!strcmp(rt->method, method)) return true;
    return !strcmp(rt->method, "GET") && !strcmp(method, "HEAD");
}

/* Length-independent comparison: time depends only on the length of the
 * key the client sent, never on where the first difference is. */
static bool key_equal(const char *given, size_t n, const char *key) {
    size_t kn = strlen(key);
    unsigned char diff = (unsigned char)(n != kn);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(given[i] ^ (kn ? key[i % kn] : 0));
    return diff == 0;
}

/* 0 if allowed, else API_ENOKEY / API_EBADKEY. Checks every key (no early
 * exit) so timing says nothing about which key was close. */
static int check_auth(struct http_server *s, struct MHD_Connection *c) {
    const struct cfg_list *keys = &s->cfg->api_keys;
    if (keys->n == 0) return 0; /* auth off: any Authorization header is fine */
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) return API_ENOKEY;
    while (*h == ' ')
        h++;
    if (strncasecmp(h, "Bearer", 6) || (h[6] != ' ' && h[6] != '\0')) return API_EBADKEY;
    h += 6;
    while (*h == ' ')
        h++;
    size_t n = strlen(h);
    while (n && h[n - 1] == ' ')
        n--;
    if (n == 0) return API_ENOKEY;
    bool ok = false;
    for (int i = 0; i < keys->n; i++)
        ok |= key_equal(h, n, keys->v[i]);
    return ok ? 0 : API_EBADKEY;
}

/* A client's X-Request-Id if it is sane (1..64 visible ASCII), else ours. */
static void set_request_id(struct req *r) {
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
    size_t n = h ? strlen(h) : 0;
    bool ok = n > 0 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = h[i] > ' ' && h[i] < 127 && h[i] != '"';
    if (ok)
        memcpy(r->id, h, n + 1);
    else
        snprintf(r->id, sizeof(r->id), "%08x%08x", r->s->id_seed,
                 atomic_fetch_add(&r->s->next_id, 1));
}

/* First call: create the req and answer what needs no body. */
static enum MHD_Result on_first_call(struct http_server *s, struct MHD_Connection *c,
                                     const char *url, const char *method, void **req_cls) {
    struct req *r = mem_calloc(1, sizeof(*r));
    if (!r) return MHD_NO;
    r->s = s;
    r->conn = c;
    r->fd = -1;
    r->t0 = clock_now();
    snprintf(r->method, sizeof(r->method), "%s", method);
    snprintf(r->path, sizeof(r->path), "%s", url);
    set_request_id(r);
    atomic_fetch_add(&s->active, 1);
    *req_cls = r;
    const struct route *rt = find_route(url);
    r->route = rt ? rt : &route_404;
    if (!rt) return respond_code(r, API_ENOTFOUND, NULL, "Not found: no such route.");
    if (!method_ok(rt, method)) return respond_code(r, API_EMETHOD, NULL, NULL);
    int auth = rt->auth ? check_auth(s, c) : 0;
    if (auth) return respond_code(r, auth, NULL, NULL);
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    long long want = cl ? strtoll(cl, NULL, 10) : 0;
    if (want > s->cfg->max_body_bytes) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "The request body (%lld bytes) is larger than the limit of %lld bytes.", want,
                 (long long)s->cfg->max_body_bytes);
        return respond_code(r, API_ETOOLARGE, NULL, msg);
    }
    if (want > 0) r->cap = (size_t)want + 1;
    return MHD_YES;
}

/* Appends body bytes, up to the limit. */
static void on_body(struct req *r, const char *data, size_t n) {
    if (r->too_large || r->len + n > (size_t)r->s->cfg->max_body_bytes) {
        r->too_large = true;
        return;
    }
    if (r->len + n + 1 > r->cap || !r->body) {
        size_t cap = r->cap > r->len + n + 1 ? r->cap : (r->len + n + 1) * 2;
        char *b = mem_realloc(r->body, cap);
        if (!b) {
            r->too_large = true; /* answered as 413 below; the log shows the cause */
            LOG_WARN("request %s: out of memory for a %zu-byte body", r->id, cap);
            return;
        }
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls) {
    (void)version;
    struct req *r = *req_cls;
    if (!r) return on_first_call(cls, c, url, method, req_cls);
    int ph = atomic_load(&r->phase);
    if (ph == PH_DONE) return embeddings_done(r);
    if (ph != PH_RECEIVING) { /* answered early: discard any body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        on_body(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->too_large) {
        char msg[128];
        snprintf(msg, sizeof(msg), "The request body is larger than the limit of %lld bytes.",
                 (long long)r->s->cfg->max_body_bytes);
        return respond_code(r, API_ETOOLARGE, NULL, msg);
    }
    return r->route->fn(r);
}

/* ---- completion, logging ---------------------------------------------- */

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)c;
    struct http_server *s = cls;
    struct req *r = *req_cls;
    if (!r) return;
    *req_cls = NULL;
    if (atomic_load(&r->phase) == PH_QUEUED) { /* impossible: suspended reqs never complete */
        LOG_ERROR("request %s completed while queued; leaking it rather than racing", r->id);
        return;
    }
    double ms = (clock_now() - r->t0) * 1e3;
    int status = r->status ? r->status : 499;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && status < 400) status = 499;
    metrics_request(s->metrics, r->route->metric, status, ms / 1e3);
    LOG_INFO("id=%s %s %s status=%d inputs=%d tokens=%lld queue_ms=%.2f compute_ms=%.2f "
             "total_ms=%.2f",
             r->id, r->method, r->path, status, r->n_inputs, r->n_tokens, r->queue_ms,
             r->compute_ms, ms);
    emb_plan_deinit(&r->plan);
    api_req_deinit(&r->areq);
    free(r->pooled);
    free(r->body);
    free(r);
    atomic_fetch_sub(&s->active, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    LOG_DEBUG("libmicrohttpd: %s", msg);
}

/* ---- lifecycle ---------------------------------------------------------- */

static int resolve(const char *host, int port, struct sockaddr_storage *ss, char *err,
                   size_t errlen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc || !res) {
        snprintf(err, errlen, "invalid setting --host: cannot resolve '%s': %s", host,
                 gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

struct http_server *http_start(const struct cfg *cfg, struct metrics *metrics, char *err,
                               size_t errlen) {
    struct http_server *s = calloc(1, sizeof(*s));
    struct sockaddr_storage ss;
    if (!s) return snprintf(err, errlen, "out of memory"), NULL;
    s->cfg = cfg;
    s->metrics = metrics;
    s->quiesced_fd = MHD_INVALID_SOCKET;
    s->id_seed = (unsigned)time(NULL) * 2654435761u ^ (unsigned)getpid();
    if (resolve(cfg->host, cfg->port, &ss, err, errlen)) return free(s), NULL;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_DUAL_STACK;
    s->d = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->http_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024), MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)4096, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, s, MHD_OPTION_END);
    if (!s->d) {
        snprintf(err, errlen, "cannot listen on %s port %d: %s (is the port in use?)", cfg->host,
                 cfg->port, strerror(errno));
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->port;
    return s;
}

int http_port(const struct http_server *s) {
    return s->port;
}

int http_attach_engine(struct http_server *s, const tok *t, const struct eng_model *m,
                       struct batcher *b, int default_task, int max_input_tokens) {
    const struct cfg *cfg = s->cfg;
    const struct eng_info *in = eng_model_info(m);
    int n = cfg->served_names.n + cfg->model_aliases.n;
    s->names = calloc((size_t)n, sizeof(*s->names));
    if (!s->names) return -1;
    int k = 0;
    bool any = false;
    for (int i = 0; i < cfg->served_names.n; i++)
        s->names[k++] = cfg->served_names.v[i];
    for (int i = 0; i < cfg->model_aliases.n; i++) {
        if (!strcmp(cfg->model_aliases.v[i], "*"))
            any = true;
        else
            s->names[k++] = cfg->model_aliases.v[i];
    }
    s->am = (struct api_model){.names = s->names,
                               .n_names = k,
                               .any_name = any,
                               .info = in,
                               .max_input_tokens = max_input_tokens,
                               .default_task = default_task,
                               .max_client_batch = cfg->max_client_batch,
                               .strict = cfg->strict};
    s->tok = t;
    s->model = m;
    s->batcher = b;
    s->max_input_tokens = max_input_tokens;
    atomic_store_explicit(&s->ready, true, memory_order_release);
    return 0;
}

void http_quiesce(struct http_server *s) {
    atomic_store(&s->draining, true);
    s->quiesced_fd = MHD_quiesce_daemon(s->d);
    /* Stop listening now, so a load balancer's new connections are refused
     * at once and go to another replica, instead of waiting in the backlog
     * until exit. The descriptor itself stays open until MHD_stop_daemon,
     * as MHD requires for threaded modes. */
    if (s->quiesced_fd != MHD_INVALID_SOCKET) shutdown(s->quiesced_fd, SHUT_RDWR);
}

bool http_wait_idle(struct http_server *s, double timeout_s) {
    double end = clock_now() + timeout_s;
    while (atomic_load(&s->active) > 0) {
        if (clock_now() > end) return false;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return true;
}

void http_stop(struct http_server *s) {
    if (!s) return;
    MHD_stop_daemon(s->d);
    if (s->quiesced_fd != MHD_INVALID_SOCKET) close(s->quiesced_fd);
    free(s->names);
    free(s);
}
