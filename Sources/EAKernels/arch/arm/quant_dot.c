/* ARM forms of the Q4/Q5/Q8 products (quant_dot.c): armv8-a NEON and dotprod lanes, the nibble
 * unpacker and the single-token decode rows. Every one gives eak_lanes_generic's lanes bit for bit. */
#if defined(__aarch64__)
#include "../../quant_dot.h"
#include "simd_arm.h"
#include <arm_neon.h>

float eak_lanes_neon(const int8_t *wq, const eak_act_block *xa, const float *dw, int nb) {
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    for (int b = 0; b < nb; ++b) {
        const int8_t *w = wq + (size_t)b * 32;
        const float32x4_t sc = vdupq_n_f32(dw[b] * xa[b].d);
        a0 = vaddq_f32(a0, vmulq_f32(sc, vcvtq_f32_s32(lanes16_neon(vld1q_s8(w), vld1q_s8(xa[b].qs)))));
        a1 = vaddq_f32(a1, vmulq_f32(sc, vcvtq_f32_s32(lanes16_neon(vld1q_s8(w + 16), vld1q_s8(xa[b].qs + 16)))));
    }
    float a[8];
    vst1q_f32(a, a0);
    vst1q_f32(a + 4, a1);
    return eak_reduce8(a);
}

__attribute__((target("arch=armv8.2-a+dotprod"))) float eak_lanes_dotprod(const int8_t *wq, const eak_act_block *xa,
                                                                    const float *dw, int nb) {
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    const int32x4_t z = vdupq_n_s32(0);
    for (int b = 0; b < nb; ++b) {
        const int8_t *w = wq + (size_t)b * 32;
        const float32x4_t sc = vdupq_n_f32(dw[b] * xa[b].d);
        a0 = vaddq_f32(a0, vmulq_f32(sc, vcvtq_f32_s32(vdotq_s32(z, vld1q_s8(w), vld1q_s8(xa[b].qs)))));
        a1 = vaddq_f32(a1, vmulq_f32(sc, vcvtq_f32_s32(vdotq_s32(z, vld1q_s8(w + 16), vld1q_s8(xa[b].qs + 16)))));
    }
    float a[8];
    vst1q_f32(a, a0);
    vst1q_f32(a + 4, a1);
    return eak_reduce8(a);
}

int eak_unpack_row_neon(int type, const uint8_t *row, int nb, int8_t *wq) {
    if (type != EAK_Q4_0 && type != EAK_Q4_1) return 0;
    const int bb = type == EAK_Q4_0 ? 18 : 20, qoff = type == EAK_Q4_0 ? 2 : 4;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t off = vdupq_n_s8(type == EAK_Q4_0 ? 8 : 0);
    for (int b = 0; b < nb; ++b) {
        uint8x16_t raw = vld1q_u8(row + (size_t)b * bb + qoff);
        vst1q_s8(wq + (size_t)b * 32, vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, m4)), off));
        vst1q_s8(wq + (size_t)b * 32 + 16, vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), off));
    }
    return 1;
}

#define FUSED_NEON_BODY(LANES16)                                                                      \
    int bb, qoff;                                                                                     \
    switch (type) {                                                                                   \
    case EAK_Q4_0: bb = 18; qoff = 2; break;                                                          \
    case EAK_Q4_1: bb = 20; qoff = 4; break;                                                          \
    case EAK_Q8_0: bb = 34; qoff = 2; break;                                                          \
    default: return 0;                                                                                \
    }                                                                                                 \
    const uint8x16_t m4 = vdupq_n_u8(0x0F);                                                           \
    const int8x16_t off = vdupq_n_s8(type == EAK_Q4_0 ? 8 : 0);                                       \
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;                                                         \
    float m = 0.0f;                                                                                   \
    for (int b = 0; b < nb; ++b) {                                                                    \
        const uint8_t *blk = row + (size_t)b * bb;                                                    \
        if (type == EAK_Q4_1) m = m + h2f[(uint16_t)(blk[2] | (blk[3] << 8))] * xa[b].s;              \
        int8x16_t w0, w1;                                                                             \
        if (type == EAK_Q8_0) {                                                                       \
            w0 = vld1q_s8((const int8_t *)(blk + qoff));                                              \
            w1 = vld1q_s8((const int8_t *)(blk + qoff + 16));                                         \
        } else {                                                                                      \
            uint8x16_t raw = vld1q_u8(blk + qoff);                                                    \
            w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, m4)), off);                               \
            w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), off);                              \
        }                                                                                             \
        const float32x4_t sc = vdupq_n_f32(h2f[(uint16_t)(blk[0] | (blk[1] << 8))] * xa[b].d);         \
        a0 = vaddq_f32(a0, vmulq_f32(sc, vcvtq_f32_s32(LANES16(w0, vld1q_s8(xa[b].qs)))));             \
        a1 = vaddq_f32(a1, vmulq_f32(sc, vcvtq_f32_s32(LANES16(w1, vld1q_s8(xa[b].qs + 16)))));        \
    }                                                                                                 \
    float a[8];                                                                                       \
    vst1q_f32(a, a0);                                                                                 \
    vst1q_f32(a + 4, a1);                                                                             \
    *out = type == EAK_Q4_1 ? eak_reduce8(a) + m : eak_reduce8(a);                                    \
    return 1;

int eak_fused_neon(int type, const uint8_t *row, const eak_act_block *xa, int nb, const float *h2f, float *out) {
    FUSED_NEON_BODY(lanes16_neon)
}

__attribute__((target("arch=armv8.2-a+dotprod"))) int eak_fused_dotprod(int type, const uint8_t *row,
                                                                  const eak_act_block *xa, int nb,
                                                                  const float *h2f, float *out) {
    FUSED_NEON_BODY(lanes16_dp)
}
#endif
