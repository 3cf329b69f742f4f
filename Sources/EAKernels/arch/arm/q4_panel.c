/* ARM forms of the Q4_1 panel product (q4_panel.c): armv8-a NEON and dotprod, four rows at a time.
 * Both give the row kernels' results bit for bit. */
#if defined(__aarch64__)
#include "../../q4_panel.h"
#include "simd_arm.h"
#include <arm_neon.h>

/* Four rows at a time (eight accumulators of four lanes): a row's low nibbles against activations
 * 0-15 give lanes 0-3, its high nibbles against 16-31 lanes 4-7, as the decode rows of arch/arm/quant_dot.c. */
#define Q4P_NEON_ROW(K, L16)                                                                             \
    {                                                                                                   \
        const uint8x16_t raw = vld1q_u8(pan + 64 + 16 * (4 * h + K));                                   \
        const float32x4_t s = vdupq_laneq_f32(sc, K);                                                   \
        a0[K] = vaddq_f32(a0[K], vmulq_f32(s, vcvtq_f32_s32(L16(vreinterpretq_s8_u8(vandq_u8(raw, m4)), x0))));     \
        a1[K] = vaddq_f32(a1[K], vmulq_f32(s, vcvtq_f32_s32(L16(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), x1))));     \
    }
#define Q4P_NEON_BODY(LANES16)                                                                          \
    const uint8x16_t m4 = vdupq_n_u8(0x0F);                                                             \
    for (int h = 0; h < 4; ++h) {                                                                       \
        float32x4_t a0[4], a1[4], mv = vdupq_n_f32(0);                                                  \
        for (int k = 0; k < 4; ++k) a0[k] = a1[k] = mv;                                                 \
        const uint8_t *pan = pan0;                                                                      \
        for (int b = 0; b < nb; ++b, pan += Q4P_COL) {                                                  \
            const int8x16_t x0 = vld1q_s8(xa[b].qs), x1 = vld1q_s8(xa[b].qs + 16);                      \
            const float32x4_t sc = vmulq_f32(vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(pan + 8 * h))),    \
                                             vdupq_n_f32(xa[b].d));                                     \
            mv = vaddq_f32(mv, vmulq_f32(vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(pan + 32 + 8 * h))),  \
                                         vdupq_n_f32(xa[b].s)));                                        \
            Q4P_NEON_ROW(0, LANES16) Q4P_NEON_ROW(1, LANES16) Q4P_NEON_ROW(2, LANES16) Q4P_NEON_ROW(3, LANES16) \
        }                                                                                               \
        float m[4], a[8];                                                                               \
        vst1q_f32(m, mv);                                                                               \
        for (int k = 0; k < 4; ++k) {                                                                   \
            vst1q_f32(a, a0[k]);                                                                        \
            vst1q_f32(a + 4, a1[k]);                                                                    \
            y[4 * h + k] = eak_reduce8(a) + m[k];                                                       \
        }                                                                                               \
    }

void eak_q4p_neon(const uint8_t *pan0, const eak_act_block *xa, int nb, float *y) { Q4P_NEON_BODY(lanes16_neon) }

__attribute__((target("arch=armv8.2-a+dotprod"))) void eak_q4p_dotprod(const uint8_t *pan0, const eak_act_block *xa,
                                                                  int nb, float *y) {
    Q4P_NEON_BODY(lanes16_dp)
}
#endif
