/* server_proc.h -- the real $BUILD/embedserve as a child process for the
 * black-box suites (test_conn.c, test_hostile.c, test_http.c): started on a
 * free loopback port with the generated $TESTMODEL, waited for until /ready
 * answers 200, stopped with SIGTERM.
 *
 * Ownership: struct test_srv is caller storage; nothing is allocated.
 * Thread-safety: start and stop one server from one thread; the query
 * helpers (test_srv_alive, test_srv_metric) may run on any thread.
 */
#ifndef EMB_TESTS_SERVER_PROC_H
#define EMB_TESTS_SERVER_PROC_H

#include <stdbool.h>
#include <sys/types.h>

struct test_srv {
    pid_t pid;
    int port;
    char log[512]; /* where the server's stderr goes */
};

/* What differs between the suites' servers. */
struct test_srv_opts {
    const char *log_level; /* --log-level */
    const char *log_name;  /* the server's stderr: $BUILD/<log_name> */
    bool log_append;       /* keep what earlier servers wrote there (else truncate) */
    double ready_s;        /* give up waiting for /ready after this long (sanitizer builds load
                              slowly); also given up at once when the child exits */
    const char *model;     /* the first --model; NULL = $TESTMODEL */
};

/* Starts $BUILD/embedserve --model $TESTMODEL (or o->model) --host 127.0.0.1 --port <free>
 * --log-level <o->log_level> --dtype f32, then extra (NULL-terminated, may
 * be NULL; borrowed), and waits for GET /ready to answer 200. The child
 * gets SIGTERM if the test process dies. Returns true when ready; on false,
 * s->log names the log and s->pid may still be a child to stop. */
bool test_srv_start(struct test_srv *s, const struct test_srv_opts *o, const char *const *extra);

/* Is the child still running (not yet exited)? */
bool test_srv_alive(const struct test_srv *s);

/* SIGTERM, then waits for the child. Returns its exit status, 128 + the
 * signal that killed it, or -1 when it cannot be waited for (or fork failed). */
int test_srv_stop(struct test_srv *s);

/* The value of the metric `name` in GET /metrics on port, summed over its
 * labelled series (the per-model ones: model="..."), or -1 when it has no
 * sample or /metrics does not answer within 10 s. */
double test_srv_metric(int port, const char *name);

/* The value of `name`'s series for one model (its first label is
 * model="<model>"), or -1 when there is none. */
double test_srv_metric_of(int port, const char *name, const char *model);

#endif
