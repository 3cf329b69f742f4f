/* Float matrix product over weights stored in any GGUF type: each weight row is decoded to float once
 * (in segments, on the stack) and dotted with every token of the batch, so prefill reads the weights
 * once per batch. Parallel over output rows. The dot product has a generic version and SIMD versions
 * (AVX2 on x86_64, NEON on aarch64) chosen at run time, all with one summation order. */
#include "ea_kernels.h"
#include "team.h"
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

/* Every version computes the same thing in the same order, so host and board agree bit for bit:
 * 8 lanes, lane k sums elements i = k (mod 8) of the 8-aligned prefix with separate multiply and add
 * (no FMA); the lanes reduce as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)); the tail adds in order. */
float eak_dot_f32(const float *w, const float *x, int n) {
    float l[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) l[k] = l[k] + w[i + k] * x[i + k];
    float r = eak_reduce8(l);
    for (; i < n; ++i) r = r + w[i] * x[i];
    return r;
}


static void dot4_generic(const float *w, const float *x0, const float *x1, const float *x2,
                         const float *x3, int n, float acc[4]) {
    acc[0] += eak_dot_f32(w, x0, n);
    acc[1] += eak_dot_f32(w, x1, n);
    acc[2] += eak_dot_f32(w, x2, n);
    acc[3] += eak_dot_f32(w, x3, n);
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static inline float reduce256(__m256 v, const float *w, const float *x,
                                                              int i, int n) {
    float l[8];
    _mm256_storeu_ps(l, v);
    float r = eak_reduce8(l);
    for (; i < n; ++i) r = r + w[i] * x[i];
    return r;
}

__attribute__((target("avx2"))) static void dot4_avx2(const float *w, const float *x0, const float *x1,
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

__attribute__((target("avx2"))) static float dot1_avx2(const float *w, const float *x, int n) {
    __m256 a = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i)));
    return reduce256(a, w, x, i, n);
}
#endif

#if defined(__aarch64__)
/* lanes 0-3 in lo, 4-7 in hi */
static inline float reduce_neon(float32x4_t lo, float32x4_t hi, const float *w, const float *x, int i, int n) {
    float l[8];
    vst1q_f32(l, lo);
    vst1q_f32(l + 4, hi);
    float r = eak_reduce8(l);
    for (; i < n; ++i) r = r + w[i] * x[i];
    return r;
}

static float dot1_neon(const float *w, const float *x, int n) {
    float32x4_t lo = vdupq_n_f32(0), hi = lo;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        lo = vaddq_f32(lo, vmulq_f32(vld1q_f32(w + i), vld1q_f32(x + i)));
        hi = vaddq_f32(hi, vmulq_f32(vld1q_f32(w + i + 4), vld1q_f32(x + i + 4)));
    }
    return reduce_neon(lo, hi, w, x, i, n);
}

static void dot4_neon(const float *w, const float *x0, const float *x1, const float *x2,
                      const float *x3, int n, float acc[4]) {
    acc[0] += dot1_neon(w, x0, n);
    acc[1] += dot1_neon(w, x1, n);
    acc[2] += dot1_neon(w, x2, n);
    acc[3] += dot1_neon(w, x3, n);
}
#endif

typedef void (*dot4_fn)(const float *, const float *, const float *, const float *, const float *,
                        int, float *);
typedef float (*dot1_fn)(const float *, const float *, int);

static dot4_fn g_dot4;
static dot1_fn g_dot1;
int eak_generic_forced(void); /* qdot.c: tests force the generic kernels */
void eak_matmul_reset_dispatch(void);
void eak_matmul_reset_dispatch(void) { g_dot4 = 0; g_dot1 = 0; }

static void pick_kernels(void) {
    if (g_dot4) return;
    dot4_fn d4 = dot4_generic;
    dot1_fn d1 = eak_dot_f32;
    if (eak_generic_forced()) { g_dot1 = d1; g_dot4 = d4; return; }
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) { d4 = dot4_avx2; d1 = dot1_avx2; }
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
    const int eak_nt = n_threads;
    EAK_PARALLEL(n_threads > 1,
    for (int r = eak_team_lo(rows), r_end = eak_team_hi(rows); r < r_end; ++r) {
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
    });
}
