/* x86 forms of the half-cache row operations (attention.c): F16C converts the halves, AVX2 runs the
 * generic lane order, so the results are the generic ones bit for bit. */
#if defined(__x86_64__)
#include "../../attention.h"
#include <immintrin.h>

__attribute__((target("avx2,f16c"))) float eak_qk_f16c(const float *q, const void *kv, int n, const float *h2f) {
    const uint16_t *k = kv;
    __m256 a = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8)
        a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i)))));
    float l[8];
    _mm256_storeu_ps(l, a);
    float r = eak_reduce8(l);
    for (; i < n; ++i) r = r + q[i] * h2f[k[i]];
    return r;
}

__attribute__((target("avx2,f16c"))) void eak_pv_f16c(float *o, const float *p, const void *const *vv, int nv, int n,
                                                 const float *h2f) {
    int d = 0;
    for (; d + 8 <= n; d += 8) {
        __m256 a = _mm256_loadu_ps(o + d);
        for (int j = 0; j < nv; ++j)
            a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_set1_ps(p[j]),
                                               _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)vv[j] + d)))));
        _mm256_storeu_ps(o + d, a);
    }
    for (; d < n; ++d) {
        float a = o[d];
        for (int j = 0; j < nv; ++j) a = a + p[j] * h2f[((const uint16_t *)vv[j])[d]];
        o[d] = a;
    }
}

/* F16C's round to nearest even is eak_f32_to_f16's rounding (probabilities are finite) */
__attribute__((target("avx2,f16c"))) void eak_pw_f16c(float *s, int n, float inv, int round_half, const float *h2f) {
    const __m256 iv = _mm256_set1_ps(inv);
    int k = 0;
    if (round_half)
        for (; k + 8 <= n; k += 8)
            _mm256_storeu_ps(s + k, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(s + k), iv),
                                                                    _MM_FROUND_TO_NEAREST_INT)));
    pw_generic(s + k, n - k, inv, round_half, h2f);
}
#endif
