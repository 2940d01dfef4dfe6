/* fuzz_model.c -- fuzzes the model loader on hostile files.
 *
 * Byte 0 selects the mode:
 *   even: the rest is a .safetensors file -> st_open (header length, JSON,
 *         dtypes, shapes, offsets); on success every tensor's first and
 *         last element are read, which ASan checks against the mapping.
 *   odd:  the rest is config.json, in a directory that also holds the
 *         generated test model's model.safetensors -> eng_model_open, which
 *         must either load or refuse with a message, never crash.
 * Files are written to a private temporary directory created at start. */
#include "tests/fuzz/fuzz.h"

#include <string.h>
#include <unistd.h>

#include "engine/engine_impl.h"
#include "util/alloc.h"

static char g_dir[256];     /* config.json + a link to the real safetensors */
static char g_st_path[300]; /* the fuzzed safetensors */

static void cleanup(void) {
    char p[400];
    snprintf(p, sizeof(p), "%s/config.json", g_dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/model.safetensors", g_dir);
    unlink(p);
    unlink(g_st_path);
    rmdir(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    mem_install_cjson();
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof(g_dir), "%s/fuzz_model.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("fuzz_model: mkdtemp");
        exit(1);
    }
    char src[4096], dst[400], abs[4096];
    snprintf(src, sizeof(src), "%s/model.safetensors", fuzz_model_dir());
    if (!realpath(src, abs)) {
        fprintf(stderr, "fuzz_model: no %s (run `make testmodel` first)\n", src);
        exit(1);
    }
    snprintf(dst, sizeof(dst), "%s/model.safetensors", g_dir);
    if (symlink(abs, dst)) {
        perror("fuzz_model: symlink");
        exit(1);
    }
    snprintf(g_st_path, sizeof(g_st_path), "%s/fuzzed.safetensors", g_dir);
    atexit(cleanup);
    return 0;
}

static void write_file(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(fwrite(p, 1, n, f) == n);
    fclose(f);
}

static void fuzz_safetensors(const uint8_t *p, size_t n) {
    char err[512] = "";
    write_file(g_st_path, p, n);
    struct st_file *f = st_open(g_st_path, err, sizeof(err));
    if (!f) {
        FUZZ_CHECK(err[0] != '\0'); /* a refusal always says why */
        return;
    }
    volatile float sink = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const struct st_tensor *t = &f->tensors[i];
        FUZZ_CHECK(st_find(f, t->name) != NULL);
        FUZZ_CHECK((const char *)t->data >= (const char *)f->map &&
                   (const char *)t->data + t->nbytes <= (const char *)f->map + f->size);
        if (t->n_elem > 0 && t->dtype != ST_OTHER) {
            sink += st_get_f32(t->dtype, t->data, 0);
            sink += st_get_f32(t->dtype, t->data, t->n_elem - 1);
        }
    }
    (void)sink;
    st_close(f);
}

static void fuzz_config(const uint8_t *p, size_t n) {
    char path[400], err[512] = "";
    snprintf(path, sizeof(path), "%s/config.json", g_dir);
    write_file(path, p, n);
    struct eng_params ep = eng_params_defaults();
    ep.dtype = ENG_DTYPE_F32;
    ep.max_batch_tokens = 64;
    struct eng_model *m = eng_model_open(g_dir, &ep, err, sizeof(err));
    if (!m) {
        FUZZ_CHECK(err[0] != '\0');
        return;
    }
    const struct eng_info *in = eng_model_info(m);
    FUZZ_CHECK(in->n_embd > 0 && in->n_layer > 0 && in->n_tasks >= 1 &&
               in->n_tasks <= ENG_MAX_TASKS);
    for (int t = 0; t < in->n_tasks; t++)
        FUZZ_CHECK(in->task_name[t] && in->task_prefix[t]);
    eng_model_close(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] & 1)
        fuzz_config(data + 1, size - 1);
    else
        fuzz_safetensors(data + 1, size - 1);
    return 0;
}
