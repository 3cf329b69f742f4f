/* Integer matrix product: weights in GGUF's 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)
 * times activations quantized on the fly to 8 bits per 32-element block, as llama.cpp does
 * (Q8_0-style blocks for symmetric weights, Q8_1-style with the block sum for weights with an
 * offset). Each weight row is unpacked to int8 once per call and reused by every token; products
 * are exact int32 sums of four, accumulated in eight float lanes in one fixed order, so the AVX2,
 * NEON, NEON dotprod and generic versions give bit-identical results. */
#include "ea_kernels.h"
#include "team.h"
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
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif
#endif

int eak_act_type(int wtype) {
    switch (wtype) {
    case EAK_Q4_0: case EAK_Q5_0: case EAK_Q8_0: return EAK_Q8_0;
    case EAK_Q4_1: case EAK_Q5_1: return EAK_Q8_1;
    default: return -1;
    }
}

size_t eak_act_bytes(int n_tok, int cols) { return (size_t)n_tok * (size_t)(cols / 32) * sizeof(eak_act_block); }

/* One block: d = max|v| / 127, q = round-half-even(v * 127 / max|v|), s = d * sum(q), d and s rounded
 * through fp16. The SIMD forms take the same maximum (order-free), the same products and the same
 * rounding (the default mode, which nearbyintf also follows), so their blocks are bit-identical. */
static void quantize_block_generic(const float *v, eak_act_block *o) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = fmaxf(amax, fabsf(v[j]));
    const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
        int q = (int)nearbyintf(v[j] * id);
        o->qs[j] = (int8_t)q;
        sum += q;
    }
    o->d = eak_f16_to_f32(eak_f32_to_f16(d));
    o->s = eak_f16_to_f32(eak_f32_to_f16(d * (float)sum));
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static void quantize_block_avx2(const float *v, eak_act_block *o) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8), v2 = _mm256_loadu_ps(v + 16), v3 = _mm256_loadu_ps(v + 24);
    /* max(new, old): a NaN element is skipped, as fmaxf skips it */
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    const float amax = _mm_cvtss_f32(h);
    const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid)), q1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
    const __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid)), q3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
    /* packs work within 128-bit halves: the dword permutation puts the bytes back in order */
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
    _mm256_storeu_si256((__m256i *)o->qs, _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    const __m256i t = _mm256_add_epi32(_mm256_add_epi32(q0, q1), _mm256_add_epi32(q2, q3));
    __m128i u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
    u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0x4E));
    u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0xB1));
    const int sum = _mm_cvtsi128_si32(u);
    o->d = eak_f16_to_f32(eak_f32_to_f16(d));
    o->s = eak_f16_to_f32(eak_f32_to_f16(d * (float)sum));
}
#elif defined(__aarch64__)
static void quantize_block_neon(const float *v, eak_act_block *o) {
    float32x4_t x[8];
    for (int k = 0; k < 8; ++k) x[k] = vld1q_f32(v + 4 * k);
    float32x4_t m = vabsq_f32(x[0]);
    for (int k = 1; k < 8; ++k) m = vmaxnmq_f32(m, vabsq_f32(x[k])); /* maxnm: NaN skipped, as fmaxf */
    const float amax = vmaxnmvq_f32(m);
    const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int32x4_t q[8], t = vdupq_n_s32(0);
    for (int k = 0; k < 8; ++k) {
        q[k] = vcvtnq_s32_f32(vmulq_n_f32(x[k], id)); /* round to nearest, ties to even */
        t = vaddq_s32(t, q[k]);
    }
    for (int k = 0; k < 8; k += 2) {
        const int16x8_t w = vcombine_s16(vqmovn_s32(q[k]), vqmovn_s32(q[k + 1]));
        vst1_s8(o->qs + 4 * k, vqmovn_s16(w));
    }
    const int sum = vaddvq_s32(t);
    o->d = eak_f16_to_f32(eak_f32_to_f16(d));
    o->s = eak_f16_to_f32(eak_f32_to_f16(d * (float)sum));
}
#endif

typedef void (*quantize_block_fn)(const float *, eak_act_block *);
static quantize_block_fn pick_quantize_block(void);

void eak_quantize_act(const float *x, int n_tok, int cols, eak_act_block *out, int n_threads) {
    const int nb = cols / 32;
    const quantize_block_fn f = pick_quantize_block();
    const int eak_nt = n_threads > 0 ? n_threads : 1;
    /* rows split over the team from 8 up (a single row is faster than a parallel region) */
    EAK_PARALLEL(n_threads > 1 && n_tok >= 8,
    for (int t = eak_team_lo(n_tok), t_end = eak_team_hi(n_tok); t < t_end; ++t)
        for (int b = 0; b < nb; ++b) f(x + (size_t)t * cols + b * 32, out + (size_t)t * nb + b);
    );
}

/* ---- exact int32 dot of one 32-element weight block with one activation block --------------- */
/* Weight values as signed bytes: Q4_0 -> q-8, Q4_1 -> q (0..15), Q5_0 -> q-16, Q5_1 -> q, Q8_0 -> q. */
static inline void unpack_block(int type, const uint8_t *b, int8_t w[32]) {
    switch (type) {
    case EAK_Q4_0:
        for (int j = 0; j < 16; ++j) { w[j] = (int8_t)((b[2 + j] & 0xF) - 8); w[j + 16] = (int8_t)((b[2 + j] >> 4) - 8); }
        break;
    case EAK_Q4_1:
        for (int j = 0; j < 16; ++j) { w[j] = (int8_t)(b[4 + j] & 0xF); w[j + 16] = (int8_t)(b[4 + j] >> 4); }
        break;
    case EAK_Q5_0: {
        uint32_t qh = (uint32_t)b[2] | ((uint32_t)b[3] << 8) | ((uint32_t)b[4] << 16) | ((uint32_t)b[5] << 24);
        for (int j = 0; j < 16; ++j) {
            w[j] = (int8_t)(((b[6 + j] & 0xF) | (((qh >> j) << 4) & 0x10)) - 16);
            w[j + 16] = (int8_t)(((b[6 + j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16);
        }
    } break;
    case EAK_Q5_1: {
        uint32_t qh = (uint32_t)b[4] | ((uint32_t)b[5] << 8) | ((uint32_t)b[6] << 16) | ((uint32_t)b[7] << 24);
        for (int j = 0; j < 16; ++j) {
            w[j] = (int8_t)((b[8 + j] & 0xF) | (((qh >> j) << 4) & 0x10));
            w[j + 16] = (int8_t)((b[8 + j] >> 4) | ((qh >> (j + 12)) & 0x10));
        }
    } break;
    default: /* Q8_0 */
        memcpy(w, b + 2, 32);
        break;
    }
}

/* ---- lane dot products --------------------------------------------------------------------------
 * For one weight row (unpacked to int8) and one token: lane m (0..7) of block b is the exact int32
 * L[b][m] = sum of w[e] * x[e] over e = 32b + 4m .. 32b + 4m + 3. Each lane accumulates in float,
 * block by block: acc[m] = acc[m] + (dw[b] * dx[b]) * (float)L[b][m] (multiply, then add; no FMA),
 * and the row's result is ((a0+a4)+(a2+a6))+((a1+a5)+(a3+a7)). AVX2's maddubs+madd, NEON's sdot and
 * NEON's vmull+pairwise adds all produce exactly these lanes, so every version is bit-identical. */
typedef float (*lanes_fn)(const int8_t *wq, const eak_act_block *xa, const float *dw, int nb);

static float lanes_generic(const int8_t *wq, const eak_act_block *xa, const float *dw, int nb) {
    float acc[8] = {0};
    for (int b = 0; b < nb; ++b) {
        const int8_t *w = wq + (size_t)b * 32, *x = xa[b].qs;
        const float sc = dw[b] * xa[b].d;
        for (int m = 0; m < 8; ++m) {
            int32_t l = w[4 * m] * x[4 * m] + w[4 * m + 1] * x[4 * m + 1] + w[4 * m + 2] * x[4 * m + 2] + w[4 * m + 3] * x[4 * m + 3];
            acc[m] = acc[m] + sc * (float)l;
        }
    }
    return eak_reduce8(acc);
}

#if defined(__x86_64__)
/* eak_reduce8 on a register: high half onto low ((l0+l4), (l1+l5), (l2+l6), (l3+l7)), then lanes 2, 3
 * onto 0, 1, then lane 1 onto 0: the same three levels of adds in the same pairing, so the same bits. */
__attribute__((target("avx2"))) static inline float reduce8_m256(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

__attribute__((target("avx2"))) static float lanes_avx2(const int8_t *wq, const eak_act_block *xa, const float *dw, int nb) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; ++b) {
        __m256i w = _mm256_loadu_si256((const __m256i *)(wq + (size_t)b * 32));
        __m256i x = _mm256_loadu_si256((const __m256i *)xa[b].qs);
        /* |w| (unsigned) times x with w's sign: pairs fit int16 since |w| <= 128, |x| <= 127 */
        __m256i l = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), ones);
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(dw[b] * xa[b].d), _mm256_cvtepi32_ps(l)));
    }
    float a[8];
    _mm256_storeu_ps(a, acc);
    return eak_reduce8(a);
}

/* Four tokens against one unpacked row (prefill): for each token exactly lanes_avx2's operations
 * in its order, plus, when mw is given, the offset term m = sum_b mw[b] * s_b in block order, so
 * out[k] = lanes + m is bit-identical to the one-token path; |w| is computed once per block for the
 * four tokens and the eight accumulator chains run independently. x + k * x_stride is token k. */
__attribute__((target("avx2"))) static void lanes4_avx2(const int8_t *wq, const eak_act_block *x, size_t x_stride,
                                                      const float *dw, const float *mw, int nb, float out[4]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    float m0 = 0.0f, m1 = 0.0f, m2 = 0.0f, m3 = 0.0f;
    const eak_act_block *x0 = x, *x1 = x + x_stride, *x2 = x + 2 * x_stride, *x3 = x + 3 * x_stride;
    for (int b = 0; b < nb; ++b) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(wq + (size_t)b * 32)), aw = _mm256_sign_epi8(w, w);
        const float d = dw[b];
#define LANE4(A, X)                                                                                              \
        {                                                                                                        \
            __m256i xv = _mm256_loadu_si256((const __m256i *)X[b].qs);                                          \
            __m256i l = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, w)), ones);              \
            A = _mm256_add_ps(A, _mm256_mul_ps(_mm256_set1_ps(d * X[b].d), _mm256_cvtepi32_ps(l)));              \
        }
        LANE4(a0, x0) LANE4(a1, x1) LANE4(a2, x2) LANE4(a3, x3)
#undef LANE4
    }
    if (mw)
        for (int b = 0; b < nb; ++b) {
            const float mb = mw[b];
            m0 = m0 + mb * x0[b].s; m1 = m1 + mb * x1[b].s; m2 = m2 + mb * x2[b].s; m3 = m3 + mb * x3[b].s;
        }
    float a[8];
    _mm256_storeu_ps(a, a0); out[0] = mw ? eak_reduce8(a) + m0 : eak_reduce8(a);
    _mm256_storeu_ps(a, a1); out[1] = mw ? eak_reduce8(a) + m1 : eak_reduce8(a);
    _mm256_storeu_ps(a, a2); out[2] = mw ? eak_reduce8(a) + m2 : eak_reduce8(a);
    _mm256_storeu_ps(a, a3); out[3] = mw ? eak_reduce8(a) + m3 : eak_reduce8(a);
}

/* Two rows against four tokens (prefill) for weights that are unsigned codes q = w + off (Q4_0: 8,
 * Q5_0: 16, Q4_1 / Q5_1: 0; W2 has its own kernel below). maddubs takes q as it is (q <= 31 and |x| <= 127: pairs fit int16)
 * and off * (the lane's sum of x) is subtracted in int32, so each lane is exactly lanes_generic's
 * L[b][m]; every token's block is loaded once for both rows, and dw * dx is one vector multiply (the
 * same float product as the scalar one). Accumulation order and the offset term (mw: sum_b mw[b] *
 * s_b) are lanes4_avx2's, so the results are bit-identical to it and to the generic kernel. */
__attribute__((target("avx2"))) static void tile_offsets_avx2(const eak_act_block *x, size_t x_stride, const float *mwa,
                                                            const float *mwb, int nb, float m[8]);
__attribute__((target("avx2"))) static void tile2x4_avx2(const int8_t *wa, const int8_t *wb, int off,
                                                       const eak_act_block *x, size_t x_stride,
                                                       const float *dwa, const float *dwb, const float *mwa,
                                                       const float *mwb, int nb, float outa[4], float outb[4]) {
    const __m256i ones = _mm256_set1_epi16(1), ones8 = _mm256_set1_epi8(1), offv = _mm256_set1_epi8((char)off);
    const __m128i sh = _mm_cvtsi32_si128(off == 16 ? 4 : 3);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    const eak_act_block *x0 = x, *x1 = x + x_stride, *x2 = x + 2 * x_stride, *x3 = x + 3 * x_stride;
    for (int b = 0; b < nb; ++b) {
        const __m256i qa = _mm256_add_epi8(_mm256_loadu_si256((const __m256i *)(wa + (size_t)b * 32)), offv);
        const __m256i qb = _mm256_add_epi8(_mm256_loadu_si256((const __m256i *)(wb + (size_t)b * 32)), offv);
        const __m256 da = _mm256_set1_ps(dwa[b]), db = _mm256_set1_ps(dwb[b]);
#define TILE(A, B, X)                                                                                            \
        {                                                                                                        \
            const __m256i xv = _mm256_loadu_si256((const __m256i *)X[b].qs);                                    \
            const __m256 dx = _mm256_set1_ps(X[b].d);                                                            \
            __m256i la = _mm256_madd_epi16(_mm256_maddubs_epi16(qa, xv), ones);                                  \
            __m256i lb = _mm256_madd_epi16(_mm256_maddubs_epi16(qb, xv), ones);                                  \
            if (off) {                                                                                           \
                const __m256i xs = _mm256_sll_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(ones8, xv), ones), sh); \
                la = _mm256_sub_epi32(la, xs);                                                                   \
                lb = _mm256_sub_epi32(lb, xs);                                                                   \
            }                                                                                                    \
            A = _mm256_add_ps(A, _mm256_mul_ps(_mm256_mul_ps(da, dx), _mm256_cvtepi32_ps(la)));                  \
            B = _mm256_add_ps(B, _mm256_mul_ps(_mm256_mul_ps(db, dx), _mm256_cvtepi32_ps(lb)));                  \
        }
        TILE(a0, b0, x0) TILE(a1, b1, x1) TILE(a2, b2, x2) TILE(a3, b3, x3)
#undef TILE
    }
    float a[8];
    __m256 acc[8] = {a0, a1, a2, a3, b0, b1, b2, b3};
    float m[8];
    if (mwa) tile_offsets_avx2(x, x_stride, mwa, mwb, nb, m);
    for (int k = 0; k < 8; ++k) {
        _mm256_storeu_ps(a, acc[k]);
        const float v = eak_reduce8(a);
        if (k < 4) outa[k] = mwa ? v + m[k] : v; else outb[k - 4] = mwa ? v + m[k] : v;
    }
}

/* The offset terms of a two-row, four-token tile (Q4_1 / Q5_1): m[k] = sum_b mw[b] * s_b of token
 * k & 3 with row a's mw for k < 4 and row b's after, in block order, eight of them in one register:
 * per lane the scalar loop's multiply and add in its order, so the same bits. */
__attribute__((target("avx2"))) static void tile_offsets_avx2(const eak_act_block *x, size_t x_stride, const float *mwa,
                                                            const float *mwb, int nb, float m[8]) {
    const eak_act_block *x0 = x, *x1 = x + x_stride, *x2 = x + 2 * x_stride, *x3 = x + 3 * x_stride;
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; ++b) {
        const __m256 w = _mm256_set_m128(_mm_set1_ps(mwb[b]), _mm_set1_ps(mwa[b]));
        const __m128 s4 = _mm_set_ps(x3[b].s, x2[b].s, x1[b].s, x0[b].s);
        acc = _mm256_add_ps(acc, _mm256_mul_ps(w, _mm256_set_m128(s4, s4)));
    }
    _mm256_storeu_ps(m, acc);
}

/* tile2x4_avx2 with AVX512-VNNI: two tokens per 512-bit register (token 2j in the low half, 2j+1 in
 * the high half, the row's codes in both), vpdpbusd for maddubs + madd (the same int32 lane sums:
 * no int16 pair saturates, see above). Per lane the float operations are tile2x4_avx2's in its
 * order, so the results are bit-identical; half the instructions per block. */
__attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512vnni"))) static void tile2x4_vnni512(
    const int8_t *wa, const int8_t *wb, int off, const eak_act_block *x, size_t x_stride, const float *dwa,
    const float *dwb, const float *mwa, const float *mwb, int nb, float outa[4], float outb[4]) {
    const __m512i ones8 = _mm512_set1_epi8(1), offv = _mm512_set1_epi8((char)off), zero = _mm512_setzero_si512();
    const int sh = off == 16 ? 4 : 3;
    __m512 a01 = _mm512_setzero_ps(), a23 = a01, b01 = a01, b23 = a01;
    const eak_act_block *x0 = x, *x1 = x + x_stride, *x2 = x + 2 * x_stride, *x3 = x + 3 * x_stride;
    for (int b = 0; b < nb; ++b) {
        const __m512i qa = _mm512_add_epi8(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wa + (size_t)b * 32))), offv);
        const __m512i qb = _mm512_add_epi8(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wb + (size_t)b * 32))), offv);
        const __m512 da = _mm512_set1_ps(dwa[b]), db = _mm512_set1_ps(dwb[b]);
#define TILE512(A, B, XL, XH)                                                                                      \
        {                                                                                                          \
            const __m512i xv = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)XL[b].qs)), \
                                                  _mm256_loadu_si256((const __m256i *)XH[b].qs), 1);              \
            const __m512 dx = _mm512_castpd_ps(_mm512_insertf64x4(                                                 \
                _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_set1_ps(XL[b].d))), _mm256_castps_pd(_mm256_set1_ps(XH[b].d)), 1)); \
            __m512i la = _mm512_dpbusd_epi32(zero, qa, xv), lb = _mm512_dpbusd_epi32(zero, qb, xv);              \
            if (off) {                                                                                             \
                const __m512i xs = _mm512_slli_epi32(_mm512_dpbusd_epi32(zero, ones8, xv), sh);                   \
                la = _mm512_sub_epi32(la, xs);                                                                     \
                lb = _mm512_sub_epi32(lb, xs);                                                                     \
            }                                                                                                      \
            A = _mm512_add_ps(A, _mm512_mul_ps(_mm512_mul_ps(da, dx), _mm512_cvtepi32_ps(la)));                    \
            B = _mm512_add_ps(B, _mm512_mul_ps(_mm512_mul_ps(db, dx), _mm512_cvtepi32_ps(lb)));                    \
        }
        TILE512(a01, b01, x0, x1) TILE512(a23, b23, x2, x3)
#undef TILE512
    }
    float a[16], m[8];
    if (mwa) tile_offsets_avx2(x, x_stride, mwa, mwb, nb, m);
    const __m512 acc[4] = {a01, a23, b01, b23};
    for (int k = 0; k < 4; ++k) {
        _mm512_storeu_ps(a, acc[k]);
        for (int h = 0; h < 2; ++h) {
            const int j = (k & 1) * 2 + h; /* token */
            const float v = eak_reduce8(a + 8 * h);
            if (k < 2) outa[j] = mwa ? v + m[j] : v; else outb[j] = mwa ? v + m[4 + j] : v;
        }
    }
}

typedef void (*tile_fn)(const int8_t *, const int8_t *, int, const eak_act_block *, size_t, const float *,
                        const float *, const float *, const float *, int, float[4], float[4]);

/* Q4_0 / Q4_1 rows: nibbles to bytes, 16 at a time. */
__attribute__((target("avx2"))) static int unpack_row_avx2(int type, const uint8_t *row, int nb, int8_t *wq) {
    if (type != EAK_Q4_0 && type != EAK_Q4_1) return 0;
    const int bb = type == EAK_Q4_0 ? 18 : 20, qoff = type == EAK_Q4_0 ? 2 : 4;
    const __m128i m4 = _mm_set1_epi8(0x0F), off = _mm_set1_epi8(type == EAK_Q4_0 ? 8 : 0);
    for (int b = 0; b < nb; ++b) {
        __m128i raw = _mm_loadu_si128((const __m128i *)(row + (size_t)b * bb + qoff));
        _mm_storeu_si128((__m128i *)(wq + (size_t)b * 32), _mm_sub_epi8(_mm_and_si128(raw, m4), off));
        _mm_storeu_si128((__m128i *)(wq + (size_t)b * 32 + 16), _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), off));
    }
    return 1;
}
#endif

#if defined(__aarch64__)
static inline int32x4_t lanes16_neon(int8x16_t w, int8x16_t x) {
    int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(x)));   /* pairs of bytes 0..7  */
    int32x4_t hi = vpaddlq_s16(vmull_s8(vget_high_s8(w), vget_high_s8(x))); /* pairs of bytes 8..15 */
    return vpaddq_s32(lo, hi);                                              /* quads 0..3 .. 12..15 */
}

static float lanes_neon(const int8_t *wq, const eak_act_block *xa, const float *dw, int nb) {
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    for (int b = 0; b < nb; ++b) {
        const int8_t *w = wq + (size_t)b * 32;
        const float32x4_t sc = vdupq_n_f32(dw[b] * xa[b].d);
        a0 = vaddq_f32(a0, vmulq_f32(sc, vcvtq_f32_s32(lanes16_neon(vld1q_s8(w), vld1q_s8(xa[b].qs)))));
        a1 = vaddq_f32(a1, vmulq_f32(sc, vcvtq_f32_s32(lanes16_neon(vld1q_s8(w + 16), vld1q_s8(xa[b].qs + 16)))));
    }
    float a[8];
    vst1q_f32(a, a0);
    vst1q_f32(a + 4, a1);
    return eak_reduce8(a);
}

__attribute__((target("arch=armv8.2-a+dotprod"))) static float lanes_dotprod(const int8_t *wq, const eak_act_block *xa,
                                                                           const float *dw, int nb) {
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    const int32x4_t z = vdupq_n_s32(0);
    for (int b = 0; b < nb; ++b) {
        const int8_t *w = wq + (size_t)b * 32;
        const float32x4_t sc = vdupq_n_f32(dw[b] * xa[b].d);
        a0 = vaddq_f32(a0, vmulq_f32(sc, vcvtq_f32_s32(vdotq_s32(z, vld1q_s8(w), vld1q_s8(xa[b].qs)))));
        a1 = vaddq_f32(a1, vmulq_f32(sc, vcvtq_f32_s32(vdotq_s32(z, vld1q_s8(w + 16), vld1q_s8(xa[b].qs + 16)))));
    }
    float a[8];
    vst1q_f32(a, a0);
    vst1q_f32(a + 4, a1);
    return eak_reduce8(a);
}

static int unpack_row_neon(int type, const uint8_t *row, int nb, int8_t *wq) {
    if (type != EAK_Q4_0 && type != EAK_Q4_1) return 0;
    const int bb = type == EAK_Q4_0 ? 18 : 20, qoff = type == EAK_Q4_0 ? 2 : 4;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t off = vdupq_n_s8(type == EAK_Q4_0 ? 8 : 0);
    for (int b = 0; b < nb; ++b) {
        uint8x16_t raw = vld1q_u8(row + (size_t)b * bb + qoff);
        vst1q_s8(wq + (size_t)b * 32, vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, m4)), off));
        vst1q_s8(wq + (size_t)b * 32 + 16, vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), off));
    }
    return 1;
}
#endif

/* Single-token (decode) path: the same lanes computed straight from the packed blocks, without the
 * unpack pass. Returns 0 for types it does not cover. *out = the lane sum, plus for Q4_1 the offset
 * term sum_b m_b * s_b (block order, as the lanes path): computed in the same pass, where its add
 * chain overlaps the vector work (a second pass over the row was 9% of decode time, the head's). */
typedef int (*fused_fn)(int type, const uint8_t *row, const eak_act_block *xa, int nb, const float *h2f, float *out);

#if defined(__x86_64__)
__attribute__((target("avx2"))) static int fused_avx2(int type, const uint8_t *row, const eak_act_block *xa, int nb,
                                                      const float *h2f, float *out) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    int bb, qoff;
    switch (type) {
    case EAK_Q4_0: bb = 18; qoff = 2; break;
    case EAK_Q4_1: bb = 20; qoff = 4; break;
    case EAK_Q8_0: bb = 34; qoff = 2; break;
    default: return 0;
    }
    const __m256i off = _mm256_set1_epi8(type == EAK_Q4_0 ? 8 : 0);
    float m = 0.0f;
    for (int b = 0; b < nb; ++b) {
        const uint8_t *blk = row + (size_t)b * bb;
        if (type == EAK_Q4_1) m = m + h2f[(uint16_t)(blk[2] | (blk[3] << 8))] * xa[b].s;
        __m256i w;
        if (type == EAK_Q8_0) {
            w = _mm256_loadu_si256((const __m256i *)(blk + qoff));
        } else {
            __m128i raw = _mm_loadu_si128((const __m128i *)(blk + qoff));
            w = _mm256_sub_epi8(_mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4)), off);
        }
        __m256i x = _mm256_loadu_si256((const __m256i *)xa[b].qs);
        __m256i l = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), ones);
        const float dw = h2f[(uint16_t)(blk[0] | (blk[1] << 8))];
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(dw * xa[b].d), _mm256_cvtepi32_ps(l)));
    }
    *out = type == EAK_Q4_1 ? reduce8_m256(acc) + m : reduce8_m256(acc);
    return 1;
}
#endif

#if defined(__x86_64__)
/* Single-token rows with VNNI (decode: the output head above all). The weights as unsigned bytes
 * u = w + off (Q8_0: w ^ 0x80 = w + 128; Q4_0: the nibble itself, w + 8; Q4_1: the nibble, off 0) and
 * vpdpbusd started from bias = -off * (the lane's sum of x) give exactly lanes_generic's int32 lane
 * sums; the float steps are fused_avx2's. bias: per block, computed once per call (fused_bias). */
__attribute__((target("avx2,avx512f,avx512vl,avx512vnni"))) static void fused_bias(int type, const eak_act_block *xa, int nb,
                                                                                __m256i *bias) {
    const int sh = type == EAK_Q8_0 ? 7 : type == EAK_Q4_0 ? 3 : -1;
    for (int b = 0; b < nb; ++b) {
        const __m256i xs = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1),
                                               _mm256_loadu_si256((const __m256i *)xa[b].qs));
        bias[b] = sh < 0 ? _mm256_setzero_si256() : _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(xs, sh));
    }
}

/* The rows are read once per token (the output head: 30 MB for SmolLM2), one after another. Asking
 * for the block PF_ROWS rows ahead keeps loads in flight that the one-row chain alone does not issue
 * early enough: decode 1.13x at 1 thread on SmolLM2 W2A8KV4 (4 rows ahead beat 8 and 16). A prefetch
 * never faults, so the hint past the last row is harmless. Interleaving four rows' chains instead was
 * measured slower (0.65x). */
#define PF_ROWS 4
__attribute__((target("avx2,avx512f,avx512vl,avx512vnni"))) static float fused_vnni(int type, const uint8_t *row,
                                                                                const eak_act_block *xa, int nb,
                                                                                const float *h2f, const __m256i *bias) {
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    __m256 acc = _mm256_setzero_ps();
    const int bb = type == EAK_Q8_0 ? 34 : type == EAK_Q4_1 ? 20 : 18, qoff = type == EAK_Q4_1 ? 4 : 2;
    float m = 0.0f;
    for (int b = 0; b < nb; ++b) {
        const uint8_t *blk = row + (size_t)b * bb;
        _mm_prefetch((const char *)(blk + (size_t)PF_ROWS * nb * bb), _MM_HINT_T0);
        if (type == EAK_Q4_1) m = m + h2f[(uint16_t)(blk[2] | (blk[3] << 8))] * xa[b].s;
        __m256i u;
        if (type == EAK_Q8_0) {
            u = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + qoff)), flip);
        } else {
            const __m128i raw = _mm_loadu_si128((const __m128i *)(blk + qoff));
            u = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
        }
        const __m256i l = _mm256_dpbusd_epi32(bias[b], u, _mm256_loadu_si256((const __m256i *)xa[b].qs));
        const float dw = h2f[(uint16_t)(blk[0] | (blk[1] << 8))];
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(dw * xa[b].d), _mm256_cvtepi32_ps(l)));
    }
    return type == EAK_Q4_1 ? reduce8_m256(acc) + m : reduce8_m256(acc);
}
int eak_generic_forced(void);
#define FUSED_VNNI_MAXB 64 /* the bias of up to 2048 columns on the stack */
static int g_fused_vnni = -1;
static int use_fused_vnni(void) {
    if (g_fused_vnni < 0) {
        __builtin_cpu_init();
        g_fused_vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl"); /* racing stores agree */
    }
    return g_fused_vnni && !eak_generic_forced();
}
#endif

#if defined(__aarch64__)
#define FUSED_NEON_BODY(LANES16)                                                                      \
    int bb, qoff;                                                                                     \
    switch (type) {                                                                                   \
    case EAK_Q4_0: bb = 18; qoff = 2; break;                                                          \
    case EAK_Q4_1: bb = 20; qoff = 4; break;                                                          \
    case EAK_Q8_0: bb = 34; qoff = 2; break;                                                          \
    default: return 0;                                                                                \
    }                                                                                                 \
    const uint8x16_t m4 = vdupq_n_u8(0x0F);                                                           \
    const int8x16_t off = vdupq_n_s8(type == EAK_Q4_0 ? 8 : 0);                                       \
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;                                                         \
    float m = 0.0f;                                                                                   \
    for (int b = 0; b < nb; ++b) {                                                                    \
        const uint8_t *blk = row + (size_t)b * bb;                                                    \
        if (type == EAK_Q4_1) m = m + h2f[(uint16_t)(blk[2] | (blk[3] << 8))] * xa[b].s;              \
        int8x16_t w0, w1;                                                                             \
        if (type == EAK_Q8_0) {                                                                       \
            w0 = vld1q_s8((const int8_t *)(blk + qoff));                                              \
            w1 = vld1q_s8((const int8_t *)(blk + qoff + 16));                                         \
        } else {                                                                                      \
            uint8x16_t raw = vld1q_u8(blk + qoff);                                                    \
            w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, m4)), off);                               \
            w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), off);                              \
        }                                                                                             \
        const float32x4_t sc = vdupq_n_f32(h2f[(uint16_t)(blk[0] | (blk[1] << 8))] * xa[b].d);         \
        a0 = vaddq_f32(a0, vmulq_f32(sc, vcvtq_f32_s32(LANES16(w0, vld1q_s8(xa[b].qs)))));             \
        a1 = vaddq_f32(a1, vmulq_f32(sc, vcvtq_f32_s32(LANES16(w1, vld1q_s8(xa[b].qs + 16)))));        \
    }                                                                                                 \
    float a[8];                                                                                       \
    vst1q_f32(a, a0);                                                                                 \
    vst1q_f32(a + 4, a1);                                                                             \
    *out = type == EAK_Q4_1 ? eak_reduce8(a) + m : eak_reduce8(a);                                    \
    return 1;

static int fused_neon(int type, const uint8_t *row, const eak_act_block *xa, int nb, const float *h2f, float *out) {
    FUSED_NEON_BODY(lanes16_neon)
}

__attribute__((target("arch=armv8.2-a+dotprod"))) static inline int32x4_t lanes16_dp(int8x16_t w, int8x16_t x) {
    return vdotq_s32(vdupq_n_s32(0), w, x);
}

__attribute__((target("arch=armv8.2-a+dotprod"))) static int fused_dotprod(int type, const uint8_t *row,
                                                                         const eak_act_block *xa, int nb,
                                                                         const float *h2f, float *out) {
    FUSED_NEON_BODY(lanes16_dp)
}
#endif

typedef int (*unpack_fn)(int, const uint8_t *, int, int8_t *);
static lanes_fn g_lanes;
static unpack_fn g_unpack; /* NULL: scalar unpack only */
static fused_fn g_fused;   /* NULL: no single-token shortcut */
static int g_picked;
static int g_forced_generic = -1;
void eak_matmul_reset_dispatch(void); /* matmul.c */
int eak_generic_forced(void) { return g_forced_generic == 1; }

int eak_use_avx2(void) {
#if defined(__x86_64__)
    static int has = -1;
    if (has < 0) { __builtin_cpu_init(); has = __builtin_cpu_supports("avx2"); } /* racing stores agree */
    return has && !eak_generic_forced();
#else
    return 0;
#endif
}

int eak_use_avx512(void) {
#if defined(__x86_64__)
    static int has = -1;
    if (has < 0) { __builtin_cpu_init(); has = __builtin_cpu_supports("avx512f"); } /* racing stores agree */
    return has && g_forced_generic != 2 && eak_use_avx2();
#else
    return 0;
#endif
}

static quantize_block_fn pick_quantize_block(void) {
    if (eak_generic_forced()) return quantize_block_generic;
#if defined(__x86_64__)
    return eak_use_avx2() ? quantize_block_avx2 : quantize_block_generic;
#elif defined(__aarch64__)
    return quantize_block_neon;
#else
    return quantize_block_generic;
#endif
}

void eak_force_generic(int on) {
    g_forced_generic = on;
    g_lanes = 0;
    g_unpack = 0;
    g_fused = 0;
    g_picked = 0;
    eak_matmul_reset_dispatch();
}

static lanes_fn pick_lanes(void) {
    if (g_picked) return g_lanes;
    lanes_fn f = lanes_generic;
    unpack_fn u = 0;
    fused_fn z = 0;
    if (g_forced_generic != 1) {
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2")) { f = lanes_avx2; u = unpack_row_avx2; z = fused_avx2; }
#elif defined(__aarch64__)
        f = lanes_neon;
        u = unpack_row_neon;
        z = fused_neon;
#if defined(__linux__)
        if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) { f = lanes_dotprod; z = fused_dotprod; }
#endif
#endif
    }
    g_lanes = f;
    g_unpack = u;
    g_fused = z;
    g_picked = 1; /* racing first calls store the same values */
    return f;
}

const char *eak_idot_name(void) {
    lanes_fn f = pick_lanes();
#if defined(__x86_64__)
    if (f == lanes_avx2) return "avx2";
#elif defined(__aarch64__)
    if (f == lanes_dotprod) return "neon-dotprod";
    if (f == lanes_neon) return "neon";
#endif
    (void)f;
    return "generic";
}

/* Adds the products of nr (1 or 2) unpacked rows (row k: wq + k * chunk * 32, scales dw + k * chunk,
 * offsets mw + k * chunk or none) with blocks b0 .. b0 + nb of every token to y (token t, row r + k at
 * y[t * rows + r + k]): two rows through the tile, one row four tokens at a time (AVX2), the rest one
 * token at a time. off: the unsigned-code offset of the tile (unused for one row). */
#if defined(__x86_64__)
/* The two-row prefill tile: its AVX512-VNNI form where the CPU has it (and the generic kernels are not
 * forced: then this path is not taken at all), else the AVX2 one. */
static tile_fn pick_tile(void) {
    static tile_fn f;
    if (!f) {
        __builtin_cpu_init();
        f = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")
                ? tile2x4_vnni512 : tile2x4_avx2; /* racing stores agree */
    }
    return f;
}
#endif

static void rows_times_tokens(lanes_fn lanes, int nr, int chunk, const int8_t *wq, const float *dw, const float *mw,
                              int off, const eak_act_block *xq, int nb_all, int b0, int nb, int n_tok, float *y,
                              int rows, int r) {
    int t = 0;
#if defined(__x86_64__)
    if (nr == 2) {
        const tile_fn tile = pick_tile();
        for (; t + 4 <= n_tok; t += 4) {
            float va[4], vb[4];
            tile(wq, wq + (size_t)chunk * 32, off, xq + (size_t)t * nb_all + b0, (size_t)nb_all, dw, dw + chunk,
                         mw, mw ? mw + chunk : NULL, nb, va, vb);
            for (int k = 0; k < 4; ++k) {
                y[(size_t)(t + k) * rows + r] += va[k];
                y[(size_t)(t + k) * rows + r + 1] += vb[k];
            }
        }
    } else if (lanes == lanes_avx2)
        for (; t + 4 <= n_tok; t += 4) {
            float v4[4];
            lanes4_avx2(wq, xq + (size_t)t * nb_all + b0, (size_t)nb_all, dw, mw, nb, v4);
            for (int k = 0; k < 4; ++k) y[(size_t)(t + k) * rows + r] += v4[k];
        }
#else
    (void)off;
#endif
    for (; t < n_tok; ++t) {
        const eak_act_block *xa = xq + (size_t)t * nb_all + b0;
        for (int k = 0; k < nr; ++k) {
            float v = lanes(wq + (size_t)k * chunk * 32, xa, dw + k * chunk, nb);
            if (mw) {
                float m = 0.0f;
                for (int b = 0; b < nb; ++b) m = m + mw[k * chunk + b] * xa[b].s;
                v = v + m;
            }
            y[(size_t)t * rows + r + k] += v;
        }
    }
}

#define MAXB 512 /* blocks per row handled at once: 16384 columns */

/* Row r of a Q4_1 panel matrix in the row layout (see eak_q4p_pack_panels). */
static void q4p_row(const uint8_t *w, size_t row_bytes, int r, uint8_t *o);

/* panels (Q4_1 only): w is in Q4_1 panels; each row (pair) is first rebuilt in the row layout on
 * the stack, then goes through the same steps, so results equal the row layout's bit for bit. */
static void matmul_q8(int type, const void *w, size_t row_bytes, int rows, int cols,
                      const eak_act_block *xq, int n_tok, float *y, int n_threads, int panels) {
    const lanes_fn lanes = pick_lanes();
    const unpack_fn unpack = g_unpack;
    const fused_fn fused = g_fused;
    const float *h2f = eak_f16_table();
    const int nb_all = cols / 32;
    const uint32_t bb = eak_type_block_bytes(type);
    const int has_min = type == EAK_Q4_1 || type == EAK_Q5_1;
    if (n_threads < 1) n_threads = 1;
    const int eak_nt = n_threads;
    /* unsigned-code offset for the two-row prefill tile; -1: Q8_0 (signed bytes, one row at a time) */
    const int off = type == EAK_Q4_0 ? 8 : type == EAK_Q5_0 ? 16 : type == EAK_Q8_0 ? -1 : 0;
    (void)off;
#if defined(__x86_64__)
    if (!panels && n_tok == 1 && nb_all <= FUSED_VNNI_MAXB && (type == EAK_Q8_0 || type == EAK_Q4_0 || type == EAK_Q4_1) &&
        fused == fused_avx2 && use_fused_vnni()) {
        EAK_PARALLEL(n_threads > 1,
        __m256i bias[FUSED_VNNI_MAXB];
        fused_bias(type, xq, nb_all, bias);
        for (int r = eak_team_lo(rows), r_end = eak_team_hi(rows); r < r_end; ++r) {
            const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
            y[r] = fused_vnni(type, row, xq, nb_all, h2f, bias);
        });
        return;
    }
#endif
    EAK_PARALLEL(n_threads > 1,
    for (int r = eak_team_lo(rows), r_end = eak_team_hi(rows), nr = 1; r < r_end; r += nr) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
        /* one row uses all of it; two rows (the prefill tile) take half each */
        int8_t wq[MAXB * 32];
        float dw[MAXB], mw[MAXB];
        uint8_t rebuilt[panels ? 2 * row_bytes : 1];
        if (panels) {
            q4p_row(w, row_bytes, r, rebuilt);
            if (r + 1 < r_end) q4p_row(w, row_bytes, r + 1, rebuilt + row_bytes);
            row = rebuilt;
        }
        nr = 1;
        if (n_tok == 1 && fused && nb_all <= MAXB) {
            float v;
            if (fused(type, row, xq, nb_all, h2f, &v)) {
                y[r] = v;
                continue;
            }
        }
#if defined(__x86_64__)
        if (lanes == lanes_avx2 && n_tok >= 4 && off >= 0 && r + 1 < r_end) nr = 2;
#endif
        const int chunk = MAXB / nr;
        for (int k = 0; k < nr; ++k)
            for (int t = 0; t < n_tok; ++t) y[(size_t)t * rows + r + k] = 0.0f;
        for (int b0 = 0; b0 < nb_all; b0 += chunk) {
            const int nb = nb_all - b0 < chunk ? nb_all - b0 : chunk;
            /* decode the rows once for all tokens: int8 values and the block scales */
            for (int k = 0; k < nr; ++k) {
                const uint8_t *rb = row + (size_t)k * row_bytes + (size_t)b0 * bb;
                int8_t *wk = wq + (size_t)k * chunk * 32;
                if (!unpack || !unpack(type, rb, nb, wk))
                    for (int b = 0; b < nb; ++b) unpack_block(type, rb + (size_t)b * bb, wk + (size_t)b * 32);
                for (int b = 0; b < nb; ++b) {
                    const uint8_t *blk = rb + (size_t)b * bb;
                    dw[k * chunk + b] = h2f[(uint16_t)(blk[0] | (blk[1] << 8))];
                    mw[k * chunk + b] = has_min ? h2f[(uint16_t)(blk[2] | (blk[3] << 8))] : 0.0f;
                }
            }
            rows_times_tokens(lanes, nr, chunk, wq, dw, has_min ? mw : NULL, off, xq, nb_all, b0, nb, n_tok, y, rows, r);
        }
    });
}

void eak_matmul_q8(int type, const void *w, size_t row_bytes, int rows, int cols,
                   const eak_act_block *xq, int n_tok, float *y, int n_threads) {
    matmul_q8(type, w, row_bytes, rows, cols, xq, n_tok, y, n_threads, 0);
}

/* ---- Q4_1 panels ----------------------------------------------------------------------------------
 * Decode reads the output head (a Q4_1 head: 49152 x 576, 17.7 MB for SmolLM2) once per token, one
 * row at a time: per 32-weight block two fp16 headers to decode and a scalar offset chain, about 25
 * instructions per 20 bytes. In panels of 16 rows (per block: the 16 d, the 16 m, the 16 rows' code
 * bytes) the scales of 16 rows convert in one instruction, the offset term runs for 16 rows in one
 * vector, and one 64-byte vpdpbusd serves two rows. Every lane keeps the row layout's order (lane j:
 * elements 4j..4j+3, acc = acc + (d * dx) * L block by block, reduce8, then + m), so the results
 * are the row kernels' bit for bit. */
#define Q4P 16
#define Q4P_COL (Q4P * 20) /* one block of 16 rows */

static inline const uint8_t *q4p_panel(const uint8_t *w, size_t row_bytes, int r) {
    return w + (size_t)(r / Q4P) * Q4P * row_bytes;
}

static void q4p_row(const uint8_t *w, size_t row_bytes, int r, uint8_t *o) {
    const uint8_t *p = q4p_panel(w, row_bytes, r);
    const int k = r % Q4P, nb = (int)(row_bytes / 20);
    for (int b = 0; b < nb; ++b, p += Q4P_COL, o += 20) {
        memcpy(o, p + 2 * k, 2);
        memcpy(o + 2, p + 32 + 2 * k, 2);
        memcpy(o + 4, p + 64 + 16 * k, 16);
    }
}

void eak_q4p_row(const void *w, size_t row_bytes, int r, void *out) { q4p_row(w, row_bytes, r, out); }

int eak_q4p_pack_panels(void *w, size_t row_bytes, int rows, int cols, void *scratch) {
    if (!w || !scratch || rows <= 0 || rows % Q4P != 0 || cols <= 0 || cols % 32 != 0 || cols / 32 > MAXB ||
        row_bytes != (size_t)(cols / 32) * 20)
        return -1;
    const int nb = cols / 32;
    for (int p0 = 0; p0 < rows; p0 += Q4P) {
        uint8_t *pan = (uint8_t *)w + (size_t)p0 * row_bytes;
        memcpy(scratch, pan, Q4P * row_bytes);
        for (int k = 0; k < Q4P; ++k)
            for (int b = 0; b < nb; ++b) {
                const uint8_t *blk = (const uint8_t *)scratch + (size_t)k * row_bytes + (size_t)b * 20;
                uint8_t *o = pan + (size_t)b * Q4P_COL;
                memcpy(o + 2 * k, blk, 2);
                memcpy(o + 32 + 2 * k, blk + 2, 2);
                memcpy(o + 64 + 16 * k, blk + 4, 16);
            }
    }
    return 0;
}

/* One panel (16 rows) times one token: y[0..15]. */
typedef void (*q4p_fn)(const uint8_t *pan, const eak_act_block *xa, int nb, float *y);

#if defined(__x86_64__)
/* 16 rows in 8 accumulators of two rows each: the broadcast 32 code bytes of rows (2p, 2p+1) give,
 * low nibbles in the low half and high nibbles in the high half, [2p: 0-15 | 2p+1: 0-15 | 2p: 16-31
 * | 2p+1: 16-31], against activations laid out [0-15 | 0-15 | 16-31 | 16-31]. */
__attribute__((target("avx2,f16c,avx512f,avx512vl,avx512bw,avx512vnni"))) static void
q4p_vnni512(const uint8_t *pan, const eak_act_block *xa, int nb, float *y) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i shift = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    __m512 acc[8], mv = _mm512_setzero_ps();
    __m512i idx[8];
    for (int p = 0; p < 8; ++p) {
        acc[p] = _mm512_setzero_ps();
        const __m128i a = _mm_set1_epi32(2 * p), c = _mm_set1_epi32(2 * p + 1);
        const __m256i h = _mm256_set_m128i(c, a);
        idx[p] = _mm512_inserti64x4(_mm512_castsi256_si512(h), h, 1);
    }
    for (int b = 0; b < nb; ++b, pan += Q4P_COL) {
        const __m128i xl = _mm_loadu_si128((const __m128i *)xa[b].qs), xh = _mm_loadu_si128((const __m128i *)(xa[b].qs + 16));
        const __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(xl, xl)), _mm256_set_m128i(xh, xh), 1);
        const __m512 sc = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)pan)), _mm512_set1_ps(xa[b].d));
        mv = _mm512_add_ps(mv, _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(pan + 32))),
                                             _mm512_set1_ps(xa[b].s)));
        for (int p = 0; p < 8; ++p) {
            const __m512i a = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(pan + 64 + 32 * p)));
            const __m512i u = _mm512_and_si512(_mm512_srlv_epi16(a, shift), m4);
            const __m512i l = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, x);
            acc[p] = _mm512_add_ps(acc[p], _mm512_mul_ps(_mm512_permutexvar_ps(idx[p], sc), _mm512_cvtepi32_ps(l)));
        }
    }
    float m[16], f[16];
    _mm512_storeu_ps(m, mv);
    for (int p = 0; p < 8; ++p) {
        _mm512_storeu_ps(f, acc[p]);
        for (int k = 0; k < 2; ++k) { /* row 2p + k: lanes f[4k..4k+3], f[8+4k..8+4k+3] */
            const float *g = f + 4 * k;
            y[2 * p + k] = (((g[0] + g[8]) + (g[2] + g[10])) + ((g[1] + g[9]) + (g[3] + g[11]))) + m[2 * p + k];
        }
    }
}

/* Eight rows at a time (AVX2 has 16 registers): per row pair the 32 code bytes split into each row's
 * [0-15 | 16-31] nibbles, maddubs/madd lanes as lanes_avx2. */
__attribute__((target("avx2,f16c"))) static void q4p_avx2(const uint8_t *pan0, const eak_act_block *xa, int nb, float *y) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    for (int h = 0; h < 2; ++h) {
        __m256 acc[8], mv = _mm256_setzero_ps();
        for (int k = 0; k < 8; ++k) acc[k] = _mm256_setzero_ps();
        const uint8_t *pan = pan0;
        for (int b = 0; b < nb; ++b, pan += Q4P_COL) {
            const __m256i x = _mm256_loadu_si256((const __m256i *)xa[b].qs);
            const __m256 sc = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(pan + 16 * h))),
                                            _mm256_set1_ps(xa[b].d));
            mv = _mm256_add_ps(mv, _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(pan + 32 + 16 * h))),
                                                 _mm256_set1_ps(xa[b].s)));
            for (int q = 0; q < 4; ++q) {
                const __m256i a = _mm256_loadu_si256((const __m256i *)(pan + 64 + 128 * h + 32 * q));
                const __m256i lo = _mm256_and_si256(a, m4), hi = _mm256_and_si256(_mm256_srli_epi16(a, 4), m4);
                const __m256i u0 = _mm256_permute2x128_si256(lo, hi, 0x20), u1 = _mm256_permute2x128_si256(lo, hi, 0x31);
                const __m256i l0 = _mm256_madd_epi16(_mm256_maddubs_epi16(u0, x), ones);
                const __m256i l1 = _mm256_madd_epi16(_mm256_maddubs_epi16(u1, x), ones);
                acc[2 * q] = _mm256_add_ps(acc[2 * q], _mm256_mul_ps(_mm256_permutevar8x32_ps(sc, _mm256_set1_epi32(2 * q)),
                                                                     _mm256_cvtepi32_ps(l0)));
                acc[2 * q + 1] = _mm256_add_ps(acc[2 * q + 1], _mm256_mul_ps(_mm256_permutevar8x32_ps(sc, _mm256_set1_epi32(2 * q + 1)),
                                                                             _mm256_cvtepi32_ps(l1)));
            }
        }
        float m[8];
        _mm256_storeu_ps(m, mv);
        for (int k = 0; k < 8; ++k) y[8 * h + k] = reduce8_m256(acc[k]) + m[k];
    }
}
#endif

#if defined(__aarch64__)
/* Four rows at a time (eight accumulators of four lanes): a row's low nibbles against activations
 * 0-15 give lanes 0-3, its high nibbles against 16-31 lanes 4-7, as FUSED_NEON_BODY. */
#define Q4P_NEON_ROW(K, L16)                                                                             \
    {                                                                                                   \
        const uint8x16_t raw = vld1q_u8(pan + 64 + 16 * (4 * h + K));                                   \
        const float32x4_t s = vdupq_laneq_f32(sc, K);                                                   \
        a0[K] = vaddq_f32(a0[K], vmulq_f32(s, vcvtq_f32_s32(L16(vreinterpretq_s8_u8(vandq_u8(raw, m4)), x0))));     \
        a1[K] = vaddq_f32(a1[K], vmulq_f32(s, vcvtq_f32_s32(L16(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), x1))));     \
    }
#define Q4P_NEON_BODY(LANES16)                                                                          \
    const uint8x16_t m4 = vdupq_n_u8(0x0F);                                                             \
    for (int h = 0; h < 4; ++h) {                                                                       \
        float32x4_t a0[4], a1[4], mv = vdupq_n_f32(0);                                                  \
        for (int k = 0; k < 4; ++k) a0[k] = a1[k] = mv;                                                 \
        const uint8_t *pan = pan0;                                                                      \
        for (int b = 0; b < nb; ++b, pan += Q4P_COL) {                                                  \
            const int8x16_t x0 = vld1q_s8(xa[b].qs), x1 = vld1q_s8(xa[b].qs + 16);                      \
            const float32x4_t sc = vmulq_f32(vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(pan + 8 * h))),    \
                                             vdupq_n_f32(xa[b].d));                                     \
            mv = vaddq_f32(mv, vmulq_f32(vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(pan + 32 + 8 * h))),  \
                                         vdupq_n_f32(xa[b].s)));                                        \
            Q4P_NEON_ROW(0, LANES16) Q4P_NEON_ROW(1, LANES16) Q4P_NEON_ROW(2, LANES16) Q4P_NEON_ROW(3, LANES16) \
        }                                                                                               \
        float m[4], a[8];                                                                               \
        vst1q_f32(m, mv);                                                                               \
        for (int k = 0; k < 4; ++k) {                                                                   \
            vst1q_f32(a, a0[k]);                                                                        \
            vst1q_f32(a + 4, a1[k]);                                                                    \
            y[4 * h + k] = eak_reduce8(a) + m[k];                                                       \
        }                                                                                               \
    }

static void q4p_neon(const uint8_t *pan0, const eak_act_block *xa, int nb, float *y) { Q4P_NEON_BODY(lanes16_neon) }

__attribute__((target("arch=armv8.2-a+dotprod"))) static void q4p_dotprod(const uint8_t *pan0, const eak_act_block *xa,
                                                                         int nb, float *y) {
    Q4P_NEON_BODY(lanes16_dp)
}
#endif

/* Every panel kernel this CPU has (the first is the one decode uses); 0 when the generic kernels are
 * forced. */
static int q4p_variants(q4p_fn *f, const char **name) {
    int n = 0;
    if (eak_generic_forced()) return 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (use_fused_vnni() && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("f16c") &&
        eak_use_avx512()) { f[n] = q4p_vnni512; name[n++] = "avx512-vnni"; }
    if (eak_use_avx2() && __builtin_cpu_supports("f16c")) { f[n] = q4p_avx2; name[n++] = "avx2"; }
#elif defined(__aarch64__)
#if defined(__linux__)
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) { f[n] = q4p_dotprod; name[n++] = "neon-dotprod"; }
#endif
    f[n] = q4p_neon;
    name[n++] = "neon";
#endif
    (void)f; (void)name;
    return n;
}

void eak_matmul_q4p(const void *w, size_t row_bytes, int rows, int cols, const eak_act_block *xq, int n_tok,
                    float *y, int n_threads) {
    q4p_fn f[3];
    const char *nm[3];
    if (n_tok != 1 || q4p_variants(f, nm) == 0) {
        matmul_q8(EAK_Q4_1, w, row_bytes, rows, cols, xq, n_tok, y, n_threads, 1);
        return;
    }
    const q4p_fn k = f[0];
    const int np = rows / Q4P, nb = cols / 32;
    const int eak_nt = n_threads < 1 ? 1 : n_threads;
    EAK_PARALLEL(eak_nt > 1,
    for (int p = eak_team_lo(np), pe = eak_team_hi(np); p < pe; ++p)
        k((const uint8_t *)w + (size_t)p * Q4P * row_bytes, xq, nb, y + (size_t)p * Q4P););
}

const char *eak_q4p_kernel_name(void) {
    q4p_fn f[3];
    const char *nm[3];
    return q4p_variants(f, nm) ? nm[0] : "generic";
}

static uint32_t st_rand(uint32_t *s) { *s = *s * 1664525u + 1013904223u; return *s >> 8; }

/* Self test: random Q4_1 rows (32 of them: two panels), packed; every panel kernel and the rebuilt
 * rows against the row layout's generic steps. */
static int q4p_self_test(uint32_t *s, char *msg, size_t msg_len) {
    enum { R = 32, NB = 48 };
    static _Thread_local uint8_t rows[R * NB * 20], packed[R * NB * 20], back[NB * 20];
    static _Thread_local int8_t wq[NB * 32];
    static _Thread_local float dw[NB], y[R];
    static _Thread_local eak_act_block xa[NB];
    const float *h2f = eak_f16_table();
    q4p_fn f[3];
    const char *nm[3];
    const int nv = q4p_variants(f, nm);
    static const int nbs[] = { 1, 2, 18, 48 };
    for (int it = 0; it < 4; ++it) {
        const int nb = nbs[it];
        const size_t rb = (size_t)nb * 20;
        for (int b = 0; b < nb; ++b) {
            xa[b].d = h2f[eak_f32_to_f16((float)(st_rand(s) % 1000 + 1) * 1e-4f)];
            int sum = 0;
            for (int j = 0; j < 32; ++j) { xa[b].qs[j] = (int8_t)((int)(st_rand(s) % 255) - 127); sum += xa[b].qs[j]; }
            xa[b].s = h2f[eak_f32_to_f16(xa[b].d * (float)sum)];
        }
        for (size_t i = 0; i < R * rb; ++i) rows[i] = (uint8_t)st_rand(s);
        for (int i = 0; i < R * nb; ++i) { /* finite d and m */
            const uint16_t d = eak_f32_to_f16((float)(st_rand(s) % 1000 + 1) * 1e-3f);
            const uint16_t m = eak_f32_to_f16(((float)(st_rand(s) % 2001) - 1000.0f) * 1e-4f);
            rows[i * 20] = (uint8_t)d; rows[i * 20 + 1] = (uint8_t)(d >> 8);
            rows[i * 20 + 2] = (uint8_t)m; rows[i * 20 + 3] = (uint8_t)(m >> 8);
        }
        memcpy(packed, rows, R * rb);
        uint8_t scratch[Q4P * NB * 20];
        if (eak_q4p_pack_panels(packed, rb, R, nb * 32, scratch) != 0) {
            if (msg) snprintf(msg, msg_len, "Q4_1 panels: packing refused %d blocks", nb);
            return -1;
        }
        for (int r = 0; r < R; ++r) {
            q4p_row(packed, rb, r, back);
            if (memcmp(back, rows + r * rb, rb) != 0) {
                if (msg) snprintf(msg, msg_len, "Q4_1 panels: row %d (%d blocks) rebuilt differs", r, nb);
                return -1;
            }
        }
        for (int v = 0; v < nv; ++v) {
            for (int p = 0; p < R / Q4P; ++p) f[v](packed + (size_t)p * Q4P * rb, xa, nb, y + p * Q4P);
            for (int r = 0; r < R; ++r) {
                const uint8_t *row = rows + r * rb;
                float m = 0.0f;
                for (int b = 0; b < nb; ++b) {
                    unpack_block(EAK_Q4_1, row + b * 20, wq + b * 32);
                    dw[b] = h2f[(uint16_t)(row[b * 20] | (row[b * 20 + 1] << 8))];
                    m = m + h2f[(uint16_t)(row[b * 20 + 2] | (row[b * 20 + 3] << 8))] * xa[b].s;
                }
                const float want = lanes_generic(wq, xa, dw, nb) + m;
                if (memcmp(&want, &y[r], sizeof want) != 0) {
                    if (msg) snprintf(msg, msg_len, "Q4_1 panel kernel %s (%d blocks, row %d): %.9g != generic %.9g",
                                      nm[v], nb, r, y[r], want);
                    return -1;
                }
            }
        }
    }
    return 0;
}

/* ---- W2 rows -------------------------------------------------------------------------------------
 * W2 has its own lane order (not the eight quad lanes of the types above): per row two float
 * accumulators, one for elements 0-15 and one for 16-31 of every 32-element block, updated block by
 * block as lo = lo + (d * dx) * (float)L_lo (L: the exact int32 sum of code * x over those 16
 * elements), the offset term m = m + mn * s block by block, and y = (lo + hi) + m. Two sums per
 * block instead of eight let the SIMD kernels gather four rows' integer sums into one vector (x86:
 * products summed vertically, one horizontal add per token; NEON dotprod: sdot by lane, no
 * reduction at all) and do the float work of four rows in one multiply and add. Decode and prefill run the
 * same kernels (one to four tokens per pass), so a token's result does not depend on its batch. */
static inline int w2_code(const uint8_t *chunk, int j) { return (chunk[j & 7] >> (2 * (j >> 3))) & 3; }

static float w2_row_generic(const uint8_t *row, const eak_act_block *xa, int ng, int cpg, const float *h2f) {
    float lo = 0.0f, hi = 0.0f, m = 0.0f;
    for (int g = 0, b = 0; g < ng; ++g, row += 4 + 8 * cpg) {
        const float d = h2f[(uint16_t)(row[0] | (row[1] << 8))], mn = h2f[(uint16_t)(row[2] | (row[3] << 8))];
        for (int c = 0; c < cpg; ++c, ++b) {
            const uint8_t *chunk = row + 4 + 8 * c;
            int32_t l0 = 0, l1 = 0;
            for (int j = 0; j < 16; ++j) {
                l0 += w2_code(chunk, j) * xa[b].qs[j];
                l1 += w2_code(chunk, j + 16) * xa[b].qs[j + 16];
            }
            const float sc = d * xa[b].d;
            lo = lo + sc * (float)l0;
            hi = hi + sc * (float)l1;
            m = m + mn * xa[b].s;
        }
    }
    return (lo + hi) + m;
}

float eak_w2_row_ref(const uint8_t *row, const eak_act_block *xa, int ng, int cpg) {
    return w2_row_generic(row, xa, ng, cpg, eak_f16_table());
}

/* Four rows (r[k]; a short tail repeats a row) times nt (1 to 4) tokens (token t at x + t * xs);
 * y[t * ys + k] receives row k's result for token t. */
typedef void (*w2_quad_fn)(const uint8_t *const r[4], const eak_act_block *x, size_t xs, int nt, int ng, int cpg,
                           const float *h2f, float *y, size_t ys);

static void w2_quad_generic(const uint8_t *const r[4], const eak_act_block *x, size_t xs, int nt, int ng, int cpg,
                            const float *h2f, float *y, size_t ys) {
    for (int t = 0; t < nt; ++t)
        for (int k = 0; k < 4; ++k) y[(size_t)t * ys + k] = w2_row_generic(r[k], x + (size_t)t * xs, ng, cpg, h2f);
}

#if defined(__x86_64__)
/* 8 bytes -> 32 codes: replicate to four 64-bit lanes, shift lane k by 2k, keep 2 bits per byte. */
__attribute__((target("avx2"))) static inline __m256i w2_codes_avx2(const uint8_t *chunk) {
    uint64_t v;
    memcpy(&v, chunk, 8);
    const __m256i sh = _mm256_set_epi64x(6, 4, 2, 0);
    return _mm256_and_si256(_mm256_srlv_epi64(_mm256_set1_epi64x((long long)v), sh), _mm256_set1_epi8(3));
}

/* One token (decode) keeps the per-row layout: each row's codes by one broadcast load, a shift and a
 * mask, the four rows' sums by horizontal adds. It runs fewer instructions than the U_s layout
 * below when the unpacking serves a single token (1240M -> 1309M per 16 decoded tokens otherwise);
 * from two tokens on, the U_s layout's cheaper per-token sums win. */
/* One token's update of the four rows: maddubs gives pair sums (<= 762 in magnitude), two rounds of
 * hadd_epi16 quads and octets (<= 3048: no wrap), madd the 16-element sums, laid out as
 * [L_lo rows 0-3 | L_hi rows 0-3]; the float lanes then do exactly w2_row_generic's operations. */
#define W2_QUAD_AVX2_TOKEN(ACC, M, XB)                                                                         \
    {                                                                                                          \
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(XB)->qs);                                     \
        const __m256i h = _mm256_hadd_epi16(                                                                   \
            _mm256_hadd_epi16(_mm256_maddubs_epi16(w0, xv), _mm256_maddubs_epi16(w1, xv)),                     \
            _mm256_hadd_epi16(_mm256_maddubs_epi16(w2, xv), _mm256_maddubs_epi16(w3, xv)));                    \
        const __m256 sc = _mm256_mul_ps(dv, _mm256_set1_ps((XB)->d));                                          \
        ACC = _mm256_add_ps(ACC, _mm256_mul_ps(sc, _mm256_cvtepi32_ps(_mm256_madd_epi16(h, ones))));           \
        M = _mm_add_ps(M, _mm_mul_ps(mv, _mm_set1_ps((XB)->s)));                                               \
    }

__attribute__((target("avx2,f16c"), noinline)) static void w2_quad_avx2_hadd(const uint8_t *const r[4], const eak_act_block *x,
                                                                 size_t xs, int nt, int ng, int cpg, const float *h2f,
                                                                 float *y, size_t ys) {
    (void)h2f; /* F16C converts the scales (exactly, as the table does) */
    const __m256i ones = _mm256_set1_epi16(1);
    /* the four rows' (d, m) words -> [d0 d1 d2 d3 m0 m1 m2 m3] as fp16 */
    const __m128i pick = _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    __m128 m0 = _mm_setzero_ps(), m1 = m0;
    const eak_act_block *x1 = x + xs;
    const size_t gb = 4 + 8 * (size_t)cpg;
    for (int g = 0, b = 0; g < ng; ++g) {
        const size_t o = (size_t)g * gb;
        uint32_t h0, h1, h2, h3;
        memcpy(&h0, r[0] + o, 4); memcpy(&h1, r[1] + o, 4); memcpy(&h2, r[2] + o, 4); memcpy(&h3, r[3] + o, 4);
        const __m256 dm = _mm256_cvtph_ps(_mm_shuffle_epi8(_mm_setr_epi32((int)h0, (int)h1, (int)h2, (int)h3), pick));
        const __m256 dv = _mm256_insertf128_ps(dm, _mm256_castps256_ps128(dm), 1);
        const __m128 mv = _mm256_extractf128_ps(dm, 1);
        for (int c = 0; c < cpg; ++c, ++b) {
            const size_t co = o + 4 + 8 * (size_t)c;
            const __m256i w0 = w2_codes_avx2(r[0] + co), w1 = w2_codes_avx2(r[1] + co);
            const __m256i w2 = w2_codes_avx2(r[2] + co), w3 = w2_codes_avx2(r[3] + co);
            W2_QUAD_AVX2_TOKEN(acc0, m0, x + b)
            if (nt == 2) W2_QUAD_AVX2_TOKEN(acc1, m1, x1 + b)
        }
    }
    _mm_storeu_ps(y, _mm_add_ps(_mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1)), m0));
    if (nt == 2)
        _mm_storeu_ps(y + ys, _mm_add_ps(_mm_add_ps(_mm256_castps256_ps128(acc1), _mm256_extractf128_ps(acc1, 1)), m1));
}
#undef W2_QUAD_AVX2_TOKEN

/* The quad kernels lay one 32-element block of four rows out as four code vectors U_s (s = 0..3):
 * 32-bit lane p of U_s holds row p / 2's codes for elements 8s + 4e .. 8s + 4e + 3 (e = p & 1), which
 * are the bytes of dword e of the row's 8-byte chunk at bit offset 2s. So U_s is the four rows'
 * chunks side by side (broadcast loads and blends, no shuffles) shifted by 2s, and the token's
 * matching bytes are its activation qword s repeated (one broadcast load). Products summed over
 * U_0, U_1 give each row's two halves of L_lo in lanes 2k, 2k + 1, over U_2, U_3 those of L_hi; one
 * 32-bit horizontal add per token makes [lo r0, lo r1, hi r0, hi r1 | lo r2, lo r3, hi r2, hi r3].
 * Integer sums are exact, so every variant gives the same L and, through the same float operations
 * per lane, the same y as w2_row_generic. */
__attribute__((target("avx2"))) static inline void w2_codes4_avx2(const uint8_t *const r[4], size_t co, __m256i u[4]) {
    uint64_t q0, q1, q2, q3;
    memcpy(&q0, r[0] + co, 8); memcpy(&q1, r[1] + co, 8); memcpy(&q2, r[2] + co, 8); memcpy(&q3, r[3] + co, 8);
    const __m256i q01 = _mm256_blend_epi32(_mm256_set1_epi64x((long long)q0), _mm256_set1_epi64x((long long)q1), 0x0C);
    const __m256i q23 = _mm256_blend_epi32(_mm256_set1_epi64x((long long)q2), _mm256_set1_epi64x((long long)q3), 0xC0);
    const __m256i q = _mm256_blend_epi32(q01, q23, 0xF0), m3 = _mm256_set1_epi8(3);
    u[0] = _mm256_and_si256(q, m3);
    u[1] = _mm256_and_si256(_mm256_srli_epi32(q, 2), m3);
    u[2] = _mm256_and_si256(_mm256_srli_epi32(q, 4), m3);
    u[3] = _mm256_and_si256(_mm256_srli_epi32(q, 6), m3);
}

__attribute__((target("avx2"))) static inline __m256i w2_xq(const eak_act_block *xb, int s) {
    int64_t v;
    memcpy(&v, xb->qs + 8 * s, 8);
    return _mm256_set1_epi64x((long long)v);
}

/* The float work of one token (exactly w2_row_generic's operations per lane). */
#define W2_QUAD_X86_FLOAT(ACC, M, XB, L)                                                                      \
    {                                                                                                          \
        const __m256 sc = _mm256_mul_ps(dv, _mm256_set1_ps((XB)->d));                                          \
        ACC = _mm256_add_ps(ACC, _mm256_mul_ps(sc, _mm256_cvtepi32_ps(L)));                                    \
        M = _mm_add_ps(M, _mm_mul_ps(mv, _mm_set1_ps((XB)->s)));                                               \
    }

/* AVX2: maddubs pair sums (|.| <= 768) added over two U_s in 16 bits, one madd per half. */
#define W2_L_AVX2(XB, L)                                                                                       \
    __m256i L;                                                                                                 \
    {                                                                                                          \
        const __m256i lo = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(u[0], w2_xq(XB, 0)),        \
                                                              _mm256_maddubs_epi16(u[1], w2_xq(XB, 1))), ones); \
        const __m256i hi = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(u[2], w2_xq(XB, 2)),        \
                                                              _mm256_maddubs_epi16(u[3], w2_xq(XB, 3))), ones); \
        L = _mm256_hadd_epi32(lo, hi);                                                                         \
    }

/* VNNI: dpbusd (unsigned codes times signed activations, sums of four into int32), two per half. */
#define W2_L_VNNI(DP, XB, L)                                                                                   \
    __m256i L;                                                                                                 \
    {                                                                                                          \
        const __m256i lo = DP(DP(_mm256_setzero_si256(), u[0], w2_xq(XB, 0)), u[1], w2_xq(XB, 1));             \
        const __m256i hi = DP(DP(_mm256_setzero_si256(), u[2], w2_xq(XB, 2)), u[3], w2_xq(XB, 3));             \
        L = _mm256_hadd_epi32(lo, hi);                                                                         \
    }

/* NT (1-4, a constant in each expansion) tokens per pass: the codes of a block are unpacked once for
 * all of them, and the NT accumulator chains run side by side. */
#define W2_QUAD_X86_BODY(LSUM, NT)                                                                             \
    {                                                                                                          \
        const __m256i ones = _mm256_set1_epi16(1);                                                             \
        (void)ones;                                                                                            \
        /* the four rows' (d, m) words -> [d0 d1 d2 d3 m0 m1 m2 m3] as fp16 */                                 \
        const __m128i pick = _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);              \
        const __m256i dlanes = _mm256_setr_epi32(0, 1, 0, 1, 2, 3, 2, 3);                                      \
        __m256 acc[NT];                                                                                        \
        __m128 m[NT];                                                                                          \
        for (int t = 0; t < NT; ++t) { acc[t] = _mm256_setzero_ps(); m[t] = _mm_setzero_ps(); }                \
        const size_t gb = 4 + 8 * (size_t)cpg;                                                                 \
        for (int g = 0, b = 0; g < ng; ++g) {                                                                  \
            const size_t o = (size_t)g * gb;                                                                   \
            uint32_t h0, h1, h2, h3;                                                                           \
            memcpy(&h0, r[0] + o, 4); memcpy(&h1, r[1] + o, 4); memcpy(&h2, r[2] + o, 4); memcpy(&h3, r[3] + o, 4); \
            const __m256 dm = _mm256_cvtph_ps(_mm_shuffle_epi8(_mm_setr_epi32((int)h0, (int)h1, (int)h2, (int)h3), pick)); \
            const __m256 dv = _mm256_permutevar8x32_ps(dm, dlanes); /* [d0 d1 d0 d1 | d2 d3 d2 d3] */          \
            const __m128 mv = _mm256_extractf128_ps(dm, 1);                                                    \
            for (int c = 0; c < cpg; ++c, ++b) {                                                               \
                __m256i u[4];                                                                                  \
                w2_codes4_avx2(r, o + 4 + 8 * (size_t)c, u);                                                   \
                for (int t = 0; t < NT; ++t) {                                                                 \
                    const eak_act_block *xb = x + (size_t)t * xs + b;                                          \
                    LSUM(xb, l)                                                                                \
                    W2_QUAD_X86_FLOAT(acc[t], m[t], xb, l)                                                     \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        for (int t = 0; t < NT; ++t) {                                                                         \
            const __m128 a = _mm256_castps256_ps128(acc[t]), h = _mm256_extractf128_ps(acc[t], 1);             \
            const __m128 lo = _mm_shuffle_ps(a, h, _MM_SHUFFLE(1, 0, 1, 0)), hi = _mm_shuffle_ps(a, h, _MM_SHUFFLE(3, 2, 3, 2)); \
            _mm_storeu_ps(y + (size_t)t * ys, _mm_add_ps(_mm_add_ps(lo, hi), m[t]));                          \
        }                                                                                                      \
    }

#define W2_QUAD_X86_SWITCH(LSUM)                                                                               \
    (void)h2f; /* F16C converts the scales (exactly, as the table does) */                                     \
    switch (nt) {                                                                                              \
    case 1: w2_quad_avx2_hadd(r, x, xs, 1, ng, cpg, h2f, y, ys); break;                                        \
    case 2: W2_QUAD_X86_BODY(LSUM, 2) break;                                                                   \
    case 3: W2_QUAD_X86_BODY(LSUM, 3) break;                                                                   \
    default: W2_QUAD_X86_BODY(LSUM, 4) break;                                                                  \
    }

__attribute__((target("avx2,f16c"))) static void w2_quad_avx2(const uint8_t *const r[4], const eak_act_block *x,
                                                            size_t xs, int nt, int ng, int cpg, const float *h2f,
                                                            float *y, size_t ys) {
    W2_QUAD_X86_SWITCH(W2_L_AVX2)
}

/* AVX-VNNI (VEX: Alder Lake, Zen 5) and AVX512-VNNI on 256-bit vectors (Ice Lake, Zen 4): the same. */
#define W2_DP_AVXVNNI(A, B, C) _mm256_dpbusd_avx_epi32(A, B, C)
#define W2_L_AVXVNNI(XB, L) W2_L_VNNI(W2_DP_AVXVNNI, XB, L)
__attribute__((target("avx2,f16c,avxvnni"))) static void w2_quad_avxvnni(const uint8_t *const r[4],
                                                                       const eak_act_block *x, size_t xs, int nt,
                                                                       int ng, int cpg, const float *h2f, float *y,
                                                                       size_t ys) {
    W2_QUAD_X86_SWITCH(W2_L_AVXVNNI)
}

#define W2_DP_VNNI512(A, B, C) _mm256_dpbusd_epi32(A, B, C)
#define W2_L_VNNI512(XB, L) W2_L_VNNI(W2_DP_VNNI512, XB, L)
__attribute__((target("avx2,f16c,avx512f,avx512vl,avx512vnni"))) static void w2_quad_vnni512(
    const uint8_t *const r[4], const eak_act_block *x, size_t xs, int nt, int ng, int cpg, const float *h2f, float *y,
    size_t ys) {
    W2_QUAD_X86_SWITCH(W2_L_VNNI512)
}
#undef W2_QUAD_X86_BODY
#undef W2_QUAD_X86_SWITCH
#undef W2_QUAD_X86_FLOAT
#undef W2_L_AVX2
#undef W2_L_VNNI
#endif

#if defined(__aarch64__)
/* The layout of the x86 quad kernels (see there), one 128-bit half h at a time: lane k of V_{j,h}
 * holds row k's codes for elements 16h + 4j .. 16h + 4j + 3, bytes of dword j & 1 of the row's chunk
 * shifted by 4h + 2 (j >> 1). dotprod multiplies V_{j,h} by dword j of the token's half h straight
 * from the register (sdot by lane), so four rows' sums need no pairwise adds. */
static inline void w2_codes4_neon(const uint8_t *const r[4], size_t co, int8x16_t v[8]) {
    const uint32x4_t a = vreinterpretq_u32_u8(vcombine_u8(vld1_u8(r[0] + co), vld1_u8(r[1] + co)));
    const uint32x4_t b = vreinterpretq_u32_u8(vcombine_u8(vld1_u8(r[2] + co), vld1_u8(r[3] + co)));
    const uint8x16_t ev = vreinterpretq_u8_u32(vuzp1q_u32(a, b)), od = vreinterpretq_u8_u32(vuzp2q_u32(a, b));
    const uint8x16_t m3 = vdupq_n_u8(3);
    /* v[2j + h] = V_{j,h} */
    v[0] = vreinterpretq_s8_u8(vandq_u8(ev, m3));
    v[1] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(ev, 4), m3));
    v[2] = vreinterpretq_s8_u8(vandq_u8(od, m3));
    v[3] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(od, 4), m3));
    v[4] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(ev, 2), m3));
    v[5] = vreinterpretq_s8_u8(vshrq_n_u8(ev, 6));
    v[6] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(od, 2), m3));
    v[7] = vreinterpretq_s8_u8(vshrq_n_u8(od, 6));
}

/* ARMv8.0 (Cortex-A72): byte products of V_{j,h} with dword j repeated, summed over j in 16 bits
 * (|.| <= 4 * 384), then pairs and quads of bytes into the four rows' int32 sums. */
static inline int32x4_t w2_l_neon(const int8x16_t v[8], int h, int8x16_t xh) {
    const int32x4_t xw = vreinterpretq_s32_s8(xh);
    const int8x16_t x0 = vreinterpretq_s8_s32(vdupq_laneq_s32(xw, 0)), x1 = vreinterpretq_s8_s32(vdupq_laneq_s32(xw, 1));
    const int8x16_t x2 = vreinterpretq_s8_s32(vdupq_laneq_s32(xw, 2)), x3 = vreinterpretq_s8_s32(vdupq_laneq_s32(xw, 3));
    int16x8_t lo = vmull_s8(vget_low_s8(v[h]), vget_low_s8(x0));
    int16x8_t hi = vmull_high_s8(v[h], x0);
    lo = vmlal_s8(lo, vget_low_s8(v[2 + h]), vget_low_s8(x1));
    hi = vmlal_high_s8(hi, v[2 + h], x1);
    lo = vmlal_s8(lo, vget_low_s8(v[4 + h]), vget_low_s8(x2));
    hi = vmlal_high_s8(hi, v[4 + h], x2);
    lo = vmlal_s8(lo, vget_low_s8(v[6 + h]), vget_low_s8(x3));
    hi = vmlal_high_s8(hi, v[6 + h], x3);
    return vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi));
}

__attribute__((target("arch=armv8.2-a+dotprod"))) static inline int32x4_t w2_l_dotprod(const int8x16_t v[8], int h,
                                                                                     int8x16_t xh) {
    int32x4_t l = vdotq_laneq_s32(vdupq_n_s32(0), v[h], xh, 0);
    l = vdotq_laneq_s32(l, v[2 + h], xh, 1);
    l = vdotq_laneq_s32(l, v[4 + h], xh, 2);
    return vdotq_laneq_s32(l, v[6 + h], xh, 3);
}

/* The float work as w2_quad_avx2: exactly w2_row_generic's operations per row; NT tokens a pass. */
#define W2_QUAD_NEON_BODY(LSUM, NT)                                                                   \
    {                                                                                                 \
        float32x4_t lo[NT], hi[NT], mm[NT];                                                           \
        for (int t = 0; t < NT; ++t) lo[t] = hi[t] = mm[t] = vdupq_n_f32(0);                          \
        const size_t gb = 4 + 8 * (size_t)cpg;                                                        \
        for (int g = 0, b = 0; g < ng; ++g) {                                                         \
            const size_t o = (size_t)g * gb;                                                          \
            float da[4], ma[4];                                                                       \
            for (int k = 0; k < 4; ++k) {                                                             \
                da[k] = h2f[(uint16_t)(r[k][o] | (r[k][o + 1] << 8))];                                \
                ma[k] = h2f[(uint16_t)(r[k][o + 2] | (r[k][o + 3] << 8))];                            \
            }                                                                                         \
            const float32x4_t dv = vld1q_f32(da), mv = vld1q_f32(ma);                                 \
            for (int c = 0; c < cpg; ++c, ++b) {                                                      \
                int8x16_t v[8];                                                                       \
                w2_codes4_neon(r, o + 4 + 8 * (size_t)c, v);                                          \
                for (int t = 0; t < NT; ++t) {                                                        \
                    const eak_act_block *xb = x + (size_t)t * xs + b;                                 \
                    const int32x4_t l0 = LSUM(v, 0, vld1q_s8(xb->qs));                                \
                    const int32x4_t l1 = LSUM(v, 1, vld1q_s8(xb->qs + 16));                           \
                    const float32x4_t sc = vmulq_f32(dv, vdupq_n_f32(xb->d));                         \
                    lo[t] = vaddq_f32(lo[t], vmulq_f32(sc, vcvtq_f32_s32(l0)));                       \
                    hi[t] = vaddq_f32(hi[t], vmulq_f32(sc, vcvtq_f32_s32(l1)));                       \
                    mm[t] = vaddq_f32(mm[t], vmulq_f32(mv, vdupq_n_f32(xb->s)));                      \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
        for (int t = 0; t < NT; ++t) vst1q_f32(y + (size_t)t * ys, vaddq_f32(vaddq_f32(lo[t], hi[t]), mm[t])); \
    }

#define W2_QUAD_NEON_SWITCH(LSUM)                                                                     \
    switch (nt) {                                                                                     \
    case 1: W2_QUAD_NEON_BODY(LSUM, 1) break;                                                         \
    case 2: W2_QUAD_NEON_BODY(LSUM, 2) break;                                                         \
    case 3: W2_QUAD_NEON_BODY(LSUM, 3) break;                                                         \
    default: W2_QUAD_NEON_BODY(LSUM, 4) break;                                                        \
    }

static void w2_quad_neon(const uint8_t *const r[4], const eak_act_block *x, size_t xs, int nt, int ng, int cpg,
                         const float *h2f, float *y, size_t ys) {
    W2_QUAD_NEON_SWITCH(w2_l_neon)
}

__attribute__((target("arch=armv8.2-a+dotprod"))) static void w2_quad_dotprod(const uint8_t *const r[4],
                                                                            const eak_act_block *x, size_t xs,
                                                                            int nt, int ng, int cpg,
                                                                            const float *h2f, float *y, size_t ys) {
    W2_QUAD_NEON_SWITCH(w2_l_dotprod)
}
#undef W2_QUAD_NEON_BODY
#undef W2_QUAD_NEON_SWITCH
#endif

/* The W2 quad kernels this CPU can run, slowest first (the last is dispatched); the self test checks
 * each against the generic one. */
static int w2_quad_variants(w2_quad_fn f[4], const char *name[4]) {
    int n = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) {
        f[n] = w2_quad_avx2; name[n++] = "avx2";
        /* both where both exist (Zen 5): the EVEX form is dispatched, it measured faster in prefill here (1.19x vs 1.11x the old kernel) */
        if (__builtin_cpu_supports("avxvnni")) { f[n] = w2_quad_avxvnni; name[n++] = "avx-vnni"; }
        if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl")) {
            f[n] = w2_quad_vnni512; name[n++] = "avx512-vnni";
        }
    }
#elif defined(__aarch64__)
    f[n] = w2_quad_neon; name[n++] = "neon";
#if defined(__linux__)
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) { f[n] = w2_quad_dotprod; name[n++] = "neon-dotprod"; }
#endif
#endif
    (void)f; (void)name;
    return n;
}

static w2_quad_fn g_w2_quad;
static const char *g_w2_quad_name;

static w2_quad_fn pick_w2_quad(void) {
    const lanes_fn lanes = pick_lanes(); /* also honours eak_force_generic */
    if (lanes == lanes_generic) return w2_quad_generic;
    if (!g_w2_quad) {
        w2_quad_fn f[4];
        const char *name[4];
        const int n = w2_quad_variants(f, name);
        g_w2_quad_name = n ? name[n - 1] : "generic";
        g_w2_quad = n ? f[n - 1] : w2_quad_generic; /* racing first calls store the same values */
    }
    return g_w2_quad;
}

const char *eak_w2_kernel_name(void) {
    return pick_w2_quad() == w2_quad_generic ? "generic" : g_w2_quad_name;
}

#define W2_PASS_TOKENS 4 /* tokens per kernel call (the codes of a block unpacked once for them) */
#define W2_TOKEN_TILE 32 /* prefill: tokens per pass over a thread's rows (their activations stay in cache) */

void eak_matmul_w2(const void *w, size_t row_bytes, int rows, int cols, int group,
                   const eak_act_block *xq, int n_tok, float *y, int n_threads) {
    const w2_quad_fn quad = pick_w2_quad();
    const float *h2f = eak_f16_table();
    if (eak_w2_row_bytes(cols, group) == 0) return; /* callers validate; never read out of bounds */
    const int cpg = group / 32, ng = cols / group, nb_all = cols / 32;
    if (n_threads < 1) n_threads = 1;
    const int eak_nt = n_threads;
    EAK_PARALLEL(n_threads > 1,
    const int r_lo = eak_team_lo(rows), r_hi = eak_team_hi(rows);
    for (int t0 = 0; t0 < n_tok; t0 += W2_TOKEN_TILE) {
        const int t_end = n_tok - t0 < W2_TOKEN_TILE ? n_tok : t0 + W2_TOKEN_TILE;
        for (int r = r_lo; r < r_hi; r += 4) {
            const int nr = r_hi - r < 4 ? r_hi - r : 4;
            const uint8_t *rp[4];
            for (int k = 0; k < 4; ++k) rp[k] = (const uint8_t *)w + (size_t)(r + (k < nr ? k : nr - 1)) * row_bytes;
            for (int t = t0; t < t_end; t += W2_PASS_TOKENS) {
                const int nt = t_end - t >= W2_PASS_TOKENS ? W2_PASS_TOKENS : t_end - t;
                const eak_act_block *x = xq + (size_t)t * nb_all;
                if (nr == 4) {
                    quad(rp, x, (size_t)nb_all, nt, ng, cpg, h2f, y + (size_t)t * rows + r, (size_t)rows);
                } else {
                    float tmp[4 * W2_PASS_TOKENS];
                    quad(rp, x, (size_t)nb_all, nt, ng, cpg, h2f, tmp, 4);
                    for (int u = 0; u < nt; ++u)
                        for (int k = 0; k < nr; ++k) y[(size_t)(t + u) * rows + r + k] = tmp[u * 4 + k];
                }
            }
        }
    });
}

/* ---- self test: the dispatched SIMD kernels against the generic ones, on this CPU --------------- */

int eak_self_test(uint32_t seed, char *msg, size_t msg_len) {
    enum { NB = 48 }; /* up to 1536 columns */
    const lanes_fn picked = pick_lanes();
    const float *h2f = eak_f16_table();
    static _Thread_local int8_t wq[NB * 32];
    static _Thread_local eak_act_block xa[NB];
    static _Thread_local uint8_t row[NB * 40];
    static _Thread_local float dw[NB];
    uint32_t s = seed ? seed : 1;
    int checks = 0;
    for (int iter = 0; iter < 200; ++iter) {
        /* the converter's group sizes: 32-128, and whole or third rows of 576 and 1536 columns */
        static const int groups[] = { 32, 64, 96, 128, 192, 256, 512, 576, 1536 };
        const int group = groups[st_rand(&s) % (sizeof groups / sizeof groups[0])];
        const int ng = 1 + (int)(st_rand(&s) % (NB * 32 / group)), nb = ng * group / 32;
        for (int b = 0; b < nb; ++b) {
            xa[b].d = h2f[eak_f32_to_f16((float)(st_rand(&s) % 1000 + 1) * 1e-4f)];
            int sum = 0;
            for (int j = 0; j < 32; ++j) { xa[b].qs[j] = (int8_t)((int)(st_rand(&s) % 255) - 127); sum += xa[b].qs[j]; }
            xa[b].s = h2f[eak_f32_to_f16(xa[b].d * (float)sum)];
        }
        /* activation quantization: random blocks, ties (v * 127 / max|v| exactly k + 1/2), a zero block */
        {
            float v[32];
            const quantize_block_fn f = pick_quantize_block();
            for (int kind = 0; kind < 3; ++kind) {
                const float scale = (float)(1 + st_rand(&s) % 1000) * 1e-3f;
                for (int j = 0; j < 32; ++j)
                    v[j] = kind == 0 ? ((float)(st_rand(&s) % 20001) - 10000.0f) * scale
                         : kind == 1 ? (float)((int)(st_rand(&s) % 255) - 127) * 0.5f : 0.0f;
                if (kind == 1) v[st_rand(&s) % 32] = 63.5f; /* max|v| = 63.5: v * id = 2v */
                eak_act_block want, got;
                quantize_block_generic(v, &want);
                f(v, &got);
                if (memcmp(want.qs, got.qs, 32) != 0 || memcmp(&want.d, &got.d, sizeof want.d) != 0 ||
                    memcmp(&want.s, &got.s, sizeof want.s) != 0) {
                    if (msg) snprintf(msg, msg_len, "activation quantization (block kind %d) differs from the generic one", kind);
                    return -1;
                }
                ++checks;
            }
        }
        /* int8 lanes: any weights in [-128, 127] (Q8_0's range) */
        for (int b = 0; b < nb; ++b) {
            dw[b] = h2f[eak_f32_to_f16((float)(st_rand(&s) % 1000 + 1) * 1e-3f)];
            for (int j = 0; j < 32; ++j) wq[b * 32 + j] = (int8_t)((int)(st_rand(&s) % 256) - 128);
        }
        float a = lanes_generic(wq, xa, dw, nb), b2 = picked(wq, xa, dw, nb);
        if (memcmp(&a, &b2, sizeof a) != 0) {
            if (msg) snprintf(msg, msg_len, "int8 lanes (%s) %.9g != generic %.9g (%d blocks)", eak_idot_name(), b2, a, nb);
            return -1;
        }
        /* W2: a random packed row, one and three tokens, against the generic row */
        const int gb = 4 + group / 4;
        for (int i = 0; i < ng * gb; ++i) row[i] = (uint8_t)st_rand(&s);
        for (int g = 0; g < ng; ++g) { /* finite scales */
            uint16_t d = eak_f32_to_f16((float)(st_rand(&s) % 1000 + 1) * 1e-3f), m = eak_f32_to_f16(-(float)(st_rand(&s) % 1000) * 1e-3f);
            row[g * gb] = (uint8_t)d; row[g * gb + 1] = (uint8_t)(d >> 8);
            row[g * gb + 2] = (uint8_t)m; row[g * gb + 3] = (uint8_t)(m >> 8);
        }
        const int cpg = group / 32;
        const float ref = w2_row_generic(row, xa, ng, cpg, h2f);
        float yv = 0.0f;
        eak_matmul_w2(row, (size_t)ng * gb, 1, nb * 32, group, xa, 1, &yv, 1); /* one token, a one-row tail */
        /* three tokens: the two-token pass, then one (same activations each time) */
        static _Thread_local eak_act_block xa3[3 * NB];
        for (int k = 0; k < 3; ++k) memcpy(xa3 + k * nb, xa, sizeof(eak_act_block) * nb);
        float y3[3];
        eak_matmul_w2(row, (size_t)ng * gb, 1, nb * 32, group, xa3, 3, y3, 1);
        if (memcmp(&ref, &yv, sizeof ref) != 0 || memcmp(&ref, &y3[0], sizeof ref) != 0 ||
            memcmp(&ref, &y3[1], sizeof ref) != 0 || memcmp(&ref, &y3[2], sizeof ref) != 0) {
            if (msg) snprintf(msg, msg_len, "W2 kernel (%s, group %d, %d blocks): one token %.9g, three %.9g %.9g %.9g, generic %.9g",
                              eak_w2_kernel_name(), group, nb, yv, y3[0], y3[1], y3[2], ref);
            return -1;
        }
        checks += 3;
        /* six rows in one call, each against the generic row: W2 (four rows through the four-row
         * kernel, two as a tail), then Q8_0 (one-row kernel) against generic unpack + generic lanes */
        {
            enum { R = 6 };
            static _Thread_local uint8_t many[R * NB * 40];
            float yr[R];
            for (int i = 0; i < R * ng * gb; ++i) many[i] = (uint8_t)st_rand(&s);
            for (int r = 0; r < R; ++r)
                for (int g = 0; g < ng; ++g) {
                    uint8_t *gp = many + (size_t)r * ng * gb + (size_t)g * gb;
                    uint16_t d = eak_f32_to_f16((float)(st_rand(&s) % 1000 + 1) * 1e-3f), mm = eak_f32_to_f16(-(float)(st_rand(&s) % 1000) * 1e-3f);
                    gp[0] = (uint8_t)d; gp[1] = (uint8_t)(d >> 8); gp[2] = (uint8_t)mm; gp[3] = (uint8_t)(mm >> 8);
                }
            eak_matmul_w2(many, (size_t)ng * gb, R, nb * 32, group, xa, 1, yr, 1);
            for (int r = 0; r < R; ++r) {
                const float want = w2_row_generic(many + (size_t)r * ng * gb, xa, ng, cpg, h2f);
                if (memcmp(&want, &yr[r], sizeof want) != 0) {
                    if (msg) snprintf(msg, msg_len, "W2 multi-row kernel (%s, group %d, %d blocks, row %d): %.9g != generic %.9g",
                                      eak_w2_kernel_name(), group, nb, r, yr[r], want);
                    return -1;
                }
            }
            /* every W2 quad variant this CPU has (not only the dispatched one), two distinct tokens */
            for (int i = 0; i < nb; ++i) {
                eak_act_block *o = &xa3[nb + i];
                o->d = h2f[eak_f32_to_f16((float)(st_rand(&s) % 1000 + 1) * 1e-4f)];
                int sum = 0;
                for (int j = 0; j < 32; ++j) { o->qs[j] = (int8_t)((int)(st_rand(&s) % 256) - 128); sum += o->qs[j]; }
                o->s = h2f[eak_f32_to_f16(o->d * (float)sum)];
            }
            w2_quad_fn vf[4];
            const char *vn[4];
            const int nv = w2_quad_variants(vf, vn);
            const uint8_t *rp[4];
            for (int k = 0; k < 4; ++k) rp[k] = many + (size_t)(k + 1) * ng * gb; /* W2 rows 1-4 above */
            for (int v = 0; v < nv; ++v) {
                float q[8];
                vf[v](rp, xa3 + nb, (size_t)nb, 2, ng, cpg, h2f, q, 4);
                for (int t = 0; t < 2; ++t)
                    for (int k = 0; k < 4; ++k) {
                        const float want = w2_row_generic(rp[k], xa3 + (size_t)(1 + t) * nb, ng, cpg, h2f);
                        if (memcmp(&want, &q[t * 4 + k], sizeof want) != 0) {
                            if (msg) snprintf(msg, msg_len, "W2 quad kernel %s (group %d, %d blocks, token %d, row %d): %.9g != generic %.9g",
                                              vn[v], group, nb, t, k, q[t * 4 + k], want);
                            return -1;
                        }
                    }
                checks += 8;
            }
            for (int i = 0; i < R * nb * 34; ++i) many[i] = (uint8_t)st_rand(&s);
            for (int i = 0; i < R * nb; ++i) { /* finite scales */
                uint16_t d = eak_f32_to_f16((float)(st_rand(&s) % 1000 + 1) * 1e-3f);
                many[i * 34] = (uint8_t)d; many[i * 34 + 1] = (uint8_t)(d >> 8);
            }
            eak_matmul_q8(EAK_Q8_0, many, (size_t)nb * 34, R, nb * 32, xa, 1, yr, 1);
            for (int r = 0; r < R; ++r) {
                for (int b = 0; b < nb; ++b) {
                    const uint8_t *blk = many + ((size_t)r * nb + b) * 34;
                    unpack_block(EAK_Q8_0, blk, wq + b * 32);
                    dw[b] = h2f[(uint16_t)(blk[0] | (blk[1] << 8))];
                }
                const float want = lanes_generic(wq, xa, dw, nb);
                if (memcmp(&want, &yr[r], sizeof want) != 0) {
                    if (msg) snprintf(msg, msg_len, "Q8_0 multi-row kernel (%s, %d blocks, row %d): %.9g != generic %.9g",
                                      eak_idot_name(), nb, r, yr[r], want);
                    return -1;
                }
            }
            checks += 2 * R;
        }
    }
    char pmsg[200];
    if (eak_w2p_self_test(seed, pmsg, sizeof pmsg) != 0) {
        if (msg) snprintf(msg, msg_len, "%s", pmsg);
        return -1;
    }
    uint32_t qs = seed ? seed : 1;
    if (q4p_self_test(&qs, msg, msg_len) != 0) return -1;
    if (eak_ops_self_test(seed, msg, msg_len) != 0) return -1; /* the SIMD SiLU gate */
    if (msg) snprintf(msg, msg_len, "%d comparisons of the %s integer kernels (W2: %s, panels: %s; Q4_1 panels: %s) against the generic ones: all bit-identical (SiLU gate too); %s",
                      checks, eak_idot_name(), eak_w2_kernel_name(), eak_w2p_kernel_name(), eak_q4p_kernel_name(), pmsg);
    return 0;
}
