/* log.h -- the server's logger: it alone writes to stderr.
 *
 * Lines look like `2025-01-31T12:00:00.123Z INFO [tid] func: message`.
 * The LOG_* macros test the level before formatting anything (redis
 * serverLog), so a disabled DEBUG line costs one atomic load.
 *
 * Thread-safety: every function here is thread-safe. The level is the one
 * mutable global; each line is written with
 * a single fputs on a locked stream, so lines never interleave. Control
 * bytes in a formatted line (a newline, ESC) are written as \xNN whatever
 * their source, so one call is always one line.
 */
#ifndef EMB_UTIL_LOG_H
#define EMB_UTIL_LOG_H

#include <stdatomic.h>
#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN = 1, LOG_LEVEL_INFO = 2, LOG_LEVEL_DEBUG = 3 };

extern atomic_int g_log_level;

/* Writes one line at `level` (no level check: use the macros). */
void log_write(int level, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies src into dst[n] (always terminated; cut with "..." if longer) for
 * a log field: bytes outside printable ASCII, space, '"' and '\\' become
 * \xNN, so a client's bytes can neither start a line, split a field, nor
 * reach a terminal as escape sequences. */
void log_escape(char *dst, size_t n, const char *src);

/* Sets the level (values of enum log_level; out of range is clamped). */
void log_set_level(int level);

#define LOG_AT(lvl, ...)                                                       \
    do {                                                                       \
        if (atomic_load_explicit(&g_log_level, memory_order_relaxed) >= (lvl)) \
            log_write((lvl), __func__, __VA_ARGS__);                           \
    } while (0)
#define LOG_ERROR(...) LOG_AT(LOG_LEVEL_ERROR, __VA_ARGS__)
#define LOG_WARN(...)  LOG_AT(LOG_LEVEL_WARN, __VA_ARGS__)
#define LOG_INFO(...)  LOG_AT(LOG_LEVEL_INFO, __VA_ARGS__)
#define LOG_DEBUG(...) LOG_AT(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
