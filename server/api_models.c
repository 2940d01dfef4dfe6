/* api_models.c -- the served model: which names select it, and its card
 * for /v1/models, built from what the engine loaded (see api.h). */
#include "server/api.h"
#include "server/api_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strbuf.h"

/* The first n bytes of name select the served model. */
static bool name_matches(const struct api_model *m, const char *name, size_t n) {
    if (m->any_name) return true;
    if (n >= 8 && !strncmp(name, "jina-ai/", 8)) {
        for (int i = 0; i < m->n_names; i++)
            if (strlen(m->names[i]) == n - 8 && !strncmp(name + 8, m->names[i], n - 8)) return true;
    }
    for (int i = 0; i < m->n_names; i++)
        if (strlen(m->names[i]) == n && !strncmp(name, m->names[i], n)) return true;
    return false;
}

bool api_model_resolve(const struct api_model *m, const char *name, int *task) {
    *task = -2;
    size_t n = strlen(name);
    if (name_matches(m, name, n) && (!m->any_name || !strchr(name, ':'))) return true;
    const char *colon = strrchr(name, ':');
    if (!colon) return false;
    const char *suffix = colon + 1;
    int t = eng_task_resolve(m->info, suffix, NULL, 0);
    if (t < 0 && strcmp(suffix, "latest")) return m->any_name; /* "name:tag" with any name */
    if (!name_matches(m, name, (size_t)(colon - name))) return false;
    if (t >= 0) *task = t;
    return true;
}

bool api_model_matches(const struct api_model *m, const char *name) {
    int task;
    return api_model_resolve(m, name, &task);
}

/* One model object: OpenAI's keys plus Jina's (OpenRouter-style) ones, from
 * what the engine loaded. The checkpoint's own name (config.json's
 * _name_or_path, "jinaai/jina-embeddings-v3") gives hugging_face_id, the
 * owner and the display name; without one the served name stands in. */
static void put_model(struct strbuf *s, const struct api_model *m, int task) {
    const struct eng_info *in = m->info;
    const char *hf = in->name && *in->name ? in->name : m->names[0];
    const char *slash = strchr(hf, '/');
    char id[300];
    if (task >= 0)
        snprintf(id, sizeof(id), "%s:%s", m->names[0], in->task_name[task]);
    else
        snprintf(id, sizeof(id), "%s", m->names[0]);
    sb_puts(s, "{\"id\":");
    sb_json_str(s, id, strlen(id));
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
    sb_puts(s, "],\"task\":");
    if (task >= 0)
        sb_json_str(s, in->task_name[task], strlen(in->task_name[task]));
    else
        sb_puts(s, "null");
    sb_puts(s, ",\"description\":");
    if (task >= 0)
        snprintf(text, sizeof(text), "%s served by embedserve, task %s unless a request names one",
                 hf, in->task_name[task]);
    else
        snprintf(text, sizeof(text), "%s served by embedserve", hf);
    sb_json_str(s, text, strlen(text));
    sb_putc(s, '}');
}

char *api_models_render(const struct api_model *m, const char *id, size_t *len, int *err) {
    *err = 0;
    int task = -2;
    if (id && !api_model_resolve(m, id, &task)) {
        *err = API_ENOTFOUND;
        return NULL;
    }
    struct strbuf s;
    sb_init(&s);
    if (id) {
        put_model(&s, m, task);
    } else { /* the model, then one entry per task: "<name>:<task>" */
        sb_puts(&s, "{\"object\":\"list\",\"data\":[");
        put_model(&s, m, -2);
        for (int t = 0; t < m->info->n_tasks; t++) {
            sb_putc(&s, ',');
            put_model(&s, m, t);
        }
        sb_puts(&s, "]}");
    }
    char *out = sb_detach(&s, len);
    if (!out) *err = API_ENOMEM;
    return out;
}
