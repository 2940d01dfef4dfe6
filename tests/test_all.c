/* test_all.c -- runs the test suites: `test_all` runs all, `test_all NAME...`
 * the named ones. The last line printed is "N passed, N failed"; the exit
 * status is non-zero if anything failed. */
#include "tests/test.h"

#include "engine/cpu.h"
#include <cblas.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

atomic_int test_n_passed, test_n_failed;

const char *test_env(const char *name, const char *def) {
    const char *v = getenv(name);
    return v && *v ? v : def;
}

uint32_t test_cpu_features(void) {
    uint32_t mask = 0;
    char err[256];
    if (cpu_parse_level(getenv("EMBEDSERVE_TEST_CPU_FEATURES"), cpu_detect(), &mask, err,
                        sizeof(err)) != 0) {
        fprintf(stderr, "EMBEDSERVE_TEST_CPU_FEATURES: %s\n", err);
        exit(2);
    }
    return mask;
}

char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 20, n = 0, k;
    char *buf = malloc(cap);
    while ((k = fread(buf + n, 1, cap - n - 1, f)) > 0)
        if ((n += k) + 1 >= cap) buf = realloc(buf, cap *= 2);
    buf[n] = '\0';
    fclose(f);
    if (len) *len = n;
    return buf;
}

int test_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof(a);
    int ok = fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
             !getsockname(fd, (struct sockaddr *)&a, &n);
    if (fd >= 0) close(fd);
    return ok ? ntohs(a.sin_port) : -1;
}

static const struct {
    const char *name;
    void (*fn)(void);
} suites[] = {
    {"ops", test_ops},
    {"safetensors", test_safetensors},
    {"tokenizer", test_tokenizer},
    {"engine", test_engine},
    {"api", test_api},
    {"config", test_config},
    {"http", test_http},
    {"gemm", test_wmat},
    {"oom", test_oom},
    {"hostile", test_hostile},
    {"conn", test_conn},
    {"memory", test_memory},
    {"batcher", test_batcher},
    {"multi", test_multi},
    /* only when named: its reference ids come from tests/stage_tokref.sh */
    {"tokref", test_tokref},
};

int main(int argc, char **argv) {
    int n_suites = (int)(sizeof(suites) / sizeof(suites[0]));
    if (argc == 2 &&
        !strcmp(argv[1], "--cpu-levels")) { /* the levels this CPU runs, lowest first */
        uint32_t masks[16];
        const char *names[16];
        int n = cpu_levels(cpu_detect(), masks, names, 16);
        for (int i = 0; i < n; i++)
            printf("%s\n", names[i]);
        return 0;
    }
    /* as the programs do: the engine's team is the one team of threads */
    openblas_set_num_threads(1);
    char names[128];
    uint32_t mask = test_cpu_features();
    fprintf(stderr, "CPU level %s (features %s)\n", cpu_level_name(mask),
            cpu_mask_names(mask, names, sizeof(names)));
    for (int i = 0; i < n_suites; i++) {
        int want = argc < 2 && strcmp(suites[i].name, "tokref") != 0;
        for (int a = 1; a < argc; a++)
            want |= !strcmp(argv[a], suites[i].name);
        if (!want) continue;
        int p0 = test_n_passed, f0 = test_n_failed;
        suites[i].fn();
        fprintf(stderr, "suite %-12s %d passed, %d failed\n", suites[i].name, test_n_passed - p0,
                test_n_failed - f0);
    }
    printf("%d passed, %d failed\n", (int)test_n_passed, (int)test_n_failed);
    return test_n_failed ? 1 : 0;
}
