/* tok_chunk.c -- tok_encode_prefix for both implementations: the text is
 * encoded in chunks so that work and memory follow what the limit uses.
 *
 * A chunk ends where the implementation's cut function allows a cut (a
 * place where the ids of the whole text are those of the two sides, in
 * order), looked for between CHUNK/2 and CHUNK bytes in. A run of CHUNK
 * bytes without such a place is extended to the next one; a run longer than
 * LONG_RUN can only be cut inside, where the end of the text can change the
 * ids before it. There a prefix of the run is encoded twice, cut at two
 * points DELTA bytes apart, and the ids are kept only if both agree on every
 * id needed (a cut's effect does not reach back DELTA bytes in practice);
 * otherwise the prefix doubles, up to the whole run (encoded in one go,
 * exactly). */
#include "tokenizer/tok_impl.h"
#include "util/alloc.h"

#include <stdlib.h>
#include <string.h>

static const size_t CHUNK = 64 * 1024, LONG_RUN = 256 * 1024, DELTA = 4096;

bool tok_ids_push(struct tok_ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t c = v->cap ? v->cap * 2 : 1024;
        int32_t *q = mem_realloc(v->p, c * sizeof(*q));
        if (!q) return false;
        v->p = q, v->cap = c;
    }
    v->p[v->n++] = id;
    return true;
}

/* back to a UTF-8 character start (never below lo) */
static size_t utf8_start(const char *s, size_t i, size_t lo) {
    while (i > lo && ((unsigned char)s[i] & 0xC0) == 0x80)
        i--;
    return i;
}

struct chunker {
    const void *impl;
    tok_encode_fn enc;
    const char *head;
    size_t hlen;
};

/* head + s[0..n) */
static bool encode_chunk(const struct chunker *c, const char *s, size_t n, struct tok_ids *out) {
    if (!c->hlen) return c->enc(c->impl, s, n, out);
    char *buf = mem_malloc(c->hlen + n + 1);
    if (!buf) return false;
    memcpy(buf, c->head, c->hlen);
    memcpy(buf + c->hlen, s, n);
    bool ok = c->enc(c->impl, buf, c->hlen + n, out);
    free(buf);
    return ok;
}

/* a long run s[0..run): the first `need` ids of head + run into *out, or
 * fewer when the run has fewer (then exactly all of them) */
static bool encode_long_run(const struct chunker *c, const char *s, size_t run, size_t need,
                            struct tok_ids *out) {
    size_t k = utf8_start(s, CHUNK, 1);
    while (k + DELTA < run) {
        struct tok_ids a = {0}, b = {0};
        if (!encode_chunk(c, s, k, &a)) return free(a.p), false;
        if (a.n > need + 64) {
            size_t k2 = utf8_start(s, k + DELTA, k);
            if (!encode_chunk(c, s, k2, &b)) return free(a.p), free(b.p), false;
            if (b.n >= need && !memcmp(a.p, b.p, need * sizeof(int32_t))) {
                free(b.p);
                a.n = need;
                *out = a;
                return true;
            }
        }
        free(a.p), free(b.p);
        /* the run's end is a cut or the end of the text, and s[run] may lie
         * past the buffer: only a cut inside the run is moved back to a
         * character start */
        k = k * 2 < run ? utf8_start(s, k * 2, 1) : run;
    }
    return encode_chunk(c, s, run, out);
}

/* where the chunk starting at pos ends, and whether it is a long run */
static size_t chunk_end(tok_cut_fn cut, const char *text, size_t len, size_t pos, size_t need,
                        bool *long_run) {
    *long_run = false;
    if (!cut || len - pos <= CHUNK) return len;
    for (size_t i = pos + CHUNK - 1; i >= pos + CHUNK / 2; i--)
        if (cut(text, i, len)) return i;
    size_t i = pos + CHUNK;
    while (i < len && !cut(text, i, len))
        i++;
    *long_run = i - pos > LONG_RUN && need < i - pos;
    return i;
}

int32_t tok_encode_chunked(const void *impl, tok_encode_fn enc, tok_cut_fn cut, const char *head,
                           size_t hlen, const char *text, size_t len, int32_t max_ids,
                           int32_t **out, bool *more) {
    *out = NULL;
    *more = false;
    if (max_ids < 0) return INT32_MIN;
    struct chunker c = {impl, enc, head, hlen};
    struct tok_ids ids = {0};
    size_t pos = 0, lim = (size_t)max_ids;
    for (bool first = true; (first || pos < len) && ids.n <= lim; first = false) {
        size_t need = lim + 1 - ids.n;
        bool long_run;
        size_t end = chunk_end(cut, text, len, pos, need, &long_run);
        struct tok_ids v = {0};
        bool ok = long_run ? encode_long_run(&c, text + pos, end - pos, need, &v)
                           : encode_chunk(&c, text + pos, end - pos, &v);
        for (size_t i = 0; ok && i < v.n && ids.n <= lim; i++)
            ok = tok_ids_push(&ids, v.p[i]);
        free(v.p);
        if (!ok) {
            free(ids.p);
            return INT32_MIN;
        }
        c.hlen = 0; /* the head belongs to the first chunk */
        pos = end;
    }
    if (ids.n > lim) {
        *more = true;
        ids.n = lim;
    }
    if (ids.n == 0 || ids.n > INT32_MAX) {
        free(ids.p);
        return ids.n ? INT32_MIN : 0;
    }
    *out = ids.p;
    return (int32_t)ids.n;
}
