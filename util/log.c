/* log.c -- see log.h. */
#include "util/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

atomic_int g_log_level = LOG_LEVEL_INFO;

void log_set_level(int level) {
    if (level < LOG_LEVEL_ERROR) level = LOG_LEVEL_ERROR;
    if (level > LOG_LEVEL_DEBUG) level = LOG_LEVEL_DEBUG;
    atomic_store(&g_log_level, level);
}

void log_escape(char *dst, size_t n, const char *src) {
    static const char hex[] = "0123456789abcdef";
    if (!n) return;
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        bool plain = *p > ' ' && *p < 0x7f && *p != '"' && *p != '\\';
        size_t need = plain ? 1 : 4;
        if (k + need + 4 > n) { /* room for "..." and the NUL */
            if (k + 4 <= n) memcpy(dst + k, "...", 3), k += 3;
            break;
        }
        if (plain) {
            dst[k++] = (char)*p;
        } else {
            dst[k++] = '\\', dst[k++] = 'x';
            dst[k++] = hex[*p >> 4], dst[k++] = hex[*p & 15];
        }
    }
    dst[k] = '\0';
}

/* Rewrites control bytes of line[0..k) as \xNN within cap bytes. */
static void escape_controls(char *line, size_t cap) {
    static const char hex[] = "0123456789abcdef";
    char tmp[2048];
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)line; *p && k + 5 < sizeof(tmp); p++) {
        if (*p < ' ' || *p == 0x7f) {
            tmp[k++] = '\\', tmp[k++] = 'x';
            tmp[k++] = hex[*p >> 4], tmp[k++] = hex[*p & 15];
        } else {
            tmp[k++] = (char)*p;
        }
    }
    tmp[k] = '\0';
    snprintf(line, cap, "%s", tmp);
}

void log_write(int level, const char *func, const char *fmt, ...) {
    static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int k = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    k += snprintf(line + k, sizeof(line) - (size_t)k, ".%03ldZ %s [%ld] %s: ", ts.tv_nsec / 1000000,
                  names[level & 3], (long)syscall(SYS_gettid), func);
    va_list ap;
    va_start(ap, fmt);
    if (k < (int)sizeof(line)) vsnprintf(line + k, sizeof(line) - (size_t)k, fmt, ap);
    va_end(ap);
    for (const unsigned char *p = (const unsigned char *)line; *p; p++)
        if (*p < ' ' || *p == 0x7f) {
            escape_controls(line, sizeof(line));
            break;
        }
    flockfile(stderr);
    fputs(line, stderr);
    fputc('\n', stderr);
    funlockfile(stderr);
}
