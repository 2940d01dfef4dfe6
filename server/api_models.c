/* api_models.c -- the served model: which names select it, and its card
 * for /v1/models, built from what the engine loaded (see api.h). */
#include "server/api.h"
#include "server/api_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strbuf.h"

bool api_model_matches(const struct api_model *m, const char *name) {
    if (m->any_name) return true;
    const char *bare = strncmp(name, "jina-ai/", 8) ? NULL : name + 8;
    for (int i = 0; i < m->n_names; i++)
        if (!strcmp(name, m->names[i]) || (bare && !strcmp(bare, m->names[i]))) return true;
    return false;
}

/* One model object: OpenAI's keys plus Jina's (OpenRouter-style) ones, from
 * what the engine loaded. The checkpoint's own name (config.json's
 * _name_or_path, "jinaai/jina-embeddings-v3") gives hugging_face_id, the
 * owner and the display name; without one the served name stands in. */
static void put_model(struct strbuf *s, const struct api_model *m) {
    const struct eng_info *in = m->info;
    const char *hf = in->name && *in->name ? in->name : m->names[0];
    const char *slash = strchr(hf, '/');
    sb_puts(s, "{\"id\":");
    sb_json_str(s, m->names[0], strlen(m->names[0]));
    sb_puts(s, ",\"object\":\"model\",\"created\":1725840000,\"owned_by\":");
    if (slash)
        sb_json_str(s, hf, (size_t)(slash - hf));
    else
        sb_puts(s, "\"embedserve\"");
    sb_puts(s, ",\"hugging_face_id\":");
    sb_json_str(s, hf, strlen(hf));
    char text[300];
    snprintf(text, sizeof(text), "%s (self-hosted)", hf);
    sb_puts(s, ",\"name\":");
    sb_json_str(s, text, strlen(text));
    sb_puts(s, ",\"input_modalities\":[\"text\"],"
               "\"output_modalities\":[\"embeddings\"],\"quantization\":");
    const char *dt = eng_dtype_name(in->dtype);
    sb_json_str(s, dt, strlen(dt));
    sb_printf(s, ",\"context_length\":%d,\"max_output_length\":%d,\"dimensions\":%d,",
              m->max_input_tokens, in->n_embd, in->n_embd);
    sb_puts(s, "\"matryoshka_dimensions\":[");
    for (int i = 0; i < in->n_matryoshka; i++)
        sb_printf(s, i ? ",%d" : "%d", in->matryoshka[i]);
    sb_puts(s, "],\"pricing\":{\"prompt\":\"0\",\"completion\":\"0\",\"image\":\"0\","
               "\"request\":\"0\"},\"supported_sampling_parameters\":[],"
               "\"supported_features\":[],\"tasks\":[");
    for (int i = 0; i < in->n_tasks; i++) {
        if (i) sb_putc(s, ',');
        sb_json_str(s, in->task_name[i], strlen(in->task_name[i]));
    }
    sb_puts(s, "],\"aliases\":[");
    for (int i = 1; i < m->n_names; i++) {
        if (i > 1) sb_putc(s, ',');
        sb_json_str(s, m->names[i], strlen(m->names[i]));
    }
    sb_puts(s, "],\"description\":");
    snprintf(text, sizeof(text), "%s served by embedserve", hf);
    sb_json_str(s, text, strlen(text));
    sb_putc(s, '}');
}

char *api_models_render(const struct api_model *m, const char *id, size_t *len, int *err) {
    *err = 0;
    if (id && !api_model_matches(m, id)) {
        *err = API_ENOTFOUND;
        return NULL;
    }
    struct strbuf s;
    sb_init(&s);
    if (!id) sb_puts(&s, "{\"object\":\"list\",\"data\":[");
    put_model(&s, m);
    if (!id) sb_puts(&s, "]}");
    char *out = sb_detach(&s, len);
    if (!out) *err = API_ENOMEM;
    return out;
}
