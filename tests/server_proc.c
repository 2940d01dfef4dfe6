/* server_proc.c -- see server_proc.h. */
#include "tests/server_proc.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/net.h"
#include "tests/test.h"
#include "util/clock.h"

/* GET path on a fresh connection; the whole answer (caller frees). */
static char *get(int port, const char *path, int timeout_ms) {
    char q[512];
    int n = snprintf(q, sizeof(q), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    int fd = net_connect(port, NULL);
    if (fd < 0) return calloc(1, 1);
    net_send_all(fd, q, (size_t)n);
    char *r = net_read(fd, timeout_ms, true, NULL, NULL);
    close(fd);
    return r;
}

bool test_srv_alive(const struct test_srv *s) {
    int st;
    return waitpid(s->pid, &st, WNOHANG) == 0;
}

bool test_srv_start(struct test_srv *s, const struct test_srv_opts *o, const char *const *extra) {
    const char *build = test_env("BUILD", "build"),
               *model = o->model ? o->model : test_env("TESTMODEL", "build/testmodel");
    char bin[512], port[16];
    snprintf(bin, sizeof(bin), "%s/embedserve", build);
    snprintf(s->log, sizeof(s->log), "%s/%s", build, o->log_name);
    if (!o->log_append) unlink(s->log);
    s->port = test_free_port();
    snprintf(port, sizeof(port), "%d", s->port);
    const char *argv[48] = {bin,  "--model",     model,        "--host",  "127.0.0.1", "--port",
                            port, "--log-level", o->log_level, "--dtype", "f32"};
    int n = 11;
    for (int i = 0; extra && extra[i] && n < 46; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    s->pid = fork();
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive a crashed test run */
        FILE *f = freopen(s->log, "a", stderr);
        f = freopen("/dev/null", "w", stdout); /* don't hold the runner's pipe open */
        (void)f;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    for (double end = clock_now() + o->ready_s; s->pid > 0 && clock_now() < end;) {
        char *r = get(s->port, "/ready", 1000);
        int st = net_final_status(r);
        free(r);
        if (st == 200) return true;
        if (!test_srv_alive(s)) return false;
        usleep(50000);
    }
    return false;
}

int test_srv_stop(struct test_srv *s) {
    int st = 0;
    if (s->pid <= 0) return -1; /* never started: kill(-1) would signal everything we own */
    kill(s->pid, SIGTERM);
    if (waitpid(s->pid, &st, 0) != s->pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

double test_srv_metric(int port, const char *name) {
    char *r = get(port, "/metrics", 10000);
    size_t nl = strlen(name);
    double sum = 0;
    bool found = false;
    for (const char *p = r; p && *p;) { /* each line "name value" or "name{...} value" */
        const char *eol = strchr(p, '\n');
        if (!strncmp(p, name, nl) && (p[nl] == ' ' || p[nl] == '{')) {
            const char *v = p[nl] == ' ' ? p + nl + 1 : strstr(p + nl, "} ");
            if (v && (!eol || v < eol)) {
                sum += atof(v + (*v == '}' ? 2 : 0));
                found = true;
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    free(r);
    return found ? sum : -1;
}

double test_srv_metric_of(int port, const char *name, const char *model) {
    char *r = get(port, "/metrics", 10000);
    char key[256];
    snprintf(key, sizeof(key), "\n%s{model=\"%s\"", name, model);
    const char *p = r ? strstr(r, key) : NULL;
    const char *v = p ? strstr(p + 1, "} ") : NULL;
    double val = v ? atof(v + 2) : -1;
    free(r);
    return val;
}
