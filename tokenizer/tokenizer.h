/* tokenizer.h -- the model's tokenizer, from one of two files:
 *
 * - sentencepiece.bpe.model (XLM-RoBERTa, jina-embeddings-v3): model ids
 *   follow XLM-R's Hugging Face tokenizer: <s>=0, <pad>=1, </s>=2, <unk>=3,
 *   sentencepiece piece i (i >= 3) -> i + 1, <mask> = last id. tok_encode
 *   returns model ids, never raw sentencepiece ids. TOK_BOS..TOK_UNK below
 *   are this layout's ids and hold for it only.
 * - tokenizer.json (Hugging Face tokenizers; jina-embeddings-v2): the
 *   WordPiece and BPE pipelines the v2 models use (docs/tokenizers.md); ids
 *   are the file's, and the sequence ids come from its post-processor
 *   ([CLS]/[SEP] or <s>/</s>): use tok_bos/tok_eos, never TOK_BOS/TOK_EOS.
 *
 * Conventions: counts are returned as >= 0; a buffer that is too small gives
 * -needed (as llama_tokenize); other failures give TOK_EFAIL.
 *
 * Thread-safety: after tok_open returns, a tok may be used from any number of
 * threads at once (sentencepiece's processor is const after Load; the
 * tokenizer.json tables are read-only after loading; this is exercised by
 * tests/test_tokenizer.c). tok_close must not race with users.
 */
#ifndef EMB_TOKENIZER_H
#define EMB_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TOK_BOS   0
#define TOK_PAD   1
#define TOK_EOS   2
#define TOK_UNK   3
#define TOK_EFAIL INT32_MIN

typedef struct tok tok;

/* The tokenizer's file inside a model directory: the sentencepiece model if
 * present, else the Hugging Face tokenizer.json. */
#define TOK_MODEL_FILE "sentencepiece.bpe.model"
#define TOK_HF_FILE    "tokenizer.json"

/* Loads a tokenizer file: a path ending in ".json" as a Hugging Face
 * tokenizer.json, any other as a sentencepiece .model file. Returns NULL and
 * writes a reason into err[errlen] if the file is missing, not a regular file
 * of at most 64 MiB, malformed, or (tokenizer.json) uses a component this
 * loader does not implement (named in the reason). The caller frees the
 * result with tok_close. */
tok *tok_open(const char *path, char *err, size_t errlen);

/* Opens the tokenizer of the model in directory `dir`: dir/TOK_MODEL_FILE
 * when it exists, else dir/TOK_HF_FILE; as tok_open otherwise. */
tok *tok_open_dir(const char *dir, char *err, size_t errlen);
void tok_close(tok *t);

/* The ids that open and close every sequence (<s>, </s>; for tokenizer.json
 * the post-processor's, e.g. [CLS], [SEP]). Thread-safe. */
int32_t tok_bos(const tok *t);
int32_t tok_eos(const tok *t);

/* Model vocabulary size: sentencepiece pieces + 2 (<pad> and <mask> have no
 * spm piece); for tokenizer.json, 1 + the largest id of the vocabulary and
 * added tokens. */
int32_t tok_n_vocab(const tok *t);

/* Tokenises text[0..len) (UTF-8; embedded NULs and invalid bytes allowed:
 * tokenizer.json reads each invalid sequence as U+FFFD) without the
 * post-processor's sequence tokens into ids[0..n_max). Returns the number of ids, or
 * -needed if n_max is too small (ids is then unspecified), or TOK_EFAIL.
 * Thread-safe. */
int32_t tok_encode(const tok *t, const char *text, size_t len, int32_t *ids, int32_t n_max);

/* Same, but returns a freshly malloc'ed array in *out (caller frees with
 * free()); *out is NULL for zero tokens. Returns the count or TOK_EFAIL.
 * Thread-safe. */
int32_t tok_encode_alloc(const tok *t, const char *text, size_t len, int32_t **out);

/* Tokenises head[0..hlen) + text[0..len) as one string, but only as far as
 * the first max_ids ids need: they are returned (malloc'ed in *out, caller
 * frees; NULL for none) exactly as the first max_ids ids of tokenising the
 * whole string, and *more says whether the whole string has more ids than
 * that. The text is cut into chunks before ASCII spaces, so work and memory
 * follow what is consumed (about 64 KiB of text at a time, 2x for a
 * space-free run), not len; with max_ids = INT32_MAX the whole text goes
 * through in chunks. head is meant for a short task prefix. Returns the
 * count (<= max_ids) or TOK_EFAIL. Thread-safe. */
int32_t tok_encode_prefix(const tok *t, const char *head, size_t hlen, const char *text, size_t len,
                          int32_t max_ids, int32_t **out, bool *more);

/* Surface text of a model id (borrowed; valid until tok_close), "" if out of range. */
const char *tok_piece(const tok *t, int32_t id);

#ifdef __cplusplus
}
#endif
#endif
