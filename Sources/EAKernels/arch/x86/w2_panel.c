/* x86 forms of the W2 panel kernel (w2_panel.c): AVX512-VNNI (all 16 rows in one register), AVX2
 * and AVX-VNNI (two halves of 8 rows). Every one gives the row kernels' results bit for bit. */
#if defined(__x86_64__)
#include "../../w2.h"
#include <immintrin.h>
#include <string.h>

/* AVX-512 (VNNI, BW for the byte shifts): all 16 rows in one register. Per chunk the eight code
 * vectors are unpacked once for the pass's tokens; per token eight dpbusd with a broadcast
 * activation dword give the two int32 sums of every row, then the rows' float work in 16 lanes. */
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline)) static inline void
w2p_body512(const uint8_t *p, const eak_act_block *x, size_t xs, const int NT, int ng, int cpg, float *y, size_t ys) {
    const __m512i m3 = _mm512_set1_epi8(3);
    const size_t gb = EAK_W2_PANEL * (4 + 8 * (size_t)cpg);
    __m512 lo[4], hi[4], mm[4];
    for (int t = 0; t < NT; ++t) lo[t] = hi[t] = mm[t] = _mm512_setzero_ps();
    for (int g = 0, b = 0; g < ng; ++g) {
        const uint8_t *q = p + (size_t)g * gb;
        const __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)q));
        const __m512 mv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(q + 32)));
        for (int c = 0; c < cpg; ++c, ++b) {
            const __m512i v0 = _mm512_loadu_si512((const void *)(q + 64 + 128 * (size_t)c));
            const __m512i v1 = _mm512_loadu_si512((const void *)(q + 128 + 128 * (size_t)c));
            const __m512i u00 = _mm512_and_si512(v0, m3), u01 = _mm512_and_si512(_mm512_srli_epi16(v0, 2), m3);
            const __m512i u02 = _mm512_and_si512(_mm512_srli_epi16(v0, 4), m3), u03 = _mm512_and_si512(_mm512_srli_epi16(v0, 6), m3);
            const __m512i u10 = _mm512_and_si512(v1, m3), u11 = _mm512_and_si512(_mm512_srli_epi16(v1, 2), m3);
            const __m512i u12 = _mm512_and_si512(_mm512_srli_epi16(v1, 4), m3), u13 = _mm512_and_si512(_mm512_srli_epi16(v1, 6), m3);
            for (int t = 0; t < NT; ++t) {
                const eak_act_block *xb = x + (size_t)t * xs + b;
                int32_t xd[8];
                memcpy(xd, xb->qs, 32);
                __m512i l0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u00, _mm512_set1_epi32(xd[0]));
                __m512i l1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u10, _mm512_set1_epi32(xd[4]));
                l0 = _mm512_dpbusd_epi32(l0, u01, _mm512_set1_epi32(xd[1]));
                l1 = _mm512_dpbusd_epi32(l1, u11, _mm512_set1_epi32(xd[5]));
                l0 = _mm512_dpbusd_epi32(l0, u02, _mm512_set1_epi32(xd[2]));
                l1 = _mm512_dpbusd_epi32(l1, u12, _mm512_set1_epi32(xd[6]));
                l0 = _mm512_dpbusd_epi32(l0, u03, _mm512_set1_epi32(xd[3]));
                l1 = _mm512_dpbusd_epi32(l1, u13, _mm512_set1_epi32(xd[7]));
                const __m512 sc = _mm512_mul_ps(dv, _mm512_set1_ps(xb->d));
                lo[t] = _mm512_add_ps(lo[t], _mm512_mul_ps(sc, _mm512_cvtepi32_ps(l0)));
                hi[t] = _mm512_add_ps(hi[t], _mm512_mul_ps(sc, _mm512_cvtepi32_ps(l1)));
                mm[t] = _mm512_add_ps(mm[t], _mm512_mul_ps(mv, _mm512_set1_ps(xb->s)));
            }
        }
    }
    for (int t = 0; t < NT; ++t) _mm512_storeu_ps(y + (size_t)t * ys, _mm512_add_ps(_mm512_add_ps(lo[t], hi[t]), mm[t]));
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) void eak_w2p_vnni512(const uint8_t *p, const eak_act_block *x,
                                                                      size_t xs, int nt, int ng, int cpg,
                                                                      float *y, size_t ys) {
    switch (nt) { /* constant token counts: the accumulators become registers */
    case 1: w2p_body512(p, x, xs, 1, ng, cpg, y, ys); break;
    case 2: w2p_body512(p, x, xs, 2, ng, cpg, y, ys); break;
    case 3: w2p_body512(p, x, xs, 3, ng, cpg, y, ys); break;
    default: w2p_body512(p, x, xs, 4, ng, cpg, y, ys); break;
    }
}

/* 256-bit forms: the panel as two halves of 8 rows (bytes 32h .. 32h + 31 of each code vector).
 * AVX2 sums code x activation pairs with maddubs (|.| <= 768), adds the four in 16 bits (<= 3072)
 * and widens once with madd; AVX-VNNI does four dpbusd. */
#define W2P_L_AVX2(U, X0, X1, X2, X3)                                                                      \
    _mm256_madd_epi16(_mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(U[0], X0), _mm256_maddubs_epi16(U[1], X1)), \
                                       _mm256_add_epi16(_mm256_maddubs_epi16(U[2], X2), _mm256_maddubs_epi16(U[3], X3))), \
                      _mm256_set1_epi16(1))
#define W2P_L_AVXVNNI(U, X0, X1, X2, X3)                                                                   \
    _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(         \
        _mm256_setzero_si256(), U[0], X0), U[1], X1), U[2], X2), U[3], X3)

#define W2P_BODY256(LSUM, NT)                                                                              \
    {                                                                                                      \
        const __m256i m3 = _mm256_set1_epi8(3);                                                            \
        const size_t gb = EAK_W2_PANEL * (4 + 8 * (size_t)cpg);                                            \
        for (int hh = 0; hh < 2; ++hh) {                                                                   \
            __m256 lo[NT], hi[NT], mm[NT];                                                                 \
            for (int t = 0; t < NT; ++t) lo[t] = hi[t] = mm[t] = _mm256_setzero_ps();                      \
            for (int g = 0, b = 0; g < ng; ++g) {                                                          \
                const uint8_t *q = p + (size_t)g * gb;                                                     \
                const __m256 dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(q + 16 * hh)));        \
                const __m256 mv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(q + 32 + 16 * hh)));   \
                for (int c = 0; c < cpg; ++c, ++b) {                                                       \
                    const __m256i v0 = _mm256_loadu_si256((const __m256i *)(q + 64 + 128 * (size_t)c + 32 * hh)); \
                    const __m256i v1 = _mm256_loadu_si256((const __m256i *)(q + 128 + 128 * (size_t)c + 32 * hh)); \
                    __m256i u0[4], u1[4];                                                                  \
                    for (int j = 0; j < 4; ++j) {                                                          \
                        u0[j] = _mm256_and_si256(_mm256_srli_epi16(v0, 2 * j), m3);                        \
                        u1[j] = _mm256_and_si256(_mm256_srli_epi16(v1, 2 * j), m3);                        \
                    }                                                                                      \
                    for (int t = 0; t < NT; ++t) {                                                         \
                        const eak_act_block *xb = x + (size_t)t * xs + b;                                  \
                        int32_t xd[8];                                                                     \
                        memcpy(xd, xb->qs, 32);                                                            \
                        const __m256i l0 = LSUM(u0, _mm256_set1_epi32(xd[0]), _mm256_set1_epi32(xd[1]),     \
                                                _mm256_set1_epi32(xd[2]), _mm256_set1_epi32(xd[3]));        \
                        const __m256i l1 = LSUM(u1, _mm256_set1_epi32(xd[4]), _mm256_set1_epi32(xd[5]),     \
                                                _mm256_set1_epi32(xd[6]), _mm256_set1_epi32(xd[7]));        \
                        const __m256 sc = _mm256_mul_ps(dv, _mm256_set1_ps(xb->d));                        \
                        lo[t] = _mm256_add_ps(lo[t], _mm256_mul_ps(sc, _mm256_cvtepi32_ps(l0)));           \
                        hi[t] = _mm256_add_ps(hi[t], _mm256_mul_ps(sc, _mm256_cvtepi32_ps(l1)));           \
                        mm[t] = _mm256_add_ps(mm[t], _mm256_mul_ps(mv, _mm256_set1_ps(xb->s)));            \
                    }                                                                                      \
                }                                                                                          \
            }                                                                                              \
            for (int t = 0; t < NT; ++t)                                                                   \
                _mm256_storeu_ps(y + (size_t)t * ys + 8 * hh, _mm256_add_ps(_mm256_add_ps(lo[t], hi[t]), mm[t])); \
        }                                                                                                  \
    }

__attribute__((target("avx2,f16c"))) void eak_w2p_avx2(const uint8_t *p, const eak_act_block *x, size_t xs, int nt,
                                                 int ng, int cpg, float *y, size_t ys) {
    EAK_W2_NT_SWITCH(W2P_BODY256, W2P_L_AVX2)
}

__attribute__((target("avx2,f16c,avxvnni"))) void eak_w2p_avxvnni(const uint8_t *p, const eak_act_block *x, size_t xs,
                                                            int nt, int ng, int cpg, float *y, size_t ys) {
    EAK_W2_NT_SWITCH(W2P_BODY256, W2P_L_AVXVNNI)
}
#undef W2P_BODY256
#undef W2P_L_AVX2
#undef W2P_L_AVXVNNI
#endif
