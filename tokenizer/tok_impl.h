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

/* The largest tokenizer file accepted (XLM-R's sentencepiece model is 5 MB,
 * a BPE tokenizer.json with a 250k vocabulary about 20 MB). */
#define TOK_FILE_MAX_BYTES (64L << 20)

#ifdef __cplusplus
}
#endif
#endif
