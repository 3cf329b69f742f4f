/* x86 forms of the W2 four-row kernel (w2_rows.c): AVX2, AVX-VNNI and AVX512-VNNI on 256-bit
 * vectors. Every one gives eak_w2_row_generic's results bit for bit. */
#if defined(__x86_64__)
#include "../../w2.h"
#include <immintrin.h>
#include <string.h>

/* 8 bytes -> 32 codes: replicate to four 64-bit lanes, shift lane k by 2k, keep 2 bits per byte. */
__attribute__((target("avx2"))) static inline __m256i w2_codes_avx2(const uint8_t *chunk) {
    uint64_t v;
    memcpy(&v, chunk, 8);
    const __m256i sh = _mm256_set_epi64x(6, 4, 2, 0);
    return _mm256_and_si256(_mm256_srlv_epi64(_mm256_set1_epi64x((long long)v), sh), _mm256_set1_epi8(3));
}

/* One token (decode) keeps the per-row layout: each row's codes by one broadcast load, a shift and a
 * mask, the four rows' sums by horizontal adds. It runs fewer instructions than the U_s layout
 * below when the unpacking serves a single token; from two tokens on, the U_s layout's cheaper per-token sums win. */
/* One token's update of the four rows: maddubs gives pair sums (<= 762 in magnitude), two rounds of
 * hadd_epi16 quads and octets (<= 3048: no wrap), madd the 16-element sums, laid out as
 * [L_lo rows 0-3 | L_hi rows 0-3]; the float lanes then do exactly eak_w2_row_generic's operations. */
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
 * per lane, the same y as eak_w2_row_generic. */
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

/* The float work of one token (exactly eak_w2_row_generic's operations per lane). */
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

__attribute__((target("avx2,f16c"))) void eak_w2_quad_avx2(const uint8_t *const r[4], const eak_act_block *x,
                                                     size_t xs, int nt, int ng, int cpg, const float *h2f,
                                                            float *y, size_t ys) {
    W2_QUAD_X86_SWITCH(W2_L_AVX2)
}

/* AVX-VNNI (VEX: Alder Lake, Zen 5) and AVX512-VNNI on 256-bit vectors (Ice Lake, Zen 4): the same. */
#define W2_DP_AVXVNNI(A, B, C) _mm256_dpbusd_avx_epi32(A, B, C)
#define W2_L_AVXVNNI(XB, L) W2_L_VNNI(W2_DP_AVXVNNI, XB, L)
__attribute__((target("avx2,f16c,avxvnni"))) void eak_w2_quad_avxvnni(const uint8_t *const r[4],
                                                                       const eak_act_block *x, size_t xs, int nt,
                                                                       int ng, int cpg, const float *h2f, float *y,
                                                                       size_t ys) {
    W2_QUAD_X86_SWITCH(W2_L_AVXVNNI)
}

#define W2_DP_VNNI512(A, B, C) _mm256_dpbusd_epi32(A, B, C)
#define W2_L_VNNI512(XB, L) W2_L_VNNI(W2_DP_VNNI512, XB, L)
__attribute__((target("avx2,f16c,avx512f,avx512vl,avx512vnni"))) void eak_w2_quad_vnni512(
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
