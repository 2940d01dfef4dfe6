/* config.h -- embedserve's settings: one table drives parsing, validation,
 * --help and the effective-config log line (redis static_configs[] style).
 *
 * Every setting is a command-line option `--name VALUE` (or `--name=VALUE`;
 * booleans also take a bare `--name`) and an environment variable
 * `EMBEDSERVE_NAME` (upper case, '-' -> '_'). Precedence: defaults < env <
 * argv. List settings (model, api-key, served-model-name, model-alias) are
 * repeatable and comma-separated; a list given on the command line replaces
 * the one from the environment.
 *
 * Conventions: functions return CFG_OK (0), CFG_HELP (1: --help or --version
 * was printed, exit 0), or CFG_EINVAL (-1) with a one-line reason naming the
 * setting in err[errlen].
 *
 * Thread-safety: none needed. main() fills a struct cfg once at startup and
 * it is read-only afterwards. This module includes no other module's header.
 */
#ifndef EMB_CONFIG_H
#define EMB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CFG_OK     0
#define CFG_HELP   1
#define CFG_EINVAL (-1)

enum cfg_log_level {
    CFG_LOG_ERROR = 0,
    CFG_LOG_WARN = 1,
    CFG_LOG_INFO = 2,
    CFG_LOG_DEBUG = 3,
};

enum cfg_log_format {
    CFG_LOG_TEXT = 0, /* `TS LEVEL [tid] where: message` */
    CFG_LOG_JSON = 1, /* one JSON object per line */
};

enum cfg_dtype {
    CFG_DTYPE_AUTO = 0, /* the engine picks (bf16 where the CPU has AVX512_BF16, else f32) */
    CFG_DTYPE_F32 = 1,  /* exact */
    CFG_DTYPE_BF16 = 2,
    CFG_DTYPE_INT8 = 3,
};

#define CFG_VERSION "0.1.0"

/* A list of heap strings (owned by the struct cfg). */
struct cfg_list {
    char **v;
    int n;
};

/* Most --model directories one process serves. */
#define CFG_MAX_MODELS 8

struct cfg {
    /* --model: directories with config.json, model.safetensors and the tokenizer (at least
       one; repeatable or comma-separated, so a directory name cannot hold a comma) */
    struct cfg_list models;
    const char *model_dir;         /* models.v[0], the default model (borrowed; NULL without one) */
    char *host;                    /* --host: bind address (0.0.0.0) */
    int port;                      /* --port (8080; 0 = any free port) */
    struct cfg_list api_keys;      /* --api-key: accepted keys; empty = auth off */
    char *api_key_file;            /* --api-key-file: more keys, one per line ('#' comments) */
    struct cfg_list served_names;  /* --served-model-name: [0] is reported, the rest aliases */
    struct cfg_list model_aliases; /* --model-alias: more accepted names; "*" accepts any */
    char *default_task;            /* --default-task: task when a request names none ("" none) */
    int max_client_batch;          /* --max-client-batch: inputs per request (2048) */
    int max_input_tokens;          /* --max-input-tokens: tokens per sequence (8192) */
    int64_t max_body_bytes;        /* --max-body-bytes: request body limit (64 MiB) */
    int64_t max_memory;            /* --max-memory: budget for bodies and queued work (0 = auto) */
    int max_batch_tokens;          /* --max-batch-tokens: tokens per forward pass (16384) */
    int max_queue;                 /* --max-queue: requests admitted before 429 (256) */
    bool no_ui;                    /* --no-ui: no web page at / (false) */
    bool strict;                   /* --strict: unknown request fields are 422 */
    bool auto_truncate;            /* --auto-truncate: default of `truncate` (false) */
    char *cors_allow_origin;       /* --cors-allow-origin: "*" or origins, comma-separated ("") */
    int threads;                   /* --threads: engine threads (0 = all cores) */
    int http_threads;              /* --http-threads: HTTP/tokeniser threads (4) */
    int dtype;                     /* --dtype: enum cfg_dtype */
    char *cpu_features;            /* --cpu-features: a level name (engine/cpu.h), "auto" */
    bool embeddings_in_memory;     /* --embeddings-in-memory: copy the word table (false) */
    int log_level;                 /* --log-level: enum cfg_log_level */
    int log_format;                /* --log-format: enum cfg_log_format */
    bool warmup;                   /* --warmup: forward passes before /ready (true) */
    int http_timeout;              /* --http-timeout: idle connection timeout, seconds (60) */
    int header_timeout;            /* --header-timeout: request line + headers deadline, s (10) */
    int64_t body_min_rate;         /* --body-min-rate: bytes/s a body must average (16 KiB) */
    int max_conns_per_client;      /* --max-conns-per-client: per address, 0 = no cap (128) */
    int shutdown_timeout;          /* --shutdown-timeout: drain limit on SIGTERM, seconds (30) */
    /* --trusted-proxies: addresses or ranges exempt from --max-conns-per-client */
    struct cfg_list trusted_proxies;
    int request_timeout; /* --request-timeout: per-request deadline, seconds (600; 0 =
                            none); X-Request-Timeout may shorten it */
};

/* An address range of --trusted-proxies: "10.0.0.0/8", "::1", "192.0.2.7". */
struct cfg_net {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network byte order; 4 bytes used for AF_INET */
    int prefix;             /* leading bits that must match (32/128 for one address) */
};

/* Parses "ADDR" or "ADDR/PREFIX" into *out. Returns CFG_OK or CFG_EINVAL. */
int cfg_net_parse(const char *s, struct cfg_net *out);

/* Looks up an environment variable; NULL if unset. getenv fits. */
typedef const char *(*cfg_getenv_fn)(const char *name);

/* Fills *c with the defaults. Release with cfg_deinit. */
void cfg_init(struct cfg *c);

/* Frees the strings held by *c; accepts a zeroed or initialised struct. */
void cfg_deinit(struct cfg *c);

/* Applies EMBEDSERVE_* variables looked up through `get`. */
int cfg_parse_env(struct cfg *c, cfg_getenv_fn get, char *err, size_t errlen);

/* Applies argv[1..argc). Prints help/version to `out` and returns CFG_HELP
 * for --help / -h / --version. */
int cfg_parse_args(struct cfg *c, int argc, char **argv, FILE *out, char *err, size_t errlen);

/* Checks cross-setting rules and ranges, reads api_key_file into api_keys.
 * Run after parsing. */
int cfg_validate(struct cfg *c, char *err, size_t errlen);

/* cfg_init + cfg_parse_env(getenv) + cfg_parse_args + cfg_validate. On
 * failure *c still needs cfg_deinit. */
int cfg_load(struct cfg *c, int argc, char **argv, FILE *out, char *err, size_t errlen);

/* Writes the --help text (every setting, its env var and default). */
void cfg_usage(FILE *out, const char *prog);

/* One line "name=value ..." of every setting for the startup log; API keys
 * are shown only as a count. Returns the length snprintf would write. */
int cfg_describe(const struct cfg *c, char *buf, size_t n);

/* Cores this process may use: the CPU affinity mask, capped by the CPU
 * quota of its cgroup when one is set (docker run --cpus, a Kubernetes CPU
 * limit): cgroup v2 cpu.max or cgroup v1 cpu.cfs_quota_us/cpu.cfs_period_us.
 * What "--threads 0" means. At least 1. Thread-safe (reads files only). */
int cfg_cpu_count(void);

/* The CPU quota in whole cores, rounded up (1.5 CPUs -> 2), of the cgroup
 * that proc_cgroup ("/proc/self/cgroup" format) names, looked up under
 * cgroup_root ("/sys/fs/cgroup": v2 files there, v1 under cpu/ or
 * cpu,cpuacct/), the smallest over that cgroup and its ancestors; 0 when no
 * quota is set or nothing can be read. Both paths are parameters so tests
 * can feed it a fake tree. Thread-safe. */
int cfg_cgroup_cpu_limit(const char *cgroup_root, const char *proc_cgroup);

/* The memory limit of this process's cgroup in bytes (v2 memory.max, else
 * v1 memory.limit_in_bytes), or 0 when there is none. What "--max-memory 0"
 * derives its budget from. Thread-safe. */
int64_t cfg_memory_limit(void);

/* cfg_memory_limit with the cgroup mount at cgroup_root ("/sys/fs/cgroup"
 * there): the container's own cgroup as mounted inside it. A parameter so
 * tests can feed it a fake tree. Thread-safe. */
int64_t cfg_cgroup_memory_limit(const char *cgroup_root);

#endif
