/* test_cgroup.c -- cfg_cgroup_cpu_limit() on fake cgroup trees: cgroup v2
 * cpu.max and v1 cpu.cfs_quota_us/cpu.cfs_period_us, nested cgroups (the
 * smallest quota of a cgroup and its ancestors wins), a container's view (its
 * own cgroup mounted as the root), no quota, unreadable and garbled files;
 * and cfg_cgroup_memory_limit (v2 memory.max, v1 memory.limit_in_bytes).
 * Part of the config suite. */
#include "tests/test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"

static char root[64];

/* Writes TEXT to ROOT/REL, creating the directories on the way. */
static void put(const char *rel, const char *text) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    CHECKM(f != NULL, "cannot write %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* A fresh, empty fake root. */
static void reset(void) {
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir '%s'", root, root);
    CHECK(system(cmd) == 0);
}

/* The limit seen with the fake /proc/self/cgroup PROC (NULL: no such file). */
static int limit(const char *proc) {
    char cgfile[128], sys[128];
    snprintf(cgfile, sizeof(cgfile), "%s/proc-self-cgroup", root);
    snprintf(sys, sizeof(sys), "%s/sys", root);
    unlink(cgfile);
    if (proc) put("proc-self-cgroup", proc);
    return cfg_cgroup_cpu_limit(sys, cgfile);
}

#define V1_DOCKER "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n"

/* The memory limit the --max-memory default derives from, on fake mounts:
 * v2 memory.max (a number, or "max"), else v1 memory.limit_in_bytes (whose
 * "unlimited" is a number near 2^63), garbled or missing files. */
static void memory_limits(void) {
    char sys[128];
    snprintf(sys, sizeof(sys), "%s/sys", root);
    reset();
    CHECK(cfg_cgroup_memory_limit(sys) == 0); /* nothing mounted */
    put("sys/memory.max", "max\n");
    CHECK(cfg_cgroup_memory_limit(sys) == 0);
    put("sys/memory.max", "3221225472\n"); /* a 3 Gi pod limit */
    CHECK(cfg_cgroup_memory_limit(sys) == 3221225472LL);
    put("sys/memory.max", "garbage\n");
    CHECK(cfg_cgroup_memory_limit(sys) == 0);
    reset();
    put("sys/memory/memory.limit_in_bytes", "9223372036854771712\n"); /* v1: no limit */
    CHECK(cfg_cgroup_memory_limit(sys) == 0);
    put("sys/memory/memory.limit_in_bytes", "1073741824\n");
    CHECK(cfg_cgroup_memory_limit(sys) == 1073741824LL);
    put("sys/memory.max", "2147483648\n"); /* v2 wins where both are there */
    CHECK(cfg_cgroup_memory_limit(sys) == 2147483648LL);
}

void test_config_cgroup(void) {
    snprintf(root, sizeof(root), "/tmp/embedserve_cgroupXXXXXX");
    CHECK(mkdtemp(root) != NULL);

    /* Nothing mounted, nothing to read: no quota. */
    reset();
    CHECK(limit(NULL) == 0);
    CHECK(limit(V1_DOCKER) == 0);

    /* cgroup v1 as docker --cpus 1.5 shows it: the container's cgroup is the
     * mount's root, /proc/self/cgroup names the host path. Rounded up. */
    reset();
    put("sys/cpu/cpu.cfs_quota_us", "150000\n");
    put("sys/cpu/cpu.cfs_period_us", "100000\n");
    CHECK(limit(V1_DOCKER) == 2);
    CHECK(limit(NULL) == 2);
    put("sys/cpu/cpu.cfs_quota_us", "50000\n");
    CHECK(limit(V1_DOCKER) == 1);
    put("sys/cpu/cpu.cfs_quota_us", "250000\n");
    CHECK(limit(V1_DOCKER) == 3);
    put("sys/cpu/cpu.cfs_quota_us", "-1\n"); /* no quota */
    CHECK(limit(V1_DOCKER) == 0);
    put("sys/cpu/cpu.cfs_quota_us", "garbage\n");
    CHECK(limit(V1_DOCKER) == 0);
    put("sys/cpu/cpu.cfs_quota_us", "200000\n");
    put("sys/cpu/cpu.cfs_period_us", "0\n");
    CHECK(limit(V1_DOCKER) == 0);

    /* v1 on a host, joint cpu,cpuacct mount, nested cgroups: the parent's
     * quota (1 core) caps the child's (3 cores); the controller is found
     * in either order in the list, and "cpuacct" alone is not "cpu". */
    reset();
    put("sys/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
    put("sys/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    put("sys/cpu,cpuacct/a/cpu.cfs_quota_us", "100000\n");
    put("sys/cpu,cpuacct/a/cpu.cfs_period_us", "100000\n");
    put("sys/cpu,cpuacct/a/b/cpu.cfs_quota_us", "300000\n");
    put("sys/cpu,cpuacct/a/b/cpu.cfs_period_us", "100000\n");
    CHECK(limit("5:cpuacct,cpu:/a/b\n") == 1);
    CHECK(limit("2:cpuacct:/x\n3:cpu,cpuacct:/a/b/\n") == 1);
    put("sys/cpu,cpuacct/a/cpu.cfs_quota_us", "-1\n");
    CHECK(limit("5:cpu,cpuacct:/a/b\n") == 3);
    CHECK(limit("5:cpuacct:/a/b\n") == 0);  /* no cpu controller line: the root, unlimited */
    CHECK(limit("5:cpu,cpuacct:/\n") == 0); /* the root cgroup itself */

    /* cgroup v2: the container's view (cgroup namespace: "0::/"). */
    reset();
    put("sys/cpu.max", "200000 100000\n");
    CHECK(limit("0::/\n") == 2);
    CHECK(limit(NULL) == 2);
    put("sys/cpu.max", "max 100000\n");
    CHECK(limit("0::/\n") == 0);
    /* v2 on a host: the process's own cgroup and its ancestors. */
    put("sys/user.slice/cpu.max", "400000 100000\n");
    put("sys/user.slice/app.scope/cpu.max", "max 100000\n");
    CHECK(limit("0::/user.slice/app.scope\n") == 4);
    put("sys/user.slice/app.scope/cpu.max", "120000 100000\n");
    CHECK(limit("0::/user.slice/app.scope\n") == 2);
    CHECK(limit("0::/elsewhere\n") == 0);

    /* Both hierarchies (hybrid): the smaller quota wins. */
    put("sys/cpu/cpu.cfs_quota_us", "100000\n");
    put("sys/cpu/cpu.cfs_period_us", "100000\n");
    CHECK(limit("4:cpu:/\n0::/user.slice/app.scope\n") == 1);

    /* The real machine: within [1, online CPUs]. */
    int n = cfg_cpu_count();
    CHECKM(n >= 1 && n <= sysconf(_SC_NPROCESSORS_ONLN), "cfg_cpu_count() = %d", n);

    memory_limits();

    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
}
