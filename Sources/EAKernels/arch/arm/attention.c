/* ARM forms of the half-cache row operations (attention.c): the generic lane order in NEON, so the
 * results are the generic ones bit for bit. */
#if defined(__aarch64__)
#include "../../attention.h"
#include <arm_neon.h>

static inline float32x4_t h4(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

float eak_qk_neon(const float *q, const void *kv, int n, const float *h2f) {
    const uint16_t *k = kv;
    float32x4_t lo = vdupq_n_f32(0), hi = lo;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        lo = vaddq_f32(lo, vmulq_f32(vld1q_f32(q + i), h4(k + i)));
        hi = vaddq_f32(hi, vmulq_f32(vld1q_f32(q + i + 4), h4(k + i + 4)));
    }
    float l[8];
    vst1q_f32(l, lo);
    vst1q_f32(l + 4, hi);
    float r = eak_reduce8(l);
    for (; i < n; ++i) r = r + q[i] * h2f[k[i]];
    return r;
}

void eak_pv_neon(float *o, const float *p, const void *const *vv, int nv, int n, const float *h2f) {
    int d = 0;
    for (; d + 4 <= n; d += 4) {
        float32x4_t a = vld1q_f32(o + d);
        for (int j = 0; j < nv; ++j) a = vaddq_f32(a, vmulq_f32(vdupq_n_f32(p[j]), h4((const uint16_t *)vv[j] + d)));
        vst1q_f32(o + d, a);
    }
    for (; d < n; ++d) {
        float a = o[d];
        for (int j = 0; j < nv; ++j) a = a + p[j] * h2f[((const uint16_t *)vv[j])[d]];
        o[d] = a;
    }
}
#endif
