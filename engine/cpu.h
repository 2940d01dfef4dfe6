/* cpu.h -- CPU features the engine's kernels may use, as a bit mask.
 *
 * cpu_detect() reads what this CPU and OS support (cpuid + xgetbv on x86-64,
 * getauxval(AT_HWCAP/AT_HWCAP2) on aarch64, nothing elsewhere). On Linux
 * x86-64 with AMX it also asks the kernel for the process's permission to
 * use tile data (arch_prctl), once: AMX counts only when that is granted. A level
 * string ("generic", "avx2", "avx512", ...) restricts a mask to the features
 * of that level, so one capable machine can test and benchmark every level
 * below its own. The engine never reads the environment: the mask reaches it
 * through struct eng_params (cpu_features), chosen once by the program.
 *
 * Thread-safety: every function is thread-safe (cpu_detect caches its answer
 * with an atomic; the rest are pure).
 */
#ifndef EMB_CPU_H
#define EMB_CPU_H

#include <stddef.h>
#include <stdint.h>

/* Feature bits. CPU_BASE is always set in a mask: the portable C kernels. */
enum {
    CPU_BASE = 1u << 0,
    /* x86-64 */
    CPU_X86_AVX2 = 1u << 1,        /* AVX2 + FMA (and the OS saves ymm) */
    CPU_X86_AVX512 = 1u << 2,      /* AVX512F + BW + VL (and the OS saves zmm) */
    CPU_X86_AVX512_BF16 = 1u << 3, /* + AVX512_BF16 */
    CPU_X86_AVX512_VNNI = 1u << 4, /* + AVX512_VNNI */
    CPU_X86_AMX = 1u << 5,         /* + AMX-TILE, -INT8, -BF16 (and the OS grants tile data) */
    /* aarch64 */
    CPU_ARM_NEON = 1u << 8,
    CPU_ARM_DOTPROD = 1u << 9,
    CPU_ARM_I8MM = 1u << 10,
    CPU_ARM_BF16 = 1u << 11,
};

/* The features of this CPU and OS (CPU_BASE at least). Cached. */
uint32_t cpu_detect(void);

/* Parses a level ("auto", "generic", "avx2", "avx512", "avx512bf16",
 * "avx512vnni", "amx", "neon", "dotprod", "i8mm", "bf16") and writes
 * `have` restricted to that level into *mask ("auto": `have` itself).
 * Returns 0, or -1 with a message naming the valid levels in err; asking
 * for a level the CPU lacks is not an error: the mask is what both allow. */
int cpu_parse_level(const char *s, uint32_t have, uint32_t *mask, char *err, size_t errlen);

/* Space-separated names of the bits set in mask ("base avx2 ...") into
 * buf[n]; returns buf. */
const char *cpu_mask_names(uint32_t mask, char *buf, size_t n);

/* Name of the highest level fully contained in mask ("avx512bf16", "avx2",
 * "generic", ...): for logs and test output. */
const char *cpu_level_name(uint32_t mask);

/* Each level this CPU can run, lowest first: mask i of *n into masks[].
 * For tests and benchmarks that loop over forced levels. */
int cpu_levels(uint32_t have, uint32_t *masks, const char **names, int max);

#endif
