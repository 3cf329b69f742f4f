/* ARM forms of the SiLU gate (math.c): NEON, exp32's operations lane by lane. */
#if defined(__aarch64__)
#include "../../math_kernels.h"
#include <arm_neon.h>

/* exp32 on four lanes: the same float operations in the same order (no fused multiply-add: the
 * file is built with -ffp-contract=off), so the same bits */
static inline float32x4_t exp32_neon(float32x4_t x) {
    const float32x4_t lo = vdupq_n_f32(-87.0f), hi = vdupq_n_f32(88.0f);
    const float32x4_t xc = vminnmq_f32(vmaxnmq_f32(x, lo), hi); /* NaN -> -87: finite below */
    const float32x4_t y = vaddq_f32(vmulq_f32(xc, vdupq_n_f32(EXP32_L2E)), vdupq_n_f32(0.5f));
    const float32x4_t nn = vrndmq_f32(y);
    const float32x4_t r = vsubq_f32(vsubq_f32(xc, vmulq_f32(nn, vdupq_n_f32(EXP32_C1))),
                                    vmulq_f32(nn, vdupq_n_f32(EXP32_C2)));
    float32x4_t p = vdupq_n_f32(1.0f / 720.0f);
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.0f / 120.0f));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.0f / 24.0f));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.0f / 6.0f));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(0.5f));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.0f));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.0f));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(nn), vdupq_n_s32(127)), 23);
    float32x4_t res = vmulq_f32(p, vreinterpretq_f32_s32(e));
    res = vbslq_f32(vcltq_f32(x, lo), vdupq_n_f32(0.0f), res);
    res = vbslq_f32(vcgtq_f32(x, hi), vdupq_n_f32(INFINITY), res);
    return vbslq_f32(vceqq_f32(x, x), res, x); /* NaN in, NaN out */
}

/* SiLU gate on elements [i0, i1): g / (1 + exp32(-g)) * u. The SIMD forms run exp32's float
 * operations lane by lane (see exp32_avx2 / exp32_neon), so all give the same bits. */
void eak_silu_neon(float *out, const float *g, const float *u, int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + 4 <= i1; i += 4) {
        const float32x4_t x = vld1q_f32(g + i);
        const float32x4_t e = exp32_neon(vnegq_f32(x));
        const float32x4_t y = vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), e));
        vst1q_f32(out + i, vmulq_f32(y, vld1q_f32(u + i)));
    }
    silu_generic(out, g, u, i, i1);
}
#endif
