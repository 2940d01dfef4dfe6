/* alloc.c -- see alloc.h. */
#include "server/alloc.h"

#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

static _Thread_local long fail_at;    /* countdown to the failing call; 0 = off */
static _Thread_local int fail_sticky; /* keep failing after the first */
static _Thread_local unsigned long n_failures, n_calls;

/* True if this allocation must fail (injected). */
static int inject(void) {
    n_calls++;
    if (fail_at == 0) return 0;
    if (fail_at > 1) {
        fail_at--;
        return 0;
    }
    if (!fail_sticky) fail_at = 0;
    return 1;
}

static void *count(void *p) {
    if (!p) n_failures++;
    return p;
}

void *emb_malloc(size_t n) {
    if (inject()) return count(NULL);
    return count(malloc(n ? n : 1));
}

void *emb_calloc(size_t n, size_t size) {
    if (inject()) return count(NULL);
    return count(calloc(n ? n : 1, size ? size : 1));
}

void *emb_realloc(void *p, size_t n) {
    if (inject()) return count(NULL); /* like realloc: p is left alone */
    return count(realloc(p, n ? n : 1));
}

char *emb_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = emb_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void emb_free(void *p) {
    free(p);
}

void emb_alloc_fail_at(long n, int sticky) {
    fail_at = n > 0 ? n : 0;
    fail_sticky = sticky;
}

unsigned long emb_alloc_failures(void) {
    return n_failures;
}

unsigned long emb_alloc_calls(void) {
    return n_calls;
}

void emb_alloc_install_cjson(void) {
    cJSON_Hooks h = {emb_malloc, emb_free};
    cJSON_InitHooks(&h);
}
