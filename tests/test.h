/* test.h -- a tiny test harness (redis testhelp.h in spirit).
 *
 * CHECK* count a pass or a failure and print "FAIL file:line: what" only on
 * failure. test_all.c runs the suites and prints "N passed, N failed" last.
 * The counters are atomics so checks may run on several threads.
 */
#ifndef EMB_TEST_H
#define EMB_TEST_H

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>

extern atomic_int test_n_passed, test_n_failed;

#define CHECKM(cond, ...)                                        \
    do {                                                         \
        if (cond) {                                              \
            atomic_fetch_add(&test_n_passed, 1);                 \
        } else {                                                 \
            atomic_fetch_add(&test_n_failed, 1);                 \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fputc('\n', stderr);                                 \
        }                                                        \
    } while (0)
#define CHECK(cond) CHECKM(cond, "%s", #cond)
#define CHECK_NEAR(a, b, tol)                                                            \
    CHECKM(fabs((double)(a) - (double)(b)) <= (tol), "%s = %.9g, %s = %.9g, tol %g", #a, \
           (double)(a), #b, (double)(b), (double)(tol))

/* Environment the suites read: BUILD (build dir, default "build") and
 * TESTMODEL (generated model dir, default "build/testmodel"). */
const char *test_env(const char *name, const char *def);

/* The CPU feature mask the engine and gemm suites run under: the level named
 * by EMBEDSERVE_TEST_CPU_FEATURES (engine/cpu.h levels; unset = auto, all
 * this CPU has), so one machine runs the suites at each level it can. */
uint32_t test_cpu_features(void);

/* The whole file at path, NUL-terminated (caller frees), or NULL when it
 * cannot be opened; *len (may be NULL): its length. */
char *test_read_file(const char *path, size_t *len);

/* A loopback TCP port that was free a moment ago (for a test server), or -1. */
int test_free_port(void);

/* Suites (one per tests/test_*.c file). */
void test_ops(void);
void test_safetensors(void);
void test_tokenizer(void);
void test_tokref(void);
void test_engine(void);
void test_api(void);
void test_config(void);
void test_config_cgroup(void); /* tests/test_cgroup.c, run by test_config */
void test_http(void);
void test_wmat(void);
void test_oom(void);     /* tests/test_oom.c: allocation failures on the request path */
void test_hostile(void); /* tests/test_hostile.c: bad-input battery, slow loris, disconnects */
void test_conn(void);    /* tests/test_conn.c: connection storms, deadlines, caps, framing */
void test_memory(void);  /* tests/test_memory.c: what big requests cost, the memory budget */
void test_batcher(void); /* tests/test_batcher.c: fair passes, deadlines, drain budget */
void test_multi(void);   /* tests/test_multi.c: one server, several models */

#endif
