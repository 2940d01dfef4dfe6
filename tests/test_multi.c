/* test_multi.c -- one server, several models (--model given twice): the
 * request's `model` picks one, each model answers exactly as when it is
 * served alone (the exact mode is reproducible bit for bit, so the base64
 * vectors are compared as strings), each batches its own concurrent
 * requests, the listings and metrics name both, and startup refuses two
 * models with one name or an unreadable one.
 *
 * Models: $TESTMODEL (jina-embeddings-v3, hidden 80) and $TESTMODEL2
 * (another seed and shape: hidden 64, named test/second-v3 in its
 * config.json; `make test` generates it), plus a copy of $TESTMODEL made
 * here under $BUILD (links to its files, config.json rewritten) for the
 * name rules.
 */
#include <cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/net.h"
#include "tests/server_proc.h"
#include "tests/test.h"

#define NAME1 "jina-embeddings-v3" /* $TESTMODEL's _name_or_path tail */
#define NAME2 "second-v3"          /* $TESTMODEL2's */

/* One request over a fresh connection: the status into *status, the body
 * returned (malloc'ed, never NULL). */
static char *request(int port, const char *method, const char *path, const char *body,
                     int *status) {
    size_t blen = body ? strlen(body) : 0;
    char *q = malloc(blen + 256);
    int n = snprintf(q, 256,
                     "%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     method, path, blen);
    if (body) memcpy(q + n, body, blen);
    int fd = net_connect(port, NULL);
    *status = 0;
    char *r = NULL;
    if (fd >= 0 && net_send_all(fd, q, (size_t)n + blen)) r = net_read(fd, 60000, true, NULL, NULL);
    if (fd >= 0) close(fd);
    free(q);
    if (!r) return calloc(1, 1);
    *status = net_final_status(r);
    const char *b = strstr(r, "\r\n\r\n");
    char *out = strdup(b ? b + 4 : "");
    free(r);
    return out;
}

static char *post(int port, const char *path, const char *body, int *status) {
    return request(port, "POST", path, body, status);
}

/* The bodies each model is asked, without the opening brace and the model
 * field ("" or "\"model\":\"x\",") that go before. */
static const char *const bodies[] = {
    "\"input\":[\"hello world\",\"a second, longer text about embeddings\"],"
    "\"embedding_type\":\"base64\"}",
    "\"input\":\"query text\",\"task\":\"retrieval.query\",\"embedding_type\":\"base64\"}",
    "\"input\":[\"one\",\"two three\"],\"dimensions\":32,\"task\":\"text-matching\","
    "\"embedding_type\":\"base64\"}",
    "\"input\":[\"chunk one.\",\"chunk two.\",\"chunk three.\"],\"late_chunking\":true,"
    "\"embedding_type\":\"base64\"}",
};
#define N_BODIES ((int)(sizeof(bodies) / sizeof(bodies[0])))

/* The "data" array of an embeddings answer as text (vectors in base64), or
 * NULL when the answer is not a 200 with data. Caller frees. */
static char *data_of(int port, int k, const char *model_field, int *status) {
    char body[512];
    snprintf(body, sizeof(body), "{%s%s", model_field, bodies[k]);
    char *r = post(port, "/v1/embeddings", body, status);
    cJSON *j = cJSON_Parse(r);
    free(r);
    const cJSON *d = cJSON_GetObjectItem(j, "data");
    char *out = *status == 200 && d ? cJSON_PrintUnformatted(d) : NULL;
    cJSON_Delete(j);
    return out;
}

/* Every body's answer from the server on `port` for `model_field`. */
static void answers(int port, const char *model_field, char *out[N_BODIES]) {
    for (int k = 0; k < N_BODIES; k++) {
        int st;
        out[k] = data_of(port, k, model_field, &st);
        CHECKM(out[k], "body %d (%s): status %d", k, model_field, st);
    }
}

/* /v1/tokenize's "data" (the ids) for `model_field` as text, or NULL. */
static char *tokens_of(int port, const char *model_field) {
    char body[256];
    snprintf(body, sizeof(body), "{%s\"input\":[\"tokenise these words\",\"zz\"]}", model_field);
    int st;
    char *r = post(port, "/v1/tokenize", body, &st);
    cJSON *j = cJSON_Parse(r);
    free(r);
    const cJSON *d = cJSON_GetObjectItem(j, "data");
    char *out = st == 200 && d ? cJSON_PrintUnformatted(d) : NULL;
    cJSON_Delete(j);
    return out;
}

/* Copies dir's files (as links) into $BUILD/<name> with config.json's
 * _name_or_path set to `hf`; returns that directory (static storage). */
static const char *copy_model(const char *dir, const char *name, const char *hf) {
    static char out[2][512];
    static int turn;
    char *d = out[turn++ % 2];
    snprintf(d, 512, "%s/%s", test_env("BUILD", "build"), name);
    mkdir(d, 0755);
    static const char *const files[] = {"model.safetensors", "sentencepiece.bpe.model"};
    for (int i = 0; i < 2; i++) {
        char src[1024], dst[1024], abs_src[4096];
        snprintf(src, sizeof(src), "%s/%s", dir, files[i]);
        snprintf(dst, sizeof(dst), "%s/%s", d, files[i]);
        unlink(dst);
        CHECKM(realpath(src, abs_src) && !symlink(abs_src, dst), "link %s", dst);
    }
    char path[1024];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    char *text = test_read_file(path, NULL);
    cJSON *c = cJSON_Parse(text ? text : "");
    free(text);
    cJSON_DeleteItemFromObject(c, "_name_or_path");
    cJSON_AddStringToObject(c, "_name_or_path", hf);
    char *js = cJSON_Print(c);
    cJSON_Delete(c);
    snprintf(path, sizeof(path), "%s/config.json", d);
    FILE *f = fopen(path, "w");
    CHECKM(f && js, "write %s", path);
    if (f) {
        fputs(js ? js : "", f);
        fclose(f);
    }
    free(js);
    return d;
}

static bool start(struct test_srv *s, const char *const *extra) {
    struct test_srv_opts o = {.log_level = "warn",
                              .log_name = "test_multi_server.log",
                              .log_append = true,
                              .ready_s = 20};
    return test_srv_start(s, &o, extra);
}

/* ---- concurrent clients --------------------------------------------------- */

struct client {
    int port, k;
    const char *model_field;
    const char *want; /* the solo server's answer */
    bool same;
};

static void *client_main(void *arg) {
    struct client *c = arg;
    int st;
    char *got = data_of(c->port, c->k, c->model_field, &st);
    c->same = got && c->want && !strcmp(got, c->want);
    free(got);
    return NULL;
}

/* Sends many requests to both models at once until each model has run a
 * forward pass holding more than one request (bounded rounds); every
 * answer must equal the solo server's. */
static void check_batching(int port, char *want1[N_BODIES], char *want2[N_BODIES]) {
    enum { N = 24 };
    static const char *const fields[2] = {"\"model\":\"" NAME1 "\",", "\"model\":\"" NAME2 "\","};
    bool batched[2] = {false, false};
    double m0[2];
    for (int i = 0; i < 2; i++)
        m0[i] =
            test_srv_metric_of(port, "embedserve_multi_request_batches_total", i ? NAME2 : NAME1);
    int diff = 0, rounds = 0;
    for (; rounds < 6 && !(batched[0] && batched[1]); rounds++) {
        struct client cl[N];
        pthread_t th[N];
        for (int i = 0; i < N; i++) {
            int m = i % 2, k = (i / 2) % N_BODIES;
            cl[i] = (struct client){port, k, fields[m], m ? want2[k] : want1[k], false};
            pthread_create(&th[i], NULL, client_main, &cl[i]);
        }
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            diff += !cl[i].same;
        }
        for (int i = 0; i < 2; i++)
            batched[i] = test_srv_metric_of(port, "embedserve_multi_request_batches_total",
                                            i ? NAME2 : NAME1) > m0[i];
    }
    CHECKM(diff == 0, "%d concurrent answers differ from the model served alone", diff);
    CHECKM(batched[0] && batched[1],
           "after %d rounds of concurrent requests: multi-request passes %s %d, %s %d", rounds,
           NAME1, batched[0], NAME2, batched[1]);
}

/* ---- the two-model server -------------------------------------------------- */

static void check_routes(int port) {
    int st;
    /* unknown model: the existing error, listing every model's names */
    char *r = post(port, "/v1/embeddings", "{\"model\":\"nope\",\"input\":\"a\"}", &st);
    CHECKM(st == 400 && strstr(r, "INPUT_MODEL_NOT_FOUND") && strstr(r, NAME1) &&
               strstr(r, NAME2) && strstr(r, "test/second-v3"),
           "unknown model: %d %s", st, r);
    free(r);
    /* dimensions follow the picked model's width (80 and 64) */
    r = post(port, "/v1/embeddings", "{\"model\":\"" NAME2 "\",\"input\":\"a\",\"dimensions\":80}",
             &st);
    CHECKM(st == 422, "dimensions 80 on the 64-wide model: %d %s", st, r);
    free(r);
    r = post(port, "/v1/embeddings", "{\"model\":\"" NAME1 "\",\"input\":\"a\",\"dimensions\":80}",
             &st);
    CHECKM(st == 200, "dimensions 80 on the 80-wide model: %d", st);
    free(r);
    /* /v1/models lists both, each with its tasks; /v1/models/<id> each */
    r = request(port, "GET", "/v1/models", NULL, &st);
    cJSON *j = cJSON_Parse(r);
    free(r);
    int seen1 = 0, seen2 = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "data")) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(e, "id"));
        int dims = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(e, "dimensions"));
        if (id && !strcmp(id, NAME1)) seen1 += dims == 80;
        if (id && !strcmp(id, NAME2)) seen2 += dims == 64;
    }
    CHECKM(st == 200 && seen1 == 1 && seen2 == 1 &&
               cJSON_GetArraySize(cJSON_GetObjectItem(j, "data")) == 12,
           "/v1/models: both models and their 5 tasks each (%d, %d)", seen1, seen2);
    cJSON_Delete(j);
    r = request(port, "GET", "/v1/models/test/second-v3", NULL, &st);
    CHECKM(st == 200 && strstr(r, "\"id\":\"" NAME2 "\"") && strstr(r, "\"dimensions\":64"),
           "/v1/models/<second>: %d %s", st, r);
    free(r);
    r = request(port, "GET", "/v1/models/" NAME2 ":retrieval.query", NULL, &st);
    CHECKM(st == 200 && strstr(r, "\"task\":\"retrieval.query\""), "task card: %d", st);
    free(r);
    /* Ollama: tags list both; /api/embed picks by model */
    r = request(port, "GET", "/api/tags", NULL, &st);
    CHECKM(st == 200 && strstr(r, NAME1 ":latest") && strstr(r, NAME2 ":latest"), "tags: %s", r);
    free(r);
    r = post(port, "/api/embed", "{\"model\":\"" NAME2 ":latest\",\"input\":\"a\"}", &st);
    j = cJSON_Parse(r);
    const cJSON *emb = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "embeddings"), 0);
    CHECKM(st == 200 && cJSON_GetArraySize(emb) == 64, "ollama embed on %s: %d %s", NAME2, st, r);
    cJSON_Delete(j);
    free(r);
    /* TEI: /info describes the default (first) model; /embed takes no model */
    r = request(port, "GET", "/info", NULL, &st);
    CHECKM(st == 200 && strstr(r, "jinaai/jina-embeddings-v3"), "TEI info: %s", r);
    free(r);
    /* readiness covers both; /health names both */
    r = request(port, "GET", "/ready", NULL, &st);
    CHECK(st == 200);
    free(r);
    r = request(port, "GET", "/health", NULL, &st);
    CHECKM(st == 200 && strstr(r, "\"models\":[\"" NAME1 "\",\"" NAME2 "\"]"), "health: %s", r);
    free(r);
}

static void check_metrics(int port) {
    int st;
    char *r = request(port, "GET", "/metrics", NULL, &st);
    CHECK(st == 200);
    CHECKM(strstr(r, "embedserve_model_info{model=\"" NAME1 "\",n_embd=\"80\"") &&
               strstr(r, "embedserve_model_info{model=\"" NAME2 "\",n_embd=\"64\""),
           "model_info for both");
    CHECK(strstr(r, "embedserve_queue_depth{model=\"" NAME2 "\"} 0") != NULL);
    CHECK(strstr(r, "embedserve_batch_tokens_count{model=\"" NAME1 "\"}") != NULL);
    free(r);
    double in1 = test_srv_metric_of(port, "embedserve_inputs_total", NAME1),
           in2 = test_srv_metric_of(port, "embedserve_inputs_total", NAME2),
           all = test_srv_metric(port, "embedserve_inputs_total");
    CHECKM(in1 > 0 && in2 > 0 && all == in1 + in2, "inputs per model %g + %g = %g", in1, in2, all);
}

/* ---- startup refusals ------------------------------------------------------ */

static void check_refused(const char *models, const char *want) {
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s/embedserve %s --port 0 --host 127.0.0.1 2>&1",
             test_env("BUILD", "build"), models);
    FILE *p = popen(cmd, "r");
    char out[4096] = "";
    size_t n = p ? fread(out, 1, sizeof(out) - 1, p) : 0;
    out[n] = '\0';
    int st = p ? pclose(p) : 0;
    CHECKM(st != 0 && strstr(out, want), "'%s' refused with '%s': %s", models, want, out);
}

void test_multi(void) {
    const char *m1 = test_env("TESTMODEL", "build/testmodel"),
               *m2 = test_env("TESTMODEL2", "build/testmodel2");
    char probe[1024];
    snprintf(probe, sizeof(probe), "%s/config.json", m2);
    if (access(probe, R_OK)) {
        CHECKM(0, "no second test model at %s (make %s/model.safetensors)", m2, m2);
        return;
    }
    /* each model alone, one engine thread */
    char *solo1[N_BODIES], *solo2[N_BODIES], *tok1, *tok2;
    struct test_srv s;
    const char *one[] = {"--threads", "1", NULL};
    CHECKM(start(&s, one), "solo server 1 (see %s)", s.log);
    answers(s.port, "", solo1);
    tok1 = tokens_of(s.port, "");
    CHECK(test_srv_stop(&s) == 0);
    struct test_srv_opts o2 = {.log_level = "warn",
                               .log_name = "test_multi_server.log",
                               .log_append = true,
                               .ready_s = 20,
                               .model = m2};
    CHECKM(test_srv_start(&s, &o2, one), "solo server 2 (see %s)", s.log);
    answers(s.port, "", solo2);
    tok2 = tokens_of(s.port, "");
    CHECK(test_srv_stop(&s) == 0);

    /* both in one process: one engine thread each (--threads 2 split) */
    const char *duo[] = {"--threads", "2", "--model", m2, NULL};
    CHECKM(start(&s, duo), "two-model server (see %s)", s.log);
    char *d1[N_BODIES], *dn1[N_BODIES], *d2[N_BODIES], *dh2[N_BODIES];
    answers(s.port, "", d1);                                  /* no model: the first */
    answers(s.port, "\"model\":\"jina-ai/" NAME1 "\",", dn1); /* by name */
    answers(s.port, "\"model\":\"" NAME2 "\",", d2);          /* the second by name */
    answers(s.port, "\"model\":\"test/second-v3\",", dh2);    /* by _name_or_path */
    for (int k = 0; k < N_BODIES; k++) {
        CHECKM(d1[k] && solo1[k] && !strcmp(d1[k], solo1[k]),
               "body %d: the default model differs from model 1 served alone", k);
        CHECKM(dn1[k] && solo1[k] && !strcmp(dn1[k], solo1[k]), "body %d: model 1 by name", k);
        CHECKM(d2[k] && solo2[k] && !strcmp(d2[k], solo2[k]),
               "body %d: model 2 differs from model 2 served alone", k);
        CHECKM(dh2[k] && solo2[k] && !strcmp(dh2[k], solo2[k]), "body %d: model 2 by hf id", k);
        CHECKM(!d1[k] || !d2[k] || strcmp(d1[k], d2[k]), "body %d: the two models agree", k);
    }
    char *t1 = tokens_of(s.port, "\"model\":\"" NAME1 "\","),
         *t2 = tokens_of(s.port, "\"model\":\"" NAME2 "\",");
    CHECKM(t1 && tok1 && !strcmp(t1, tok1), "tokenize on model 1");
    CHECKM(t2 && tok2 && !strcmp(t2, tok2), "tokenize on model 2");
    check_routes(s.port);
    check_batching(s.port, solo1, solo2);
    check_metrics(s.port);
    CHECK(test_srv_stop(&s) == 0);
    for (int k = 0; k < N_BODIES; k++) {
        free(solo1[k]), free(solo2[k]), free(d1[k]), free(dn1[k]), free(d2[k]), free(dh2[k]);
    }
    free(tok1), free(tok2), free(t1), free(t2);

    /* startup refusals: a copy of model 1 under the same _name_or_path; an
     * unreadable second model */
    const char *same = copy_model(m1, "multi-same-name", "jinaai/jina-embeddings-v3");
    char models[2048];
    snprintf(models, sizeof(models), "--model %s --model %s", m1, same);
    check_refused(models, "both answer to the name '" NAME1 "'");
    snprintf(models, sizeof(models), "--model %s,%s/nonexistent", m1, test_env("BUILD", "build"));
    check_refused(models, "nonexistent");
    /* a copy under another name is a second model (directory name too) */
    const char *other = copy_model(m1, "multi-copy", "test/copy-v3");
    const char *copy[] = {"--model", other, NULL};
    CHECKM(start(&s, copy), "model 1 beside its renamed copy (see %s)", s.log);
    int st;
    char *a = data_of(s.port, 0, "\"model\":\"copy-v3\",", &st),
         *b = data_of(s.port, 0, "\"model\":\"multi-copy\",", &st),
         *c = data_of(s.port, 0, "", &st);
    CHECKM(a && b && c && !strcmp(a, c) && !strcmp(b, c),
           "the renamed copy answers by its name and its directory's, as the original");
    CHECK(test_srv_stop(&s) == 0);
    free(a), free(b), free(c);
}
