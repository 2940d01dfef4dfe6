/* alloc.c -- see alloc.h. */
#include "util/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

static _Thread_local long fail_at;    /* countdown to the failing call; 0 = off */
static _Thread_local int fail_sticky; /* keep failing after the first */
static _Thread_local unsigned long n_failures;

/* True if this allocation must fail (injected). */
static int inject(void) {
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

void *mem_malloc(size_t n) {
    if (inject()) return count(NULL);
    return count(malloc(n ? n : 1));
}

void *mem_calloc(size_t n, size_t size) {
    if (inject()) return count(NULL);
    return count(calloc(n ? n : 1, size ? size : 1));
}

void *mem_realloc(void *p, size_t n) {
    if (inject()) return count(NULL); /* like realloc: p is left alone */
    return count(realloc(p, n ? n : 1));
}

char *mem_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = mem_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void mem_fail_at(long n, int sticky) {
    fail_at = n > 0 ? n : 0;
    fail_sticky = sticky;
}

unsigned long mem_failures(void) {
    return n_failures;
}

void mem_install_cjson(void) {
    cJSON_Hooks h = {mem_malloc, free};
    cJSON_InitHooks(&h);
}

long long mem_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%lld %lld", &pages, &rss) != 2) rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}
