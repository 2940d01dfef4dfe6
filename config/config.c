/* config.c -- the settings table and everything derived from it: defaults,
 * argv/env parsing, validation, --help and the effective-config line.
 *
 * Adding a setting = one field in struct cfg plus one row in opts[]. */
#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <sched.h>
#include <unistd.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum opt_type {
    T_STR,   /* char * */
    T_INT,   /* int, range-checked */
    T_BYTES, /* int64_t, with optional K/M/G suffix (binary multiples) */
    T_BOOL,  /* bool; bare --flag means true */
    T_LIST,  /* struct cfg_list; comma-separated and repeatable */
    T_ENUM,  /* int index into `choices` ("a|b|c") */
};

struct opt {
    const char *name; /* --name; env EMBEDSERVE_NAME */
    enum opt_type type;
    size_t off; /* offset in struct cfg */
    long long min, max;
    const char *def;     /* default, parsed like user input */
    const char *choices; /* T_ENUM: "a|b|c" */
    const char *metavar;
    const char *help;
};

#define F(field) offsetof(struct cfg, field)
static const struct opt opts[] = {
    {"model", T_LIST, F(models), 0, 0, "", NULL, "DIR",
     "model directory: config.json, model.safetensors, and sentencepiece.bpe.model (v3) or "
     "tokenizer.json (v2) (required); "
     "repeat it (or give a comma-separated list) to serve several models, the first being the "
     "default"},
    {"host", T_STR, F(host), 0, 0, "0.0.0.0", NULL, "ADDR", "address to listen on (IPv4 or IPv6)"},
    {"port", T_INT, F(port), 0, 65535, "8080", NULL, "N", "TCP port (0 = any free port)"},
    {"api-key", T_LIST, F(api_keys), 0, 0, "", NULL, "KEY",
     "accepted Bearer key; repeatable or comma-separated; none = auth off"},
    {"api-key-file", T_STR, F(api_key_file), 0, 0, "", NULL, "FILE",
     "file with more API keys, one per line ('#' starts a comment)"},
    {"served-model-name", T_LIST, F(served_names), 0, 0, "jina-embeddings-v3", NULL, "NAME",
     "name the first model is reported by (the default applies to a jina-embeddings-v3 model; "
     "others are named after config.json's _name_or_path); further names are aliases"},
    {"model-alias", T_LIST, F(model_aliases), 0, 0, "", NULL, "NAME",
     "extra names for the first model (\"*\" sends any name no model claims to it)"},
    {"default-task", T_STR, F(default_task), 0, 0, "", NULL, "TASK",
     "task for requests that name none (e.g. retrieval.passage); empty = no adapter"},
    {"max-client-batch", T_INT, F(max_client_batch), 1, 1 << 20, "2048", NULL, "N",
     "most inputs in one request"},
    {"max-input-tokens", T_INT, F(max_input_tokens), 3, 1 << 20, "8192", NULL, "N",
     "most tokens per sequence, <s>, </s> and task prefix included"},
    {"max-body-bytes", T_BYTES, F(max_body_bytes), 1024, 1LL << 40, "64M", NULL, "BYTES",
     "largest request body (suffixes K, M, G)"},
    {"max-memory", T_BYTES, F(max_memory), 0, 1LL << 50, "0", NULL, "BYTES",
     "memory budget for request bodies and queued work; past it, 503 (0 = 75% of the cgroup "
     "memory limit less the loaded model, or 2G without a limit)"},
    {"max-batch-tokens", T_INT, F(max_batch_tokens), 16, 1 << 24, "16384", NULL, "N",
     "token budget of one forward pass (requests are packed up to it)"},
    {"max-queue", T_INT, F(max_queue), 1, 1 << 20, "256", NULL, "N",
     "embedding and tokenize requests admitted at once; more get 429"},
    {"auto-truncate", T_BOOL, F(auto_truncate), 0, 0, "false", NULL, "",
     "default of `truncate` on the embedding routes: cut over-long inputs instead of failing"},
    {"cors-allow-origin", T_STR, F(cors_allow_origin), 0, 0, "", NULL, "ORIGINS",
     "CORS: \"*\" or a comma-separated list of origins allowed to call from a browser; "
     "empty = off"},
    {"no-ui", T_BOOL, F(no_ui), 0, 0, "false", NULL, "",
     "do not serve the page at / (playground and live metrics); GET / is then 405, /ui/* 404"},
    {"strict", T_BOOL, F(strict), 0, 0, "false", NULL, "",
     "reject unknown request fields with 422, as Jina's API does"},
    {"threads", T_INT, F(threads), 0, 1024, "0", NULL, "N",
     "threads for the forward pass (0 = the cores this process may use: affinity, cgroup "
     "quota); with several models, split evenly between them (at least 1 each)"},
    {"http-threads", T_INT, F(http_threads), 1, 256, "4", NULL, "N",
     "HTTP threads (parse, tokenise, render)"},
    {"dtype", T_ENUM, F(dtype), 0, 0, "auto", "auto|f32|bf16|int8", "TYPE",
     "matrix-product precision (auto: bf16 if the CPU has AVX512_BF16, else f32)"},
    {"embeddings-in-memory", T_BOOL, F(embeddings_in_memory), 0, 0, "false", NULL, "",
     "copy the word-embedding table into memory at load (512 MB for jina-embeddings-v3) "
     "instead of reading each token's row from the weights file; the same results either way"},
    {"cpu-features", T_STR, F(cpu_features), 0, 0, "auto", NULL, "LEVEL",
     "restrict the kernels to a CPU level: auto|generic|avx2|avx512|avx512vnni|avx512bf16|amx "
     "(x86-64), neon|dotprod|i8mm|bf16 (aarch64)"},
    {"log-level", T_ENUM, F(log_level), 0, 0, "info", "error|warn|info|debug", "LEVEL",
     "log verbosity"},
    {"log-format", T_ENUM, F(log_format), 0, 0, "text", "text|json", "FORMAT",
     "log lines as text, or one JSON object per line (ts, level, msg; access lines: "
     "method, path, status, ms, id, client, ...)"},
    {"warmup", T_BOOL, F(warmup), 0, 0, "true", NULL, "",
     "run a short forward pass per adapter path before /ready turns 200, so the first "
     "request is not the slow one"},
    {"http-timeout", T_INT, F(http_timeout), 1, 86400, "60", NULL, "SECONDS",
     "idle or slow connections are closed after this"},
    {"header-timeout", T_INT, F(header_timeout), 1, 86400, "10", NULL, "SECONDS",
     "the request line and headers must arrive within this, however they trickle"},
    {"body-min-rate", T_BYTES, F(body_min_rate), 0, 1LL << 30, "16K", NULL, "BYTES",
     "after --header-timeout seconds a request body must average this many bytes/s (0 = off)"},
    {"max-conns-per-client", T_INT, F(max_conns_per_client), 0, 1 << 20, "128", NULL, "N",
     "open connections per client address (0 = no cap); --trusted-proxies are exempt"},
    {"trusted-proxies", T_LIST, F(trusted_proxies), 0, 0, "", NULL, "ADDR",
     "addresses or CIDR ranges exempt from --max-conns-per-client (a load balancer)"},
    {"shutdown-timeout", T_INT, F(shutdown_timeout), 0, 3600, "30", NULL, "SECONDS",
     "on SIGTERM, how long to finish admitted requests before failing them with 503 (a forward "
     "pass that would run past it is cancelled)"},
    {"request-timeout", T_INT, F(request_timeout), 0, 86400, "600", NULL, "SECONDS",
     "a request not computed within this (or its X-Request-Timeout header, if shorter) gets 504 "
     "and its queued work is dropped; 0 = none"},
};
#undef F
#define N_OPTS ((int)(sizeof(opts) / sizeof(opts[0])))

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* "api-key" -> "EMBEDSERVE_API_KEY" into buf[n]. */
static void env_name(const struct opt *o, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "EMBEDSERVE_");
    for (const char *p = o->name; *p && k + 1 < n; p++)
        buf[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    buf[k < n ? k : n - 1] = '\0';
}

static void *field(struct cfg *c, const struct opt *o) {
    return (char *)c + o->off;
}

static void list_clear(struct cfg_list *l) {
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int list_push(struct cfg_list *l, const char *s, size_t len) {
    char **v = realloc(l->v, (size_t)(l->n + 1) * sizeof(*v));
    if (!v) return -1;
    l->v = v;
    if (!(v[l->n] = strndup(s, len))) return -1;
    l->n++;
    return 0;
}

/* Appends the non-empty, space-trimmed comma-separated items of s. */
static int list_add_csv(struct cfg_list *l, const char *s) {
    while (*s) {
        const char *e = strchr(s, ',');
        if (!e) e = s + strlen(s);
        const char *b = s, *t = e;
        while (b < t && isspace((unsigned char)*b))
            b++;
        while (t > b && isspace((unsigned char)t[-1]))
            t--;
        if (t > b && list_push(l, b, (size_t)(t - b))) return -1;
        s = *e ? e + 1 : e;
    }
    return 0;
}

static int parse_bool(const char *v, bool *out) {
    static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) return *out = true, 0;
        if (!strcasecmp(v, no[i])) return *out = false, 0;
    }
    return -1;
}

/* Integer with an optional binary-multiple suffix: 64M, 1g, 512KiB, 100. */
static int parse_bytes(const char *v, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || errno || x < 0) return -1;
    long long mul = 1;
    if (*end) {
        switch (toupper((unsigned char)*end)) {
        case 'K': mul = 1LL << 10; break;
        case 'M': mul = 1LL << 20; break;
        case 'G': mul = 1LL << 30; break;
        default: return -1;
        }
        end++;
        if (!strcasecmp(end, "iB") || !strcasecmp(end, "B")) end += strlen(end);
        if (*end) return -1;
    }
    if (x > LLONG_MAX / mul) return -1;
    *out = x * mul;
    return 0;
}

static int parse_int(const char *v, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno) return -1;
    *out = x;
    return 0;
}

/* Index of v in "a|b|c", or -1. */
static int enum_index(const char *choices, const char *v) {
    int i = 0;
    for (const char *p = choices; *p; i++) {
        size_t n = strcspn(p, "|");
        if (strlen(v) == n && !strncasecmp(p, v, n)) return i;
        p += n;
        if (*p) p++;
    }
    return -1;
}

/* Sets option o from text v. `src` names where v came from, for errors. */
static int opt_set(struct cfg *c, const struct opt *o, const char *v, const char *src, char *err,
                   size_t errlen) {
    void *f = field(c, o);
    long long x = 0;
    switch (o->type) {
    case T_STR: {
        char *s = strdup(v);
        if (!s) goto nomem;
        free(*(char **)f);
        *(char **)f = s;
        return CFG_OK;
    }
    case T_INT:
        if (parse_int(v, &x) || x < o->min || x > o->max) {
            set_err(err, errlen, "invalid setting %s: must be an integer in %lld..%lld, got '%s'",
                    src, o->min, o->max, v);
            return CFG_EINVAL;
        }
        *(int *)f = (int)x;
        return CFG_OK;
    case T_BYTES:
        if (parse_bytes(v, &x) || x < o->min || x > o->max) {
            set_err(err, errlen,
                    "invalid setting %s: must be a byte count in %lld..%lld (suffix K, M or G "
                    "allowed), got '%s'",
                    src, o->min, o->max, v);
            return CFG_EINVAL;
        }
        *(int64_t *)f = x;
        return CFG_OK;
    case T_BOOL:
        if (parse_bool(v, (bool *)f)) {
            set_err(err, errlen, "invalid setting %s: must be true or false, got '%s'", src, v);
            return CFG_EINVAL;
        }
        return CFG_OK;
    case T_LIST:
        if (list_add_csv(f, v)) goto nomem;
        c->model_dir = c->models.n ? c->models.v[0] : NULL; /* the first --model */
        return CFG_OK;
    case T_ENUM: {
        int i = enum_index(o->choices, v);
        if (i < 0) {
            set_err(err, errlen, "invalid setting %s: must be one of %s, got '%s'", src, o->choices,
                    v);
            return CFG_EINVAL;
        }
        *(int *)f = i;
        return CFG_OK;
    }
    }
nomem:
    set_err(err, errlen, "out of memory setting %s", src);
    return CFG_EINVAL;
}

void cfg_init(struct cfg *c) {
    memset(c, 0, sizeof(*c));
    for (int i = 0; i < N_OPTS; i++) {
        int rc = opt_set(c, &opts[i], opts[i].def, opts[i].name, NULL, 0);
        (void)rc; /* defaults are valid by construction; test_config checks it */
    }
}

void cfg_deinit(struct cfg *c) {
    if (!c) return;
    for (int i = 0; i < N_OPTS; i++) {
        void *f = field(c, &opts[i]);
        if (opts[i].type == T_STR) {
            free(*(char **)f);
            *(char **)f = NULL;
        } else if (opts[i].type == T_LIST) {
            list_clear(f);
        }
    }
    c->model_dir = NULL;
}

int cfg_parse_env(struct cfg *c, cfg_getenv_fn get, char *err, size_t errlen) {
    char name[64], src[96];
    for (int i = 0; i < N_OPTS; i++) {
        env_name(&opts[i], name, sizeof(name));
        const char *v = get(name);
        if (!v) continue;
        snprintf(src, sizeof(src), "%s (environment)", name);
        if (opts[i].type == T_LIST) list_clear(field(c, &opts[i]));
        if (opt_set(c, &opts[i], v, src, err, errlen)) return CFG_EINVAL;
    }
    return CFG_OK;
}

static const struct opt *opt_find(const char *name, size_t len) {
    for (int i = 0; i < N_OPTS; i++)
        if (strlen(opts[i].name) == len && !strncmp(opts[i].name, name, len)) return &opts[i];
    return NULL;
}

int cfg_parse_args(struct cfg *c, int argc, char **argv, FILE *out, char *err, size_t errlen) {
    bool list_seen[N_OPTS] = {0};
    char src[96];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return cfg_usage(out, argv[0]), CFG_HELP;
        if (!strcmp(a, "--version")) return fprintf(out, "embedserve %s\n", CFG_VERSION), CFG_HELP;
        if (strncmp(a, "--", 2)) {
            set_err(err, errlen, "unexpected argument '%s' (see --help)", a);
            return CFG_EINVAL;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const struct opt *o = opt_find(name, nlen);
        if (!o) {
            set_err(err, errlen, "unknown option '%.*s' (see --help)", (int)(nlen + 2), a);
            return CFG_EINVAL;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v && o->type == T_BOOL) v = "true";
        if (!v && i + 1 >= argc) {
            set_err(err, errlen, "option --%s needs a value (%s)", o->name, o->metavar);
            return CFG_EINVAL;
        }
        if (!v) v = argv[++i];
        if (o->type == T_LIST && !list_seen[o - opts]) {
            list_clear(field(c, o)); /* the command line replaces the environment's list */
            list_seen[o - opts] = true;
        }
        snprintf(src, sizeof(src), "--%s", o->name);
        if (opt_set(c, o, v, src, err, errlen)) return CFG_EINVAL;
    }
    return CFG_OK;
}

/* Adds the keys of the file named by api_key_file to api_keys. */
static int load_key_file(struct cfg *c, char *err, size_t errlen) {
    FILE *f = fopen(c->api_key_file, "r");
    if (!f) {
        set_err(err, errlen, "invalid setting --api-key-file: cannot read '%s': %s",
                c->api_key_file, strerror(errno));
        return CFG_EINVAL;
    }
    char line[1024];
    int n = 0, rc = CFG_OK;
    while (rc == CFG_OK && fgets(line, sizeof(line), f)) {
        char *b = line, *e = line + strlen(line);
        while (isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (e == b || *b == '#') continue;
        if (list_push(&c->api_keys, b, (size_t)(e - b))) rc = CFG_EINVAL;
        n++;
    }
    fclose(f);
    if (rc == CFG_OK && n == 0) {
        set_err(err, errlen, "invalid setting --api-key-file: '%s' holds no keys", c->api_key_file);
        rc = CFG_EINVAL;
    }
    return rc;
}

int cfg_net_parse(const char *s, struct cfg_net *out) {
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof(buf)) return CFG_EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1)
        out->family = AF_INET, out->prefix = 32;
    else if (inet_pton(AF_INET6, buf, out->addr) == 1)
        out->family = AF_INET6, out->prefix = 128;
    else
        return CFG_EINVAL;
    if (slash) {
        long long p;
        if (parse_int(slash + 1, &p) || p < 0 || p > out->prefix) return CFG_EINVAL;
        out->prefix = (int)p;
    }
    return CFG_OK;
}

int cfg_validate(struct cfg *c, char *err, size_t errlen) {
    if (!c->model_dir || !*c->model_dir) {
        set_err(err, errlen, "missing setting --model (EMBEDSERVE_MODEL): the model directory");
        return CFG_EINVAL;
    }
    if (c->models.n > CFG_MAX_MODELS) {
        set_err(err, errlen, "invalid setting --model: at most %d models, got %d", CFG_MAX_MODELS,
                c->models.n);
        return CFG_EINVAL;
    }
    if (!c->host || !*c->host) {
        set_err(err, errlen, "invalid setting --host: must not be empty");
        return CFG_EINVAL;
    }
    if (c->served_names.n == 0) {
        set_err(err, errlen, "invalid setting --served-model-name: needs at least one name");
        return CFG_EINVAL;
    }
    if (c->api_key_file && *c->api_key_file && load_key_file(c, err, errlen)) return CFG_EINVAL;
    for (int i = 0; i < c->trusted_proxies.n; i++) {
        struct cfg_net net;
        if (cfg_net_parse(c->trusted_proxies.v[i], &net)) {
            set_err(err, errlen,
                    "invalid setting --trusted-proxies: '%s' is not an address or ADDR/PREFIX "
                    "range",
                    c->trusted_proxies.v[i]);
            return CFG_EINVAL;
        }
    }
    for (int i = 0; i < c->api_keys.n; i++) {
        for (const char *p = c->api_keys.v[i]; *p; p++) {
            if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p)) {
                set_err(err, errlen,
                        "invalid setting --api-key: key %d contains whitespace or control "
                        "characters",
                        i + 1);
                return CFG_EINVAL;
            }
        }
    }
    return CFG_OK;
}

int cfg_load(struct cfg *c, int argc, char **argv, FILE *out, char *err, size_t errlen) {
    cfg_init(c);
    if (cfg_parse_env(c, (cfg_getenv_fn)getenv, err, errlen)) return CFG_EINVAL;
    int rc = cfg_parse_args(c, argc, argv, out, err, errlen);
    if (rc) return rc;
    return cfg_validate(c, err, errlen);
}

void cfg_usage(FILE *out, const char *prog) {
    char env[64], flag[64];
    fprintf(out,
            "usage: %s --model DIR [options]\n"
            "       %s embed ...   (offline CLI; see `%s embed --help`)\n\n"
            "Serves jina-embeddings-v3 (and v2) models over HTTP (POST /v1/embeddings, Jina and "
            "OpenAI compatible).\nEvery option can also be set by the environment variable shown; "
            "options win.\n\n",
            prog, prog, prog);
    for (int i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];
        env_name(o, env, sizeof(env));
        snprintf(flag, sizeof(flag), "--%s%s%s", o->name, *o->metavar ? " " : "", o->metavar);
        fprintf(out, "  %-28s %s\n  %-28s env %s", flag, o->help, "", env);
        if (o->type == T_ENUM) fprintf(out, "; one of %s", o->choices);
        if (*o->def) fprintf(out, "; default %s", o->def);
        fprintf(out, "\n");
    }
    fprintf(out, "\n  --help, --version\n");
}

/* Appends option o's value as "name=value " to buf at *k. */
static void describe_one(const struct cfg *c, const struct opt *o, char *buf, size_t n, size_t *k) {
    const void *f = (const char *)c + o->off;
    char val[256] = "";
    switch (o->type) {
    case T_STR: snprintf(val, sizeof(val), "%s", *(char *const *)f ? *(char *const *)f : ""); break;
    case T_INT: snprintf(val, sizeof(val), "%d", *(const int *)f); break;
    case T_BYTES: snprintf(val, sizeof(val), "%lld", (long long)*(const int64_t *)f); break;
    case T_BOOL: snprintf(val, sizeof(val), "%s", *(const bool *)f ? "true" : "false"); break;
    case T_ENUM: {
        int idx = *(const int *)f;
        const char *p = o->choices;
        for (int i = 0; i < idx && (p = strchr(p, '|')); i++)
            p++;
        snprintf(val, sizeof(val), "%.*s", p ? (int)strcspn(p, "|") : 1, p ? p : "?");
        break;
    }
    case T_LIST: {
        const struct cfg_list *l = f;
        if (l == &c->api_keys) {
            snprintf(val, sizeof(val), "<%d key%s>", l->n, l->n == 1 ? "" : "s");
            break;
        }
        size_t m = 0;
        for (int i = 0; i < l->n && m < sizeof(val); i++)
            m += (size_t)snprintf(val + m, sizeof(val) - m, "%s%s", i ? "," : "", l->v[i]);
        break;
    }
    }
    int w = snprintf(*k < n ? buf + *k : NULL, *k < n ? n - *k : 0, "%s%s=%s", *k ? " " : "",
                     o->name, val);
    *k += (size_t)w;
}

int cfg_describe(const struct cfg *c, char *buf, size_t n) {
    size_t k = 0;
    if (n) buf[0] = '\0';
    for (int i = 0; i < N_OPTS; i++)
        describe_one(c, &opts[i], buf, n, &k);
    return (int)k;
}

/* ---- CPU count: affinity and cgroup quotas -------------------------------- */

/* A quota of `quota` per `period` microseconds, in whole cores rounded up
 * (1.5 CPUs -> 2 threads); 0 = no quota. */
static int quota_cores(long long quota, long long period) {
    if (quota <= 0 || period <= 0) return 0;
    long long cores = (quota + period - 1) / period;
    return cores > INT_MAX ? INT_MAX : (int)cores;
}

/* cgroup v2: DIR/cpu.max holds "max 100000" (no quota) or "200000 100000". */
static int cpu_max_cores(const char *dir) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/cpu.max", dir) >= (int)sizeof(path)) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char quota[32] = "";
    long long period = 0;
    int cores = 0;
    if (fscanf(f, "%31s %lld", quota, &period) == 2 && strcmp(quota, "max"))
        cores = quota_cores(atoll(quota), period);
    fclose(f);
    return cores;
}

/* One integer from DIR/NAME; false if the file is missing or unreadable. */
static bool read_ll(const char *dir, const char *name, long long *v) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) return false;
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool ok = fscanf(f, "%lld", v) == 1;
    fclose(f);
    return ok;
}

/* cgroup v1: DIR/cpu.cfs_quota_us (-1 = no quota) per DIR/cpu.cfs_period_us. */
static int cfs_cores(const char *dir) {
    long long quota, period;
    if (!read_ll(dir, "cpu.cfs_quota_us", &quota) || !read_ll(dir, "cpu.cfs_period_us", &period))
        return 0;
    return quota_cores(quota, period);
}

/* The smallest quota of BASE+CG and each of its ancestors up to BASE (a
 * cgroup's limit is also capped by its parents'); 0 = none. Inside a
 * container BASE is the container's own cgroup and the path from
 * /proc/self/cgroup does not exist under it: then only BASE counts. */
static int walk_cores(const char *base, const char *cg, int (*cores_of)(const char *dir)) {
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s%s", base, cg[0] == '/' ? cg : "/");
    if (n < 0 || n >= (int)sizeof(path)) return 0;
    size_t stop = strlen(base);
    int best = 0;
    for (;;) {
        while (strlen(path) > stop && path[strlen(path) - 1] == '/')
            path[strlen(path) - 1] = '\0';
        int c = cores_of(path);
        if (c > 0 && (best == 0 || c < best)) best = c;
        char *slash = strrchr(path + stop, '/');
        if (strlen(path) <= stop || !slash) break;
        *slash = '\0';
    }
    return best;
}

/* Whether the comma-separated controller list LIST names "cpu". */
static bool has_cpu_controller(const char *list) {
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == 3 && !strncmp(p, "cpu", 3)) return true;
        p += len + (p[len] == ',');
    }
    return false;
}

int cfg_cgroup_cpu_limit(const char *cgroup_root, const char *proc_cgroup) {
    /* This process's cgroup paths: "0::/path" (v2), "N:cpu,cpuacct:/path" (v1). */
    char v2[PATH_MAX] = "/", v1[PATH_MAX] = "/", line[PATH_MAX + 64];
    FILE *f = fopen(proc_cgroup, "r");
    while (f && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = '\0';
        if (!strcmp(line, "0:")) /* hierarchy 0, no controller list: v2 */
            snprintf(v2, sizeof(v2), "%s", c2 + 1);
        else if (has_cpu_controller(c1 + 1))
            snprintf(v1, sizeof(v1), "%s", c2 + 1);
    }
    if (f) fclose(f);
    int best = walk_cores(cgroup_root, v2, cpu_max_cores);
    /* The v1 cpu controller's mount: "cpu" (often a link) or the joint one. */
    static const char *const v1_dirs[] = {"cpu", "cpu,cpuacct", "cpuacct,cpu"};
    for (size_t i = 0; i < sizeof(v1_dirs) / sizeof(v1_dirs[0]); i++) {
        char base[PATH_MAX];
        if (snprintf(base, sizeof(base), "%s/%s", cgroup_root, v1_dirs[i]) >= (int)sizeof(base) ||
            access(base, F_OK))
            continue;
        int c = walk_cores(base, v1, cfs_cores);
        if (c > 0 && (best == 0 || c < best)) best = c;
        break;
    }
    return best;
}

int cfg_cpu_count(void) {
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int quota = cfg_cgroup_cpu_limit("/sys/fs/cgroup", "/proc/self/cgroup");
    if (quota > 0 && quota < n) n = quota;
    return n > 0 ? n : 1;
}

/* A cgroup limit file's value; 0 for "max", a missing file or an unlimited
 * v1 value (a huge number near 2^63). */
static int64_t read_limit(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char buf[64] = "";
    int64_t v = 0;
    if (fgets(buf, sizeof(buf), f) && strncmp(buf, "max", 3)) {
        long long x = strtoll(buf, NULL, 10);
        if (x > 0 && x < (1LL << 50)) v = x;
    }
    fclose(f);
    return v;
}

int64_t cfg_cgroup_memory_limit(const char *cgroup_root) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/memory.max", cgroup_root); /* cgroup v2 */
    int64_t v = read_limit(path);
    snprintf(path, sizeof(path), "%s/memory/memory.limit_in_bytes", cgroup_root); /* v1 */
    if (!v) v = read_limit(path);
    return v;
}

int64_t cfg_memory_limit(void) {
    return cfg_cgroup_memory_limit("/sys/fs/cgroup");
}
