/* AVX2 forms of eak_matmul's float dot products (matmul_f32.c): the generic lane order, eight lanes
 * in one register. */
#if defined(__x86_64__)
#include "../../matmul_f32.h"
#include <immintrin.h>

__attribute__((target("avx2"))) static inline float reduce256(__m256 v, const float *w, const float *x,
                                                              int i, int n) {
    float l[8];
    _mm256_storeu_ps(l, v);
    float r = eak_reduce8(l);
    for (; i < n; ++i) r = r + w[i] * x[i];
    return r;
}

__attribute__((target("avx2"))) void eak_dot4_avx2(const float *w, const float *x0, const float *x1,
                                               const float *x2, const float *x3, int n, float acc[4]) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wv = _mm256_loadu_ps(w + i);
        a0 = _mm256_add_ps(a0, _mm256_mul_ps(wv, _mm256_loadu_ps(x0 + i)));
        a1 = _mm256_add_ps(a1, _mm256_mul_ps(wv, _mm256_loadu_ps(x1 + i)));
        a2 = _mm256_add_ps(a2, _mm256_mul_ps(wv, _mm256_loadu_ps(x2 + i)));
        a3 = _mm256_add_ps(a3, _mm256_mul_ps(wv, _mm256_loadu_ps(x3 + i)));
    }
    acc[0] += reduce256(a0, w, x0, i, n);
    acc[1] += reduce256(a1, w, x1, i, n);
    acc[2] += reduce256(a2, w, x2, i, n);
    acc[3] += reduce256(a3, w, x3, i, n);
}

__attribute__((target("avx2"))) float eak_dot1_avx2(const float *w, const float *x, int n) {
    __m256 a = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i)));
    return reduce256(a, w, x, i, n);
}
#endif
