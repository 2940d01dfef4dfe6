/* loadgen.c -- a bounded HTTP/1.1 load generator for `make soak` (wrk's
 * job, without a dependency): N keep-alive connections to 127.0.0.1 send
 * POST /v1/embeddings back to back for a fixed time, cycling through a mix
 * of request sizes, and record every latency and status.
 *
 *   loadgen --port P [--seconds S] [--conns N] [--max-requests M] [--key K]
 *
 * Prints one line: requests=.. ok=.. r429=.. errors=.. ok_rps=.. p50_ms=..
 * p90_ms=.. p99_ms=.. max_ms=.. (latencies of the 2xx answers; a 429 is
 * answered in microseconds). Exit status 0 (the caller judges). Only
 * loopback is ever contacted; the run stops at S seconds or M requests. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/net.h"
#include "util/clock.h"

static int g_port, g_conns = 16;
static double g_seconds = 10, g_deadline;
static long g_max_requests = 5000000;
static const char *g_key;
static atomic_long g_issued;

#define N_BODIES 5
static char *g_req[N_BODIES]; /* full requests, prebuilt */
static size_t g_req_len[N_BODIES];

struct worker {
    pthread_t th;
    int id;
    double *lat; /* seconds, one per answered request */
    long n_lat, cap_lat;
    long ok, r429, errors, reconnects;
};

static int dial(void) {
    int fd = net_connect(g_port, NULL), one = 1;
    if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* The mix: 1 short input, 8 inputs, 32 inputs, one long input (~400
 * tokens), base64 with a task and dimensions. */
static void build_bodies(void) {
    char *words = malloc(4096), *body = malloc(1 << 16);
    words[0] = '\0';
    for (int i = 0; i < 400; i++)
        strcat(words, i % 5 ? "data " : "vector ");
    for (int b = 0; b < N_BODIES; b++) {
        int k = 0;
        switch (b) {
        case 0: k = sprintf(body, "{\"input\":\"a short query\"}"); break;
        case 1:
        case 2: {
            int n = b == 1 ? 8 : 32;
            k = sprintf(body, "{\"input\":[");
            for (int i = 0; i < n; i++)
                k += sprintf(body + k, "%s\"passage %d about %.*s\"", i ? "," : "", i, 40 + i * 7,
                             words);
            k += sprintf(body + k, "],\"task\":\"retrieval.passage\"}");
            break;
        }
        case 3: k = sprintf(body, "{\"input\":[\"%s\"]}", words); break;
        default:
            k = sprintf(body, "{\"input\":[\"q1\",\"q2\"],\"task\":\"retrieval.query\","
                              "\"dimensions\":32,\"encoding_format\":\"base64\"}");
        }
        char auth[256] = "";
        if (g_key) snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", g_key);
        g_req[b] = malloc((size_t)k + 512);
        g_req_len[b] =
            (size_t)sprintf(g_req[b],
                            "POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n%s"
                            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n",
                            auth, k);
        memcpy(g_req[b] + g_req_len[b], body, (size_t)k);
        g_req_len[b] += (size_t)k;
    }
    free(words);
    free(body);
}

/* Reads one response; returns its status or -1 (connection broken). Sets
 * *close_it when the server asked to close. */
static int read_response(int fd, char **buf, size_t *cap, bool *close_it) {
    size_t len = 0, hdr = 0, want = (size_t)-1;
    int status = -1;
    *close_it = false;
    while (len < want) {
        if (len + 65536 > *cap) *buf = realloc(*buf, *cap *= 2);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 120000) <= 0) return -1; /* 2 min without a byte: broken */
        ssize_t k = recv(fd, *buf + len, *cap - len - 1, 0);
        if (k <= 0) return -1;
        len += (size_t)k;
        (*buf)[len] = '\0';
        if (!hdr) {
            char *e = strstr(*buf, "\r\n\r\n");
            if (!e) continue;
            hdr = (size_t)(e - *buf) + 4;
            status = atoi(*buf + 9);
            char *cl = strcasestr(*buf, "\r\nContent-Length:");
            if (!cl || cl > e) return -1; /* every answer of ours has one */
            want = hdr + strtoul(cl + 17, NULL, 10);
            char *c = strcasestr(*buf, "\r\nConnection: close");
            *close_it = c && c < e;
        }
    }
    return status;
}

static void record(struct worker *w, double dt) {
    if (w->n_lat == w->cap_lat) {
        w->cap_lat = w->cap_lat ? w->cap_lat * 2 : 4096;
        w->lat = realloc(w->lat, sizeof(double) * (size_t)w->cap_lat);
    }
    w->lat[w->n_lat++] = dt;
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    int fd = -1;
    for (long i = w->id; clock_now() < g_deadline; i++) {
        if (atomic_fetch_add(&g_issued, 1) >= g_max_requests) break;
        if (fd < 0 && (fd = dial()) < 0) {
            w->errors++;
            usleep(10000);
            continue;
        }
        int b = (int)(i % N_BODIES);
        double t0 = clock_now();
        bool close_it = false;
        int st =
            net_send_all(fd, g_req[b], g_req_len[b]) ? read_response(fd, &buf, &cap, &close_it) : -1;
        double dt = clock_now() - t0;
        if (st < 0) { /* broken connection: an error, then reconnect */
            w->errors++;
            close(fd);
            fd = -1;
            w->reconnects++;
            continue;
        }
        if (st >= 200 && st < 300) {
            record(w, dt); /* latencies of answered work (a 429 takes microseconds) */
            w->ok++;
        } else if (st == 429)
            w->r429++;
        else
            w->errors++;
        if (st == 429) usleep(20000); /* honour Retry-After, briefly */
        if (close_it) {
            close(fd);
            fd = -1;
        }
    }
    if (fd >= 0) close(fd);
    free(buf);
    return NULL;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            g_port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            g_seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--conns"))
            g_conns = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-requests"))
            g_max_requests = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--key"))
            g_key = argv[i + 1];
        else {
            fprintf(stderr, "loadgen: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (g_port <= 0 || g_conns < 1 || g_conns > 1024 || g_seconds <= 0 || g_seconds > 7200) {
        fprintf(stderr, "usage: loadgen --port P [--seconds S<=7200] [--conns N<=1024] "
                        "[--max-requests M] [--key K]\n");
        return 2;
    }
    build_bodies();
    struct worker *w = calloc((size_t)g_conns, sizeof(*w));
    double t0 = clock_now();
    g_deadline = t0 + g_seconds;
    for (int i = 0; i < g_conns; i++) {
        w[i].id = i;
        pthread_create(&w[i].th, NULL, worker_main, &w[i]);
    }
    long n = 0, ok = 0, r429 = 0, errors = 0;
    for (int i = 0; i < g_conns; i++) {
        pthread_join(w[i].th, NULL);
        n += w[i].n_lat;
        ok += w[i].ok, r429 += w[i].r429, errors += w[i].errors;
    }
    long total = ok + r429 + errors;
    double el = clock_now() - t0;
    double *all = malloc(sizeof(double) * (size_t)(n ? n : 1));
    long k = 0;
    for (int i = 0; i < g_conns; i++) {
        memcpy(all + k, w[i].lat, sizeof(double) * (size_t)w[i].n_lat);
        k += w[i].n_lat;
        free(w[i].lat);
    }
    qsort(all, (size_t)n, sizeof(double), cmp_d);
#define PCT(p) (n ? all[(long)((double)(n - 1) * (p))] * 1e3 : 0.0)
    printf("requests=%ld ok=%ld r429=%ld errors=%ld seconds=%.1f ok_rps=%.1f p50_ms=%.2f "
           "p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
           total, ok, r429, errors, el, ok / el, PCT(0.5), PCT(0.9), PCT(0.99), PCT(1.0));
    free(all);
    free(w);
    for (int b = 0; b < N_BODIES; b++)
        free(g_req[b]);
    return 0;
}
