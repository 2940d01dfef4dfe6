/* main.c -- embedserve's entry point: `embedserve embed ...` runs the
 * offline CLI (cli/cli.c); anything else starts the HTTP server.
 *
 * Startup: settings -> HTTP listening (so /health answers while loading)
 * -> per --model, in order: tokenizer -> model -> engine context -> warm-up
 * -> batcher; then all of them attach at once -> ready. Any failure
 * (an unreadable model, two models with one name) prints one clear line and
 * exits non-zero.
 *
 * Several models: each has its own tokenizer, weights, engine context and
 * batcher (its own queue, passes and engine thread); --threads (the total)
 * is split evenly between them, the first models taking the remainder, at
 * least one each, so that busy models never contend for a core.
 *
 * Shutdown order. SIGTERM and SIGINT are blocked in every
 * thread and taken synchronously by sigwait() here, so no handler runs
 * asynchronously at all (the strongest form of "the handler sets a flag"):
 *   1. http_quiesce: stop accepting connections; requests arriving on open
 *      connections get 503 + Connection: close.
 *   2. batcher_drain: admitted requests finish (after --shutdown-timeout
 *      the ones not yet computed get 503); a pass that would run past the
 *      timeout is cancelled in the engine (eng_ctx_cancel).
 *      Each finished job resumes its connection, so afterwards no
 *      connection is suspended.
 *   3. http_wait_idle: the resumed connections send their answers.
 *   4. http_stop (MHD_stop_daemon), 5. batcher_free (joins the engine
 *   thread), 6. eng_model_close, tok_close (each model). Exit 0.
 * SIGHUP is taken the same way and only logged: the log is stderr, so there
 * is nothing to reopen, and a terminal hang-up or a stray `kill -HUP` must
 * not cut the requests in flight (its default action would). */
#include <cblas.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config/config.h"
#include "engine/cpu.h"
#include "engine/engine.h"
#include "util/alloc.h"
#include "pipeline/batcher.h"
#include "cli/cli.h"
#include "server/http.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/version.h"
#include "server/metrics.h"
#include "tokenizer/tokenizer.h"

/* What the batcher of model `index` reports its passes and drops to. */
struct observer {
    struct metrics *metrics;
    int index;
};

/* One --model: owned by main(). */
struct served {
    tok *tok;
    struct eng_model *model;
    struct batcher *batcher;
    struct observer obs;
};

/* Everything main() owns, released in reverse order by shutdown(). */
struct app {
    struct cfg cfg;
    struct metrics *metrics;
    struct http_server *http;
    int n_models;
    struct served models[CFG_MAX_MODELS];
};

static int fail(const char *what, const char *err) {
    LOG_ERROR("%s: %s", what, err);
    fprintf(stderr, "embedserve: %s: %s\n", what, err);
    return 1;
}

/* Resolves --default-task against a model; returns the adapter index,
 * ENG_TASK_NONE (also for a model without task adapters: requests' tasks
 * are ignored there), or ENG_ENOTASK (error written to err). */
static int resolve_default_task(const struct app *a, const struct eng_model *m, char *err,
                                size_t errlen) {
    const char *name = a->cfg.default_task;
    if (!name || !*name || eng_model_info(m)->n_tasks == 0) return ENG_TASK_NONE;
    char why[400];
    int t = eng_task_resolve(eng_model_info(m), name, why, sizeof(why));
    if (t == ENG_ENOTASK) snprintf(err, errlen, "invalid setting --default-task: %s", why);
    return t;
}

/* The batcher's observers: its passes and dropped jobs go to the metrics. */
static void count_pass(void *arg, int n_seqs, int n_requests, int n_tokens, double seconds) {
    const struct observer *o = arg;
    metrics_batch(o->metrics, o->index, n_seqs, n_requests, n_tokens, seconds);
}

static void count_drop(void *arg) {
    const struct observer *o = arg;
    metrics_dropped(o->metrics, o->index);
}

/* The CPU kernels the engine chose, products then attention
 * ("avx2-exact+avx2-attn", ...), for embedserve_build_info; buf holds it. */
static const char *engine_kernels(const struct eng_info *in, char *buf, size_t n) {
    snprintf(buf, n, "%s+%s", in->kernel ? in->kernel : eng_dtype_name(in->dtype),
             in->attn_kernel ? in->attn_kernel : "none");
    return buf;
}

/* Warm-up: one short forward pass per adapter path requests will take
 * (no task, and the default task or else the first adapter), on the
 * context before the batcher owns it. The first pass touches the
 * activation buffers and starts the BLAS and worker threads; without this
 * the first real request pays for it. Returns 0 or an engine error. */
static int warm_up(struct eng_ctx *ctx, const tok *t, const struct eng_info *in, int task) {
    static const char text[] = "warm-up";
    int32_t ids[16];
    ids[0] = tok_bos(t);
    int32_t n = tok_encode(t, text, sizeof(text) - 1, ids + 1, 14);
    if (n < 0) n = 0;
    ids[n + 1] = tok_eos(t);
    float *out = malloc(sizeof(float) * (size_t)in->n_embd);
    if (!out) return ENG_ENOMEM;
    int paths[2] = {ENG_TASK_NONE, task != ENG_TASK_NONE ? task : 0}, n_paths = in->n_tasks ? 2 : 1;
    int rc = 0;
    for (int i = 0; i < n_paths && !rc; i++) {
        struct eng_seq seq = {.ids = ids, .n_ids = n + 2, .task = paths[i], .out = out};
        rc = eng_encode(ctx, &seq, 1);
    }
    free(out);
    return rc;
}

/* While draining on SIGTERM, passes shrink to what fits before
 * --shutdown-timeout, down to this many tokens: the timeout is honoured to
 * within one such short pass. */
#define DRAIN_BATCH_TOKENS 512

/* Engine threads of model i of n: --threads (0 = the cores this process
 * may use) split evenly, the first models taking the remainder, >= 1. */
static int model_threads(const struct cfg *c, int i, int n) {
    int total = c->threads > 0 ? c->threads : cfg_cpu_count();
    int each = total / n + (i < total % n);
    return each > 0 ? each : 1;
}

/* Loads model i (tokenizer, weights, context, warm-up) and starts its
 * batcher; fills *hm for http_attach_models. */
static int load_model(struct app *a, int i, struct http_model *hm) {
    char err[512];
    const struct cfg *c = &a->cfg;
    const char *dir = c->models.v[i];
    struct served *sv = &a->models[i];
    char what[200];
    double t0 = clock_now();
    long long rss0 = mem_rss_bytes();
    if (!(sv->tok = tok_open_dir(dir, err, sizeof(err)))) {
        snprintf(what, sizeof(what), "cannot load the tokenizer of %s", dir);
        return fail(what, err);
    }
    struct eng_params p = eng_params_defaults();
    /* --cpu-features; the older EMBEDSERVE_NO_AVX512=1 means "avx2" */
    const char *level = c->cpu_features, *no512 = getenv("EMBEDSERVE_NO_AVX512");
    if ((!level || !strcmp(level, "auto")) && no512 && *no512 && strcmp(no512, "0")) level = "avx2";
    uint32_t have = cpu_detect();
    if (cpu_parse_level(level, have, &p.cpu_features, err, sizeof(err)) != 0)
        return fail("bad settings", err);
    p.n_threads = model_threads(c, i, c->models.n);
    static const enum eng_dtype dtypes[] = {ENG_DTYPE_AUTO, ENG_DTYPE_F32, ENG_DTYPE_BF16,
                                            ENG_DTYPE_INT8};
    p.dtype = dtypes[c->dtype];
    p.embeddings_in_memory = c->embeddings_in_memory;
    p.max_batch_tokens =
        c->max_batch_tokens > c->max_input_tokens ? c->max_batch_tokens : c->max_input_tokens;
    if (!(sv->model = eng_model_open(dir, &p, err, sizeof(err)))) {
        snprintf(what, sizeof(what), "cannot load the model %s", dir);
        return fail(what, err);
    }
    const struct eng_info *in = eng_model_info(sv->model);
    char names[2][128];
    LOG_INFO("kernels: %s for %s matrices, %s for attention (CPU level %s: features %s; this "
             "CPU has %s%s)",
             in->kernel, eng_dtype_name(in->dtype), in->attn_kernel,
             cpu_level_name(in->cpu_features),
             cpu_mask_names(in->cpu_features, names[0], sizeof(names[0])),
             cpu_mask_names(have, names[1], sizeof(names[1])),
             level && strcmp(level, "auto") ? "; restricted by --cpu-features" : "");
    LOG_INFO("word embeddings: %s (%.1f MiB)",
             in->embeddings_in_memory ? "copied into memory (--embeddings-in-memory)"
                                      : "read from the weights file per token, not resident",
             (double)in->embeddings_bytes / (1 << 20));
    int max_in = c->max_input_tokens;
    if (in->max_position > 0 && max_in > in->max_position) {
        LOG_WARN("--max-input-tokens %d is above the limit %d of %s; using %d for it", max_in,
                 in->max_position, dir, in->max_position);
        max_in = in->max_position;
    }
    snprintf(what, sizeof(what), "bad model %s", dir);
    if (emb_check_model(sv->tok, sv->model, max_in, err, sizeof(err))) return fail(what, err);
    int task = resolve_default_task(a, sv->model, err, sizeof(err));
    if (task == ENG_ENOTASK) return fail("bad settings", err);
    struct eng_ctx *ctx = eng_ctx_new(sv->model, &p, err, sizeof(err));
    if (!ctx) return fail("cannot create the engine context", err);
    if (c->warmup) {
        double tw = clock_now();
        int wrc = warm_up(ctx, sv->tok, in, task);
        if (wrc) {
            eng_ctx_free(ctx);
            return fail("warm-up forward pass failed", eng_strerror(wrc));
        }
        LOG_INFO("warm-up: %d forward pass(es) in %.1f ms (%s)", in->n_tasks ? 2 : 1,
                 (clock_now() - tw) * 1e3, dir);
    }
    if (i == 0) {
        static char kernels[128]; /* borrowed by the metrics for the process's life */
        struct met_build mb = {.version = emb_version(),
                               .commit = emb_commit(),
                               .dtype = eng_dtype_name(in->dtype),
                               .kernels = engine_kernels(in, kernels, sizeof(kernels))};
        metrics_set_build(a->metrics, &mb);
    }
    sv->obs = (struct observer){a->metrics, i};
    struct batcher_params bp = {.max_batch_tokens = c->max_batch_tokens,
                                .max_queue = c->max_queue,
                                .drain_batch_tokens = DRAIN_BATCH_TOKENS,
                                .on_pass = count_pass,
                                .on_drop = count_drop,
                                .observer_arg = &sv->obs};
    if (!(sv->batcher = batcher_new(ctx, &bp, err, sizeof(err))))
        return fail("cannot start the batcher", err);
    *hm = (struct http_model){.dir = dir,
                              .tok = sv->tok,
                              .model = sv->model,
                              .batcher = sv->batcher,
                              .default_task = task,
                              .max_input_tokens = max_in};
    LOG_INFO("model %d of %d: %s (%s, n_embd %d, %d layers, %d tasks, %s) loaded in %.2f s, "
             "resident memory +%lld MiB, %d engine threads, context %d tokens",
             i + 1, c->models.n, dir, in->arch ? in->arch : "?", in->n_embd, in->n_layer,
             in->n_tasks, eng_dtype_name(in->dtype), clock_now() - t0,
             (mem_rss_bytes() - rss0) >> 20, p.n_threads, p.max_batch_tokens);
    return 0;
}

/* Loads every --model in order, then attaches them all: /ready turns 200
 * only once each is loaded and warmed up. */
static int load_models(struct app *a) {
    struct http_model hm[CFG_MAX_MODELS];
    double t0 = clock_now();
    for (int i = 0; i < a->cfg.models.n; i++) {
        a->n_models = i + 1; /* shutdown_all releases what was loaded */
        if (load_model(a, i, &hm[i])) return 1;
    }
    char err[700];
    if (http_attach_models(a->http, hm, a->n_models, err, sizeof(err))) return fail("startup", err);
    LOG_INFO("ready: %d model(s) loaded in %.2f s", a->n_models, clock_now() - t0);
    return 0;
}

/* The soft limit on open files up to the hard one: the server keeps up to
 * 4096 connections, and a soft limit of 1024 (a common default) would make
 * accept() fail for everyone long before that. */
static void raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= rl.rlim_max) return;
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
    if (want <= rl.rlim_cur) return;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl))
        LOG_WARN("cannot raise the open-file limit to %lu", (unsigned long)want);
}

static void shutdown_all(struct app *a) {
    if (a->http) http_quiesce(a->http);
    /* the models drain one after another under one deadline (each engine
     * keeps running its queue meanwhile): --shutdown-timeout bounds the whole */
    double end = clock_now() + a->cfg.shutdown_timeout;
    for (int i = 0; i < a->n_models; i++)
        if (a->models[i].batcher) {
            double left = end - clock_now();
            batcher_drain(a->models[i].batcher, left > 0 ? left : 0);
        }
    if (a->http && !http_wait_idle(a->http, 5.0))
        LOG_WARN("some connections were still busy after 5 s; closing them");
    http_stop(a->http);
    for (int i = 0; i < a->n_models; i++) {
        struct served *sv = &a->models[i];
        batcher_free(sv->batcher);
        eng_model_close(sv->model);
        tok_close(sv->tok);
    }
    metrics_free(a->metrics);
    cfg_deinit(&a->cfg);
}

int main(int argc, char **argv) {
    mem_install_cjson(); /* request JSON allocates through mem_malloc (alloc.h) */
    if (argc > 1 && !strcmp(argv[1], "embed")) return cli_embed_main(argc - 1, argv + 1);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--version")) {
            printf("embedserve %s (commit %s)\n", emb_version(), emb_commit());
            return 0;
        }
    struct app a;
    memset(&a, 0, sizeof(a));
    char err[512];
    int rc = cfg_load(&a.cfg, argc, argv, stdout, err, sizeof(err));
    if (rc == CFG_HELP) return cfg_deinit(&a.cfg), 0;
    if (rc) {
        fprintf(stderr, "embedserve: %s\n", err);
        cfg_deinit(&a.cfg);
        return 2;
    }
    log_set_level(a.cfg.log_level);
    log_set_format(a.cfg.log_format == CFG_LOG_JSON ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
    char desc[2048];
    cfg_describe(&a.cfg, desc, sizeof(desc));
    LOG_INFO("embedserve %s (commit %s) starting: %s", emb_version(), emb_commit(), desc);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* inherited by every thread started below */
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    rc = 1;
    if (!(a.metrics = metrics_new())) {
        fail("startup", "out of memory");
        goto out;
    }
    struct met_build mb = {.version = emb_version(), .commit = emb_commit()};
    metrics_set_build(a.metrics, &mb);
    if (!(a.http = http_start(&a.cfg, a.metrics, err, sizeof(err)))) {
        fail("cannot start the HTTP server", err);
        goto out;
    }
    LOG_INFO("listening on %s port %d", a.cfg.host, http_port(a.http));
    /* Process-wide, once: the engine's pool is the one team of threads, and
     * OpenBLAS (f32 attention) runs single-threaded inside its shares. */
    openblas_set_num_threads(1);
    if (load_models(&a)) goto out;
    int sig = 0;
    while (!sigwait(&sigs, &sig) && sig == SIGHUP)
        LOG_INFO("SIGHUP received: ignored (the log is stderr; nothing to reopen)");
    LOG_INFO("%s received: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    rc = 0;
out:
    shutdown_all(&a);
    if (rc == 0) LOG_INFO("stopped");
    return rc;
}
