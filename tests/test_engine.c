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
 */
#include "tests/test.h"

#include "engine/cpu.h"
#include "engine/gemm.h"
#include "server/embed.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

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
    for (int i = 0; i < n; i++) free((char *)t[i].s);
    free(t);
}

static struct emb_opts case_opts(const struct fixture *fx, const cJSON *cs) {
    struct emb_opts o = emb_opts_defaults();
    const cJSON *task = cJSON_GetObjectItem(cs, "task"), *dims = cJSON_GetObjectItem(cs, "dimensions");
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
    float *pooled = malloc(sizeof(float) * (size_t)H * (size_t)n), *v = malloc(sizeof(float) * H);
    CHECK(emb_plan_run(fx->c, &plan, pooled) == 0);
    double worst_abs = 0, worst_cos = 1;
    const cJSON *embs = cJSON_GetObjectItem(ex, "embeddings");
    for (int i = 0; i < n; i++) {
        int d = emb_output(&o, H, pooled + (size_t)i * H, v);
        compare_vec(fx->tol, name, i, v, d, cJSON_GetArrayItem(embs, i), &worst_abs, &worst_cos);
    }
    fprintf(stderr, "  %-4s %-48s max|diff| %.2e  min cos %.9f\n", fx->tol->mode, name,
            worst_abs, worst_cos);
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
    float *alone = calloc((size_t)4096 * H, sizeof(float)), *mixed = calloc((size_t)4096 * H, sizeof(float));
    struct emb_plan *plans = calloc((size_t)n_cases, sizeof(*plans));
    int nb = 0, n_out = 0, tokens = 0;
    for (int ic = 0; ic < n_cases; ic++) {
        const cJSON *cs = cJSON_GetArrayItem(fx->cases, ic);
        struct emb_text *texts;
        int n = case_texts(cs, &texts);
        struct emb_opts o = case_opts(fx, cs);
        struct emb_error e;
        if (emb_plan_build(fx->tk, fx->m, &o, texts, n, &plans[ic], &e) != 0 ||
            plans[ic].n_tokens + tokens > eng_ctx_capacity(fx->c) / 2) {
            texts_free(texts, n);
            continue;
        }
        CHECK(emb_plan_run(fx->c, &plans[ic], alone + (size_t)n_out * H) == 0);
        for (int s = 0; s < plans[ic].n_seqs; s++) {
            const struct emb_seq *q = &plans[ic].seqs[s];
            batch[nb++] = (struct eng_seq){q->ids, q->n_ids, q->task, q->spans ? q->n_out : 0,
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
    for (int ic = 0; ic < n_cases; ic++) emb_plan_deinit(&plans[ic]);
    free(plans);
    free(batch);
    free(alone);
    free(mixed);
}

/* Bitwise reproducibility: every sequence of the cases (all tasks, spans,
 * lengths) embedded alone on a 1-thread context, then in shuffled batches of
 * varying sizes, mixed with the others, on the 2-thread context: memcmp. */
static void check_reproducible(struct fixture *fx, const char *dir) {
    const struct eng_info *in = eng_model_info(fx->m);
    int H = in->n_embd, n_cases = cJSON_GetArraySize(fx->cases);
    char err[512] = "";
    struct eng_params p = eng_params_defaults();
    p.n_threads = 1;
    p.max_batch_tokens = 8192;
    p.dtype = in->dtype;
    p.cpu_features = test_cpu_features();
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
            seqs[ns] = (struct eng_seq){q->ids, q->n_ids, q->task, q->spans ? q->n_out : 0,
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
    int bad = 0, batches = 0, tasks_mixed = 0;
    unsigned rnd = 12345;
    for (int round = 0; c1 && round < 3; round++) {
        int *order = malloc(sizeof(int) * (size_t)(ns + 1));
        for (int i = 0; i < ns; i++) order[i] = i;
        for (int i = ns - 1; i > 0; i--) {
            rnd = rnd * 1103515245u + 12345u;
            int j = (int)((rnd >> 8) % (unsigned)(i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        memset(got, 0, sizeof(float) * total);
        for (int i0 = 0; i0 < ns;) {
            rnd = rnd * 1103515245u + 12345u;
            int want = 2 + (int)((rnd >> 8) % 9), nb = 0, n_tok = 0, task0 = seqs[order[i0]].task;
            while (i0 < ns && nb < want && n_tok + seqs[order[i0]].n_ids <= eng_ctx_capacity(fx->c)) {
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
    CHECKM(bad == 0, "%s: %d of %d sequences differ bitwise between alone (1 thread) and shuffled "
           "mixed batches (2 threads)", fx->tol->mode, bad, 3 * ns);
    fprintf(stderr, "  %-4s reproducible: %d sequences alone (1 thread) vs 3 shuffles in %d mixed "
            "batches (2 threads): %d differ\n", fx->tol->mode, ns, batches, bad);
    for (int ic = 0; ic < n_cases; ic++) emb_plan_deinit(&plans[ic]);
    free(plans), free(seqs), free(batch), free(off), free(ref), free(got);
    eng_ctx_free(c1);
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
}

/* Opens tokenizer and model in `dtype`; 0 on success. */
static int fixture_open(struct fixture *fx, const char *dir, enum eng_dtype dtype) {
    char path[4096], err[512] = "";
    snprintf(path, sizeof(path), "%s/sentencepiece.bpe.model", dir);
    fx->tk = tok_open(path, err, sizeof(err));
    CHECKM(fx->tk != NULL, "%s", err);
    struct eng_params p = eng_params_defaults();
    p.n_threads = 2;
    p.max_batch_tokens = 8192;
    p.dtype = dtype;
    p.cpu_features = test_cpu_features();
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
        CHECK(eng_model_info(fx->m)->dtype == dtype);
        fprintf(stderr, "  %s: kernel %s\n", eng_dtype_name(dtype), eng_model_info(fx->m)->kernel);
        const cJSON *exc = cJSON_GetObjectItem(fx->expected, "cases");
        CHECK(cJSON_GetArraySize(exc) == cJSON_GetArraySize(fx->cases));
        for (int i = 0; i < cJSON_GetArraySize(fx->cases) && i < cJSON_GetArraySize(exc); i++)
            run_case(fx, cJSON_GetArrayItem(fx->cases, i), cJSON_GetArrayItem(exc, i));
        if (dtype == ENG_DTYPE_F32) {
            check_batch_invariance(fx);
            check_refusals(fx);
        }
        check_reproducible(fx, dir);
    }
    fixture_close(fx);
}

/* --cpu-features avx2 (a mask without AVX-512): auto falls back to f32,
 * explicit bf16/int8 are refused with a message, and f32 still matches the
 * reference (run_mode under EMBEDSERVE_TEST_CPU_FEATURES=avx2 or generic). */
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
    CHECKM(!m && strstr(err, "AVX512_VNNI"), "int8 refused without the instructions: '%s'", err);
    eng_model_close(m);
}

void test_engine(void) {
    const char *dir = test_env("TESTMODEL", "build/testmodel");
    char path[4096];
    struct fixture fx = {0};
    snprintf(path, sizeof(path), "%s/expected.json", dir);
    fx.expected = load_json(path);
    fx.cases = load_json("tests/data/engine_cases.json");
    if (!fx.expected || !fx.cases) goto out;
    run_mode(&fx, dir, ENG_DTYPE_F32, &TOL_F32);
    if (gemm_kernel_for(WMAT_BF16, test_cpu_features()))
        run_mode(&fx, dir, ENG_DTYPE_BF16, &TOL_BF16);
    else
        fprintf(stderr, "  bf16 not run: this CPU lacks AVX512_BF16\n");
    if (gemm_kernel_for(WMAT_INT8, test_cpu_features()))
        run_mode(&fx, dir, ENG_DTYPE_INT8, &TOL_INT8);
    else
        fprintf(stderr, "  int8 not run: this CPU lacks AVX512_VNNI\n");
    check_fallback(dir);
out:
    cJSON_Delete(fx.cases);
    cJSON_Delete(fx.expected);
}
