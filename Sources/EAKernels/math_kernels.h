/* math_kernels.h - exp, the SiLU gate and their SIMD forms (math.c; arch/x86/math.c,
 * arch/arm/math.c). Internal. */
#ifndef EAK_MATH_KERNELS_H
#define EAK_MATH_KERNELS_H
#include "ea_kernels.h"
#include <math.h>
#include <string.h>

/* exp in float for the quantized-cache softmax: x = n ln2 + r (Cody-Waite, two float constants),
 * e^r by its Taylor series to degree 6 (|r| <= ln2/2: truncation below 2e-7 relative), times 2^n
 * from exponent bits. Below -87 the result is 0, above 88 infinity, NaN stays NaN. */
#define EXP32_L2E 1.44269504f
#define EXP32_C1 0.693359375f  /* ln2 in few bits: n * C1 is exact */
#define EXP32_C2 -2.12194440e-4f
static inline float exp32(float x) {
    if (x != x) return x;
    if (x < -87.0f) return 0.0f;
    if (x > 88.0f) return INFINITY;
    const float y = x * EXP32_L2E + 0.5f;
    float n = (float)(int)y; /* floor without libm: |y| < 128 */
    if (n > y) n = n - 1.0f;
    const float r = (x - n * EXP32_C1) - n * EXP32_C2;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const uint32_t bits = (uint32_t)((int)n + 127) << 23; /* n in [-126, 127] */
    float two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    return p * two_n;
}

/* SiLU gate on elements [i0, i1): g / (1 + exp32(-g)) * u. The SIMD forms run exp32's float
 * operations lane by lane (see exp32_avx2 / exp32_neon), so all give the same bits. */
static inline void silu_generic(float *out, const float *g, const float *u, int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) out[i] = g[i] / (1.0f + exp32(-g[i])) * u[i];
}

/* The SiLU gate of eak_glu on elements [i0, i1): the form this CPU runs (cpu.h). */
typedef void (*eak_silu_fn)(float *out, const float *g, const float *u, int64_t i0, int64_t i1);
eak_silu_fn eak_silu_pick(void);

#if defined(__x86_64__)
__attribute__((target("avx2"))) void eak_exp_sub_avx2(float *s, int n, float mx);
__attribute__((target("avx2"))) float eak_exp32_sub_sum_avx2(float *s, int n, float mx);
__attribute__((target("avx2"))) void eak_silu_avx2(float *out, const float *g, const float *u, int64_t i0, int64_t i1);
#elif defined(__aarch64__)
void eak_silu_neon(float *out, const float *g, const float *u, int64_t i0, int64_t i1);
#endif
#endif
