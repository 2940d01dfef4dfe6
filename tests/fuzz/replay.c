/* replay.c -- main() for the fuzz targets without libFuzzer: runs
 * LLVMFuzzerTestOneInput once on every file named on the command line (a
 * directory means every regular file in it). A crash or failed invariant
 * aborts; otherwise the last line is "replay: N passed, 0 failed". */
#include "tests/fuzz/fuzz.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

static long n_run;

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return fprintf(stderr, "replay: cannot open %s\n", path), -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    size_t got = buf ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!buf || got != (size_t)n) return free(buf), fprintf(stderr, "replay: %s\n", path), -1;
    LLVMFuzzerTestOneInput(buf, got);
    free(buf);
    n_run++;
    return 0;
}

static int run_path(const char *path) {
    struct stat st;
    if (stat(path, &st)) return 0; /* a missing directory is an empty one */
    if (!S_ISDIR(st.st_mode)) return run_file(path);
    DIR *d = opendir(path);
    if (!d) return -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* ., .., .gitkeep */
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
        if (!stat(p, &st) && S_ISREG(st.st_mode)) rc |= run_file(p);
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv) {
    LLVMFuzzerInitialize(&argc, &argv);
    int rc = 0;
    for (int i = 1; i < argc; i++)
        rc |= run_path(argv[i]);
    printf("replay: %ld passed, %d failed\n", n_run, rc ? 1 : 0);
    return rc ? 1 : 0;
}
