/* embed.h -- from texts to embeddings: the glue between tokenizer and engine
 * (the pipeline module; no HTTP, no JSON).
 *
 * An emb_plan turns the texts of one request into model sequences:
 * - ordinary: one sequence per text, <s> + tok(prefix + text) + </s>, where
 *   prefix is the task's instruction from config.json (as the reference
 *   encode() prepends it), cut to max_tokens keeping </s> when `truncate`;
 * - late chunking: one sequence <s> + tok(prefix) + tok(text_0) + ... + </s>
 *   with one pooled span per text; the first span also covers <s> and the
 *   prefix, the last also covers </s> (docs/api.md, "Late chunking").
 * Both the offline CLI and the HTTP server go through this module, so they
 * produce identical vectors.
 *
 * Plans become engine batches in one place, emb_pass_take, which both the
 * CLI (emb_plan_run) and the server's batcher use.
 *
 * Conventions: 0 or a negative EMB_E* code (the pipeline's own codes;
 * the server maps them to HTTP once, in its API layer). Thread-safety:
 * emb_plan_build, emb_output and emb_finish are thread-safe (tokenisation
 * runs on HTTP threads); emb_plan_run uses the engine context and so
 * belongs to the thread that owns it.
 */
#ifndef EMB_PIPELINE_EMBED_H
#define EMB_PIPELINE_EMBED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

/* The pipeline's codes, in their own range (-3xx: the engine has -1xx, the
 * batcher -2xx), so a code says which module raised it. */
#define EMB_ETOOLONG (-302) /* a sequence is over max_tokens (err.index, err.n_tokens) */
#define EMB_EEMPTY   (-303) /* late chunking: an input has no tokens (err.index) */
#define EMB_ENOMEM   (-304)
#define EMB_EENGINE  (-305) /* the engine refused the batch */

/* max_tokens for "no limit" (/v1/tokenize without truncate). */
#define EMB_MAX_TOKENS_UNLIMITED INT32_MAX

struct emb_opts {
    int task;           /* adapter index or ENG_TASK_NONE */
    int dimensions;     /* Matryoshka size; 0 = full */
    bool normalized;    /* L2-normalise after truncation */
    bool late_chunking; /* one sequence, one span per input */
    bool truncate;      /* cut over-long inputs instead of failing (not for late chunking) */
    int max_tokens;     /* per-sequence limit, <s>, </s> and prefix included */
};

struct emb_text {
    const char *s; /* UTF-8, borrowed; may contain NULs */
    size_t len;
};

/* One model sequence; owns ids and spans. */
struct emb_seq {
    int32_t *ids;
    int32_t n_ids;
    int32_t task;
    int32_t n_out;     /* outputs of this sequence: 1, or the inputs of a late-chunked request */
    int32_t *spans;    /* [n_out][2] for late chunking, NULL otherwise */
    int32_t first_out; /* index of its first output among the plan's outputs */
};

struct emb_plan {
    struct emb_seq *seqs;
    int32_t n_seqs;
    int32_t n_outputs; /* = number of texts */
    int64_t n_tokens;  /* tokens fed to the model (usage) */
};

struct emb_error {
    int32_t index;    /* offending input */
    int64_t n_tokens; /* its token count (or the joined count for late chunking); when
                       * over the limit, limit + 1: counting stops there */
    int32_t limit;
};

/* Defaults: no task, full size, normalised, 8192 tokens. Thread-safe. */
struct emb_opts emb_opts_defaults(void);

/* Whether tokenizer t suits model m, checked once at startup rather than on
 * every request: every id it can give (tok_n_vocab, the sequence's end
 * tokens) is inside the model's vocabulary, and every task's instruction,
 * with the two end tokens, leaves room for text under max_in tokens.
 * Returns 0, or -1 with a message in err[errlen]. Thread-safe. */
int emb_check_model(const tok *t, const struct eng_model *m, int max_in, char *err, size_t errlen);

/* Tokenises `texts` into `plan` (caller storage; release with
 * emb_plan_deinit, also after a failure). On EMB_ETOOLONG / EMB_EEMPTY, *e
 * says which input. Thread-safe. */
int emb_plan_build(const tok *t, const struct eng_model *m, const struct emb_opts *o,
                   const struct emb_text *texts, int32_t n_texts, struct emb_plan *plan,
                   struct emb_error *e);
/* Frees what the plan owns (ids, spans, seqs) and zeroes it. The plan must
 * not be in use by a batcher job or an engine pass. */
void emb_plan_deinit(struct emb_plan *plan);

/* A forward pass being filled: caller's storage seqs[cap]. `budget` is the
 * pass's token budget (a pass always takes its first sequence), `capacity`
 * the context's, which no single sequence may exceed. */
struct emb_pass {
    struct eng_seq *seqs;
    int cap; /* room in seqs */
    int n;   /* sequences taken */
    long tokens;
    int budget;
    int capacity;
};

/* The one packer of plans into engine batches: appends plan->seqs[*next ..]
 * to p in order while they fit (their outputs go to pooled's rows, n_embd
 * floats each) and advances *next. Returns 1 when the plan is used up, 0
 * when the pass is full, EMB_EENGINE when plan->seqs[*next] exceeds
 * p->capacity (nothing taken for it). Thread-safe (touches only p, *next). */
int emb_pass_take(struct emb_pass *p, const struct emb_plan *plan, int32_t *next, float *pooled,
                  int n_embd);

/* Runs every sequence of the plan in as few engine passes as the context's
 * capacity allows and writes n_outputs x n_embd pooled (unnormalised) vectors
 * to pooled, in input order. Engine thread only. */
int emb_plan_run(struct eng_ctx *c, const struct emb_plan *plan, float *pooled);

/* Writes output i's final embedding (Matryoshka + normalisation per `o`)
 * into out; returns the number of values (o->dimensions or n_embd). */
int emb_output(const struct emb_opts *o, int n_embd, const float *pooled_row, float *out);

/* Finishes n pooled rows [n][n_embd] in place: each row truncated
 * (Matryoshka) and normalised per `o`, packed as [n][dims]. Returns dims.
 * Thread-safe (touches only vecs). */
int emb_finish(const struct emb_opts *o, int n_embd, float *vecs, int32_t n);

#endif
