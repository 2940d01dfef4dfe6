/* tokenizer.c -- the public tok_* API: picks the implementation by file
 * (sentencepiece model or Hugging Face tokenizer.json) and dispatches. */
#include "tokenizer/tokenizer.h"
#include "tokenizer/tok_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tok {
    tok_spm *spm; /* exactly one of the two is set */
    tok_hf *hf;
};

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

tok *tok_open(const char *path, char *err, size_t errlen) {
    tok *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    if (ends_with(path, ".json"))
        t->hf = tok_hf_open(path, err, errlen);
    else
        t->spm = tok_spm_open(path, err, errlen);
    if (!t->hf && !t->spm) {
        free(t);
        return NULL;
    }
    return t;
}

tok *tok_open_dir(const char *dir, char *err, size_t errlen) {
    size_t n = strlen(dir) + sizeof(TOK_MODEL_FILE) + sizeof(TOK_HF_FILE) + 2;
    char *path = malloc(n);
    if (!path) {
        snprintf(err, errlen, "%s: out of memory", dir);
        return NULL;
    }
    snprintf(path, n, "%s/%s", dir, TOK_MODEL_FILE);
    if (access(path, F_OK) != 0) {
        snprintf(path, n, "%s/%s", dir, TOK_HF_FILE);
        if (access(path, F_OK) != 0) {
            snprintf(err, errlen, "%s: no tokenizer (neither %s nor %s)", dir, TOK_MODEL_FILE,
                     TOK_HF_FILE);
            free(path);
            return NULL;
        }
    }
    tok *t = tok_open(path, err, errlen);
    free(path);
    return t;
}

void tok_close(tok *t) {
    if (!t) return;
    tok_spm_close(t->spm);
    tok_hf_close(t->hf);
    free(t);
}

int32_t tok_bos(const tok *t) {
    return t->hf ? tok_hf_bos(t->hf) : TOK_BOS;
}

int32_t tok_eos(const tok *t) {
    return t->hf ? tok_hf_eos(t->hf) : TOK_EOS;
}

int32_t tok_n_vocab(const tok *t) {
    return t->hf ? tok_hf_n_vocab(t->hf) : tok_spm_n_vocab(t->spm);
}

int32_t tok_encode(const tok *t, const char *text, size_t len, int32_t *ids, int32_t n_max) {
    if (t->spm) return tok_spm_encode(t->spm, text, len, ids, n_max);
    int32_t *v = NULL;
    int32_t n = tok_hf_encode_alloc(t->hf, text, len, &v);
    if (n >= 0 && n > n_max)
        n = -n;
    else if (n > 0)
        memcpy(ids, v, sizeof(int32_t) * (size_t)n);
    free(v);
    return n;
}

int32_t tok_encode_alloc(const tok *t, const char *text, size_t len, int32_t **out) {
    return t->hf ? tok_hf_encode_alloc(t->hf, text, len, out)
                 : tok_spm_encode_alloc(t->spm, text, len, out);
}

int32_t tok_encode_prefix(const tok *t, const char *head, size_t hlen, const char *text, size_t len,
                          int32_t max_ids, int32_t **out, bool *more) {
    return t->hf ? tok_hf_encode_prefix(t->hf, head, hlen, text, len, max_ids, out, more)
                 : tok_spm_encode_prefix(t->spm, head, hlen, text, len, max_ids, out, more);
}

const char *tok_piece(const tok *t, int32_t id) {
    return t->hf ? tok_hf_piece(t->hf, id) : tok_spm_piece(t->spm, id);
}
