/* model.c -- loading a jina-embeddings-v3 model directory.
 *
 * 1. config.json -> struct eng_info (every dimension comes from it).
 * 2. model.safetensors -> st_file (mmaped, header validated by safetensors.c).
 * 3. Every tensor the forward pass uses is checked for presence, dtype and
 *    shape against the config before anything is read (spec/model.md §3.2).
 * 4. Linear weights, biases, norms and LoRA factors are widened to f32 into
 *    one arena; the word-embedding table and its LoRA A stay in the mapping in
 *    the file's dtype (never expanded: 250002 x 1024) and are read per token.
 *    The token-type row is merged per task once (the reference merges in f32).
 *
 * Weights are immutable once eng_model_open returns.
 */
#include "engine/engine_impl.h"
#include "engine/cpu.h"

#include <cJSON.h>
#include <errno.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>

#define TENSOR_PREFIX "roberta."

struct eng_params eng_params_defaults(void) {
    struct eng_params p = {.n_threads = 1, .max_batch_tokens = 8192, .dtype = ENG_DTYPE_AUTO};
    return p;
}

const char *eng_dtype_name(enum eng_dtype dt) {
    static const char *names[] = {"auto", "f32", "bf16", "int8"};
    return (unsigned)dt < 4 ? names[dt] : "?";
}

/* AUTO -> bf16 where the CPU features allow a kernel for it, else f32;
 * explicit kinds are checked against the kernel table. */
static int dtype_resolve(enum eng_dtype want, uint32_t cpu, enum eng_dtype *out, char *err,
                         size_t errlen) {
    if (want == ENG_DTYPE_AUTO)
        want = gemm_kernel_for(WMAT_BF16, cpu) ? ENG_DTYPE_BF16 : ENG_DTYPE_F32;
    if ((want == ENG_DTYPE_BF16 && !gemm_kernel_for(WMAT_BF16, cpu)) ||
        (want == ENG_DTYPE_INT8 && !gemm_kernel_for(WMAT_INT8, cpu))) {
        char names[128];
        snprintf(err, errlen, "dtype %s needs a CPU with %s (CPU features in use: %s); "
                              "use dtype f32", eng_dtype_name(want),
                 want == ENG_DTYPE_BF16 ? "AVX512_BF16" : "AVX512_VNNI",
                 cpu_mask_names(cpu, names, sizeof(names)));
        return -1;
    }
    if (want < ENG_DTYPE_F32 || want > ENG_DTYPE_INT8) {
        snprintf(err, errlen, "unknown dtype %d", (int)want);
        return -1;
    }
    *out = want;
    return 0;
}

static enum wmat_kind wmat_kind_of(enum eng_dtype dt) {
    return dt == ENG_DTYPE_BF16 ? WMAT_BF16 : dt == ENG_DTYPE_INT8 ? WMAT_INT8 : WMAT_F32;
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (!f) {
        snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || n > (16 << 20) ||
        fseek(f, 0, SEEK_SET) != 0 || !(buf = malloc((size_t)n + 1)) ||
        fread(buf, 1, (size_t)n, f) != (size_t)n) {
        snprintf(err, errlen, "%s: cannot read", path);
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

/* Integer field `key` of the config, required, in [lo, hi]. */
static int cfg_int(const cJSON *root, const char *path, const char *key, int lo, int hi, int *out,
                   char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    /* range first: casting an out-of-range double to int is undefined */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
        v->valuedouble != (double)(int)v->valuedouble) {
        snprintf(err, errlen, "%s: \"%s\" must be an integer in [%d, %d]", path, key, lo, hi);
        return -1;
    }
    *out = (int)v->valuedouble;
    return 0;
}

static int cfg_num(const cJSON *root, const char *path, const char *key, double def, double lo,
                   double hi, float *out, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    double x = def;
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v)) goto bad;
        x = v->valuedouble;
    }
    if (!(x >= lo && x <= hi)) goto bad;
    *out = (float)x;
    return 0;
bad:
    snprintf(err, errlen, "%s: \"%s\" must be a number in [%g, %g]", path, key, lo, hi);
    return -1;
}

/* Appends s to the model's string storage; returns its offset. */
static size_t str_add(char **store, size_t *used, const char *s) {
    size_t n = strlen(s) + 1, at = *used;
    char *p = realloc(*store, at + n);
    if (!p) return (size_t)-1;
    memcpy(p + at, s, n);
    *store = p;
    *used = at + n;
    return at;
}

static int config_strings(struct eng_model *m, const cJSON *root, const char *path, char *err,
                          size_t errlen) {
    struct eng_info *in = &m->info;
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(root, "lora_adaptations");
    const cJSON *instr = cJSON_GetObjectItemCaseSensitive(root, "task_instructions");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "_name_or_path");
    size_t off_name, off_task[ENG_MAX_TASKS], off_prefix[ENG_MAX_TASKS], used = 0;
    if (!cJSON_IsArray(tasks) || cJSON_GetArraySize(tasks) < 1 ||
        cJSON_GetArraySize(tasks) > ENG_MAX_TASKS) {
        snprintf(err, errlen, "%s: \"lora_adaptations\" must list 1..%d task names", path,
                 ENG_MAX_TASKS);
        return -1;
    }
    if (instr && !cJSON_IsNull(instr) && !cJSON_IsObject(instr)) {
        snprintf(err, errlen, "%s: \"task_instructions\" must be an object", path);
        return -1;
    }
    off_name = str_add(&m->strings, &used, cJSON_IsString(name) ? name->valuestring : "");
    in->n_tasks = cJSON_GetArraySize(tasks);
    for (int t = 0; t < in->n_tasks; t++) {
        const cJSON *tn = cJSON_GetArrayItem(tasks, t);
        if (!cJSON_IsString(tn) || !*tn->valuestring) {
            snprintf(err, errlen, "%s: \"lora_adaptations\"[%d] must be a task name", path, t);
            return -1;
        }
        const cJSON *pr = instr ? cJSON_GetObjectItemCaseSensitive(instr, tn->valuestring) : NULL;
        if (pr && !cJSON_IsString(pr) && !cJSON_IsNull(pr)) {
            snprintf(err, errlen, "%s: \"task_instructions\".\"%s\" must be a string", path,
                     tn->valuestring);
            return -1;
        }
        off_task[t] = str_add(&m->strings, &used, tn->valuestring);
        off_prefix[t] = str_add(&m->strings, &used, cJSON_IsString(pr) ? pr->valuestring : "");
        if (off_task[t] == (size_t)-1 || off_prefix[t] == (size_t)-1) goto oom;
    }
    if (off_name == (size_t)-1) goto oom;
    in->name = m->strings + off_name;
    for (int t = 0; t < in->n_tasks; t++) {
        in->task_name[t] = m->strings + off_task[t];
        in->task_prefix[t] = m->strings + off_prefix[t];
    }
    return 0;
oom:
    snprintf(err, errlen, "%s: out of memory", path);
    return -1;
}

static int config_load(struct eng_model *m, const char *dir, char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    size_t len;
    char *text = read_file(path, &len, err, errlen);
    if (!text) return -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    struct eng_info *in = &m->info;
    int rc = -1, max_pos = 8194;
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: not a JSON object", path);
        goto out;
    }
    if (cfg_int(root, path, "hidden_size", 2, 65536, &in->n_embd, err, errlen) ||
        cfg_int(root, path, "num_hidden_layers", 1, 256, &in->n_layer, err, errlen) ||
        cfg_int(root, path, "num_attention_heads", 1, 1024, &in->n_head, err, errlen) ||
        cfg_int(root, path, "intermediate_size", 1, 1 << 20, &in->n_ff, err, errlen) ||
        cfg_int(root, path, "vocab_size", 4, 1 << 24, &in->n_vocab, err, errlen) ||
        cfg_int(root, path, "lora_rank", 1, 256, &in->lora_rank, err, errlen) ||
        cfg_num(root, path, "lora_alpha", 1.0, 0, 1e6, &in->lora_alpha, err, errlen) ||
        cfg_num(root, path, "rotary_emb_base", 10000.0, 1.0, 1e12, &in->rope_base, err, errlen) ||
        cfg_num(root, path, "layer_norm_eps", 1e-5, 0, 1, &in->ln_eps, err, errlen))
        goto out;
    if (cJSON_GetObjectItemCaseSensitive(root, "max_position_embeddings") &&
        cfg_int(root, path, "max_position_embeddings", 3, 1 << 22, &max_pos, err, errlen))
        goto out;
    in->max_position = max_pos - 2; /* XLM-R convention: 8194 = 8192 + pad + 1 */
    if (in->n_embd % in->n_head || (in->n_embd / in->n_head) % 2) {
        snprintf(err, errlen, "%s: hidden_size %d must split into %d heads of an even size", path,
                 in->n_embd, in->n_head);
        goto out;
    }
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(root, "position_embedding_type");
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if ((pe && (!cJSON_IsString(pe) || strcmp(pe->valuestring, "rotary"))) ||
        (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu")))) {
        snprintf(err, errlen,
                 "%s: only position_embedding_type \"rotary\" and hidden_act \"gelu\" "
                 "(jina-embeddings-v3) are supported",
                 path);
        goto out;
    }
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "matryoshka_dimensions"), *d;
    cJSON_ArrayForEach(d, md) { /* informational: sizes in 1..hidden_size are kept */
        if (in->n_matryoshka < ENG_MAX_MATRYOSHKA && cJSON_IsNumber(d) &&
            d->valuedouble >= 1 && d->valuedouble <= in->n_embd)
            in->matryoshka[in->n_matryoshka++] = (int)d->valuedouble;
    }
    if (config_strings(m, root, path, err, errlen) != 0) goto out;
    m->lora_scale = in->lora_alpha / (float)in->lora_rank;
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

/* ---- tensors ---- */

/* Finds TENSOR_PREFIX + name, checks float dtype and shape; NULL + err otherwise. */
static const struct st_tensor *need(const struct eng_model *m, const char *name, int n_dims,
                                    const int64_t *shape, char *err, size_t errlen) {
    char full[256], got[128] = "", exp[128] = "";
    snprintf(full, sizeof(full), TENSOR_PREFIX "%s", name);
    const struct st_tensor *t = st_find(m->st, full);
    if (!t) {
        snprintf(err, errlen, "%s: tensor '%s' is missing", m->st->path, full);
        return NULL;
    }
    if (t->dtype == ST_OTHER) {
        snprintf(err, errlen, "%s: tensor '%s' has dtype %s; expected BF16, F16 or F32",
                 m->st->path, full, t->dtype_name);
        return NULL;
    }
    int same = t->n_dims == n_dims;
    for (int i = 0; same && i < n_dims; i++) same = t->shape[i] == shape[i];
    if (!same) {
        for (int i = 0; i < t->n_dims; i++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%lld", i ? "," : "",
                     (long long)t->shape[i]);
        for (int i = 0; i < n_dims; i++)
            snprintf(exp + strlen(exp), sizeof(exp) - strlen(exp), "%s%lld", i ? "," : "",
                     (long long)shape[i]);
        snprintf(err, errlen, "%s: tensor '%s' has shape [%s]; config.json implies [%s]",
                 m->st->path, full, got, exp);
        return NULL;
    }
    return t;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIMS(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define NEED(name, ...) need(m, name, NDIMS(__VA_ARGS__), SHAPE(__VA_ARGS__), err, errlen)

/* Widens tensor t into the arena at *pos; returns the f32 copy. */
static const float *widen(struct eng_model *m, size_t *pos, const struct st_tensor *t) {
    float *dst = m->arena + *pos;
    st_to_f32(t->dtype, t->data, dst, t->n_elem);
    st_release(t);
    *pos += (size_t)t->n_elem;
    return dst;
}

/* Checks one linear layer ("<base>.parametrizations.weight.original" etc.);
 * with arena set, prepares W for the model's dtype and widens the rest into
 * the arena. Returns the arena floats it needs, or -1 with err. */
static long linear_load(struct eng_model *m, const char *base, int n_out, int n_in, size_t *pos,
                        float *wtmp, struct eng_linear *l, char *err, size_t errlen) {
    char nm[200];
    int T = m->info.n_tasks, r = m->info.lora_rank;
    const struct st_tensor *w, *b, *a, *bb;
    snprintf(nm, sizeof(nm), "%s.parametrizations.weight.original", base);
    if (!(w = NEED(nm, n_out, n_in))) return -1;
    snprintf(nm, sizeof(nm), "%s.bias", base);
    if (!(b = NEED(nm, n_out))) return -1;
    snprintf(nm, sizeof(nm), "%s.parametrizations.weight.0.lora_A", base);
    if (!(a = NEED(nm, T, r, n_in))) return -1;
    snprintf(nm, sizeof(nm), "%s.parametrizations.weight.0.lora_B", base);
    if (!(bb = NEED(nm, T, n_out, r))) return -1;
    if (m->arena) {
        l->n_in = n_in;
        l->n_out = n_out;
        st_to_f32(w->dtype, w->data, wtmp, w->n_elem);
        st_release(w); /* keeps load-time RSS near the final footprint */
        if (wmat_init(&l->w, wmat_kind_of(m->info.dtype), m->info.cpu_features, wtmp, n_out,
                      n_in) != 0) {
            snprintf(err, errlen, "out of memory preparing '%s'", base);
            return -1;
        }
        l->b = widen(m, pos, b);
        l->lora_a = widen(m, pos, a);
        /* bt[t][k][j] = scale * B[t][j][k] */
        float *bt = m->arena + *pos;
        for (int t = 0; t < T; t++)
            for (int j = 0; j < n_out; j++)
                for (int k = 0; k < r; k++)
                    bt[((size_t)t * r + k) * n_out + j] =
                        m->lora_scale * st_get_f32(bb->dtype, bb->data, ((int64_t)t * n_out + j) * r + k);
        *pos += (size_t)bb->n_elem;
        st_release(bb);
        l->lora_bt = bt;
    }
    return (long)(b->n_elem + a->n_elem + bb->n_elem);
}

static long norm_load(struct eng_model *m, const char *base, size_t *pos, const float **w,
                      const float **b, char *err, size_t errlen) {
    char nm[200];
    int H = m->info.n_embd;
    const struct st_tensor *tw, *tb;
    snprintf(nm, sizeof(nm), "%s.weight", base);
    if (!(tw = NEED(nm, H))) return -1;
    snprintf(nm, sizeof(nm), "%s.bias", base);
    if (!(tb = NEED(nm, H))) return -1;
    if (m->arena) {
        *w = widen(m, pos, tw);
        *b = widen(m, pos, tb);
    }
    return 2L * H;
}

/* Checks (wtmp NULL) or loads one encoder layer; arena floats it needs, or -1. */
static long layer_walk(struct eng_model *m, int il, size_t *pos, float *wtmp, char *err,
                       size_t errlen) {
    int H = m->info.n_embd, F = m->info.n_ff;
    struct eng_layer dummy, *L = wtmp ? &m->layers[il] : &dummy;
    char base[128], nm[160];
    long total = 0, n;
    snprintf(base, sizeof(base), "encoder.layers.%d", il);
    const struct {
        const char *sub;
        int n_out, n_in;
        struct eng_linear *l;
    } lin[] = {{"mixer.Wqkv", 3 * H, H, &L->qkv},
               {"mixer.out_proj", H, H, &L->out},
               {"mlp.fc1", F, H, &L->fc1},
               {"mlp.fc2", H, F, &L->fc2}};
    ENG_ASSERT(!wtmp == !m->arena); /* validation runs before the arena exists */
    for (int i = 0; i < 4; i++) {
        snprintf(nm, sizeof(nm), "%s.%s", base, lin[i].sub);
        n = linear_load(m, nm, lin[i].n_out, lin[i].n_in, pos, wtmp, lin[i].l, err, errlen);
        if (n < 0) goto out;
        total += n;
    }
    snprintf(nm, sizeof(nm), "%s.norm1", base);
    if ((n = norm_load(m, nm, pos, &L->ln1_w, &L->ln1_b, err, errlen)) < 0) goto out;
    snprintf(nm, sizeof(nm), "%s.norm2", base);
    if ((n = norm_load(m, nm, pos, &L->ln2_w, &L->ln2_b, err, errlen)) < 0) goto out;
    total += 2 * n;
out:
    return n < 0 ? -1 : total;
}

struct load_job {
    struct eng_model *m;
    size_t pos0;
    int ith, nth;
    int rc;
    char err[512];
};

/* Prepares layers ith, ith + nth, ... (each into its own arena range). */
static void *layers_load_thread(void *arg) {
    struct load_job *j = arg;
    const struct eng_info *in = &j->m->info;
    size_t wmax = (size_t)in->n_embd * (in->n_ff > 3 * in->n_embd ? in->n_ff : 3 * in->n_embd);
    float *wtmp = malloc(sizeof(float) * wmax);
    if (!wtmp) {
        snprintf(j->err, sizeof(j->err), "out of memory preparing the weights");
        j->rc = -1;
        return NULL;
    }
    for (int il = j->ith; il < in->n_layer && j->rc == 0; il += j->nth) {
        size_t pos = j->pos0 + (size_t)il * j->m->layer_floats;
        if (layer_walk(j->m, il, &pos, wtmp, j->err, sizeof(j->err)) < 0) j->rc = -1;
    }
    free(wtmp);
    return NULL;
}

/* Loads every layer, on m->load_threads threads (the engine's thread count:
 * startup time is mostly widening and packing the weights). */
static long layers_load(struct eng_model *m, size_t pos0, long total, char *err, size_t errlen) {
    int nth = m->load_threads < 1 ? 1 : m->load_threads > 64 ? 64 : m->load_threads;
    struct load_job jobs[64];
    pthread_t th[64];
    int rc = 0;
    for (int i = 0; i < nth; i++) {
        jobs[i] = (struct load_job){.m = m, .pos0 = pos0, .ith = i, .nth = nth};
        if (i > 0 && pthread_create(&th[i], NULL, layers_load_thread, &jobs[i]) != 0)
            jobs[i].rc = -2; /* not started: its layers stay unloaded, so fail below */
    }
    layers_load_thread(&jobs[0]);
    for (int i = 1; i < nth; i++)
        if (jobs[i].rc != -2) pthread_join(th[i], NULL);
    for (int i = 0; i < nth && rc == 0; i++) {
        if (jobs[i].rc == -2) {
            snprintf(err, errlen, "cannot start a loader thread");
            rc = -1;
        } else if (jobs[i].rc) {
            snprintf(err, errlen, "%s", jobs[i].err);
            rc = -1;
        }
    }
    if (rc) return -1;
    for (int il = 0; il < m->info.n_layer; il++) {
        const struct eng_layer *L = &m->layers[il];
        m->wmat_bytes += L->qkv.w.nbytes + L->out.w.nbytes + L->fc1.w.nbytes + L->fc2.w.nbytes;
    }
    return total + (long)(m->layer_floats * (size_t)m->info.n_layer);
}

/* Checks (arena NULL) or loads (arena set) every tensor. Returns the f32
 * count the arena needs, or -1 with err. */
static long tensors_walk(struct eng_model *m, char *err, size_t errlen) {
    const struct eng_info *in = &m->info;
    int H = in->n_embd, V = in->n_vocab, T = in->n_tasks, r = in->lora_rank;
    size_t pos = 0;
    long total = 0, n;
    const struct st_tensor *we, *wa, *wb, *te, *ta, *tb;
    if (!(we = NEED("embeddings.word_embeddings.parametrizations.weight.original", V, H)) ||
        !(wa = NEED("embeddings.word_embeddings.parametrizations.weight.0.lora_A", T, V, r)) ||
        !(wb = NEED("embeddings.word_embeddings.parametrizations.weight.0.lora_B", T, r, H)) ||
        !(te = NEED("embeddings.token_type_embeddings.parametrizations.weight.original", 1, H)) ||
        !(ta = NEED("embeddings.token_type_embeddings.parametrizations.weight.0.lora_A", T, 1, r)) ||
        !(tb = NEED("embeddings.token_type_embeddings.parametrizations.weight.0.lora_B", T, r, H)))
        return -1;
    total += (long)T * r * H + (long)(1 + T) * H;
    if (m->arena) {
        m->tok_embd = we->data;
        m->tok_embd_dt = we->dtype;
        m->tok_lora_a = wa->data;
        m->tok_lora_a_dt = wa->dtype;
        m->tok_lora_b = widen(m, &pos, wb);
        /* type_embd[0] = T[0]; type_embd[1+t] = T[0] + s * sum_k A[t][0][k] * B[t][k][:] */
        float *te32 = m->arena + pos;
        pos += (size_t)(1 + T) * H;
        for (int j = 0; j < H; j++) te32[j] = st_get_f32(te->dtype, te->data, j);
        for (int t = 0; t < T; t++) {
            float *row = te32 + (size_t)(1 + t) * H;
            for (int j = 0; j < H; j++) {
                float delta = 0;
                for (int k = 0; k < r; k++)
                    delta += st_get_f32(ta->dtype, ta->data, (int64_t)t * r + k) *
                             st_get_f32(tb->dtype, tb->data, ((int64_t)t * r + k) * H + j);
                row[j] = te32[j] + m->lora_scale * delta;
            }
        }
        m->type_embd = te32;
    }
    if ((n = norm_load(m, "emb_ln", &pos, &m->emb_ln_w, &m->emb_ln_b, err, errlen)) < 0) return -1;
    total += n;
    if (m->arena) return layers_load(m, pos, total, err, errlen);
    for (int il = 0; il < in->n_layer; il++) {
        if ((n = layer_walk(m, il, &pos, NULL, err, errlen)) < 0) return -1;
        if (il == 0) m->layer_floats = (size_t)n;
        ENG_ASSERT((size_t)n == m->layer_floats); /* shapes come from one config */
        total += n;
    }
    return total;
}

struct eng_model *eng_model_open(const char *dir, const struct eng_params *p, char *err,
                                 size_t errlen) {
    char path[4096];
    struct eng_model *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    uint32_t have = cpu_detect(), want = p && p->cpu_features ? p->cpu_features : have;
    m->info.cpu_features = (want & have) | CPU_BASE;
    if (dtype_resolve(p ? p->dtype : ENG_DTYPE_AUTO, m->info.cpu_features, &m->info.dtype, err,
                      errlen) != 0)
        goto fail;
    m->info.kernel =
        gemm_kernel_name(gemm_kernel_for(wmat_kind_of(m->info.dtype), m->info.cpu_features));
    if (config_load(m, dir, err, errlen) != 0) goto fail;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    if (!(m->st = st_open(path, err, errlen))) goto fail;
    long need_floats = tensors_walk(m, err, errlen); /* validate everything first */
    if (need_floats < 0) goto fail;
    m->layers = calloc((size_t)m->info.n_layer, sizeof(*m->layers));
    m->arena = malloc(sizeof(float) * (size_t)need_floats);
    if (!m->layers || !m->arena) {
        snprintf(err, errlen, "out of memory for %ld weights", need_floats);
        goto fail;
    }
    m->arena_floats = (size_t)need_floats;
    m->load_threads = p && p->n_threads > 0 ? p->n_threads : 1;
    if (tensors_walk(m, err, errlen) < 0) goto fail;
    /* The prepared copies are what the forward pass reads; let the kernel drop
     * the mapping's pages (the embedding rows fault back in on demand). */
    madvise(m->st->map, m->st->size, MADV_DONTNEED);
    return m;
fail:
    eng_model_close(m);
    return NULL;
}

void eng_model_close(struct eng_model *m) {
    if (!m) return;
    for (int il = 0; m->layers && il < m->info.n_layer; il++) {
        wmat_deinit(&m->layers[il].qkv.w);
        wmat_deinit(&m->layers[il].out.w);
        wmat_deinit(&m->layers[il].fc1.w);
        wmat_deinit(&m->layers[il].fc2.w);
    }
    st_close(m->st);
    free(m->arena);
    free(m->layers);
    free(m->strings);
    free(m);
}

const struct eng_info *eng_model_info(const struct eng_model *m) {
    return &m->info;
}

int eng_task_lookup(const struct eng_model *m, const char *name) {
    if (!name) return ENG_TASK_NONE;
    for (int t = 0; t < m->info.n_tasks; t++)
        if (!strcmp(m->info.task_name[t], name)) return t;
    return ENG_ENOTASK;
}

size_t eng_model_weight_bytes(const struct eng_model *m) {
    return m->arena_floats * sizeof(float) + m->wmat_bytes;
}
