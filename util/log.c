/* log.c -- see log.h. */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

atomic_int g_log_level = LOG_LEVEL_INFO;

void log_set_level(int level) {
    if (level < LOG_LEVEL_ERROR) level = LOG_LEVEL_ERROR;
    if (level > LOG_LEVEL_DEBUG) level = LOG_LEVEL_DEBUG;
    atomic_store(&g_log_level, level);
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
    flockfile(stderr);
    fputs(line, stderr);
    fputc('\n', stderr);
    funlockfile(stderr);
}
