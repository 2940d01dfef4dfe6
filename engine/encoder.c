/* encoder.c -- the forward pass over a packed batch (docs/model.md).
 *
 * All sequences of a batch are laid end to end: the matrix products run over
 * every token at once, attention runs within each sequence, each token knows
 * its task. A layer is an attention block and an FFN block, each followed by
 * its residual LayerNorm (post-LN):
 *   attention_block:
 *     qkv = x Wqkv_t^T + b          [n_tok][3H]   (Q|K|V, head-major)
 *     optional qk-norm              Q = LN_q(Q), K = LN_k(K) over the whole width
 *     position mode on Q, K         rotary: NeoX half rotation, positions per sequence
 *     ctx = softmax(Q K^T / sqrt(d) + bias) V, per sequence and head, in query tiles
 *                                   bias: ALiBi -slope_h |i - j| (else none)
 *     tmp = ctx Wo_t^T + bo;        x = LN(x + tmp)
 *                                   (with a second norm: x = LN2(LN(x + tmp) + x))
 *   ffn_block, in chunks of FFN_CHUNK tokens:
 *     MLP kind gelu:  tmp = fc2(gelu(fc1(x)))
 *     MLP kind geglu: u = fc1(x) [n][2F]; g = gelu(gate half) * other half; tmp = fc2(g)
 *     x = LN(x + tmp)
 * The position modes, MLP kinds and norm placements implemented here are the
 * enc_*_supported answers below; model.c refuses an architecture asking for
 * others, so the forward pass never meets one.
 * Task LoRA is the exact rank-r side path y += (x A_t^T) (s B_t)^T, per token
 * with its own task (the reference merges W + s B A; the same math), fused
 * into each thread's column slice right after its product.
 *
 * Memory: activations are sized once for the context's capacity. Exact
 * attention is fused (attn_kernels.h: key blocks, online softmax): a fixed
 * scratch of ~100 KB per thread whatever the context; the bf16 attention
 * runs over key blocks too (ATT_TILE x ATT_KEYS scores per thread, an online
 * softmax between blocks), never n^2.
 * Threads: a team of n_threads; each phase splits its work statically by
 * thread index (attention takes its tiles dynamically: each tile's result
 * does not depend on its thread).
 */
#include "engine/attn_kernels.h"
#include "engine/engine_impl.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#define ATT_TILE 64 /* query rows per attention tile */
/* bf16/int8 attention: keys per block (a tile's scores: 260 KB, in L2).
 * Against 512, one 8192-token document measured the same in bf16 and 6%
 * faster in int8, whose Q K^T converts the tile's queries once per block. */
#define ATT_KEYS 1024
/* The scores' row stride: 16 floats past the block, so that a tile's 16
 * rows (4 KB apart unpadded) do not all fall in the same L1 sets (Q K^T
 * measured 1.2x faster on AMX) */
#define ATT_SLD   (ATT_KEYS + 16)
#define FFN_CHUNK 512 /* tokens per fc1 -> gelu -> fc2 chunk */
#define LORA_DOWN 8   /* rows a producing phase writes before their down-projection */
/* The two T buffers (lora_t slots): inputs taken from x or att (qkv, out,
 * fc1), and the FFN's hidden rows (fc2), so that fc2's T of one chunk never
 * overwrites fc1's T of the chunks still to come. */
enum { LORA_T_IN = 0, LORA_T_FF = 1 };

struct eng_ctx {
    const struct eng_model *m;
    struct eng_team *team;
    int cap; /* tokens */
    int n_threads;
    float *x;                 /* [cap][H] hidden state */
    float *qkv;               /* [cap][3H] */
    float *att;               /* [cap][H] attention context */
    float *tmp;               /* [cap][H] projection output */
    float *ff;                /* [min(cap, FFN_CHUNK)][F] (GEGLU: [2F]) */
    float *ffg;               /* GEGLU: [min(cap, FFN_CHUNK)][F], the gated product */
    float *alibi;             /* ALiBi: [n_head] slopes */
    float *lora_t;            /* [2][cap][rank] X A_t^T by batch row: LORA_T_IN, LORA_T_FF */
    float *scores;            /* per thread, bf16/int8 attention: struct att_scratch's arrays;
                                 exact: attn kernel scratch */
    size_t scores_per_thread; /* floats */
    /* exact attention: each thread's compact copy of one (sequence, head)'s
     * K and V ([cap][d] each, after its scratch in scores), and which one */
    struct att_kv_key {
        unsigned pass;
        int is, h;
    } * att_kv;
    unsigned att_pass;          /* attention phases run by this context */
    float *rope_cos, *rope_sin; /* [cap][d/2] by position */
    int32_t *pos;               /* [cap] position in its sequence */
    int32_t *task_of;           /* [cap] task of each token (ENG_TASK_NONE: base weights) */
    bool any_task;              /* some token of the batch has a task */
    /* per-call view of the batch */
    const struct eng_seq *seqs;
    int n_seqs;
    int *seq_start; /* [cap + 1] first token of each sequence */
    double *acc;    /* [H] pooling accumulator */
    void **scratch; /* [n_threads] per-thread activation packing for wmat_gemm */
    /* bf16 attention (low-precision modes): K and V^T of every (sequence,
     * head), key block by key block, packed once per layer; grow-only, sized
     * per batch in eng_encode */
    bool att_bf16;
    const struct attn_kernel *att_exact; /* the exact modes' fused attention */
    const struct gemm_kernel *att_kern;  /* the WMAT_BF16 kernel (P V; Q K^T too unless att_k8) */
    const struct gemm_kernel *att_k8;    /* int8 mode: the WMAT_INT8 kernel of Q K^T, or NULL */
    struct wmat *att_w; /* per (sequence, head), per key block: K block, V^T block */
    struct att_item {
        size_t off, w0; /* byte offset into att_buf; index of its first block's K in att_w */
    } * att_items;      /* [n_seqs * n_head] */
    void *att_buf;
    size_t att_w_cap, att_items_cap, att_buf_cap;
    atomic_int next_item; /* attention work queue */
    /* eng_ctx_cancel counts requests in cancel_req; the engine thread has
     * honoured those up to cancel_done (a pass stops while they differ) */
    atomic_uint cancel_req;
    unsigned cancel_done;
    atomic_bool embd_failed; /* a word-embedding row could not be read this pass */
};

/* ---------- what this forward pass implements ---------- */

bool enc_pos_supported(enum eng_pos_kind k) {
    /* ENG_POS_ABSOLUTE would add a position row in embed_phase: not yet. */
    return k == ENG_POS_ROTARY || k == ENG_POS_ALIBI;
}

bool enc_ffn_supported(enum eng_ffn_kind k) {
    return k == ENG_FFN_GELU || k == ENG_FFN_GEGLU;
}

const struct gemm_kernel *enc_attn_bf16_kernel(const struct eng_info *in) {
    return in->dtype != ENG_DTYPE_F32 ? gemm_kernel_for(WMAT_BF16, in->cpu_features) : NULL;
}

/* A thread's bf16/int8 attention scratch, carved from its part of scores:
 * S, one block's raw scores; P, the softmax's bf16 words of S; PV, a later
 * block's product; per row the running max, sum and rescale; the query
 * tile's words (converted once per tile, used by every key block) and, int8,
 * their row parameters. */
struct att_scratch {
    float *S;                      /* [ATT_TILE][ATT_SLD] */
    uint32_t *P;                   /* [ATT_TILE][ATT_KEYS / 2] */
    float *PV;                     /* [ATT_TILE][d] */
    float *mx, *sum, *alpha, *qsx; /* [ATT_TILE] each */
    int32_t *qzx;                  /* [ATT_TILE] */
    uint32_t *Qw;                  /* [ATT_TILE][(d + 1) / 2] (int8 fills (d + 3) / 4 a row) */
};

static size_t att_scratch_floats(int d) {
    return (size_t)ATT_TILE * (ATT_SLD + ATT_KEYS / 2 + d + 5 + (d + 1) / 2);
}

static struct att_scratch att_scratch_at(float *base, int d) {
    struct att_scratch a;
    a.S = base;
    a.P = (uint32_t *)(a.S + ATT_TILE * ATT_SLD);
    a.PV = (float *)(a.P + ATT_TILE * ATT_KEYS / 2);
    a.mx = a.PV + (size_t)ATT_TILE * d;
    a.sum = a.mx + ATT_TILE;
    a.alpha = a.sum + ATT_TILE;
    a.qsx = a.alpha + ATT_TILE;
    a.qzx = (int32_t *)(a.qsx + ATT_TILE);
    a.Qw = (uint32_t *)(a.qzx + ATT_TILE);
    return a;
}

/* int8 mode with the bf16 attention: Q K^T in int8 (keys less their mean:
 * see att_pack_phase), P V in bf16. */
static const struct gemm_kernel *attn_int8_kernel(const struct eng_info *in) {
    return in->dtype == ENG_DTYPE_INT8 && enc_attn_bf16_kernel(in)
               ? gemm_kernel_for(WMAT_INT8, in->cpu_features)
               : NULL;
}

void enc_attn_kernel_name(const struct eng_info *in, enum eng_pos_kind pos, char *buf, size_t n) {
    const struct gemm_kernel *k = enc_attn_bf16_kernel(in), *k8 = attn_int8_kernel(in);
    int d = in->n_embd / in->n_head;
    if (k8)
        snprintf(buf, n, "%s/%s", gemm_kernel_name(k8), gemm_kernel_name(k));
    else if (k)
        snprintf(buf, n, "%s%s", gemm_kernel_name(k),
                 gemm_kernel_attends(k, d) && pos != ENG_POS_ALIBI ? " fused" : "");
    else
        snprintf(buf, n, "%s", attn_kernel_for(in->cpu_features, d)->name);
}

bool enc_norm_supported(enum eng_norm_place p) {
    return p == ENG_NORM_POST;
}

/* ---------- context ---------- */

/* Tables of the position mode. Rotary: for every position the context can
 * hold, cos/sin of theta = (float)pos * inv_freq in f32, as the reference.
 * ALiBi: the per-head slopes. */
static void pos_tables_init(struct eng_ctx *c) {
    const struct eng_info *in = &c->m->info;
    size_t cap = (size_t)c->cap, d = (size_t)(in->n_embd / in->n_head);
    float inv_freq[512];
    if (c->m->arch->pos == ENG_POS_ALIBI) {
        eng_alibi_slopes(in->n_head, c->alibi);
        return;
    }
    ENG_ASSERT(c->m->arch->pos == ENG_POS_ROTARY);
    ENG_ASSERT(d / 2 <= 512);
    ops_rope_inv_freq(in->rope_base, (int)d, inv_freq);
    for (size_t ps = 0; ps < cap; ps++)
        for (size_t i = 0; i < d / 2; i++) {
            float theta = (float)ps * inv_freq[i];
            c->rope_cos[ps * d / 2 + i] = cosf(theta);
            c->rope_sin[ps * d / 2 + i] = sinf(theta);
        }
}

struct eng_ctx *eng_ctx_new(const struct eng_model *m, const struct eng_params *p, char *err,
                            size_t errlen) {
    const struct eng_info *in = &m->info;
    struct eng_ctx *c = calloc(1, sizeof(*c));
    if (!c) goto oom;
    int n_threads = p && p->n_threads > 0 ? p->n_threads : 1;
    c->m = m;
    c->n_threads = n_threads;
    c->cap = p && p->max_batch_tokens > 0 ? p->max_batch_tokens : 8192;
    size_t cap = (size_t)c->cap, H = (size_t)in->n_embd, d = H / (size_t)in->n_head;
    size_t chunk = cap < FFN_CHUNK ? cap : FFN_CHUNK;
    bool geglu = m->arch->ffn == ENG_FFN_GEGLU, rotary = m->arch->pos == ENG_POS_ROTARY;
    c->team = team_new(n_threads);
    c->x = malloc(sizeof(float) * cap * H);
    c->qkv = malloc(sizeof(float) * cap * 3 * H);
    c->att = malloc(sizeof(float) * cap * H);
    c->tmp = malloc(sizeof(float) * cap * H);
    c->ff = malloc(sizeof(float) * chunk * (size_t)in->n_ff * (geglu ? 2 : 1));
    c->ffg = geglu ? malloc(sizeof(float) * chunk * (size_t)in->n_ff) : NULL;
    c->alibi = malloc(sizeof(float) * (size_t)in->n_head);
    c->lora_t = malloc(sizeof(float) * 2 * cap * (size_t)(in->lora_rank > 0 ? in->lora_rank : 1));
    c->rope_cos = rotary ? malloc(sizeof(float) * cap * d / 2) : NULL;
    c->rope_sin = rotary ? malloc(sizeof(float) * cap * d / 2) : NULL;
    c->pos = malloc(sizeof(int32_t) * cap);
    c->task_of = malloc(sizeof(int32_t) * cap);
    c->seq_start = malloc(sizeof(int) * (cap + 1));
    c->acc = malloc(sizeof(double) * H);
    c->scratch = calloc((size_t)n_threads, sizeof(void *));
    size_t sb = 0;
    const struct eng_layer *L0 = &m->layers[0];
    c->att_kern = enc_attn_bf16_kernel(in);
    c->att_bf16 = c->att_kern != NULL;
    c->att_k8 = attn_int8_kernel(in);
    c->att_exact = attn_kernel_for(in->cpu_features, (int)d);
    /* exact: the kernel's scratch and a compact K and V per thread */
    c->scores_per_thread =
        c->att_bf16 ? att_scratch_floats((int)d) : attn_scratch_floats((int)d) + 2 * cap * d;
    c->att_kv = calloc((size_t)n_threads, sizeof(*c->att_kv));
    c->scores = aligned_alloc(64, sizeof(float) * (size_t)n_threads * c->scores_per_thread);
    /* the attention operands as wmat shapes: K (n_in = d), V^T (n_in = a key block) */
    struct wmat wk = {.kind = c->att_k8 ? WMAT_INT8 : WMAT_BF16,
                      .n_out = 16,
                      .n_in = (int)d,
                      .k = c->att_k8 ? c->att_k8 : c->att_kern};
    struct wmat wv = {.kind = WMAT_BF16, .n_out = (int)d, .n_in = ATT_KEYS, .k = c->att_kern};
    const struct wmat *wl[6] = {&L0->qkv.w, &L0->out.w, &L0->fc1.w, &L0->fc2.w, &wk, &wv};
    for (int i = 0; i < (c->att_bf16 ? 6 : 4); i++) {
        size_t b =
            i < 4 ? wmat_scratch_bytes(wl[i], c->cap) : wmat_words_scratch_bytes(wl[i], ATT_TILE);
        sb = b > sb ? b : sb;
    }
    for (int i = 0; sb && c->scratch && i < n_threads; i++)
        if (!(c->scratch[i] = malloc(sb))) goto oom;
    if (!c->acc || !c->scratch || !c->team || !c->x || !c->qkv || !c->att || !c->tmp || !c->ff ||
        !c->lora_t || !c->task_of || !c->scores || !c->att_kv ||
        (rotary && (!c->rope_cos || !c->rope_sin)) || !c->pos || !c->seq_start ||
        (geglu && !c->ffg) || !c->alibi)
        goto oom;
    pos_tables_init(c);
    return c;
oom:
    snprintf(err, errlen, "out of memory for a %d-token engine context",
             p ? p->max_batch_tokens : 0);
    eng_ctx_free(c);
    return NULL;
}

void eng_ctx_free(struct eng_ctx *c) {
    if (!c) return;
    team_free(c->team);
    free(c->x);
    free(c->qkv);
    free(c->att);
    free(c->tmp);
    free(c->ff);
    free(c->ffg);
    free(c->alibi);
    free(c->lora_t);
    free(c->scores);
    free(c->att_kv);
    free(c->rope_cos);
    free(c->rope_sin);
    free(c->pos);
    free(c->task_of);
    free(c->seq_start);
    free(c->acc);
    for (int i = 0; c->scratch && i < c->n_threads; i++)
        free(c->scratch[i]);
    free(c->scratch);
    free(c->att_w);
    free(c->att_items);
    free(c->att_buf);
    free(c);
}

int eng_ctx_capacity(const struct eng_ctx *c) {
    return c->cap;
}

const struct eng_model *eng_ctx_model(const struct eng_ctx *c) {
    return c->m;
}

/* ---------- phases ---------- */

/* Even static split of [0, n) for thread ith of nth. */
static void split(int n, int ith, int nth, int *lo, int *hi) {
    *lo = (int)((long)n * ith / nth);
    *hi = (int)((long)n * (ith + 1) / nth);
}

struct embed_job {
    struct eng_ctx *c;
};

/* x[i] = E[id] + s * A_t[id] . B_t + type_t, then LayerNorm. */
static void embed_phase(void *arg, int ith, int nth) {
    struct eng_ctx *c = ((struct embed_job *)arg)->c;
    const struct eng_model *m = c->m;
    int H = m->info.n_embd, r = m->info.lora_rank, V = m->info.n_vocab;
    for (int is = 0; is < c->n_seqs; is++) {
        const struct eng_seq *s = &c->seqs[is];
        int lo, hi;
        split(s->n_ids, ith, nth, &lo, &hi);
        for (int it = lo; it < hi; it++) {
            int32_t id = s->ids[it];
            float *xi = c->x + (size_t)(c->seq_start[is] + it) * H;
            if (st_rows_get_f32(&m->tok_embd, id, xi) != 0) {
                atomic_store_explicit(&c->embd_failed, true, memory_order_relaxed);
                return;
            }
            const float *type = m->type_embd + (size_t)(s->task + 1) * H;
            if (s->task >= 0) {
                float a[256];
                for (int k = 0; k < r; k++)
                    a[k] = m->lora_scale * st_get_f32(m->tok_lora_a_dt, m->tok_lora_a,
                                                      ((int64_t)s->task * V + id) * r + k);
                const float *B = m->tok_lora_b + (size_t)s->task * r * H;
                for (int k = 0; k < r; k++)
                    for (int j = 0; j < H; j++)
                        xi[j] += a[k] * B[(size_t)k * H + j];
            }
            for (int j = 0; j < H; j++)
                xi[j] += type[j];
            ops_add_layernorm(xi, NULL, 1, H, m->emb_ln_w, m->emb_ln_b, m->info.ln_eps);
        }
    }
}

struct linear_job {
    struct eng_ctx *c;
    const struct eng_linear *l;
    const float *x; /* [n][n_in] */
    float *y;       /* [n][n_out] */
    int row0, n;    /* token rows [row0, row0 + n) of the batch */
    float *t;       /* this linear's T rows, by batch row ([cap][rank]) */
};

/* Y[:, cols] = X W[cols]^T + b[cols], then each row's LoRA update on the same
 * columns; columns split by thread. */
static void linear_phase(void *arg, int ith, int nth) {
    const struct linear_job *j = arg;
    const struct eng_ctx *c = j->c;
    const struct eng_linear *l = j->l;
    int r = c->m->info.lora_rank, lo, hi;
    /* split columns in multiples of 16 so each share is vector-friendly */
    split((l->n_out + 15) / 16, ith, nth, &lo, &hi);
    lo *= 16;
    hi = hi * 16 < l->n_out ? hi * 16 : l->n_out;
    if (lo >= hi) return;
    struct wmat_lora lora = {r, j->t + (size_t)j->row0 * r, c->task_of + j->row0, l->lora_bt};
    wmat_gemm_lora(&l->w, j->n, j->x, l->n_in, l->b, c->any_task ? &lora : NULL, j->y, l->n_out, lo,
                   hi, c->scratch[ith]);
}

/* T[row0 + i] = X[i] A_t^T for rows lo <= i < hi with a task (x: the
 * linear's input, row i at x + i * n_in), runs of one task at a time. */
static void lora_down_rows(const struct eng_ctx *c, const struct eng_linear *l, const float *x,
                           float *t_out, int row0, int lo, int hi) {
    int r = c->m->info.lora_rank;
    for (int i = lo; i < hi;) {
        int t = c->task_of[row0 + i], n = 1;
        while (i + n < hi && c->task_of[row0 + i + n] == t)
            n++;
        if (t >= 0)
            ops_lora_down(x + (size_t)i * l->n_in, l->n_in, n, l->n_in,
                          l->lora_a + (size_t)t * r * l->n_in, r, t_out + (size_t)(row0 + i) * r);
        i += n;
    }
}

/* The down-projection as a phase of its own, rows split by thread: for
 * inputs no earlier phase produced row by row (the embedding's output,
 * attention's context). It streams X from memory once more. */
static void lora_down_phase(void *arg, int ith, int nth) {
    const struct linear_job *j = arg;
    int lo, hi;
    split(j->n, ith, nth, &lo, &hi);
    lora_down_rows(j->c, j->l, j->x, j->t, j->row0, lo, hi);
}

/* y[rows] = x[rows] W_t^T + b for batch rows [row0, row0 + n), with the
 * LoRA update of rows that have a task; t: where T of these rows is (slot
 * LORA_T_IN or LORA_T_FF), t_done: the phase that produced x already wrote
 * it (lora_down_rows), else a phase of its own computes it first. */
static void linear(struct eng_ctx *c, const struct eng_linear *l, const float *x, float *y,
                   int row0, int n, float *t, bool t_done) {
    struct linear_job j = {c, l, x, y, row0, n, t};
    if (c->any_task && !t_done) team_run(c->team, lora_down_phase, &j);
    team_run(c->team, linear_phase, &j);
}

/* The T slots of lora_t. */
static float *lora_slot(struct eng_ctx *c, int slot) {
    return c->lora_t + (size_t)slot * (size_t)c->cap * (size_t)c->m->info.lora_rank;
}

struct rows_job {
    struct eng_ctx *c;
    float *x;
    const float *r;
    const float *w, *b;
    int n_rows, n;
    const struct eng_layer *L; /* qk_norm_phase: the layer's norms */
    /* with a task in the batch: the linear that takes the rows this phase
     * writes (NULL: none), its T slot, and the batch row of row 0 */
    const struct eng_linear *down;
    float *t;
    int row0;
};

/* Runs a row phase's work `fn` over its rows [lo, hi) in blocks of
 * LORA_DOWN, each block's down-projection for j->down right after it, while
 * the block's rows are still in L1/L2. */
static void rows_then_down(const struct rows_job *j, const float *out, int lo, int hi,
                           void (*fn)(const struct rows_job *, int, int)) {
    if (!j->down) {
        fn(j, lo, hi);
        return;
    }
    for (int b0 = lo; b0 < hi; b0 += LORA_DOWN) {
        int b1 = hi - b0 < LORA_DOWN ? hi : b0 + LORA_DOWN;
        fn(j, b0, b1);
        lora_down_rows(j->c, j->down, out, j->t, j->row0, b0, b1);
    }
}

static void layernorm_rows(const struct rows_job *j, int lo, int hi) {
    ops_add_layernorm(j->x + (size_t)lo * j->n, j->r + (size_t)lo * j->n, hi - lo, j->n, j->w, j->b,
                      j->c->m->info.ln_eps);
}

static void layernorm_phase(void *arg, int ith, int nth) {
    const struct rows_job *j = arg;
    int lo, hi;
    split(j->n_rows, ith, nth, &lo, &hi);
    rows_then_down(j, j->x, lo, hi, layernorm_rows);
}

static void gelu_rows(const struct rows_job *j, int lo, int hi) {
    ops_gelu(j->x + (size_t)lo * j->n, (int64_t)(hi - lo) * j->n);
}

static void gelu_phase(void *arg, int ith, int nth) {
    const struct rows_job *j = arg;
    int lo, hi;
    split(j->n_rows, ith, nth, &lo, &hi);
    rows_then_down(j, j->x, lo, hi, gelu_rows);
}

static void rope_phase(void *arg, int ith, int nth) {
    struct eng_ctx *c = ((struct rows_job *)arg)->c;
    int H = c->m->info.n_embd, nh = c->m->info.n_head, d = H / nh, n_tok = c->seq_start[c->n_seqs];
    int lo, hi;
    split(n_tok, ith, nth, &lo, &hi);
    for (int it = lo; it < hi; it++) {
        const float *cs = c->rope_cos + (size_t)c->pos[it] * (d / 2);
        const float *sn = c->rope_sin + (size_t)c->pos[it] * (d / 2);
        float *row = c->qkv + (size_t)it * 3 * H;
        for (int h = 0; h < 2 * nh; h++)
            ops_rope_head(row + h * d, d, cs, sn); /* Q and K */
    }
}

/* Q = LN_q(Q), K = LN_k(K) per token over the whole width (before the
 * heads split), rows split by thread. */
static void qk_norm_phase(void *arg, int ith, int nth) {
    const struct rows_job *j = arg;
    struct eng_ctx *c = j->c;
    const struct eng_layer *L = j->L;
    int H = c->m->info.n_embd, lo, hi;
    split(j->n_rows, ith, nth, &lo, &hi);
    for (int it = lo; it < hi; it++) {
        float *row = c->qkv + (size_t)it * 3 * H;
        ops_add_layernorm(row, NULL, 1, H, L->qn_w, L->qn_b, c->m->info.ln_eps);
        ops_add_layernorm(row + H, NULL, 1, H, L->kn_w, L->kn_b, c->m->info.ln_eps);
    }
}

/* GEGLU: g[i] = gelu(gate half of u[i]) * other half, u = c->ff [n][2F],
 * g = c->ffg [n][F]; rows split by thread. */
static void glu_rows(const struct rows_job *j, int lo, int hi) {
    struct eng_ctx *c = j->c;
    int F = j->n;
    bool second = c->m->arch->glu_gate_second;
    for (int i = lo; i < hi; i++) {
        const float *u = c->ff + (size_t)i * 2 * F;
        const float *gate = second ? u + F : u, *val = second ? u : u + F;
        float *g = c->ffg + (size_t)i * F;
        memcpy(g, gate, sizeof(float) * (size_t)F);
        ops_gelu(g, F);
        for (int k = 0; k < F; k++)
            g[k] *= val[k];
    }
}

static void glu_phase(void *arg, int ith, int nth) {
    const struct rows_job *j = arg;
    int lo, hi;
    split(j->n_rows, ith, nth, &lo, &hi);
    rows_then_down(j, j->c->ffg, lo, hi, glu_rows);
}

/* Bytes of one packed K block of nk keys (int8 or bf16). */
static size_t att_k_bytes(const struct eng_ctx *c, int nk, int d) {
    return c->att_k8 ? wmat_int8_bytes(nk, d) : wmat_bf16_bytes(nk, d);
}

/* bf16 attention: packs each (sequence, head)'s keys in blocks of
 * ATT_KEYS: K block (keys x d) and V^T block (d x keys), one after the other
 * into att_buf; items (sequence, head) are taken dynamically.
 * int8 K: each key less the mean key of its (sequence, head), then
 * quantised per key. Subtracting one vector from every key adds q . mean to
 * a query's scores, the same for all its keys: the softmax is unchanged,
 * while what is left is what differs between keys (keys share a large
 * common part, which would otherwise take most of each key's 8 bits). */
static void att_pack_phase(void *arg, int ith, int nth) {
    struct eng_ctx *c = ((struct rows_job *)arg)->c;
    (void)ith, (void)nth;
    int H = c->m->info.n_embd, nh = c->m->info.n_head, d = H / nh, ld = 3 * H;
    float center[1024];
    ENG_ASSERT(d <= 1024);
    for (;;) {
        int item = atomic_fetch_add(&c->next_item, 1);
        if (item >= c->n_seqs * nh) return;
        int is = item / nh, h = item % nh, n = c->seqs[is].n_ids;
        const float *K = c->qkv + (size_t)c->seq_start[is] * ld + H + h * d;
        const float *V = K + H;
        char *buf = (char *)c->att_buf + c->att_items[item].off;
        struct wmat *w = &c->att_w[c->att_items[item].w0];
        if (c->att_k8) { /* the mean key: sums in key order, whatever the batch */
            for (int k = 0; k < d; k++)
                center[k] = 0;
            for (int j = 0; j < n; j++)
                for (int k = 0; k < d; k++)
                    center[k] += K[(size_t)j * ld + k];
            for (int k = 0; k < d; k++)
                center[k] /= (float)n;
        }
        for (int j0 = 0; j0 < n; j0 += ATT_KEYS, w += 2) {
            int nk = n - j0 < ATT_KEYS ? n - j0 : ATT_KEYS;
            if (c->att_k8)
                wmat_int8_pack(&w[0], c->att_k8, K + (size_t)j0 * ld, ld, center, nk, d, buf);
            else
                wmat_bf16_pack(&w[0], c->att_kern, K + (size_t)j0 * ld, ld, 1, nk, d, buf);
            buf += att_k_bytes(c, nk, d);
            wmat_bf16_pack(&w[1], c->att_kern, V + (size_t)j0 * ld, 1, ld, d, nk, buf);
            buf += wmat_bf16_bytes(d, nk);
        }
    }
}

/* Grows the bf16 attention buffers for this batch (once per eng_encode,
 * not per layer). */
static int att_reserve(struct eng_ctx *c) {
    int nh = c->m->info.n_head, d = c->m->info.n_embd / nh;
    size_t items = (size_t)c->n_seqs * nh, bytes = 0, n_w = 0;
    for (int is = 0; is < c->n_seqs; is++)
        n_w += 2 * (size_t)nh * ((c->seqs[is].n_ids + ATT_KEYS - 1) / ATT_KEYS);
    if (items > c->att_items_cap) {
        struct att_item *a = realloc(c->att_items, sizeof(*a) * items);
        if (!a) return ENG_ENOMEM;
        c->att_items = a;
        c->att_items_cap = items;
    }
    if (n_w > c->att_w_cap) {
        struct wmat *w = realloc(c->att_w, sizeof(*w) * n_w);
        if (!w) return ENG_ENOMEM;
        c->att_w = w;
        c->att_w_cap = n_w;
    }
    n_w = 0;
    for (size_t it = 0; it < items; it++) {
        int n = c->seqs[it / nh].n_ids;
        c->att_items[it] = (struct att_item){bytes, n_w};
        for (int j0 = 0; j0 < n; j0 += ATT_KEYS, n_w += 2) {
            int nk = n - j0 < ATT_KEYS ? n - j0 : ATT_KEYS;
            bytes += att_k_bytes(c, nk, d) + wmat_bf16_bytes(d, nk);
        }
    }
    if (bytes > c->att_buf_cap) {
        free(c->att_buf);
        c->att_buf = aligned_alloc(64, bytes);
        c->att_buf_cap = c->att_buf ? bytes : 0;
        if (!c->att_buf) return ENG_ENOMEM;
    }
    return 0;
}

/* ALiBi: S[i][jk] -= slope * |q0 + i - (j0 + jk)| for a tile of nq query
 * rows over the nk keys from j0 (row stride ld; the distance is exact in
 * float, the slope a float constant). */
static void alibi_bias(float *S, int nq, int nk, int ld, int q0, int j0, float slope) {
    for (int i = 0; i < nq; i++) {
        float *row = S + (size_t)i * ld;
        int qi = q0 + i;
        for (int jk = 0; jk < nk; jk++) {
            int j = j0 + jk;
            row[jk] -= slope * (float)(qi > j ? qi - j : j - qi);
        }
    }
}

/* bf16 attention of one tile (nq query rows from q0 of sequence is, head
 * h): the queries converted once into the K kernel's words; then, where
 * the bf16 kernel has it (wmat_attend_words: bf16 keys, no ALiBi), its
 * fused attention over all the key blocks; else per key block,
 * S = Q K_b^T (bf16 or int8 products), an online softmax step that writes P
 * as bf16 words, O = O alpha + P V_b; then O /= the softmax sums. */
static void att_tile_bf16(struct eng_ctx *c, int ith, int is, int h, int q0, int nq, const float *Q,
                          float *O) {
    int H = c->m->info.n_embd, nh = c->m->info.n_head, d = H / nh, ld = 3 * H;
    int n = c->seqs[is].n_ids;
    float scale = 1.0f / sqrtf((float)d);
    bool alibi = c->m->arch->pos == ENG_POS_ALIBI;
    struct att_scratch a = att_scratch_at(c->scores + (size_t)ith * c->scores_per_thread, d);
    float *S = a.S;
    const struct wmat *w = &c->att_w[c->att_items[(size_t)is * nh + h].w0];
    void *scratch = c->scratch[ith];
    int ldq = (d + 1) / 2;
    wmat_words_from(&w[0], nq, Q, ld, a.Qw, ldq, a.qsx, a.qzx);
    struct wmat_words qx = {a.Qw, ldq, a.qsx, a.qzx}, px = {a.P, ATT_KEYS / 2, NULL, NULL};
    if (!alibi && !c->att_k8 && /* fused, where the kernel has it ("fused" in the logs) */
        wmat_attend_words(w, (n + ATT_KEYS - 1) / ATT_KEYS, &qx, nq, scale, O, H) == 0)
        return;
    for (int i = 0; i < nq; i++)
        a.mx[i] = -INFINITY, a.sum[i] = 0;
    for (int j0 = 0; j0 < n; j0 += ATT_KEYS, w += 2) {
        int nk = w[0].n_out;
        wmat_gemm_words(&w[0], nq, &qx, S, ATT_SLD, 0, nk, scratch); /* S = Q K_b^T */
        float s = scale;
        if (alibi) {
            for (int i = 0; i < nq; i++)
                ops_scale(S + (size_t)i * ATT_SLD, nk, scale);
            alibi_bias(S, nq, nk, ATT_SLD, q0, j0, c->alibi[h]);
            s = 1.0f;
        }
        wmat_softmax_words(&w[1], S, nq, nk, ATT_SLD, s, a.mx, a.sum, a.alpha, a.P, ATT_KEYS / 2);
        float *dst = j0 ? a.PV : O; /* the first block writes O itself */
        int ldd = j0 ? d : H;
        wmat_gemm_words(&w[1], nq, &px, dst, ldd, 0, d, scratch); /* P V_b */
        for (int i = 0; j0 && i < nq; i++) {
            float *o = O + (size_t)i * H, al = a.alpha[i];
            const float *pv = a.PV + (size_t)i * d;
            for (int k = 0; k < d; k++)
                o[k] = o[k] * al + pv[k];
        }
    }
    for (int i = 0; i < nq; i++)
        ops_scale(O + (size_t)i * H, d, 1.0f / a.sum[i]);
}

/* Has eng_ctx_cancel asked this pass to stop? (Any thread of the team.) */
static bool cancel_pending(struct eng_ctx *c) {
    return atomic_load_explicit(&c->cancel_req, memory_order_relaxed) != c->cancel_done;
}

/* The engine thread's check: a pending request is honoured (used up) here;
 * one made after this load is left for the next check or pass. */
static bool cancelled(struct eng_ctx *c) {
    unsigned r = atomic_load_explicit(&c->cancel_req, memory_order_relaxed);
    if (r == c->cancel_done) return false;
    c->cancel_done = r;
    return true;
}

void eng_ctx_cancel(struct eng_ctx *c) {
    atomic_fetch_add_explicit(&c->cancel_req, 1, memory_order_relaxed);
}

/* One work item = (sequence, head, query tile); items are taken dynamically.
 * A cancelled pass takes no more items (its output is discarded). */
static void attention_phase(void *arg, int ith, int nth) {
    struct eng_ctx *c = ((struct rows_job *)arg)->c;
    (void)nth;
    int H = c->m->info.n_embd, nh = c->m->info.n_head, d = H / nh, ld = 3 * H;
    float scale = 1.0f / sqrtf((float)d);
    bool alibi = c->m->arch->pos == ENG_POS_ALIBI;
    float *S = c->scores + (size_t)ith * c->scores_per_thread;
    while (!cancel_pending(c)) {
        int item = atomic_fetch_add(&c->next_item, 1), is = 0;
        /* locate the item: sequences in order, each with nh * tiles items */
        int base = 0;
        for (is = 0; is < c->n_seqs; is++) {
            int n = c->seqs[is].n_ids, tiles = (n + ATT_TILE - 1) / ATT_TILE;
            if (item < base + nh * tiles) break;
            base += nh * tiles;
        }
        if (is == c->n_seqs) return;
        int n = c->seqs[is].n_ids, tiles = (n + ATT_TILE - 1) / ATT_TILE;
        int h = (item - base) / tiles, q0 = (item - base) % tiles * ATT_TILE;
        int nq = n - q0 < ATT_TILE ? n - q0 : ATT_TILE;
        const float *Q = c->qkv + (size_t)(c->seq_start[is] + q0) * ld + h * d;
        const float *K = c->qkv + (size_t)c->seq_start[is] * ld + H + h * d;
        const float *V = c->qkv + (size_t)c->seq_start[is] * ld + 2 * H + h * d;
        float *O = c->att + (size_t)(c->seq_start[is] + q0) * H + h * d;
        if (c->att_bf16) {
            att_tile_bf16(c, ith, is, h, q0, nq, Q, O);
            continue;
        }
        /* fused: key blocks, ALiBi and an online softmax inside the kernel,
         * over this thread's compact copy of the head's K and V (rows 3H
         * apart would share L1 sets and TLB entries on every tile) */
        float *kc = S + attn_scratch_floats(d), *vc = kc + (size_t)c->cap * d;
        struct att_kv_key *kv = &c->att_kv[ith];
        if (kv->pass != c->att_pass || kv->is != is || kv->h != h) {
            for (int j = 0; j < n; j++) {
                memcpy(kc + (size_t)j * d, K + (size_t)j * ld, sizeof(float) * (size_t)d);
                memcpy(vc + (size_t)j * d, V + (size_t)j * ld, sizeof(float) * (size_t)d);
            }
            *kv = (struct att_kv_key){c->att_pass, is, h};
        }
        struct attn_tile at = {.nq = nq,
                               .n = n,
                               .d = d,
                               .q0 = q0,
                               .q = Q,
                               .k = kc,
                               .v = vc,
                               .ldq = (size_t)ld,
                               .ldk = (size_t)d,
                               .ldv = (size_t)d,
                               .o = O,
                               .ldo = (size_t)H,
                               .scale = scale,
                               .slope = alibi ? c->alibi[h] : 0.0f,
                               .scratch = S};
        c->att_exact->tile(&at);
    }
}

/* Applies the position mode to Q and K of every token (rotary); ALiBi acts
 * on the scores instead (attention_phase). */
static void position_qk(struct eng_ctx *c) {
    struct rows_job rj = {.c = c};
    switch (c->m->arch->pos) {
    case ENG_POS_ROTARY: team_run(c->team, rope_phase, &rj); break;
    case ENG_POS_ALIBI: break;
    default: ENG_ASSERT(!"position mode refused at load"); /* see enc_pos_supported */
    }
}

/* c->tmp = attention over c->x (projections, position mode, per-sequence
 * softmax attention, output projection); qkv_t: the previous phase wrote
 * the qkv projection's T. */
static void attention_block(struct eng_ctx *c, const struct eng_layer *L, int n_tok, bool qkv_t) {
    struct rows_job rj = {.c = c};
    float *t_in = lora_slot(c, LORA_T_IN);
    linear(c, &L->qkv, c->x, c->qkv, 0, n_tok, t_in, qkv_t);
    if (L->qn_w) {
        struct rows_job qj = {c, NULL, NULL, NULL, NULL, n_tok, 0, L};
        team_run(c->team, qk_norm_phase, &qj);
    }
    position_qk(c);
    if (c->att_bf16) {
        atomic_store(&c->next_item, 0);
        team_run(c->team, att_pack_phase, &rj);
    }
    atomic_store(&c->next_item, 0);
    c->att_pass++; /* new K and V: the threads' compact copies are stale */
    team_run(c->team, attention_phase, &rj);
    linear(c, &L->out, c->att, c->tmp, 0, n_tok, t_in, false);
}

/* c->tmp = the MLP over c->x, in chunks: fc2(gelu(fc1(x))) (gelu kind) or
 * fc2(gelu(gate) * value) (geglu kind, fc1 giving both halves). With a task
 * in the batch, the norm before wrote fc1's T, the activation phase writes
 * fc2's. */
static void ffn_block(struct eng_ctx *c, const struct eng_layer *L, int n_tok) {
    int H = c->m->info.n_embd, F = c->m->info.n_ff;
    enum eng_ffn_kind kind = c->m->arch->ffn;
    ENG_ASSERT(kind == ENG_FFN_GELU || kind == ENG_FFN_GEGLU); /* see enc_ffn_supported */
    for (int r0 = 0; r0 < n_tok && !cancel_pending(c); r0 += FFN_CHUNK) {
        int n = n_tok - r0 < FFN_CHUNK ? n_tok - r0 : FFN_CHUNK;
        float *t_ff = lora_slot(c, LORA_T_FF);
        linear(c, &L->fc1, c->x + (size_t)r0 * H, c->ff, r0, n, lora_slot(c, LORA_T_IN), true);
        struct rows_job rj = {
            c, c->ff, NULL, NULL, NULL, n, F, NULL, c->any_task ? &L->fc2 : NULL, t_ff, r0};
        team_run(c->team, kind == ENG_FFN_GEGLU ? glu_phase : gelu_phase, &rj);
        linear(c, &L->fc2, kind == ENG_FFN_GEGLU ? c->ffg : c->ff, c->tmp + (size_t)r0 * H, r0, n,
               t_ff, true);
    }
}

/* x = LN(x + r) over n_tok rows (a post-LN residual); with a task in the
 * batch and `next` not NULL, also next's T of the rows (slot LORA_T_IN). */
static void add_norm(struct eng_ctx *c, float *x, const float *r, const float *w, const float *b,
                     int n_tok, const struct eng_linear *next) {
    struct rows_job rj = {c,
                          x,
                          r,
                          w,
                          b,
                          n_tok,
                          c->m->info.n_embd,
                          NULL,
                          c->any_task ? next : NULL,
                          lora_slot(c, LORA_T_IN),
                          0};
    team_run(c->team, layernorm_phase, &rj);
}

/* One layer; false (the hidden state then is garbage) when the pass was
 * cancelled. next: the following layer (NULL after the last), whose qkv T
 * the last norm writes; qkv_t: this layer's qkv T is written (not layer 0:
 * the embedding phase leaves it to a phase of its own). */
static bool layer_forward(struct eng_ctx *c, const struct eng_layer *L,
                          const struct eng_layer *next, int n_tok, bool qkv_t) {
    if (cancelled(c)) return false;
    attention_block(c, L, n_tok, qkv_t);
    if (cancelled(c)) return false;
    if (L->ln1b_w) { /* a = LN(attn + x); x = LN2(a + x): the input added twice */
        add_norm(c, c->tmp, c->x, L->ln1_w, L->ln1_b, n_tok, NULL);
        add_norm(c, c->x, c->tmp, L->ln1b_w, L->ln1b_b, n_tok, &L->fc1);
    } else {
        add_norm(c, c->x, c->tmp, L->ln1_w, L->ln1_b, n_tok, &L->fc1);
    }
    ffn_block(c, L, n_tok);
    if (cancelled(c)) return false;
    add_norm(c, c->x, c->tmp, L->ln2_w, L->ln2_b, n_tok, next ? &next->qkv : NULL);
    return true;
}

/* Checks ids, tasks and spans; builds positions, tasks and sequence starts. */
static int batch_prepare(struct eng_ctx *c, const struct eng_seq *seqs, int n_seqs) {
    const struct eng_info *in = &c->m->info;
    long total = 0;
    for (int is = 0; is < n_seqs; is++) {
        const struct eng_seq *s = &seqs[is];
        if (s->n_ids < 1 || !s->ids || !s->out) return ENG_EINVAL;
        if (s->task != ENG_TASK_NONE && (s->task < 0 || s->task >= in->n_tasks)) return ENG_EINVAL;
        for (int i = 0; i < s->n_ids; i++)
            if (s->ids[i] < 0 || s->ids[i] >= in->n_vocab) return ENG_EINVAL;
        for (int k = 0; k < s->n_spans; k++) {
            int a = s->spans[2 * k], b = s->spans[2 * k + 1];
            if (a < 0 || b > s->n_ids || a >= b) return ENG_EINVAL;
        }
        if (s->n_spans < 0 || (s->n_spans > 0 && !s->spans)) return ENG_EINVAL;
        total += s->n_ids;
        if (total > c->cap) return ENG_ETOOLONG;
    }
    c->seqs = seqs;
    c->n_seqs = n_seqs;
    c->any_task = false;
    int t0 = 0;
    for (int is = 0; is < n_seqs; is++) {
        c->seq_start[is] = t0;
        for (int i = 0; i < seqs[is].n_ids; i++) {
            c->pos[t0 + i] = i;
            c->task_of[t0 + i] = seqs[is].task;
        }
        c->any_task |= seqs[is].task >= 0;
        t0 += seqs[is].n_ids;
    }
    c->seq_start[n_seqs] = t0;
    return 0;
}

static void mean_pool_spans(struct eng_ctx *c) {
    int H = c->m->info.n_embd;
    for (int is = 0; is < c->n_seqs; is++) {
        const struct eng_seq *s = &c->seqs[is];
        int n_out = s->n_spans > 0 ? s->n_spans : 1;
        for (int k = 0; k < n_out; k++) {
            int a = s->n_spans ? s->spans[2 * k] : 0,
                b = s->n_spans ? s->spans[2 * k + 1] : s->n_ids;
            float *out = s->out + (size_t)k * H;
            /* mean over the span's rows, accumulated in double */
            memset(c->acc, 0, sizeof(double) * (size_t)H);
            for (int it = a; it < b; it++) {
                const float *row = c->x + (size_t)(c->seq_start[is] + it) * H;
                for (int j = 0; j < H; j++)
                    c->acc[j] += row[j];
            }
            for (int j = 0; j < H; j++)
                out[j] = (float)(c->acc[j] / (b - a));
        }
    }
}

int eng_encode(struct eng_ctx *c, const struct eng_seq *seqs, int32_t n_seqs) {
    if (n_seqs <= 0) return n_seqs == 0 ? 0 : ENG_EINVAL;
    int rc = batch_prepare(c, seqs, n_seqs);
    if (rc) return rc;
    int n_tok = c->seq_start[n_seqs];
    if (c->att_bf16 && (rc = att_reserve(c)) != 0) return rc;
    struct embed_job ej = {c};
    atomic_store_explicit(&c->embd_failed, false, memory_order_relaxed);
    if (st_rows_check(&c->m->tok_embd) == 0) team_run(c->team, embed_phase, &ej);
    if (st_rows_check(&c->m->tok_embd) != 0 ||
        atomic_load_explicit(&c->embd_failed, memory_order_relaxed)) {
        c->seqs = NULL;
        return ENG_EIO;
    }
    for (int il = 0, nl = c->m->info.n_layer; il < nl; il++)
        if (!layer_forward(c, &c->m->layers[il], il + 1 < nl ? &c->m->layers[il + 1] : NULL, n_tok,
                           il > 0)) {
            c->seqs = NULL;
            return ENG_ECANCELED;
        }
    mean_pool_spans(c);
    c->seqs = NULL;
    return 0;
}

int eng_embd_finish(const float *pooled, int n_embd, int dims, bool normalize, float *out) {
    if (dims <= 0 || dims > n_embd) dims = n_embd;
    double ss = 0;
    for (int j = 0; j < dims; j++)
        ss += (double)pooled[j] * pooled[j];
    double scale = 1.0;
    if (normalize) {
        double norm = sqrt(ss);
        scale = 1.0 / (norm > 1e-12 ? norm : 1e-12);
    }
    for (int j = 0; j < dims; j++)
        out[j] = (float)(pooled[j] * scale);
    return dims;
}
