/* Float matrix product over weights stored in any GGUF type: each weight row is decoded to float once
 * (in segments, on the stack) and dotted with every token of the batch, so prefill reads the weights
 * once per batch. Parallel over output rows. The dot product has a generic version and SIMD versions
 * (AVX2+FMA on x86_64, NEON on aarch64) chosen at run time. */
#include "ea_kernels.h"
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

#define SEG 4096 /* columns decoded at a time: 16 KiB of stack per thread */

/* acc[t] += dot(w[0..n), x_t[0..n)) for 4 tokens x0..x3 (generic: 4 independent partial sums each so
 * the compiler can keep them in registers). */
static void dot4_generic(const float *w, const float *x0, const float *x1, const float *x2,
                         const float *x3, int n, float acc[4]) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int i = 0; i < n; ++i) {
        float wi = w[i];
        s0 += wi * x0[i];
        s1 += wi * x1[i];
        s2 += wi * x2[i];
        s3 += wi * x3[i];
    }
    acc[0] += s0; acc[1] += s1; acc[2] += s2; acc[3] += s3;
}

static float dot1_generic(const float *w, const float *x, int n) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) s[k] += w[i + k] * x[i + k];
    float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; ++i) r += w[i] * x[i];
    return r;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) static void dot4_avx2(const float *w, const float *x0,
                                                          const float *x1, const float *x2,
                                                          const float *x3, int n, float acc[4]) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wv = _mm256_loadu_ps(w + i);
        a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x0 + i), a0);
        a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1 + i), a1);
        a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x2 + i), a2);
        a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x3 + i), a3);
    }
    float s0 = hsum256(a0), s1 = hsum256(a1), s2 = hsum256(a2), s3 = hsum256(a3);
    for (; i < n; ++i) {
        s0 += w[i] * x0[i]; s1 += w[i] * x1[i]; s2 += w[i] * x2[i]; s3 += w[i] * x3[i];
    }
    acc[0] += s0; acc[1] += s1; acc[2] += s2; acc[3] += s3;
}

__attribute__((target("avx2,fma"))) static float dot1_avx2(const float *w, const float *x, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; ++i) s += w[i] * x[i];
    return s;
}
#endif

#if defined(__aarch64__)
static void dot4_neon(const float *w, const float *x0, const float *x1, const float *x2,
                      const float *x3, int n, float acc[4]) {
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t wv = vld1q_f32(w + i);
        a0 = vfmaq_f32(a0, wv, vld1q_f32(x0 + i));
        a1 = vfmaq_f32(a1, wv, vld1q_f32(x1 + i));
        a2 = vfmaq_f32(a2, wv, vld1q_f32(x2 + i));
        a3 = vfmaq_f32(a3, wv, vld1q_f32(x3 + i));
    }
    float s0 = vaddvq_f32(a0), s1 = vaddvq_f32(a1), s2 = vaddvq_f32(a2), s3 = vaddvq_f32(a3);
    for (; i < n; ++i) {
        s0 += w[i] * x0[i]; s1 += w[i] * x1[i]; s2 += w[i] * x2[i]; s3 += w[i] * x3[i];
    }
    acc[0] += s0; acc[1] += s1; acc[2] += s2; acc[3] += s3;
}

static float dot1_neon(const float *w, const float *x, int n) {
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, vld1q_f32(w + i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vld1q_f32(w + i + 4), vld1q_f32(x + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; ++i) s += w[i] * x[i];
    return s;
}
#endif

typedef void (*dot4_fn)(const float *, const float *, const float *, const float *, const float *,
                        int, float *);
typedef float (*dot1_fn)(const float *, const float *, int);

static dot4_fn g_dot4;
static dot1_fn g_dot1;

static void pick_kernels(void) {
    if (g_dot4) return;
    dot4_fn d4 = dot4_generic;
    dot1_fn d1 = dot1_generic;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) { d4 = dot4_avx2; d1 = dot1_avx2; }
#elif defined(__aarch64__)
    d4 = dot4_neon; d1 = dot1_neon; /* NEON is part of armv8-a */
#endif
    g_dot1 = d1;
    g_dot4 = d4; /* racing initialisers store the same values */
}

void eak_matmul(int type, const void *w, size_t row_bytes, int rows, int cols, const float *x,
                int n_tok, float *y, int n_threads) {
    pick_kernels();
    const uint32_t be = eak_type_block_elems(type), bb = eak_type_block_bytes(type);
    if (be == 0 || cols % be != 0) return; /* the caller validated; keep the kernel total */
    if (n_threads < 1) n_threads = 1;
    const dot4_fn dot4 = g_dot4;
    const dot1_fn dot1 = g_dot1;
    /* a segment holds a whole number of blocks */
    const int seg = (int)(SEG / be * be);
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n_threads > 1)
    for (int r = 0; r < rows; ++r) {
        float buf[SEG];
        const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
        for (int t = 0; t < n_tok; ++t) y[(size_t)t * rows + r] = 0.0f;
        for (int c0 = 0; c0 < cols; c0 += seg) {
            int n = cols - c0 < seg ? cols - c0 : seg;
            const float *wf;
            if (type == EAK_F32) {
                wf = (const float *)row + c0;
            } else {
                eak_dequantize(type, row + (size_t)(c0 / be) * bb, buf, n);
                wf = buf;
            }
            int t = 0;
            for (; t + 4 <= n_tok; t += 4) {
                float acc[4] = {0, 0, 0, 0};
                const float *xt = x + (size_t)t * cols + c0;
                dot4(wf, xt, xt + cols, xt + 2 * (size_t)cols, xt + 3 * (size_t)cols, n, acc);
                for (int k = 0; k < 4; ++k) y[(size_t)(t + k) * rows + r] += acc[k];
            }
            for (; t < n_tok; ++t) y[(size_t)t * rows + r] += dot1(wf, x + (size_t)t * cols + c0, n);
        }
    }
}
