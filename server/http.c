/* http.c -- libmicrohttpd glue: routing, auth, bodies, suspend/resume.
 *
 * DESIGN: the life of one request (struct req, hung off MHD's *req_cls)
 * 1. First access-handler call: the req is created (request id, route).
 *    Unknown route (404), wrong method (405), bad auth (401) and an
 *    announced Content-Length over the limit (413) are answered right here,
 *    before any body is read.
 * 2. Body calls: bytes are appended up to max_body_bytes (more are counted
 *    and discarded; the final call answers 413) into a buffer that grows as
 *    they arrive (never from the announced Content-Length); each growth is
 *    taken from the memory budget (--max-memory; past it the body is
 *    discarded and the final call answers 503).
 * 3. Final call: GET routes answer at once. POST /v1/embeddings parses the
 *    JSON (then frees the body), takes the request's estimated work from
 *    the memory budget (503 if it does not fit) and a batcher slot (429 if
 *    none), tokenises on this HTTP thread (emb_plan_build), then suspends
 *    the connection and submits the job -- suspend first, because resuming
 *    a connection that is not suspended is undefined in MHD. POST
 *    /v1/tokenize is admitted the same way and answers at once.
 *    What the request holds of the budget goes back in step 6.
 * 4. The engine thread runs the job and calls job_done(), which marks the
 *    req done and calls MHD_resume_connection; it touches nothing after.
 * 5. MHD calls the handler again on an HTTP thread: the vectors are
 *    finished there (emb_finish), rendered (floats/base64) and queued.
 * 6. MHD_OPTION_NOTIFY_COMPLETED: metrics, the access log line, and the
 *    only free() of the req and everything it owns.
 * A client that disconnects while its job waits is noticed by the engine
 * thread (job_alive, between passes); the job is dropped and the connection
 * resumed, and MHD then closes it.
 *
 * Connections (struct conn, MHD_OPTION_NOTIFY_CONNECTION) are tracked apart
 * from requests, for what MHD 0.9.75 cannot do itself:
 * - a cap per client address (--max-conns-per-client; --trusted-proxies are
 *   exempt), checked by the accept policy callback;
 * - total deadlines: request line + headers within --header-timeout, a body
 *   at --body-min-rate after that, however slowly the bytes trickle (MHD's
 *   own timeout is an idle timeout, restarted by every byte). The reaper
 *   thread checks them every 100 ms and shuts a late socket down; MHD then
 *   sees EOF and closes it;
 * - lingering close: a request answered before its body was read (413, a
 *   framing error) is closed by MHD right after the answer; the reaper keeps
 *   a duplicate of the socket and drains what the client still sends for up
 *   to LINGER_S, so a client that writes its whole body before reading gets
 *   the answer instead of a reset (nginx's lingering_close).
 * - a malformed Content-Length, which MHD 0.9.75 answers itself with its
 *   status line and headers written twice: refuse_bad_length answers it
 *   from MHD's log callback, once, before MHD writes (see there).
 * MHD runs in poll() mode, not epoll: 0.9.75's edge-triggered epoll loses
 * the EOF of a peer whose last bytes and FIN arrive together (recv reads
 * less than asked, MHD assumes the socket drained and never reads the EOF),
 * leaving such sockets open until the idle timeout. */
#include "server/http.h"
#include "util/alloc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
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
#include "server/web.h"
#include "util/clock.h"
#include "util/log.h"

enum phase { PH_RECEIVING = 0, PH_QUEUED, PH_DONE, PH_ANSWERED };

/* What a connection is waiting for; each state has its own deadline. */
enum conn_state {
    CS_HEADERS = 0, /* request line and headers: --header-timeout from t_ref */
    CS_BODY,        /* the body: --header-timeout + body_bytes / --body-min-rate */
    CS_BUSY,        /* the request is being handled or answered: none */
    CS_IDLE,        /* keep-alive, between requests: --http-timeout in all */
};

/* Open connections from one untrusted address. */
struct client {
    struct client *next;   /* hash chain */
    unsigned char key[17]; /* 4 or 6, then the address */
    int n;
};

/* One TCP connection, from MHD's "started" to its "closed" notification.
 * Every field is guarded by http_server.conn_mu. */
struct conn {
    struct conn *prev, *next; /* http_server.conns */
    struct client *cl;        /* NULL: not capped (trusted, or the cap is off) */
    int fd;
    int state;    /* enum conn_state */
    double t_ref; /* when the current state began (accept, for the first request) */
    uint64_t body_bytes;
    bool linger; /* answered before the body was read: drain it at close */
    bool killed; /* shut down by the reaper */
    char addr[INET6_ADDRSTRLEN];
    /* From the request line (on_uri) until on_completed: the request and the
     * HTTP thread that runs this connection (MHD never moves it). */
    struct req *req;
    pthread_t owner;
};

#define N_CLIENT_BUCKETS 1024
#define LINGER_MAX       256 /* sockets drained at once; more are closed at once */
#define LINGER_S         5.0 /* nginx: lingering_timeout 5 s */

struct lingering {
    int fd; /* our duplicate of a socket MHD has closed */
    double end;
};

struct http_server {
    const struct cfg *cfg;
    struct metrics *metrics;
    struct MHD_Daemon *d;
    int port;
    MHD_socket quiesced_fd;

    /* Set once by http_attach_models before `ready` turns true (release),
     * read-only afterwards. models[i] and am[i] describe served model i;
     * [0] is the default. */
    struct http_model models[CFG_MAX_MODELS];
    struct api_model am[CFG_MAX_MODELS];         /* contiguous, for api_parse_n */
    char *names[CFG_MAX_MODELS][HTTP_MAX_NAMES]; /* storage behind am[i].names (owned) */
    int n_models;

    atomic_bool ready;    /* models attached */
    atomic_bool draining; /* shutting down */
    atomic_int active;    /* reqs alive (created, not yet completed) */
    atomic_uint next_id;
    unsigned id_seed;

    pthread_mutex_t conn_mu; /* guards conns, clients, lingers and every struct conn */
    struct conn *conns;
    struct client *clients[N_CLIENT_BUCKETS];
    struct lingering lingers[LINGER_MAX];
    int n_lingers;
    struct req *writers;     /* finished jobs of half-closed clients, for the reaper */
    struct cfg_net *trusted; /* [n_trusted], parsed --trusted-proxies */
    int n_trusted;
    pthread_t reaper;
    bool reaper_started;
    int wake[2];                 /* a byte in wake[1] wakes the reaper: a writer queued */
    atomic_bool stop;            /* the reaper exits */
    _Atomic long long t_refused; /* last "refusing connections" log, whole seconds */
    atomic_int n_refused;        /* refused since that log line */
    /* The memory budget (--max-memory): bytes held by bodies being received
     * and by admitted requests' estimated work (mem_take / mem_give). */
    int64_t mem_limit;
    atomic_llong mem_used;
};

struct req {
    struct http_server *s;
    struct MHD_Connection *conn;
    const struct route *route;
    char method[8];
    char path[96]; /* decoded URL, cut */
    char raw[96];  /* the URL as sent, cut: for the access log */
    char id[72];   /* X-Request-Id */
    bool started;  /* the access handler has seen this request */
    bool raw_bad;  /* the URL encodes '/', NUL or a control byte */
    bool http10;   /* HTTP/1.0: no interim (1xx) responses */
    bool has_body; /* Content-Length > 0 or Transfer-Encoding */
    bool got_body; /* the final access-handler call happened */
    bool close;    /* answer with Connection: close */
    bool probed;   /* job_alive sent its 100 Continue probe */
    bool written;  /* answered by the reaper (half-closed client), not by MHD */
    char *out;     /* the reaper's answer: [out_len], out_off sent */
    size_t out_len, out_off;
    double out_end;    /* the reaper gives up writing then */
    struct req *wnext; /* http_server.writers */
    double t0;
    _Atomic int phase; /* enum phase */

    char *body; /* [len] received body, owned */
    size_t len, cap;
    bool too_large;
    bool over_budget; /* the body did not fit the memory budget: answered 503 */
    int64_t charged;  /* bytes of the memory budget this req holds (cap + work) */

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

/* A row of the route table. kind: the request kind of the body (enum
 * api_kind, -1 for none): it picks the parser's fields, the answer's shape
 * and the error dialect. summary: what the OpenAPI document shows. */
struct route {
    const char *path;
    bool prefix;        /* path is a prefix ("/v1/models/") */
    const char *method; /* GET routes also take HEAD */
    int metric;         /* enum met_route */
    bool auth;          /* needs an API key when keys are configured */
    route_fn fn;
    int kind;
    const char *summary;
};

/* ---- connections: per-client cap, deadlines, lingering close ------------ */

/* The address of sa as a key: 4 + IPv4 (IPv4-mapped IPv6 included) or
 * 6 + IPv6. Returns -1 for other families. */
static int addr_key(const struct sockaddr *sa, unsigned char key[17]) {
    memset(key, 0, 17);
    if (sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family != AF_INET6) return -1;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a)) {
        key[0] = 4;
        memcpy(key + 1, a->s6_addr + 12, 4);
    } else {
        key[0] = 6;
        memcpy(key + 1, a->s6_addr, 16);
    }
    return 0;
}

static void key_str(const unsigned char key[17], char *buf, size_t n) {
    if (!inet_ntop(key[0] == 4 ? AF_INET : AF_INET6, key + 1, buf, (socklen_t)n))
        snprintf(buf, n, "?");
}

static bool net_match(const struct cfg_net *net, const unsigned char key[17]) {
    if ((net->family == AF_INET) != (key[0] == 4)) return false;
    int full = net->prefix / 8, rest = net->prefix % 8;
    if (memcmp(net->addr, key + 1, (size_t)full)) return false;
    if (!rest) return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (net->addr[full] & mask) == (key[1 + full] & mask);
}

static bool is_trusted(const struct http_server *s, const unsigned char key[17]) {
    for (int i = 0; i < s->n_trusted; i++)
        if (net_match(&s->trusted[i], key)) return true;
    return false;
}

/* Under conn_mu: the client entry of key, created if `create` (NULL on oom). */
static struct client *client_find(struct http_server *s, const unsigned char key[17], bool create) {
    uint32_t h = 2166136261u;
    for (int i = 0; i < 17; i++)
        h = (h ^ key[i]) * 16777619u;
    struct client **head = &s->clients[h % N_CLIENT_BUCKETS];
    for (struct client *c = *head; c; c = c->next)
        if (!memcmp(c->key, key, 17)) return c;
    if (!create) return NULL;
    struct client *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    memcpy(c->key, key, 17);
    c->next = *head;
    *head = c;
    return c;
}

/* Under conn_mu: one connection of c closed; the entry goes at zero. */
static void client_put(struct http_server *s, struct client *c) {
    if (--c->n > 0) return;
    uint32_t h = 2166136261u;
    for (int i = 0; i < 17; i++)
        h = (h ^ c->key[i]) * 16777619u;
    for (struct client **pp = &s->clients[h % N_CLIENT_BUCKETS]; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    free(c);
}

/* MHD accept policy: refuse a client address at its cap. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *sa, socklen_t len) {
    (void)len;
    struct http_server *s = cls;
    int cap = s->cfg->max_conns_per_client;
    unsigned char key[17];
    if (cap <= 0 || addr_key(sa, key) || is_trusted(s, key)) return MHD_YES;
    pthread_mutex_lock(&s->conn_mu);
    struct client *c = client_find(s, key, false);
    bool ok = !c || c->n < cap;
    pthread_mutex_unlock(&s->conn_mu);
    if (ok) return MHD_YES;
    /* one line a second at most: a flood must not flood the log too */
    long long t = (long long)clock_now(), last = atomic_load(&s->t_refused);
    int n = atomic_fetch_add(&s->n_refused, 1) + 1;
    if (t != last && atomic_compare_exchange_strong(&s->t_refused, &last, t)) {
        char a[INET6_ADDRSTRLEN];
        key_str(key, a, sizeof(a));
        atomic_fetch_sub(&s->n_refused, n);
        LOG_WARN("refused %d connection(s) from %s: %d open, the --max-conns-per-client cap", n, a,
                 cap);
    }
    return MHD_NO;
}

/* How long the reaper keeps writing an answer to a half-closed client. */
static double writer_timeout(const struct http_server *s) {
    return s->cfg->http_timeout < 10 ? s->cfg->http_timeout : 10;
}

static int client_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static struct conn *conn_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* The connection of c enters `state` now. */
static void conn_set(struct http_server *s, struct MHD_Connection *c, int state) {
    struct conn *k = conn_of(c);
    if (!k) return;
    pthread_mutex_lock(&s->conn_mu);
    k->state = state;
    k->t_ref = clock_now();
    k->body_bytes = 0;
    pthread_mutex_unlock(&s->conn_mu);
}

static void conn_mark_linger(struct req *r) {
    struct conn *k = conn_of(r->conn);
    if (!k) return;
    pthread_mutex_lock(&r->s->conn_mu);
    k->linger = true;
    pthread_mutex_unlock(&r->s->conn_mu);
}

/* MHD_OPTION_NOTIFY_CONNECTION: track, count and release connections. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode what) {
    struct http_server *s = cls;
    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
        struct conn *k = calloc(1, sizeof(*k));
        if (!k) return; /* untracked: MHD's own limits still apply */
        k->fd = client_fd(c);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        unsigned char key[17];
        bool keyed = ci && ci->client_addr && !addr_key(ci->client_addr, key);
        if (keyed) key_str(key, k->addr, sizeof(k->addr));
        int cap = s->cfg->max_conns_per_client;
        pthread_mutex_lock(&s->conn_mu);
        /* on_accept refuses most connections past the cap before MHD takes
         * them, but a burst can pass it before the first of them is counted
         * here: those over the cap are closed at once, so the cap holds */
        if (keyed && cap > 0 && !is_trusted(s, key) && (k->cl = client_find(s, key, true))) {
            if (k->cl->n < cap) {
                k->cl->n++;
            } else { /* n >= cap > 0: the entry is another connection's */
                k->cl = NULL;
                k->killed = true;
                if (k->fd >= 0) shutdown(k->fd, SHUT_RDWR); /* MHD reads EOF and closes it */
            }
        }
        k->state = CS_HEADERS;
        k->t_ref = clock_now();
        k->next = s->conns;
        if (s->conns) s->conns->prev = k;
        s->conns = k;
        pthread_mutex_unlock(&s->conn_mu);
        *socket_context = k;
        return;
    }
    struct conn *k = *socket_context;
    if (!k) return;
    *socket_context = NULL;
    pthread_mutex_lock(&s->conn_mu);
    if (k->prev)
        k->prev->next = k->next;
    else
        s->conns = k->next;
    if (k->next) k->next->prev = k->prev;
    if (k->cl) client_put(s, k->cl);
    /* MHD has shut down the write side (the answer is out) and closes its
     * descriptor after this returns; a duplicate keeps the socket open. */
    if (k->linger && k->fd >= 0 && s->n_lingers < LINGER_MAX && !atomic_load(&s->stop)) {
        int fd = fcntl(k->fd, F_DUPFD_CLOEXEC, 0);
        if (fd >= 0) s->lingers[s->n_lingers++] = (struct lingering){fd, clock_now() + LINGER_S};
    }
    pthread_mutex_unlock(&s->conn_mu);
    free(k);
}

/* Under conn_mu: why k is past its deadline, or NULL. */
static const char *conn_late(const struct http_server *s, const struct conn *k, double now) {
    const struct cfg *c = s->cfg;
    double t = now - k->t_ref;
    switch (k->state) {
    case CS_HEADERS:
        return t > c->header_timeout ? "request line and headers not complete within "
                                       "--header-timeout"
                                     : NULL;
    case CS_BODY:
        if (c->body_min_rate <= 0) return NULL;
        return t > c->header_timeout + (double)k->body_bytes / (double)c->body_min_rate
                   ? "request body slower than --body-min-rate"
                   : NULL;
    case CS_IDLE: return t > c->http_timeout ? "no complete request within --http-timeout" : NULL;
    default: return NULL;
    }
}

/* Reads and discards what a lingering socket has; false when it is done
 * (EOF or an error). */
static bool linger_drain(int fd) {
    char sink[16384];
    for (int i = 0; i < 64; i++) { /* at most 1 MiB a round */
        ssize_t k = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (k > 0) continue;
        return k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
    }
    return true;
}

/* Queue and compute time of a finished job, for logs and metrics. */
static void job_times(struct req *r) {
    const struct batcher_job *j = &r->job;
    r->queue_ms =
        j->t_start > 0 ? (j->t_start - j->t_submit) * 1e3 : (j->t_end - j->t_submit) * 1e3;
    r->compute_ms = j->t_start > 0 ? (j->t_end - j->t_start) * 1e3 : 0;
}

/* The finished job's vectors made final (Matryoshka, normalisation), then
 * rendered in the shape of the request's API (Jina/OpenAI, TEI, Ollama): a
 * malloc'ed body, or NULL on oom. Called once per req, on
 * whichever path answers it (the handler, or the reaper for a half-closed
 * client). */
static char *render_embeddings(struct req *r, size_t *len) {
    const struct api_model *am = &r->s->am[r->areq.model_index];
    int dims = emb_finish(&r->areq.opts, am->info->n_embd, r->pooled, r->plan.n_outputs);
    return api_embed_render_as(r->route->kind, am, &r->areq, r->pooled, dims, r->plan.n_tokens,
                               (int64_t)((clock_now() - r->t0) * 1e9), len);
}

/* Reaper: renders r's answer (a finished job) into r->out. */
static void writer_render(struct req *r) {
    job_times(r);
    metrics_embed(r->s->metrics, r->areq.model_index, r->n_inputs, r->n_tokens, r->queue_ms / 1e3,
                  r->compute_ms / 1e3);
    size_t len = 0;
    char *b = render_embeddings(r, &len);
    int status = b ? 200 : 500;
    if (!b) {
        struct api_error e;
        memset(&e, 0, sizeof(e));
        api_error_set(&e, API_ENOMEM, NULL, NULL);
        b = api_error_render(&e, r->id, &len);
    }
    char head[512];
    int k = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
                     "X-Request-Id: %s\r\nContent-Length: %zu\r\n\r\n",
                     status, MHD_get_reason_phrase_for((unsigned)status), r->id, b ? len : 0);
    r->out = malloc((size_t)k + (b ? len : 0));
    if (r->out) {
        memcpy(r->out, head, (size_t)k);
        if (b) memcpy(r->out + k, b, len);
        r->out_len = (size_t)k + (b ? len : 0);
    }
    free(b);
    r->status = r->out ? status : 499;
    r->out_end = clock_now() + (writer_timeout(r->s));
}

/* Reaper: sends what it can of the writers' answers; the finished ones
 * (all sent, failed, or out of time; all of them when `all`) are resumed,
 * and MHD then closes them. Returns whether some are still writing. */
static bool writers_run(struct http_server *s, bool all) {
    pthread_mutex_lock(&s->conn_mu);
    struct req *list = s->writers;
    s->writers = NULL;
    pthread_mutex_unlock(&s->conn_mu);
    struct req *keep = NULL;
    double now = clock_now();
    while (list) {
        struct req *r = list;
        list = r->wnext;
        if (!r->out && r->status == 0) writer_render(r);
        bool failed = !r->out;
        while (!failed && r->out_off < r->out_len) {
            ssize_t k = send(r->fd, r->out + r->out_off, r->out_len - r->out_off,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (k > 0) {
                r->out_off += (size_t)k;
                continue;
            }
            failed = !(k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
            break;
        }
        bool done = failed || r->out_off == r->out_len;
        if (!done && !all && now < r->out_end) {
            r->wnext = keep;
            keep = r;
            continue;
        }
        if (!done || failed) r->status = 499;
        free(r->out);
        r->out = NULL;
        r->written = true;
        atomic_store(&r->phase, PH_ANSWERED);
        MHD_resume_connection(r->conn); /* MHD reads the EOF and closes it */
    }
    if (!keep) return false;
    pthread_mutex_lock(&s->conn_mu);
    struct req **tail = &keep;
    while (*tail)
        tail = &(*tail)->wnext;
    *tail = s->writers;
    s->writers = keep;
    pthread_mutex_unlock(&s->conn_mu);
    return true;
}

/* The reaper thread: deadlines every 100 ms, and the lingering sockets. */
static void *reaper_main(void *arg) {
    struct http_server *s = arg;
    struct pollfd pf[LINGER_MAX + 1];
    while (!atomic_load(&s->stop)) {
        double now = clock_now();
        int n_late = 0;
        pthread_mutex_lock(&s->conn_mu);
        for (struct conn *k = s->conns; k; k = k->next) {
            const char *why = k->killed || k->fd < 0 ? NULL : conn_late(s, k, now);
            if (!why) continue;
            k->killed = true;
            shutdown(k->fd, SHUT_RDWR); /* MHD reads EOF and closes it */
            LOG_DEBUG("closing the connection from %s: %s", k->addr, why);
            n_late++;
        }
        size_t n = (size_t)s->n_lingers;
        for (size_t i = 0; i < n; i++)
            pf[i] = (struct pollfd){.fd = s->lingers[i].fd, .events = POLLIN};
        pthread_mutex_unlock(&s->conn_mu);
        if (n_late) LOG_INFO("closed %d connection(s) past their header or body deadline", n_late);
        bool writing = writers_run(s, false);
        pf[n] = (struct pollfd){.fd = s->wake[0], .events = POLLIN};
        if (poll(pf, n + 1, writing ? 5 : 100) > 0 && pf[n].revents) {
            char sink[64];
            while (read(s->wake[0], sink, sizeof(sink)) > 0)
                ;
        }
        now = clock_now();
        pthread_mutex_lock(&s->conn_mu);
        /* only this thread removes; entries [0, n) are the ones polled */
        for (size_t i = n; i-- > 0;) {
            bool open = !(pf[i].revents) || linger_drain(pf[i].fd);
            if (open && now < s->lingers[i].end) continue;
            close(s->lingers[i].fd);
            s->lingers[i] = s->lingers[--s->n_lingers];
        }
        pthread_mutex_unlock(&s->conn_mu);
    }
    writers_run(s, true);
    for (int i = 0; i < s->n_lingers; i++)
        close(s->lingers[i].fd);
    s->n_lingers = 0;
    return NULL;
}

static bool route_is_prefix(const struct route *rt) {
    return rt->prefix;
}

/* ---- responses ---------------------------------------------------------- */

/* CORS (--cors-allow-origin): "*" answers every origin with "*"; a list
 * echoes the request's Origin when it is on the list, with "Vary: Origin"
 * on every answer (caches must key on it). Nothing when the setting is
 * empty or the request has no Origin. */
static bool origin_allowed(const char *list, const char *origin) {
    size_t on = strlen(origin);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *e = end;
        while (e > p && e[-1] == ' ')
            e--;
        if ((size_t)(e - p) == on && on && !strncmp(p, origin, on)) return true;
        p = end;
    }
    return false;
}

static void add_cors_headers(struct req *r, struct MHD_Response *resp) {
    const char *list = r->s->cfg->cors_allow_origin;
    if (!list || !*list) return;
    bool star = !strcmp(list, "*");
    if (!star) MHD_add_response_header(resp, "Vary", "Origin");
    const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
    if (!origin) return;
    if (star)
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    else if (origin_allowed(list, origin))
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
    else
        return;
    MHD_add_response_header(resp, "Access-Control-Expose-Headers", "X-Request-Id, Retry-After");
}

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
    add_cors_headers(r, resp);
    if (atomic_load(&r->s->draining) || r->close)
        MHD_add_response_header(resp, "Connection", "close");
    if (r->has_body && !r->got_body) conn_mark_linger(r);
    r->status = status;
    atomic_store(&r->phase, PH_ANSWERED);
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result respond_json(struct req *r, int status, char *body, size_t len) {
    return respond(r, status, "application/json", body, len, NULL, NULL);
}

/* The error body in the route's dialect (Jina/OpenAI, TEI or Ollama). */
static enum MHD_Result respond_error(struct req *r, const struct api_error *e) {
    size_t len = 0;
    int kind = r->route->kind;
    enum api_dialect d = kind >= 0 ? api_kind_dialect(kind) : API_D_JINA;
    char *body = api_error_render_as(e, d, r->id, &len);
    int status = api_err_status_as(e->code, d), retry = api_err_retry_after(e->code);
    const char *hn = NULL, *hv = NULL;
    char secs[16];
    if (retry > 0) {
        snprintf(secs, sizeof(secs), "%d", retry);
        hn = "Retry-After", hv = secs;
    }
    if (status == 405)
        hn = "Allow", hv = !strcmp(r->route->method, "GET")                    ? "GET, HEAD"
                           : !strcmp(r->route->path, "/") && !r->s->cfg->no_ui ? "GET, HEAD, POST"
                                                                               : "POST";
    /* 503 (loading, draining, full) and 501 are the client's or the moment's,
     * not the server's fault: the access log line records them. */
    if (status >= 500 && status != 503 && status != 501)
        LOG_ERROR("request %s: %d %s", r->id, status, e->detail);
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

/* Writes a whole error answer straight to the socket and returns MHD_NO,
 * so that MHD closes the connection without an answer of its own: for
 * when MHD cannot queue one, in the middle of a body (a chunked body past
 * the limit). The closing code lingers, so the client can read it. */
static enum MHD_Result respond_raw(struct req *r, int code, const char *msg) {
    struct api_error e;
    memset(&e, 0, sizeof(e));
    api_error_set(&e, code, NULL, "%s", msg);
    size_t len = 0;
    char *body = api_error_render(&e, r->id, &len);
    int status = api_err_status(code);
    int fd = client_fd(r->conn);
    char head[512];
    int k = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
                     "X-Request-Id: %s\r\nContent-Length: %zu\r\n\r\n",
                     status, MHD_get_reason_phrase_for((unsigned)status), r->id, body ? len : 0);
    /* a fresh socket's send buffer holds this at once; a client that has
     * filled it gets what fits, then the close */
    if (fd >= 0 && k > 0 && send(fd, head, (size_t)k, MSG_NOSIGNAL | MSG_DONTWAIT) == k && body)
        (void)!send(fd, body, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    free(body);
    r->status = status;
    atomic_store(&r->phase, PH_ANSWERED);
    conn_mark_linger(r);
    return MHD_NO;
}

/* ---- the memory budget --------------------------------------------------- */

/* Takes n bytes of the budget for r; false (nothing taken) if they do not
 * fit. A request holding more than 1 MiB may use only 3/4 of the budget, so
 * big requests cannot crowd out small ones. */
static bool mem_take(struct req *r, int64_t n) {
    struct http_server *s = r->s;
    int64_t cap = r->charged + n > (1LL << 20) ? s->mem_limit / 4 * 3 : s->mem_limit;
    long long used = atomic_load(&s->mem_used);
    do {
        if (used + n > cap) return false;
    } while (!atomic_compare_exchange_weak(&s->mem_used, &used, used + n));
    r->charged += n;
    return true;
}

static void mem_give(struct req *r, int64_t n) {
    atomic_fetch_sub(&r->s->mem_used, n);
    r->charged -= n;
}

/* Stops buffering r's body: frees it and gives its bytes back to the budget. */
static void drop_body(struct req *r) {
    free(r->body);
    r->body = NULL;
    mem_give(r, (int64_t)r->cap);
    r->len = r->cap = 0;
}

static enum MHD_Result over_budget(struct req *r) {
    return respond_code(r, API_EOVERLOAD, NULL,
                        "The server's memory budget (--max-memory) is taken by other requests; "
                        "retry later, or send a smaller request.");
}

/* What an admitted request may allocate once its body is parsed (and freed;
 * docs/api.md, "Memory"): the texts (copied once) and ~64 bytes per input,
 * the token ids (at most one per text byte, and at most the limit per input
 * when counting stops there; 8 bytes each: the ids and their growth), the
 * tokenizer's working set on one chunk (TOK_WORK_PER_BYTE of up to 128 KiB
 * of text), and the answer: per input the pooled floats (4 bytes per
 * dimension) and their rendering (at most 20 bytes per float), or for
 * /v1/tokenize 12 bytes per id (48 with pieces). */
#define TOK_WORK_PER_BYTE 200
static int64_t work_cost(const struct http_server *s, const struct api_req *a, bool tokenize) {
    int64_t text = 0, n = a->n_inputs;
    for (int32_t i = 0; i < a->n_inputs; i++)
        text += (int64_t)a->inputs[i].len;
    int64_t ids = text + 64 * n; /* the task prefix's ids too */
    int64_t lim = (int64_t)a->opts.max_tokens * (a->opts.late_chunking ? 1 : n);
    if (a->opts.max_tokens != EMB_MAX_TOKENS_UNLIMITED && lim < ids) ids = lim + n;
    int64_t chunk = text < (128 << 10) ? text : (128 << 10);
    int64_t c = text + 64 * n + 8 * ids + chunk * TOK_WORK_PER_BYTE;
    if (tokenize) return c + ids * (a->want_pieces ? 48 : 12);
    return c + n * (int64_t)s->am[a->model_index].info->n_embd * (4 + 20);
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
    struct http_server *s = r->s;
    size_t len = 0;
    bool attached = atomic_load_explicit(&s->ready, memory_order_acquire);
    char *b = api_health_render(s->am, attached ? s->n_models : 0, &len);
    return respond_json(r, 200, b, len);
}

static enum MHD_Result handle_ready(struct req *r) {
    struct http_server *s = r->s;
    if (!is_ready(s)) return not_ready(r);
    for (int i = 0; i < s->n_models; i++)
        if (batcher_saturated(s->models[i].batcher)) {
            char msg[200];
            snprintf(msg, sizeof(msg), "The request queue of model '%.100s' is full.",
                     s->am[i].names[0]);
            return respond_code(r, API_EUNAVAIL, NULL, msg);
        }
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
        g.n_models = s->n_models < MET_MAX_MODELS ? s->n_models : MET_MAX_MODELS;
        for (int i = 0; i < g.n_models; i++) {
            struct met_model_gauges *mg = &g.models[i];
            const struct eng_info *in = s->am[i].info;
            mg->queue_depth = batcher_depth(s->models[i].batcher, &mg->queue_waiting);
            g.ready = g.ready && mg->queue_depth < s->cfg->max_queue;
            mg->model = s->am[i].names[0];
            mg->n_embd = in->n_embd, mg->n_layer = in->n_layer, mg->n_tasks = in->n_tasks;
            mg->max_input_tokens = s->models[i].max_input_tokens;
        }
    }
    enum met_format f = metrics_format_for(
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT));
    size_t len = 0;
    char *b = metrics_render(s->metrics, &g, f, &len);
    return respond(r, 200, metrics_content_type(f), b, len, NULL, NULL);
}

static enum MHD_Result handle_models(struct req *r) {
    struct http_server *s = r->s;
    if (!atomic_load_explicit(&s->ready, memory_order_acquire)) return not_ready(r);
    char id[sizeof(r->path)] = "";
    if (route_is_prefix(r->route)) { /* "/v1/models/<id>/" is "/v1/models/<id>" */
        snprintf(id, sizeof(id), "%s", r->path + strlen(r->route->path));
        size_t n = strlen(id);
        while (n > 0 && id[n - 1] == '/')
            id[--n] = '\0';
    }
    size_t len = 0;
    int err = 0;
    char *b = api_models_render_n(s->am, s->n_models, *id ? id : NULL, &len, &err);
    if (err == API_ENOTFOUND) {
        char msg[200];
        snprintf(msg, sizeof(msg), "Model '%.100s' not found.", id);
        return respond_code(r, API_ENOTFOUND, "model", msg);
    }
    return respond_json(r, 200, b, len);
}

/* Parses the body and admits the request: a queue slot (429 if none) and
 * its estimated work in the memory budget (503 if it does not fit). 0, or
 * the response already queued in *ret. The slot is the caller's. */
static int parse_admit(struct req *r, enum MHD_Result *ret) {
    struct http_server *s = r->s;
    int kind = r->route->kind;
    bool tokenize = kind == API_K_TOKENIZE || kind == API_K_TEI_TOKENIZE;
    struct api_error e;
    if (!mem_take(r, 2 * (int64_t)r->len + 4096)) return *ret = over_budget(r), -1;
    int rc = api_parse_n(r->route->kind, r->body, r->len, s->am, s->n_models, &r->areq, &e);
    if (rc) return *ret = respond_error(r, &e), -1;
    r->n_inputs = r->areq.n_inputs;
    mem_give(r, 2 * (int64_t)r->len + 4096); /* from here the estimate covers the parse */
    drop_body(r);                            /* the texts are copied out */
    if (!mem_take(r, work_cost(s, &r->areq, tokenize))) return *ret = over_budget(r), -1;
    rc = batcher_reserve(s->models[r->areq.model_index].batcher);
    if (rc == BATCHER_ESHUTDOWN) return *ret = not_ready(r), -1;
    if (rc) {
        api_batcher_error(rc, &e);
        return *ret = respond_error(r, &e), -1;
    }
    return 0;
}

static enum MHD_Result handle_tokenize(struct req *r) {
    struct http_server *s = r->s;
    if (!is_ready(s)) return not_ready(r);
    enum MHD_Result ret;
    if (parse_admit(r, &ret)) return ret;
    int kind = r->route->kind;
    const struct http_model *hm = &s->models[r->areq.model_index];
    struct api_error e;
    struct emb_error pe;
    int rc = emb_plan_build(hm->tok, hm->model, &r->areq.opts, r->areq.inputs, r->areq.n_inputs,
                            &r->plan, &pe);
    if (rc) {
        batcher_unreserve(hm->batcher);
        api_plan_error(rc, &pe, &r->areq, &e);
        return respond_error(r, &e);
    }
    r->n_tokens = r->plan.n_tokens;
    size_t len = 0;
    char *b =
        kind == API_K_TEI_TOKENIZE
            ? api_tei_tokenize_render(&r->areq, &r->plan, hm->tok, &len)
            : api_tokenize_render(&s->am[r->areq.model_index], &r->areq, &r->plan, hm->tok, &len);
    emb_plan_deinit(&r->plan); /* the ids are in the answer now */
    batcher_unreserve(hm->batcher);
    return respond_json(r, 200, b, len);
}

/* Has the client sent its FIN (a half-close, or a close)? */
static bool peer_sent_fin(const struct req *r) {
    struct pollfd p = {.fd = r->fd, .events = POLLRDHUP};
    return r->fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & POLLRDHUP);
}

/* Engine thread: the job is finished (or dropped); wake the connection.
 * A resumed connection whose client has half-closed would be closed by
 * MHD 0.9.75 unanswered: it reads the pending EOF before calling the
 * handler again. Such a finished job goes to the reaper, which writes the
 * answer itself and resumes the connection after. */
static void job_done(struct batcher_job *j) {
    struct req *r = j->arg;
    if (j->status == BATCHER_OK && !r->http10 && peer_sent_fin(r)) {
        struct http_server *s = r->s;
        pthread_mutex_lock(&s->conn_mu);
        r->wnext = s->writers;
        s->writers = r;
        pthread_mutex_unlock(&s->conn_mu);
        (void)!write(s->wake[1], "w", 1);
        return; /* r belongs to the reaper */
    }
    atomic_store(&r->phase, PH_DONE);
    MHD_resume_connection(r->conn); /* r belongs to the HTTP side from here */
}

/* Engine thread: is the client still connected?
 * A peer that has sent its FIN (POLLRDHUP) has either closed its socket or
 * only its sending side (shutdown(SHUT_WR), as `nc -N` and some proxies do
 * after a complete request); the two look the same until something is
 * written. So the first time, an interim "100 Continue" is written (HTTP/1.1
 * clients must accept 1xx answers before the final one): a closed peer
 * answers it with a reset, which the next check (after the next pass) sees
 * as POLLHUP/POLLERR. An HTTP/1.0 client cannot be probed: its FIN counts as
 * gone. The connection is suspended, so MHD writes nothing meanwhile. */
static bool job_alive(struct batcher_job *j) {
    static const char probe[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct req *r = j->arg;
    if (r->fd < 0) return true;
    struct pollfd p = {.fd = r->fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return true;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) return false;
    if (!(p.revents & POLLRDHUP)) return true;
    if (r->http10) return false;
    if (!r->probed) {
        r->probed = true;
        if (send(r->fd, probe, sizeof(probe) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) return false;
    }
    return true;
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
    enum MHD_Result ret;
    struct api_error e;
    double deadline = 0;
    if (request_deadline(r, &deadline, &e)) return respond_error(r, &e);
    if (parse_admit(r, &ret)) return ret;
    int kind = r->route->kind;
    const struct http_model *hm = &s->models[r->areq.model_index];
    if (r->n_inputs == 0) { /* Ollama's empty input: an empty answer, no job */
        batcher_unreserve(hm->batcher);
        size_t len = 0;
        char *b = api_embed_render_as(kind, &s->am[r->areq.model_index], &r->areq, NULL, 0, 0,
                                      (int64_t)((clock_now() - r->t0) * 1e9), &len);
        return respond_json(r, 200, b, len);
    }
    struct emb_error pe;
    int rc = emb_plan_build(hm->tok, hm->model, &r->areq.opts, r->areq.inputs, r->areq.n_inputs,
                            &r->plan, &pe);
    int n_embd = s->am[r->areq.model_index].info->n_embd;
    if (!rc && !(r->pooled = mem_malloc(sizeof(float) * (size_t)r->plan.n_outputs * n_embd)))
        rc = EMB_ENOMEM;
    if (rc) {
        batcher_unreserve(hm->batcher);
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
    batcher_submit(hm->batcher, &r->job);
    return MHD_YES;
}

/* Back on an HTTP thread after the engine: render the answer. */
static enum MHD_Result embeddings_done(struct req *r) {
    struct batcher_job *j = &r->job;
    job_times(r);
    switch (j->status) {
    case BATCHER_OK: break;
    case BATCHER_EGONE: r->status = 499; return MHD_NO; /* nobody to answer: close */
    case BATCHER_ESHUTDOWN: return not_ready(r);
    default: {
        struct api_error e;
        api_batcher_error(j->status, &e);
        return respond_error(r, &e);
    }
    }
    metrics_embed(r->s->metrics, r->areq.model_index, r->n_inputs, r->n_tokens, r->queue_ms / 1e3,
                  r->compute_ms / 1e3);
    size_t len = 0;
    char *b = render_embeddings(r, &len);
    return respond_json(r, 200, b, len);
}

static enum MHD_Result handle_info(struct req *r) {
    if (!atomic_load_explicit(&r->s->ready, memory_order_acquire)) return not_ready(r);
    size_t len = 0;
    char *b = api_tei_info_render(&r->s->am[0], CFG_VERSION, &len); /* the default model */
    return respond_json(r, 200, b, len);
}

static enum MHD_Result handle_tags(struct req *r) {
    if (!atomic_load_explicit(&r->s->ready, memory_order_acquire)) return not_ready(r);
    size_t len = 0;
    char *b = api_ollama_tags_render_n(r->s->am, r->s->n_models, &len);
    return respond_json(r, 200, b, len);
}

static enum MHD_Result handle_version(struct req *r) {
    size_t len = 0;
    char *b = api_ollama_version_render(&len);
    return respond_json(r, 200, b, len);
}

static enum MHD_Result handle_openapi(struct req *r);

/* ---- the page at `/` ------------------------------------------------------ */

/* The page may load only its own files and call only this server; nothing
 * inline, no frames, no forms posted elsewhere. */
#define UI_CSP                                                                      \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " \
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* GET/HEAD of a web asset: 200 with the bytes (static, not copied), or 304
 * when If-None-Match names its ETag. Browsers revalidate every time
 * (no-cache), so a new binary's page is never stale. */
static enum MHD_Result respond_asset(struct req *r, const struct web_asset *a) {
    const char *inm = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "If-None-Match");
    bool fresh = inm && strstr(inm, a->etag);
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        fresh ? 0 : a->len, fresh ? (void *)"" : (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    int status = fresh ? 304 : 200;
    if (!fresh) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->ctype);
    MHD_add_response_header(resp, "ETag", a->etag);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "Content-Security-Policy", UI_CSP);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    if (atomic_load(&r->s->draining) || r->close)
        MHD_add_response_header(resp, "Connection", "close");
    if (r->has_body) conn_mark_linger(r);
    r->status = status;
    atomic_store(&r->phase, PH_ANSWERED);
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* The asset a GET or HEAD of path asks for, or NULL (also with --no-ui). */
static const struct web_asset *ui_asset(const struct http_server *s, const char *method,
                                        const char *path) {
    if (s->cfg->no_ui || (strcmp(method, "GET") && strcmp(method, "HEAD"))) return NULL;
    return web_find(path);
}

/* ---- routing and auth ---------------------------------------------------- */

static const struct route routes[] = {
    {"/v1/embeddings", false, "POST", MET_R_EMBEDDINGS, true, handle_embeddings, API_K_EMBED,
     "Embeddings (Jina/OpenAI)"},
    {"/embeddings", false, "POST", MET_R_EMBEDDINGS, true, handle_embeddings, API_K_EMBED,
     "Same as /v1/embeddings"},
    {"/v1/tokenize", false, "POST", MET_R_TOKENIZE, true, handle_tokenize, API_K_TOKENIZE,
     "Token ids and counts"},
    {"/embed", false, "POST", MET_R_EMBEDDINGS, true, handle_embeddings, API_K_TEI_EMBED,
     "Embeddings (Hugging Face TEI)"},
    {"/tokenize", false, "POST", MET_R_TOKENIZE, true, handle_tokenize, API_K_TEI_TOKENIZE,
     "Tokens (Hugging Face TEI)"},
    {"/", false, "POST", MET_R_EMBEDDINGS, true, handle_embeddings, API_K_TEI_EMBED,
     "Same as /embed (TEI answers embeddings at its root)"},
    {"/api/embed", false, "POST", MET_R_EMBEDDINGS, true, handle_embeddings, API_K_OLLAMA_EMBED,
     "Embeddings (Ollama)"},
    {"/api/embeddings", false, "POST", MET_R_EMBEDDINGS, true, handle_embeddings,
     API_K_OLLAMA_LEGACY, "One embedding (Ollama, legacy)"},
    {"/v1/models", false, "GET", MET_R_MODELS, true, handle_models, -1,
     "The served models and their task-carrying names"},
    {"/v1/models/", true, "GET", MET_R_MODELS, true, handle_models, -1,
     "One model card (a name, alias or name:task)"},
    {"/info", false, "GET", MET_R_MODELS, true, handle_info, -1,
     "Model and limits (Hugging Face TEI)"},
    {"/api/tags", false, "GET", MET_R_MODELS, true, handle_tags, -1, "Models (Ollama)"},
    {"/api/version", false, "GET", MET_R_OTHER, false, handle_version, -1,
     "Ollama API level (Ollama)"},
    {"/openapi.json", false, "GET", MET_R_OTHER, false, handle_openapi, -1, "This document"},
    {"/health", false, "GET", MET_R_HEALTH, false, handle_health, -1, "Liveness"},
    {"/live", false, "GET", MET_R_HEALTH, false, handle_health, -1, "Liveness"},
    {"/ready", false, "GET", MET_R_READY, false, handle_ready, -1,
     "Readiness (every model loaded, no queue full)"},
    {"/metrics", false, "GET", MET_R_METRICS, false, handle_metrics, -1, "Prometheus metrics"},
};
#define N_ROUTES ((int)(sizeof(routes) / sizeof(routes[0])))
static const struct route route_404 = {"", false, "GET", MET_R_OTHER, false, NULL, -1, ""};
/* The page at `/` and its files (server/web.h): not in the table, so not in
 * the OpenAPI document, which describes the API. Open like /health. */
static const struct route route_ui = {"/", false, "GET", MET_R_OTHER, false, NULL, -1, ""};

int http_route_docs(struct api_route_doc *out, int max) {
    for (int i = 0; i < N_ROUTES && i < max; i++)
        out[i] = (struct api_route_doc){routes[i].path, routes[i].method, routes[i].kind,
                                        routes[i].auth, routes[i].summary};
    return N_ROUTES;
}

static enum MHD_Result handle_openapi(struct req *r) {
    struct http_server *s = r->s;
    if (!atomic_load_explicit(&s->ready, memory_order_acquire)) return not_ready(r);
    struct api_route_doc docs[N_ROUTES];
    int n = http_route_docs(docs, N_ROUTES);
    size_t len = 0;
    char *b = api_openapi_render(&s->am[0], docs, n, CFG_VERSION, &len);
    return respond_json(r, 200, b, len);
}

/* Route of a path (trailing slash ignored), or NULL. */
static const struct route *find_route(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    for (int i = 0; i < N_ROUTES; i++) {
        const struct route *rt = &routes[i];
        size_t pl = strlen(rt->path);
        if (route_is_prefix(rt) ? (n > pl && !strncmp(path, rt->path, pl))
                                : (n == pl && !strncmp(path, rt->path, pl)))
            return rt;
    }
    return NULL;
}

static bool method_ok(const struct route *rt, const char *method) {
    if (!strcmp(rt->method, method)) return true;
    return !strcmp(rt->method, "GET") && !strcmp(method, "HEAD");
}

/* A CORS preflight (OPTIONS with the setting on): 204 with what a browser
 * may send. Answered before auth: browsers send no credentials in it. */
static enum MHD_Result respond_preflight(struct req *r) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    add_cors_headers(r, resp);
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type, X-Request-Id");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    r->status = 204;
    atomic_store(&r->phase, PH_ANSWERED);
    enum MHD_Result ret = MHD_queue_response(r->conn, 204, resp);
    MHD_destroy_response(resp);
    return ret;
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

/* A new request (counted in `active` until on_completed). NULL on oom. */
static struct req *req_new(struct http_server *s, struct MHD_Connection *c) {
    struct req *r = mem_calloc(1, sizeof(*r));
    if (!r) return NULL;
    r->s = s;
    r->conn = c;
    r->fd = -1;
    r->t0 = clock_now();
    r->route = &route_404;
    atomic_fetch_add(&s->active, 1);
    return r;
}

/* Does a raw URL encode a byte no route may see: '/', which would make
 * "/v1/models%2fx" reach another route than it names, NUL (which cuts the
 * decoded string: "/health%00x" is "/health"), or a control byte? */
static bool raw_url_bad(const char *u) {
    for (const char *p = u; *p && *p != '?'; p++) {
        if (*p != '%' || !isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2])) continue;
        char hex[3] = {p[1], p[2], 0};
        long v = strtol(hex, NULL, 16);
        if (v == '/' || v < 0x20 || v == 0x7f) return true;
    }
    return false;
}

/* MHD_OPTION_URI_LOG_CALLBACK: the request line has arrived. The req is
 * created here, to keep the URL as sent (the access handler gets it
 * decoded); on_request tells its first call by !r->started. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
    struct http_server *s = cls;
    struct conn *k = conn_of(c);
    if (k) {
        pthread_mutex_lock(&s->conn_mu);
        if (k->state == CS_IDLE) { /* a keep-alive connection's next request */
            k->state = CS_HEADERS;
            k->t_ref = clock_now();
        }
        pthread_mutex_unlock(&s->conn_mu);
    }
    struct req *r = req_new(s, c);
    if (r) {
        snprintf(r->raw, sizeof(r->raw), "%s", uri);
        r->raw_bad = raw_url_bad(uri);
    }
    if (k) {
        pthread_mutex_lock(&s->conn_mu);
        k->req = r;
        k->owner = pthread_self();
        pthread_mutex_unlock(&s->conn_mu);
    }
    return r;
}

/* The framing headers, gathered over every header line (duplicates too). */
struct framing {
    int n_cl, n_te;
    const char *cl, *te;
    bool cl_differ; /* two Content-Length values that differ */
    bool bad_name;  /* whitespace in a header name */
};

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value) {
    (void)kind;
    struct framing *f = cls;
    if (!value) value = "";
    if (strpbrk(key, " \t")) f->bad_name = true;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
        if (f->n_cl++ && strcmp(f->cl, value)) f->cl_differ = true;
        if (!f->cl) f->cl = value;
    } else if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        if (!f->n_te++) f->te = value;
    }
    return MHD_YES;
}

/* Message framing that a front proxy and this server could read two ways
 * (request smuggling) is refused before any body is read, and the
 * connection closed: MHD 0.9.75 lets Transfer-Encoding win over
 * Content-Length, takes the first of two Content-Lengths, and waits forever
 * for a body in a transfer coding it does not know. */
static enum MHD_Result check_framing(struct req *r, const struct framing *f) {
    r->close = true;
    if (f->bad_name)
        return respond_code(r, API_EBADREQ, NULL,
                            "Malformed request: whitespace in a header name.");
    if (f->n_te && f->n_cl)
        return respond_code(r, API_EBADREQ, NULL,
                            "Malformed request: both Content-Length and Transfer-Encoding.");
    if (f->cl_differ)
        return respond_code(r, API_EBADREQ, NULL,
                            "Malformed request: Content-Length values that differ.");
    if (f->n_te) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "Transfer-Encoding '%.40s' is not supported: send 'chunked' or a Content-Length.",
                 f->te);
        return respond_code(r, API_ENOTIMPL, NULL, msg);
    }
    r->close = false;
    return MHD_YES;
}

static bool is_chunked(const struct framing *f) {
    if (f->n_te != 1 || f->n_cl) return false;
    const char *v = f->te;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return n == 7 && !strncasecmp(v, "chunked", 7);
}

/* First call: create the req and answer what needs no body. */
static enum MHD_Result on_first_call(struct http_server *s, struct MHD_Connection *c,
                                     const char *url, const char *method, const char *version,
                                     void **req_cls) {
    struct req *r = *req_cls;
    if (!r && !(r = req_new(s, c))) return MHD_NO;
    *req_cls = r;
    r->started = true;
    r->http10 = !version || strcmp(version, MHD_HTTP_VERSION_1_1);
    snprintf(r->method, sizeof(r->method), "%s", method);
    snprintf(r->path, sizeof(r->path), "%s", url);
    if (!r->raw[0]) snprintf(r->raw, sizeof(r->raw), "%s", url);
    set_request_id(r);
    conn_set(s, c, CS_BODY);
    struct framing f = {0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, scan_header, &f);
    const char *cl = f.cl;
    long long want = cl ? strtoll(cl, NULL, 10) : 0;
    r->has_body = want > 0 || f.n_te;
    if ((f.n_te && !is_chunked(&f)) || f.cl_differ || f.bad_name) return check_framing(r, &f);
    const struct web_asset *ui = r->raw_bad ? NULL : ui_asset(s, method, url);
    if (ui) {
        r->route = &route_ui;
        return respond_asset(r, ui);
    }
    const struct route *rt = r->raw_bad ? NULL : find_route(url);
    r->route = rt ? rt : &route_404;
    if (!rt) return respond_code(r, API_ENOTFOUND, NULL, "Not found: no such route.");
    if (!strcmp(method, "OPTIONS") && *s->cfg->cors_allow_origin) return respond_preflight(r);
    if (!method_ok(rt, method)) return respond_code(r, API_EMETHOD, NULL, NULL);
    int auth = rt->auth ? check_auth(s, c) : 0;
    if (auth) return respond_code(r, auth, NULL, NULL);
    if (want > s->cfg->max_body_bytes) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "The request body (%lld bytes) is larger than the limit of %lld bytes.", want,
                 (long long)s->cfg->max_body_bytes);
        return respond_code(r, API_ETOOLARGE, NULL, msg);
    }
    return MHD_YES; /* the body buffer grows as bytes arrive, never from the announced size */
}

/* Appends body bytes, up to the limit, growing the buffer geometrically
 * (from 16 KiB, doubling, capped at the limit) and taking each growth from
 * the memory budget. */
static void on_body(struct req *r, const char *data, size_t n) {
    size_t limit = (size_t)r->s->cfg->max_body_bytes;
    if (r->too_large || r->over_budget) return;
    if (r->len + n > limit) {
        r->too_large = true;
        drop_body(r);
        return;
    }
    if (r->len + n + 1 > r->cap || !r->body) {
        size_t cap = r->cap ? r->cap : 16384;
        while (cap < r->len + n + 1)
            cap *= 2;
        if (cap > limit + 1) cap = limit + 1;
        if (!mem_take(r, (int64_t)(cap - r->cap))) {
            r->over_budget = true;
            drop_body(r);
            return;
        }
        char *b = mem_realloc(r->body, cap);
        if (!b) {
            mem_give(r, (int64_t)(cap - r->cap));
            r->too_large = true; /* answered as 413 below; the log shows the cause */
            LOG_WARN("request %s: out of memory for a %zu-byte body", r->id, cap);
            drop_body(r);
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
    struct req *r = *req_cls;
    if (!r || !r->started) return on_first_call(cls, c, url, method, version, req_cls);
    int ph = atomic_load(&r->phase);
    if (ph == PH_DONE) return embeddings_done(r);
    /* the reaper answered (a half-closed client): close */
    if (r->written) return MHD_NO;
    if (ph != PH_RECEIVING) { /* answered early: discard any body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        struct conn *k = conn_of(c);
        if (k) {
            pthread_mutex_lock(&r->s->conn_mu);
            k->body_bytes += *upload_data_size;
            pthread_mutex_unlock(&r->s->conn_mu);
        }
        on_body(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        if (!r->too_large) return MHD_YES;
        /* Past the limit (only a chunked body gets here: a declared length
         * was refused in the first call): answer now, not after reading
         * the rest. MHD cannot queue an answer mid-body, so it is written
         * directly and the connection closed. */
        char msg[128];
        snprintf(msg, sizeof(msg), "The request body is larger than the limit of %lld bytes.",
                 (long long)r->s->cfg->max_body_bytes);
        return respond_raw(r, API_ETOOLARGE, msg);
    }
    if (r->over_budget) return over_budget(r);
    r->got_body = true;
    conn_set(r->s, c, CS_BUSY);
    return r->route->fn(r);
}

/* ---- completion, logging ---------------------------------------------- */

/* A finished job whose connection MHD is closing before the handler could
 * answer: the client's FIN arrived after job_done looked for it, and MHD
 * read it first (see job_done). MHD shuts the socket down right after this
 * notice, so the answer is written here, waiting at most 2 s for a client
 * that reads slowly; rare, and it holds this HTTP thread meanwhile. */
static void answer_late_fin(struct req *r) {
    writer_render(r);
    double end = clock_now() + 2.0;
    while (r->out && r->out_off < r->out_len) {
        ssize_t k =
            send(r->fd, r->out + r->out_off, r->out_len - r->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
            r->out_off += (size_t)k;
            continue;
        }
        int left = (int)((end - clock_now()) * 1e3);
        struct pollfd p = {.fd = r->fd, .events = POLLOUT};
        if (!(k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) || left <= 0 ||
            poll(&p, 1, left) <= 0)
            break;
    }
    if (!r->out || r->out_off < r->out_len) r->status = 499;
    free(r->out);
    r->out = NULL;
    r->written = true;
}

/* The peer's numeric address, for the access log ("" if unknown). */
static void peer_name(struct MHD_Connection *c, char *buf, size_t n) {
    const union MHD_ConnectionInfo *ci =
        c ? MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS) : NULL;
    buf[0] = '\0';
    if (!ci || !ci->client_addr) return;
    socklen_t len = ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                           : sizeof(struct sockaddr_in);
    if (getnameinfo(ci->client_addr, len, buf, (socklen_t)n, NULL, 0, NI_NUMERICHOST))
        buf[0] = '\0';
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
    struct http_server *s = cls;
    struct req *r = *req_cls;
    if (!r) return;
    *req_cls = NULL;
    if (atomic_load(&r->phase) == PH_QUEUED) { /* impossible: suspended reqs never complete */
        LOG_ERROR("request %s completed while queued; leaking it rather than racing", r->id);
        return;
    }
    if (atomic_load(&r->phase) == PH_DONE && r->job.status == BATCHER_OK) answer_late_fin(r);
    conn_set(s, c, CS_IDLE);
    struct conn *k = conn_of(c);
    if (k) {
        pthread_mutex_lock(&s->conn_mu);
        if (k->req == r) k->req = NULL;
        pthread_mutex_unlock(&s->conn_mu);
    }
    double ms = (clock_now() - r->t0) * 1e3;
    int status = r->status;
    if (!r->started) { /* MHD refused the request itself (431, 400, 505, ...) */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (ci && ci->http_status >= 400) status = (int)ci->http_status;
        if (!r->id[0])
            snprintf(r->id, sizeof(r->id), "%08x%08x", s->id_seed,
                     atomic_fetch_add(&s->next_id, 1));
    }
    if (!status) status = 499;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && status < 400 && !r->written) status = 499;
    metrics_request(s->metrics, r->route->metric, status, ms / 1e3);
    if (LOG_ENABLED(LOG_LEVEL_INFO)) {
        char client[INET6_ADDRSTRLEN + 8];
        peer_name(c, client, sizeof(client));
        struct log_access a = {.id = r->id,
                               .method = r->method[0] ? r->method : "-",
                               .path = r->path[0]  ? r->path
                                       : r->raw[0] ? r->raw
                                                   : "-",
                               .client = client,
                               .status = status,
                               .inputs = r->n_inputs,
                               .tokens = r->n_tokens,
                               .queue_ms = r->queue_ms,
                               .compute_ms = r->compute_ms,
                               .total_ms = ms};
        log_access(&a);
    }
    emb_plan_deinit(&r->plan);
    api_req_deinit(&r->areq);
    free(r->pooled);
    free(r->body);
    int64_t charged = r->charged;
    if (charged) atomic_fetch_sub(&s->mem_used, charged);
    free(r);
    /* after a big request, hand freed heap back to the system (glibc keeps
     * it otherwise, and the next big request may land in another arena) */
    if (charged >= (8LL << 20)) malloc_trim(0);
    atomic_fetch_sub(&s->active, 1);
}

/* Is v a Content-Length MHD 0.9.75 accepts (digits only, at least one,
 * within 64 bits)? *overflow: digits only, but too many. */
static bool length_ok(const char *v, bool *overflow) {
    uint64_t n = 0;
    const char *p = v;
    *overflow = false;
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (n > (UINT64_MAX - d) / 10) *overflow = true;
        n = n * 10 + d;
    }
    if (*p || p == v) *overflow = false;
    return !*p && p != v && !*overflow;
}

/* MHD 0.9.75 answers a malformed Content-Length itself (400, or 413 for
 * digits past 64 bits) before any handler call, and writes that answer's
 * status line and headers twice (parse_connection_headers queues it, then
 * the state machine overwrites the state and builds the headers again).
 * MHD logs the refusal on the HTTP thread of that connection, before it
 * writes anything: the connections this thread runs that are still in
 * their headers and carry such a value get the JSON error written here,
 * then their write side is shut down, so MHD's own answer cannot be sent
 * (its send fails and it closes the connection; the close lingers, so the
 * client can read ours). */
static void refuse_bad_length(struct http_server *s) {
    struct req *rs[16];
    int n = 0;
    pthread_t self = pthread_self();
    pthread_mutex_lock(&s->conn_mu);
    for (struct conn *k = s->conns; k && n < 16; k = k->next)
        if (k->req && !k->killed && k->state == CS_HEADERS && pthread_equal(k->owner, self) &&
            !k->req->started && atomic_load(&k->req->phase) == PH_RECEIVING)
            rs[n++] = k->req;
    pthread_mutex_unlock(&s->conn_mu);
    /* this thread runs these connections: reading their headers is safe */
    for (int i = 0; i < n; i++) {
        struct req *r = rs[i];
        const char *v =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        bool overflow;
        if (!v || length_ok(v, &overflow)) continue;
        set_request_id(r);
        char msg[160];
        if (overflow)
            snprintf(msg, sizeof(msg),
                     "The request body (Content-Length %.40s) is larger than the limit of %lld "
                     "bytes.",
                     v, (long long)s->cfg->max_body_bytes);
        else
            snprintf(msg, sizeof(msg),
                     "Malformed request: Content-Length '%.40s' is not a decimal number.", v);
        respond_raw(r, overflow ? API_ETOOLARGE : API_EBADREQ, msg);
        int fd = client_fd(r->conn);
        if (fd >= 0) shutdown(fd, SHUT_WR);
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    if (strstr(fmt, "Content-Length' header")) refuse_bad_length(cls);
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    char esc[4 * sizeof(msg)];
    log_escape(esc, sizeof(esc), msg); /* MHD may quote the request */
    LOG_DEBUG("libmicrohttpd: %s", esc);
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
    pthread_mutex_init(&s->conn_mu, NULL);
    s->wake[0] = s->wake[1] = -1;
    if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK)) {
        snprintf(err, errlen, "cannot create a pipe: %s", strerror(errno));
        return http_stop(s), NULL;
    }
    if (resolve(cfg->host, cfg->port, &ss, err, errlen)) return http_stop(s), NULL;
    s->n_trusted = cfg->trusted_proxies.n;
    s->trusted = calloc((size_t)s->n_trusted + 1, sizeof(*s->trusted));
    if (!s->trusted) return snprintf(err, errlen, "out of memory"), http_stop(s), NULL;
    for (int i = 0; i < s->n_trusted; i++)
        if (cfg_net_parse(cfg->trusted_proxies.v[i], &s->trusted[i])) {
            snprintf(err, errlen, "invalid setting --trusted-proxies: '%s'",
                     cfg->trusted_proxies.v[i]);
            return http_stop(s), NULL;
        }
    if (pthread_create(&s->reaper, NULL, reaper_main, s)) {
        snprintf(err, errlen, "cannot start a thread: %s", strerror(errno));
        return http_stop(s), NULL;
    }
    s->reaper_started = true;
    /* blocks from 256 KiB up are mmap'ed and so unmapped when freed; a fixed
     * threshold (glibc otherwise raises it after each big free) keeps big
     * bodies, id arrays and answers out of the heap */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    s->mem_limit = cfg->max_memory > 0 ? cfg->max_memory : 2LL << 30; /* until attach */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_DUAL_STACK;
    /* STRICT_FOR_CLIENT -1: in 0.9.75 only this value makes MHD refuse
     * whitespace before a header's colon ("Content-Length : 5", otherwise
     * kept as another header and the body read as the next request); the
     * checks at 1 (Host required, no spaces in the URL) stay off. */
    s->d = MHD_start_daemon(
        flags, (uint16_t)cfg->port, on_accept, s, on_request, s, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->http_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024), MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)4096, MHD_OPTION_STRICT_FOR_CLIENT, (int)-1, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, s, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, MHD_OPTION_END);
    if (!s->d) {
        snprintf(err, errlen, "cannot listen on %s port %d: %s (is the port in use?)", cfg->host,
                 cfg->port, strerror(errno));
        http_stop(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->port;
    return s;
}

int http_port(const struct http_server *s) {
    return s->port;
}

/* --max-memory 0: 75% of the cgroup's memory limit less what the process
 * holds with the model loaded (at least 64 MiB), or 2 GiB with no limit. */
static int64_t default_budget(void) {
    int64_t lim = cfg_memory_limit();
    if (!lim) return 2LL << 30;
    int64_t b = lim / 4 * 3 - mem_rss_bytes();
    return b > (64LL << 20) ? b : 64LL << 20;
}

/* The names model i answers to into s->names[i] and s->am[i]. The first
 * model takes --served-model-name and --model-alias ("*": any name); left
 * at its default ("jina-embeddings-v3"), --served-model-name names only a
 * model of that family, and the first model also answers to the names its
 * directory and config.json give (as every other model does); set, it
 * replaces them. Returns 0 or -1 (oom). */
static int build_names(struct http_server *s, int i) {
    const struct cfg *cfg = s->cfg;
    const struct http_model *hm = &s->models[i];
    const struct eng_info *in = eng_model_info(hm->model);
    const char *given[HTTP_MAX_NAMES];
    int n_given = 0;
    bool any = false, derive = true;
    if (i == 0) {
        bool dflt =
            cfg->served_names.n == 1 && !strcmp(cfg->served_names.v[0], "jina-embeddings-v3");
        derive = dflt;
        bool v3 = in->arch && !strcmp(in->arch, "jina-embeddings-v3");
        for (int k = 0; (!dflt || v3) && k < cfg->served_names.n && n_given < HTTP_MAX_NAMES; k++)
            given[n_given++] = cfg->served_names.v[k];
        for (int k = 0; k < cfg->model_aliases.n && n_given < HTTP_MAX_NAMES; k++) {
            if (!strcmp(cfg->model_aliases.v[k], "*"))
                any = true;
            else
                given[n_given++] = cfg->model_aliases.v[k];
        }
    }
    int n =
        api_model_names(hm->dir, derive ? in : NULL, given, n_given, s->names[i], HTTP_MAX_NAMES);
    if (n < 0) return -1;
    if (n == 0 && !(s->names[i][n++] = strdup("model"))) return -1; /* nothing to go by */
    s->am[i] = (struct api_model){.names = (const char *const *)s->names[i],
                                  .n_names = n,
                                  .any_name = any,
                                  .info = in,
                                  .max_input_tokens = hm->max_input_tokens,
                                  .default_task = hm->default_task,
                                  .max_client_batch = cfg->max_client_batch,
                                  .strict = cfg->strict,
                                  .auto_truncate = cfg->auto_truncate,
                                  .max_batch_tokens = cfg->max_batch_tokens,
                                  .max_queue = cfg->max_queue};
    return 0;
}

int http_attach_models(struct http_server *s, const struct http_model *models, int n, char *err,
                       size_t errlen) {
    if (n < 1 || n > CFG_MAX_MODELS) {
        snprintf(err, errlen, "between 1 and %d models can be served, not %d", CFG_MAX_MODELS, n);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        s->models[i] = models[i];
        s->n_models = i + 1; /* http_stop frees the names built so far */
        if (build_names(s, i)) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    if (api_models_check_names(s->am, n, err, errlen)) return -1;
    const char *label[CFG_MAX_MODELS];
    for (int i = 0; i < n; i++)
        label[i] = s->am[i].names[0];
    metrics_set_models(s->metrics, label, n);
    if (s->cfg->max_memory == 0) s->mem_limit = default_budget();
    LOG_INFO("memory budget for requests: %lld MiB%s", (long long)(s->mem_limit >> 20),
             s->cfg->max_memory ? "" : " (derived: --max-memory 0)");
    for (int i = 0; i < n; i++) {
        char names[600];
        int k = 0;
        for (int j = 0; j < s->am[i].n_names && k < (int)sizeof(names); j++)
            k += snprintf(names + k, sizeof(names) - (size_t)k, "%s%s", j ? ", " : "",
                          s->am[i].names[j]);
        LOG_INFO("model %d%s: %s answers to %s%s", i + 1, i ? "" : " (default)", models[i].dir,
                 names, s->am[i].any_name ? " and any other name" : "");
    }
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
    /* the reaper first: it resumes the connections it is still writing to
     * (MHD must not stop with one suspended) */
    atomic_store(&s->stop, true);
    if (s->reaper_started) pthread_join(s->reaper, NULL);
    if (s->d) MHD_stop_daemon(s->d); /* every connection's "closed" notice runs here */
    if (s->quiesced_fd != MHD_INVALID_SOCKET) close(s->quiesced_fd);
    for (int i = 0; i < N_CLIENT_BUCKETS; i++) /* empty unless a notice was lost */
        while (s->clients[i]) {
            struct client *c = s->clients[i];
            s->clients[i] = c->next;
            free(c);
        }
    pthread_mutex_destroy(&s->conn_mu);
    if (s->wake[0] >= 0) close(s->wake[0]), close(s->wake[1]);
    free(s->trusted);
    for (int i = 0; i < s->n_models; i++)
        for (int j = 0; j < HTTP_MAX_NAMES; j++)
            free(s->names[i][j]);
    free(s);
}
