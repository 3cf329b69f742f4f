/* x86 forms of the quantized KV cache's inner loops (kv_quant.c): KV4 with groups of 32 in AVX2+FMA
 * and AVX-512F. */
#if defined(__x86_64__)
#include "../../kv_quant.h"
#include <immintrin.h>

/* ---- KV4 with groups of 32 (the default) on AVX2 ----------------------------------------------
 * The same operations per element as codes_axpy, in the same order (fused multiply-add, as its
 * fmaf), so results are bit-identical to the generic loops; what changes is that the codes of a record
 * are unpacked with byte shuffles, once for all the query heads that share the record's kv head,
 * and a block's key scores stay in registers over all channels.
 * Codes are widened byte by byte (one zero-extension, then mask and shift per dword) rather than
 * nibble-interleaved first: the lanes then hold the even elements (low nibbles) and the odd ones
 * (high nibbles) apart, and are interleaved once per block or group when stored. Half the unpack
 * instructions of the interleave-first form, and each lane's arithmetic is unchanged. */
/* Elements 0,2,..,14 and 1,3,..,15 of the 16 codes in the 8 bytes at p, as floats. */
__attribute__((target("avx2"), always_inline)) static inline void codes16_split_avx2(const uint8_t *p, __m256 *even,
                                                                                 __m256 *odd) {
    const __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    *even = _mm256_cvtepi32_ps(_mm256_and_si256(w, _mm256_set1_epi32(15)));
    *odd = _mm256_cvtepi32_ps(_mm256_srli_epi32(w, 4));
}

/* dst[0..15] = even[0], odd[0], even[1], odd[1], .. */
__attribute__((target("avx2"), always_inline)) static inline void store16_interleaved_avx2(float *dst, __m256 even,
                                                                                       __m256 odd) {
    const __m256 lo = _mm256_unpacklo_ps(even, odd), hi = _mm256_unpackhi_ps(even, odd); /* 0 1 2 3 | 8 9 10 11 ; 4..7 | 12..15 */
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(dst + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}

/* The same for 32 codes in the 16 bytes at p (sixteen lanes). */
__attribute__((target("avx512f"), always_inline)) static inline void codes32_split_avx512(const uint8_t *p, __m512 *even,
                                                                                      __m512 *odd) {
    const __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
    *even = _mm512_cvtepi32_ps(_mm512_and_si512(w, _mm512_set1_epi32(15)));
    *odd = _mm512_cvtepi32_ps(_mm512_srli_epi32(w, 4));
}

/* Elements 0..15 (first) and 16..31 (second) of the sequence even[0], odd[0], even[1], odd[1], .. */
__attribute__((target("avx512f"), always_inline)) static inline void interleave32_avx512(__m512 even, __m512 odd,
                                                                                     __m512 *first, __m512 *second) {
    const __m512i i0 = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i i1 = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    *first = _mm512_permutex2var_ps(even, i0, odd);
    *second = _mm512_permutex2var_ps(even, i1, odd);
}

/* Scores of one key block for nh (1..KVQ_HEADS) query heads: acc[i][0..31] without the offset
 * term, base[i] = the offset term. Each channel's record is unpacked once for all heads, sixteen keys
 * at a time (the accumulators of four heads stay in registers); per head and key the operations and
 * their order are those of the generic loop. */
__attribute__((target("avx2,fma"), always_inline)) static inline void kblock_heads_nh(const float *const *qh, const int nh,
                                                                              const uint8_t *kr, size_t rb, int d,
                                                                              const float *h2f, float (*acc)[256],
                                                                              float *base) {
    for (int i = 0; i < nh; ++i) base[i] = 0.0f;
    for (int half = 0; half < 2; ++half) {
        __m256 a[KVQ_HEADS][2];
        for (int i = 0; i < nh; ++i) a[i][0] = a[i][1] = _mm256_setzero_ps();
        for (int ch = 0; ch < d; ++ch) {
            const uint8_t *r = kr + (size_t)ch * rb;
            const float dk = h2f[(uint16_t)(r[0] | (r[1] << 8))];
            if (half == 0) {
                const float mk = h2f[(uint16_t)(r[2] | (r[3] << 8))];
                for (int i = 0; i < nh; ++i) base[i] = base[i] + qh[i][ch] * mk;
            }
            __m256 c0, c1; /* keys 16*half + 0, 2, .., 14 and 16*half + 1, 3, .., 15 */
            codes16_split_avx2(r + 4 + 8 * half, &c0, &c1);
            for (int i = 0; i < nh; ++i) {
                const __m256 va = _mm256_set1_ps(qh[i][ch] * dk);
                a[i][0] = _mm256_fmadd_ps(va, c0, a[i][0]);
                a[i][1] = _mm256_fmadd_ps(va, c1, a[i][1]);
            }
        }
        for (int i = 0; i < nh; ++i) store16_interleaved_avx2(acc[i] + 16 * half, a[i][0], a[i][1]);
    }
}

__attribute__((target("avx2,fma"))) static void kblock_heads_avx2(const float *const *qh, int nh, const uint8_t *kr,
                                                            size_t rb, int d, const float *h2f, float (*acc)[256],
                                                            float *base) {
    switch (nh) { /* constant head counts: the accumulators become registers */
    case 1: kblock_heads_nh(qh, 1, kr, rb, d, h2f, acc, base); break;
    case 2: kblock_heads_nh(qh, 2, kr, rb, d, h2f, acc, base); break;
    case 3: kblock_heads_nh(qh, 3, kr, rb, d, h2f, acc, base); break;
    default: kblock_heads_nh(qh, 4, kr, rb, d, h2f, acc, base); break;
    }
}

/* AVX-512: the same per-key operations on sixteen lanes, so the block's 32 keys take one pass over
 * the channel records instead of two (a record is loaded, unpacked and its scale multiplied into
 * each head's query once, not once per half). Lanes do what the generic loop does: bit-identical. */
__attribute__((target("avx512f"), always_inline)) static inline void kblock_heads512_nh(const float *const *qh, const int nh,
                                                                                    const uint8_t *kr, size_t rb, int d,
                                                                                    const float *h2f, float (*acc)[256],
                                                                                    float *base) {
    __m512 a[KVQ_HEADS][2];
    for (int i = 0; i < nh; ++i) { a[i][0] = a[i][1] = _mm512_setzero_ps(); base[i] = 0.0f; }
    for (int ch = 0; ch < d; ++ch) {
        const uint8_t *r = kr + (size_t)ch * rb;
        const float dk = h2f[(uint16_t)(r[0] | (r[1] << 8))], mk = h2f[(uint16_t)(r[2] | (r[3] << 8))];
        for (int i = 0; i < nh; ++i) base[i] = base[i] + qh[i][ch] * mk;
        __m512 c0, c1; /* keys 0, 2, .., 30 and 1, 3, .., 31 */
        codes32_split_avx512(r + 4, &c0, &c1);
        for (int i = 0; i < nh; ++i) {
            const __m512 va = _mm512_set1_ps(qh[i][ch] * dk);
            a[i][0] = _mm512_fmadd_ps(va, c0, a[i][0]);
            a[i][1] = _mm512_fmadd_ps(va, c1, a[i][1]);
        }
    }
    for (int i = 0; i < nh; ++i) {
        __m512 k0, k1;
        interleave32_avx512(a[i][0], a[i][1], &k0, &k1);
        _mm512_storeu_ps(acc[i], k0);
        _mm512_storeu_ps(acc[i] + 16, k1);
    }
}

__attribute__((target("avx512f"))) static void kblock_heads_avx512(const float *const *qh, int nh, const uint8_t *kr,
                                                                 size_t rb, int d, const float *h2f, float (*acc)[256],
                                                                 float *base) {
    switch (nh) {
    case 1: kblock_heads512_nh(qh, 1, kr, rb, d, h2f, acc, base); break;
    case 2: kblock_heads512_nh(qh, 2, kr, rb, d, h2f, acc, base); break;
    case 3: kblock_heads512_nh(qh, 3, kr, rb, d, h2f, acc, base); break;
    default: kblock_heads512_nh(qh, 4, kr, rb, d, h2f, acc, base); break;
    }
}

/* dst[e] = (acc[e] + base) * scale for a block of 32 keys and *mx = their maximum with *mx: the
 * generic loop's values (the maximum of a set does not depend on the order it is taken in). */
__attribute__((target("avx2"))) void eak_scores32_avx2(float *dst, const float *acc, float base, float scale,
                                                 float *mx) {
    const __m256 vb = _mm256_set1_ps(base), vs = _mm256_set1_ps(scale);
    __m256 m = _mm256_set1_ps(*mx);
    for (int e = 0; e < 32; e += 8) {
        const __m256 v = _mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(acc + e), vb), vs);
        _mm256_storeu_ps(dst + e, v);
        m = _mm256_max_ps(v, m);
    }
    float a[8];
    _mm256_storeu_ps(a, m);
    float r = *mx;
    for (int l = 0; l < 8; ++l) r = a[l] > r ? a[l] : r;
    *mx = r;
}

/* Values of n keys of one quantized block for nh query heads: o_i[e] += (sum_r w_i[r] * d_r * code_re
 * + sum_r w_i[r] * m_r) per value record group. The scaled codes and the offsets are summed apart
 * over the block's keys (in key order, starting from zero) and added to the output once per block,
 * so the output row stays out of the per-key loop; the AVX2 form does the same operations in the
 * same order. */
__attribute__((target("avx2,fma"), always_inline)) static inline void vblock_heads_nh(float *const *o, const float *const *w,
                                                                              const int nh, int n,
                                                                              const uint8_t *const *vrec, int d,
                                                                              size_t rb, const float *h2f) {
    for (int g = 0; g < d / 32; ++g) {
        float off[KVQ_HEADS];
        for (int i = 0; i < nh; ++i) off[i] = 0.0f;
        for (int half = 0; half < 2; ++half) {
            __m256 a[KVQ_HEADS][2];
            for (int i = 0; i < nh; ++i) a[i][0] = a[i][1] = _mm256_setzero_ps();
            for (int r = 0; r < n; ++r) {
                const uint8_t *rec = vrec[r] + (size_t)g * rb;
                const float dv = h2f[(uint16_t)(rec[0] | (rec[1] << 8))];
                if (half == 0) {
                    const float mv = h2f[(uint16_t)(rec[2] | (rec[3] << 8))];
                    for (int i = 0; i < nh; ++i) off[i] = off[i] + w[i][r] * mv;
                }
                __m256 c0, c1; /* channels 16*half + 0, 2, .., 14 and 16*half + 1, 3, .., 15 */
                codes16_split_avx2(rec + 4 + 8 * half, &c0, &c1);
                for (int i = 0; i < nh; ++i) {
                    const __m256 va = _mm256_set1_ps(w[i][r] * dv);
                    a[i][0] = _mm256_fmadd_ps(va, c0, a[i][0]);
                    a[i][1] = _mm256_fmadd_ps(va, c1, a[i][1]);
                }
            }
            for (int i = 0; i < nh; ++i) {
                float *y = o[i] + 32 * g + 16 * half;
                const __m256 vo = _mm256_set1_ps(off[i]);
                float t[16];
                store16_interleaved_avx2(t, a[i][0], a[i][1]);
                _mm256_storeu_ps(y, _mm256_add_ps(_mm256_loadu_ps(y), _mm256_add_ps(_mm256_loadu_ps(t), vo)));
                _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_loadu_ps(y + 8), _mm256_add_ps(_mm256_loadu_ps(t + 8), vo)));
            }
        }
    }
}

__attribute__((target("avx2,fma"))) static void vblock_heads_avx2(float *const *o, const float *const *w, int nh, int n,
                                                            const uint8_t *const *vrec, int d, size_t rb,
                                                            const float *h2f) {
    switch (nh) {
    case 1: vblock_heads_nh(o, w, 1, n, vrec, d, rb, h2f); break;
    case 2: vblock_heads_nh(o, w, 2, n, vrec, d, rb, h2f); break;
    case 3: vblock_heads_nh(o, w, 3, n, vrec, d, rb, h2f); break;
    default: vblock_heads_nh(o, w, 4, n, vrec, d, rb, h2f); break;
    }
}

/* AVX-512: a value record's 32 channels in two sixteen-lane registers, one pass per group. */
__attribute__((target("avx512f"), always_inline)) static inline void vblock_heads512_nh(float *const *o, const float *const *w,
                                                                                    const int nh, int n,
                                                                                    const uint8_t *const *vrec, int d,
                                                                                    size_t rb, const float *h2f) {
    for (int g = 0; g < d / 32; ++g) {
        float off[KVQ_HEADS];
        __m512 a[KVQ_HEADS][2];
        for (int i = 0; i < nh; ++i) { off[i] = 0.0f; a[i][0] = a[i][1] = _mm512_setzero_ps(); }
        for (int r = 0; r < n; ++r) {
            const uint8_t *rec = vrec[r] + (size_t)g * rb;
            const float dv = h2f[(uint16_t)(rec[0] | (rec[1] << 8))], mv = h2f[(uint16_t)(rec[2] | (rec[3] << 8))];
            for (int i = 0; i < nh; ++i) off[i] = off[i] + w[i][r] * mv;
            __m512 c0, c1; /* channels 0, 2, .., 30 and 1, 3, .., 31 of group g */
            codes32_split_avx512(rec + 4, &c0, &c1);
            for (int i = 0; i < nh; ++i) {
                const __m512 va = _mm512_set1_ps(w[i][r] * dv);
                a[i][0] = _mm512_fmadd_ps(va, c0, a[i][0]);
                a[i][1] = _mm512_fmadd_ps(va, c1, a[i][1]);
            }
        }
        for (int i = 0; i < nh; ++i) {
            float *y = o[i] + 32 * g;
            const __m512 vo = _mm512_set1_ps(off[i]);
            __m512 v0, v1;
            interleave32_avx512(a[i][0], a[i][1], &v0, &v1);
            _mm512_storeu_ps(y, _mm512_add_ps(_mm512_loadu_ps(y), _mm512_add_ps(v0, vo)));
            _mm512_storeu_ps(y + 16, _mm512_add_ps(_mm512_loadu_ps(y + 16), _mm512_add_ps(v1, vo)));
        }
    }
}

__attribute__((target("avx512f"))) static void vblock_heads_avx512(float *const *o, const float *const *w, int nh, int n,
                                                                 const uint8_t *const *vrec, int d, size_t rb,
                                                                 const float *h2f) {
    switch (nh) {
    case 1: vblock_heads512_nh(o, w, 1, n, vrec, d, rb, h2f); break;
    case 2: vblock_heads512_nh(o, w, 2, n, vrec, d, rb, h2f); break;
    case 3: vblock_heads512_nh(o, w, 3, n, vrec, d, rb, h2f); break;
    default: vblock_heads512_nh(o, w, 4, n, vrec, d, rb, h2f); break;
    }
}

void eak_kblock_scores_x86(int simd4, const float *const *qh, int nh, const uint8_t *kr, size_t rb, int d,
                           const float *h2f, float (*acc)[256], float *base) {
    if (simd4 == 2) kblock_heads_avx512(qh, nh, kr, rb, d, h2f, acc, base);
    else kblock_heads_avx2(qh, nh, kr, rb, d, h2f, acc, base);
}

void eak_vblock_add_x86(int simd4, float *const *o, const float *const *w, int nh, int n, const uint8_t *const *vrec,
                        int d, size_t rb, const float *h2f) {
    if (simd4 == 2) vblock_heads_avx512(o, w, nh, n, vrec, d, rb, h2f);
    else vblock_heads_avx2(o, w, nh, n, vrec, d, rb, h2f);
}
#endif
