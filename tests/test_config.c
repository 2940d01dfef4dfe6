/* test_config.c -- the settings table: parsing, environment, validation. */
#include "tests/test.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

/* ---- config ---------------------------------------------------------------- */

static const char *fake_env(const char *name) {
    if (!strcmp(name, "EMBEDSERVE_PORT")) return "9000";
    if (!strcmp(name, "EMBEDSERVE_API_KEY")) return "envkey";
    if (!strcmp(name, "EMBEDSERVE_STRICT")) return "yes";
    if (!strcmp(name, "EMBEDSERVE_MAX_BODY_BYTES")) return "2M";
    if (!strcmp(name, "EMBEDSERVE_MAX_MEMORY")) return "1G";
    return NULL;
}

static const char *models_env(const char *name) {
    return !strcmp(name, "EMBEDSERVE_MODEL") ? "/m1, /m2" : NULL;
}

static const char *bad_env(const char *name) {
    return !strcmp(name, "EMBEDSERVE_MAX_QUEUE") ? "lots" : NULL;
}

void test_config(void) {
    struct cfg c;
    char err[256];
    cfg_init(&c);
    CHECK(c.port == 8080 && !strcmp(c.host, "0.0.0.0") && c.max_client_batch == 2048 &&
          c.max_input_tokens == 8192 && c.max_body_bytes == 64 << 20 && !c.strict &&
          c.served_names.n == 1 && !strcmp(c.served_names.v[0], "jina-embeddings-v3") &&
          c.api_keys.n == 0 && c.log_level == CFG_LOG_INFO && c.max_memory == 0);
    CHECK(cfg_validate(&c, err, sizeof(err)) == CFG_EINVAL && strstr(err, "--model"));
    CHECK(cfg_parse_env(&c, fake_env, err, sizeof(err)) == CFG_OK);
    CHECK(c.port == 9000 && c.strict && c.max_body_bytes == 2 << 20 && c.api_keys.n == 1 &&
          c.max_memory == 1LL << 30);
    /* the cgroup limit is a positive number of bytes, or 0 when there is none */
    CHECK(cfg_memory_limit() >= 0);
    char *argv[] = {"embedserve", "--model",   "/m", "--port=7000", "--api-key",
                    "a, b",       "--api-key", "c",  "--no-such",   NULL};
    CHECK(cfg_parse_args(&c, 8, argv, stdout, err, sizeof(err)) == CFG_OK);
    CHECK(c.port == 7000 && !strcmp(c.model_dir, "/m") && c.api_keys.n == 3 &&
          !strcmp(c.api_keys.v[0], "a") && !strcmp(c.api_keys.v[1], "b"));
    CHECK(cfg_parse_args(&c, 9, argv, stdout, err, sizeof(err)) == CFG_EINVAL &&
          strstr(err, "--no-such"));
    CHECK(cfg_validate(&c, err, sizeof(err)) == CFG_OK);
    char desc[1024];
    cfg_describe(&c, desc, sizeof(desc));
    CHECK(strstr(desc, "api-key=<3 keys>") && !strstr(desc, "envkey"));
    cfg_deinit(&c);
    static const char *const bad[][2] = {
        {"--port", "65536"},        {"--port", "x"},          {"--max-queue", "0"},
        {"--max-body-bytes", "1Q"}, {"--strict=maybe", NULL}, {"--log-level", "chatty"},
        {"--dtype", "int4"},        {"--http-threads", "0"},  {"--max-client-batch", "-1"},
        {"--max-memory", "-1"},     {"--max-memory", "lots"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *av[] = {"embedserve", (char *)bad[i][0], (char *)bad[i][1], NULL};
        cfg_init(&c);
        int rc = cfg_parse_args(&c, bad[i][1] ? 3 : 2, av, stdout, err, sizeof(err));
        CHECKM(rc == CFG_EINVAL && !strncmp(err, "invalid setting --", 18), "%s %s: %s", bad[i][0],
               bad[i][1] ? bad[i][1] : "", err);
        cfg_deinit(&c);
    }
    cfg_init(&c);
    CHECK(cfg_parse_env(&c, bad_env, err, sizeof(err)) == CFG_EINVAL &&
          strstr(err, "EMBEDSERVE_MAX_QUEUE"));
    cfg_deinit(&c);
    /* several models: --model repeats or takes a list; the command line
     * replaces the environment's list; the first is the default */
    {
        char *mv[] = {"embedserve", "--model", "/a", "--model", "/b,/c", NULL};
        cfg_init(&c);
        CHECK(cfg_parse_env(&c, fake_env, err, sizeof(err)) == CFG_OK);
        CHECK(cfg_parse_args(&c, 5, mv, stdout, err, sizeof(err)) == CFG_OK && c.models.n == 3 &&
              !strcmp(c.models.v[2], "/c") && !strcmp(c.model_dir, "/a"));
        CHECK(cfg_validate(&c, err, sizeof(err)) == CFG_OK);
        cfg_deinit(&c);
        CHECK(c.model_dir == NULL);
        cfg_init(&c);
        CHECK(cfg_parse_env(&c, models_env, err, sizeof(err)) == CFG_OK && c.models.n == 2 &&
              !strcmp(c.model_dir, "/m1") && !strcmp(c.models.v[1], "/m2"));
        cfg_deinit(&c);
        char *many[] = {"embedserve", "--model", "1,2,3,4,5,6,7,8,9", NULL};
        cfg_init(&c);
        CHECK(cfg_parse_args(&c, 3, many, stdout, err, sizeof(err)) == CFG_OK);
        CHECK(cfg_validate(&c, err, sizeof(err)) == CFG_EINVAL && strstr(err, "--model") &&
              strstr(err, "at most 8"));
        cfg_deinit(&c);
    }
    /* key file: keys one per line, comments skipped; an empty file is refused */
    char path[] = "/tmp/embedserve_keysXXXXXX";
    int fd = mkstemp(path);
    const char *keys = "# keys\nk-one\n\n  k-two  \n";
    CHECK(fd >= 0 && write(fd, keys, strlen(keys)) == (ssize_t)strlen(keys));
    close(fd);
    char *av[] = {"embedserve", "--model", "m", "--api-key-file", path, "--strict", NULL};
    cfg_init(&c);
    CHECK(cfg_parse_args(&c, 6, av, stdout, err, sizeof(err)) == CFG_OK && c.strict);
    CHECK(cfg_validate(&c, err, sizeof(err)) == CFG_OK && c.api_keys.n == 2 &&
          !strcmp(c.api_keys.v[1], "k-two"));
    cfg_deinit(&c);
    fd = open(path, O_WRONLY | O_TRUNC);
    close(fd);
    cfg_init(&c);
    cfg_parse_args(&c, 5, av, stdout, err, sizeof(err));
    CHECK(cfg_validate(&c, err, sizeof(err)) == CFG_EINVAL && strstr(err, "--api-key-file"));
    cfg_deinit(&c);
    unlink(path);
    /* --help lists every setting with its env var */
    FILE *f = tmpfile();
    char *hv[] = {"embedserve", "--help", NULL};
    cfg_init(&c);
    CHECK(cfg_parse_args(&c, 2, hv, f, err, sizeof(err)) == CFG_HELP);
    cfg_deinit(&c);
    char help[8192];
    rewind(f);
    size_t n = fread(help, 1, sizeof(help) - 1, f);
    help[n] = '\0';
    fclose(f);
    static const char *const must[] = {"--model",
                                       "EMBEDSERVE_MODEL",
                                       "--api-key-file",
                                       "EMBEDSERVE_MAX_BATCH_TOKENS",
                                       "--served-model-name",
                                       "EMBEDSERVE_LOG_LEVEL",
                                       "--strict",
                                       "--max-queue"};
    for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
        CHECKM(strstr(help, must[i]) != NULL, "--help lacks %s", must[i]);
    test_config_cgroup();
}
