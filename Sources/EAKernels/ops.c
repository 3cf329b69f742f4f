/* Small per-token kernels: normalisation, rotary embedding, causal attention over a float KV cache,
 * gated activations, and top-k selection for samplers. */
#include "ea_kernels.h"
#include "team.h"
#include "span.h"
#include <math.h>
#include <string.h>
#include <stdio.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

/* exp(x) computed the same way on every target (libm's expf differs between x86_64 and aarch64
 * builds, which would make greedy output differ between host and board): x = n ln2 + r with
 * |r| <= ln2/2, e^r by its Taylor series to degree 11 in double (error < 1e-16 relative), scaled
 * by 2^n. Plain IEEE double operations, no contraction (-ffp-contract=off): bit-identical results. */
float eak_exp(float xf) {
    double x = (double)xf;
    if (x != x) return xf; /* NaN in, NaN out (converting floor(NaN) to int would be undefined) */
    if (x > 88.8) return INFINITY;
    if (x < -104.0) return 0.0f;
    /* floor without the libm call (x86_64's baseline has no rounding instruction): |y| < 200 */
    const double y = x * 1.4426950408889634 + 0.5;
    double n = (double)(int64_t)y;
    if (n > y) n -= 1.0;
    double r = (x - n * 0.6931471805599453) - n * 2.3190468138462996e-17;
    double p = 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* p * 2^n with 2^n built from its exponent bits: |n| <= 151 keeps 2^n and the product normal
     * doubles, so this is exactly ldexp(p, n) (a libm call that cost 3% of a decode step) */
    const uint64_t bits = (uint64_t)((int64_t)n + 1023) << 52;
    double two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    return (float)(p * two_n);
}

/* s[i] <- eak_exp(s[i] - mx) for i < n. The AVX2 version runs the same double operations four
 * lanes at a time (conversions, Horner steps, the exponent built from bits), so every result is
 * bit-identical to eak_exp's; the special cases are blended in afterwards. */
#if defined(__x86_64__)
__attribute__((target("avx2"))) static void exp_sub_avx2(float *s, int n, float mx) {
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
#endif

int eak_generic_forced(void);

void eak_exp_sub(float *s, int n, float mx) {
#if defined(__x86_64__)
    if (eak_use_avx2()) { exp_sub_avx2(s, n, mx); return; }
#endif
    for (int i = 0; i < n; ++i) s[i] = eak_exp(s[i] - mx);
}

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

#if defined(__x86_64__)
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
#elif defined(__aarch64__)
/* exp32 on four lanes: the same float operations in the same order (no fused multiply-add: the
 * file is built with -ffp-contract=off), so the same bits */
static inline float32x4_t exp32_neon(float32x4_t x) {
    const float32x4_t lo = vdupq_n_f32(-87.0f), hi = vdupq_n_f32(88.0f);
    const float32x4_t xc = vminnmq_f32(vmaxnmq_f32(x, lo), hi); /* NaN -> -87: finite below */
    const float32x4_t y = vaddq_f32(vmulq_f32(xc, vdupq_n_f32(EXP32_L2E)), vdupq_n_f32(0.5f));
    const float32x4_t nn = vrndmq_f32(y);
    const float32x4_t r = vsubq_f32(vsubq_f32(xc, vmulq_f32(nn, vdupq_n_f32(EXP32_C1))),
                                    vmulq_f32(nn, vdupq_n_f32(EXP32_C2)));
    float32x4_t p = vdupq_n_f32(1.0f / 720.0f);
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.0f / 120.0f));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.0f / 24.0f));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.0f / 6.0f));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(0.5f));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.0f));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.0f));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(nn), vdupq_n_s32(127)), 23);
    float32x4_t res = vmulq_f32(p, vreinterpretq_f32_s32(e));
    res = vbslq_f32(vcltq_f32(x, lo), vdupq_n_f32(0.0f), res);
    res = vbslq_f32(vcgtq_f32(x, hi), vdupq_n_f32(INFINITY), res);
    return vbslq_f32(vceqq_f32(x, x), res, x); /* NaN in, NaN out */
}
#endif

/* The sum's order: element i into running sum i mod 8 over the whole eights, the eight combined as
 * ((0+1)+(2+3))+((4+5)+(6+7)), then the remaining elements in order. */
static float exp32_sub_sum_generic(float *s, int n, float mx) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sum;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; ++l) {
            s[i + l] = exp32(s[i + l] - mx);
            acc[l] = acc[l] + s[i + l];
        }
    sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; ++i) {
        s[i] = exp32(s[i] - mx);
        sum = sum + s[i];
    }
    return sum;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static float exp32_sub_sum_avx2(float *s, int n, float mx) {
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
#endif

float eak_exp32(float x) { return exp32(x); }

float eak_exp32_sub_sum(float *s, int n, float mx) {
#if defined(__x86_64__)
    if (eak_use_avx2()) return exp32_sub_sum_avx2(s, n, mx);
#endif
    return exp32_sub_sum_generic(s, n, mx);
}

/* Row-wise kernels split their rows over a team only from this many rows up: a parallel region
 * costs a few microseconds, more than a single row (the decode step) takes. */
#define EAK_ROWS_PARALLEL 8

static void rmsnorm_row(float *o, const float *xr, const float *w, int n, float eps, float w_offset) {
    double ss = 0.0; /* double: the mean of squares over 500-2000 values loses bits in float */
    for (int i = 0; i < n; ++i) ss += (double)xr[i] * xr[i];
    float inv = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; ++i) o[i] = xr[i] * inv * (w[i] + w_offset);
}

void eak_rmsnorm(float *out, const float *x, const float *w, int n, int n_rows, float eps,
                 float w_offset, int n_threads) {
    const int eak_nt = n_threads > 0 ? n_threads : 1;
    EAK_PARALLEL(n_threads > 1 && n_rows >= EAK_ROWS_PARALLEL,
    for (int r = eak_team_lo(n_rows), r_end = eak_team_hi(n_rows); r < r_end; ++r)
        rmsnorm_row(out + (size_t)r * n, x + (size_t)r * n, w, n, eps, w_offset);
    );
}

/* cos and sin of pos * freq_scale * base^(-2i/head_dim) for i < half (inv[i] = base^(-2i/head_dim)) */
static void rope_angles(int pos, float freq_scale, const double *inv, int half, float *cs, float *sn) {
    for (int i = 0; i < half; ++i) {
        double theta = (double)pos * freq_scale * inv[i];
        cs[i] = (float)cos(theta);
        sn[i] = (float)sin(theta);
    }
}

static void rope_inv_freq(float base, int head_dim, int half, double *inv) {
    for (int i = 0; i < half; ++i) inv[i] = pow((double)base, -2.0 * i / head_dim);
}

static void rope_apply(float *x, int n_heads, int head_dim, int half, const float *cs, const float *sn, int neox) {
    for (int h = 0; h < n_heads; ++h) {
        float *v = x + (size_t)h * head_dim;
        for (int i = 0; i < half; ++i) {
            int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * cs[i] - x1 * sn[i];
            v[b] = x0 * sn[i] + x1 * cs[i];
        }
    }
}

void eak_rope(float *x, int n_heads, int head_dim, int pos, float base, float freq_scale, int neox) {
    float cs[256], sn[256];
    double inv[256];
    int half = head_dim / 2;
    if (half > 256) half = 256;
    rope_inv_freq(base, head_dim, half, inv);
    rope_angles(pos, freq_scale, inv, half, cs, sn);
    rope_apply(x, n_heads, head_dim, half, cs, sn, neox);
}

void eak_rope_rows(float *q, int q_heads, float *k, int k_heads, int head_dim, int n_tok, int pos0,
                   float base, float freq_scale, int neox, int n_threads) {
    double inv[256];
    int half = head_dim / 2;
    if (half > 256) half = 256;
    rope_inv_freq(base, head_dim, half, inv); /* the same values eak_rope computes per call */
    const int eak_nt = n_threads > 0 ? n_threads : 1;
    EAK_PARALLEL(n_threads > 1 && n_tok >= EAK_ROWS_PARALLEL,
    float cs[256], sn[256];
    for (int t = eak_team_lo(n_tok), t_end = eak_team_hi(n_tok); t < t_end; ++t) {
        rope_angles(pos0 + t, freq_scale, inv, half, cs, sn); /* once for the query and key heads */
        rope_apply(q + (size_t)t * q_heads * head_dim, q_heads, head_dim, half, cs, sn, neox);
        rope_apply(k + (size_t)t * k_heads * head_dim, k_heads, head_dim, half, cs, sn, neox);
    }
    );
}

/* s[j] <- exp(s[j] - mx) for j in [j0, n); returns 1 / their sum (the softmax normaliser). */
static float softmax_exp(float *s, int j0, int n, float mx) {
    float sum = 0.0f;
    if (n > j0) eak_exp_sub(s + j0, n - j0, mx);
    for (int j = j0; j < n; ++j) sum += s[j];
    return 1.0f / sum;
}

/* ---- attention -------------------------------------------------------------------------------
 * One driver for every KV element format: it distributes (token, head) items over threads, finds
 * each query's key range (causal, optionally a sliding window), scores keys with `qk`, normalises
 * with softmax_exp and accumulates values with `pv`. The formats differ only in those two row
 * operations (and the half format rounds q and the weights to half, as llama.cpp does). */
typedef float (*qk_fn)(const float *q, const void *k, int n, const float *h2f);
/* o[d] += p[j] * v[j][d] for j = 0 .. nv-1 in that order (nv <= 4): the same sums as nv calls for
 * one key, with o loaded and stored once per 4 keys instead of once per key */
typedef void (*pv_fn)(float *o, const float *p, const void *const *v, int nv, int n, const float *h2f);
/* s[k] <- s[k] * inv, rounded to half and back when round_half (llama.cpp's half probabilities) */
typedef void (*pw_fn)(float *s, int n, float inv, int round_half, const float *h2f);

static void pw_generic(float *s, int n, float inv, int round_half, const float *h2f) {
    for (int k = 0; k < n; ++k) s[k] = round_half ? h2f[eak_f32_to_f16(s[k] * inv)] : s[k] * inv;
}

/* Half-cache inner loops. Every version computes in the same order (8 lanes, lane k takes elements
 * i = k mod 8, multiply then add, lanes reduced ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)), tail in order;
 * the value update is elementwise), so host and board agree bit for bit. Half->float is exact. */
static float qk_generic(const float *q, const void *kv, int n, const float *h2f) {
    const uint16_t *k = kv;
    float l[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int m = 0; m < 8; ++m) l[m] = l[m] + q[i + m] * h2f[k[i + m]];
    float r = eak_reduce8(l);
    for (; i < n; ++i) r = r + q[i] * h2f[k[i]];
    return r;
}

static void pv_generic(float *o, const float *p, const void *const *vv, int nv, int n, const float *h2f) {
    for (int d = 0; d < n; ++d) {
        float a = o[d];
        for (int j = 0; j < nv; ++j) a = a + p[j] * h2f[((const uint16_t *)vv[j])[d]];
        o[d] = a;
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2,f16c"))) static float qk_f16c(const float *q, const void *kv, int n, const float *h2f) {
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

__attribute__((target("avx2,f16c"))) static void pv_f16c(float *o, const float *p, const void *const *vv, int nv, int n,
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
__attribute__((target("avx2,f16c"))) static void pw_f16c(float *s, int n, float inv, int round_half, const float *h2f) {
    const __m256 iv = _mm256_set1_ps(inv);
    int k = 0;
    if (round_half)
        for (; k + 8 <= n; k += 8)
            _mm256_storeu_ps(s + k, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(s + k), iv),
                                                                    _MM_FROUND_TO_NEAREST_INT)));
    pw_generic(s + k, n - k, inv, round_half, h2f);
}
#endif

#if defined(__aarch64__)
static inline float32x4_t h4(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

static float qk_neon(const float *q, const void *kv, int n, const float *h2f) {
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

static void pv_neon(float *o, const float *p, const void *const *vv, int nv, int n, const float *h2f) {
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


static void pick_half(qk_fn *qk, pv_fn *pv, pw_fn *pw) {
    *qk = qk_generic;
    *pv = pv_generic;
    *pw = pw_generic;
    if (eak_generic_forced()) return;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) { *qk = qk_f16c; *pv = pv_f16c; *pw = pw_f16c; }
#elif defined(__aarch64__)
    *qk = qk_neon;
    *pv = pv_neon;
#endif
}

/* Float rows: the same lane order, plain C (the compiler vectorises the explicit lanes). */
static float qk_f32(const float *q, const void *kv, int n, const float *h2f) {
    (void)h2f;
    return eak_dot_f32(q, kv, n);
}

static void pv_f32(float *o, const float *p, const void *const *vv, int nv, int n, const float *h2f) {
    (void)h2f;
    for (int d = 0; d < n; ++d) {
        float a = o[d];
        for (int j = 0; j < nv; ++j) a = a + p[j] * ((const float *)vv[j])[d];
        o[d] = a;
    }
}

int eak_span_max_keys(const eak_span *span, int pos0, int n_tok) {
    const int dense = pos0 + n_tok;
    if (!span) return dense;
    if (span->keys) return span->n_keys < dense ? span->n_keys : dense;
    if (span->window <= 0) return dense;
    const int m = span->n_sink + span->window;
    return m < dense ? m : dense;
}

static void attention_driver(const float *q, const void *k_cache, const void *v_cache, size_t elem_bytes,
                             float *out, int n_tok, int pos0, int n_head, int n_kv_head, int head_dim,
                             float scale, const eak_span *span, float *scratch, int n_threads, int round_half,
                             qk_fn qk, pv_fn pv, pw_fn pw) {
    const float *h2f = eak_f16_table();
    const int group = n_head / n_kv_head;
    const size_t q_stride = (size_t)n_head * head_dim, kv_stride = (size_t)n_kv_head * head_dim;
    const int stride = eak_span_max_keys(span, pos0, n_tok);
    const int S = span ? span->n_sink : 0, R = span ? span->ring : 0;
    const int32_t *list = span ? span->keys : NULL;
    const float *sink_k = span && !list ? span->sink_k : NULL;
    if (n_threads < 1) n_threads = 1;
    if (head_dim > 512) return; /* the model loader rejects larger heads */
    const char *kc = k_cache, *vc = v_cache;
    const size_t step = kv_stride * elem_bytes;
    const int n_work = n_tok * n_head;
/* (t, h) items interleaved across threads (cyclic); dynamic schedules need a newer libomp than Debian 12 ships */
#define SLOT(k) (lst ? lst[k] : (k) < ns ? (k) : (R > 0 ? S + (w0 + (k) - ns - S) % R : w0 + (k) - ns))
    const int eak_nt = n_threads;
    EAK_PARALLEL(n_threads > 1 && n_work > 1,
    for (int wi = eak_team_id(); wi < n_work; wi += eak_team_size()) {
        int t = wi / n_head, h = wi % n_head;
        float *s = scratch + (size_t)eak_team_id() * stride;
        float qh[512];
        const float *qsrc = q + (size_t)t * q_stride + (size_t)h * head_dim;
        for (int d = 0; d < head_dim; ++d) qh[d] = round_half ? h2f[eak_f32_to_f16(qsrc[d])] : qsrc[d];
        const int kvh = h / group, p = pos0 + t;
        const size_t row = ((size_t)kvh * head_dim) * elem_bytes;
        const int32_t *lst = list ? list + (size_t)kvh * span->keys_stride : NULL;
        int ns = 0, w0 = 0, nk;
        if (lst) nk = span_upper(lst, span->n_keys, p);
        else nk = span_range(S, span ? span->window : 0, p, &ns, &w0);
        /* slot of key ordinal k */
        float mx = -INFINITY;
        for (int k = 0; k < nk; ++k) {
            if (sink_k && k < ns)
                s[k] = eak_dot_f32(qh, sink_k + ((size_t)t * S + k) * kv_stride + (size_t)kvh * head_dim, head_dim) * scale;
            else
                s[k] = qk(qh, kc + (size_t)SLOT(k) * step + row, head_dim, h2f) * scale;
            if (s[k] > mx) mx = s[k];
        }
        const float inv = softmax_exp(s, 0, nk, mx);
        float *o = out + (size_t)t * q_stride + (size_t)h * head_dim;
        for (int d = 0; d < head_dim; ++d) o[d] = 0.0f;
        pw(s, nk, inv, round_half, h2f);
        for (int k = 0; k < nk; k += 4) {
            const int nv = nk - k < 4 ? nk - k : 4;
            const void *vp[4];
            for (int j = 0; j < nv; ++j) vp[j] = vc + (size_t)SLOT(k + j) * step + row;
            pv(o, s + k, vp, nv, head_dim, h2f);
        }
    });
#undef SLOT
}

void eak_attention(const float *q, const float *k_cache, const float *v_cache, float *out,
                   int n_tok, int pos0, int n_head, int n_kv_head, int head_dim, float scale,
                   const eak_span *span, float *scratch, int n_threads) {
    attention_driver(q, k_cache, v_cache, sizeof(float), out, n_tok, pos0, n_head, n_kv_head, head_dim,
                     scale, span, scratch, n_threads, 0, qk_f32, pv_f32, pw_generic);
}

void eak_attention_f16(const float *q, const uint16_t *k_cache, const uint16_t *v_cache, float *out,
                       int n_tok, int pos0, int n_head, int n_kv_head, int head_dim, float scale,
                       const eak_span *span, float *scratch, int n_threads) {
    qk_fn qk;
    pv_fn pv;
    pw_fn pw;
    pick_half(&qk, &pv, &pw);
    attention_driver(q, k_cache, v_cache, sizeof(uint16_t), out, n_tok, pos0, n_head, n_kv_head, head_dim,
                     scale, span, scratch, n_threads, 1, qk, pv, pw);
}

/* SiLU gate on elements [i0, i1): g / (1 + exp32(-g)) * u. The SIMD forms run exp32's float
 * operations lane by lane (see exp32_avx2 / exp32_neon), so all give the same bits. */
static void silu_generic(float *out, const float *g, const float *u, int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) out[i] = g[i] / (1.0f + exp32(-g[i])) * u[i];
}
#if defined(__x86_64__)
__attribute__((target("avx2"))) static void silu_avx2(float *out, const float *g, const float *u, int64_t i0,
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
#elif defined(__aarch64__)
static void silu_neon(float *out, const float *g, const float *u, int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + 4 <= i1; i += 4) {
        const float32x4_t x = vld1q_f32(g + i);
        const float32x4_t e = exp32_neon(vnegq_f32(x));
        const float32x4_t y = vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), e));
        vst1q_f32(out + i, vmulq_f32(y, vld1q_f32(u + i)));
    }
    silu_generic(out, g, u, i, i1);
}
#endif

static void glu_range(float *out, const float *g, const float *u, int64_t i0, int64_t i1, int gelu) {
    if (gelu) {
        const float c = 0.7978845608028654f; /* sqrt(2/pi) */
        for (int64_t i = i0; i < i1; ++i) {
            float x = g[i];
            float y = c * (x + 0.044715f * x * x * x);
            float th = 1.0f - 2.0f / (eak_exp(2.0f * y) + 1.0f); /* tanh(y), deterministic */
            out[i] = 0.5f * x * (1.0f + th) * u[i];
        }
        return;
    }
#if defined(__x86_64__)
    if (eak_use_avx2()) { silu_avx2(out, g, u, i0, i1); return; }
#elif defined(__aarch64__)
    if (!eak_generic_forced()) { silu_neon(out, g, u, i0, i1); return; }
#endif
    silu_generic(out, g, u, i0, i1);
}

void eak_glu(float *out, const float *g, const float *u, int64_t n, int gelu, int n_threads) {
    /* threads take whole runs of 64 elements (a cache line of each array at 16 per line) */
    const int n_runs = (int)((n + 63) / 64);
    const int eak_nt = n_threads > 0 ? n_threads : 1;
    EAK_PARALLEL(n_threads > 1 && n >= 16384,
    const int64_t i0 = (int64_t)eak_team_lo(n_runs) * 64, i1 = (int64_t)eak_team_hi(n_runs) * 64;
    glu_range(out, g, u, i0, i1 < n ? i1 : n, gelu);
    );
}

/* Self test (from eak_self_test): the dispatched SiLU gate against silu_generic on random values,
 * values around the clamps (-87, 88), infinities and NaN, over ragged lengths. */
int eak_ops_self_test(uint32_t seed, char *msg, size_t msg_len) {
    enum { N = 67 };
    float g[N], u[N], want[N], got[N];
    uint32_t s = seed ? seed : 1;
    for (int iter = 0; iter < 64; ++iter) {
        for (int i = 0; i < N; ++i) {
            s = s * 1664525u + 1013904223u;
            const uint32_t r = s >> 8;
            const float x = ((float)(r % 200001) - 100000.0f) * (iter % 4 == 0 ? 1e-3f : 1e-4f);
            g[i] = (r & 31) == 0 ? (float)((int)(r % 7) - 3) * 29.5f - 0.25f : x; /* near -88, 88 */
            u[i] = ((float)(r % 1999) - 999.0f) * 1e-3f;
        }
        if (iter == 0) { g[0] = INFINITY; g[1] = -INFINITY; g[2] = NAN; g[3] = 87.0f; g[4] = -88.0f; g[5] = -0.0f; }
        const int n = N - iter % 8;
        silu_generic(want, g, u, 0, n);
        glu_range(got, g, u, 0, n, 0);
        for (int i = 0; i < n; ++i)
            if (memcmp(&want[i], &got[i], sizeof(float)) != 0 && !(want[i] != want[i] && got[i] != got[i])) {
                if (msg) snprintf(msg, msg_len, "SiLU gate: silu(%.9g)*%.9g = %.9g, generic %.9g", g[i], u[i], got[i], want[i]);
                return -1;
            }
    }
    return 0;
}

float eak_expf(float x) { return eak_exp(x); }

void eak_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void eak_scale(float *x, float s, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

/* a ranks before b: larger value, or equal value and lower index */
static inline int better(const float *x, int32_t a, int32_t b) {
    return x[a] > x[b] || (x[a] == x[b] && a < b);
}

static void sift_down(const float *x, int32_t *h, int n, int i) {
    /* min-heap on `better`: the root is the worst of the kept k */
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && better(x, h[m], h[l])) m = l;
        if (r < n && better(x, h[m], h[r])) m = r;
        if (m == i) return;
        int32_t tmp = h[i]; h[i] = h[m]; h[m] = tmp;
        i = m;
    }
}

void eak_top_k(const float *x, int n, int k, int32_t *idx) {
    if (k <= 0) return;
    if (k > n) k = n;
    for (int i = 0; i < k; ++i) idx[i] = i;
    for (int i = k / 2 - 1; i >= 0; --i) sift_down(x, idx, k, i);
    for (int i = k; i < n; ++i) {
        if (better(x, i, idx[0])) { idx[0] = i; sift_down(x, idx, k, 0); }
    }
    /* heap-sort: repeatedly move the worst to the end -> descending order */
    for (int end = k - 1; end > 0; --end) {
        int32_t tmp = idx[0]; idx[0] = idx[end]; idx[end] = tmp;
        sift_down(x, idx, end, 0);
    }
}

/* Orthonormal Walsh-Hadamard transform of every `block` consecutive values of n_rows rows of cols
 * (block a power of two dividing cols): butterflies in a fixed order, then a scale by
 * 1/sqrt(block), so every target computes the same bits. H is symmetric and H*H = I, which is why
 * weights rotated by the converter (W H) and activations rotated here (H x) give W x. */
static void hadamard_rows(float *x, int r0, int r1, int cols, int block) {
    const float s = 1.0f / sqrtf((float)block);
    for (int r = r0; r < r1; ++r) {
        for (int b0 = 0; b0 < cols; b0 += block) {
            float *v = x + (size_t)r * cols + b0;
            int h = 1;
            if (block >= 8) {
                /* stages 1, 2 and 4 inside each run of 8, unrolled (the same sums and differences
                 * as the loop below, so bit-identical); the wider stages vectorise across j */
                for (int c = 0; c < block; c += 8) {
                    float *u = v + c;
                    const float a0 = u[0] + u[1], a1 = u[0] - u[1], a2 = u[2] + u[3], a3 = u[2] - u[3];
                    const float a4 = u[4] + u[5], a5 = u[4] - u[5], a6 = u[6] + u[7], a7 = u[6] - u[7];
                    const float b0_ = a0 + a2, b2 = a0 - a2, b1 = a1 + a3, b3 = a1 - a3;
                    const float b4 = a4 + a6, b6 = a4 - a6, b5 = a5 + a7, b7 = a5 - a7;
                    u[0] = b0_ + b4; u[4] = b0_ - b4; u[1] = b1 + b5; u[5] = b1 - b5;
                    u[2] = b2 + b6; u[6] = b2 - b6; u[3] = b3 + b7; u[7] = b3 - b7;
                }
                h = 8;
            }
            for (; h < block; h <<= 1)
                for (int i = 0; i < block; i += 2 * h)
                    for (int j = i; j < i + h; ++j) {
                        const float a = v[j], c = v[j + h];
                        v[j] = a + c;
                        v[j + h] = a - c;
                    }
            for (int j = 0; j < block; ++j) v[j] *= s;
        }
    }
}

void eak_hadamard(float *x, int n_rows, int cols, int block, int n_threads) {
    const int eak_nt = n_threads > 0 ? n_threads : 1;
    EAK_PARALLEL(n_threads > 1 && n_rows >= EAK_ROWS_PARALLEL,
    hadamard_rows(x, eak_team_lo(n_rows), eak_team_hi(n_rows), cols, block);
    );
}
