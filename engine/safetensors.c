/* safetensors.c -- a validating reader of the .safetensors format.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {...}}, then the data; offsets are relative to the byte
 * after the header. Everything a hostile or truncated file could get wrong is
 * checked here, before any tensor is read, so the loader can trust it.
 *
 * The header is JSON because the format says so; cJSON stays private to this
 * file and model.c (no cJSON type leaves engine/).
 */
#include "engine/engine_impl.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (256u << 20) /* far above any real header */

static int dtype_parse(const char *s, enum st_dtype *dt, size_t *elsize) {
    static const struct {
        const char *name;
        enum st_dtype dt;
        size_t size;
    } tab[] = {
        {"F32", ST_F32, 4},    {"F16", ST_F16, 2},       {"BF16", ST_BF16, 2},
        {"F64", ST_OTHER, 8},  {"I64", ST_OTHER, 8},     {"I32", ST_OTHER, 4},
        {"I16", ST_OTHER, 2},  {"I8", ST_OTHER, 1},      {"U8", ST_OTHER, 1},
        {"BOOL", ST_OTHER, 1}, {"U16", ST_OTHER, 2},     {"U32", ST_OTHER, 4},
        {"U64", ST_OTHER, 8},  {"F8_E4M3", ST_OTHER, 1}, {"F8_E5M2", ST_OTHER, 1},
    };
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
        if (!strcmp(s, tab[i].name)) {
            *dt = tab[i].dt;
            *elsize = tab[i].size;
            return 0;
        }
    }
    return -1;
}

/* Parses one header entry into t; returns 0 or writes err. */
static int entry_parse(const struct st_file *f, const cJSON *e, size_t data_size,
                       struct st_tensor *t, char *err, size_t errlen) {
    const char *name = e->string;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    size_t elsize = 0;
    if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(off) ||
        cJSON_GetArraySize(off) != 2) {
        snprintf(err, errlen, "%s: header entry '%s' lacks dtype, shape or data_offsets", f->path,
                 name);
        return -1;
    }
    if (dtype_parse(dt->valuestring, &t->dtype, &elsize) != 0) {
        snprintf(err, errlen, "%s: tensor '%s' has unknown dtype '%.15s'", f->path, name,
                 dt->valuestring);
        return -1;
    }
    snprintf(t->dtype_name, sizeof(t->dtype_name), "%s", dt->valuestring);
    t->n_dims = cJSON_GetArraySize(shape);
    if (t->n_dims > 8) {
        snprintf(err, errlen, "%s: tensor '%s' has %d dimensions", f->path, name, t->n_dims);
        return -1;
    }
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 1e12 ||
            d->valuedouble != (double)(int64_t)d->valuedouble) {
            snprintf(err, errlen, "%s: tensor '%s' has an invalid shape", f->path, name);
            return -1;
        }
        t->shape[i] = (int64_t)d->valuedouble;
        if (t->shape[i] && n > INT64_MAX / 16 / t->shape[i]) {
            snprintf(err, errlen, "%s: tensor '%s' is impossibly large", f->path, name);
            return -1;
        }
        n *= t->shape[i];
    }
    t->n_elem = n;
    double b = cJSON_GetArrayItem(off, 0)->valuedouble,
           en = cJSON_GetArrayItem(off, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(off, 0)) ||
        !cJSON_IsNumber(cJSON_GetArrayItem(off, 1)) || b < 0 || en < b || en > (double)data_size) {
        snprintf(err, errlen,
                 "%s: tensor '%s' data_offsets [%.0f, %.0f] lie outside the %zu data bytes "
                 "(truncated file?)",
                 f->path, name, b, en, data_size);
        return -1;
    }
    size_t begin = (size_t)b, end = (size_t)en;
    if (end - begin != (size_t)n * elsize) {
        snprintf(err, errlen, "%s: tensor '%s' holds %zu bytes but its shape and dtype need %zu",
                 f->path, name, end - begin, (size_t)n * elsize);
        return -1;
    }
    t->nbytes = end - begin;
    t->file_off = (uint64_t)(8 + (f->size - 8 - data_size) + begin);
    t->data = (const char *)f->map + t->file_off;
    t->name = strdup(name);
    return t->name ? 0 : -1;
}

static int header_parse(struct st_file *f, const char *json, size_t len, char *err, size_t errlen) {
    size_t data_size = f->size - 8 - len;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: header is not valid JSON (near byte %ld)", f->path,
                 root ? 0L : (long)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : 0));
        cJSON_Delete(root);
        return -1;
    }
    int n = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)(n ? n : 1), sizeof(*f->tensors));
    if (!f->tensors) {
        cJSON_Delete(root);
        snprintf(err, errlen, "%s: out of memory", f->path);
        return -1;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (!strcmp(e->string, "__metadata__")) continue;
        if (entry_parse(f, e, data_size, &f->tensors[f->n_tensors], err, errlen) != 0) {
            cJSON_Delete(root);
            return -1;
        }
        f->n_tensors++;
    }
    cJSON_Delete(root);
    return 0;
}

struct st_file *st_open(const char *path, char *err, size_t errlen) {
    struct st_file *f = calloc(1, sizeof(*f));
    int fd = -1;
    if (f) f->fd = -1;
    if (!f || !(f->path = strdup(path))) goto oom;
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO must not block */
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file (a safetensors file is needed)", path);
        goto fail;
    }
    if (sb.st_size < 8 + 2) {
        snprintf(err, errlen, "%s: not a safetensors file (%lld bytes)", path,
                 (long long)sb.st_size);
        goto fail;
    }
    f->size = (size_t)sb.st_size;
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        snprintf(err, errlen, "%s: mmap failed (%s)", path, strerror(errno));
        goto fail;
    }
    f->fd = fd; /* kept: st_rows_open reads tables from it after the mapping is gone */
    fd = -1;
    uint64_t hlen = 0;
    const unsigned char *p = f->map;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | p[i];
    if (hlen < 2 || hlen > ST_MAX_HEADER || hlen > f->size - 8) {
        snprintf(err, errlen, "%s: header length %llu does not fit the %zu-byte file", path,
                 (unsigned long long)hlen, f->size);
        goto fail;
    }
    if (header_parse(f, (const char *)p + 8, (size_t)hlen, err, errlen) != 0) goto fail;
    return f;
oom:
    snprintf(err, errlen, "%s: out of memory", path);
fail:
    if (fd >= 0) close(fd);
    st_close(f);
    return NULL;
}

void st_close(struct st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    if (f->map) munmap(f->map, f->size);
    if (f->fd >= 0) close(f->fd);
    free(f->path);
    free(f);
}

const struct st_tensor *st_find(const struct st_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

void st_release(const struct st_tensor *t) {
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)t->data + pg - 1) & ~(pg - 1);
    uintptr_t b = ((uintptr_t)t->data + t->nbytes) & ~(pg - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

static float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* IEEE half -> float, in integer arithmetic: _Float16 is not available on
 * every compiler this builds with (clang 14 on x86 lacks it; make fuzz). */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    uint32_t u;
    float x;
    if (exp == 0x1F) {
        u = sign | 0x7F800000u | (man << 13); /* inf, nan (payload kept) */
    } else if (exp) {
        u = sign | ((exp + 112) << 23) | (man << 13); /* normal: rebias 15 -> 127 */
    } else {
        x = (float)man * 0x1p-24f; /* zero or subnormal: man * 2^-24, exact */
        memcpy(&u, &x, 4);
        u |= sign;
    }
    memcpy(&x, &u, 4);
    return x;
}

float st_get_f32(enum st_dtype dt, const void *data, int64_t i) {
    switch (dt) {
    case ST_F32: {
        float x;
        memcpy(&x, (const char *)data + 4 * i, 4);
        return x;
    }
    case ST_BF16: {
        uint16_t h;
        memcpy(&h, (const char *)data + 2 * i, 2);
        return bf16_to_f32(h);
    }
    case ST_F16: {
        uint16_t h;
        memcpy(&h, (const char *)data + 2 * i, 2);
        return f16_to_f32(h);
    }
    default: ENG_ASSERT(0 && "unsupported dtype");
    }
    return 0;
}

void st_to_f32(enum st_dtype dt, const void *src, float *dst, int64_t n) {
    if (dt == ST_F32) {
        memcpy(dst, src, (size_t)n * 4);
    } else if (dt == ST_BF16 && ((uintptr_t)src & 1) == 0) {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++)
            dst[i] = bf16_to_f32(s[i]);
    } else {
        for (int64_t i = 0; i < n; i++)
            dst[i] = st_get_f32(dt, src, i);
    }
}

void *st_copy(const struct st_tensor *t) {
    void *p = malloc(t->nbytes ? t->nbytes : 1);
    if (p) memcpy(p, t->data, t->nbytes);
    st_release(t);
    return p;
}

int st_rows_open(struct st_rows *r, const struct st_file *f, const struct st_tensor *t,
                 bool in_memory, char *err, size_t errlen) {
    *r = (struct st_rows){.fd = -1, .dt = t->dtype, .off = t->file_off};
    r->n_rows = t->n_dims ? t->shape[0] : 1;
    r->row_len = r->n_rows ? t->n_elem / r->n_rows : 0;
    r->row_bytes = r->n_rows ? t->nbytes / (size_t)r->n_rows : 0;
    if (in_memory) {
        if (!(r->mem = st_copy(t))) {
            snprintf(err, errlen, "out of memory for the %zu bytes of '%s'", t->nbytes, t->name);
            return -1;
        }
        return 0;
    }
    struct stat sb;
    r->fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 0);
    if (r->fd < 0 || fstat(r->fd, &sb) != 0) {
        snprintf(err, errlen, "%s: cannot keep the file open for '%s' (%s)", f->path, t->name,
                 strerror(errno));
        return -1;
    }
    r->file_size = (int64_t)sb.st_size;
    r->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    return 0;
}

int st_rows_check(const struct st_rows *r) {
    struct stat sb;
    if (r->mem) return 0;
    if (fstat(r->fd, &sb) != 0) return -1;
    int64_t mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    return (int64_t)sb.st_size == r->file_size && mtime_ns == r->mtime_ns ? 0 : -1;
}

void st_rows_close(struct st_rows *r) {
    free((void *)r->mem);
    if (r->fd >= 0) close(r->fd);
    *r = (struct st_rows){.fd = -1};
}

int st_rows_get_f32(const struct st_rows *r, int64_t i, float *out) {
    if (i < 0 || i >= r->n_rows) return -1;
    if (r->mem) {
        st_to_f32(r->dt, (const char *)r->mem + (size_t)i * r->row_bytes, out, r->row_len);
        return 0;
    }
    /* In chunks through a buffer of whole elements; pread's short reads and
     * EINTR retried, end of file (the file cut since it was opened) is -1. */
    _Alignas(16) unsigned char buf[8192];
    size_t esize = r->row_bytes / (size_t)r->row_len, done = 0;
    uint64_t pos = r->off + (uint64_t)i * r->row_bytes;
    while (done < r->row_bytes) {
        size_t want = r->row_bytes - done < sizeof(buf) ? r->row_bytes - done : sizeof(buf),
               got = 0;
        while (got < want) {
            ssize_t k = pread(r->fd, buf + got, want - got, (off_t)(pos + done + got));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) return -1;
            got += (size_t)k;
        }
        st_to_f32(r->dt, buf, out + done / esize, (int64_t)(want / esize));
        done += want;
    }
    return 0;
}
