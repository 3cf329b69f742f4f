/* Small per-token kernels: exp (double and float, identical on every target), normalisation,
 * rotary embedding, gated activations, residual adds and the Walsh-Hadamard rotation. */
#include "ea_kernels.h"
#include "math_kernels.h"
#include "cpu.h"
#include "team.h"
#include <math.h>
#include <string.h>

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
     * doubles, so this is exactly ldexp(p, n), without a libm call in the hot loop */
    const uint64_t bits = (uint64_t)((int64_t)n + 1023) << 52;
    double two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    return (float)(p * two_n);
}

/* s[i] <- eak_exp(s[i] - mx) for i < n; the AVX2 form gives the same bits. */
void eak_exp_sub(float *s, int n, float mx) {
#if defined(__x86_64__)
    if (eak_use_avx2()) { eak_exp_sub_avx2(s, n, mx); return; }
#endif
    for (int i = 0; i < n; ++i) s[i] = eak_exp(s[i] - mx);
}

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

float eak_exp32(float x) { return exp32(x); }

float eak_exp32_sub_sum(float *s, int n, float mx) {
#if defined(__x86_64__)
    if (eak_use_avx2()) return eak_exp32_sub_sum_avx2(s, n, mx);
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

eak_silu_fn eak_silu_pick(void) { return EAK_PICK(silu_generic, eak_silu_avx2, eak_silu_neon); }

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
    eak_silu_pick()(out, g, u, i0, i1);
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

float eak_expf(float x) { return eak_exp(x); }

void eak_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void eak_scale(float *x, float s, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] *= s;
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
