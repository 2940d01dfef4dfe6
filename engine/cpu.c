/* cpu.c -- CPU feature detection and levels (contract in cpu.h). */
#include "engine/cpu.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

static const struct {
    const char *name;
    uint32_t bit;
} bit_names[] = {
    {"base", CPU_BASE},
    {"avx2", CPU_X86_AVX2},
    {"avx512", CPU_X86_AVX512},
    {"avx512bf16", CPU_X86_AVX512_BF16},
    {"avx512vnni", CPU_X86_AVX512_VNNI},
    {"amx", CPU_X86_AMX},
    {"neon", CPU_ARM_NEON},
    {"dotprod", CPU_ARM_DOTPROD},
    {"i8mm", CPU_ARM_I8MM},
    {"bf16", CPU_ARM_BF16},
};

/* Levels, lowest first within each ISA; a level's mask holds every bit a
 * kernel of that level may use. */
static const struct {
    const char *name;
    uint32_t mask;
} levels[] = {
    {"generic", CPU_BASE},
    {"avx2", CPU_BASE | CPU_X86_AVX2},
    {"avx512", CPU_BASE | CPU_X86_AVX2 | CPU_X86_AVX512},
    {"avx512vnni", CPU_BASE | CPU_X86_AVX2 | CPU_X86_AVX512 | CPU_X86_AVX512_VNNI},
    {"avx512bf16",
     CPU_BASE | CPU_X86_AVX2 | CPU_X86_AVX512 | CPU_X86_AVX512_VNNI | CPU_X86_AVX512_BF16},
    {"amx", CPU_BASE | CPU_X86_AVX2 | CPU_X86_AVX512 | CPU_X86_AVX512_VNNI | CPU_X86_AVX512_BF16 |
                CPU_X86_AMX},
    {"neon", CPU_BASE | CPU_ARM_NEON},
    {"dotprod", CPU_BASE | CPU_ARM_NEON | CPU_ARM_DOTPROD},
    {"i8mm", CPU_BASE | CPU_ARM_NEON | CPU_ARM_DOTPROD | CPU_ARM_I8MM},
    {"bf16", CPU_BASE | CPU_ARM_NEON | CPU_ARM_DOTPROD | CPU_ARM_I8MM | CPU_ARM_BF16},
};
#define N_LEVELS ((int)(sizeof(levels) / sizeof(levels[0])))

#if defined(__x86_64__) || defined(__i386__)
/* AMX-TILE, AMX-INT8 and AMX-BF16 (cpuid 7.0 edx bits 24, 25, 22), the OS saving tile
 * config and data (XCR0 bits 17, 18), and, on Linux, the process allowed
 * to use tile data: the kernel enables it per process on request
 * (ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA), and a thread that touches
 * tiles without it dies by SIGILL. Granted once, it holds for every thread. */
static int amx_granted(unsigned d7, unsigned xcr0_lo) {
    unsigned need = 1u << 24 | 1u << 25 | 1u << 22;
    if ((d7 & need) != need) return 0;
    if ((xcr0_lo & 0x60000u) != 0x60000u) return 0;
#if defined(__linux__) && defined(SYS_arch_prctl)
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return 0;
#endif
}
#endif

static uint32_t detect(void) {
    uint32_t f = CPU_BASE;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(1, 0, &a, &b, &c, &d) || !(c & bit_OSXSAVE)) return f;
    int fma = (c & bit_FMA) != 0;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    (void)xhi;
    if ((xlo & 0x6) != 0x6) return f; /* the OS saves SSE and AVX state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
    unsigned max_sub = a, b7 = b, c7 = c;
    if ((b7 & bit_AVX2) && fma) f |= CPU_X86_AVX2;
    /* opmask, ZMM0-15 upper halves and ZMM16-31 saved too */
    int zmm = (xlo & 0xe6) == 0xe6;
    if (!zmm || !(f & CPU_X86_AVX2) || !(b7 & bit_AVX512F) || !(b7 & bit_AVX512BW) ||
        !(b7 & bit_AVX512VL))
        return f;
    f |= CPU_X86_AVX512;
    if (c7 & bit_AVX512VNNI) f |= CPU_X86_AVX512_VNNI;
    unsigned d7 = d;
    if (max_sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & bit_AVX512BF16))
        f |= CPU_X86_AVX512_BF16;
    if (amx_granted(d7, xlo) && (f & CPU_X86_AVX512_VNNI) && (f & CPU_X86_AVX512_BF16))
        f |= CPU_X86_AMX;
#elif defined(__aarch64__) && defined(__linux__)
    /* Linux's HWCAP bits (asm/hwcap.h), spelled out for older headers */
    unsigned long h1 = getauxval(AT_HWCAP), h2 = getauxval(AT_HWCAP2);
    if (h1 & (1ul << 1)) f |= CPU_ARM_NEON;     /* HWCAP_ASIMD */
    if (h1 & (1ul << 20)) f |= CPU_ARM_DOTPROD; /* HWCAP_ASIMDDP */
    if (h2 & (1ul << 13)) f |= CPU_ARM_I8MM;    /* HWCAP2_I8MM */
    if (h2 & (1ul << 14)) f |= CPU_ARM_BF16;    /* HWCAP2_BF16 */
#endif
    return f;
}

uint32_t cpu_detect(void) {
    static atomic_uint cached; /* 0: not read yet (a mask always has CPU_BASE) */
    uint32_t f = atomic_load(&cached);
    if (!f) {
        f = detect();
        atomic_store(&cached, f);
    }
    return f;
}

int cpu_parse_level(const char *s, uint32_t have, uint32_t *mask, char *err, size_t errlen) {
    have |= CPU_BASE;
    if (!s || !*s || !strcmp(s, "auto")) {
        *mask = have;
        return 0;
    }
    for (int i = 0; i < N_LEVELS; i++)
        if (!strcmp(s, levels[i].name)) {
            *mask = have & levels[i].mask;
            return 0;
        }
    int k = snprintf(err, errlen, "unknown CPU level '%s': one of auto", s);
    for (int i = 0; i < N_LEVELS && k >= 0 && (size_t)k < errlen; i++)
        k += snprintf(err + k, errlen - (size_t)k, " %s", levels[i].name);
    return -1;
}

const char *cpu_mask_names(uint32_t mask, char *buf, size_t n) {
    size_t k = 0;
    if (n) buf[0] = '\0';
    for (size_t i = 0; i < sizeof(bit_names) / sizeof(bit_names[0]); i++) {
        if (!(mask & bit_names[i].bit) || k >= n) continue;
        int w = snprintf(buf + k, n - k, "%s%s", k ? " " : "", bit_names[i].name);
        if (w < 0) break;
        k += (size_t)w;
    }
    return buf;
}

const char *cpu_level_name(uint32_t mask) {
    const char *best = "generic";
    for (int i = 0; i < N_LEVELS; i++)
        if ((mask & levels[i].mask) == levels[i].mask) best = levels[i].name;
    return best;
}

int cpu_levels(uint32_t have, uint32_t *masks, const char **names, int max) {
    int n = 0;
    have |= CPU_BASE;
    for (int i = 0; i < N_LEVELS && n < max; i++) {
        /* a level counts when the CPU has all of it and it differs from the previous one */
        if ((have & levels[i].mask) != levels[i].mask) continue;
        masks[n] = levels[i].mask;
        names[n++] = levels[i].name;
    }
    return n;
}
