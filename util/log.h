/* log.h -- the server's logger: it alone writes to stderr.
 *
 * Two formats (log_set_format):
 *   text  `2025-01-31T12:00:00.123Z INFO [tid] func: message`; access lines
 *         `2025-01-31T12:00:00.123Z INFO [tid] access: id=... GET /path ...`
 *   json  one object per line: {"ts":..., "level":"info", "tid":N,
 *         "func":"...", "msg":"..."}; access lines carry "msg":"access" and
 *         the fields of struct log_access instead of a message.
 * In JSON every string is escaped as it is written ('"', '\\', control
 * bytes as \u00XX, invalid UTF-8 as U+FFFD), so no request-controlled
 * value can end the object or the line. In text, request-controlled access
 * fields have bytes outside printable ASCII, space, '"' and '\\' written as
 * \xNN.
 *
 * The LOG_* macros test the level before formatting anything (redis
 * serverLog), so a disabled DEBUG line costs one atomic load.
 *
 * Thread-safety: every function here is thread-safe. The level and the
 * format are the process's mutable globals (set at startup); each line is
 * written with a single fputs on a locked stream, so lines never interleave.
 * Control bytes in a text line (a newline, ESC) are written as \xNN
 * whatever their source, so one call is always one line; JSON lines escape
 * every string by construction.
 */
#ifndef EMB_UTIL_LOG_H
#define EMB_UTIL_LOG_H

#include <stdatomic.h>
#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN = 1, LOG_LEVEL_INFO = 2, LOG_LEVEL_DEBUG = 3 };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 };

extern atomic_int g_log_level;

/* Writes one line at `level` (no level check: use the macros). */
void log_write(int level, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies src into dst[cap] (always terminated; cut if longer) for a text
 * log field: bytes outside printable ASCII, space, '"' and '\\' become \xNN,
 * so a client's bytes can neither start a line, split a field, nor reach a
 * terminal as escape sequences. Returns the length written. */
size_t log_escape(char *dst, size_t cap, const char *src);

/* Sets the level (values of enum log_level; out of range is clamped). */
void log_set_level(int level);

/* Sets the line format (enum log_format). */
void log_set_format(int format);

/* One finished HTTP request. Strings are borrowed for the call and may hold
 * any bytes (they come from the client); NULL is written as "". */
struct log_access {
    const char *id; /* X-Request-Id */
    const char *method;
    const char *path;
    const char *client; /* peer address */
    int status;
    int inputs;
    long long tokens;
    double queue_ms, compute_ms, total_ms;
};

/* Writes an access line at INFO (no level check: callers test
 * LOG_ENABLED(LOG_LEVEL_INFO)). */
void log_access(const struct log_access *a);

/* Writes s[0..n) as a JSON string (quotes included) into dst[cap], always
 * terminated; cut on a character boundary if it does not fit. Returns the
 * length written. */
size_t log_json_str(char *dst, size_t cap, const char *s, size_t n);

#define LOG_ENABLED(lvl) (atomic_load_explicit(&g_log_level, memory_order_relaxed) >= (lvl))
#define LOG_AT(lvl, ...)                                               \
    do {                                                               \
        if (LOG_ENABLED(lvl)) log_write((lvl), __func__, __VA_ARGS__); \
    } while (0)
#define LOG_ERROR(...) LOG_AT(LOG_LEVEL_ERROR, __VA_ARGS__)
#define LOG_WARN(...)  LOG_AT(LOG_LEVEL_WARN, __VA_ARGS__)
#define LOG_INFO(...)  LOG_AT(LOG_LEVEL_INFO, __VA_ARGS__)
#define LOG_DEBUG(...) LOG_AT(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
