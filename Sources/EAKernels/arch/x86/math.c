/* x86 forms of exp and the SiLU gate (math.c): AVX2, the same operations lane by lane. */
#if defined(__x86_64__)
#include "../../math_kernels.h"
#include <immintrin.h>

/* s[i] <- eak_exp(s[i] - mx) for i < n. The AVX2 version runs the same double operations four
 * lanes at a time (conversions, Horner steps, the exponent built from bits), so every result is
 * bit-identical to eak_exp's; the special cases are blended in afterwards. */
__attribute__((target("avx2"))) void eak_exp_sub_avx2(float *s, int n, float mx) {
    const __m128 vmx = _mm_set1_ps(mx);
    const __m256d one = _mm256_set1_pd(1.0), hi = _mm256_set1_pd(88.8), lo = _mm256_set1_pd(-104.0);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m128 xf = _mm_sub_ps(_mm_loadu_ps(s + i), vmx);
        const __m256d x = _mm256_cvtps_pd(xf);
        const __m256d y = _mm256_add_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634)), _mm256_set1_pd(0.5));
        __m256d nn = _mm256_cvtepi32_pd(_mm256_cvttpd_epi32(y));
        nn = _mm256_sub_pd(nn, _mm256_and_pd(_mm256_cmp_pd(nn, y, _CMP_GT_OQ), one));
        const __m256d r = _mm256_sub_pd(_mm256_sub_pd(x, _mm256_mul_pd(nn, _mm256_set1_pd(0.6931471805599453))),
                                        _mm256_mul_pd(nn, _mm256_set1_pd(2.3190468138462996e-17)));
        __m256d p = _mm256_set1_pd(1.0 / 39916800.0);
        p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0 / 3628800.0));
        p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0 / 362880.0));
        p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0 / 40320.0));
        p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0 / 5040.0));
        p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0 / 720.0));
        p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0 / 120.0));
        p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0 / 24.0));
        p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0 / 6.0));
        p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(0.5));
        p = _mm256_add_pd(_mm256_mul_pd(p, r), one);
        p = _mm256_add_pd(_mm256_mul_pd(p, r), one);
        /* 2^n from its exponent bits (n is in range wherever the result is kept) */
        const __m256i e = _mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(nn)),
                                                             _mm256_set1_epi64x(1023)), 52);
        __m256d res = _mm256_mul_pd(p, _mm256_castsi256_pd(e));
        res = _mm256_blendv_pd(res, _mm256_set1_pd(INFINITY), _mm256_cmp_pd(x, hi, _CMP_GT_OQ));
        res = _mm256_blendv_pd(res, _mm256_setzero_pd(), _mm256_cmp_pd(x, lo, _CMP_LT_OQ));
        res = _mm256_blendv_pd(res, x, _mm256_cmp_pd(x, x, _CMP_UNORD_Q)); /* NaN in, NaN out */
        _mm_storeu_ps(s + i, _mm256_cvtpd_ps(res));
    }
    for (; i < n; ++i) s[i] = eak_exp(s[i] - mx);
}

/* exp32 on eight lanes: the same float operations in the same order, so the same bits */
__attribute__((target("avx2"))) static inline __m256 exp32_avx2(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f), hi = _mm256_set1_ps(88.0f);
    const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi); /* NaN -> -87: finite below */
    const __m256 y = _mm256_add_ps(_mm256_mul_ps(xc, _mm256_set1_ps(EXP32_L2E)), _mm256_set1_ps(0.5f));
    const __m256 nn = _mm256_floor_ps(y);
    const __m256 r = _mm256_sub_ps(_mm256_sub_ps(xc, _mm256_mul_ps(nn, _mm256_set1_ps(EXP32_C1))),
                                   _mm256_mul_ps(nn, _mm256_set1_ps(EXP32_C2)));
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(0.5f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(nn), _mm256_set1_epi32(127)), 23);
    __m256 res = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    res = _mm256_blendv_ps(res, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
    res = _mm256_blendv_ps(res, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    return _mm256_blendv_ps(res, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

__attribute__((target("avx2"))) float eak_exp32_sub_sum_avx2(float *s, int n, float mx) {
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 res = exp32_avx2(_mm256_sub_ps(_mm256_loadu_ps(s + i), vmx));
        _mm256_storeu_ps(s + i, res);
        acc = _mm256_add_ps(acc, res);
    }
    float a[8], sum;
    _mm256_storeu_ps(a, acc);
    sum = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (; i < n; ++i) {
        s[i] = exp32(s[i] - mx);
        sum = sum + s[i];
    }
    return sum;
}

/* SiLU gate on elements [i0, i1): g / (1 + exp32(-g)) * u. The SIMD forms run exp32's float
 * operations lane by lane (see exp32_avx2 / exp32_neon), so all give the same bits. */
__attribute__((target("avx2"))) void eak_silu_avx2(float *out, const float *g, const float *u, int64_t i0,
                                               int64_t i1) {
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 e = exp32_avx2(_mm256_sub_ps(_mm256_setzero_ps(), x));
        const __m256 y = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(y, _mm256_loadu_ps(u + i)));
    }
    silu_generic(out, g, u, i, i1);
}
#endif
