/* api_models.c -- the served models: which names select each, and their
 * cards for /v1/models, built from what the engine loaded (see api.h). */
#include "server/api.h"
#include "server/api_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strbuf.h"

/* The first n bytes of name select the served model (any_name: whatever
 * they are, when `any` allows it). */
static bool name_matches(const struct api_model *m, const char *name, size_t n, bool any) {
    if (any && m->any_name) return true;
    if (n >= 8 && !strncmp(name, "jina-ai/", 8)) {
        for (int i = 0; i < m->n_names; i++)
            if (strlen(m->names[i]) == n - 8 && !strncmp(name + 8, m->names[i], n - 8)) return true;
    }
    for (int i = 0; i < m->n_names; i++)
        if (strlen(m->names[i]) == n && !strncmp(name, m->names[i], n)) return true;
    return false;
}

/* api_model_resolve; with any = false a model's "*" alias does not count. */
static bool resolve(const struct api_model *m, const char *name, int *task, bool any) {
    *task = -2;
    size_t n = strlen(name);
    bool any_name = any && m->any_name;
    if (name_matches(m, name, n, any) && (!any_name || !strchr(name, ':'))) return true;
    const char *colon = strrchr(name, ':');
    if (!colon) return false;
    const char *suffix = colon + 1;
    int t = eng_task_resolve(m->info, suffix, NULL, 0);
    if (t < 0 && strcmp(suffix, "latest")) return any_name; /* "name:tag" with any name */
    if (!name_matches(m, name, (size_t)(colon - name), any)) return false;
    if (t >= 0) *task = t;
    return true;
}

bool api_model_resolve(const struct api_model *m, const char *name, int *task) {
    return resolve(m, name, task, true);
}

bool api_model_matches(const struct api_model *m, const char *name) {
    int task;
    return api_model_resolve(m, name, &task);
}

int api_model_pick(const struct api_model *models, int n, const char *name, int *task) {
    for (int i = 0; i < n; i++)
        if (resolve(&models[i], name, task, false)) return i;
    for (int i = 0; i < n; i++)
        if (models[i].any_name && resolve(&models[i], name, task, true)) return i;
    *task = -2;
    return -1;
}

/* Adds s to out[*k] unless empty or already there; false on oom. */
static bool add_name(char **out, int *k, int max, const char *s, size_t len) {
    if (!len || *k >= max) return true;
    for (int i = 0; i < *k; i++)
        if (strlen(out[i]) == len && !strncmp(out[i], s, len)) return true;
    char *c = malloc(len + 1);
    if (!c) return false;
    memcpy(c, s, len);
    c[len] = '\0';
    out[(*k)++] = c;
    return true;
}

int api_model_names(const char *dir, const struct eng_info *in, const char *const *given,
                    int n_given, char **out, int max) {
    int k = 0;
    bool ok = true;
    for (int i = 0; i < n_given && ok; i++)
        ok = add_name(out, &k, max, given[i], strlen(given[i]));
    const char *hf = in && in->name ? in->name : "";
    const char *tail = strrchr(hf, '/') ? strrchr(hf, '/') + 1 : hf;
    if (ok) ok = add_name(out, &k, max, tail, strlen(tail));
    if (ok) ok = add_name(out, &k, max, hf, strlen(hf));
    size_t dn = in && dir ? strlen(dir) : 0;
    while (dn > 1 && dir[dn - 1] == '/') /* "models/v3/" names "v3" */
        dn--;
    size_t db = dn;
    while (db > 0 && dir[db - 1] != '/')
        db--;
    if (ok && dn > db && strncmp(dir + db, ".", dn - db) && strncmp(dir + db, "..", dn - db))
        ok = add_name(out, &k, max, dir + db, dn - db);
    if (ok) return k;
    while (k > 0)
        free(out[--k]);
    return -1;
}

int api_models_check_names(const struct api_model *models, int n, char *err, size_t errlen) {
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++)
            for (int i = 0; i < models[a].n_names; i++)
                for (int j = 0; j < models[b].n_names; j++)
                    if (!strcmp(models[a].names[i], models[b].names[j])) {
                        snprintf(err, errlen,
                                 "models %d ('%s') and %d ('%s') both answer to the name '%s' "
                                 "(names come from each model's directory, config.json's "
                                 "_name_or_path, and for the first --served-model-name and "
                                 "--model-alias): a request could not tell them apart",
                                 a + 1, models[a].names[0], b + 1, models[b].names[0],
                                 models[a].names[i]);
                        return -1;
                    }
    return 0;
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

char *api_health_render(const struct api_model *models, int n, size_t *len) {
    struct strbuf s;
    sb_init(&s);
    sb_puts(&s, "{\"status\":\"ok\",\"models\":[");
    for (int i = 0; i < n; i++) {
        if (i) sb_putc(&s, ',');
        sb_json_str(&s, models[i].names[0], strlen(models[i].names[0]));
    }
    sb_puts(&s, "]}");
    return sb_detach(&s, len);
}

char *api_models_render(const struct api_model *m, const char *id, size_t *len, int *err) {
    return api_models_render_n(m, 1, id, len, err);
}

char *api_models_render_n(const struct api_model *models, int n, const char *id, size_t *len,
                          int *err) {
    *err = 0;
    int task = -2, pick = 0;
    if (id && (pick = api_model_pick(models, n, id, &task)) < 0) {
        *err = API_ENOTFOUND;
        return NULL;
    }
    struct strbuf s;
    sb_init(&s);
    if (id) {
        put_model(&s, &models[pick], task);
    } else { /* each model, then one entry per task: "<name>:<task>" */
        sb_puts(&s, "{\"object\":\"list\",\"data\":[");
        for (int i = 0; i < n; i++) {
            const struct api_model *m = &models[i];
            if (i) sb_putc(&s, ',');
            put_model(&s, m, -2);
            for (int t = 0; t < m->info->n_tasks; t++) {
                sb_putc(&s, ',');
                put_model(&s, m, t);
            }
        }
        sb_puts(&s, "]}");
    }
    char *out = sb_detach(&s, len);
    if (!out) *err = API_ENOMEM;
    return out;
}
