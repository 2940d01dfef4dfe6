/* embed.c -- texts -> model sequences -> pooled vectors (see embed.h). */
#include "pipeline/embed.h"
#include "util/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int emb_check_model(const tok *t, const struct eng_model *m, int max_in, char *err, size_t errlen) {
    const struct eng_info *in = eng_model_info(m);
    int32_t nv = tok_n_vocab(t), bos = tok_bos(t), eos = tok_eos(t);
    if (nv > in->n_vocab || bos < 0 || bos >= in->n_vocab || eos < 0 || eos >= in->n_vocab) {
        snprintf(err, errlen,
                 "the tokenizer's ids (%d, sequence ends %d and %d) do not fit the model's "
                 "vocabulary of %d (vocab_size in config.json): the tokenizer belongs to "
                 "another model",
                 (int)nv, (int)bos, (int)eos, in->n_vocab);
        return -1;
    }
    for (int k = 0; k < in->n_tasks; k++) {
        const char *pr = in->task_prefix[k];
        int32_t *ids = NULL;
        int32_t n = *pr ? tok_encode_alloc(t, pr, strlen(pr), &ids) : 0;
        free(ids);
        if (n < 0 || n + 3 > max_in) {
            snprintf(err, errlen,
                     "the instruction of task '%s' takes %d tokens; with the two end tokens it "
                     "leaves no room for text under the input limit of %d tokens "
                     "(max_position_embeddings or --max-input-tokens)",
                     in->task_name[k], (int)n, max_in);
            return -1;
        }
    }
    return 0;
}

struct emb_opts emb_opts_defaults(void) {
    struct emb_opts o = {.task = ENG_TASK_NONE,
                         .dimensions = 0,
                         .normalized = true,
                         .late_chunking = false,
                         .truncate = false,
                         .max_tokens = 8192};
    return o;
}

/* body[0..n_body) (malloc'ed, consumed) becomes <s> + body + </s> in place:
 * a big array is mmap'ed, so growing it does not copy it. NULL on oom (body
 * freed). */
static int32_t *wrap_ids(const tok *t, int32_t *body, int32_t n_body) {
    int32_t *ids = mem_realloc(body, sizeof(int32_t) * ((size_t)n_body + 2));
    if (!ids) {
        free(body);
        return NULL;
    }
    if (n_body) memmove(ids + 1, ids, sizeof(int32_t) * (size_t)n_body);
    ids[0] = tok_bos(t);
    ids[n_body + 1] = tok_eos(t);
    return ids;
}

static int build_ordinary(const tok *t, const char *prefix, const struct emb_opts *o,
                          const struct emb_text *texts, int32_t n, struct emb_plan *plan,
                          struct emb_error *e) {
    for (int32_t i = 0; i < n; i++) {
        /* prefix + text as one string, as the reference encode() does (the
         * prefix's trailing space joins the text's first piece), tokenised
         * only as far as the limit reaches: a truncated text keeps its first
         * max_tokens - 2 ids (then </s>); an untruncated one is refused as
         * soon as its count passes the limit. */
        int32_t *body = NULL;
        bool more = false;
        int32_t nb = tok_encode_prefix(t, prefix, strlen(prefix), texts[i].s, texts[i].len,
                                       o->max_tokens - 2, &body, &more);
        if (nb < 0) return EMB_ENOMEM;
        if (more && !o->truncate) {
            free(body);
            *e = (struct emb_error){i, (int64_t)o->max_tokens + 1, o->max_tokens};
            return EMB_ETOOLONG;
        }
        struct emb_seq *s = &plan->seqs[plan->n_seqs];
        s->ids = wrap_ids(t, body, nb);
        if (!s->ids) return EMB_ENOMEM;
        s->n_ids = nb + 2;
        s->task = o->task;
        s->n_out = 1;
        s->spans = NULL;
        s->first_out = i;
        plan->n_seqs++;
        plan->n_tokens += s->n_ids;
    }
    return 0;
}

/* One sequence <s> + tok(prefix) + tok(text_0) + ... + </s>, a span per text. */
static int build_late(const tok *t, const char *prefix, const struct emb_opts *o,
                      const struct emb_text *texts, int32_t n, struct emb_plan *plan,
                      struct emb_error *e) {
    int32_t **parts = mem_calloc((size_t)n + 1, sizeof(*parts));
    int32_t *lens = mem_calloc((size_t)n + 1, sizeof(*lens));
    int rc = EMB_ENOMEM;
    int64_t total = 2;
    if (!parts || !lens) goto out;
    /* parts[0] = prefix, parts[1 + i] = text i */
    if ((lens[0] = tok_encode_alloc(t, prefix, strlen(prefix), &parts[0])) < 0) goto out;
    total += lens[0];
    for (int32_t i = 0; i < n; i++) {
        /* each text only as far as the room left: past it the request fails */
        bool more = false;
        int64_t room = total > o->max_tokens ? 0 : o->max_tokens - total;
        if ((lens[i + 1] = tok_encode_prefix(t, "", 0, texts[i].s, texts[i].len, (int32_t)room,
                                             &parts[i + 1], &more)) < 0)
            goto out;
        if (more) {
            *e = (struct emb_error){-1, (int64_t)o->max_tokens + 1, o->max_tokens};
            rc = EMB_ETOOLONG;
            goto out;
        }
        if (lens[i + 1] == 0) {
            *e = (struct emb_error){i, 0, o->max_tokens};
            rc = EMB_EEMPTY;
            goto out;
        }
        total += lens[i + 1];
    }
    if (total > o->max_tokens) {
        *e = (struct emb_error){-1, total, o->max_tokens};
        rc = EMB_ETOOLONG;
        goto out;
    }
    struct emb_seq *s = &plan->seqs[0];
    plan->n_seqs = 1; /* from here emb_plan_deinit frees what was allocated */
    s->ids = mem_malloc(sizeof(int32_t) * (size_t)total);
    s->spans = mem_malloc(sizeof(int32_t) * 2 * (size_t)n);
    if (!s->ids || !s->spans) goto out;
    int32_t at = 0;
    s->ids[at++] = tok_bos(t);
    for (int32_t i = 0; i <= n; i++) {
        if (i > 0) s->spans[2 * (i - 1)] = i == 1 ? 0 : at; /* first span from <s> */
        if (lens[i]) memcpy(s->ids + at, parts[i], sizeof(int32_t) * (size_t)lens[i]);
        at += lens[i];
        if (i > 0) s->spans[2 * (i - 1) + 1] = at;
    }
    s->ids[at++] = tok_eos(t);
    s->spans[2 * (n - 1) + 1] = at; /* last span takes </s> */
    s->n_ids = at;
    s->task = o->task;
    s->n_out = n;
    s->first_out = 0;
    plan->n_seqs = 1;
    plan->n_tokens = at;
    rc = 0;
out:
    for (int32_t i = 0; parts && i <= n; i++)
        free(parts[i]);
    free(parts);
    free(lens);
    return rc;
}

int emb_plan_build(const tok *t, const struct eng_model *m, const struct emb_opts *o,
                   const struct emb_text *texts, int32_t n_texts, struct emb_plan *plan,
                   struct emb_error *e) {
    const struct eng_info *in = eng_model_info(m);
    memset(plan, 0, sizeof(*plan));
    *e = (struct emb_error){-1, 0, o->max_tokens};
    if (n_texts <= 0) return 0;
    if (o->task != ENG_TASK_NONE && (o->task < 0 || o->task >= in->n_tasks)) return EMB_EENGINE;
    const char *prefix = o->task == ENG_TASK_NONE ? "" : in->task_prefix[o->task];
    plan->n_outputs = n_texts;
    plan->seqs = mem_calloc(o->late_chunking ? 1 : (size_t)n_texts, sizeof(*plan->seqs));
    if (!plan->seqs) return EMB_ENOMEM;
    if (o->max_tokens < 2) {
        *e = (struct emb_error){0, 2, o->max_tokens};
        return EMB_ETOOLONG;
    }
    return o->late_chunking ? build_late(t, prefix, o, texts, n_texts, plan, e)
                            : build_ordinary(t, prefix, o, texts, n_texts, plan, e);
}

void emb_plan_deinit(struct emb_plan *plan) {
    for (int32_t i = 0; plan->seqs && i < plan->n_seqs; i++) {
        free(plan->seqs[i].ids);
        free(plan->seqs[i].spans);
    }
    free(plan->seqs);
    memset(plan, 0, sizeof(*plan));
}

int emb_pass_take(struct emb_pass *p, const struct emb_plan *plan, int32_t *next, float *pooled,
                  int n_embd) {
    while (*next < plan->n_seqs) {
        const struct emb_seq *s = &plan->seqs[*next];
        if (s->n_ids > p->capacity) return EMB_EENGINE; /* the caller's limits are wrong */
        if (p->n > 0 && p->tokens + s->n_ids > p->budget) return 0;
        if (p->n == p->cap) return 0;
        p->seqs[p->n++] = (struct eng_seq){s->ids,   s->n_ids,
                                           s->task,  s->spans ? s->n_out : 0,
                                           s->spans, pooled + (size_t)s->first_out * n_embd};
        p->tokens += s->n_ids;
        (*next)++;
    }
    return 1;
}

int emb_plan_run(struct eng_ctx *c, const struct emb_plan *plan, float *pooled) {
    int cap = eng_ctx_capacity(c), n_embd = eng_model_info(eng_ctx_model(c))->n_embd;
    if (plan->n_seqs == 0) return 0;
    struct eng_seq *batch = mem_malloc(sizeof(*batch) * (size_t)plan->n_seqs);
    if (!batch) return EMB_ENOMEM;
    int rc = 0;
    for (int32_t next = 0; next < plan->n_seqs && rc == 0;) {
        /* greedy, in order: as many sequences as fit the context's capacity */
        struct emb_pass p = {batch, plan->n_seqs, 0, 0, cap, cap};
        rc = emb_pass_take(&p, plan, &next, pooled, n_embd);
        if (rc >= 0) {
            int erc = eng_encode(c, p.seqs, p.n);
            rc = erc == 0 ? 0 : erc == ENG_ENOMEM ? EMB_ENOMEM : EMB_EENGINE;
        }
    }
    free(batch);
    return rc;
}

int emb_output(const struct emb_opts *o, int n_embd, const float *pooled_row, float *out) {
    return eng_embd_finish(pooled_row, n_embd, o->dimensions, o->normalized, out);
}

int emb_finish(const struct emb_opts *o, int n_embd, float *vecs, int32_t n) {
    int dims = n_embd;
    for (int32_t i = 0; i < n; i++) /* row i moves down to i * dims: never ahead of its source */
        dims = emb_output(o, n_embd, vecs + (size_t)i * n_embd, vecs + (size_t)i * dims);
    return n > 0 ? dims : (o->dimensions > 0 && o->dimensions < n_embd ? o->dimensions : n_embd);
}
