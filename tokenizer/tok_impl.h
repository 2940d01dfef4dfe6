/* tok_impl.h -- private to tokenizer/: the two implementations behind
 * tokenizer.h (sentencepiece in tokenizer_spm.cc, Hugging Face tokenizer.json
 * in tokenizer_hf.c) and the dispatch in tokenizer.c. Each function has the
 * contract of its tok_* namesake in tokenizer.h. */
#ifndef EMB_TOK_IMPL_H
#define EMB_TOK_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tok_spm tok_spm;
typedef struct tok_hf tok_hf;

tok_spm *tok_spm_open(const char *path, char *err, size_t errlen);
void tok_spm_close(tok_spm *t);
int32_t tok_spm_n_vocab(const tok_spm *t);
int32_t tok_spm_encode(const tok_spm *t, const char *text, size_t len, int32_t *ids, int32_t n_max);
int32_t tok_spm_encode_alloc(const tok_spm *t, const char *text, size_t len, int32_t **out);
int32_t tok_spm_encode_prefix(const tok_spm *t, const char *head, size_t hlen, const char *text,
                              size_t len, int32_t max_ids, int32_t **out, bool *more);
const char *tok_spm_piece(const tok_spm *t, int32_t id);

tok_hf *tok_hf_open(const char *path, char *err, size_t errlen);
void tok_hf_close(tok_hf *t);
int32_t tok_hf_n_vocab(const tok_hf *t);
int32_t tok_hf_bos(const tok_hf *t);
int32_t tok_hf_eos(const tok_hf *t);
int32_t tok_hf_encode_alloc(const tok_hf *t, const char *text, size_t len, int32_t **out);
int32_t tok_hf_encode_prefix(const tok_hf *t, const char *head, size_t hlen, const char *text,
                             size_t len, int32_t max_ids, int32_t **out, bool *more);
const char *tok_hf_piece(const tok_hf *t, int32_t id);

/* The chunked encoding behind tok_encode_prefix (tok_chunk.c), shared by
 * both implementations. An implementation gives an encoder, which appends
 * the ids of text[0..len) (no sequence tokens) to *out with tok_ids_push and
 * returns false on failure, and a cut function, true where the text may be
 * cut before text[i] (0 < i < len) with the ids of the whole equal to those
 * of the two sides in order; NULL: never cut. */
struct tok_ids {
    int32_t *p; /* mem_realloc'ed; the caller frees */
    size_t n, cap;
};
bool tok_ids_push(struct tok_ids *v, int32_t id);
typedef bool (*tok_encode_fn)(const void *impl, const char *text, size_t len, struct tok_ids *out);
typedef bool (*tok_cut_fn)(const char *text, size_t i, size_t len);
int32_t tok_encode_chunked(const void *impl, tok_encode_fn enc, tok_cut_fn cut, const char *head,
                           size_t hlen, const char *text, size_t len, int32_t max_ids,
                           int32_t **out, bool *more);

/* The largest tokenizer file accepted (XLM-R's sentencepiece model is 5 MB,
 * a BPE tokenizer.json with a 250k vocabulary about 20 MB). */
#define TOK_FILE_MAX_BYTES (64L << 20)

#ifdef __cplusplus
}
#endif
#endif
