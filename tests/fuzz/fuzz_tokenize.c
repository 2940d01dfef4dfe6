/* fuzz_tokenize.c -- fuzzes the tokenizer input path: raw bytes (invalid
 * UTF-8, NULs, huge runs) through tok_encode and emb_plan_build with fuzzed
 * options, then /v1/tokenize's renderer. Invariants: tok_encode's
 * -needed contract, every plan's sequences are <s> ... </s> with ids in the
 * vocabulary and within max_tokens (unless late chunking reports
 * EMB_ETOOLONG), late-chunking spans are non-empty and tile the sequence,
 * usage adds up, and the rendered body is valid JSON.
 *
 * Input: byte 0 = task (value % (n_tasks + 1), n_tasks = none), byte 1 =
 * flags (bit 0 late chunking, bit 1 truncate), bytes 2-3 = max_tokens
 * (little endian, % 600), then texts separated by 0xFF bytes (at most 16). */
#include "tests/fuzz/fuzz.h"

#include <string.h>

#include <cJSON.h>

#include "util/alloc.h"
#include "server/api.h"
#include "pipeline/embed.h"

static tok *g_tok;
static struct eng_model *g_model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char err[512];
    mem_install_cjson();
    struct eng_params p = eng_params_defaults();
    p.dtype = ENG_DTYPE_F32;
    if (!(g_tok = tok_open_dir(fuzz_model_dir(), err, sizeof(err))) ||
        !(g_model = eng_model_open(fuzz_model_dir(), &p, err, sizeof(err)))) {
        fprintf(stderr, "fuzz_tokenize: %s (run `make testmodel` first)\n", err);
        exit(1);
    }
    return 0;
}

static void check_plan(const struct emb_opts *o, const struct emb_plan *pl, int32_t n_texts) {
    int32_t n_vocab = eng_model_info(g_model)->n_vocab;
    int64_t tokens = 0;
    int32_t outs = 0;
    FUZZ_CHECK(pl->n_outputs == n_texts);
    for (int32_t i = 0; i < pl->n_seqs; i++) {
        const struct emb_seq *s = &pl->seqs[i];
        FUZZ_CHECK(s->n_ids >= 2 && s->n_ids <= o->max_tokens);
        FUZZ_CHECK(s->ids[0] == tok_bos(g_tok) && s->ids[s->n_ids - 1] == tok_eos(g_tok));
        for (int32_t k = 0; k < s->n_ids; k++)
            FUZZ_CHECK(s->ids[k] >= 0 && s->ids[k] < n_vocab);
        FUZZ_CHECK(s->task == o->task && s->first_out == outs);
        if (s->spans) { /* late chunking: spans tile [0, n_ids) */
            FUZZ_CHECK(s->spans[0] == 0 && s->spans[2 * s->n_out - 1] == s->n_ids);
            for (int32_t k = 0; k < s->n_out; k++) {
                FUZZ_CHECK(s->spans[2 * k] < s->spans[2 * k + 1]);
                if (k) FUZZ_CHECK(s->spans[2 * k] == s->spans[2 * k - 1]);
            }
        } else {
            FUZZ_CHECK(s->n_out == 1);
        }
        outs += s->n_out;
        tokens += s->n_ids;
    }
    FUZZ_CHECK(outs == n_texts && tokens == pl->n_tokens);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    const struct eng_info *in = eng_model_info(g_model);
    struct emb_opts o = emb_opts_defaults();
    int t = data[0] % (in->n_tasks + 1);
    o.task = t == in->n_tasks ? ENG_TASK_NONE : t;
    o.late_chunking = data[1] & 1;
    o.truncate = data[1] & 2;
    o.max_tokens = (data[2] | data[3] << 8) % 600;
    const char *text = (const char *)data + 4;
    size_t len = size - 4;

    /* the texts, each a private copy so ASan sees over-reads */
    struct emb_text texts[16];
    char *copies[16];
    int32_t n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len && n < 16; i++) {
        if (i < len && (uint8_t)text[i] != 0xFF) continue;
        size_t tl = i - start;
        copies[n] = malloc(tl + 1);
        memcpy(copies[n], text + start, tl);
        copies[n][tl] = '\0';
        texts[n] = (struct emb_text){copies[n], tl};
        n++;
        start = i + 1;
    }

    /* tok_encode: the -needed contract against tok_encode_alloc */
    int32_t *ids = NULL;
    int32_t na = tok_encode_alloc(g_tok, texts[0].s, texts[0].len, &ids);
    FUZZ_CHECK(na >= 0);
    int32_t small[4];
    int32_t ns = tok_encode(g_tok, texts[0].s, texts[0].len, small, 4);
    FUZZ_CHECK(na > 4 ? ns == -na : ns == na);
    for (int32_t k = 0; k < ns; k++)
        FUZZ_CHECK(small[k] == ids[k]);
    free(ids);

    struct emb_plan plan;
    struct emb_error e;
    int rc = emb_plan_build(g_tok, g_model, &o, texts, n, &plan, &e);
    if (rc == 0) {
        check_plan(&o, &plan, n);
        if (!o.late_chunking) { /* render /v1/tokenize's answer */
            static const char *const names[] = {"jina-embeddings-v3"};
            struct api_model m = {.names = names, .n_names = 1, .info = in};
            struct api_req r = {.n_inputs = n, .want_pieces = data[1] & 4};
            size_t out_len = 0;
            char *out = api_tokenize_render(&m, &r, &plan, g_tok, &out_len);
            FUZZ_CHECK(out != NULL);
            cJSON *j = cJSON_ParseWithLength(out, out_len);
            FUZZ_CHECK(j != NULL);
            cJSON_Delete(j);
            free(out);
        }
    } else {
        FUZZ_CHECK(rc == EMB_ETOOLONG || rc == EMB_EEMPTY);
        FUZZ_CHECK(rc != EMB_ETOOLONG || o.late_chunking || !o.truncate || o.max_tokens < 2);
        FUZZ_CHECK(rc != EMB_EEMPTY || (o.late_chunking && e.index >= 0 && e.index < n));
    }
    emb_plan_deinit(&plan);
    for (int32_t i = 0; i < n; i++)
        free(copies[i]);
    return 0;
}
