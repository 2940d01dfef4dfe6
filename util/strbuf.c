/* strbuf.c -- see strbuf.h.
 *
 * fmt_f32: shortest round-trip float32 printing without big integers.
 * A float v = m * 2^e rounds back from any decimal strictly inside the
 * interval (v - gap_below/2, v + gap_above/2), and from its end points too
 * when m is even (strtof rounds ties to even). Both end points are exact
 * doubles. For k = 9, 8, ... significant digits we take the two k-digit
 * decimals around v (floor and ceil of v * 10^s, s = k-1-E) and check whether
 * one lies in the interval. With 10^|s| exactly representable (|s| <= 22) the
 * candidate C * 10^-s is one correctly rounded double operation, and correct
 * rounding is monotonic, so "double strictly inside" implies "decimal
 * strictly inside". Only when the double lands exactly on an end point is the
 * answer unclear; then strtof decides. Values needing |s| > 22 (|v| < 1e-14
 * or > 1e22, rare in embeddings) take a slow snprintf/strtof loop. Having a
 * k-digit decimal inside implies having a (k+1)-digit one, so the search
 * stops at the first k that fails. */
#include "util/strbuf.h"
#include "util/alloc.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_init(struct strbuf *s) {
    memset(s, 0, sizeof(*s));
}

void sb_deinit(struct strbuf *s) {
    free(s->buf);
    sb_init(s);
}

int sb_reserve(struct strbuf *s, size_t extra) {
    if (s->oom) return -1;
    if (s->len + extra + 1 <= s->cap) return 0;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < s->len + extra + 1)
        cap *= 2;
    char *b = mem_realloc(s->buf, cap);
    if (!b) {
        s->oom = true;
        return -1;
    }
    s->buf = b;
    s->cap = cap;
    return 0;
}

void sb_put(struct strbuf *s, const void *p, size_t n) {
    if (sb_reserve(s, n)) return;
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = '\0';
}

void sb_puts(struct strbuf *s, const char *str) {
    sb_put(s, str, strlen(str));
}

void sb_putc(struct strbuf *s, char c) {
    sb_put(s, &c, 1);
}

void sb_printf(struct strbuf *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || sb_reserve(s, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(s->buf + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

char *sb_detach(struct strbuf *s, size_t *len) {
    if (s->oom || sb_reserve(s, 0)) {
        sb_deinit(s);
        return NULL;
    }
    char *b = s->buf;
    *len = s->len;
    sb_init(s);
    return b;
}

/* Length of the valid UTF-8 sequence at p[0..n), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (len > n) return 0;
    unsigned cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

void sb_json_str(struct strbuf *s, const char *str, size_t n) {
    const unsigned char *p = (const unsigned char *)str;
    if (sb_reserve(s, n + 2)) return;
    sb_putc(s, '"');
    size_t i = 0;
    while (i < n) {
        size_t run = i; /* copy runs of plain bytes in one go */
        while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
            run++;
        if (run > i) sb_put(s, p + i, run - i);
        if ((i = run) >= n) break;
        unsigned c = p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sb_put(s, esc, 2);
            i++;
        } else if (c < 0x20) {
            static const char short_esc[] = "btn\0fr"; /* \b=8 \t=9 \n=10 \f=12 \r=13 */
            if (c >= 8 && c <= 13 && short_esc[c - 8])
                sb_printf(s, "\\%c", short_esc[c - 8]);
            else
                sb_printf(s, "\\u%04x", c);
            i++;
        } else {
            size_t len = utf8_seq(p + i, n - i);
            if (len)
                sb_put(s, p + i, len);
            else
                sb_puts(s, "\xEF\xBF\xBD"); /* U+FFFD for each invalid byte */
            i += len ? len : 1;
        }
    }
    sb_putc(s, '"');
}

/* ---- shortest float32 ---------------------------------------------------- */

static const double pow10_tab[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The rounding interval of a positive finite float a, as exact doubles. */
struct f32_interval {
    double lo, hi;
    bool inclusive; /* mantissa even: the end points round to a too */
};

static struct f32_interval f32_interval_of(float a) {
    uint32_t bits;
    memcpy(&bits, &a, 4);
    uint32_t bexp = bits >> 23 & 0xFF, frac = bits & 0x7FFFFF;
    /* ulp = 2^(bexp-150) for normals, 2^-149 for subnormals */
    double ulp = ldexp(1.0, (bexp ? (int)bexp : 1) - 150);
    double gap_below = (frac == 0 && bexp > 1) ? ulp / 2 : ulp;
    struct f32_interval r = {(double)a - gap_below / 2, (double)a + ulp / 2, (frac & 1) == 0};
    return r;
}

/* C * 10^-s as a correctly rounded double (|s| <= 22). */
static double dec_value(uint64_t c, int s) {
    return s >= 0 ? (double)c / pow10_tab[s] : (double)c * pow10_tab[-s];
}

/* Digits and exponent of a decimal: value = c * 10^x. */
struct decimal {
    uint64_t c;
    int x;
};

/* Formats d as JSON: fixed notation for 1e-4 <= |v| < 1e16 (with ".0" for
 * integers), else d.ddde-05 (Python repr style). */
static int dec_format(char *out, bool neg, struct decimal d) {
    char dig[24];
    while (d.c && d.c % 10 == 0)
        d.c /= 10, d.x++;
    int n = 0;
    char rev[24];
    if (d.c < UINT32_MAX) {
        for (uint32_t c = (uint32_t)d.c; c || !n; c /= 10)
            rev[n++] = (char)('0' + c % 10);
    } else {
        for (uint64_t c = d.c; c || !n; c /= 10)
            rev[n++] = (char)('0' + c % 10);
    }
    for (int i = 0; i < n; i++)
        dig[i] = rev[n - 1 - i];
    int p = d.x + n - 1; /* scientific exponent */
    char *o = out;
    if (neg) *o++ = '-';
    if (p < -4 || p >= 16) {
        *o++ = dig[0];
        if (n > 1) {
            *o++ = '.';
            memcpy(o, dig + 1, (size_t)n - 1);
            o += n - 1;
        }
        int ap = p < 0 ? -p : p;
        *o++ = 'e';
        *o++ = p < 0 ? '-' : '+';
        if (ap >= 100) *o++ = (char)('0' + ap / 100);
        *o++ = (char)('0' + ap / 10 % 10);
        *o++ = (char)('0' + ap % 10);
    } else if (p >= 0) {
        int ip = p + 1; /* digits before the point */
        for (int i = 0; i < ip; i++)
            *o++ = i < n ? dig[i] : '0';
        *o++ = '.';
        if (n > ip) {
            memcpy(o, dig + ip, (size_t)(n - ip));
            o += n - ip;
        } else {
            *o++ = '0';
        }
    } else {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -p - 1; i++)
            *o++ = '0';
        memcpy(o, dig, (size_t)n);
        o += n;
    }
    *o = '\0';
    return (int)(o - out);
}

/* Is the decimal c * 10^-s inside a's rounding interval? */
static bool dec_inside(uint64_t c, int s, float a, const struct f32_interval *iv) {
    double v = dec_value(c, s);
    if (v > iv->lo && v < iv->hi) return true;
    if (v < iv->lo || v > iv->hi) return false;
    /* The double hit an end point: ask strtof about the exact decimal. */
    char buf[FMT_F32_MAX];
    struct decimal d = {c, -s};
    dec_format(buf, false, d);
    return strtof(buf, NULL) == a;
}

/* Best k-digit decimal in a's interval (fast path); false if none or if
 * the scale is outside the exact range. E is the decimal exponent of a. */
static bool try_digits(float a, int k, int E, const struct f32_interval *iv, struct decimal *d) {
    int s = k - 1 - E;
    if (s > 22 || s < -22) return false;
    double t = s >= 0 ? (double)a * pow10_tab[s] : (double)a / pow10_tab[-s];
    uint64_t c0 = (uint64_t)t, c1 = c0 + 1;
    if (t - (double)c0 > (double)c1 - t) c0 = c1, c1 = c0 - 1; /* c0 = the nearer one */
    d->x = -s;
    if (c0 > 0 && dec_inside(c0, s, a, iv)) return d->c = c0, true;
    if (c1 > 0 && dec_inside(c1, s, a, iv)) return d->c = c1, true;
    return false;
}

/* Slow, obviously correct path: fewest %.*e digits that read back. */
static struct decimal slow_digits(float a) {
    char buf[64];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof(buf), "%.*e", p - 1, (double)a);
        if (strtof(buf, NULL) == a) break;
    }
    struct decimal d = {0, 0};
    char *e = strchr(buf, 'e');
    int frac = 0;
    for (char *q = buf; q < e; q++) {
        if (*q == '.') {
            frac = (int)(e - q - 1);
            continue;
        }
        d.c = d.c * 10 + (uint64_t)(*q - '0');
    }
    d.x = atoi(e + 1) - frac;
    return d;
}

int fmt_f32(char out[FMT_F32_MAX], float v) {
    if (!isfinite(v)) v = 0.0f;
    bool neg = signbit(v);
    float a = fabsf(v);
    if (a == 0.0f) return (int)(stpcpy(out, neg ? "-0.0" : "0.0") - out);
    struct f32_interval iv = f32_interval_of(a);
    int e2;
    frexpf(a, &e2);                                     /* a in [2^(e2-1), 2^e2) */
    int E = (int)floor((e2 - 1) * 0.30102999566398120); /* floor(log10 a), or one less */
    if (E >= -22 && E <= 21) {                          /* fix it up: 10^E <= a < 10^(E+1) */
        double t = E >= 0 ? (double)a / pow10_tab[E] : (double)a * pow10_tab[-E];
        E += t >= 10.0 ? 1 : t < 1.0 ? -1 : 0;
    }
    struct decimal best, d;
    if (E < -14 || E > 22 || !try_digits(a, 9, E, &iv, &best)) { /* needs |k-1-E| <= 22 */
        best = slow_digits(a);
    } else {
        for (int k = 8; k >= 1 && try_digits(a, k, E, &iv, &d); k--)
            best = d;
    }
    return dec_format(out, neg, best);
}

void sb_f32(struct strbuf *s, float v) {
    if (sb_reserve(s, FMT_F32_MAX)) return;
    s->len += (size_t)fmt_f32(s->buf + s->len, v);
}

/* ---- base64 ---------------------------------------------------------------- */

static const char b64_tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t b64_len(size_t n) {
    return (n + 2) / 3 * 4;
}

void sb_base64(struct strbuf *s, const void *data, size_t n) {
    const uint8_t *p = data;
    if (sb_reserve(s, b64_len(n))) return;
    char *o = s->buf + s->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t w = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = b64_tab[w >> 18];
        *o++ = b64_tab[w >> 12 & 63];
        *o++ = b64_tab[w >> 6 & 63];
        *o++ = b64_tab[w & 63];
    }
    if (i < n) {
        uint32_t w = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        *o++ = b64_tab[w >> 18];
        *o++ = b64_tab[w >> 12 & 63];
        *o++ = i + 1 < n ? b64_tab[w >> 6 & 63] : '=';
        *o++ = '=';
    }
    s->len = (size_t)(o - s->buf);
    s->buf[s->len] = '\0';
}

static int b64_val(char c) {
    const char *p = c ? strchr(b64_tab, c) : NULL;
    return p ? (int)(p - b64_tab) : -1;
}

long b64_decode(const char *in, size_t len, uint8_t *out) {
    if (len % 4) return -1;
    long n = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            bool last = i + 4 == len;
            if (in[i + j] == '=' && last && j >= 2 && (j == 3 || in[i + 3] == '=')) {
                v[j] = 0;
                pad++;
            } else if ((v[j] = b64_val(in[i + j])) < 0) {
                return -1;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | v[3];
        out[n++] = (uint8_t)(w >> 16);
        if (pad < 2) out[n++] = (uint8_t)(w >> 8);
        if (pad < 1) out[n++] = (uint8_t)w;
    }
    return n;
}
