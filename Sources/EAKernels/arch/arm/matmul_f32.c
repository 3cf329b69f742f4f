/* NEON forms of eak_matmul's float dot products (matmul_f32.c): the generic lane order, lanes 0-3
 * and 4-7 in two registers. */
#if defined(__aarch64__)
#include "../../matmul_f32.h"
#include <arm_neon.h>

/* lanes 0-3 in lo, 4-7 in hi */
static inline float reduce_neon(float32x4_t lo, float32x4_t hi, const float *w, const float *x, int i, int n) {
    float l[8];
    vst1q_f32(l, lo);
    vst1q_f32(l + 4, hi);
    float r = eak_reduce8(l);
    for (; i < n; ++i) r = r + w[i] * x[i];
    return r;
}

float eak_dot1_neon(const float *w, const float *x, int n) {
    float32x4_t lo = vdupq_n_f32(0), hi = lo;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        lo = vaddq_f32(lo, vmulq_f32(vld1q_f32(w + i), vld1q_f32(x + i)));
        hi = vaddq_f32(hi, vmulq_f32(vld1q_f32(w + i + 4), vld1q_f32(x + i + 4)));
    }
    return reduce_neon(lo, hi, w, x, i, n);
}

void eak_dot4_neon(const float *w, const float *x0, const float *x1, const float *x2,
                   const float *x3, int n, float acc[4]) {
    acc[0] += eak_dot1_neon(w, x0, n);
    acc[1] += eak_dot1_neon(w, x1, n);
    acc[2] += eak_dot1_neon(w, x2, n);
    acc[3] += eak_dot1_neon(w, x3, n);
}
#endif
