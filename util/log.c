/* log.c -- see log.h. */
#include "util/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

atomic_int g_log_level = LOG_LEVEL_INFO;
static atomic_int g_log_format = LOG_FORMAT_TEXT;

static const char *const level_text[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char *const level_json[] = {"error", "warn", "info", "debug"};

void log_set_level(int level) {
    if (level < LOG_LEVEL_ERROR) level = LOG_LEVEL_ERROR;
    if (level > LOG_LEVEL_DEBUG) level = LOG_LEVEL_DEBUG;
    atomic_store(&g_log_level, level);
}

void log_set_format(int format) {
    atomic_store(&g_log_format, format == LOG_FORMAT_JSON ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
}

static bool json_mode(void) {
    return atomic_load_explicit(&g_log_format, memory_order_relaxed) == LOG_FORMAT_JSON;
}

/* Length of the valid UTF-8 sequence at p[0..n), or 0 if it is not one
 * (overlongs, surrogates and values above U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

size_t log_json_str(char *dst, size_t cap, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (cap < 3) return cap ? (dst[0] = '\0', 0) : 0;
    size_t k = 0;
    dst[k++] = '"';
    const unsigned char *p = (const unsigned char *)(s ? s : ""), *end = p + (s ? n : 0);
    while (p < end) {
        char unit[8];
        size_t u = 0, adv = 1;
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            unit[u++] = '\\', unit[u++] = (char)c;
        } else if (c == '\n') {
            unit[u++] = '\\', unit[u++] = 'n';
        } else if (c == '\t') {
            unit[u++] = '\\', unit[u++] = 't';
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(unit, "\\u00", 4), u = 4;
            unit[u++] = hex[c >> 4], unit[u++] = hex[c & 15];
        } else if (c < 0x80) {
            unit[u++] = (char)c;
        } else if ((adv = utf8_len(p, (size_t)(end - p)))) {
            memcpy(unit, p, adv), u = adv;
        } else {
            memcpy(unit, "\\ufffd", 6), u = 6, adv = 1;
        }
        if (k + u + 2 > cap) break; /* the closing quote and the NUL */
        memcpy(dst + k, unit, u);
        k += u;
        p += adv;
    }
    dst[k++] = '"';
    dst[k] = '\0';
    return k;
}

size_t log_escape(char *dst, size_t cap, const char *s) {
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;
    if (!cap) return 0;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        bool plain = *p > ' ' && *p < 0x7f && *p != '"' && *p != '\\';
        if (k + (plain ? 1 : 4) + 1 > cap) break;
        if (plain) {
            dst[k++] = (char)*p;
        } else {
            dst[k++] = '\\', dst[k++] = 'x';
            dst[k++] = hex[*p >> 4], dst[k++] = hex[*p & 15];
        }
    }
    dst[k] = '\0';
    return k;
}

/* "2025-01-31T12:00:00.123Z" into buf (>= 32 bytes); returns its length. */
static int timestamp(char *buf, size_t n) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int k = (int)strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    return k + snprintf(buf + k, n - (size_t)k, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void emit(const char *line) {
    flockfile(stderr);
    fputs(line, stderr);
    fputc('\n', stderr);
    funlockfile(stderr);
}

/* Appends snprintf output at *k, never past cap. */
static void put(char *line, size_t cap, size_t *k, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *line, size_t cap, size_t *k, const char *fmt, ...) {
    if (*k >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(line + *k, cap - *k, fmt, ap);
    va_end(ap);
    if (w > 0) *k = *k + (size_t)w < cap ? *k + (size_t)w : cap - 1;
}

/* Appends `,"key":"escaped value"` to a JSON line. */
static void put_json_field(char *line, size_t cap, size_t *k, const char *key, const char *v) {
    put(line, cap, k, ",\"%s\":", key);
    if (*k + 3 < cap) *k += log_json_str(line + *k, cap - *k, v, v ? strlen(v) : 0);
}

void log_write(int level, const char *func, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char ts[40];
    timestamp(ts, sizeof(ts));
    long tid = (long)syscall(SYS_gettid);
    if (json_mode()) {
        char line[8192];
        size_t k = 0;
        put(line, sizeof(line), &k, "{\"ts\":\"%s\",\"level\":\"%s\",\"tid\":%ld", ts,
            level_json[level & 3], tid);
        put_json_field(line, sizeof(line), &k, "func", func);
        put_json_field(line, sizeof(line), &k, "msg", msg);
        put(line, sizeof(line), &k, "}");
        emit(line);
        return;
    }
    /* control bytes, whatever their source (a client's bytes quoted in a
     * message), become \xNN: one call is always one line */
    char safe[4 * sizeof(msg)];
    size_t j = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p < ' ' || *p == 0x7f) {
            safe[j++] = '\\', safe[j++] = 'x';
            safe[j++] = "0123456789abcdef"[*p >> 4], safe[j++] = "0123456789abcdef"[*p & 15];
        } else {
            safe[j++] = (char)*p;
        }
    }
    safe[j] = '\0';
    char line[sizeof(safe) + 200];
    snprintf(line, sizeof(line), "%s %s [%ld] %s: %s", ts, level_text[level & 3], tid, func, safe);
    emit(line);
}

void log_access(const struct log_access *a) {
    char ts[40];
    timestamp(ts, sizeof(ts));
    long tid = (long)syscall(SYS_gettid);
    char line[4096];
    size_t k = 0;
    if (json_mode()) {
        put(line, sizeof(line), &k,
            "{\"ts\":\"%s\",\"level\":\"info\",\"tid\":%ld,\"msg\":\"access\"", ts, tid);
        put_json_field(line, sizeof(line), &k, "id", a->id);
        put_json_field(line, sizeof(line), &k, "method", a->method);
        put_json_field(line, sizeof(line), &k, "path", a->path);
        put(line, sizeof(line), &k, ",\"status\":%d", a->status);
        put_json_field(line, sizeof(line), &k, "client", a->client);
        put(line, sizeof(line), &k,
            ",\"inputs\":%d,\"tokens\":%lld,\"queue_ms\":%.2f,\"compute_ms\":%.2f,\"ms\":%.2f}",
            a->inputs, a->tokens, a->queue_ms, a->compute_ms, a->total_ms);
        emit(line);
        return;
    }
    char id[160], method[40], path[400], client[100];
    log_escape(id, sizeof(id), a->id);
    log_escape(method, sizeof(method), a->method);
    log_escape(path, sizeof(path), a->path);
    log_escape(client, sizeof(client), a->client);
    put(line, sizeof(line), &k,
        "%s INFO [%ld] access: id=%s %s %s status=%d client=%s inputs=%d tokens=%lld "
        "queue_ms=%.2f compute_ms=%.2f total_ms=%.2f",
        ts, tid, id, method, path, a->status, client, a->inputs, a->tokens, a->queue_ms,
        a->compute_ms, a->total_ms);
    emit(line);
}
