/* api_render.c -- response bodies of /v1/embeddings and /v1/tokenize (see
 * api.h). Only formatting happens here: the vectors arrive finished. They
 * are written straight into a strbuf (a cJSON tree of 2048 x 1024 numbers
 * would cost more than the numbers themselves). */
#include "server/api.h"
#include "server/api_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/strbuf.h"

static const char *const enc_names[API_ENC_N] = {"float", "base64", "binary", "ubinary"};

const char *api_enc_name(int enc) {
    return enc >= 0 && enc < API_ENC_N ? enc_names[enc] : "float";
}

/* ubinary: bit = value > 0, MSB first (numpy packbits); binary = that - 128. */
static void put_packed(struct strbuf *s, const float *v, int n, bool signed_form) {
    sb_putc(s, '[');
    for (int i = 0; i < n; i += 8) {
        int byte = 0;
        for (int b = 0; b < 8; b++)
            byte |= (i + b < n && v[i + b] > 0.0f) << (7 - b);
        sb_printf(s, i ? ",%d" : "%d", signed_form ? byte - 128 : byte);
    }
    sb_putc(s, ']');
}

static void put_base64_f32(struct strbuf *s, const float *v, int n) {
    uint8_t *le = mem_malloc(4 * (size_t)n + 1);
    if (!le) {
        s->oom = true;
        return;
    }
    for (int i = 0; i < n; i++) { /* little-endian float32, whatever the host */
        uint32_t u;
        memcpy(&u, &v[i], 4);
        le[4 * i] = (uint8_t)u, le[4 * i + 1] = (uint8_t)(u >> 8);
        le[4 * i + 2] = (uint8_t)(u >> 16), le[4 * i + 3] = (uint8_t)(u >> 24);
    }
    sb_putc(s, '"');
    sb_base64(s, le, 4 * (size_t)n);
    sb_putc(s, '"');
    free(le);
}

static void put_encoded(struct strbuf *s, int enc, const float *v, int n) {
    switch (enc) {
    case API_ENC_BASE64: put_base64_f32(s, v, n); return;
    case API_ENC_BINARY: put_packed(s, v, n, true); return;
    case API_ENC_UBINARY: put_packed(s, v, n, false); return;
    default:
        sb_putc(s, '[');
        for (int i = 0; i < n; i++) {
            if (i) sb_putc(s, ',');
            sb_f32(s, v[i]);
        }
        sb_putc(s, ']');
    }
}

static void put_usage(struct strbuf *s, int64_t n_tokens) {
    sb_printf(s, "\"usage\":{\"total_tokens\":%lld,\"prompt_tokens\":%lld}", (long long)n_tokens,
              (long long)n_tokens);
}

char *api_embed_render(const struct api_model *m, const struct api_req *r, const float *vecs,
                       int dims, int64_t n_tokens, size_t *len) {
    float *row = mem_malloc(sizeof(float) * (size_t)(dims > 0 ? dims : 1));
    struct strbuf s;
    sb_init(&s);
    if (!row) return NULL;
    sb_reserve(&s, 128 + (size_t)r->n_inputs * (64 + (size_t)dims * 13 * (size_t)r->n_enc));
    sb_puts(&s, "{\"model\":");
    sb_json_str(&s, m->names[0], strlen(m->names[0]));
    sb_puts(&s, ",\"object\":\"list\",");
    put_usage(&s, n_tokens);
    sb_puts(&s, ",\"data\":[");
    for (int i = 0; i < r->n_inputs && !s.oom; i++) {
        int n = dims;
        memcpy(row, vecs + (size_t)i * dims, sizeof(float) * (size_t)dims);
        for (int j = 0; j < n; j++)
            if (!isfinite(row[j])) row[j] = 0.0f; /* never NaN/Inf on the wire */
        sb_printf(&s, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", i ? "," : "", i);
        if (r->enc_list) sb_putc(&s, '{');
        for (int k = 0; k < r->n_enc; k++) {
            if (r->enc_list) sb_printf(&s, "%s\"%s\":", k ? "," : "", enc_names[r->enc[k]]);
            put_encoded(&s, r->enc[k], row, n);
        }
        sb_puts(&s, r->enc_list ? "}}" : "}");
    }
    sb_puts(&s, "]}");
    free(row);
    return sb_detach(&s, len);
}

char *api_tokenize_render(const struct api_model *m, const struct api_req *r,
                          const struct emb_plan *plan, const tok *t, size_t *len) {
    struct strbuf s;
    sb_init(&s);
    sb_puts(&s, "{\"model\":");
    sb_json_str(&s, m->names[0], strlen(m->names[0]));
    sb_puts(&s, ",\"object\":\"list\",");
    put_usage(&s, plan->n_tokens);
    sb_puts(&s, ",\"data\":[");
    for (int32_t i = 0; i < plan->n_seqs && !s.oom; i++) {
        const struct emb_seq *q = &plan->seqs[i];
        sb_printf(&s, "%s{\"object\":\"tokens\",\"index\":%d,\"n_tokens\":%d,\"tokens\":[",
                  i ? "," : "", q->first_out, q->n_ids);
        for (int32_t j = 0; j < q->n_ids; j++)
            sb_printf(&s, j ? ",%d" : "%d", q->ids[j]);
        sb_putc(&s, ']');
        if (r->want_pieces) {
            sb_puts(&s, ",\"pieces\":[");
            for (int32_t j = 0; j < q->n_ids; j++) {
                const char *p = tok_piece(t, q->ids[j]);
                if (j) sb_putc(&s, ',');
                sb_json_str(&s, p, strlen(p));
            }
            sb_putc(&s, ']');
        }
        sb_putc(&s, '}');
    }
    sb_puts(&s, "]}");
    return sb_detach(&s, len);
}
