/* matmul_f32.h - the float dot products of eak_matmul (matmul_f32.c; SIMD forms in
 * arch/x86/matmul_f32.c and arch/arm/matmul_f32.c). Internal. */
#ifndef EAK_MATMUL_F32_H
#define EAK_MATMUL_F32_H
#include "ea_kernels.h"

/* acc[k] += dot(w, x_k) for four tokens; dot(w, x). Every form sums in eak_dot_f32's order. */
typedef void (*eak_dot4_fn)(const float *, const float *, const float *, const float *, const float *, int, float *);
typedef float (*eak_dot1_fn)(const float *, const float *, int);
#if defined(__x86_64__)
__attribute__((target("avx2"))) void eak_dot4_avx2(const float *w, const float *x0, const float *x1, const float *x2,
                                                  const float *x3, int n, float acc[4]);
__attribute__((target("avx2"))) float eak_dot1_avx2(const float *w, const float *x, int n);
#elif defined(__aarch64__)
void eak_dot4_neon(const float *w, const float *x0, const float *x1, const float *x2, const float *x3, int n,
                   float acc[4]);
float eak_dot1_neon(const float *w, const float *x, int n);
#endif
#endif
