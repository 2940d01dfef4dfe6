/* api_compat.c -- the answers of the other APIs served on the same port
 * (see api.h and docs/api.md, "Other APIs"): Hugging Face TEI (/embed,
 * /tokenize, /info) and Ollama (/api/embed, /api/embeddings, /api/tags,
 * /api/version). Requests are parsed by api_parse (api_parse.c) with the
 * same field table as /v1/embeddings; only the shapes differ here. */
#include "server/api.h"
#include "server/api_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strbuf.h"

/* Ollama's version string for clients that check the API level before
 * calling /api/embed (added in Ollama 0.3.0; `dimensions` later): this is
 * the Ollama API level these routes follow, not embedserve's version. */
#define OLLAMA_API_LEVEL "0.12.0"

static void put_row(struct strbuf *s, const float *v, int n) {
    sb_putc(s, '[');
    for (int j = 0; j < n; j++) {
        if (j) sb_putc(s, ',');
        sb_f32(s, isfinite(v[j]) ? v[j] : 0.0f); /* never NaN/Inf on the wire */
    }
    sb_putc(s, ']');
}

static void put_rows(struct strbuf *s, const float *vecs, int n, int dims) {
    sb_putc(s, '[');
    for (int i = 0; i < n && !s->oom; i++) {
        if (i) sb_putc(s, ',');
        put_row(s, vecs + (size_t)i * (size_t)dims, dims);
    }
    sb_putc(s, ']');
}

char *api_embed_render_as(int kind, const struct api_model *m, const struct api_req *r,
                          const float *vecs, int dims, int64_t n_tokens, int64_t total_ns,
                          size_t *len) {
    if (kind == API_K_EMBED) return api_embed_render(m, r, vecs, dims, n_tokens, len);
    struct strbuf s;
    sb_init(&s);
    sb_reserve(&s, 128 + (size_t)r->n_inputs * (4 + (size_t)dims * 13));
    if (kind == API_K_TEI_EMBED) {
        put_rows(&s, vecs, r->n_inputs, dims);
    } else if (kind == API_K_OLLAMA_LEGACY) {
        sb_puts(&s, "{\"embedding\":");
        if (r->n_inputs > 0)
            put_row(&s, vecs, dims);
        else
            sb_puts(&s, "[]");
        sb_putc(&s, '}');
    } else { /* API_K_OLLAMA_EMBED */
        sb_puts(&s, "{\"model\":");
        sb_json_str(&s, r->model, strlen(r->model));
        sb_puts(&s, ",\"embeddings\":");
        put_rows(&s, vecs, r->n_inputs, dims);
        /* the model is loaded at startup and stays: no load time per request */
        sb_printf(&s, ",\"total_duration\":%lld,\"load_duration\":0,\"prompt_eval_count\":%lld}",
                  (long long)total_ns, (long long)n_tokens);
    }
    return sb_detach(&s, len);
}

char *api_tei_tokenize_render(const struct api_req *r, const struct emb_plan *plan, const tok *t,
                              size_t *len) {
    (void)r;
    struct strbuf s;
    sb_init(&s);
    sb_putc(&s, '[');
    int32_t bos = tok_bos(t), eos = tok_eos(t);
    for (int32_t i = 0; i < plan->n_seqs && !s.oom; i++) {
        const struct emb_seq *q = &plan->seqs[i];
        sb_puts(&s, i ? ",[" : "[");
        bool first = true;
        for (int32_t j = 0; j < q->n_ids; j++) {
            bool special = q->ids[j] == bos || q->ids[j] == eos;
            if (special && r->no_special) continue;
            const char *p = tok_piece(t, q->ids[j]);
            sb_printf(&s, "%s{\"id\":%d,\"text\":", first ? "" : ",", q->ids[j]);
            sb_json_str(&s, p, strlen(p));
            /* start/stop: null, the tokenizer keeps no character offsets */
            sb_printf(&s, ",\"special\":%s,\"start\":null,\"stop\":null}",
                      special ? "true" : "false");
            first = false;
        }
        sb_putc(&s, ']');
    }
    sb_putc(&s, ']');
    return sb_detach(&s, len);
}

char *api_tei_info_render(const struct api_model *m, const char *version, size_t *len) {
    const struct eng_info *in = m->info;
    const char *hf = in->name && *in->name ? in->name : m->names[0];
    struct strbuf s;
    sb_init(&s);
    sb_puts(&s, "{");
    api_put_str_field(&s, "model_id", hf);
    sb_puts(&s, ",\"model_sha\":null,");
    api_put_str_field(&s, "model_dtype", eng_dtype_name(in->dtype));
    sb_puts(&s, ",\"model_type\":{\"embedding\":{\"pooling\":\"mean\"}},\"prompts\":{");
    for (int i = 0; i < in->n_tasks; i++) { /* prompt_name values: the tasks */
        if (i) sb_putc(&s, ',');
        api_put_str_field(&s, in->task_name[i], "");
    }
    sb_printf(&s,
              "},\"max_concurrent_requests\":%d,\"max_input_length\":%d,\"max_batch_tokens\":%d,"
              "\"max_batch_requests\":null,\"max_client_batch_size\":%d,\"auto_truncate\":%s,"
              "\"tokenization_workers\":null,",
              m->max_queue, m->max_input_tokens, m->max_batch_tokens, m->max_client_batch,
              m->auto_truncate ? "true" : "false");
    api_put_str_field(&s, "version", version);
    sb_puts(&s, ",\"sha\":null,\"docker_label\":null}");
    return sb_detach(&s, len);
}

/* One /api/tags entry. */
static void put_tag(struct strbuf *s, const struct api_model *m, const char *name) {
    const struct eng_info *in = m->info;
    sb_puts(s, "{");
    api_put_str_field(s, "name", name);
    sb_putc(s, ',');
    api_put_str_field(s, "model", name);
    sb_puts(s, ",\"modified_at\":\"2024-09-09T00:00:00Z\",\"size\":0,\"digest\":\"\","
               "\"details\":{\"parent_model\":\"\",\"format\":\"safetensors\",\"family\":\"bert\","
               "\"families\":[\"bert\"],\"parameter_size\":\"\",");
    api_put_str_field(s, "quantization_level", eng_dtype_name(in->dtype));
    sb_puts(s, "}}");
}

char *api_ollama_tags_render(const struct api_model *m, size_t *len) {
    return api_ollama_tags_render_n(m, 1, len);
}

char *api_ollama_tags_render_n(const struct api_model *models, int n, size_t *len) {
    struct strbuf s;
    sb_init(&s);
    char name[300];
    sb_puts(&s, "{\"models\":[");
    for (int i = 0; i < n; i++) {
        const struct api_model *m = &models[i];
        snprintf(name, sizeof(name), "%s:latest", m->names[0]);
        if (i) sb_putc(&s, ',');
        put_tag(&s, m, name);
        for (int t = 0; t < m->info->n_tasks; t++) { /* one "model" per task (api_model_resolve) */
            snprintf(name, sizeof(name), "%s:%s", m->names[0], m->info->task_name[t]);
            sb_putc(&s, ',');
            put_tag(&s, m, name);
        }
    }
    sb_puts(&s, "]}");
    return sb_detach(&s, len);
}

char *api_ollama_version_render(size_t *len) {
    struct strbuf s;
    sb_init(&s);
    sb_puts(&s, "{\"version\":\"" OLLAMA_API_LEVEL "\"}");
    return sb_detach(&s, len);
}
