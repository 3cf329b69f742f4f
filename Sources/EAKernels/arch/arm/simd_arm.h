/* simd_arm.h - static inline NEON helpers shared by several ARM kernel files. Internal. */
#ifndef EAK_SIMD_ARM_H
#define EAK_SIMD_ARM_H
#include "ea_kernels.h"
#include <arm_neon.h>

/* The four int32 sums of four byte products each of 16 signed bytes: armv8-a (vmull and pairwise
 * adds) and dotprod (sdot) give the same lanes. */
static inline int32x4_t lanes16_neon(int8x16_t w, int8x16_t x) {
    int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(x)));   /* pairs of bytes 0..7  */
    int32x4_t hi = vpaddlq_s16(vmull_s8(vget_high_s8(w), vget_high_s8(x))); /* pairs of bytes 8..15 */
    return vpaddq_s32(lo, hi);                                              /* quads 0..3 .. 12..15 */
}

__attribute__((target("arch=armv8.2-a+dotprod"))) static inline int32x4_t lanes16_dp(int8x16_t w, int8x16_t x) {
    return vdotq_s32(vdupq_n_s32(0), w, x);
}

/* W2: one token's float work for four rows (eak_w2_row_generic's operations per lane, in its order):
 * lo += (d * dx) * L_lo, hi += (d * dx) * L_hi, m += mn * s. */
static inline void w2_float4_neon(float32x4_t *lo, float32x4_t *hi, float32x4_t *mm, float32x4_t dv, float32x4_t mv,
                                  const eak_act_block *xb, int32x4_t l0, int32x4_t l1) {
    const float32x4_t sc = vmulq_f32(dv, vdupq_n_f32(xb->d));
    *lo = vaddq_f32(*lo, vmulq_f32(sc, vcvtq_f32_s32(l0)));
    *hi = vaddq_f32(*hi, vmulq_f32(sc, vcvtq_f32_s32(l1)));
    *mm = vaddq_f32(*mm, vmulq_f32(mv, vdupq_n_f32(xb->s)));
}
#endif
