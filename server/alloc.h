/* alloc.h -- the request path's allocator, with SQLite-style fault injection.
 *
 * Every allocation made while serving a request (body buffer, parsed texts,
 * token plans, rendered responses, cJSON trees via cJSON_InitHooks) goes
 * through emb_malloc / emb_calloc / emb_realloc / emb_strdup. In normal
 * operation they are malloc & co. plus one thread-local compare. A test can
 * arm a countdown on its own thread with emb_alloc_fail_at(n): the n-th
 * allocation from then on (and every later one, until disarmed) returns
 * NULL, so a loop n = 1, 2, ... walks every failure point of a request
 * (tests/test_oom.c).
 *
 * Ownership: memory from these functions is ordinary heap memory; free it
 * with free() (or emb_free, the same thing), so buffers may be handed to MHD
 * or cJSON_free unchanged.
 *
 * Thread-safety: all functions are thread-safe; the injection state is
 * per-thread, so arming it on a test thread never makes another thread's
 * allocations fail.
 */
#ifndef EMB_SERVER_ALLOC_H
#define EMB_SERVER_ALLOC_H

#include <stddef.h>

void *emb_malloc(size_t n);
void *emb_calloc(size_t n, size_t size);
void *emb_realloc(void *p, size_t n);
char *emb_strdup(const char *s);
void emb_free(void *p);

/* Arms fault injection on the calling thread: allocation number n (1 = the
 * next one) fails, and so does every one after it while `sticky`; with
 * !sticky only that one fails. n = 0 disarms. */
void emb_alloc_fail_at(long n, int sticky);

/* Allocations that failed on this thread so far (injected or real). A
 * caller can compare it before and after a library call that reports every
 * failure the same way (cJSON_Parse returns NULL for bad JSON and for oom). */
unsigned long emb_alloc_failures(void);

/* Allocation calls made on this thread so far (for tests). */
unsigned long emb_alloc_calls(void);

/* Makes cJSON allocate through emb_malloc / free. Call once at startup
 * (main, tests) before any other thread uses cJSON. */
void emb_alloc_install_cjson(void);

#endif
