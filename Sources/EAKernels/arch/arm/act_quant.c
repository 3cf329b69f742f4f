/* NEON form of the activation quantizer (act_quant.c): the same maximum, products and rounding. */
#if defined(__aarch64__)
#include "../../act_quant.h"
#include <arm_neon.h>

void eak_quantize_block_neon(const float *v, eak_act_block *o) {
    float32x4_t x[8];
    for (int k = 0; k < 8; ++k) x[k] = vld1q_f32(v + 4 * k);
    float32x4_t m = vabsq_f32(x[0]);
    for (int k = 1; k < 8; ++k) m = vmaxnmq_f32(m, vabsq_f32(x[k])); /* maxnm: NaN skipped, as fmaxf */
    const float amax = vmaxnmvq_f32(m);
    const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int32x4_t q[8], t = vdupq_n_s32(0);
    for (int k = 0; k < 8; ++k) {
        q[k] = vcvtnq_s32_f32(vmulq_n_f32(x[k], id)); /* round to nearest, ties to even */
        t = vaddq_s32(t, q[k]);
    }
    for (int k = 0; k < 8; k += 2) {
        const int16x8_t w = vcombine_s16(vqmovn_s32(q[k]), vqmovn_s32(q[k + 1]));
        vst1_s8(o->qs + 4 * k, vqmovn_s16(w));
    }
    const int sum = vaddvq_s32(t);
    o->d = eak_f16_to_f32(eak_f32_to_f16(d));
    o->s = eak_f16_to_f32(eak_f32_to_f16(d * (float)sum));
}
#endif
