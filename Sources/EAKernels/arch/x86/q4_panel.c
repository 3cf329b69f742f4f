/* x86 forms of the Q4_1 panel product (q4_panel.c): AVX512-VNNI (16 rows at once) and AVX2 (eight
 * rows at a time). Both give the row kernels' results bit for bit. */
#if defined(__x86_64__)
#include "../../q4_panel.h"
#include "simd_x86.h"
#include <immintrin.h>

/* 16 rows in 8 accumulators of two rows each: the broadcast 32 code bytes of rows (2p, 2p+1) give,
 * low nibbles in the low half and high nibbles in the high half, [2p: 0-15 | 2p+1: 0-15 | 2p: 16-31
 * | 2p+1: 16-31], against activations laid out [0-15 | 0-15 | 16-31 | 16-31]. */
__attribute__((target("avx2,f16c,avx512f,avx512vl,avx512bw,avx512vnni"))) void
eak_q4p_vnni512(const uint8_t *pan, const eak_act_block *xa, int nb, float *y) {
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
 * [0-15 | 16-31] nibbles, maddubs/madd lanes as eak_lanes_avx2. */
__attribute__((target("avx2,f16c"))) void eak_q4p_avx2(const uint8_t *pan0, const eak_act_block *xa, int nb, float *y) {
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
