/* ARM forms of the W2 four-row kernel (w2_rows.c): armv8-a NEON and dotprod. Both give
 * eak_w2_row_generic's results bit for bit. */
#if defined(__aarch64__)
#include "../../w2.h"
#include "simd_arm.h"
#include <arm_neon.h>

/* The layout of the x86 quad kernels (see there), one 128-bit half h at a time: lane k of V_{j,h}
 * holds row k's codes for elements 16h + 4j .. 16h + 4j + 3, bytes of dword j & 1 of the row's chunk
 * shifted by 4h + 2 (j >> 1). dotprod multiplies V_{j,h} by dword j of the token's half h straight
 * from the register (sdot by lane), so four rows' sums need no pairwise adds. */
static inline void w2_codes4_neon(const uint8_t *const r[4], size_t co, int8x16_t v[8]) {
    const uint32x4_t a = vreinterpretq_u32_u8(vcombine_u8(vld1_u8(r[0] + co), vld1_u8(r[1] + co)));
    const uint32x4_t b = vreinterpretq_u32_u8(vcombine_u8(vld1_u8(r[2] + co), vld1_u8(r[3] + co)));
    const uint8x16_t ev = vreinterpretq_u8_u32(vuzp1q_u32(a, b)), od = vreinterpretq_u8_u32(vuzp2q_u32(a, b));
    const uint8x16_t m3 = vdupq_n_u8(3);
    /* v[2j + h] = V_{j,h} */
    v[0] = vreinterpretq_s8_u8(vandq_u8(ev, m3));
    v[1] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(ev, 4), m3));
    v[2] = vreinterpretq_s8_u8(vandq_u8(od, m3));
    v[3] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(od, 4), m3));
    v[4] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(ev, 2), m3));
    v[5] = vreinterpretq_s8_u8(vshrq_n_u8(ev, 6));
    v[6] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(od, 2), m3));
    v[7] = vreinterpretq_s8_u8(vshrq_n_u8(od, 6));
}

/* ARMv8.0 (Cortex-A72): byte products of V_{j,h} with dword j repeated, summed over j in 16 bits
 * (|.| <= 4 * 384), then pairs and quads of bytes into the four rows' int32 sums. */
static inline int32x4_t w2_l_neon(const int8x16_t v[8], int h, int8x16_t xh) {
    const int32x4_t xw = vreinterpretq_s32_s8(xh);
    const int8x16_t x0 = vreinterpretq_s8_s32(vdupq_laneq_s32(xw, 0)), x1 = vreinterpretq_s8_s32(vdupq_laneq_s32(xw, 1));
    const int8x16_t x2 = vreinterpretq_s8_s32(vdupq_laneq_s32(xw, 2)), x3 = vreinterpretq_s8_s32(vdupq_laneq_s32(xw, 3));
    int16x8_t lo = vmull_s8(vget_low_s8(v[h]), vget_low_s8(x0));
    int16x8_t hi = vmull_high_s8(v[h], x0);
    lo = vmlal_s8(lo, vget_low_s8(v[2 + h]), vget_low_s8(x1));
    hi = vmlal_high_s8(hi, v[2 + h], x1);
    lo = vmlal_s8(lo, vget_low_s8(v[4 + h]), vget_low_s8(x2));
    hi = vmlal_high_s8(hi, v[4 + h], x2);
    lo = vmlal_s8(lo, vget_low_s8(v[6 + h]), vget_low_s8(x3));
    hi = vmlal_high_s8(hi, v[6 + h], x3);
    return vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi));
}

__attribute__((target("arch=armv8.2-a+dotprod"))) static inline int32x4_t w2_l_dotprod(const int8x16_t v[8], int h,
                                                                                     int8x16_t xh) {
    int32x4_t l = vdotq_laneq_s32(vdupq_n_s32(0), v[h], xh, 0);
    l = vdotq_laneq_s32(l, v[2 + h], xh, 1);
    l = vdotq_laneq_s32(l, v[4 + h], xh, 2);
    return vdotq_laneq_s32(l, v[6 + h], xh, 3);
}

/* The float work as eak_w2_quad_avx2: exactly eak_w2_row_generic's operations per row; NT tokens a pass. */
#define W2_QUAD_NEON_BODY(LSUM, NT)                                                                   \
    {                                                                                                 \
        float32x4_t lo[NT], hi[NT], mm[NT];                                                           \
        for (int t = 0; t < NT; ++t) lo[t] = hi[t] = mm[t] = vdupq_n_f32(0);                          \
        const size_t gb = 4 + 8 * (size_t)cpg;                                                        \
        for (int g = 0, b = 0; g < ng; ++g) {                                                         \
            const size_t o = (size_t)g * gb;                                                          \
            float da[4], ma[4];                                                                       \
            for (int k = 0; k < 4; ++k) {                                                             \
                da[k] = h2f[(uint16_t)(r[k][o] | (r[k][o + 1] << 8))];                                \
                ma[k] = h2f[(uint16_t)(r[k][o + 2] | (r[k][o + 3] << 8))];                            \
            }                                                                                         \
            const float32x4_t dv = vld1q_f32(da), mv = vld1q_f32(ma);                                 \
            for (int c = 0; c < cpg; ++c, ++b) {                                                      \
                int8x16_t v[8];                                                                       \
                w2_codes4_neon(r, o + 4 + 8 * (size_t)c, v);                                          \
                for (int t = 0; t < NT; ++t) {                                                        \
                    const eak_act_block *xb = x + (size_t)t * xs + b;                                 \
                    const int32x4_t l0 = LSUM(v, 0, vld1q_s8(xb->qs));                                \
                    const int32x4_t l1 = LSUM(v, 1, vld1q_s8(xb->qs + 16));                           \
                    w2_float4_neon(&lo[t], &hi[t], &mm[t], dv, mv, xb, l0, l1);                       \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
        for (int t = 0; t < NT; ++t) vst1q_f32(y + (size_t)t * ys, vaddq_f32(vaddq_f32(lo[t], hi[t]), mm[t])); \
    }

void eak_w2_quad_neon(const uint8_t *const r[4], const eak_act_block *x, size_t xs, int nt, int ng, int cpg,
                      const float *h2f, float *y, size_t ys) {
    EAK_W2_NT_SWITCH(W2_QUAD_NEON_BODY, w2_l_neon)
}

__attribute__((target("arch=armv8.2-a+dotprod"))) void eak_w2_quad_dotprod(const uint8_t *const r[4],
                                                                     const eak_act_block *x, size_t xs,
                                                                     int nt, int ng, int cpg,
                                                                     const float *h2f, float *y, size_t ys) {
    EAK_W2_NT_SWITCH(W2_QUAD_NEON_BODY, w2_l_dotprod)
}
#undef W2_QUAD_NEON_BODY
#endif
