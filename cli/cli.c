/* cli.c -- `embedserve embed`: bulk embedding from a file, offline.
 *
 * Reads one text per line (or JSONL objects with a "text" field and an
 * optional "id" of any JSON type), runs them through the same emb_plan /
 * engine path as the server, and writes JSONL {"index": i, "id": ...,
 * "embedding": [...]} in input order, the id's bytes copied verbatim. With
 * --late-chunking the lines of one document are its chunks, and a blank
 * line starts the next document. Progress goes to stderr: a bar with an ETA
 * on a terminal, else a line every 10% or 5 s (for logs of batch jobs).
 */
#include "cli/cli.h"
#include "config/config.h"
#include "engine/cpu.h"
#include "pipeline/embed.h"
#include "util/clock.h"
#include "util/strbuf.h"
#include "util/version.h"

#include <cJSON.h>
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CLI_GROUP            256 /* texts per plan in ordinary mode */
#define CLI_PROGRESS_EVERY_S 5.0 /* non-terminal progress: at least this often, */
#define CLI_PROGRESS_STEP    10  /* and at each such percentage step */

struct cli_opts {
    const char *model_dir, *task, *input, *output, *cpu_features;
    int dimensions, threads, max_batch_tokens, max_tokens;
    enum eng_dtype dtype;
    bool late, normalized, truncate, embd_in_memory;
};

struct texts {
    char **s;
    size_t *len;
    char **id; /* [n] the raw JSON of the line's "id", or NULL */
    int32_t n, cap;
};

/* Progress reporting state (run_all). */
struct progress {
    double t0, last_print;
    int last_step; /* the last CLI_PROGRESS_STEP multiple printed */
    bool tty;
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: embedserve embed --model DIR [options]\n"
            "  --model DIR            model directory (config.json, model.safetensors,\n"
            "                         sentencepiece.bpe.model or tokenizer.json)\n"
            "  --task T               retrieval.query | retrieval.passage | separation |\n"
            "                         classification | text-matching, or an alias: query,\n"
            "                         passage, document, clustering (default: none)\n"
            "  --dimensions N         Matryoshka size, 1..hidden (default: full)\n"
            "  --no-normalize         output the raw mean-pooled vector\n"
            "  --late-chunking        lines are chunks of one document; a blank line\n"
            "                         separates documents\n"
            "  --truncate             cut inputs over --max-tokens instead of failing\n"
            "  --max-tokens N         per-sequence token limit (default 8192)\n"
            "  --input FILE           one text per line, or JSONL with \"text\" (default stdin)\n"
            "  --output FILE          JSONL output (default stdout)\n"
            "  --threads N            compute threads (default: all cores)\n"
            "  --max-batch-tokens N   tokens per forward pass (default 8192)\n"
            "  --cpu-features LEVEL   restrict the kernels: auto (default, or\n"
            "                         EMBEDSERVE_CPU_FEATURES), generic, avx2, avx512, ...\n"
            "  --dtype TYPE           auto | f32 | bf16 | int8, as the server's --dtype\n"
            "                         (env EMBEDSERVE_DTYPE; default auto)\n"
            "  --embeddings-in-memory copy the word-embedding table into memory instead of\n"
            "                         reading rows from the weights file (same results)\n"
            "  --version              print the version and exit\n"
            "JSONL input lines may carry an \"id\" (any JSON value); it is copied verbatim\n"
            "into that line's output. EMBEDSERVE_MODEL is used when --model is absent.\n");
}

static int texts_push(struct texts *t, const char *s, size_t len) {
    if (t->n == t->cap) {
        int32_t cap = t->cap ? t->cap * 2 : 1024;
        char **ns = realloc(t->s, sizeof(*ns) * (size_t)cap);
        if (!ns) return -1;
        t->s = ns;
        char **ni = realloc(t->id, sizeof(*ni) * (size_t)cap);
        if (!ni) return -1;
        t->id = ni;
        size_t *nl = realloc(t->len, sizeof(*nl) * (size_t)cap);
        if (!nl) return -1;
        t->len = nl;
        t->cap = cap;
    }
    if (!(t->s[t->n] = malloc(len + 1))) return -1;
    memcpy(t->s[t->n], s, len);
    t->s[t->n][len] = 0;
    t->id[t->n] = NULL;
    t->len[t->n++] = len;
    return 0;
}

static void texts_free(struct texts *t) {
    for (int32_t i = 0; i < t->n; i++)
        free(t->s[i]), free(t->id[i]);
    free(t->s);
    free(t->id);
    free(t->len);
}

/* ---- the raw bytes of one member of a (valid) JSON object ---------------- */

static const char *skip_ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Past the string starting at p (on its opening quote). */
static const char *skip_string(const char *p, const char *e) {
    for (p++; p < e && *p != '"'; p++)
        if (*p == '\\') p++;
    return p < e ? p + 1 : e;
}

/* Past the value starting at p. The line was validated by cJSON, so
 * only nesting and strings need tracking. */
static const char *skip_value(const char *p, const char *e) {
    if (p < e && *p == '"') return skip_string(p, e);
    int depth = 0;
    while (p < e) {
        if (*p == '"') {
            p = skip_string(p, e);
            continue;
        }
        if (*p == '{' || *p == '[') depth++;
        if (*p == '}' || *p == ']') {
            if (depth == 0) break;
            if (--depth == 0) return p + 1;
        }
        if (depth == 0 && (*p == ',' || *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) break;
        p++;
    }
    return p;
}

/* The raw value of the top-level member `key` (written without escapes) of
 * the object in line[0..len): its bytes exactly as the input has them, so
 * numbers keep every digit. Returns a malloc'ed copy, or NULL. */
static char *member_raw(const char *line, size_t len, const char *key) {
    const char *p = line, *e = line + len;
    size_t kl = strlen(key);
    p = skip_ws(p, e);
    if (p == e || *p++ != '{') return NULL;
    for (;;) {
        p = skip_ws(p, e);
        if (p == e || *p != '"') return NULL;
        const char *k = p + 1, *ke = skip_string(p, e) - 1;
        p = skip_ws(ke + 1, e);
        if (p == e || *p++ != ':') return NULL;
        p = skip_ws(p, e);
        const char *v = p;
        p = skip_value(p, e);
        if ((size_t)(ke - k) == kl && !memcmp(k, key, kl)) return strndup(v, (size_t)(p - v));
        p = skip_ws(p, e);
        if (p == e || *p++ != ',') return NULL;
    }
}

/* A JSONL line {"text": "..."} yields its text; anything else is the line itself. */
static int line_add(struct texts *t, const char *line, size_t len, long lineno) {
    if (len && line[0] == '{') {
        cJSON *o = cJSON_ParseWithLength(line, len);
        const cJSON *txt = cJSON_GetObjectItemCaseSensitive(o, "text");
        if (cJSON_IsObject(o)) {
            if (!cJSON_IsString(txt)) {
                fprintf(stderr, "embed: line %ld: JSON object without a \"text\" string\n", lineno);
                cJSON_Delete(o);
                return -1;
            }
            int rc = texts_push(t, txt->valuestring, strlen(txt->valuestring));
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
            if (rc == 0 && id) {
                /* verbatim; an escaped key ("\u0069d") falls back to cJSON's text */
                char *raw = member_raw(line, len, "id");
                t->id[t->n - 1] = raw ? raw : cJSON_PrintUnformatted(id);
                if (!t->id[t->n - 1]) rc = -1;
            }
            cJSON_Delete(o);
            return rc;
        }
        cJSON_Delete(o);
    }
    return texts_push(t, line, len);
}

static int read_lines(FILE *f, struct texts *t) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (n && line[n - 1] == '\n') n--;
        if (n && line[n - 1] == '\r') n--;
        rc = line_add(t, line, (size_t)n, lineno);
    }
    free(line);
    return rc;
}

/* Floats as the server prints them: the shortest text that reads back as
 * the same float32 (fmt_f32). */
static void write_vec(FILE *f, int32_t index, const char *id, const float *v, int n) {
    char num[FMT_F32_MAX];
    fprintf(f, "{\"index\": %d, ", index);
    if (id) fprintf(f, "\"id\": %s, ", id);
    fputs("\"embedding\": [", f);
    for (int j = 0; j < n; j++) {
        if (j) fputc(',', f);
        fwrite(num, 1, (size_t)fmt_f32(num, v[j]), f);
    }
    fputs("]}\n", f);
}

/* "1h02m", "3m05s" or "12s" into buf[32]. */
static const char *fmt_eta(double s, char buf[32]) {
    int v = s > 0 && s < 1e8 ? (int)(s + 0.5) : 0;
    if (v >= 3600)
        snprintf(buf, 32, "%dh%02dm", v / 3600, v / 60 % 60);
    else if (v >= 60)
        snprintf(buf, 32, "%dm%02ds", v / 60, v % 60);
    else
        snprintf(buf, 32, "%ds", v);
    return buf;
}

/* On a terminal: a bar redrawn in place, with the rate and an ETA. Else a
 * full line at each CLI_PROGRESS_STEP percent or every CLI_PROGRESS_EVERY_S
 * seconds, and at the end, so a batch job's log shows it is alive. */
static void progress(struct progress *pg, int32_t done, int32_t total, long tokens) {
    if (total <= 0) return;
    double now = clock_now(), dt = now - pg->t0;
    double eta = done > 0 ? dt * (double)(total - done) / done : 0;
    char eb[32];
    if (pg->tty) {
        int w = 30, fill = (int)((long)w * done / total);
        fprintf(stderr, "\r[%.*s%*s] %d/%d texts  %.0f tok/s  ETA %s ", fill,
                "##############################", w - fill, "", done, total,
                dt > 0 ? tokens / dt : 0.0, fmt_eta(eta, eb));
        if (done == total) fputc('\n', stderr);
        return;
    }
    int pct = (int)(100LL * done / total), step = pct / CLI_PROGRESS_STEP;
    if (done < total && step == pg->last_step && now - pg->last_print < CLI_PROGRESS_EVERY_S)
        return;
    pg->last_step = step;
    pg->last_print = now;
    fprintf(stderr, "embed: %d/%d texts (%d%%), %ld tokens, %.0f tok/s, elapsed %.1f s, ETA %s\n",
            done, total, pct, tokens, dt > 0 ? tokens / dt : 0.0, dt, fmt_eta(eta, eb));
}

static void report_error(int rc, const struct emb_error *e, int32_t base) {
    if (rc == EMB_ETOOLONG && e->index >= 0)
        fprintf(stderr, "embed: input %d has %lld tokens, over the limit of %d (use --truncate)\n",
                base + e->index, (long long)e->n_tokens, e->limit);
    else if (rc == EMB_ETOOLONG)
        fprintf(stderr, "embed: the document starting at input %d has %lld tokens, over %d\n", base,
                (long long)e->n_tokens, e->limit);
    else if (rc == EMB_EEMPTY)
        fprintf(stderr, "embed: input %d has no tokens; late chunking needs non-empty chunks\n",
                base + e->index);
    else if (rc == EMB_ENOMEM)
        fprintf(stderr, "embed: out of memory\n");
    else
        fprintf(stderr, "embed: computing failed (code %d)\n", rc);
}

/* Embeds texts[first .. first+n) as one plan and writes them. */
static int run_group(const tok *tk, const struct eng_model *m, struct eng_ctx *c,
                     const struct emb_opts *o, const struct texts *t, int32_t first, int32_t n,
                     FILE *out, long *tokens) {
    int H = eng_model_info(m)->n_embd, rc;
    struct emb_text *in = malloc(sizeof(*in) * (size_t)(n ? n : 1));
    float *pooled = malloc(sizeof(float) * (size_t)H * (size_t)(n ? n : 1));
    struct emb_plan plan = {0};
    struct emb_error e;
    if (!in || !pooled) {
        rc = EMB_ENOMEM;
        goto out;
    }
    for (int32_t i = 0; i < n; i++)
        in[i] = (struct emb_text){t->s[first + i], t->len[first + i]};
    rc = emb_plan_build(tk, m, o, in, n, &plan, &e);
    if (rc == 0) rc = emb_plan_run(c, &plan, pooled);
    if (rc != 0) {
        report_error(rc, &e, first);
        goto out;
    }
    int d = emb_finish(o, H, pooled, n); /* the numbers are final before printing */
    for (int32_t i = 0; i < n; i++)
        write_vec(out, first + i, t->id[first + i], pooled + (size_t)i * d, d);
    *tokens += plan.n_tokens;
out:
    emb_plan_deinit(&plan);
    free(in);
    free(pooled);
    return rc;
}

/* "auto", "f32", "bf16", "int8" (the server's --dtype names). */
static int parse_dtype(const char *s, enum eng_dtype *out) {
    static const enum eng_dtype all[] = {ENG_DTYPE_AUTO, ENG_DTYPE_F32, ENG_DTYPE_BF16,
                                         ENG_DTYPE_INT8};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (!strcmp(s, eng_dtype_name(all[i]))) return *out = all[i], 0;
    return -1;
}

static int parse_opts(int argc, char **argv, struct cli_opts *o) {
    static const struct option lo[] = {{"model", 1, 0, 'm'},
                                       {"task", 1, 0, 't'},
                                       {"dimensions", 1, 0, 'd'},
                                       {"no-normalize", 0, 0, 'N'},
                                       {"late-chunking", 0, 0, 'l'},
                                       {"truncate", 0, 0, 'T'},
                                       {"max-tokens", 1, 0, 'x'},
                                       {"input", 1, 0, 'i'},
                                       {"output", 1, 0, 'o'},
                                       {"threads", 1, 0, 'j'},
                                       {"max-batch-tokens", 1, 0, 'b'},
                                       {"help", 0, 0, 'h'},
                                       {"cpu-features", 1, 0, 'c'},
                                       {"dtype", 1, 0, 'D'},
                                       {"embeddings-in-memory", 0, 0, 'E'},
                                       {"version", 0, 0, 'V'},
                                       {0, 0, 0, 0}};
    *o = (struct cli_opts){.threads = cfg_cpu_count(),
                           .max_batch_tokens = 8192,
                           .max_tokens = 8192,
                           .normalized = true,
                           .cpu_features = getenv("EMBEDSERVE_CPU_FEATURES")};
    const char *dtype = getenv("EMBEDSERVE_DTYPE");
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        char *end = NULL;
        long v = optarg ? strtol(optarg, &end, 10) : 0;
        int bad_num = optarg && (*end || end == optarg || v < 1 || v > (1 << 24));
        switch (ch) {
        case 'm': o->model_dir = optarg; break;
        case 't': o->task = optarg; break;
        case 'N': o->normalized = false; break;
        case 'l': o->late = true; break;
        case 'T': o->truncate = true; break;
        case 'i': o->input = optarg; break;
        case 'o': o->output = optarg; break;
        case 'd': o->dimensions = (int)v; break;
        case 'x': o->max_tokens = (int)v; break;
        case 'j': o->threads = (int)v; break;
        case 'b': o->max_batch_tokens = (int)v; break;
        case 'c': o->cpu_features = optarg; break;
        case 'D': dtype = optarg; break;
        case 'E': o->embd_in_memory = true; break;
        case 'V': printf("embedserve %s (commit %s)\n", emb_version(), emb_commit()); exit(0);
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
        if (strchr("dxjb", ch) && bad_num) {
            fprintf(stderr, "embed: --%s needs a positive integer, got '%s'\n",
                    ch == 'd'   ? "dimensions"
                    : ch == 'x' ? "max-tokens"
                    : ch == 'j' ? "threads"
                                : "max-batch-tokens",
                    optarg);
            return -1;
        }
    }
    if (dtype && *dtype && parse_dtype(dtype, &o->dtype)) {
        fprintf(stderr, "embed: invalid --dtype '%s': use auto, f32, bf16 or int8\n", dtype);
        return -1;
    }
    if (!o->model_dir) {
        const char *env = getenv("EMBEDSERVE_MODEL");
        if (env && *env) o->model_dir = env;
    }
    if (!o->model_dir) {
        fprintf(stderr, "embed: --model DIR (or EMBEDSERVE_MODEL) is required\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Runs every group (ordinary) or document (late chunking). */
static int run_all(const tok *tk, const struct eng_model *m, struct eng_ctx *c,
                   const struct emb_opts *eo, const struct texts *t, FILE *out) {
    long tokens = 0;
    struct progress pg = {.t0 = clock_now(), .last_print = clock_now(), .tty = isatty(2)};
    int32_t i = 0;
    while (i < t->n) {
        int32_t n = 0;
        if (eo->late_chunking) {
            while (i < t->n && t->len[i] == 0)
                i++; /* blank lines separate documents */
            while (i + n < t->n && t->len[i + n] > 0)
                n++;
            if (n == 0) break;
        } else {
            n = t->n - i < CLI_GROUP ? t->n - i : CLI_GROUP;
        }
        int rc = run_group(tk, m, c, eo, t, i, n, out, &tokens);
        if (rc) return rc;
        i += n;
        progress(&pg, i, t->n, tokens);
    }
    return 0;
}

int cli_embed_main(int argc, char **argv) {
    struct cli_opts o;
    if (parse_opts(argc, argv, &o) != 0) return 2;
    char err[512];
    struct texts t = {0};
    tok *tk = NULL;
    struct eng_model *m = NULL;
    struct eng_ctx *c = NULL;
    FILE *in = stdin, *out = stdout;
    int status = 1;
    if (!(tk = tok_open_dir(o.model_dir, err, sizeof(err)))) {
        fprintf(stderr,
                "embed: %s\n  (jina-embeddings-v3 uses XLM-RoBERTa's sentencepiece.bpe.model, "
                "from the FacebookAI/xlm-roberta-large repository; v2 models their "
                "tokenizer.json; see README)\n",
                err);
        goto out;
    }
    struct eng_params ep = eng_params_defaults();
    if (cpu_parse_level(o.cpu_features, cpu_detect(), &ep.cpu_features, err, sizeof(err)) != 0) {
        fprintf(stderr, "embed: --cpu-features: %s\n", err);
        status = 2;
        goto out;
    }
    /* one team of threads, the engine's: OpenBLAS single-threaded inside it */
    openblas_set_num_threads(1);
    ep.n_threads = o.threads;
    ep.dtype = o.dtype;
    ep.embeddings_in_memory = o.embd_in_memory;
    ep.max_batch_tokens = o.max_batch_tokens > o.max_tokens ? o.max_batch_tokens : o.max_tokens;
    if (!(m = eng_model_open(o.model_dir, &ep, err, sizeof(err))) ||
        emb_check_model(tk, m, o.max_tokens, err, sizeof(err)) ||
        !(c = eng_ctx_new(m, &ep, err, sizeof(err)))) {
        fprintf(stderr, "embed: %s\n", err);
        goto out;
    }
    struct emb_opts eo = emb_opts_defaults();
    char why[400] = "";
    eo.task = o.task && strcmp(o.task, "none")
                  ? eng_task_resolve(eng_model_info(m), o.task, why, sizeof(why))
                  : ENG_TASK_NONE;
    eo.dimensions = o.dimensions;
    eo.normalized = o.normalized;
    eo.late_chunking = o.late;
    eo.truncate = o.truncate;
    eo.max_tokens = o.max_tokens;
    if (eo.task == ENG_ENOTASK || o.dimensions > eng_model_info(m)->n_embd) {
        if (eo.task == ENG_ENOTASK)
            fprintf(stderr, "embed: unknown --task: %s\n", why);
        else
            fprintf(stderr, "embed: --dimensions is over the model's size\n");
        status = 2;
        goto out;
    }
    if ((o.input && !(in = fopen(o.input, "rb"))) || (o.output && !(out = fopen(o.output, "wb")))) {
        fprintf(stderr, "embed: %s: %s\n", o.input && !in ? o.input : o.output, strerror(errno));
        goto out;
    }
    if (read_lines(in, &t) != 0) goto out;
    if (run_all(tk, m, c, &eo, &t, out) == 0) status = 0;
    if (fflush(out) != 0) status = 1;
out:
    if (in && in != stdin) fclose(in);
    if (out && out != stdout) fclose(out);
    texts_free(&t);
    eng_ctx_free(c);
    eng_model_close(m);
    tok_close(tk);
    return status;
}
