/* attn.c -- the exact attention kernel table (the interface is in
 * attn_kernels.h; the kernels live in engine/arch/). */
#include "engine/attn_kernels.h"
#include "engine/cpu.h"

/* per CPU kind, fastest first; the generic row takes every mask and width */
static const struct attn_kernel *const kernels[] = {
#if defined(__x86_64__)
    &attn_x86_avx512_exact,
    &attn_x86_avx2_exact,
#elif defined(__aarch64__)
    &attn_arm_neon_exact,
#endif
    &attn_generic_exact,
};

const struct attn_kernel *attn_kernel_for(uint32_t cpu_mask, int d) {
    cpu_mask |= CPU_BASE;
    for (size_t i = 0; i < sizeof(kernels) / sizeof(kernels[0]); i++)
        if ((kernels[i]->needs & ~cpu_mask) == 0 && d % kernels[i]->d_mult == 0) return kernels[i];
    return &attn_generic_exact;
}

size_t attn_scratch_floats(int d) {
    size_t dp = ((size_t)d + 15) & ~(size_t)15;
    return (ATTN_TQ + 8) * dp + 2 * ATTN_KB * dp + ATTN_TQ * ATTN_KB + ATTN_TQ * dp + 3 * ATTN_TQ;
}
