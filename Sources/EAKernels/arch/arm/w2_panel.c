/* ARM forms of the W2 panel kernel (w2_panel.c): armv8-a NEON and dotprod, four quads of 4 rows.
 * Both give the row kernels' results bit for bit. */
#if defined(__aarch64__)
#include "../../w2.h"
#include "simd_arm.h"
#include <arm_neon.h>

/* The panel as four quads of 4 rows (bytes 16k .. 16k + 15 of each code vector), one after another
 * so a quad's accumulators and codes fit the 32 registers. dotprod: sdot of the codes with dword j
 * of the token's half straight from the register. ARMv8.0 (Cortex-A72): byte products with dword j
 * repeated, summed over j in 16 bits (|.| <= 4 * 384), then pairs and quads into int32 per row. */
__attribute__((target("arch=armv8.2-a+dotprod"))) static inline int32x4_t w2p_l_dotprod(const uint8x16_t u[4],
                                                                                      int8x16_t xh) {
    int32x4_t l = vdotq_laneq_s32(vdupq_n_s32(0), vreinterpretq_s8_u8(u[0]), xh, 0);
    l = vdotq_laneq_s32(l, vreinterpretq_s8_u8(u[1]), xh, 1);
    l = vdotq_laneq_s32(l, vreinterpretq_s8_u8(u[2]), xh, 2);
    return vdotq_laneq_s32(l, vreinterpretq_s8_u8(u[3]), xh, 3);
}

static inline int32x4_t w2p_l_neon(const uint8x16_t u[4], int8x16_t xh) {
    const int32x4_t xw = vreinterpretq_s32_s8(xh);
    int16x8_t lo = vdupq_n_s16(0), hi = lo;
#define W2P_J(J)                                                                                          \
    {                                                                                                     \
        const int8x16_t xj = vreinterpretq_s8_s32(vdupq_laneq_s32(xw, J));                                \
        const int8x16_t uj = vreinterpretq_s8_u8(u[J]);                                                   \
        lo = vmlal_s8(lo, vget_low_s8(uj), vget_low_s8(xj));                                              \
        hi = vmlal_high_s8(hi, uj, xj);                                                                   \
    }
    W2P_J(0) W2P_J(1) W2P_J(2) W2P_J(3)
#undef W2P_J
    return vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi));
}

#define W2P_BODY_NEON(LSUM, NT)                                                                           \
    {                                                                                                     \
        const uint8x16_t m3 = vdupq_n_u8(3);                                                              \
        const size_t gb = EAK_W2_PANEL * (4 + 8 * (size_t)cpg);                                           \
        for (int k = 0; k < 4; ++k) {                                                                     \
            float32x4_t lo[NT], hi[NT], mm[NT];                                                           \
            for (int t = 0; t < NT; ++t) lo[t] = hi[t] = mm[t] = vdupq_n_f32(0);                          \
            for (int g = 0, b = 0; g < ng; ++g) {                                                         \
                const uint8_t *q = p + (size_t)g * gb;                                                    \
                const float32x4_t dv = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(q + 8 * k)))); \
                const float32x4_t mv = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(q + 32 + 8 * k)))); \
                for (int c = 0; c < cpg; ++c, ++b) {                                                      \
                    const uint8x16_t v0 = vld1q_u8(q + 64 + 128 * (size_t)c + 16 * k);                    \
                    const uint8x16_t v1 = vld1q_u8(q + 128 + 128 * (size_t)c + 16 * k);                   \
                    const uint8x16_t u0[4] = {vandq_u8(v0, m3), vandq_u8(vshrq_n_u8(v0, 2), m3),          \
                                              vandq_u8(vshrq_n_u8(v0, 4), m3), vshrq_n_u8(v0, 6)};         \
                    const uint8x16_t u1[4] = {vandq_u8(v1, m3), vandq_u8(vshrq_n_u8(v1, 2), m3),          \
                                              vandq_u8(vshrq_n_u8(v1, 4), m3), vshrq_n_u8(v1, 6)};         \
                    for (int t = 0; t < NT; ++t) {                                                        \
                        const eak_act_block *xb = x + (size_t)t * xs + b;                                 \
                        const int32x4_t l0 = LSUM(u0, vld1q_s8(xb->qs));                                  \
                        const int32x4_t l1 = LSUM(u1, vld1q_s8(xb->qs + 16));                             \
                        w2_float4_neon(&lo[t], &hi[t], &mm[t], dv, mv, xb, l0, l1);                       \
                    }                                                                                     \
                }                                                                                         \
            }                                                                                             \
            for (int t = 0; t < NT; ++t)                                                                  \
                vst1q_f32(y + (size_t)t * ys + 4 * k, vaddq_f32(vaddq_f32(lo[t], hi[t]), mm[t]));         \
        }                                                                                                 \
    }

void eak_w2p_neon(const uint8_t *p, const eak_act_block *x, size_t xs, int nt, int ng, int cpg, float *y,
                  size_t ys) {
    EAK_W2_NT_SWITCH(W2P_BODY_NEON, w2p_l_neon)
}

__attribute__((target("arch=armv8.2-a+dotprod"))) void eak_w2p_dotprod(const uint8_t *p, const eak_act_block *x,
                                                                 size_t xs, int nt, int ng, int cpg, float *y,
                                                                 size_t ys) {
    EAK_W2_NT_SWITCH(W2P_BODY_NEON, w2p_l_dotprod)
}
#undef W2P_BODY_NEON
#endif
