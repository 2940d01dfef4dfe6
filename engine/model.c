/* model.c -- loading a model directory through its architecture description.
 *
 * 1. config.json -> the architecture (model_arch.c recognises it), then
 *    struct eng_info from the fields that description lists (every
 *    dimension comes from the config).
 * 2. The weights file -> st_file (mmaped, header validated by safetensors.c).
 * 3. Every tensor the forward pass uses, named by the description's role
 *    table, is checked for presence, dtype and shape against the config
 *    before anything is read.
 * 4. Linear weights, biases, norms and LoRA factors are widened to f32 into
 *    one arena; the word-embedding table and its LoRA A are copied to the
 *    heap in the file's dtype (never expanded: 250002 x 1024) and read per
 *    token. The token-type row is merged per task once (the reference merges
 *    in f32).
 * 5. The file is unmapped: once eng_model_open returns, every weight lives in
 *    memory the process owns, so truncating or overwriting the file under a
 *    running server changes nothing (a mapping would SIGBUS or change the
 *    embeddings silently). The cost is the word table's size in RSS.
 *
 * Weights are immutable once eng_model_open returns.
 */
#include "engine/engine_impl.h"
#include "engine/cpu.h"

#include <cJSON.h>
#include <errno.h>
#include <string.h>
#include <pthread.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

struct eng_params eng_params_defaults(void) {
    struct eng_params p = {.n_threads = 1, .max_batch_tokens = 8192, .dtype = ENG_DTYPE_AUTO};
    return p;
}

const char *eng_dtype_name(enum eng_dtype dt) {
    static const char *names[] = {"auto", "f32", "bf16", "int8"};
    return (unsigned)dt < 4 ? names[dt] : "?";
}

/* AUTO -> bf16 where the CPU features allow a kernel for it, else f32 (never
 * int8: opt-in); explicit kinds are checked against the kernel table (int8
 * has a portable kernel, so only bf16 can be refused). */
static int dtype_resolve(enum eng_dtype want, uint32_t cpu, enum eng_dtype *out, char *err,
                         size_t errlen) {
    if (want == ENG_DTYPE_AUTO)
        want = gemm_kernel_for(WMAT_BF16, cpu) ? ENG_DTYPE_BF16 : ENG_DTYPE_F32;
    if ((want == ENG_DTYPE_BF16 && !gemm_kernel_for(WMAT_BF16, cpu)) ||
        (want == ENG_DTYPE_INT8 && !gemm_kernel_for(WMAT_INT8, cpu))) {
        char names[128];
        snprintf(err, errlen,
                 "dtype %s needs a CPU with %s (CPU features in use: %s); "
                 "use dtype f32",
                 eng_dtype_name(want),
                 want == ENG_DTYPE_BF16 ? "AVX512_BF16 (x86-64) or FEAT_BF16 (aarch64)"
                                        : "int8 kernels",
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

/* config.json: a regular file of at most CONFIG_MAX_BYTES (a FIFO would
 * block the open, /dev/urandom grow memory without end). */
#define CONFIG_MAX_BYTES (1 << 20)

static char *read_file(const char *path, size_t *len, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat sb;
    char *buf = NULL;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno));
        if (fd >= 0) close(fd);
        return NULL;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size > CONFIG_MAX_BYTES) {
        snprintf(err, errlen, "%s: %s", path,
                 S_ISREG(sb.st_mode) ? "larger than 1 MiB" : "not a regular file");
        close(fd);
        return NULL;
    }
    size_t n = (size_t)sb.st_size, got = 0;
    if (!(buf = malloc(n + 1))) {
        snprintf(err, errlen, "%s: out of memory", path);
        close(fd);
        return NULL;
    }
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    if (got != n) {
        snprintf(err, errlen, "%s: cannot read", path);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* Integer field `key` of config.json, required, in [lo, hi]. */
static int field_int(const cJSON *root, const char *path, const char *key, int lo, int hi, int *out,
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

/* Number field `key` of config.json in [lo, hi]; `def` when absent or null. */
static int field_num(const cJSON *root, const char *path, const char *key, double def, double lo,
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

/* The model's name and, for an architecture with task adapters, the task
 * names (in adapter order) and their instruction prefixes. */
static int config_strings(struct eng_model *m, const cJSON *root, const char *path, char *err,
                          size_t errlen) {
    struct eng_info *in = &m->info;
    const struct eng_arch *ar = m->arch;
    const cJSON *tasks =
        ar->tasks_key ? cJSON_GetObjectItemCaseSensitive(root, ar->tasks_key) : NULL;
    const cJSON *instr =
        ar->prefixes_key ? cJSON_GetObjectItemCaseSensitive(root, ar->prefixes_key) : NULL;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "_name_or_path");
    size_t off_name, off_task[ENG_MAX_TASKS], off_prefix[ENG_MAX_TASKS], used = 0;
    if (ar->tasks_key && (!cJSON_IsArray(tasks) || cJSON_GetArraySize(tasks) < 1 ||
                          cJSON_GetArraySize(tasks) > ENG_MAX_TASKS)) {
        snprintf(err, errlen, "%s: \"%s\" must list 1..%d task names", path, ar->tasks_key,
                 ENG_MAX_TASKS);
        return -1;
    }
    if (instr && !cJSON_IsNull(instr) && !cJSON_IsObject(instr)) {
        snprintf(err, errlen, "%s: \"%s\" must be an object", path, ar->prefixes_key);
        return -1;
    }
    off_name = str_add(&m->strings, &used, cJSON_IsString(name) ? name->valuestring : "");
    in->n_tasks = cJSON_GetArraySize(tasks);
    for (int t = 0; t < in->n_tasks; t++) {
        const cJSON *tn = cJSON_GetArrayItem(tasks, t);
        if (!cJSON_IsString(tn) || !*tn->valuestring) {
            snprintf(err, errlen, "%s: \"%s\"[%d] must be a task name", path, ar->tasks_key, t);
            return -1;
        }
        const cJSON *pr = instr ? cJSON_GetObjectItemCaseSensitive(instr, tn->valuestring) : NULL;
        if (pr && !cJSON_IsString(pr) && !cJSON_IsNull(pr)) {
            snprintf(err, errlen, "%s: \"%s\".\"%s\" must be a string", path, ar->prefixes_key,
                     tn->valuestring);
            return -1;
        }
        if (cJSON_IsString(pr) && strlen(pr->valuestring) > ENG_MAX_PREFIX_BYTES) {
            snprintf(err, errlen, "%s: \"%s\".\"%s\" is %zu bytes; at most %d", path,
                     ar->prefixes_key, tn->valuestring, strlen(pr->valuestring),
                     ENG_MAX_PREFIX_BYTES);
            return -1;
        }
        off_task[t] = str_add(&m->strings, &used, tn->valuestring);
        off_prefix[t] = str_add(&m->strings, &used, cJSON_IsString(pr) ? pr->valuestring : "");
        if (off_task[t] == (size_t)-1 || off_prefix[t] == (size_t)-1) goto oom;
    }
    if (off_name == (size_t)-1) goto oom;
    in->name = m->strings + off_name;
    in->arch = ar->name;
    in->task_alias = ar->task_aliases;
    in->n_task_alias = ar->n_task_aliases;
    for (int t = 0; t < in->n_tasks; t++) {
        in->task_name[t] = m->strings + off_task[t];
        in->task_prefix[t] = m->strings + off_prefix[t];
    }
    return 0;
oom:
    snprintf(err, errlen, "%s: out of memory", path);
    return -1;
}

/* The numeric fields the architecture lists, in its order. */
static int config_fields(struct eng_model *m, const cJSON *root, const char *path, char *err,
                         size_t errlen) {
    const struct eng_arch *ar = m->arch;
    for (int i = 0; i < ar->n_fields; i++) {
        const struct eng_field *f = &ar->fields[i];
        char *dst = (char *)&m->info + f->off;
        int rc;
        if (f->kind == ENG_FIELD_INT) {
            int v = (int)f->def;
            rc = !f->required && !cJSON_GetObjectItemCaseSensitive(root, f->key)
                     ? 0
                     : field_int(root, path, f->key, (int)f->lo, (int)f->hi, &v, err, errlen);
            memcpy(dst, &v, sizeof(v));
        } else {
            float v = 0;
            rc = field_num(root, path, f->key, f->def, f->lo, f->hi, &v, err, errlen);
            memcpy(dst, &v, sizeof(v));
        }
        if (rc) return -1;
    }
    return 0;
}

/* A string setting that must be `want` when present (hidden_act). */
static int config_same(const cJSON *root, const char *path, const char *key, const char *want,
                       const char *arch, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || (cJSON_IsString(v) && !strcmp(v->valuestring, want))) return 0;
    snprintf(err, errlen, "%s: %s \"%.40s\" is not supported: %s uses \"%s\"", path, key,
             cJSON_IsString(v) ? v->valuestring : "(not a string)", arch, want);
    return -1;
}

/* position_embedding_type, when present, must name the architecture's scheme. */
static int config_position(const cJSON *root, const char *path, const struct eng_arch *ar,
                           char *err, size_t errlen) {
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(root, "position_embedding_type");
    if (!pe) return 0;
    int k = cJSON_IsString(pe) ? eng_pos_kind_parse(pe->valuestring) : -1;
    if (k < 0) {
        snprintf(err, errlen,
                 "%s: position_embedding_type \"%.40s\" is unknown (known: rotary, absolute, "
                 "alibi)",
                 path, cJSON_IsString(pe) ? pe->valuestring : "(not a string)");
        return -1;
    }
    if (k != (int)ar->pos) {
        snprintf(err, errlen, "%s: position_embedding_type \"%s\" is not supported: %s uses \"%s\"",
                 path, pe->valuestring, ar->name, eng_pos_kind_name(ar->pos));
        return -1;
    }
    return 0;
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
    int rc = -1, max_pos = 0;
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: not a JSON object", path);
        goto out;
    }
    if ((!m->arch && !(m->arch = eng_arch_find(root, path, err, errlen))) ||
        eng_arch_check(m->arch, err, errlen) != 0 || config_fields(m, root, path, err, errlen) != 0)
        goto out;
    max_pos = m->arch->max_position_default;
    if (cJSON_GetObjectItemCaseSensitive(root, "max_position_embeddings") &&
        field_int(root, path, "max_position_embeddings", 1 + m->arch->max_position_offset, 1 << 22,
                  &max_pos, err, errlen))
        goto out;
    in->max_position = max_pos - m->arch->max_position_offset;
    if (in->n_embd % in->n_head ||
        (m->arch->pos == ENG_POS_ROTARY && (in->n_embd / in->n_head) % 2)) {
        snprintf(err, errlen, "%s: hidden_size %d must split into %d heads%s", path, in->n_embd,
                 in->n_head, m->arch->pos == ENG_POS_ROTARY ? " of an even size" : "");
        goto out;
    }
    if (config_position(root, path, m->arch, err, errlen) ||
        config_same(root, path, "hidden_act", m->arch->hidden_act, m->arch->name, err, errlen))
        goto out;
    for (int i = 0; i < m->arch->n_fixed; i++)
        if (config_same(root, path, m->arch->fixed[i][0], m->arch->fixed[i][1], m->arch->name, err,
                        errlen))
            goto out;
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "matryoshka_dimensions"), *d;
    cJSON_ArrayForEach(d, md) { /* informational: sizes in 1..hidden_size are kept */
        if (in->n_matryoshka < ENG_MAX_MATRYOSHKA && cJSON_IsNumber(d) && d->valuedouble >= 1 &&
            d->valuedouble <= in->n_embd)
            in->matryoshka[in->n_matryoshka++] = (int)d->valuedouble;
    }
    if (config_strings(m, root, path, err, errlen) != 0) goto out;
    m->lora_scale = in->n_tasks ? in->lora_alpha / (float)in->lora_rank : 0.0f;
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

/* ---- tensors ---- */

/* Finds tensor `full`, checks float dtype and shape; NULL + err otherwise. */
static const struct st_tensor *need(const struct eng_model *m, const char *name, int n_dims,
                                    const int64_t *shape, char *err, size_t errlen) {
    char got[128] = "", exp[128] = "", full[320];
    snprintf(full, sizeof(full), "%s%s", m->prefix, name);
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
    for (int i = 0; same && i < n_dims; i++)
        same = t->shape[i] == shape[i];
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

#define SHAPE(...)      ((const int64_t[]){__VA_ARGS__})
#define NDIMS(...)      ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define NEED(name, ...) need(m, name, NDIMS(__VA_ARGS__), SHAPE(__VA_ARGS__), err, errlen)

/* Widens tensor t into the arena at *pos; returns the f32 copy. */
static const float *widen(struct eng_model *m, size_t *pos, const struct st_tensor *t) {
    float *dst = m->arena + *pos;
    st_to_f32(t->dtype, t->data, dst, t->n_elem);
    st_release(t);
    *pos += (size_t)t->n_elem;
    return dst;
}

/* Name of role part `fmt` for layer il into nm[256]; -1 with err if too long. */
static int role_name(char *nm, const char *fmt, int il, char *err, size_t errlen) {
    if (eng_tensor_name(nm, 256, fmt, il) == 0) return 0;
    snprintf(err, errlen, "tensor name '%.60s...' is too long", fmt);
    return -1;
}

/* Checks one linear of layer il, stored as one role or as n_parts roles of
 * n_out / n_parts rows each (separate Q, K, V) that are stacked in order:
 * weight, bias if the architecture has one, and the task adapters' factors
 * if it has adapters (one-part linears only). With arena set, prepares W for
 * the model's dtype and widens the rest into the arena. Returns the arena
 * floats it needs, or -1 with err. */
static long linear_load(struct eng_model *m, const enum eng_role *roles, int n_parts, int il,
                        int n_out, int n_in, size_t *pos, float *wtmp, struct eng_linear *l,
                        char *err, size_t errlen) {
    const struct eng_role_names *rn = &m->arch->tensors[roles[0]];
    char nm[256];
    int T = m->info.n_tasks, r = m->info.lora_rank, n_part = n_out / n_parts;
    const struct st_tensor *w[3], *b[3] = {NULL, NULL, NULL}, *a = NULL, *bb = NULL;
    long floats = 0;
    ENG_ASSERT(n_parts >= 1 && n_parts <= 3 && n_part * n_parts == n_out && (!T || n_parts == 1));
    for (int p = 0; p < n_parts; p++) {
        const struct eng_role_names *rp = &m->arch->tensors[roles[p]];
        if (role_name(nm, rp->w, il, err, errlen) || !(w[p] = NEED(nm, n_part, n_in))) return -1;
        if (rp->b && (role_name(nm, rp->b, il, err, errlen) || !(b[p] = NEED(nm, n_part))))
            return -1;
        floats += b[p] ? n_part : 0;
    }
    if (T && (role_name(nm, rn->lora_a, il, err, errlen) || !(a = NEED(nm, T, r, n_in)))) return -1;
    if (T && (role_name(nm, rn->lora_b, il, err, errlen) || !(bb = NEED(nm, T, n_out, r))))
        return -1;
    if (m->arena) {
        l->n_in = n_in;
        l->n_out = n_out;
        for (int p = 0; p < n_parts; p++) {
            st_to_f32(w[p]->dtype, w[p]->data, wtmp + (size_t)p * n_part * n_in, w[p]->n_elem);
            st_release(w[p]); /* keeps load-time RSS near the final footprint */
        }
        if (wmat_init(&l->w, wmat_kind_of(m->info.dtype), m->info.cpu_features, wtmp, n_out,
                      n_in) != 0) {
            snprintf(err, errlen, "out of memory preparing '%s'", w[0]->name);
            return -1;
        }
        l->b = NULL;
        for (int p = 0; p < n_parts; p++) /* consecutive: one [n_out] bias */
            if (b[p]) {
                const float *bp = widen(m, pos, b[p]);
                if (p == 0) l->b = bp;
            }
        l->lora_a = a ? widen(m, pos, a) : NULL;
        l->lora_bt = NULL;
        if (bb) {
            /* bt[t][k][j] = scale * B[t][j][k] */
            float *bt = m->arena + *pos;
            for (int t = 0; t < T; t++)
                for (int j = 0; j < n_out; j++)
                    for (int k = 0; k < r; k++)
                        bt[((size_t)t * r + k) * n_out + j] =
                            m->lora_scale *
                            st_get_f32(bb->dtype, bb->data, ((int64_t)t * n_out + j) * r + k);
            *pos += (size_t)bb->n_elem;
            st_release(bb);
            l->lora_bt = bt;
        }
    }
    return floats + (long)((a ? a->n_elem : 0) + (bb ? bb->n_elem : 0));
}

/* Checks (and with the arena set, widens) one LayerNorm role of layer il. */
static long norm_load(struct eng_model *m, enum eng_role role, int il, size_t *pos, const float **w,
                      const float **b, char *err, size_t errlen) {
    const struct eng_role_names *rn = &m->arch->tensors[role];
    char nm[256];
    int H = m->info.n_embd;
    const struct st_tensor *tw, *tb;
    if (role_name(nm, rn->w, il, err, errlen) || !(tw = NEED(nm, H))) return -1;
    if (role_name(nm, rn->b, il, err, errlen) || !(tb = NEED(nm, H))) return -1;
    if (m->arena) {
        *w = widen(m, pos, tw);
        *b = widen(m, pos, tb);
    }
    return 2L * H;
}

/* Checks (wtmp NULL) or loads one encoder layer; arena floats it needs, or -1. */
static long layer_walk(struct eng_model *m, int il, size_t *pos, float *wtmp, char *err,
                       size_t errlen) {
    int H = m->info.n_embd, F = m->info.n_ff, F_up = m->arch->ffn == ENG_FFN_GEGLU ? 2 * F : F;
    struct eng_layer dummy, *L = wtmp ? &m->layers[il] : &dummy;
    long total = 0, n;
    bool split = !m->arch->tensors[ENG_ROLE_ATTN_QKV].w; /* separate Q, K, V */
    const struct {
        enum eng_role roles[3];
        int n_parts, n_out, n_in;
        struct eng_linear *l;
    } lin[] = {
        {{ENG_ROLE_ATTN_QKV}, 1, 3 * H, H, &L->qkv},
        {{ENG_ROLE_ATTN_OUT}, 1, H, H, &L->out},
        {{ENG_ROLE_FFN_UP}, 1, F_up, H, &L->fc1},
        {{ENG_ROLE_FFN_DOWN}, 1, H, F, &L->fc2},
    };
    static const enum eng_role qkv_parts[3] = {ENG_ROLE_ATTN_Q, ENG_ROLE_ATTN_K, ENG_ROLE_ATTN_V};
    ENG_ASSERT(!wtmp == !m->arena); /* validation runs before the arena exists */
    for (int i = 0; i < 4; i++) {
        bool parts = i == 0 && split;
        n = linear_load(m, parts ? qkv_parts : lin[i].roles, parts ? 3 : 1, il, lin[i].n_out,
                        lin[i].n_in, pos, wtmp, lin[i].l, err, errlen);
        if (n < 0) goto out;
        total += n;
    }
    if ((n = norm_load(m, ENG_ROLE_ATTN_NORM, il, pos, &L->ln1_w, &L->ln1_b, err, errlen)) < 0)
        goto out;
    if ((n = norm_load(m, ENG_ROLE_FFN_NORM, il, pos, &L->ln2_w, &L->ln2_b, err, errlen)) < 0)
        goto out;
    total += 2 * n;
    const struct {
        enum eng_role role;
        const float **w, **b;
    } opt[] = {
        {ENG_ROLE_ATTN_Q_NORM, &L->qn_w, &L->qn_b},
        {ENG_ROLE_ATTN_K_NORM, &L->kn_w, &L->kn_b},
        {ENG_ROLE_ATTN_NORM2, &L->ln1b_w, &L->ln1b_b},
    };
    for (int i = 0; i < 3; i++) {
        *opt[i].w = *opt[i].b = NULL;
        if (!m->arch->tensors[opt[i].role].w) continue;
        if ((n = norm_load(m, opt[i].role, il, pos, opt[i].w, opt[i].b, err, errlen)) < 0) goto out;
        total += n;
    }
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
    size_t f_up = (size_t)in->n_ff * (j->m->arch->ffn == ENG_FFN_GEGLU ? 2 : 1);
    size_t wmax =
        (size_t)in->n_embd * (f_up > 3 * (size_t)in->n_embd ? f_up : 3 * (size_t)in->n_embd);
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
    return total + (long)(m->layer_floats * (size_t)m->info.n_layer);
}

/* The embeddings: word table and token-type row (with their adapters when
 * the architecture has them) and the LayerNorm after them. Returns the
 * arena floats they need, or -1 with err. */
static long embeddings_walk(struct eng_model *m, size_t *pos, char *err, size_t errlen) {
    const struct eng_info *in = &m->info;
    const struct eng_role_names *tok = &m->arch->tensors[ENG_ROLE_TOK_EMBD];
    const struct eng_role_names *typ = &m->arch->tensors[ENG_ROLE_TYPE_EMBD];
    int H = in->n_embd, V = in->n_vocab, T = in->n_tasks, r = in->lora_rank;
    int n_type = m->arch->n_type_rows;
    long n;
    const struct st_tensor *we, *wa = NULL, *wb = NULL, *te, *ta = NULL, *tb = NULL;
    /* embedding adapters: A [T][rows][r], B [T][r][H] (roles swapped vs linears) */
    if (!(we = NEED(tok->w, V, H)) || (T && !(wa = NEED(tok->lora_a, T, V, r))) ||
        (T && !(wb = NEED(tok->lora_b, T, r, H))) || !(te = NEED(typ->w, n_type, H)) ||
        (T && !(ta = NEED(typ->lora_a, T, n_type, r))) || (T && !(tb = NEED(typ->lora_b, T, r, H))))
        return -1;
    if (m->arena) {
        if (st_rows_open(&m->tok_embd, m->st, we, m->info.embeddings_in_memory, err, errlen))
            return -1;
        m->info.embeddings_bytes = we->nbytes;
        if (wa && !(m->tok_lora_a = m->owned = st_copy(wa))) {
            snprintf(err, errlen, "out of memory for the embedding adapters");
            return -1;
        }
        m->tok_lora_a_dt = wa ? wa->dtype : ST_F32;
        m->tok_lora_b = wb ? widen(m, pos, wb) : NULL;
        /* type_embd[0] = T[0]; type_embd[1+t] = T[0] + s * sum_k A[t][0][k] * B[t][k][:] */
        float *te32 = m->arena + *pos;
        *pos += (size_t)(1 + T) * H;
        for (int j = 0; j < H; j++)
            te32[j] = st_get_f32(te->dtype, te->data, j);
        for (int t = 0; t < T; t++) {
            float *row = te32 + (size_t)(1 + t) * H;
            for (int j = 0; j < H; j++) {
                float delta = 0;
                for (int k = 0; k < r; k++)
                    delta += st_get_f32(ta->dtype, ta->data, (int64_t)t * n_type * r + k) *
                             st_get_f32(tb->dtype, tb->data, ((int64_t)t * r + k) * H + j);
                row[j] = te32[j] + m->lora_scale * delta;
            }
        }
        m->type_embd = te32;
    }
    n = norm_load(m, ENG_ROLE_EMB_NORM, 0, pos, &m->emb_ln_w, &m->emb_ln_b, err, errlen);
    return n < 0 ? -1 : (long)T * r * H + (long)(1 + T) * H + n;
}

/* Checks (arena NULL) or loads (arena set) every tensor. Returns the f32
 * count the arena needs, or -1 with err. */
static long tensors_walk(struct eng_model *m, char *err, size_t errlen) {
    const struct eng_info *in = &m->info;
    size_t pos = 0;
    long total, n;
    if ((total = embeddings_walk(m, &pos, err, errlen)) < 0) return -1;
    if (m->arena) return layers_load(m, pos, total, err, errlen);
    for (int il = 0; il < in->n_layer; il++) {
        if ((n = layer_walk(m, il, &pos, NULL, err, errlen)) < 0) return -1;
        if (il == 0) m->layer_floats = (size_t)n;
        ENG_ASSERT((size_t)n == m->layer_floats); /* shapes come from one config */
        total += n;
    }
    return total;
}

/* Whether the weights file holds `name` under the model's prefix. */
static bool weights_have(void *ctx, const char *name) {
    const struct eng_model *m = ctx;
    char full[320];
    snprintf(full, sizeof(full), "%s%s", m->prefix, name);
    return st_find(m->st, full) != NULL;
}

/* The name prefix (plain, or the description's alt_prefix when the word
 * embeddings are only found under it) and, unless the caller chose the
 * description, the layout variant the weights file holds. Siblings share
 * config fields and settings, so only the description and its name change. */
static int weights_layout(struct eng_model *m, bool chosen, char *err, size_t errlen) {
    const char *tok = m->arch->tensors[ENG_ROLE_TOK_EMBD].w;
    m->prefix = "";
    if (m->arch->alt_prefix && !weights_have(m, tok)) {
        m->prefix = m->arch->alt_prefix;
        if (!weights_have(m, tok)) m->prefix = "";
    }
    if (chosen) return 0;
    const struct eng_arch *b = eng_arch_variant(m->arch, weights_have, m);
    if (b == m->arch) return 0;
    ENG_ASSERT(b->fields == m->arch->fields && b->fixed == m->arch->fixed &&
               b->alt_prefix == m->arch->alt_prefix);
    if (eng_arch_check(b, err, errlen) != 0) return -1;
    m->arch = b;
    m->info.arch = b->name;
    return 0;
}

struct eng_model *eng_model_open(const char *dir, const struct eng_params *p, char *err,
                                 size_t errlen) {
    return eng_model_open_arch(dir, NULL, p, err, errlen);
}

struct eng_model *eng_model_open_arch(const char *dir, const struct eng_arch *arch,
                                      const struct eng_params *p, char *err, size_t errlen) {
    char path[4096];
    struct eng_model *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->tok_embd.fd = -1;
    uint32_t have = cpu_detect(), want = p && p->cpu_features ? p->cpu_features : have;
    m->info.cpu_features = (want & have) | CPU_BASE;
    if (dtype_resolve(p ? p->dtype : ENG_DTYPE_AUTO, m->info.cpu_features, &m->info.dtype, err,
                      errlen) != 0)
        goto fail;
    m->info.kernel =
        gemm_kernel_name(gemm_kernel_for(wmat_kind_of(m->info.dtype), m->info.cpu_features));
    m->arch = arch; /* NULL: config.json selects it */
    m->prefix = "";
    bool chosen = arch != NULL;
    if (config_load(m, dir, err, errlen) != 0) goto fail;
    snprintf(path, sizeof(path), "%s/%s", dir, m->arch->weights_file);
    if (!(m->st = st_open(path, err, errlen))) goto fail;
    if (weights_layout(m, chosen, err, errlen) != 0) goto fail;
    /* named for the architecture the weights settled on */
    enc_attn_kernel_name(&m->info, m->arch->pos, m->attn_kernel, sizeof(m->attn_kernel));
    m->info.attn_kernel = m->attn_kernel;
    long need_floats = tensors_walk(m, err, errlen); /* validate everything first */
    if (need_floats < 0) goto fail;
    m->layers = calloc((size_t)m->info.n_layer, sizeof(*m->layers));
    m->arena = malloc(sizeof(float) * (size_t)need_floats);
    if (!m->layers || !m->arena) {
        snprintf(err, errlen, "out of memory for %ld weights", need_floats);
        goto fail;
    }
    m->arena_floats = (size_t)need_floats;
    m->info.embeddings_in_memory = p && p->embeddings_in_memory;
    m->load_threads = p && p->n_threads > 0 ? p->n_threads : 1;
    if (tensors_walk(m, err, errlen) < 0) goto fail;
    /* Everything else the forward pass reads is in memory we own; the word
     * table, unless copied, keeps a descriptor of its own (st_rows). */
    st_close(m->st);
    m->st = NULL;
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
    st_rows_close(&m->tok_embd);
    free(m->owned);
    free(m->arena);
    free(m->layers);
    free(m->strings);
    free(m);
}

const struct eng_info *eng_model_info(const struct eng_model *m) {
    return &m->info;
}

const char *eng_strerror(int code) {
    switch (code) {
#define ENG_ERROR_CASE(name, value, text) \
    case name: return text;
        ENG_FOR_EACH_ERROR(ENG_ERROR_CASE)
#undef ENG_ERROR_CASE
    }
    return "unknown engine error";
}

/* Appends "a, b, c" (the adapter names) and the aliases to msg at k. */
static void task_names_list(const struct eng_info *in, char *msg, size_t n, int k) {
    for (int t = 0; t < in->n_tasks && k >= 0 && (size_t)k < n; t++)
        k += snprintf(msg + k, n - (size_t)k, "%s%s", t ? ", " : "", in->task_name[t]);
    for (int i = 0; i < in->n_task_alias && k >= 0 && (size_t)k < n; i++)
        k += snprintf(msg + k, n - (size_t)k, "%s%s",
                      i ? ", " : " (aliases: ", in->task_alias[i][0]);
    if (in->n_task_alias && k >= 0 && (size_t)k < n) snprintf(msg + k, n - (size_t)k, ")");
}

int eng_task_resolve(const struct eng_info *in, const char *name, char *err, size_t errlen) {
    if (!name) return ENG_TASK_NONE;
    const char *canon = name;
    for (int i = 0; i < in->n_task_alias; i++)
        if (!strcmp(name, in->task_alias[i][0])) canon = in->task_alias[i][1];
    for (int t = 0; t < in->n_tasks; t++)
        if (!strcmp(in->task_name[t], canon)) return t;
    if (err && errlen) {
        if (in->n_tasks == 0) {
            snprintf(err, errlen, "unknown task '%.100s': %s has no task adapters", name,
                     in->arch ? in->arch : "this model");
        } else {
            int k = snprintf(err, errlen, "unknown task '%.100s'; valid tasks: ", name);
            task_names_list(in, err, errlen, k);
        }
    }
    return ENG_ENOTASK;
}

int eng_task_lookup(const struct eng_model *m, const char *name) {
    return eng_task_resolve(&m->info, name, NULL, 0);
}
