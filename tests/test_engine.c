/* test_engine.c -- the engine against the independent float64 NumPy reference.
 *
 * tests/reference.py computed, for every case of tests/data/engine_cases.json
 * on the generated model, the token ids of each model sequence and the final
 * embeddings. Here the same cases go through emb_plan_build (tokeniser +
 * prefixes + truncation + late-chunking spans) and the engine, and must give:
 * the same ids exactly and, in f32, max |diff| <= 1e-4 per value and cosine
 * >= 0.99999. The low-precision modes are held to cosine >= 0.9995 (bf16) and
 * >= 0.998 (int8) on every case. Then: every sequence of every case packed
 * into shared batches (mixed tasks and lengths) equals the case run alone;
 * bad batches are refused; and the forced no-AVX-512 fallback runs f32.
 * Then the model knowledge the engine owns: the task resolver (names,
 * aliases, refusals), the error codes, the facts eng_info reports, and the
 * architecture seam: configs naming an unknown architecture or a position
 * scheme the description does not use are refused with a clear message,
 * descriptions asking for modes the forward pass lacks are refused, and a
 * second description (other tensor names, separate Q/K/V, no adapters) over
 * the test model's weights gives the v3 no-task vectors bit for bit.
 */
#include "tests/test.h"

#include "engine/cpu.h"
#include "engine/engine_impl.h"
#include "pipeline/embed.h"
#include "util/clock.h"

#include <cJSON.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct tol {
    const char *mode;
    double abs; /* max |diff| per value; 0 = not checked */
    double cos; /* min cosine */
};
static const struct tol TOL_F32 = {"f32", 1e-4, 0.99999};
static const struct tol TOL_BF16 = {"bf16", 0, 0.9995};
static const struct tol TOL_INT8 = {"int8", 0, 0.998};

struct fixture {
    const struct tol *tol;
    tok *tk;
    struct eng_model *m;
    struct eng_ctx *c;
    cJSON *cases, *expected;
};

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

static cJSON *load_json(const char *path) {
    char *s = slurp(path);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    CHECKM(j != NULL, "cannot read %s", path);
    return j;
}

/* Expands a case's inputs ({"repeat": s, "times": n} items) into texts. */
static int case_texts(const cJSON *cs, struct emb_text **out) {
    const cJSON *inputs = cJSON_GetObjectItem(cs, "inputs"), *it;
    int n = cJSON_GetArraySize(inputs), i = 0;
    *out = calloc((size_t)n + 1, sizeof(**out));
    cJSON_ArrayForEach(it, inputs) {
        if (cJSON_IsString(it)) {
            (*out)[i].s = strdup(it->valuestring);
        } else {
            const char *s = cJSON_GetObjectItem(it, "repeat")->valuestring;
            int times = cJSON_GetObjectItem(it, "times")->valueint;
            size_t l = strlen(s);
            char *b = malloc((l + 1) * (size_t)times + 1), *p = b;
            for (int k = 0; k < times; k++) {
                if (k) *p++ = ' ';
                memcpy(p, s, l);
                p += l;
            }
            *p = 0;
            (*out)[i].s = b;
        }
        (*out)[i].len = strlen((*out)[i].s);
        i++;
    }
    return n;
}

static void texts_free(struct emb_text *t, int n) {
    for (int i = 0; i < n; i++)
        free((char *)t[i].s);
    free(t);
}

static struct emb_opts case_opts(const struct fixture *fx, const cJSON *cs) {
    struct emb_opts o = emb_opts_defaults();
    const cJSON *task = cJSON_GetObjectItem(cs, "task"),
                *dims = cJSON_GetObjectItem(cs, "dimensions");
    o.task = cJSON_IsString(task) ? eng_task_lookup(fx->m, task->valuestring) : ENG_TASK_NONE;
    o.dimensions = cJSON_IsNumber(dims) ? dims->valueint : 0;
    o.normalized = !cJSON_IsFalse(cJSON_GetObjectItem(cs, "normalized"));
    o.late_chunking = cJSON_IsTrue(cJSON_GetObjectItem(cs, "late_chunking"));
    o.truncate = cJSON_IsTrue(cJSON_GetObjectItem(cs, "truncate"));
    const cJSON *mt = cJSON_GetObjectItem(cs, "max_tokens");
    o.max_tokens = cJSON_IsNumber(mt) ? mt->valueint : 8192;
    return o;
}

/* Compares one final embedding with the reference; tracks the worst figures. */
static void compare_vec(const struct tol *tol, const char *name, int i, const float *v, int n,
                        const cJSON *ref, double *worst_abs, double *worst_cos) {
    CHECKM(cJSON_GetArraySize(ref) == n, "%s[%d]: %d values, reference has %d", name, i, n,
           cJSON_GetArraySize(ref));
    if (cJSON_GetArraySize(ref) != n) return;
    double dot = 0, na = 0, nb = 0, mx = 0;
    for (int j = 0; j < n; j++) {
        double r = cJSON_GetArrayItem(ref, j)->valuedouble, d = fabs(v[j] - r);
        mx = d > mx ? d : mx;
        dot += v[j] * r;
        na += (double)v[j] * v[j];
        nb += r * r;
    }
    double cos = na > 0 && nb > 0 ? dot / sqrt(na * nb) : (na == nb ? 1 : 0);
    if (tol->abs > 0)
        CHECKM(mx <= tol->abs, "%s %s[%d]: max |diff| %.3g > %g", tol->mode, name, i, mx, tol->abs);
    CHECKM(cos >= tol->cos, "%s %s[%d]: cosine %.9f < %g", tol->mode, name, i, cos, tol->cos);
    *worst_abs = mx > *worst_abs ? mx : *worst_abs;
    *worst_cos = cos < *worst_cos ? cos : *worst_cos;
}

static void check_ids(const char *name, const struct emb_plan *plan, const cJSON *seqs) {
    CHECKM(plan->n_seqs == cJSON_GetArraySize(seqs), "%s: %d sequences, reference %d", name,
           plan->n_seqs, cJSON_GetArraySize(seqs));
    for (int s = 0; s < plan->n_seqs && s < cJSON_GetArraySize(seqs); s++) {
        const cJSON *ids = cJSON_GetArrayItem(seqs, s);
        int same = plan->seqs[s].n_ids == cJSON_GetArraySize(ids);
        for (int k = 0; same && k < plan->seqs[s].n_ids; k++)
            same = plan->seqs[s].ids[k] == cJSON_GetArrayItem(ids, k)->valueint;
        CHECKM(same, "%s: sequence %d ids differ from the reference tokenisation", name, s);
    }
}

static void run_case(struct fixture *fx, const cJSON *cs, const cJSON *ex) {
    const char *name = cJSON_GetObjectItem(cs, "name")->valuestring;
    const cJSON *error = cJSON_GetObjectItem(ex, "error");
    int H = eng_model_info(fx->m)->n_embd;
    struct emb_text *texts;
    int n = case_texts(cs, &texts);
    struct emb_opts o = case_opts(fx, cs);
    struct emb_plan plan;
    struct emb_error e;
    int rc = emb_plan_build(fx->tk, fx->m, &o, texts, n, &plan, &e);
    if (cJSON_IsString(error)) {
        int want = !strcmp(error->valuestring, "too_long") ? EMB_ETOOLONG : EMB_EEMPTY;
        CHECKM(rc == want, "%s: expected error %s, got %d", name, error->valuestring, rc);
        goto out;
    }
    CHECKM(rc == 0, "%s: emb_plan_build failed (%d)", name, rc);
    if (rc) goto out;
    check_ids(name, &plan, cJSON_GetObjectItem(ex, "sequences"));
    if (getenv("EMBEDSERVE_TEST_EMULATED") && plan.n_tokens > 2048) {
        /* attention over thousands of tokens takes many minutes under qemu;
         * the same code path runs in make test on the host */
        fprintf(stderr, "  %-4s %-48s not run under emulation (%zu tokens)\n", fx->tol->mode, name,
                (size_t)plan.n_tokens);
        goto out;
    }
    float *pooled = malloc(sizeof(float) * (size_t)H * (size_t)n), *v = malloc(sizeof(float) * H);
    CHECK(emb_plan_run(fx->c, &plan, pooled) == 0);
    double worst_abs = 0, worst_cos = 1;
    const cJSON *embs = cJSON_GetObjectItem(ex, "embeddings");
    for (int i = 0; i < n; i++) {
        int d = emb_output(&o, H, pooled + (size_t)i * H, v);
        compare_vec(fx->tol, name, i, v, d, cJSON_GetArrayItem(embs, i), &worst_abs, &worst_cos);
    }
    fprintf(stderr, "  %-4s %-48s max|diff| %.2e  min cos %.9f\n", fx->tol->mode, name, worst_abs,
            worst_cos);
    free(pooled);
    free(v);
out:
    emb_plan_deinit(&plan);
    texts_free(texts, n);
}

/* Packs the sequences of all non-error cases into shared batches and checks
 * each pooled row equals the row computed with the case alone. */
static void check_batch_invariance(struct fixture *fx) {
    int H = eng_model_info(fx->m)->n_embd, n_cases = cJSON_GetArraySize(fx->cases);
    struct eng_seq *batch = calloc(4096, sizeof(*batch));
    float *alone = calloc((size_t)4096 * H, sizeof(float)),
          *mixed = calloc((size_t)4096 * H, sizeof(float));
    struct emb_plan *plans = calloc((size_t)n_cases, sizeof(*plans));
    int nb = 0, n_out = 0, tokens = 0;
    for (int ic = 0; ic < n_cases; ic++) {
        const cJSON *cs = cJSON_GetArrayItem(fx->cases, ic);
        struct emb_text *texts;
        int n = case_texts(cs, &texts);
        struct emb_opts o = case_opts(fx, cs);
        struct emb_error e;
        if (emb_plan_build(fx->tk, fx->m, &o, texts, n, &plans[ic], &e) != 0 ||
            plans[ic].n_tokens + tokens > eng_ctx_capacity(fx->c) / 2 ||
            (getenv("EMBEDSERVE_TEST_EMULATED") && plans[ic].n_tokens > 2048)) {
            texts_free(texts, n);
            continue;
        }
        CHECK(emb_plan_run(fx->c, &plans[ic], alone + (size_t)n_out * H) == 0);
        for (int s = 0; s < plans[ic].n_seqs; s++) {
            const struct emb_seq *q = &plans[ic].seqs[s];
            batch[nb++] = (struct eng_seq){q->ids,   q->n_ids,
                                           q->task,  q->spans ? q->n_out : 0,
                                           q->spans, mixed + (size_t)(n_out + q->first_out) * H};
        }
        n_out += plans[ic].n_outputs;
        tokens += (int)plans[ic].n_tokens;
        texts_free(texts, n);
    }
    CHECK(nb > 20);
    CHECK(eng_encode(fx->c, batch, nb) == 0);
    double mx = 0;
    for (size_t i = 0; i < (size_t)n_out * H; i++) {
        double d = fabs(alone[i] - mixed[i]);
        mx = d > mx ? d : mx;
    }
    CHECKM(mx <= 1e-5, "mixed batch differs from sequences alone by %.3g", mx);
    /* exact mode: bitwise (the reduction orders do not depend on the batch) */
    CHECKM(!memcmp(alone, mixed, sizeof(float) * (size_t)n_out * H),
           "mixed batch not bitwise equal to the sequences alone");
    fprintf(stderr, "  batch of %d sequences (%d tokens, mixed tasks): max |diff| vs alone %.2e\n",
            nb, tokens, mx);
    for (int ic = 0; ic < n_cases; ic++)
        emb_plan_deinit(&plans[ic]);
    free(plans);
    free(batch);
    free(alone);
    free(mixed);
}

/* Engine parameters of the tests: this CPU level (EMBEDSERVE_TEST_CPU_FEATURES). */
static struct eng_params test_params(enum eng_dtype dtype, int n_threads, int max_batch_tokens) {
    struct eng_params p = eng_params_defaults();
    p.n_threads = n_threads;
    p.max_batch_tokens = max_batch_tokens;
    p.dtype = dtype;
    p.cpu_features = test_cpu_features();
    return p;
}

/* Bitwise reproducibility: every sequence of the cases (all tasks, spans,
 * lengths) embedded alone on a 1-thread context, then in shuffled batches of
 * varying sizes, mixed with the others, on the 2-thread context: memcmp.
 * Three shuffles; one under emulation (EMBEDSERVE_TEST_EMULATED, make
 * test-aarch64), where each costs minutes. */
static void check_reproducible(struct fixture *fx, const char *dir) {
    const struct eng_info *in = eng_model_info(fx->m);
    int H = in->n_embd, n_cases = cJSON_GetArraySize(fx->cases);
    char err[512] = "";
    struct eng_params p = test_params(in->dtype, 1, 8192);
    struct eng_ctx *c1 = eng_ctx_new(fx->m, &p, err, sizeof(err));
    CHECKM(c1 != NULL, "%s", err);
    (void)dir;
    struct emb_plan *plans = calloc((size_t)n_cases, sizeof(*plans));
    struct eng_seq *seqs = calloc(4096, sizeof(*seqs)), *batch = calloc(4096, sizeof(*batch));
    size_t *off = calloc(4096, sizeof(size_t)), total = 0;
    int ns = 0;
    for (int ic = 0; c1 && ic < n_cases; ic++) {
        const cJSON *cs = cJSON_GetArrayItem(fx->cases, ic);
        struct emb_text *texts;
        int n = case_texts(cs, &texts);
        struct emb_opts o = case_opts(fx, cs);
        struct emb_error e;
        int ok = emb_plan_build(fx->tk, fx->m, &o, texts, n, &plans[ic], &e) == 0;
        texts_free(texts, n);
        if (!ok) continue;
        for (int s = 0; s < plans[ic].n_seqs && ns < 4096; s++) {
            const struct emb_seq *q = &plans[ic].seqs[s];
            if (q->n_ids > 1024) continue; /* keeps the batches many and the run short */
            seqs[ns] = (struct eng_seq){q->ids,   q->n_ids, q->task, q->spans ? q->n_out : 0,
                                        q->spans, NULL};
            off[ns++] = total;
            total += (size_t)(q->spans ? q->n_out : 1) * H;
        }
    }
    float *ref = calloc(total + 1, sizeof(float)), *got = calloc(total + 1, sizeof(float));
    for (int i = 0; c1 && i < ns; i++) {
        struct eng_seq q = seqs[i];
        q.out = ref + off[i];
        CHECK(eng_encode(c1, &q, 1) == 0);
    }
    int bad = 0, batches = 0, tasks_mixed = 0, rounds = getenv("EMBEDSERVE_TEST_EMULATED") ? 1 : 3;
    unsigned rnd = 12345;
    for (int round = 0; c1 && round < rounds; round++) {
        int *order = malloc(sizeof(int) * (size_t)(ns + 1));
        for (int i = 0; i < ns; i++)
            order[i] = i;
        for (int i = ns - 1; i > 0; i--) {
            rnd = rnd * 1103515245u + 12345u;
            int j = (int)((rnd >> 8) % (unsigned)(i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        memset(got, 0, sizeof(float) * total);
        for (int i0 = 0; i0 < ns;) {
            rnd = rnd * 1103515245u + 12345u;
            int want = 2 + (int)((rnd >> 8) % 9), nb = 0, n_tok = 0, task0 = seqs[order[i0]].task;
            while (i0 < ns && nb < want &&
                   n_tok + seqs[order[i0]].n_ids <= eng_ctx_capacity(fx->c)) {
                batch[nb] = seqs[order[i0]];
                batch[nb].out = got + off[order[i0]];
                tasks_mixed |= batch[nb].task != task0;
                n_tok += batch[nb++].n_ids;
                i0++;
            }
            CHECK(nb > 0 && eng_encode(fx->c, batch, nb) == 0);
            if (nb == 0) break;
            batches++;
        }
        for (int i = 0; i < ns; i++) {
            size_t n = (size_t)(seqs[i].n_spans ? seqs[i].n_spans : 1) * H;
            bad += memcmp(ref + off[i], got + off[i], sizeof(float) * n) != 0;
        }
        free(order);
    }
    CHECK(ns > 20 && tasks_mixed);
    CHECKM(bad == 0,
           "%s: %d of %d sequences differ bitwise between alone (1 thread) and shuffled "
           "mixed batches (2 threads)",
           fx->tol->mode, bad, rounds * ns);
    fprintf(stderr,
            "  %-4s reproducible: %d sequences alone (1 thread) vs %d shuffles in %d mixed "
            "batches (2 threads): %d differ\n",
            fx->tol->mode, ns, rounds, batches, bad);
    for (int ic = 0; ic < n_cases; ic++)
        emb_plan_deinit(&plans[ic]);
    free(plans), free(seqs), free(batch), free(off), free(ref), free(got);
    eng_ctx_free(c1);
}

struct cancel_arg {
    struct eng_ctx *c;
    double after_s;
    double issued; /* clock_now() right after eng_ctx_cancel returned */
};

static void *cancel_later(void *arg) {
    struct cancel_arg *a = arg;
    struct timespec ts = {(time_t)a->after_s,
                          (long)((a->after_s - (double)(time_t)a->after_s) * 1e9)};
    nanosleep(&ts, NULL);
    eng_ctx_cancel(a->c);
    a->issued = clock_now();
    return NULL;
}

/* eng_ctx_cancel: a cancelled pass returns ENG_ECANCELED and writes
 * nothing; the request is used up (the next pass runs and matches a pass
 * never cancelled, bit for bit); a cancel from another thread stops a
 * running pass of 1536 tokens long before it would have ended. */
static void check_cancel(struct fixture *fx) {
    const struct eng_info *in = eng_model_info(fx->m);
    int H = in->n_embd, n = eng_ctx_capacity(fx->c) < 1536 ? eng_ctx_capacity(fx->c) : 1536;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    float *ref = malloc(sizeof(float) * (size_t)H), *got = malloc(sizeof(float) * (size_t)H);
    unsigned rnd = 7;
    for (int i = 0; i < n; i++) {
        rnd = rnd * 1103515245u + 12345u;
        ids[i] = 3 + (int32_t)((rnd >> 8) % (unsigned)(in->n_vocab - 3));
    }
    ids[0] = 0, ids[n - 1] = 2;
    struct eng_seq q = {ids, n, in->n_tasks > 0 ? 0 : ENG_TASK_NONE, 0, NULL, ref};
    double t0 = clock_now();
    CHECK(eng_encode(fx->c, &q, 1) == 0);
    double t_full = clock_now() - t0;
    q.out = got;
    memset(got, 0x7f, sizeof(float) * (size_t)H);
    eng_ctx_cancel(fx->c); /* no pass running: the next one is cancelled */
    CHECK(eng_encode(fx->c, &q, 1) == ENG_ECANCELED);
    bool untouched = true;
    for (int j = 0; j < H; j++)
        untouched &= ((unsigned char *)got)[4 * j] == 0x7f;
    CHECKM(untouched, "%s: a cancelled pass wrote its output", fx->tol->mode);
    CHECK(eng_encode(fx->c, &q, 1) == 0); /* the request was used up */
    CHECKM(!memcmp(ref, got, sizeof(float) * (size_t)H),
           "%s: the pass after a cancelled one differs from a pass never cancelled", fx->tol->mode);
    /* From another thread, a tenth into the pass: the pass must return
     * within half a pass of the moment the cancel was made (measured from
     * then, not from the planned time: on a loaded machine the cancelling
     * thread itself may run late). If it ran so late that the pass had
     * already ended, the next pass used the request up: try again, 3 times. */
    struct cancel_arg a = {fx->c, t_full / 10, 0};
    int rc = 0, tries = 0;
    double t_cut = 0, t_end = 0;
    while (rc != ENG_ECANCELED && tries++ < 3) {
        pthread_t th;
        CHECK(pthread_create(&th, NULL, cancel_later, &a) == 0);
        t0 = clock_now();
        rc = eng_encode(fx->c, &q, 1);
        t_end = clock_now();
        t_cut = t_end - t0;
        pthread_join(th, NULL);
        if (rc == 0) CHECK(eng_encode(fx->c, &q, 1) == ENG_ECANCELED); /* used up */
    }
    CHECKM(rc == ENG_ECANCELED && t_end - a.issued < t_full * 0.5,
           "%s: cancelled a tenth into a %.0f ms pass (made at %.0f ms): rc %d after %.0f ms",
           fx->tol->mode, t_full * 1e3, (a.issued - t0) * 1e3, rc, t_cut * 1e3);
    fprintf(stderr,
            "  %-4s cancel: a %d-token pass of %.0f ms, cancel made at %.0f ms, returned at %.0f "
            "ms (try %d)\n",
            fx->tol->mode, n, t_full * 1e3, (a.issued - t0) * 1e3, t_cut * 1e3, tries);
    CHECK(eng_encode(fx->c, &q, 1) == 0 && !memcmp(ref, got, sizeof(float) * (size_t)H));
    free(ids), free(ref), free(got);
}

static void check_refusals(struct fixture *fx) {
    int H = eng_model_info(fx->m)->n_embd, V = eng_model_info(fx->m)->n_vocab;
    float out[4096];
    int32_t ids[3] = {0, 5, 2}, bad[3] = {0, V, 2}, spans[2] = {2, 1};
    CHECK(H * 2 <= 4096);
    struct eng_seq s = {ids, 3, ENG_TASK_NONE, 0, NULL, out};
    CHECK(eng_encode(fx->c, &s, 1) == 0);
    s.ids = bad;
    CHECK(eng_encode(fx->c, &s, 1) == ENG_EINVAL);
    s.ids = ids;
    s.task = eng_model_info(fx->m)->n_tasks;
    CHECK(eng_encode(fx->c, &s, 1) == ENG_EINVAL);
    s.task = 0;
    s.n_spans = 1;
    s.spans = spans;
    CHECK(eng_encode(fx->c, &s, 1) == ENG_EINVAL);
    int cap = eng_ctx_capacity(fx->c);
    int32_t *big = calloc((size_t)cap + 1, sizeof(int32_t));
    struct eng_seq sb = {big, cap + 1, ENG_TASK_NONE, 0, NULL, out};
    CHECK(eng_encode(fx->c, &sb, 1) == ENG_ETOOLONG);
    free(big);
    CHECK(eng_task_lookup(fx->m, "retrieval.query") == 0);
    CHECK(eng_task_lookup(fx->m, "text-matching") == 4);
    CHECK(eng_task_lookup(fx->m, "nope") == ENG_ENOTASK);
    CHECK(eng_task_lookup(fx->m, NULL) == ENG_TASK_NONE);
    /* the one resolver: names and aliases, and an error that lists the names */
    const struct eng_info *tin = eng_model_info(fx->m);
    char why[400] = "";
    CHECK(eng_task_resolve(tin, "retrieval.passage", why, sizeof(why)) == 1);
    CHECK(eng_task_resolve(tin, "query", why, sizeof(why)) == 0);
    CHECK(eng_task_resolve(tin, "passage", NULL, 0) == 1 &&
          eng_task_resolve(tin, "document", NULL, 0) == 1);
    CHECK(eng_task_resolve(tin, "clustering", NULL, 0) == 2);
    CHECK(eng_task_resolve(tin, NULL, why, sizeof(why)) == ENG_TASK_NONE);
    CHECK(eng_task_resolve(tin, "nope", why, sizeof(why)) == ENG_ENOTASK);
    CHECKM(strstr(why, "'nope'") && strstr(why, "retrieval.query") && strstr(why, "text-matching"),
           "resolver error: %s", why);
}

/* Every canonical name and alias, unknown names and NULL, with messages. */
static void check_task_resolve(const struct eng_model *m) {
    static const struct {
        const char *name;
        int want;
    } cases[] = {
        {"retrieval.query", 0}, {"retrieval.passage", 1}, {"separation", 2},
        {"classification", 3},  {"text-matching", 4},     {"query", 0},
        {"passage", 1},         {"document", 1},          {"clustering", 2},
    };
    const struct eng_info *in = eng_model_info(m);
    char err[512];
    CHECK(in->n_tasks == 5);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        strcpy(err, "untouched");
        int t = eng_task_resolve(in, cases[i].name, err, sizeof(err));
        CHECKM(t == cases[i].want, "resolve('%s') = %d, want %d", cases[i].name, t, cases[i].want);
        CHECKM(!strcmp(err, "untouched"), "resolve('%s') wrote a message", cases[i].name);
        CHECK(eng_task_lookup(m, cases[i].name) == cases[i].want);
    }
    CHECK(eng_task_resolve(in, NULL, err, sizeof(err)) == ENG_TASK_NONE);
    const char *bad[] = {"nope", "", "none", "Query", "retrieval", "retrieval.query "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        CHECKM(eng_task_resolve(in, bad[i], err, sizeof(err)) == ENG_ENOTASK, "'%s' refused",
               bad[i]);
        CHECKM(strstr(err, "unknown task") != NULL, "message for '%s': %s", bad[i], err);
        for (int t = 0; t < in->n_tasks; t++)
            CHECKM(strstr(err, in->task_name[t]) != NULL, "'%s' not listed in: %s",
                   in->task_name[t], err);
        CHECKM(strstr(err, "clustering") && strstr(err, "document"), "aliases listed: %s", err);
        CHECK(eng_task_resolve(in, bad[i], NULL, 0) == ENG_ENOTASK); /* no message wanted */
        CHECK(eng_task_lookup(m, bad[i]) == ENG_ENOTASK);
    }
    /* a tiny message buffer is truncated, never overrun */
    char tiny[8];
    memset(tiny, 'x', sizeof(tiny));
    CHECK(eng_task_resolve(in, "nope", tiny, sizeof(tiny)) == ENG_ENOTASK);
    CHECK(memchr(tiny, 0, sizeof(tiny)) != NULL);
}

/* Error codes: distinct from adapter indices and ENG_TASK_NONE, each named. */
static void check_error_codes(void) {
    const int codes[] = {ENG_EINVAL, ENG_ETOOLONG, ENG_ENOMEM, ENG_EIO, ENG_ENOTASK};
    int n = (int)(sizeof(codes) / sizeof(codes[0]));
    for (int i = 0; i < n; i++) {
        CHECKM(codes[i] < ENG_TASK_NONE && codes[i] <= -100, "code %d collides", codes[i]);
        CHECKM(strcmp(eng_strerror(codes[i]), "unknown engine error") != 0, "%d unnamed", codes[i]);
        for (int j = 0; j < i; j++) {
            CHECK(codes[i] != codes[j]);
            CHECK(strcmp(eng_strerror(codes[i]), eng_strerror(codes[j])) != 0);
        }
    }
    CHECK(!strcmp(eng_strerror(0), "unknown engine error"));
    CHECK(!strcmp(eng_strerror(ENG_TASK_NONE), "unknown engine error"));
}

/* name, arch, Matryoshka sizes, token limit: what the model card reads. */
static void check_info(const struct eng_model *m, const char *dir) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    cJSON *cfg = load_json(path);
    const struct eng_info *in = eng_model_info(m);
    if (!cfg) return;
    const cJSON *nm = cJSON_GetObjectItem(cfg, "_name_or_path");
    const cJSON *md = cJSON_GetObjectItem(cfg, "matryoshka_dimensions");
    CHECK(cJSON_IsString(nm) && !strcmp(in->name, nm->valuestring));
    CHECK(in->arch && !strcmp(in->arch, "jina-embeddings-v3"));
    CHECK(in->max_position == cJSON_GetObjectItem(cfg, "max_position_embeddings")->valueint - 2);
    CHECKM(in->n_matryoshka == cJSON_GetArraySize(md) && in->n_matryoshka > 0,
           "%d Matryoshka sizes, config lists %d", in->n_matryoshka, cJSON_GetArraySize(md));
    for (int i = 0; i < in->n_matryoshka && i < cJSON_GetArraySize(md); i++)
        CHECK(in->matryoshka[i] == cJSON_GetArrayItem(md, i)->valueint);
    for (int t = 0; t < in->n_tasks; t++) {
        const cJSON *pr =
            cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "task_instructions"), in->task_name[t]);
        CHECK(cJSON_IsString(pr) && !strcmp(in->task_prefix[t], pr->valuestring));
    }
    cJSON_Delete(cfg);
}

/* Opens a copy of the model whose config.json has `key` set to `val` (the
 * value is consumed; NULL deletes the key). Returns the model or NULL with
 * the loader's message in err. */
static struct eng_model *open_with_config(const char *dir, const char *key, cJSON *val, char *err,
                                          size_t errlen) {
    char path[4096], tmp[4096], abs[4096];
    const char *td = getenv("TMPDIR");
    snprintf(tmp, sizeof(tmp), "%s/engine_cfg.XXXXXX", td && *td ? td : "/tmp");
    snprintf(path, sizeof(path), "%s/config.json", dir);
    cJSON *cfg = load_json(path);
    struct eng_model *m = NULL;
    if (!cfg || !mkdtemp(tmp)) {
        cJSON_Delete(val);
        cJSON_Delete(cfg);
        snprintf(err, errlen, "test setup failed");
        return NULL;
    }
    if (val)
        cJSON_ReplaceItemInObject(cfg, key, val);
    else
        cJSON_DeleteItemFromObject(cfg, key);
    if (val && !cJSON_GetObjectItem(cfg, key)) cJSON_AddItemToObject(cfg, key, val);
    char *text = cJSON_Print(cfg), cpath[4200], wpath[4200];
    snprintf(cpath, sizeof(cpath), "%s/config.json", tmp);
    snprintf(wpath, sizeof(wpath), "%s/model.safetensors", tmp);
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    FILE *f = fopen(cpath, "w");
    int ok = f && text && fputs(text, f) >= 0;
    if (f) fclose(f);
    ok = ok && realpath(path, abs) && symlink(abs, wpath) == 0;
    CHECKM(ok, "cannot write %s", cpath);
    struct eng_params p = eng_params_defaults();
    p.dtype = ENG_DTYPE_F32;
    if (ok) m = eng_model_open(tmp, &p, err, errlen);
    unlink(wpath);
    unlink(cpath);
    rmdir(tmp);
    cJSON_free(text);
    cJSON_Delete(cfg);
    return m;
}

/* Config refusals and acceptances through the architecture seam. */
static void check_arch_configs(const char *dir) {
    static const struct {
        const char *key, *json; /* json NULL: delete the key */
        const char *want[3];    /* all in the message; want[0] NULL: must load */
    } cases[] = {
        {"architectures",
         "[\"BertModel\"]",
         {"unknown model architecture \"BertModel\"", "jina-embeddings-v3", "XLMRobertaModel"}},
        {"architectures", "[\"XLMRobertaLoRA\"]", {NULL}},
        {"architectures",
         "\"XLMRobertaModel\"",
         {"\"architectures\" must be a list", "config.json"}},
        {"architectures", NULL, {NULL}},    /* no name at all: the default family */
        {"model_type", "\"bert\"", {NULL}}, /* architectures still names v3 */
        {"position_embedding_type",
         "\"alibi\"",
         {"position_embedding_type \"alibi\" is not supported", "jina-embeddings-v3", "rotary"}},
        {"position_embedding_type", "\"absolute\"", {"\"absolute\" is not supported", "rotary"}},
        {"position_embedding_type", "\"spiral\"", {"\"spiral\" is unknown", "alibi"}},
        {"position_embedding_type", "7", {"position_embedding_type", "not a string"}},
        {"position_embedding_type", NULL, {NULL}},
        {"hidden_act", "\"relu\"", {"hidden_act \"relu\" is not supported", "gelu"}},
        {"lora_adaptations", "[]", {"\"lora_adaptations\" must list", "config.json"}},
        {"rotary_emb_base", "0", {"\"rotary_emb_base\" must be a number"}},
    };
    char err[512];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = 0;
        cJSON *val = cases[i].json ? cJSON_Parse(cases[i].json) : NULL;
        struct eng_model *m = open_with_config(dir, cases[i].key, val, err, sizeof(err));
        if (!cases[i].want[0]) {
            CHECKM(m != NULL, "%s=%s: refused: %s", cases[i].key, cases[i].json, err);
        } else {
            CHECKM(m == NULL, "%s=%s: loaded", cases[i].key, cases[i].json);
            for (int k = 0; k < 3 && cases[i].want[k]; k++)
                CHECKM(strstr(err, cases[i].want[k]) != NULL, "%s=%s: '%s' not in: %s",
                       cases[i].key, cases[i].json, cases[i].want[k], err);
        }
        eng_model_close(m);
    }
    /* only model_type, unknown: refused, naming it */
    cJSON *val = cJSON_Parse("[\"NotAModel\"]");
    struct eng_model *m = open_with_config(dir, "architectures", val, err, sizeof(err));
    CHECKM(!m && strstr(err, "NotAModel") && strstr(err, "known: jina-embeddings-v3"), "%s", err);
    eng_model_close(m);
}

/* Descriptions asking for what the forward pass lacks are refused. */
static void check_arch_descriptions(void) {
    char err[512], nm[64];
    CHECK(eng_arch_check(&eng_arch_jina_v3, err, sizeof(err)) == 0);
    CHECK(eng_archs[0] == &eng_arch_jina_v3);
    CHECKM(eng_arch_check(&eng_arch_jina_v2, err, sizeof(err)) == 0, "%s", err);
    CHECKM(eng_arch_check(&eng_arch_jina_v2_code, err, sizeof(err)) == 0, "%s", err);
    CHECK(eng_archs[1] == &eng_arch_jina_v2 && eng_archs[2] == &eng_arch_jina_v2_code &&
          !eng_archs[3]);
    /* ALiBi and GEGLU are implemented now; absolute positions and pre-LN are not */
    struct eng_arch a = eng_arch_jina_v3;
    a.pos = ENG_POS_ALIBI;
    CHECKM(eng_arch_check(&a, err, sizeof(err)) == 0, "alibi: %s", err);
    a.ffn = ENG_FFN_GEGLU;
    CHECKM(eng_arch_check(&a, err, sizeof(err)) == 0, "geglu: %s", err);
    a.pos = ENG_POS_ABSOLUTE;
    CHECK(eng_arch_check(&a, err, sizeof(err)) == -1 &&
          strstr(err, "position scheme \"absolute\" is not implemented"));
    a = eng_arch_jina_v3;
    a.ffn = (enum eng_ffn_kind)ENG_FFN_N; /* a kind the engine does not know */
    CHECK(eng_arch_check(&a, err, sizeof(err)) == -1 && strstr(err, "MLP kind \"?\""));
    a = eng_arch_jina_v2_code;
    a.tensors[ENG_ROLE_ATTN_K_NORM].w = NULL; /* a norm on Q without one on K */
    CHECK(eng_arch_check(&a, err, sizeof(err)) == -1 && strstr(err, "norm on queries"));
    a = eng_arch_jina_v2_code;
    a.tensors[ENG_ROLE_ATTN_NORM2].b = NULL; /* an optional norm without its bias */
    CHECK(eng_arch_check(&a, err, sizeof(err)) == -1 && strstr(err, "incomplete"));
    /* ALiBi slopes: powers of two and the interleaved extra heads */
    float sl[12];
    eng_alibi_slopes(6, sl);
    static const float want6[6] = {0.25f, 0.0625f, 0.015625f, 0.00390625f, 0.5f, 0.125f};
    CHECK(!memcmp(sl, want6, sizeof(want6)));
    eng_alibi_slopes(4, sl);
    CHECK(sl[0] == 0.25f && sl[3] == 0.00390625f);
    eng_alibi_slopes(12, sl);
    CHECK(sl[0] == 0.5f && sl[7] == 0.00390625f && sl[8] == (float)0.7071067811865476 &&
          sl[11] == (float)0.08838834764831849);
    eng_alibi_slopes(1, sl);
    CHECK(sl[0] == 0.00390625f);
    a = eng_arch_jina_v3;
    a.norm = ENG_NORM_PRE;
    CHECK(eng_arch_check(&a, err, sizeof(err)) == -1 && strstr(err, "pre-LayerNorm"));
    a = eng_arch_jina_v3;
    a.tensors[ENG_ROLE_FFN_UP].lora_a = NULL; /* adapters but a linear without them */
    CHECK(eng_arch_check(&a, err, sizeof(err)) == -1 && strstr(err, "jina-embeddings-v3"));
    a = eng_arch_jina_v3;
    a.tensors[ENG_ROLE_ATTN_QKV].w = NULL; /* split Q, K, V with adapters: refused */
    a.tensors[ENG_ROLE_ATTN_Q] = a.tensors[ENG_ROLE_ATTN_K] = a.tensors[ENG_ROLE_ATTN_V] =
        a.tensors[ENG_ROLE_ATTN_OUT];
    CHECK(eng_arch_check(&a, err, sizeof(err)) == -1 && strstr(err, "separate Q, K, V"));
    CHECK(eng_pos_kind_parse("rotary") == ENG_POS_ROTARY);
    CHECK(eng_pos_kind_parse("alibi") == ENG_POS_ALIBI);
    CHECK(eng_pos_kind_parse("absolute") == ENG_POS_ABSOLUTE);
    CHECK(eng_pos_kind_parse("Rotary") == -1 && eng_pos_kind_parse(NULL) == -1);
    CHECK(eng_tensor_name(nm, sizeof(nm), "a.%d.b", 17) == 0 && !strcmp(nm, "a.17.b"));
    CHECK(eng_tensor_name(nm, sizeof(nm), "emb_ln.weight", 3) == 0 && !strcmp(nm, "emb_ln.weight"));
    CHECK(eng_tensor_name(nm, 6, "abc.%d.def", 1) == -1);
}

/* A second description: every tensor under another name, separate Q, K and
 * V projections, no task adapters. */
static const struct eng_arch *renamed_arch(void) {
    static struct eng_arch a;
    a = eng_arch_jina_v3;
    a.name = "test-renamed";
    a.tasks_key = a.prefixes_key = NULL;
    a.task_aliases = NULL;
    a.n_task_aliases = 0;
    static const struct eng_role_names names[ENG_ROLE_N] = {
        [ENG_ROLE_TOK_EMBD] = {"tok.w", NULL, NULL, NULL},
        [ENG_ROLE_TYPE_EMBD] = {"type.w", NULL, NULL, NULL},
        [ENG_ROLE_EMB_NORM] = {"emb_norm.w", "emb_norm.b", NULL, NULL},
        [ENG_ROLE_ATTN_Q] = {"blk.%d.q.w", "blk.%d.q.b", NULL, NULL},
        [ENG_ROLE_ATTN_K] = {"blk.%d.k.w", "blk.%d.k.b", NULL, NULL},
        [ENG_ROLE_ATTN_V] = {"blk.%d.v.w", "blk.%d.v.b", NULL, NULL},
        [ENG_ROLE_ATTN_OUT] = {"blk.%d.o.w", "blk.%d.o.b", NULL, NULL},
        [ENG_ROLE_ATTN_NORM] = {"blk.%d.n1.w", "blk.%d.n1.b", NULL, NULL},
        [ENG_ROLE_FFN_UP] = {"blk.%d.up.w", "blk.%d.up.b", NULL, NULL},
        [ENG_ROLE_FFN_DOWN] = {"blk.%d.down.w", "blk.%d.down.b", NULL, NULL},
        [ENG_ROLE_FFN_NORM] = {"blk.%d.n2.w", "blk.%d.n2.b", NULL, NULL},
    };
    memcpy(a.tensors, names, sizeof(names));
    return &a;
}

/* Appends tensor `name` = rows [r0, r0 + rows) of src to the header and data. */
static void put_rows(cJSON *hdr, FILE *data, size_t *off, const char *name,
                     const struct st_tensor *src, int64_t r0, int64_t rows) {
    int64_t row = src->n_dims == 2 ? src->shape[1] : 1;
    size_t esz = src->nbytes / (size_t)src->n_elem, n = (size_t)(rows * row) * esz;
    cJSON *t = cJSON_AddObjectToObject(hdr, name);
    cJSON_AddStringToObject(t, "dtype", src->dtype_name);
    cJSON *sh = cJSON_AddArrayToObject(t, "shape");
    cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)rows));
    if (src->n_dims == 2) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)row));
    cJSON *of = cJSON_AddArrayToObject(t, "data_offsets");
    cJSON_AddItemToArray(of, cJSON_CreateNumber((double)*off));
    cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(*off + n)));
    CHECK(fwrite((const char *)src->data + (size_t)(r0 * row) * esz, 1, n, data) == n);
    *off += n;
}

/* Copies role r of layer il from the v3 checkpoint under the renamed
 * description's names (the fused QKV split into its three parts). */
static void copy_role(cJSON *hdr, FILE *data, size_t *off, const struct st_file *st,
                      const struct eng_arch *to, int r, int il) {
    const struct eng_role_names *from = &eng_arch_jina_v3.tensors[r];
    const char *fw[2] = {from->w, from->b};
    char sn[256], dn[256];
    for (int k = 0; k < 2 && fw[k]; k++) {
        CHECK(eng_tensor_name(sn, sizeof(sn), fw[k], il) == 0);
        const struct st_tensor *t = st_find(st, sn);
        CHECKM(t != NULL, "no %s", sn);
        if (!t) return;
        if (r != ENG_ROLE_ATTN_QKV) {
            CHECK(eng_tensor_name(dn, sizeof(dn), k ? to->tensors[r].b : to->tensors[r].w, il) ==
                  0);
            put_rows(hdr, data, off, dn, t, 0, t->shape[0]);
            continue;
        }
        for (int p = 0; p < 3; p++) { /* rows Q | K | V */
            const struct eng_role_names *tp = &to->tensors[ENG_ROLE_ATTN_Q + p];
            CHECK(eng_tensor_name(dn, sizeof(dn), k ? tp->b : tp->w, il) == 0);
            put_rows(hdr, data, off, dn, t, p * t->shape[0] / 3, t->shape[0] / 3);
        }
    }
}

/* Writes the renamed checkpoint of the test model into tmp; 0 on success. */
static int write_renamed(const char *dir, const char *tmp, const struct eng_arch *to, int n_layer) {
    char path[4200], err[512] = "";
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    struct st_file *st = st_open(path, err, sizeof(err));
    CHECKM(st != NULL, "%s", err);
    if (!st) return -1;
    cJSON *hdr = cJSON_CreateObject();
    char *data = NULL;
    size_t data_len = 0, off = 0;
    FILE *mem = open_memstream(&data, &data_len);
    for (int r = 0; r < ENG_ROLE_N; r++) {
        if (!eng_arch_jina_v3.tensors[r].w) continue;
        bool layer = r >= ENG_ROLE_ATTN_QKV;
        for (int il = 0; il < (layer ? n_layer : 1); il++)
            copy_role(hdr, mem, &off, st, to, r, il);
    }
    fclose(mem);
    char *h = cJSON_PrintUnformatted(hdr);
    size_t hl = strlen(h), pad = (8 - hl % 8) % 8;
    uint64_t n = hl + pad;
    snprintf(path, sizeof(path), "%s/model.safetensors", tmp);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(&n, 8, 1, f) == 1 && fwrite(h, 1, hl, f) == hl &&
             fwrite("        ", 1, pad, f) == pad && fwrite(data, 1, data_len, f) == data_len;
    if (f) ok = fclose(f) == 0 && ok;
    CHECKM(ok, "cannot write %s", path);
    cJSON_free(h);
    cJSON_Delete(hdr);
    free(data);
    st_close(st);
    return ok ? 0 : -1;
}

/* The seam end to end: a different description (names, split QKV, no
 * adapters) over the same weights loads and gives the v3 model's no-task
 * vectors bit for bit; it knows no task names. */
static void check_renamed_arch(const char *dir) {
    char tmp[4096], cfg_src[4200], cfg_dst[4200], err[512] = "";
    const char *td = getenv("TMPDIR");
    const struct eng_arch *to = renamed_arch();
    CHECKM(eng_arch_check(to, err, sizeof(err)) == 0, "%s", err);
    snprintf(tmp, sizeof(tmp), "%s/engine_arch.XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(tmp)) return;
    struct eng_params p = eng_params_defaults();
    p.dtype = ENG_DTYPE_F32;
    p.n_threads = 2;
    p.max_batch_tokens = 512;
    struct eng_model *m3 = eng_model_open(dir, &p, err, sizeof(err)), *mr = NULL;
    CHECKM(m3 != NULL, "%s", err);
    snprintf(cfg_src, sizeof(cfg_src), "%s/config.json", dir);
    snprintf(cfg_dst, sizeof(cfg_dst), "%s/config.json", tmp);
    char *cfg = slurp(cfg_src);
    FILE *f = fopen(cfg_dst, "w");
    if (f && cfg) fputs(cfg, f);
    if (f) fclose(f);
    free(cfg);
    if (m3 && write_renamed(dir, tmp, to, eng_model_info(m3)->n_layer) == 0) {
        mr = eng_model_open_arch(tmp, to, &p, err, sizeof(err));
        CHECKM(mr != NULL, "renamed description refused: %s", err);
    }
    /* a description whose tensors are absent is refused naming one */
    struct eng_model *bad = eng_model_open_arch(dir, to, &p, err, sizeof(err));
    CHECKM(!bad && strstr(err, "tensor 'tok.w' is missing"), "%s", err);
    eng_model_close(bad);
    if (mr) {
        const struct eng_info *in = eng_model_info(mr);
        CHECK(in->n_tasks == 0 && !strcmp(in->arch, "test-renamed"));
        CHECK(eng_task_resolve(in, "retrieval.query", err, sizeof(err)) == ENG_ENOTASK &&
              strstr(err, "no task adapters"));
        CHECK(eng_task_resolve(in, NULL, err, sizeof(err)) == ENG_TASK_NONE);
        struct eng_ctx *c3 = eng_ctx_new(m3, &p, err, sizeof(err));
        struct eng_ctx *cr = eng_ctx_new(mr, &p, err, sizeof(err));
        int H = in->n_embd, V = in->n_vocab;
        float *o3 = calloc(2 * (size_t)H, sizeof(float)),
              *o_r = calloc(2 * (size_t)H, sizeof(float));
        int32_t ids[300];
        for (int i = 0; i < 300; i++)
            ids[i] = i == 0 ? 0 : i == 299 ? 2 : 3 + (i * 37) % (V - 3);
        struct eng_seq s3[2] = {{ids, 300, ENG_TASK_NONE, 0, NULL, o3},
                                {ids + 10, 40, ENG_TASK_NONE, 0, NULL, o3 + H}};
        struct eng_seq sr[2] = {{ids, 300, ENG_TASK_NONE, 0, NULL, o_r},
                                {ids + 10, 40, ENG_TASK_NONE, 0, NULL, o_r + H}};
        CHECK(c3 && cr && eng_encode(c3, s3, 2) == 0 && eng_encode(cr, sr, 2) == 0);
        CHECKM(!memcmp(o3, o_r, 2 * (size_t)H * sizeof(float)),
               "renamed description's vectors differ from the v3 model's");
        /* a task index is refused by a model without adapters */
        sr[0].task = 0;
        CHECK(cr && eng_encode(cr, sr, 1) == ENG_EINVAL);
        free(o3);
        free(o_r);
        eng_ctx_free(c3);
        eng_ctx_free(cr);
    }
    eng_model_close(mr);
    eng_model_close(m3);
    snprintf(cfg_src, sizeof(cfg_src), "%s/model.safetensors", tmp);
    unlink(cfg_src);
    unlink(cfg_dst);
    rmdir(tmp);
}

/* A batch of three sequences over random ids (0 and n_vocab - 1 included),
 * one per task (base weights where the model has none), into out[3][H]. */
static void embd_batch(const struct eng_info *in, int32_t *ids, struct eng_seq *seqs, float *out) {
    unsigned rnd = 99;
    static const int len[3] = {300, 1, 57};
    for (int i = 0; i < 358; i++) {
        rnd = rnd * 1103515245u + 12345u;
        ids[i] = (int32_t)((rnd >> 8) % (unsigned)in->n_vocab);
    }
    ids[1] = in->n_vocab - 1, ids[2] = 0;
    for (int k = 0, at = 0; k < 3; at += len[k], k++)
        seqs[k] = (struct eng_seq){ids + at, len[k], in->n_tasks > k ? k - 1 : ENG_TASK_NONE,
                                   0,        NULL,   out + (size_t)k * in->n_embd};
}

/* The word table read from the file per token (the default) and copied into
 * memory (--embeddings-in-memory) give the same bits, in this mode. */
static void check_embeddings_source(struct fixture *fx, const char *dir) {
    const struct eng_info *in = eng_model_info(fx->m);
    int H = in->n_embd;
    char err[512] = "";
    struct eng_params p = test_params(in->dtype, 2, 512);
    p.embeddings_in_memory = true;
    struct eng_model *mm = eng_model_open(dir, &p, err, sizeof(err));
    struct eng_ctx *cm = mm ? eng_ctx_new(mm, &p, err, sizeof(err)) : NULL;
    CHECKM(cm != NULL, "%s", err);
    CHECK(!in->embeddings_in_memory && mm && eng_model_info(mm)->embeddings_in_memory);
    CHECK(in->embeddings_bytes == (size_t)in->n_vocab * H * 2 ||
          in->embeddings_bytes == (size_t)in->n_vocab * H * 4);
    int32_t ids[358];
    struct eng_seq sf[3], sm[3];
    float *of = calloc(3 * (size_t)H, sizeof(float)), *om = calloc(3 * (size_t)H, sizeof(float));
    embd_batch(in, ids, sf, of);
    embd_batch(in, ids, sm, om);
    CHECK(cm && eng_encode(fx->c, sf, 3) == 0 && eng_encode(cm, sm, 3) == 0);
    CHECKM(!memcmp(of, om, 3 * (size_t)H * sizeof(float)),
           "%s: the word table read from the file and copied into memory give different bits",
           fx->tol->mode);
    free(of), free(om);
    eng_ctx_free(cm);
    eng_model_close(mm);
}

static int copy_file(const char *src, const char *dst) {
    char *buf = NULL;
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    size_t n = 0;
    int ok = in && out && (buf = malloc(1 << 16));
    while (ok && (n = fread(buf, 1, 1 << 16, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    if (in) fclose(in);
    if (out) ok = fclose(out) == 0 && ok;
    free(buf);
    return ok ? 0 : -1;
}

/* A weights file changed under a running model whose word table is read
 * from it: a rewrite in place (new modification time) or a cut is ENG_EIO on
 * the next pass, writing nothing, never a crash; a model holding its own
 * copy is unaffected. And the row reader itself: rows past a cut are -1,
 * rows before it still read. */
static void check_weights_changed(const char *dir) {
    char tmp[4096], src[4200], dst[4200], err[512] = "";
    const char *td = getenv("TMPDIR");
    snprintf(tmp, sizeof(tmp), "%s/engine_rows.XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(tmp)) return;
    int ok = 1;
    for (int i = 0; i < 2 && ok; i++) {
        const char *name = i ? "model.safetensors" : "config.json";
        snprintf(src, sizeof(src), "%s/%s", dir, name);
        snprintf(dst, sizeof(dst), "%s/%s", tmp, name);
        ok = copy_file(src, dst) == 0;
    }
    CHECKM(ok, "cannot copy the test model to %s", tmp);
    struct eng_params p = test_params(ENG_DTYPE_F32, 2, 512);
    /* a new file renamed over the name (the old one is deleted with it): a
     * model that opened the old one goes on reading it, the same bits */
    struct eng_model *mr = ok ? eng_model_open(tmp, &p, err, sizeof(err)) : NULL;
    struct eng_ctx *cr = mr ? eng_ctx_new(mr, &p, err, sizeof(err)) : NULL;
    CHECKM(cr != NULL, "%s", err);
    float *r0 = NULL;
    if (cr) {
        const struct eng_info *in = eng_model_info(mr);
        size_t bytes = 3 * (size_t)in->n_embd * sizeof(float);
        int32_t ids[358];
        struct eng_seq s[3];
        float *r1 = calloc(1, bytes);
        r0 = calloc(1, bytes);
        embd_batch(in, ids, s, r0);
        CHECK(eng_encode(cr, s, 3) == 0);
        snprintf(src, sizeof(src), "%s/model.new", tmp);
        CHECK(copy_file(dst, src) == 0 && rename(src, dst) == 0);
        embd_batch(in, ids, s, r1);
        CHECKM(eng_encode(cr, s, 3) == 0 && !memcmp(r0, r1, bytes),
               "a model whose file was replaced by a rename stopped reading the old one");
        free(r1);
    }
    eng_ctx_free(cr);
    eng_model_close(mr);
    struct eng_model *mf = ok ? eng_model_open(tmp, &p, err, sizeof(err)) : NULL;
    p.embeddings_in_memory = true;
    struct eng_model *mm = ok ? eng_model_open(tmp, &p, err, sizeof(err)) : NULL;
    struct eng_ctx *cf = mf ? eng_ctx_new(mf, &p, err, sizeof(err)) : NULL;
    struct eng_ctx *cm = mm ? eng_ctx_new(mm, &p, err, sizeof(err)) : NULL;
    CHECKM(cf && cm, "%s", err);
    if (cf && cm) {
        const struct eng_info *in = eng_model_info(mf);
        size_t bytes = 3 * (size_t)in->n_embd * sizeof(float);
        int32_t ids[358];
        struct eng_seq s[3];
        float *ref = calloc(1, bytes), *got = calloc(1, bytes);
        embd_batch(in, ids, s, ref);
        CHECK(eng_encode(cf, s, 3) == 0 && r0 && !memcmp(ref, r0, bytes));
        embd_batch(in, ids, s, got);
        /* the same bytes, a new modification time */
        struct timespec later[2] = {{0, UTIME_OMIT}, {time(NULL) + 5, 0}}, tick = {0, 20000000};
        nanosleep(&tick, NULL); /* past the file system's timestamp granularity */
        CHECK(utimensat(AT_FDCWD, dst, later, 0) == 0);
        memset(got, 0x7f, bytes);
        CHECKM(eng_encode(cf, s, 3) == ENG_EIO, "a pass after the weights file was rewritten "
                                                "in place did not fail with ENG_EIO");
        CHECKM(((unsigned char *)got)[0] == 0x7f && ((unsigned char *)got)[bytes - 1] == 0x7f,
               "a pass that failed with ENG_EIO wrote its output");
        CHECK(eng_encode(cm, s, 3) == 0 && !memcmp(ref, got, bytes));
        /* the reader over a file cut in the middle of the table's row 1 */
        struct st_file *st = st_open(dst, err, sizeof(err));
        const struct st_tensor *we = NULL;
        for (int i = 0; st && i < st->n_tensors; i++)
            if (st->tensors[i].n_dims == 2 && st->tensors[i].shape[0] == in->n_vocab &&
                st->tensors[i].shape[1] == in->n_embd)
                we = &st->tensors[i]; /* the one [n_vocab][n_embd] tensor */
        struct st_rows r = {.fd = -1};
        CHECKM(we && st_rows_open(&r, st, we, false, err, sizeof(err)) == 0, "%s", err);
        st_close(st);
        if (we && r.fd >= 0) {
            float *row = calloc((size_t)r.row_len, sizeof(float));
            CHECK(r.n_rows == in->n_vocab && r.row_len == in->n_embd);
            CHECK(st_rows_check(&r) == 0 && st_rows_get_f32(&r, 1, row) == 0);
            CHECK(st_rows_get_f32(&r, -1, row) == -1 && st_rows_get_f32(&r, r.n_rows, row) == -1);
            CHECK(truncate(dst, (off_t)(r.off + r.row_bytes + r.row_bytes / 2)) == 0);
            CHECK(st_rows_get_f32(&r, 0, row) == 0);
            CHECKM(st_rows_get_f32(&r, 1, row) == -1 && st_rows_get_f32(&r, 5, row) == -1,
                   "rows past the end of a cut file were read");
            CHECK(st_rows_check(&r) == -1);
            free(row);
        }
        st_rows_close(&r);
        CHECKM(eng_encode(cf, s, 3) == ENG_EIO, "a pass after the weights file was cut did not "
                                                "fail with ENG_EIO");
        CHECK(eng_encode(cm, s, 3) == 0 && !memcmp(ref, got, bytes));
        free(ref), free(got);
    }
    free(r0);
    eng_ctx_free(cf);
    eng_ctx_free(cm);
    eng_model_close(mf);
    eng_model_close(mm);
    unlink(dst);
    snprintf(dst, sizeof(dst), "%s/config.json", tmp);
    unlink(dst);
    rmdir(tmp);
}

/* Opens tokenizer and model in `dtype`; 0 on success. */
static int fixture_open(struct fixture *fx, const char *dir, enum eng_dtype dtype) {
    char err[512] = "";
    fx->tk = tok_open_dir(dir, err, sizeof(err));
    CHECKM(fx->tk != NULL, "%s", err);
    struct eng_params p = test_params(dtype, 2, 8192);
    fx->m = eng_model_open(dir, &p, err, sizeof(err));
    CHECKM(fx->m != NULL, "%s", err);
    if (fx->m) fx->c = eng_ctx_new(fx->m, &p, err, sizeof(err));
    return fx->tk && fx->c ? 0 : -1;
}

static void fixture_close(struct fixture *fx) {
    eng_ctx_free(fx->c);
    eng_model_close(fx->m);
    tok_close(fx->tk);
    fx->c = NULL, fx->m = NULL, fx->tk = NULL;
}

static void run_mode(struct fixture *fx, const char *dir, enum eng_dtype dtype,
                     const struct tol *tol) {
    fx->tol = tol;
    if (fixture_open(fx, dir, dtype) == 0) {
        const struct eng_info *in = eng_model_info(fx->m);
        CHECK(in->dtype == dtype);
        fprintf(stderr, "  %s: kernel %s, attention %s\n", eng_dtype_name(dtype), in->kernel,
                in->attn_kernel);
        /* the fused attention named where it runs: bf16, a kernel with it
         * for this head width (the model's positions are rotary) */
        int fused = dtype == ENG_DTYPE_BF16 &&
                    gemm_kernel_attends(gemm_kernel_for(WMAT_BF16, test_cpu_features()),
                                        in->n_embd / in->n_head);
        CHECKM((strstr(in->attn_kernel, " fused") != NULL) == fused, "attention %s at d %d",
               in->attn_kernel, in->n_embd / in->n_head);
        const cJSON *exc = cJSON_GetObjectItem(fx->expected, "cases");
        CHECK(cJSON_GetArraySize(exc) == cJSON_GetArraySize(fx->cases));
        for (int i = 0; i < cJSON_GetArraySize(fx->cases) && i < cJSON_GetArraySize(exc); i++)
            run_case(fx, cJSON_GetArrayItem(fx->cases, i), cJSON_GetArrayItem(exc, i));
        if (dtype == ENG_DTYPE_F32) {
            check_batch_invariance(fx);
            check_refusals(fx);
            check_task_resolve(fx->m);
            check_info(fx->m, dir);
        }
        check_reproducible(fx, dir);
        check_embeddings_source(fx, dir);
        check_cancel(fx);
    }
    fixture_close(fx);
}

/* --cpu-features avx2 (a mask without AVX-512): auto falls back to f32,
 * explicit bf16 is refused with a message, int8 runs on the AVX2 int8
 * kernel (at "generic" on the portable one), and f32 still matches the
 * reference (run_mode under EMBEDSERVE_TEST_CPU_FEATURES=avx2 or generic).
 * auto never picks int8 (opt-in), at any level. */
static void check_fallback(const char *dir) {
    char err[512] = "";
    struct eng_params p = eng_params_defaults();
    CHECK(cpu_parse_level("avx2", test_cpu_features(), &p.cpu_features, err, sizeof(err)) == 0);
    struct eng_model *m = eng_model_open(dir, &p, err, sizeof(err));
    CHECKM(m && eng_model_info(m)->dtype == ENG_DTYPE_F32, "auto falls back to f32: %s", err);
    CHECK(!m || (eng_model_info(m)->cpu_features & ~test_cpu_features()) == 0);
    eng_model_close(m);
    p.dtype = ENG_DTYPE_BF16;
    m = eng_model_open(dir, &p, err, sizeof(err));
    CHECKM(!m && strstr(err, "AVX512_BF16"), "bf16 refused without the instructions: '%s'", err);
    eng_model_close(m);
    p.dtype = ENG_DTYPE_INT8;
    m = eng_model_open(dir, &p, err, sizeof(err));
    const char *want = test_cpu_features() & CPU_X86_AVX2 ? "avx2-int8" : "generic-int8";
    CHECKM(m && eng_model_info(m)->dtype == ENG_DTYPE_INT8 &&
               !strcmp(eng_model_info(m)->kernel, want),
           "int8 at avx2 runs %s: %s", want, m ? eng_model_info(m)->kernel : err);
    eng_model_close(m);
    CHECK(cpu_parse_level("generic", test_cpu_features(), &p.cpu_features, err, sizeof(err)) == 0);
    m = eng_model_open(dir, &p, err, sizeof(err));
    CHECKM(m && !strcmp(eng_model_info(m)->kernel, "generic-int8"), "int8 at generic: %s",
           m ? eng_model_info(m)->kernel : err);
    /* attention: the exact kernel of the level (int8 has no bf16 attention here) */
    CHECKM(m && !strcmp(eng_model_info(m)->attn_kernel, "generic-attn"), "attention at generic: %s",
           m ? eng_model_info(m)->attn_kernel : err);
    eng_model_close(m);
    if (test_cpu_features() & CPU_X86_AVX2) {
        CHECK(cpu_parse_level("avx2", test_cpu_features(), &p.cpu_features, err, sizeof(err)) == 0);
        p.dtype = ENG_DTYPE_F32;
        m = eng_model_open(dir, &p, err, sizeof(err));
        CHECKM(m && !strcmp(eng_model_info(m)->attn_kernel, "avx2-attn"), "attention at avx2: %s",
               m ? eng_model_info(m)->attn_kernel : err);
        eng_model_close(m);
    }
    uint32_t masks[16];
    const char *names[16];
    int nl = cpu_levels(test_cpu_features(), masks, names, 16);
    for (int l = 0; l < nl; l++) {
        struct eng_params q = eng_params_defaults();
        q.cpu_features = masks[l];
        m = eng_model_open(dir, &q, err, sizeof(err));
        CHECKM(m && eng_model_info(m)->dtype != ENG_DTYPE_INT8, "auto at %s: %s", names[l],
               m ? eng_dtype_name(eng_model_info(m)->dtype) : err);
        eng_model_close(m);
    }
}

/* ---- jina-embeddings-v2 (JinaBERT) ----
 * Generated checkpoints of each layout (tests/gen_model_v2.py: en with 6
 * heads in f16, code with 12 heads in bf16, en with 8 heads in f32 under the
 * masked-LM "bert." prefix) against tests/reference_v2.py, which drew the
 * token ids and wrote them beside its embeddings: every case packed in one
 * batch and each sequence alone, whole-sequence and late-chunking spans, at
 * every CPU level this machine can run (generic and avx2 here). */

static const char *const V2_MODELS[] = {"en", "code", "mlm"};
static const char *const V2_ARCH[] = {"jina-embeddings-v2", "jina-embeddings-v2-code",
                                      "jina-embeddings-v2"};

/* Runs one reference case (all its sequences in one batch when `packed`,
 * else one eng_encode per sequence) and compares every span's embedding. */
static void v2_case(struct eng_ctx *c, const struct tol *tol, const char *label, const cJSON *ex,
                    bool packed, double *worst_abs, double *worst_cos) {
    const struct eng_info *in = eng_model_info(eng_ctx_model(c));
    const cJSON *seqs = cJSON_GetObjectItem(ex, "sequences"),
                *spans = cJSON_GetObjectItem(ex, "spans");
    const cJSON *embs = cJSON_GetObjectItem(ex, "embeddings");
    const char *name = cJSON_GetObjectItem(ex, "name")->valuestring;
    int ns = cJSON_GetArraySize(seqs), H = in->n_embd, n_out = 0;
    struct eng_seq *sq = calloc((size_t)ns, sizeof(*sq));
    int32_t **ids = calloc((size_t)ns, sizeof(*ids)), **sp = calloc((size_t)ns, sizeof(*sp));
    for (int s = 0; s < ns; s++) {
        const cJSON *si = cJSON_GetArrayItem(seqs, s), *pi = cJSON_GetArrayItem(spans, s);
        int n = cJSON_GetArraySize(si), k = cJSON_GetArraySize(pi);
        ids[s] = malloc(sizeof(int32_t) * (size_t)n);
        sp[s] = malloc(sizeof(int32_t) * 2 * (size_t)k);
        for (int i = 0; i < n; i++)
            ids[s][i] = cJSON_GetArrayItem(si, i)->valueint;
        for (int i = 0; i < k; i++) {
            sp[s][2 * i] = cJSON_GetArrayItem(cJSON_GetArrayItem(pi, i), 0)->valueint;
            sp[s][2 * i + 1] = cJSON_GetArrayItem(cJSON_GetArrayItem(pi, i), 1)->valueint;
        }
        /* one span over the whole sequence is the engine's default: pass none */
        bool whole = k == 1 && sp[s][0] == 0 && sp[s][1] == n;
        sq[s] = (struct eng_seq){ids[s],
                                 n,
                                 ENG_TASK_NONE,
                                 whole ? 0 : k,
                                 whole ? NULL : sp[s],
                                 malloc(sizeof(float) * (size_t)H * (size_t)k)};
        n_out += k;
    }
    CHECKM(n_out == cJSON_GetArraySize(embs), "%s: %d spans, reference %d", name, n_out,
           cJSON_GetArraySize(embs));
    int rc = 0;
    if (packed) rc = eng_encode(c, sq, ns);
    for (int s = 0; !packed && s < ns && rc == 0; s++)
        rc = eng_encode(c, &sq[s], 1);
    CHECKM(rc == 0, "%s %s: eng_encode: %s", label, name, eng_strerror(rc));
    char what[160];
    snprintf(what, sizeof(what), "%s %s%s", label, name, packed ? " (packed)" : "");
    for (int s = 0, e = 0; rc == 0 && s < ns; s++) {
        int k = cJSON_GetArraySize(cJSON_GetArrayItem(spans, s));
        for (int i = 0; i < k; i++, e++) {
            float *v = sq[s].out + (size_t)i * H;
            eng_embd_finish(v, H, 0, true, v);
            compare_vec(tol, what, e, v, H, cJSON_GetArrayItem(embs, e), worst_abs, worst_cos);
        }
    }
    for (int s = 0; s < ns; s++) {
        free(ids[s]);
        free(sp[s]);
        free(sq[s].out);
    }
    free(ids);
    free(sp);
    free(sq);
}

/* The facts a v2 model reports: no adapters, no Matryoshka, the full 8192
 * positions, the family name; a task is refused by name and by index. */
static void v2_check_info(struct eng_ctx *c, const char *arch) {
    const struct eng_info *in = eng_model_info(eng_ctx_model(c));
    char err[256] = "";
    CHECKM(in->arch && !strcmp(in->arch, arch), "arch '%s', expected '%s'", in->arch, arch);
    CHECK(in->n_tasks == 0 && in->lora_rank == 0 && in->n_matryoshka == 0);
    CHECK(in->max_position == 8192);
    CHECK(in->ln_eps > 0 && in->ln_eps < 1e-11f);
    CHECK(!strcmp(in->name, strstr(arch, "code") ? "jinaai/jina-embeddings-v2-base-code"
                                                 : "jinaai/jina-embeddings-v2-base-en"));
    CHECK(eng_task_resolve(in, "retrieval.query", err, sizeof(err)) == ENG_ENOTASK &&
          strstr(err, "has no task adapters") && strstr(err, arch));
    CHECK(eng_task_resolve(in, NULL, NULL, 0) == ENG_TASK_NONE);
    int32_t id = 1;
    float out[1024];
    struct eng_seq s = {&id, 1, 0, 0, NULL, out};
    CHECK(in->n_embd <= 1024 && eng_encode(c, &s, 1) == ENG_EINVAL); /* task 0: none exist */
    id = in->n_vocab;
    s.task = ENG_TASK_NONE;
    CHECK(eng_encode(c, &s, 1) == ENG_EINVAL);
}

static void v2_run_model(const char *dir, const char *arch) {
    char path[4096], err[512] = "", label[96];
    snprintf(path, sizeof(path), "%.4000s/expected.json", dir);
    cJSON *exp = load_json(path);
    const cJSON *cases = cJSON_GetObjectItem(exp, "cases");
    CHECKM(cJSON_GetArraySize(cases) >= 6, "%s: reference cases missing", path);
    uint32_t masks[16];
    const char *names[16];
    int nl = cpu_levels(test_cpu_features(), masks, names, 16);
    for (int li = 0; li < nl; li++) {
        /* f32 at every level; bf16 / int8 where the level has their kernels */
        for (int mode = 0; mode < 3; mode++) {
            static const enum eng_dtype dts[3] = {ENG_DTYPE_F32, ENG_DTYPE_BF16, ENG_DTYPE_INT8};
            const struct tol *tol = mode == 0 ? &TOL_F32 : mode == 1 ? &TOL_BF16 : &TOL_INT8;
            if (mode && !gemm_kernel_for(mode == 1 ? WMAT_BF16 : WMAT_INT8, masks[li])) continue;
            struct eng_params p = eng_params_defaults();
            p.n_threads = 2;
            p.max_batch_tokens = 1024;
            p.dtype = dts[mode];
            p.cpu_features = masks[li];
            struct eng_model *m = eng_model_open(dir, &p, err, sizeof(err));
            CHECKM(m != NULL, "%s at %s: %s", dir, names[li], err);
            struct eng_ctx *c = m ? eng_ctx_new(m, &p, err, sizeof(err)) : NULL;
            CHECKM(!m || c, "%s: %s", dir, err);
            if (c) {
                double wa = 0, wc = 1;
                snprintf(label, sizeof(label), "v2 %s %s %s", strrchr(dir, '/') + 1, names[li],
                         eng_dtype_name(dts[mode]));
                for (int i = 0; i < cJSON_GetArraySize(cases); i++) {
                    v2_case(c, tol, label, cJSON_GetArrayItem(cases, i), true, &wa, &wc);
                    v2_case(c, tol, label, cJSON_GetArrayItem(cases, i), false, &wa, &wc);
                }
                fprintf(stderr, "  %s (%s): worst max|diff| %.3g, worst cosine %.9f\n", label,
                        eng_model_info(m)->kernel, wa, wc);
                if (li == nl - 1 && mode == 0) v2_check_info(c, arch);
            }
            eng_ctx_free(c);
            eng_model_close(m);
        }
    }
    cJSON_Delete(exp);
}

/* v2 configs and layouts: settings that name another MLP or position scheme
 * are refused, the layout follows the weights, a description forced onto the
 * other layout's weights is refused naming the missing tensor. */
static void v2_check_configs(const char *en, const char *code) {
    static const struct {
        const char *key, *json;
        const char *want[3];
    } cases[] = {
        {"feed_forward_type", "\"glu\"", {"feed_forward_type \"glu\" is not supported", "geglu"}},
        {"feed_forward_type", NULL, {NULL}},
        {"position_embedding_type",
         "\"absolute\"",
         {"position_embedding_type \"absolute\" is not supported", "jina-embeddings-v2", "alibi"}},
        {"model_type", "\"roberta\"", {"model_type \"roberta\" is not supported", "bert"}},
        {"hidden_act", "\"relu\"", {"hidden_act \"relu\" is not supported"}},
        {"architectures", "[\"JinaBertModel\"]", {NULL}},
        {"max_position_embeddings", "0", {"\"max_position_embeddings\" must be an integer"}},
        {"layer_norm_eps", "\"x\"", {"\"layer_norm_eps\" must be a number"}},
        {"num_attention_heads", "7", {"hidden_size 96 must split into 7 heads"}},
    };
    char err[512];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = 0;
        cJSON *val = cases[i].json ? cJSON_Parse(cases[i].json) : NULL;
        struct eng_model *m = open_with_config(en, cases[i].key, val, err, sizeof(err));
        if (!cases[i].want[0]) {
            CHECKM(m && !strcmp(eng_model_info(m)->arch, "jina-embeddings-v2"),
                   "v2 %s=%s: refused: %s", cases[i].key, cases[i].json, err);
        } else {
            CHECKM(m == NULL, "v2 %s=%s: loaded", cases[i].key, cases[i].json);
            for (int k = 0; k < 3 && cases[i].want[k]; k++)
                CHECKM(strstr(err, cases[i].want[k]) != NULL, "v2 %s=%s: '%s' not in: %s",
                       cases[i].key, cases[i].json, cases[i].want[k], err);
        }
        eng_model_close(m);
    }
    /* max_position_embeddings is the token limit itself (no offset) */
    struct eng_model *m =
        open_with_config(en, "max_position_embeddings", cJSON_CreateNumber(512), err, sizeof(err));
    CHECKM(m && eng_model_info(m)->max_position == 512, "max_position 512: %s", err);
    eng_model_close(m);
    /* a description forced onto the other layout */
    struct eng_params p = eng_params_defaults();
    p.dtype = ENG_DTYPE_F32;
    m = eng_model_open_arch(code, &eng_arch_jina_v2, &p, err, sizeof(err));
    CHECKM(!m && strstr(err, "mlp.gated_layers.weight") && strstr(err, "missing"), "%s", err);
    eng_model_close(m);
    m = eng_model_open_arch(en, &eng_arch_jina_v2_code, &p, err, sizeof(err));
    CHECKM(!m && strstr(err, "missing"), "%s", err);
    eng_model_close(m);
}

static void test_engine_v2(void) {
    const char *base = test_env("TESTMODEL_V2", "build/testmodel-v2");
    char dirs[3][4096];
    for (int i = 0; i < 3; i++) {
        snprintf(dirs[i], sizeof(dirs[i]), "%.4000s/%s", base, V2_MODELS[i]);
        v2_run_model(dirs[i], V2_ARCH[i]);
    }
    v2_check_configs(dirs[0], dirs[1]);
}

/* The reference's cases on the model in dir, in every mode this CPU level
 * runs. Returns whether the cases and expected outputs loaded. */
static int run_modes(struct fixture *fx, const char *dir) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/expected.json", dir);
    fx->expected = load_json(path);
    fx->cases = load_json("tests/data/engine_cases.json");
    if (!fx->expected || !fx->cases) return 0;
    fprintf(stderr, "  model %s\n", dir);
    run_mode(fx, dir, ENG_DTYPE_F32, &TOL_F32);
    if (gemm_kernel_for(WMAT_BF16, test_cpu_features()))
        run_mode(fx, dir, ENG_DTYPE_BF16, &TOL_BF16);
    else
        fprintf(stderr, "  bf16 not run: no bf16 kernel at this CPU level\n");
    if (gemm_kernel_for(WMAT_INT8, test_cpu_features()))
        run_mode(fx, dir, ENG_DTYPE_INT8, &TOL_INT8);
    else
        fprintf(stderr, "  int8 not run: no int8 kernel at this CPU level\n");
    return 1;
}

void test_engine(void) {
    const char *dir = test_env("TESTMODEL", "build/testmodel");
    /* heads of 64 values, the real model's width (the main test model's are
     * 16): the kernels' paths for that width, fused AMX attention among them */
    const char *d64 = test_env("TESTMODEL_D64", "build/testmodel-d64");
    struct fixture fx = {0}, fx64 = {0};
    run_modes(&fx64, d64); /* a missing model fails the suite (load_json) */
    cJSON_Delete(fx64.cases);
    cJSON_Delete(fx64.expected);
    if (!run_modes(&fx, dir)) goto out;
    check_fallback(dir);
    check_error_codes();
    check_arch_configs(dir);
    check_arch_descriptions();
    check_renamed_arch(dir);
    check_weights_changed(dir);
out:
    cJSON_Delete(fx.cases);
    cJSON_Delete(fx.expected);
    test_engine_v2();
}
