/* openapi.c -- GET /openapi.json: an OpenAPI 3.1 document built at request
 * time from the tables the server runs on -- the route table (http.c,
 * passed in), the request-field table (api_field_doc, api_parse.c) and the
 * error table (API_FOR_EACH_ERROR) -- so it cannot drift from the code. */
#include "server/api.h"
#include "server/api_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strbuf.h"

static const char *const kind_names[API_K_N] = {
    "JinaEmbeddingsRequest", "JinaTokenizeRequest", "TeiEmbedRequest",
    "TeiTokenizeRequest",    "OllamaEmbedRequest",  "OllamaEmbeddingsRequest",
};

static const char *const dialect_error_schema[] = {"JinaError", "TeiError", "OllamaError"};

/* Is `field` required for `kind`? (The parser's "Field required" cases.) */
static bool required(int kind, const char *field) {
    if (!strcmp(field, "model")) return kind == API_K_OLLAMA_EMBED || kind == API_K_OLLAMA_LEGACY;
    if (!strcmp(field, "input")) return kind == API_K_EMBED || kind == API_K_TOKENIZE;
    if (!strcmp(field, "inputs")) return kind == API_K_TEI_EMBED || kind == API_K_TEI_TOKENIZE;
    return false;
}

static void put_request_schema(struct strbuf *s, int kind) {
    sb_puts(s, "{\"type\":\"object\",\"properties\":{");
    bool first = true;
    for (int i = 0; i < api_n_fields; i++) {
        const struct api_field_doc *f = api_field_doc(i);
        if (!(f->kinds & API_KB(kind))) continue;
        if (!first) sb_putc(s, ',');
        first = false;
        api_put_key(s, f->name);
        /* the schema text without its closing brace, plus a description */
        size_t n = strlen(f->schema);
        sb_put(s, f->schema, n - 1);
        sb_puts(s, n > 2 ? ",\"description\":" : "\"description\":");
        sb_json_str(s, f->doc, strlen(f->doc));
        sb_putc(s, '}');
    }
    sb_puts(s, "},\"required\":[");
    first = true;
    for (int i = 0; i < api_n_fields; i++) {
        if (!(api_field_doc(i)->kinds & API_KB(kind)) || !required(kind, api_field_doc(i)->name))
            continue;
        if (!first) sb_putc(s, ',');
        first = false;
        sb_json_str(s, api_field_doc(i)->name, strlen(api_field_doc(i)->name));
    }
    sb_puts(s, "]}");
}

static const int all_errors[] = {
#define X(name, val, status, retry, type, code, msg) name,
    API_FOR_EACH_ERROR(X)
#undef X
};
#define N_ERRORS ((int)(sizeof(all_errors) / sizeof(all_errors[0])))

/* The error answers of a route: every code of the error table that can
 * reach it, by the status its dialect gives, each status once. */
static void put_error_responses(struct strbuf *s, const struct api_route_doc *rt) {
    enum api_dialect d = rt->kind >= 0 ? api_kind_dialect(rt->kind) : API_D_JINA;
    int seen[N_ERRORS], n_seen = 0;
    for (int i = 0; i < N_ERRORS; i++) {
        int err = all_errors[i];
        bool body_err = err != API_ENOKEY && err != API_EBADKEY && err != API_EMETHOD &&
                        err != API_ENOTFOUND && err != API_EUNAVAIL;
        if (rt->kind < 0 && body_err) continue; /* GET routes: no body to get wrong */
        if (!rt->auth && (err == API_ENOKEY || err == API_EBADKEY)) continue;
        int status = api_err_status_as(err, d);
        bool dup = false;
        for (int j = 0; j < n_seen; j++)
            dup |= seen[j] == status;
        if (dup) continue;
        seen[n_seen++] = status;
        sb_printf(s, ",\"%d\":{\"description\":", status);
        sb_json_str(s, api_err_message(err), strlen(api_err_message(err)));
        sb_printf(s,
                  ",\"content\":{\"application/json\":{\"schema\":{\"$ref\":"
                  "\"#/components/schemas/%s\"}}}}",
                  dialect_error_schema[d]);
    }
}

static void put_operation(struct strbuf *s, const struct api_model *m,
                          const struct api_route_doc *rt) {
    (void)m;
    sb_puts(s, "{\"summary\":");
    sb_json_str(s, rt->summary, strlen(rt->summary));
    if (rt->auth) sb_puts(s, ",\"security\":[{},{\"bearer\":[]}]");
    if (rt->kind >= 0)
        sb_printf(s,
                  ",\"requestBody\":{\"required\":true,\"content\":{\"application/json\":"
                  "{\"schema\":{\"$ref\":\"#/components/schemas/%s\"}}}}",
                  kind_names[rt->kind]);
    size_t pl = strlen(rt->path);
    if (pl > 1 && rt->path[pl - 1] == '/')
        sb_puts(s, ",\"parameters\":[{\"name\":\"id\",\"in\":\"path\",\"required\":true,"
                   "\"schema\":{\"type\":\"string\"}}]");
    sb_puts(s, ",\"responses\":{\"200\":{\"description\":\"OK\"}");
    put_error_responses(s, rt);
    sb_puts(s, "}}");
}

/* The document's name for a route path: a prefix route "/v1/models/"
 * becomes "/v1/models/{id}". */
static void path_name(const struct api_route_doc *rt, char *out, size_t n) {
    size_t pl = strlen(rt->path);
    if (pl > 1 && rt->path[pl - 1] == '/')
        snprintf(out, n, "%s{id}", rt->path);
    else
        snprintf(out, n, "%s", rt->path);
}

char *api_openapi_render(const struct api_model *m, const struct api_route_doc *routes, int n,
                         const char *version, size_t *len) {
    struct strbuf s;
    sb_init(&s);
    sb_puts(&s, "{\"openapi\":\"3.1.0\",\"info\":{\"title\":\"embedserve\",\"version\":");
    sb_json_str(&s, version, strlen(version));
    char desc[300];
    snprintf(desc, sizeof(desc), "Embeddings of %s in the Jina/OpenAI, TEI and Ollama shapes",
             m->names[0]);
    sb_puts(&s, ",\"description\":");
    sb_json_str(&s, desc, strlen(desc));
    sb_puts(&s, "},\"paths\":{");
    bool first_path = true;
    for (int i = 0; i < n; i++) {
        char name[128];
        path_name(&routes[i], name, sizeof(name));
        bool seen = false; /* routes sharing a path (none today) are one item */
        for (int j = 0; j < i; j++) {
            char other[128];
            path_name(&routes[j], other, sizeof(other));
            seen |= !strcmp(name, other);
        }
        if (seen) continue;
        if (!first_path) sb_putc(&s, ',');
        first_path = false;
        api_put_key(&s, name);
        sb_putc(&s, '{');
        bool first_op = true;
        for (int j = i; j < n; j++) {
            char other[128];
            path_name(&routes[j], other, sizeof(other));
            if (strcmp(name, other)) continue;
            if (!first_op) sb_putc(&s, ',');
            first_op = false;
            sb_puts(&s, !strcmp(routes[j].method, "GET") ? "\"get\":" : "\"post\":");
            put_operation(&s, m, &routes[j]);
        }
        sb_putc(&s, '}');
    }
    sb_puts(&s, "},\"components\":{\"securitySchemes\":{\"bearer\":{\"type\":\"http\","
                "\"scheme\":\"bearer\"}},\"schemas\":{");
    for (int k = 0; k < API_K_N; k++) {
        if (k) sb_putc(&s, ',');
        api_put_key(&s, kind_names[k]);
        put_request_schema(&s, k);
    }
    sb_puts(&s, ",\"JinaError\":{\"type\":\"object\",\"properties\":{\"detail\":{\"type\":"
                "\"string\"},\"code\":{\"enum\":[");
    for (int i = 0; i < N_ERRORS; i++) {
        const char *c = api_err_code(all_errors[i]);
        bool dup = false;
        for (int j = 0; j < i; j++)
            dup |= !strcmp(c, api_err_code(all_errors[j]));
        if (dup) continue;
        if (i) sb_putc(&s, ',');
        sb_json_str(&s, c, strlen(c));
    }
    sb_puts(&s, "]},\"request_id\":{\"type\":[\"string\",\"null\"]},\"error\":{\"type\":"
                "\"object\",\"properties\":{\"message\":{\"type\":\"string\"},\"type\":{\"type\":"
                "\"string\"},\"param\":{\"type\":[\"string\",\"null\"]},\"code\":{\"type\":"
                "\"string\"}}},\"errors\":{\"type\":\"array\"}},\"required\":[\"detail\","
                "\"code\",\"error\"]},"
                "\"TeiError\":{\"type\":\"object\",\"properties\":{\"error\":{\"type\":\"string\"},"
                "\"error_type\":{\"enum\":[\"validation\",\"overloaded\",\"unhealthy\","
                "\"backend\"]}},\"required\":[\"error\",\"error_type\"]},"
                "\"OllamaError\":{\"type\":\"object\",\"properties\":{\"error\":{\"type\":"
                "\"string\"}},\"required\":[\"error\"]}}}}");
    return sb_detach(&s, len);
}
