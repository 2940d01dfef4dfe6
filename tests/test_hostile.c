/* test_hostile.c -- the bad-input battery and the connection faults, against
 * the real build/embedserve on loopback, over raw sockets (curl cannot send
 * most of these bytes).
 *
 * Every case is one malformed or hostile request. It must get the status of
 * docs/api.md (with the JSON error body wherever the request reached the
 * server's code; protocol errors that libmicrohttpd answers itself -- 400,
 * 413, 431, 505 -- have MHD's own body), the server must stay up, and a good
 * request sent right after must still work. test_http.c already covers the
 * plain error statuses (one per field rule); this file covers what a hostile
 * client sends. Also here: slow-loris clients, API keys never logged,
 * disconnects while queued and while computing (the dropped-requests
 * counter), and SIGTERM leaving nothing behind. */
#include "tests/test.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/net.h"
#include "tests/server_proc.h"
#include "util/clock.h"

#include <cJSON.h>

#define KEY   "sekret-KEY-7f3a9c"
#define KEY2  "second-KEY-51b2d0"
#define WRONG "wrong-KEY-e4d8aa"
#define AUTH  "Authorization: Bearer " KEY "\r\n"

static int n_bad; /* hostile requests sent (reported) */

/* ---- the server process ------------------------------------------------ */

/* A raw response: status 0 = the connection closed (or timed out) without one. */
struct rr {
    int status;
    char head[4096];
    char *body;
    size_t blen;
    bool closed; /* the server closed the connection */
};

/* Parses buf[0..len) (the first response in it) into r; frees buf. */
static void rr_parse(char *buf, size_t len, struct rr *r) {
    if (len >= 12 && !strncmp(buf, "HTTP/1.", 7)) r->status = atoi(buf + 9);
    char *e = strstr(buf, "\r\n\r\n");
    size_t hl = e ? (size_t)(e - buf) + 4 : len;
    snprintf(r->head, sizeof(r->head), "%.*s", (int)(hl < sizeof(r->head) ? hl : 4095), buf);
    r->blen = len - hl;
    r->body = malloc(r->blen + 1);
    memcpy(r->body, buf + hl, r->blen);
    r->body[r->blen] = '\0';
    free(buf);
}

/* Reads one response (Content-Length framed, or to EOF). */
static void rr_read(int fd, struct rr *r, int timeout_ms) {
    size_t len;
    memset(r, 0, sizeof(*r));
    char *buf = net_read(fd, timeout_ms, true, &len, &r->closed);
    rr_parse(buf, len, r);
}

/* Connect, send req[0..n), read the answer, close. */
static void rr_exchange(int port, const char *req, size_t n, struct rr *r, int timeout_ms) {
    int fd = net_connect(port, NULL);
    if (fd < 0) {
        memset(r, 0, sizeof(*r));
        r->body = calloc(1, 1);
        return;
    }
    net_send_all(fd, req, n); /* the server may answer (and stop reading) early */
    rr_read(fd, r, timeout_ms);
    close(fd);
}

static void rr_free(struct rr *r) {
    free(r->body);
    r->body = NULL;
}

/* "POST path" with a JSON body; hdrs are extra header lines ("" for none). */
static char *req_post(const char *path, const char *hdrs, const char *body, size_t blen,
                      size_t *n) {
    char *q = malloc(blen + strlen(hdrs) + 512);
    int k = sprintf(q,
                    "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                    path, hdrs, blen);
    memcpy(q + k, body, blen);
    *n = (size_t)k + blen;
    return q;
}

/* This file's servers log at debug (the key checks grep the most verbose log). */
static bool hostile_srv_start(struct test_srv *s, const char *const *extra, const char *log_name) {
    struct test_srv_opts o = {.log_level = "debug", .log_name = log_name, .ready_s = 30};
    return test_srv_start(s, &o, extra);
}

/* ---- checks ------------------------------------------------------------- */

/* The response is the contract's error: status, JSON body with detail,
 * request_id, error.{message,type,code}; code (if given) matches. */
static void check_json_error(const char *what, const struct rr *r, int status, const char *code) {
    CHECKM(r->status == status, "%s: status %d, want %d", what, r->status, status);
    CHECKM(strcasestr(r->head, "Content-Type: application/json") != NULL, "%s: not JSON (%s)", what,
           r->head);
    cJSON *j = cJSON_ParseWithLength(r->body, r->blen);
    const cJSON *e = cJSON_GetObjectItem(j, "error");
    const cJSON *c = cJSON_GetObjectItem(e, "code");
    bool shape = cJSON_IsString(cJSON_GetObjectItem(j, "detail")) &&
                 cJSON_IsString(cJSON_GetObjectItem(j, "request_id")) &&
                 cJSON_IsString(cJSON_GetObjectItem(e, "message")) &&
                 cJSON_IsString(cJSON_GetObjectItem(e, "type")) && cJSON_IsString(c);
    CHECKM(shape, "%s: error body shape: %.300s", what, r->body);
    if (shape && code)
        CHECKM(!strcmp(c->valuestring, code), "%s: code %s, want %s", what, c->valuestring, code);
    cJSON_Delete(j);
}

/* A 200 embeddings answer with n rows of valid JSON. */
static void check_ok(const char *what, const struct rr *r, int n) {
    CHECKM(r->status == 200, "%s: status %d, want 200: %.200s", what, r->status, r->body);
    cJSON *j = cJSON_ParseWithLength(r->body, r->blen);
    CHECKM(cJSON_GetArraySize(cJSON_GetObjectItem(j, "data")) == n, "%s: %d rows", what, n);
    cJSON_Delete(j);
}

/* The server is up and a good request works (after every hostile one). */
static void check_good_after(const char *what, const struct test_srv *s) {
    static const char b[] = "{\"input\":\"still fine?\"}";
    size_t n;
    char *q = req_post("/v1/embeddings", AUTH, b, sizeof(b) - 1, &n);
    struct rr r;
    rr_exchange(s->port, q, n, &r, 20000);
    CHECKM(r.status == 200 && test_srv_alive(s), "good request after '%s': status %d", what,
           r.status);
    rr_free(&r);
    free(q);
}

/* ---- the battery -------------------------------------------------------- */

/* Bodies for POST /v1/embeddings (with a valid key). blen 0 = strlen. */
static const struct body_case {
    const char *name, *body;
    size_t blen;
    int status;
    const char *code;
} body_cases[] = {
    /* broken JSON */
    {"truncated object", "{\"input\":", 0, 400, "INPUT_INVALID_JSON"},
    {"unterminated string", "{\"input\":\"abc", 0, 400, "INPUT_INVALID_JSON"},
    {"trailing garbage", "{\"input\":\"a\"}}", 0, 400, "INPUT_INVALID_JSON"},
    {"two documents", "{\"input\":\"a\"} {\"input\":\"b\"}", 0, 400, "INPUT_INVALID_JSON"},
    {"single quotes", "{'input':'a'}", 0, 400, "INPUT_INVALID_JSON"},
    {"trailing comma", "{\"input\":\"a\",}", 0, 400, "INPUT_INVALID_JSON"},
    {"bare key", "{input:\"a\"}", 0, 400, "INPUT_INVALID_JSON"},
    {"bad escape", "{\"input\":\"a\\x41\"}", 0, 400, "INPUT_INVALID_JSON"},
    {"lone surrogate", "{\"input\":\"\\ud800\"}", 0, 400, "INPUT_INVALID_JSON"},
    {"whitespace only", "  \r\n\t ", 0, 400, "INPUT_INVALID_JSON"},
    {"NaN literal", "NaN", 0, 400, "INPUT_INVALID_JSON"},
    {"NaN value", "{\"input\":\"a\",\"dimensions\":NaN}", 0, 400, "INPUT_INVALID_JSON"},
    {"Infinity value", "{\"input\":\"a\",\"dimensions\":-Infinity}", 0, 400, "INPUT_INVALID_JSON"},
    {"raw NUL byte", "{\"input\":\"a\0b\"}", 15, 400, "INPUT_INVALID_JSON"},
    {"NUL escape in key", "{\"in\\u0000put\":\"a\"}", 0, 400, NULL},
    {"JSON string body", "\"input\"", 0, 422, "INPUT_VALIDATION_ERROR"},
    {"JSON number body", "0", 0, 422, "INPUT_VALIDATION_ERROR"},
    {"JSON null body", "null", 0, 422, "INPUT_VALIDATION_ERROR"},
    /* wrong types, every field */
    {"model: number", "{\"input\":\"a\",\"model\":5}", 0, 422, NULL},
    {"model: list", "{\"input\":\"a\",\"model\":[\"jina-embeddings-v3\"]}", 0, 422, NULL},
    {"model: object", "{\"input\":\"a\",\"model\":{}}", 0, 422, NULL},
    {"input: true", "{\"input\":true}", 0, 422, NULL},
    {"input: object without text", "{\"input\":{\"txt\":\"a\"}}", 0, 422, NULL},
    {"input: text is a number", "{\"input\":{\"text\":5}}", 0, 422, NULL},
    {"input: [null]", "{\"input\":[\"a\",null]}", 0, 422, NULL},
    {"input: nested list of strings", "{\"input\":[[\"a\"]]}", 0, 422, NULL},
    {"input: float token id", "{\"input\":[1.5]}", 0, 400, "INPUT_TOKEN_IDS_NOT_SUPPORTED"},
    {"task: number", "{\"input\":\"a\",\"task\":5}", 0, 422, NULL},
    {"task: list", "{\"input\":\"a\",\"task\":[\"retrieval.query\"]}", 0, 422, NULL},
    {"task: empty", "{\"input\":\"a\",\"task\":\"\"}", 0, 422, NULL},
    {"task: case", "{\"input\":\"a\",\"task\":\"Retrieval.Query\"}", 0, 422, NULL},
    {"dimensions: bool", "{\"input\":\"a\",\"dimensions\":true}", 0, 422, NULL},
    {"dimensions: list", "{\"input\":\"a\",\"dimensions\":[8]}", 0, 422, NULL},
    {"dimensions: n_embd+1", "{\"input\":\"a\",\"dimensions\":81}", 0, 422, NULL},
    {"normalized: number", "{\"input\":\"a\",\"normalized\":1}", 0, 422, NULL},
    {"normalize: string", "{\"input\":\"a\",\"normalize\":\"true\"}", 0, 422, NULL},
    {"embedding_type: number", "{\"input\":\"a\",\"embedding_type\":5}", 0, 422, NULL},
    {"embedding_type: mixed list", "{\"input\":\"a\",\"embedding_type\":[\"float\",3]}", 0, 422,
     NULL},
    {"encoding_type: object", "{\"input\":\"a\",\"encoding_type\":{}}", 0, 422, NULL},
    {"encoding_format: unknown", "{\"input\":\"a\",\"encoding_format\":\"int8\"}", 0, 422, NULL},
    {"late_chunking: string", "{\"input\":\"a\",\"late_chunking\":\"yes\"}", 0, 422, NULL},
    {"truncate: number", "{\"input\":\"a\",\"truncate\":0}", 0, 422, NULL},
    {"return_multivector: string", "{\"input\":\"a\",\"return_multivector\":\"no\"}", 0, 422, NULL},
    {"all fields wrong at once",
     "{\"input\":\"a\",\"task\":1,\"dimensions\":\"x\",\"normalized\":2,\"late_chunking\":3,"
     "\"truncate\":4,\"embedding_type\":5,\"return_multivector\":6,\"model\":7}",
     0, 422, NULL},
    /* huge numbers */
    {"dimensions: 1e999999", "{\"input\":\"a\",\"dimensions\":1e999999}", 0, 422, NULL},
    {"dimensions: 2^64", "{\"input\":\"a\",\"dimensions\":18446744073709551616}", 0, 422, NULL},
    {"dimensions: -1e308", "{\"input\":\"a\",\"dimensions\":-1e308}", 0, 422, NULL},
    {"dimensions: 1e-300", "{\"input\":\"a\",\"dimensions\":1e-300}", 0, 422, NULL},
    {"input: huge number", "{\"input\":1e999}", 0, 400, "INPUT_TOKEN_IDS_NOT_SUPPORTED"},
    /* duplicate keys: the last one wins (as Python's json) */
    {"duplicate input, last bad", "{\"input\":\"a\",\"input\":5}", 0, 400,
     "INPUT_TOKEN_IDS_NOT_SUPPORTED"},
    {"duplicate task, last bad", "{\"input\":\"a\",\"task\":\"query\",\"task\":\"nope\"}", 0, 422,
     NULL},
    /* invalid UTF-8 in any string, key or value: 400 naming field and byte */
    {"model: invalid UTF-8", "{\"input\":\"a\",\"model\":\"\xff\xfe\xc0\xaf\"}", 0, 400,
     "INPUT_INVALID"},
    {"task: invalid UTF-8", "{\"input\":\"a\",\"task\":\"\xed\xa0\x80\"}", 0, 400, "INPUT_INVALID"},
    {"invalid UTF-8 text", "{\"input\":[\"\xff\xfe\",\"\xc0\xaf\",\"\xed\xa0\x80\",\"a\xe2\x82\"]}",
     0, 400, "INPUT_INVALID"},
    {"invalid UTF-8 key", "{\"\xff\":1,\"input\":\"a\"}", 0, 400, "INPUT_INVALID"},
    {"dimensions -0", "{\"input\":\"a\",\"dimensions\":-0}", 0, 422, NULL},
    /* semantic limits of this server (--max-client-batch 8, --max-input-tokens 64) */
    {"inputs over the batch limit",
     "{\"input\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}", 0, 400,
     "INPUT_LIST_TOO_LONG"},
    {"media input", "{\"input\":[{\"pdf\":\"JVBERi0=\"}]}", 0, 422, NULL},
    {"empty list", "{\"input\":[]}", 0, 422, NULL},
    {"late chunking, empty input", "{\"input\":[\"a\",\"\"],\"late_chunking\":true}", 0, 422, NULL},
};

/* Bodies that look hostile but are legal: 200 with n rows. */
static const struct ok_case {
    const char *name, *body;
    size_t blen;
    int rows;
} ok_cases[] = {
    {"duplicate input, last good", "{\"input\":5,\"input\":\"a\"}", 0, 1},
    {"raw control characters", "{\"input\":\"a\x01\x1f\x7f b\"}", 0, 1},
    {"byte order mark", "\xef\xbb\xbf{\"input\":\"a\"}", 0, 1},
    {"unknown fields, deep", "{\"x\":[[[[[[[[[[{\"y\":[1,2,{}]}]]]]]]]]]],\"input\":\"a\"}", 0, 1},
    {"dimensions 8.0", "{\"input\":\"a\",\"dimensions\":8.0}", 0, 1},
    {"long input, truncate", NULL, 0, 1}, /* built below */
};

static void run_body_cases(const struct test_srv *s) {
    for (size_t i = 0; i < sizeof(body_cases) / sizeof(body_cases[0]); i++) {
        const struct body_case *c = &body_cases[i];
        size_t n, bl = c->blen ? c->blen : strlen(c->body);
        char *q = req_post("/v1/embeddings", AUTH, c->body, bl, &n);
        struct rr r;
        rr_exchange(s->port, q, n, &r, 20000);
        check_json_error(c->name, &r, c->status, c->code);
        rr_free(&r);
        free(q);
        n_bad++;
        check_good_after(c->name, s);
    }
}

static char *words(int n) {
    char *w = malloc((size_t)n * 8 + 1);
    w[0] = '\0';
    for (int i = 0; i < n; i++)
        strcat(w, i % 3 ? "lorem " : "ipsum ");
    return w;
}

static void run_ok_cases(const struct test_srv *s) {
    char *w = words(300), *longb = malloc(4096);
    snprintf(longb, 4096, "{\"input\":\"%s\",\"truncate\":true}", w);
    for (size_t i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
        const struct ok_case *c = &ok_cases[i];
        const char *b = c->body ? c->body : longb;
        size_t n, bl = c->blen ? c->blen : strlen(b);
        char *q = req_post("/v1/embeddings", AUTH, b, bl, &n);
        struct rr r;
        rr_exchange(s->port, q, n, &r, 20000);
        check_ok(c->name, &r, c->rows);
        rr_free(&r);
        free(q);
        n_bad++;
    }
    /* over --max-input-tokens (64), without truncate; and late chunking */
    char *b = malloc(8192);
    static const char *const lim[][2] = {{"", "long input"},
                                         {",\"late_chunking\":true", "late chunking, joined"}};
    for (int k = 0; k < 2; k++) {
        if (k)
            snprintf(b, 8192, "{\"input\":[\"%.200s\",\"%.200s\"]%s}", w, w, lim[k][0]);
        else
            snprintf(b, 8192, "{\"input\":\"%s\"%s}", w, lim[k][0]);
        size_t n;
        char *q = req_post("/v1/embeddings", AUTH, b, strlen(b), &n);
        struct rr r;
        rr_exchange(s->port, q, n, &r, 20000);
        check_json_error(lim[k][1], &r, 400, "INPUT_TOKEN_LIMIT_EXCEEDED");
        rr_free(&r);
        free(q);
        n_bad++;
        check_good_after(lim[k][1], s);
    }
    free(b);
    free(longb);
    free(w);
}

/* Nesting: 60000 '[' (under the body limit) and 2000 objects. */
static void run_nesting(const struct test_srv *s) {
    static const struct {
        const char *name, *open;
        int depth, status;
    } nc[] = {{"60000 nested arrays", "[", 60000, 400},
              {"2000 nested objects", "{\"a\":", 2000, 400},
              {"input nested 500 deep", NULL, 500, 422}};
    for (int i = 0; i < 3; i++) {
        size_t cap = (size_t)nc[i].depth * 8 + 64, k = 0;
        char *b = malloc(cap);
        if (nc[i].open) {
            for (int d = 0; d < nc[i].depth; d++)
                k += (size_t)sprintf(b + k, "%s", nc[i].open);
        } else {
            k += (size_t)sprintf(b, "{\"input\":");
            for (int d = 0; d < nc[i].depth; d++)
                b[k++] = '[';
            for (int d = 0; d < nc[i].depth; d++)
                b[k++] = ']';
            b[k++] = '}';
        }
        size_t n;
        char *q = req_post("/v1/embeddings", AUTH, b, k, &n);
        struct rr r;
        rr_exchange(s->port, q, n, &r, 20000);
        check_json_error(nc[i].name, &r, nc[i].status, NULL);
        rr_free(&r);
        free(q);
        free(b);
        n_bad++;
        check_good_after(nc[i].name, s);
    }
}

/* Whole raw requests: routes, methods, auth, framing, limits. status 0 in
 * the table = "no answer, but the connection is closed within the timeout". */
struct raw_case {
    const char *name;
    const char *req;
    int status;
    bool json;          /* the contract's JSON error body */
    const char *code;   /* Jina code, or NULL */
    const char *header; /* a header the answer must carry, or NULL */
};

#define GET(p)      "GET " p " HTTP/1.1\r\nHost: x\r\n" AUTH "Connection: close\r\n\r\n"
#define POSTB(h, b) "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n" h "Connection: close\r\n\r\n" b
#define GOODB       "{\"input\":\"a\"}"
#define CL13        "Content-Length: 13\r\n"

static const struct raw_case raw_cases[] = {
    /* routes and methods */
    {"POST unknown route",
     "POST /v2/embeddings HTTP/1.1\r\nHost: x\r\n" CL13 AUTH "Connection: close\r\n\r\n" GOODB, 404,
     true, "RESOURCE_NOT_FOUND", NULL},
    {"DELETE embeddings",
     "DELETE /v1/embeddings HTTP/1.1\r\nHost: x\r\n" AUTH "Connection: close\r\n\r\n", 405, true,
     "METHOD_NOT_ALLOWED", "Allow: POST"},
    {"PUT health",
     "PUT /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 405, true,
     NULL, "Allow: GET, HEAD"},
    {"POST models",
     "POST /v1/models HTTP/1.1\r\nHost: x\r\n" CL13 AUTH "Connection: close\r\n\r\n" GOODB, 405,
     true, NULL, NULL},
    {"GET tokenize", GET("/v1/tokenize"), 405, true, NULL, "Allow: POST"},
    {"lower-case method", "get /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405, true,
     NULL, NULL},
    {"made-up method", "BREW /coffee HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, true,
     NULL, NULL},
    {"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, true, NULL,
     NULL},
    {"query string on embeddings", GET("/v1/embeddings?input=a"), 405, true, NULL, NULL},
    /* no route reads a file named by the request */
    {"path traversal", GET("/../../etc/passwd"), 404, true, NULL, NULL},
    {"absolute file path", GET("/etc/passwd"), 404, true, NULL, NULL},
    {"model id traversal", GET("/v1/models/..%2f..%2fetc%2fpasswd"), 404, true, NULL, NULL},
    {"model id config.json", GET("/v1/models/%2e%2e/config.json"), 404, true, NULL, NULL},
    {"model dir as model id", GET("/v1/models/build/testmodel"), 404, true, NULL, NULL},
    /* auth */
    {"no Authorization", POSTB(CL13, GOODB), 401, true, "AUTH_MISSING_API_KEY", NULL},
    {"Bearer without key", POSTB(CL13 "Authorization: Bearer\r\n", GOODB), 401, true,
     "AUTH_MISSING_API_KEY", NULL},
    {"Bearer and spaces", POSTB(CL13 "Authorization: Bearer     \r\n", GOODB), 401, true,
     "AUTH_MISSING_API_KEY", NULL},
    {"wrong key", POSTB(CL13 "Authorization: Bearer " WRONG "\r\n", GOODB), 401, true,
     "AUTH_INVALID_API_KEY", NULL},
    {"Basic auth", POSTB(CL13 "Authorization: Basic dXNlcjpwYXNz\r\n", GOODB), 401, true,
     "AUTH_INVALID_API_KEY", NULL},
    {"key plus a byte", POSTB(CL13 "Authorization: Bearer " KEY "x\r\n", GOODB), 401, true,
     "AUTH_INVALID_API_KEY", NULL},
    {"key minus a byte", POSTB(CL13 "Authorization: Bearer sekret-KEY-7f3a9\r\n", GOODB), 401, true,
     "AUTH_INVALID_API_KEY", NULL},
    {"two keys glued", POSTB(CL13 "Authorization: Bearer " KEY KEY2 "\r\n", GOODB), 401, true,
     "AUTH_INVALID_API_KEY", NULL},
    {"key as Token scheme", POSTB(CL13 "Authorization: Token " KEY "\r\n", GOODB), 401, true,
     "AUTH_INVALID_API_KEY", NULL},
    {"models without key", "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 401,
     true, "AUTH_MISSING_API_KEY", NULL},
    {"tokenize with wrong key",
     "POST /v1/tokenize HTTP/1.1\r\nHost: x\r\n" CL13 "Authorization: Bearer " WRONG
     "\r\nConnection: close\r\n\r\n" GOODB,
     401, true, "AUTH_INVALID_API_KEY", NULL},
    /* tokenize bodies */
    {"tokenize: token ids",
     "POST /v1/tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n" AUTH
     "Connection: close\r\n\r\n{\"input\":5}",
     400, true, "INPUT_TOKEN_IDS_NOT_SUPPORTED", NULL},
    {"tokenize: return_pieces string",
     "POST /v1/tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: 33\r\n" AUTH
     "Connection: close\r\n\r\n{\"input\":\"a\",\"return_pieces\":\"x\"}",
     422, true, NULL, NULL},
    {"tokenize: empty body",
     "POST /v1/tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" AUTH
     "Connection: close\r\n\r\n",
     400, true, "INPUT_INVALID_JSON", NULL},
    /* framing and size limits */
    {"1 GB Content-Length, tiny body", POSTB("Content-Length: 1073741824\r\n" AUTH, GOODB), 413,
     true, "INPUT_PAYLOAD_TOO_LARGE", NULL},
    {"Content-Length over the limit by one", POSTB("Content-Length: 65537\r\n" AUTH, GOODB), 413,
     true, "INPUT_PAYLOAD_TOO_LARGE", NULL},
    {"Content-Length 2^64+", POSTB("Content-Length: 99999999999999999999999\r\n" AUTH, GOODB), 413,
     true, "INPUT_PAYLOAD_TOO_LARGE", NULL},
    {"Content-Length negative", POSTB("Content-Length: -1\r\n" AUTH, GOODB), 400, true,
     "INPUT_INVALID", NULL},
    {"Content-Length not a number", POSTB("Content-Length: abc\r\n" AUTH, GOODB), 400, true,
     "INPUT_INVALID", NULL},
    /* both framings: a front proxy may read it the other way (smuggling) */
    {"Content-Length and chunked",
     POSTB("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n" AUTH,
           "d\r\n" GOODB "\r\n0\r\n\r\n"),
     400, true, "INPUT_INVALID", "Connection: close"},
    {"chunked, bad chunk size",
     POSTB("Transfer-Encoding: chunked\r\n" AUTH, "zz\r\nabc\r\n0\r\n\r\n"), 400, false, NULL,
     NULL},
    {"chunked, 2^64 chunk size",
     POSTB("Transfer-Encoding: chunked\r\n" AUTH, "ffffffffffffffff\r\nabc\r\n"), 0, false, NULL,
     NULL},
    {"chunked, truncated", POSTB("Transfer-Encoding: chunked\r\n" AUTH, "d\r\n{\"inp"), 0, false,
     NULL, NULL},
    {"HTTP/9.9", "GET /health HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n", 505, false, NULL,
     NULL},
    {"no request line", "\r\n\r\n\r\n\r\n", 0, false, NULL, NULL},
    {"TLS client hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage", 0, false, NULL,
     NULL},
    {"request line only", "GET\r\n\r\n", 0, false, NULL, NULL},
};

/* A malformed Content-Length gets exactly one answer: everything the server
 * sends until it closes holds one status line (MHD 0.9.75 alone writes its
 * status line and headers twice). Sent with and without a body, and on a
 * second connection while the first is still open. */
static void run_bad_lengths(const struct test_srv *s) {
    static const struct {
        const char *value;
        int status;
        const char *code;
    } bad[] = {
        {"abc", 400, "INPUT_INVALID"}, {"99999999999999999999999", 413, "INPUT_PAYLOAD_TOO_LARGE"},
        {"-1", 400, "INPUT_INVALID"},  {"1 2", 400, "INPUT_INVALID"},
        {"+5", 400, "INPUT_INVALID"},  {"", 400, "INPUT_INVALID"},
        {"13x", 400, "INPUT_INVALID"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        for (int with_body = 0; with_body < 2; with_body++) {
            char q[512], what[96];
            snprintf(q, sizeof(q),
                     "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n" AUTH
                     "Content-Length: %s\r\n\r\n%s",
                     bad[i].value, with_body ? GOODB : "");
            snprintf(what, sizeof(what), "Content-Length '%s'%s", bad[i].value,
                     with_body ? " and a body" : "");
            int idle = net_connect(s->port, NULL); /* another connection of the server */
            int fd = net_connect(s->port, NULL);
            net_send_all(fd, q, strlen(q));
            size_t len;
            struct rr r;
            memset(&r, 0, sizeof(r));
            char *buf = net_read(fd, 8000, false, &len, &r.closed);
            int lines = 0;
            for (const char *p = buf; (p = strstr(p, "HTTP/1.")); p++)
                lines++;
            CHECKM(lines == 1, "%s: %d status lines in: %.400s", what, lines, buf);
            CHECKM(r.closed, "%s: the connection is not closed", what);
            rr_parse(buf, len, &r);
            check_json_error(what, &r, bad[i].status, bad[i].code);
            rr_free(&r);
            close(fd);
            if (idle >= 0) close(idle);
            n_bad++;
        }
    /* whitespace before the colon: MHD refuses the line itself, once */
    const char *q =
        "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n" AUTH "Content-Length : 13\r\n\r\n" GOODB;
    int fd = net_connect(s->port, NULL);
    net_send_all(fd, q, strlen(q));
    size_t len;
    bool closed = false;
    char *buf = net_read(fd, 8000, false, &len, &closed);
    int lines = 0;
    for (const char *p = buf; (p = strstr(p, "HTTP/1.")); p++)
        lines++;
    CHECKM(lines == 1 && net_final_status(buf) == 400 && closed,
           "space before the colon: %d status lines, status %d, closed %d", lines,
           net_final_status(buf), closed);
    free(buf);
    close(fd);
    n_bad++;
    check_good_after("malformed Content-Length", s);
}

static void run_raw_cases(const struct test_srv *s) {
    for (size_t i = 0; i < sizeof(raw_cases) / sizeof(raw_cases[0]); i++) {
        const struct raw_case *c = &raw_cases[i];
        struct rr r;
        double t0 = clock_now();
        rr_exchange(s->port, c->req, strlen(c->req), &r, 8000);
        if (c->status == 0) { /* no answer, but closed by the idle timeout (2 s) */
            CHECKM((r.status == 0 || r.status == 400) && (r.closed || r.status),
                   "%s: status %d, closed %d after %.1f s", c->name, r.status, r.closed,
                   clock_now() - t0);
        } else if (c->json) {
            check_json_error(c->name, &r, c->status, c->code);
        } else {
            CHECKM(r.status == c->status, "%s: status %d, want %d", c->name, r.status, c->status);
        }
        if (c->header)
            CHECKM(strstr(r.head, c->header) != NULL, "%s: no '%s' in %s", c->name, c->header,
                   r.head);
        rr_free(&r);
        n_bad++;
        check_good_after(c->name, s);
    }
}

/* Auth that must pass: scheme case, trailing spaces, the second key. */
static void run_auth_ok(const struct test_srv *s) {
    static const char *const hdr[] = {"Authorization: bearer " KEY "\r\n",
                                      "Authorization: Bearer " KEY "   \r\n",
                                      "Authorization: Bearer " KEY2 "\r\n"};
    for (int i = 0; i < 3; i++) {
        size_t n;
        char *q = req_post("/v1/embeddings", hdr[i], GOODB, 13, &n);
        struct rr r;
        rr_exchange(s->port, q, n, &r, 20000);
        check_ok(hdr[i], &r, 1);
        rr_free(&r);
        free(q);
    }
}

/* Limits that need big requests: body over the limit (whole, and chunked),
 * a 300 KB header, 20000 headers, a 100 KB URL. */
static void run_big(const struct test_srv *s) {
    size_t big = 70000, n;
    char *body = malloc(big + 1);
    memset(body, ' ', big);
    memcpy(body, "{\"input\":\"a\"", 12);
    body[big - 1] = '}';
    char *q = req_post("/v1/embeddings", AUTH, body, big, &n);
    struct rr r;
    rr_exchange(s->port, q, n, &r, 20000);
    check_json_error("body over --max-body-bytes", &r, 413, "INPUT_PAYLOAD_TOO_LARGE");
    rr_free(&r);
    free(q);
    n_bad++;
    check_good_after("body over --max-body-bytes", s);

    /* the same body chunked (no Content-Length to refuse up front) */
    q = malloc(big * 2 + 1024);
    size_t k = (size_t)sprintf(q, "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n" AUTH
                                  "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for (size_t at = 0; at < big; at += 4096) {
        size_t m = big - at < 4096 ? big - at : 4096;
        k += (size_t)sprintf(q + k, "%zx\r\n", m);
        memcpy(q + k, body + at, m);
        k += m;
        k += (size_t)sprintf(q + k, "\r\n");
    }
    k += (size_t)sprintf(q + k, "0\r\n\r\n");
    rr_exchange(s->port, q, k, &r, 20000);
    check_json_error("chunked body over --max-body-bytes", &r, 413, "INPUT_PAYLOAD_TOO_LARGE");
    rr_free(&r);
    free(q);
    n_bad++;
    check_good_after("chunked body over --max-body-bytes", s);

    /* a legal chunked body in odd pieces */
    static const char chunked[] = "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n" AUTH
                                  "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                                  "1\r\n{\r\n5\r\n\"inpu\r\n7\r\nt\":\"a\"}\r\n0\r\n\r\n";
    rr_exchange(s->port, chunked, sizeof(chunked) - 1, &r, 20000);
    check_ok("chunked body", &r, 1);
    rr_free(&r);

    /* header limits (MHD's per-connection memory: 256 KB) */
    q = malloc(400000);
    k = (size_t)sprintf(q, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(q + k, 'a', 300000);
    k += 300000;
    k += (size_t)sprintf(q + k, "\r\nConnection: close\r\n\r\n");
    rr_exchange(s->port, q, k, &r, 20000);
    CHECKM(r.status == 431, "300 KB header: status %d", r.status);
    rr_free(&r);
    n_bad++;
    check_good_after("300 KB header", s);
    k = (size_t)sprintf(q, "GET /health HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 20000; i++)
        k += (size_t)sprintf(q + k, "X-H%d: v\r\n", i);
    k += (size_t)sprintf(q + k, "Connection: close\r\n\r\n");
    rr_exchange(s->port, q, k, &r, 20000);
    CHECKM(r.status == 431, "20000 headers: status %d", r.status);
    rr_free(&r);
    n_bad++;
    check_good_after("20000 headers", s);
    k = (size_t)sprintf(q, "GET /");
    memset(q + k, 'a', 100000);
    k += 100000;
    k += (size_t)sprintf(q + k, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    rr_exchange(s->port, q, k, &r, 20000);
    check_json_error("100 KB URL", &r, 404, NULL);
    rr_free(&r);
    n_bad++;
    check_good_after("100 KB URL", s);
    /* an 8 KB API key */
    k = (size_t)sprintf(q, "Authorization: Bearer ");
    memset(q + k, 'A', 8192);
    k += 8192;
    k += (size_t)sprintf(q + k, "\r\n");
    char *req = req_post("/v1/embeddings", q, GOODB, 13, &n);
    rr_exchange(s->port, req, n, &r, 20000);
    check_json_error("8 KB API key", &r, 401, "AUTH_INVALID_API_KEY");
    rr_free(&r);
    free(req);
    n_bad++;
    free(q);
    free(body);
}

/* Slow loris: 32 connections dribble header bytes (one per 100 ms each)
 * for 2 s while good requests keep being answered promptly; then they go
 * silent and the server closes them after --http-timeout (2 s). */
static void run_slowloris(const struct test_srv *s) {
    enum { N = 32 };
    int fd[N];
    static const char drip[] = "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    for (int i = 0; i < N; i++) {
        fd[i] = net_connect(s->port, NULL);
        static const char start[] = "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n";
        if (fd[i] >= 0) net_send_all(fd[i], start, sizeof(start) - 1);
    }
    double worst = 0, t_end = clock_now() + 2.0;
    int good = 0;
    for (int step = 0; clock_now() < t_end; step++) {
        for (int i = 0; i < N; i++)
            if (fd[i] >= 0) net_send_all(fd[i], drip + step % (sizeof(drip) - 1), 1);
        if (step % 2 == 0) {
            double t0 = clock_now();
            size_t n;
            char *q = req_post("/v1/embeddings", AUTH, GOODB, 13, &n);
            struct rr r;
            rr_exchange(s->port, q, n, &r, 10000);
            good += r.status == 200;
            worst = fmax(worst, clock_now() - t0);
            rr_free(&r);
            free(q);
        }
        usleep(100000);
    }
    CHECKM(good >= 5 && worst < 1.0, "slow loris: %d good requests, slowest %.2f s", good, worst);
    /* now silent: closed by the idle timeout */
    double t0 = clock_now();
    int closed = 0;
    for (int i = 0; i < N; i++) {
        if (fd[i] < 0) continue;
        struct pollfd p = {.fd = fd[i], .events = POLLIN};
        int left = (int)((t0 + 8.0 - clock_now()) * 1e3);
        char c;
        if (left > 0 && poll(&p, 1, left) == 1 && recv(fd[i], &c, 1, 0) <= 0) closed++;
        close(fd[i]);
    }
    CHECKM(closed == N, "slow loris: %d of %d silent connections closed in %.1f s", closed, N,
           clock_now() - t0);
    n_bad += N;
    check_good_after("slow loris", s);
}

/* The log (at debug level) never shows a key, right or wrong. */
static void check_log_has_no_keys(const struct test_srv *s) {
    size_t len;
    char *buf = test_read_file(s->log, &len);
    CHECKM(buf != NULL, "no server log at %s", s->log);
    if (!buf) return;
    CHECKM(strstr(buf, "status=401") != NULL, "the log has no 401 lines: grep would be vacuous");
    CHECKM(!memmem(buf, len, KEY, strlen(KEY)), "an API key is in the log");
    CHECKM(!memmem(buf, len, KEY2, strlen(KEY2)), "the second API key is in the log");
    CHECKM(!memmem(buf, len, WRONG, strlen(WRONG)), "a presented (wrong) key is in the log");
    CHECKM(!memmem(buf, len, "AAAAAAAAAAAAAAAA", 16), "the 8 KB key is in the log");
    CHECKM(!strcasestr(buf, "Bearer"), "an Authorization header is in the log");
    free(buf);
}

/* ---- disconnects -------------------------------------------------------- */

static bool wait_metric(int port, const char *name, double at_least, double seconds) {
    for (double end = clock_now() + seconds; clock_now() < end; usleep(20000))
        if (test_srv_metric(port, name) >= at_least) return true;
    return false;
}

/* A 2048-input request of long texts; the server runs it in many passes
 * (--max-batch-tokens 64), so there is time to hang up on it. */
static char *big_request(size_t *n) {
    char *w = words(150);
    size_t wl = strlen(w), cap = 2048 * (wl + 4) + 64;
    char *b = malloc(cap);
    size_t k = (size_t)sprintf(b, "{\"input\":[");
    for (int i = 0; i < 2048; i++)
        k += (size_t)sprintf(b + k, "%s\"%s\"", i ? "," : "", w);
    k += (size_t)sprintf(b + k, "]}");
    char *q = req_post("/v1/embeddings", AUTH, b, k, n);
    free(b);
    free(w);
    return q;
}

static void run_disconnects(void) {
    struct test_srv s;
    const char *args[] = {"--api-key", KEY, "--max-batch-tokens", "64", "--max-queue", "8", NULL};
    bool up = hostile_srv_start(&s, args, "test_hostile_disconnect.log");
    CHECKM(up, "disconnect server did not start (see %s)", s.log);
    if (!up) return;
    size_t n;
    char *q = big_request(&n);
    double d0 = test_srv_metric(s.port, "embedserve_dropped_requests_total");
    /* A computes; B waits behind it */
    int a = net_connect(s.port, NULL), b = net_connect(s.port, NULL);
    net_send_all(a, q, n);
    CHECK(wait_metric(s.port, "embedserve_queue_depth", 1, 30));
    net_send_all(b, q, n);
    CHECK(wait_metric(s.port, "embedserve_queue_depth", 2, 30));
    close(b); /* hang up while queued */
    CHECKM(wait_metric(s.port, "embedserve_dropped_requests_total", d0 + 1, 30),
           "queued request of a closed connection not dropped");
    close(a); /* hang up while computing */
    CHECKM(wait_metric(s.port, "embedserve_dropped_requests_total", d0 + 2, 30),
           "computing request of a closed connection not dropped");
    bool drained = false;
    for (int i = 0; i < 500 && !drained; i++, usleep(20000))
        drained = test_srv_metric(s.port, "embedserve_queue_depth") == 0;
    CHECKM(drained, "queue depth did not return to 0 after the drops");
    /* and a client that sends half a body and hangs up */
    int c = net_connect(s.port, NULL);
    net_send_all(c, q, n / 2);
    close(c);
    check_good_after("disconnects", &s);
    free(q);
    CHECKM(test_srv_stop(&s) == 0,
           "disconnect server: exit status after SIGTERM (leaks under ASan?)");
}

void test_hostile(void) {
    struct test_srv s;
    const char *args[] = {"--api-key",
                          KEY "," KEY2,
                          "--max-body-bytes",
                          "65536",
                          "--max-client-batch",
                          "8",
                          "--max-input-tokens",
                          "64",
                          "--http-timeout",
                          "2",
                          NULL};
    bool up = hostile_srv_start(&s, args, "test_hostile_server.log");
    CHECKM(up, "hostile server did not start (see %s)", s.log);
    if (up) {
        run_body_cases(&s);
        run_ok_cases(&s);
        run_nesting(&s);
        run_raw_cases(&s);
        run_bad_lengths(&s);
        run_auth_ok(&s);
        run_big(&s);
        run_slowloris(&s);
        int st = test_srv_stop(&s);
        CHECKM(st == 0, "hostile server: exit status %d after SIGTERM (see %s)", st, s.log);
        check_log_has_no_keys(&s);
    }
    fprintf(stderr, "hostile: %d bad or hostile requests sent\n", n_bad);
    CHECKM(n_bad >= 60, "only %d hostile requests", n_bad);
    run_disconnects();
}
