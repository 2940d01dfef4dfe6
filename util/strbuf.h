/* strbuf.h -- a growable byte buffer for rendering responses (lwan strbuf
 * style), plus the output encodings that write into it: JSON strings,
 * shortest round-trip float32 numbers and base64.
 *
 * Errors: an allocation failure sets sb->oom and turns every later append
 * into a no-op, so renderers append freely and check sb->oom once at the end.
 *
 * Thread-safety: a strbuf belongs to one thread at a time; the free
 * functions (fmt_f32, b64_*) are pure and thread-safe.
 */
#ifndef EMB_UTIL_STRBUF_H
#define EMB_UTIL_STRBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct strbuf {
    char *buf;  /* NUL-terminated when non-NULL; owned */
    size_t len; /* bytes used, excluding the NUL */
    size_t cap; /* bytes allocated */
    bool oom;   /* an allocation failed; contents are incomplete */
};

/* Caller storage; starts empty (no allocation). Release with sb_deinit. */
void sb_init(struct strbuf *s);
void sb_deinit(struct strbuf *s);

/* Makes room for `extra` more bytes (plus the NUL). Returns 0 or -1 (oom). */
int sb_reserve(struct strbuf *s, size_t extra);

void sb_put(struct strbuf *s, const void *p, size_t n);
void sb_puts(struct strbuf *s, const char *str);
void sb_putc(struct strbuf *s, char c);
void sb_printf(struct strbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends p[0..n) as a quoted JSON string. Control characters are escaped;
 * invalid UTF-8 bytes become U+FFFD, so the output is always valid JSON. */
void sb_json_str(struct strbuf *s, const char *p, size_t n);

/* Appends the shortest decimal that reads back as exactly v (see fmt_f32). */
void sb_f32(struct strbuf *s, float v);

/* Appends standard base64 (with '=' padding) of p[0..n). */
void sb_base64(struct strbuf *s, const void *p, size_t n);

/* Hands the buffer to the caller (free with free()); *len gets its length.
 * Returns NULL on oom (the buffer is then released). s is left empty. */
char *sb_detach(struct strbuf *s, size_t *len);

/* Longest text fmt_f32 writes, with the NUL. */
#define FMT_F32_MAX 32

/* Writes the shortest decimal (fewest significant digits; nearest to v among
 * those) that strtof reads back as v, as JSON: "0.0123", "-1.5e-07", "3.0".
 * Non-finite v (never produced by a correct engine) is written as 0.0, since
 * JSON has no NaN/Inf. Returns the length. Thread-safe. */
int fmt_f32(char out[FMT_F32_MAX], float v);

/* Base64 length of n bytes, without the NUL. */
size_t b64_len(size_t n);

/* Decodes standard base64 (padding required) into out (room for 3*len/4
 * bytes). Returns the byte count or -1 on malformed input. For tests and
 * request parsing. */
long b64_decode(const char *in, size_t len, uint8_t *out);

#endif
