/* test_safetensors.c -- the safetensors reader and the model loader against
 * broken files: each must fail with a clear message naming the file (and the
 * tensor where one is at fault), never crash. Corrupt copies of the generated
 * test model are written to a temporary directory. */
#include "tests/test.h"

#include "engine/engine_impl.h"

#include <cJSON.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void write_bytes(const char *path, const void *a, size_t na, const void *b, size_t nb) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(a, 1, na, f);
    if (nb) fwrite(b, 1, nb, f);
    fclose(f);
}

/* A file = 8-byte length + header + data. */
static void write_st(const char *path, const char *header, const void *data, size_t n) {
    unsigned char len[8];
    uint64_t h = strlen(header);
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(h >> (8 * i));
    FILE *f = fopen(path, "wb");
    fwrite(len, 1, 8, f);
    fwrite(header, 1, h, f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static void expect_st_error(const char *what, const char *header, size_t n_data,
                            const char *needle) {
    char path[512], err[512] = "";
    static char zeros[4096];
    snprintf(path, sizeof(path), "%s/st.safetensors", tmpdir);
    write_st(path, header, zeros, n_data);
    struct st_file *f = st_open(path, err, sizeof(err));
    CHECKM(f == NULL, "%s: st_open accepted a broken file", what);
    CHECKM(strstr(err, needle) != NULL && strstr(err, path) != NULL,
           "%s: message '%s' lacks '%s' or the path", what, err, needle);
    st_close(f);
}

static void reader_cases(void) {
    char path[512], err[512] = "";
    uint16_t bf[6] = {0x3f80, 0x4000, 0xbf80, 0, 0x4040, 0x3f00}; /* 1, 2, -1, 0, 3, 0.5 */
    snprintf(path, sizeof(path), "%s/st.safetensors", tmpdir);
    write_st(path,
             "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
             "\"__metadata__\":{\"format\":\"pt\"}}",
             bf, sizeof(bf));
    struct st_file *f = st_open(path, err, sizeof(err));
    CHECKM(f != NULL, "valid file: %s", err);
    if (f) {
        const struct st_tensor *t = st_find(f, "a");
        CHECK(t && t->dtype == ST_BF16 && t->n_dims == 2 && t->shape[1] == 3 && t->n_elem == 6);
        float v[6];
        if (t) st_to_f32(t->dtype, t->data, v, 6);
        CHECK(t && v[0] == 1 && v[1] == 2 && v[2] == -1 && v[4] == 3 && v[5] == 0.5f);
        CHECK(st_find(f, "b") == NULL);
        st_close(f);
    }
    CHECK(st_open("/nonexistent/x.safetensors", err, sizeof(err)) == NULL &&
          strstr(err, "/nonexistent/x.safetensors"));
    write_bytes(path, "abc", 3, NULL, 0);
    CHECK(st_open(path, err, sizeof(err)) == NULL && strstr(err, "not a safetensors file"));
    expect_st_error("bad JSON", "{\"a\":{\"dtype\":\"BF16\",", 0, "not valid JSON");
    expect_st_error("not an object", "[1,2,3]", 0, "not valid JSON");
    expect_st_error("missing fields", "{\"a\":{\"dtype\":\"BF16\"}}", 0, "lacks dtype");
    expect_st_error("unknown dtype",
                    "{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
                    "unknown dtype");
    expect_st_error("offsets out of bounds",
                    "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]}}", 6,
                    "outside");
    expect_st_error("negative offset",
                    "{\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[-2,0]}}", 6,
                    "outside");
    expect_st_error("size mismatch",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,12]}}", 12,
                    "need 24");
    expect_st_error("bad shape",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                    "invalid shape");
    expect_st_error("huge shape",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1000000000000,1000000000000],"
                    "\"data_offsets\":[0,4]}}",
                    4, "impossibly large");
    /* header length larger than the file */
    unsigned char hdr[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_bytes(path, hdr, 10, NULL, 0);
    CHECK(st_open(path, err, sizeof(err)) == NULL && strstr(err, "does not fit"));
}

/* ---- whole-model loader: corrupt copies of the generated model ---- */

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    if (fread(b, 1, *n, f) != *n) *n = 0;
    b[*n] = 0;
    fclose(f);
    return b;
}

static void copy_model(const char *src, const char *dst) {
    const char *files[] = {"config.json", "model.safetensors", "sentencepiece.bpe.model"};
    char a[512], b[512];
    mkdir(dst, 0755);
    for (int i = 0; i < 3; i++) {
        size_t n;
        snprintf(a, sizeof(a), "%s/%s", src, files[i]);
        snprintf(b, sizeof(b), "%s/%s", dst, files[i]);
        char *d = slurp(a, &n);
        if (d) write_bytes(b, d, n, NULL, 0);
        free(d);
    }
}

/* Rewrites dst's safetensors header through edit(root); data stays. */
static void edit_header(const char *dir, void (*edit)(cJSON *root)) {
    char path[512];
    size_t n;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    char *d = slurp(path, &n);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = (h << 8) | (unsigned char)d[i];
    cJSON *root = cJSON_ParseWithLength(d + 8, h);
    edit(root);
    char *js = cJSON_PrintUnformatted(root);
    write_st(path, js, d + 8 + h, n - 8 - h);
    cJSON_free(js);
    cJSON_Delete(root);
    free(d);
}

#define FC1 "roberta.encoder.layers.1.mlp.fc1.parametrizations.weight.original"
static void drop_tensor(cJSON *r) {
    cJSON_DeleteItemFromObject(r, FC1);
}
static void swap_shape(cJSON *r) {
    cJSON *shape = cJSON_GetObjectItem(cJSON_GetObjectItem(r, FC1), "shape");
    int a = cJSON_GetArrayItem(shape, 0)->valueint, b = cJSON_GetArrayItem(shape, 1)->valueint;
    cJSON_ReplaceItemInArray(shape, 0, cJSON_CreateNumber(b));
    cJSON_ReplaceItemInArray(shape, 1, cJSON_CreateNumber(a));
}
static void int_dtype(cJSON *r) {
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, FC1), "dtype", cJSON_CreateString("I16"));
}

static void expect_model_error(const char *what, const char *dir, const char *n1, const char *n2) {
    char err[1024] = "";
    struct eng_params p = eng_params_defaults();
    struct eng_model *m = eng_model_open(dir, &p, err, sizeof(err));
    CHECKM(m == NULL, "%s: a broken model was accepted", what);
    CHECKM(strstr(err, n1) && (!n2 || strstr(err, n2)), "%s: message '%s' lacks '%s' / '%s'", what,
           err, n1, n2 ? n2 : "");
    eng_model_close(m);
}

static void loader_cases(void) {
    const char *src = test_env("TESTMODEL", "build/testmodel");
    char dir[512], path[600], err[512];
    snprintf(dir, sizeof(dir), "%s/model", tmpdir);
    struct eng_params p = eng_params_defaults();

    copy_model(src, dir);
    struct eng_model *m = eng_model_open(dir, &p, err, sizeof(err));
    CHECKM(m != NULL, "pristine copy loads: %s", err);
    eng_model_close(m);

    edit_header(dir, drop_tensor);
    expect_model_error("missing tensor", dir, FC1, "missing");
    copy_model(src, dir);
    edit_header(dir, swap_shape);
    expect_model_error("wrong shape", dir, FC1, "shape");
    copy_model(src, dir);
    edit_header(dir, int_dtype);
    expect_model_error("wrong dtype", dir, FC1, "I16");

    /* truncated: drop the last 1000 bytes of data */
    copy_model(src, dir);
    size_t n;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    char *d = slurp(path, &n);
    write_bytes(path, d, n - 1000, NULL, 0);
    free(d);
    expect_model_error("truncated", dir, "model.safetensors", "truncated");
    write_bytes(path, "", 0, NULL, 0);
    expect_model_error("empty file", dir, "model.safetensors", NULL);
    unlink(path);
    expect_model_error("no weights", dir, "model.safetensors", "cannot open");

    /* config.json problems */
    copy_model(src, dir);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    write_bytes(path, "{\"hidden_size\": 80,", 19, NULL, 0);
    expect_model_error("config not JSON", dir, "config.json", NULL);
    d = slurp(path, &n);
    free(d);
    copy_model(src, dir);
    d = slurp(path, &n);
    cJSON *cfg = cJSON_Parse(d);
    free(d);
    cJSON_ReplaceItemInObject(cfg, "hidden_size", cJSON_CreateNumber(90));
    char *js = cJSON_Print(cfg);
    write_bytes(path, js, strlen(js), NULL, 0);
    cJSON_free(js);
    expect_model_error("config/weights mismatch", dir, "model.safetensors", "shape");
    cJSON_ReplaceItemInObject(cfg, "hidden_size", cJSON_CreateString("80"));
    js = cJSON_Print(cfg);
    write_bytes(path, js, strlen(js), NULL, 0);
    cJSON_free(js);
    expect_model_error("config wrong type", dir, "config.json", "hidden_size");
    cJSON_Delete(cfg);
    unlink(path);
    expect_model_error("no config", dir, "config.json", "cannot open");
    expect_model_error("no directory", "/nonexistent-model-dir", "/nonexistent-model-dir", NULL);
}

void test_safetensors(void) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/embedserve-st-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        CHECKM(0, "mkdtemp failed");
        return;
    }
    reader_cases();
    loader_cases();
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    CHECK(system(cmd) == 0);
}
