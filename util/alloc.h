/* alloc.h -- the request path's allocator, with SQLite-style fault injection.
 *
 * Every allocation made while serving a request (body buffer, parsed texts,
 * token plans, rendered responses, cJSON trees via cJSON_InitHooks) goes
 * through mem_malloc / mem_calloc / mem_realloc / mem_strdup. In normal
 * operation they are malloc & co. plus one thread-local compare. A test can
 * arm a countdown on its own thread with mem_fail_at(n): the n-th
 * allocation from then on (and every later one, until disarmed) returns
 * NULL, so a loop n = 1, 2, ... walks every failure point of a request
 * (tests/test_oom.c).
 *
 * Ownership: memory from these functions is ordinary heap memory; free it
 * with free(), so buffers may be handed to MHD
 * or cJSON_free unchanged.
 *
 * Thread-safety: all functions are thread-safe; the injection state is
 * per-thread, so arming it on a test thread never makes another thread's
 * allocations fail.
 */
#ifndef EMB_UTIL_ALLOC_H
#define EMB_UTIL_ALLOC_H

#include <stddef.h>

void *mem_malloc(size_t n);
void *mem_calloc(size_t n, size_t size);
void *mem_realloc(void *p, size_t n);
char *mem_strdup(const char *s);

/* Arms fault injection on the calling thread: allocation number n (1 = the
 * next one) fails, and so does every one after it while `sticky`; with
 * !sticky only that one fails. n = 0 disarms. */
void mem_fail_at(long n, int sticky);

/* Allocations that failed on this thread so far (injected or real). A
 * caller can compare it before and after a library call that reports every
 * failure the same way (cJSON_Parse returns NULL for bad JSON and for oom). */
unsigned long mem_failures(void);

/* Makes cJSON allocate through mem_malloc / free. Call once at startup
 * (main, tests) before any other thread uses cJSON. */
void mem_install_cjson(void);

/* This process's resident set in bytes (/proc/self/statm; 0 if unknown).
 * Thread-safe. */
long long mem_rss_bytes(void);

#endif
