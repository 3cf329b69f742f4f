/* W2 panels: sixteen W2 rows interleaved so that a SIMD register holds one 32-bit lane per row.
 *
 * The row layout (dequant.c, qdot.c) keeps each row's codes together, so every kernel over it has to
 * add lanes across a vector (horizontal adds) to get one row's sum. A panel stores the codes of 16
 * rows side by side, four consecutive elements of a row in one 32-bit lane, so that a dot product of
 * unsigned code bytes with signed activation bytes (x86 vpdpbusd, AVX2 maddubs + madd, ARM sdot by
 * lane) leaves each row's sum in its own lane: no horizontal add anywhere, and one broadcast of four
 * activation bytes serves all 16 rows. The model loader repacks W2 matrices whose row count is a
 * multiple of 16 into panels in place (same bytes, other order), so this costs no memory.
 *
 * Results are the row kernels' bit for bit: per 32-element block the same exact int32 sums over
 * elements 0-15 and 16-31, and per row the same float operations in the same order
 * (w2_row_generic in qdot.c), which the self test checks for every variant on this CPU. */
#include "ea_kernels.h"
#include "team.h"
#include <string.h>
#include <stdio.h>
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

int eak_generic_forced(void); /* qdot.c */

/* Byte (4r + e) of half-vector V_h of a chunk holds, at bits 2j, the code of row r for element
 * 16h + 4j + e (j, e in 0..3). So (V_h >> 2j) & 3 has row r's codes for elements 16h + 4j .. +3 in
 * lane r, matching dword 4h + j of the activation block. */
static inline int w2p_code(const uint8_t *vh, int r, int i) { return (vh[4 * r + (i & 3)] >> (2 * (i >> 2))) & 3; }

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the panel packer reads code bytes as little-endian words"
#endif

int eak_w2_pack_panels(void *w, size_t row_bytes, int rows, int cols, int group, void *scratch) {
    if (!w || !scratch || rows < 0 || rows % EAK_W2_PANEL != 0 || row_bytes == 0 ||
        eak_w2_row_bytes(cols, group) != row_bytes)
        return -1;
    const int ng = cols / group, cpg = group / 32;
    const size_t gb = 4 + 8 * (size_t)cpg, pb = EAK_W2_PANEL * row_bytes;
    uint8_t *tmp = (uint8_t *)scratch;
    for (int p = 0; p < rows / EAK_W2_PANEL; ++p) {
        uint8_t *base = (uint8_t *)w + (size_t)p * pb;
        memcpy(tmp, base, pb);
        for (int g = 0; g < ng; ++g) {
            uint8_t *q = base + (size_t)g * EAK_W2_PANEL * gb;
            for (int r = 0; r < EAK_W2_PANEL; ++r) {
                const uint8_t *src = tmp + (size_t)r * row_bytes + (size_t)g * gb;
                q[2 * r] = src[0]; q[2 * r + 1] = src[1];           /* d */
                q[32 + 2 * r] = src[2]; q[32 + 2 * r + 1] = src[3]; /* m */
                for (int c = 0; c < cpg; ++c) {
                    /* element i = 16h + 4j + e sits in chunk byte 4(j & 1) + e at bit 4h + 2(j >> 1): the
                     * four bytes e = 0..3 of V_h's lane r come from the chunk's two dwords at once */
                    uint32_t lo, hi;
                    memcpy(&lo, src + 4 + 8 * c, 4);
                    memcpy(&hi, src + 8 + 8 * c, 4);
                    const uint32_t M = 0x03030303u;
                    for (int h = 0; h < 2; ++h) {
                        const int s0 = 4 * h, s1 = 4 * h + 2;
                        const uint32_t lane = ((lo >> s0) & M) | (((hi >> s0) & M) << 2) | (((lo >> s1) & M) << 4) |
                                              (((hi >> s1) & M) << 6);
                        memcpy(q + 64 + 128 * (size_t)c + 64 * h + 4 * r, &lane, 4); /* little-endian: byte e = element e */
                    }
                }
            }
        }
    }
    return 0;
}

int eak_w2p_dequantize_row(const void *w, size_t row_bytes, int r, float *dst, int cols, int group) {
    if (r < 0 || eak_w2_row_bytes(cols, group) != row_bytes || row_bytes == 0) return -1;
    const float *h2f = eak_f16_table();
    const int ng = cols / group, cpg = group / 32, k = r % EAK_W2_PANEL;
    const size_t gb = EAK_W2_PANEL * (4 + 8 * (size_t)cpg);
    const uint8_t *p = (const uint8_t *)w + (size_t)(r / EAK_W2_PANEL) * EAK_W2_PANEL * row_bytes;
    for (int g = 0; g < ng; ++g) {
        const uint8_t *q = p + (size_t)g * gb;
        const float d = h2f[(uint16_t)(q[2 * k] | (q[2 * k + 1] << 8))];
        const float m = h2f[(uint16_t)(q[32 + 2 * k] | (q[32 + 2 * k + 1] << 8))];
        for (int c = 0; c < cpg; ++c)
            for (int i = 0; i < 32; ++i) *dst++ = (float)w2p_code(q + 64 + 128 * (size_t)c + 64 * (i >> 4), k, i & 15) * d + m;
    }
    return 0;
}

/* One panel (16 rows) times nt (1..4) tokens: y[t * ys + r] for r < 16. */
typedef void (*w2p_fn)(const uint8_t *p, const eak_act_block *x, size_t xs, int nt, int ng, int cpg, float *y,
                       size_t ys);

static void w2p_generic(const uint8_t *p, const eak_act_block *x, size_t xs, int nt, int ng, int cpg, float *y,
                        size_t ys) {
    const float *h2f = eak_f16_table();
    const size_t gb = EAK_W2_PANEL * (4 + 8 * (size_t)cpg);
    for (int t = 0; t < nt; ++t) {
        const eak_act_block *xa = x + (size_t)t * xs;
        for (int r = 0; r < EAK_W2_PANEL; ++r) {
            float lo = 0.0f, hi = 0.0f, m = 0.0f;
            for (int g = 0, b = 0; g < ng; ++g) {
                const uint8_t *q = p + (size_t)g * gb;
                const float d = h2f[(uint16_t)(q[2 * r] | (q[2 * r + 1] << 8))];
                const float mn = h2f[(uint16_t)(q[32 + 2 * r] | (q[32 + 2 * r + 1] << 8))];
                for (int c = 0; c < cpg; ++c, ++b) {
                    const uint8_t *v = q + 64 + 128 * (size_t)c;
                    int32_t l0 = 0, l1 = 0;
                    for (int i = 0; i < 16; ++i) {
                        l0 += w2p_code(v, r, i) * xa[b].qs[i];
                        l1 += w2p_code(v + 64, r, i) * xa[b].qs[16 + i];
                    }
                    const float sc = d * xa[b].d;
                    lo = lo + sc * (float)l0;
                    hi = hi + sc * (float)l1;
                    m = m + mn * xa[b].s;
                }
            }
            y[(size_t)t * ys + r] = (lo + hi) + m;
        }
    }
}

#if defined(__x86_64__)
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

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void w2p_vnni512(const uint8_t *p, const eak_act_block *x,
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

#define W2P_SWITCH256(LSUM)                                                                                \
    switch (nt) {                                                                                          \
    case 1: W2P_BODY256(LSUM, 1) break;                                                                    \
    case 2: W2P_BODY256(LSUM, 2) break;                                                                    \
    case 3: W2P_BODY256(LSUM, 3) break;                                                                    \
    default: W2P_BODY256(LSUM, 4) break;                                                                   \
    }

__attribute__((target("avx2,f16c"))) static void w2p_avx2(const uint8_t *p, const eak_act_block *x, size_t xs, int nt,
                                                        int ng, int cpg, float *y, size_t ys) {
    W2P_SWITCH256(W2P_L_AVX2)
}

__attribute__((target("avx2,f16c,avxvnni"))) static void w2p_avxvnni(const uint8_t *p, const eak_act_block *x, size_t xs,
                                                                   int nt, int ng, int cpg, float *y, size_t ys) {
    W2P_SWITCH256(W2P_L_AVXVNNI)
}
#undef W2P_SWITCH256
#undef W2P_BODY256
#undef W2P_L_AVX2
#undef W2P_L_AVXVNNI
#endif

#if defined(__aarch64__)
/* The panel as four quads of 4 rows (bytes 16k .. 16k + 15 of each code vector), one after another
 * so a quad's accumulators and codes fit the 32 registers. dotprod: sdot of the codes with dword j
 * of the token's half straight from the register. ARMv8.0 (Cortex-A72): byte products with dword j
 * repeated, summed over j in 16 bits (|.| <= 4 * 384), then pairs and quads into int32 per row. */
__attribute__((target("arch=armv8.2-a+dotprod"))) static inline int32x4_t w2p_l_dotprod(const uint8x16_t u[4],
                                                                                      int8x16_t xh) {
    int32x4_t l = vdotq_laneq_s32(vdupq_n_s32(0), vreinterpretq_s8_u8(u[0]), xh, 0);
    l = vdotq_laneq_s32(l, vreinterpretq_s8_u8(u[1]), xh, 1);
    l = vdotq_laneq_s32(l, vreinterpretq_s8_u8(u[2]), xh, 2);
    return vdotq_laneq_s32(l, vreinterpretq_s8_u8(u[3]), xh, 3);
}

static inline int32x4_t w2p_l_neon(const uint8x16_t u[4], int8x16_t xh) {
    const int32x4_t xw = vreinterpretq_s32_s8(xh);
    int16x8_t lo = vdupq_n_s16(0), hi = lo;
#define W2P_J(J)                                                                                          \
    {                                                                                                     \
        const int8x16_t xj = vreinterpretq_s8_s32(vdupq_laneq_s32(xw, J));                                \
        const int8x16_t uj = vreinterpretq_s8_u8(u[J]);                                                   \
        lo = vmlal_s8(lo, vget_low_s8(uj), vget_low_s8(xj));                                              \
        hi = vmlal_high_s8(hi, uj, xj);                                                                   \
    }
    W2P_J(0) W2P_J(1) W2P_J(2) W2P_J(3)
#undef W2P_J
    return vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi));
}

#define W2P_BODY_NEON(LSUM, NT)                                                                           \
    {                                                                                                     \
        const uint8x16_t m3 = vdupq_n_u8(3);                                                              \
        const size_t gb = EAK_W2_PANEL * (4 + 8 * (size_t)cpg);                                           \
        for (int k = 0; k < 4; ++k) {                                                                     \
            float32x4_t lo[NT], hi[NT], mm[NT];                                                           \
            for (int t = 0; t < NT; ++t) lo[t] = hi[t] = mm[t] = vdupq_n_f32(0);                          \
            for (int g = 0, b = 0; g < ng; ++g) {                                                         \
                const uint8_t *q = p + (size_t)g * gb;                                                    \
                const float32x4_t dv = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(q + 8 * k)))); \
                const float32x4_t mv = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(q + 32 + 8 * k)))); \
                for (int c = 0; c < cpg; ++c, ++b) {                                                      \
                    const uint8x16_t v0 = vld1q_u8(q + 64 + 128 * (size_t)c + 16 * k);                    \
                    const uint8x16_t v1 = vld1q_u8(q + 128 + 128 * (size_t)c + 16 * k);                   \
                    const uint8x16_t u0[4] = {vandq_u8(v0, m3), vandq_u8(vshrq_n_u8(v0, 2), m3),          \
                                              vandq_u8(vshrq_n_u8(v0, 4), m3), vshrq_n_u8(v0, 6)};         \
                    const uint8x16_t u1[4] = {vandq_u8(v1, m3), vandq_u8(vshrq_n_u8(v1, 2), m3),          \
                                              vandq_u8(vshrq_n_u8(v1, 4), m3), vshrq_n_u8(v1, 6)};         \
                    for (int t = 0; t < NT; ++t) {                                                        \
                        const eak_act_block *xb = x + (size_t)t * xs + b;                                 \
                        const int32x4_t l0 = LSUM(u0, vld1q_s8(xb->qs));                                  \
                        const int32x4_t l1 = LSUM(u1, vld1q_s8(xb->qs + 16));                             \
                        const float32x4_t sc = vmulq_f32(dv, vdupq_n_f32(xb->d));                         \
                        lo[t] = vaddq_f32(lo[t], vmulq_f32(sc, vcvtq_f32_s32(l0)));                       \
                        hi[t] = vaddq_f32(hi[t], vmulq_f32(sc, vcvtq_f32_s32(l1)));                       \
                        mm[t] = vaddq_f32(mm[t], vmulq_f32(mv, vdupq_n_f32(xb->s)));                      \
                    }                                                                                     \
                }                                                                                         \
            }                                                                                             \
            for (int t = 0; t < NT; ++t)                                                                  \
                vst1q_f32(y + (size_t)t * ys + 4 * k, vaddq_f32(vaddq_f32(lo[t], hi[t]), mm[t]));         \
        }                                                                                                 \
    }

#define W2P_SWITCH_NEON(LSUM)                                                                             \
    switch (nt) {                                                                                         \
    case 1: W2P_BODY_NEON(LSUM, 1) break;                                                                 \
    case 2: W2P_BODY_NEON(LSUM, 2) break;                                                                 \
    case 3: W2P_BODY_NEON(LSUM, 3) break;                                                                 \
    default: W2P_BODY_NEON(LSUM, 4) break;                                                                \
    }

static void w2p_neon(const uint8_t *p, const eak_act_block *x, size_t xs, int nt, int ng, int cpg, float *y,
                     size_t ys) {
    W2P_SWITCH_NEON(w2p_l_neon)
}

__attribute__((target("arch=armv8.2-a+dotprod"))) static void w2p_dotprod(const uint8_t *p, const eak_act_block *x,
                                                                        size_t xs, int nt, int ng, int cpg, float *y,
                                                                        size_t ys) {
    W2P_SWITCH_NEON(w2p_l_dotprod)
}
#undef W2P_SWITCH_NEON
#undef W2P_BODY_NEON
#endif

/* The panel kernels this CPU can run, slowest first (the last is dispatched). */
static int w2p_variants(w2p_fn f[4], const char *name[4]) {
    int n = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) {
        f[n] = w2p_avx2; name[n++] = "avx2";
        if (__builtin_cpu_supports("avxvnni")) { f[n] = w2p_avxvnni; name[n++] = "avx-vnni"; }
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vnni")) {
            f[n] = w2p_vnni512; name[n++] = "avx512-vnni";
        }
    }
#elif defined(__aarch64__)
    f[n] = w2p_neon; name[n++] = "neon";
#if defined(__linux__)
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) { f[n] = w2p_dotprod; name[n++] = "neon-dotprod"; }
#endif
#endif
    (void)f; (void)name;
    return n;
}

static w2p_fn g_w2p;
static const char *g_w2p_name;

static w2p_fn pick_w2p(void) {
    if (eak_generic_forced()) return w2p_generic;
    if (!g_w2p) {
        w2p_fn f[4];
        const char *name[4];
        const int n = w2p_variants(f, name);
        g_w2p_name = n ? name[n - 1] : "generic";
        g_w2p = n ? f[n - 1] : w2p_generic; /* racing first calls store the same values */
    }
    return g_w2p;
}

const char *eak_w2p_kernel_name(void) { return pick_w2p() == w2p_generic ? "generic" : g_w2p_name; }

#define W2P_PASS_TOKENS 4 /* tokens per kernel call (a chunk's codes unpacked once for them) */
#define W2P_TOKEN_TILE 32 /* prefill: tokens per pass over a thread's panels (their activations stay in cache) */

/* One job's panels p_lo..p_hi-1 for every token (token tiles outermost: a tile's activations stay
 * in cache across the panels). */
static void w2p_run(w2p_fn f, const eak_w2p_job *j, int p_lo, int p_hi, int n_tok) {
    const int cpg = j->group / 32, ng = j->cols / j->group, nb = j->cols / 32;
    const size_t pb = EAK_W2_PANEL * j->row_bytes;
    for (int t0 = 0; t0 < n_tok; t0 += W2P_TOKEN_TILE) {
        const int t_end = n_tok - t0 < W2P_TOKEN_TILE ? n_tok : t0 + W2P_TOKEN_TILE;
        for (int p = p_lo; p < p_hi; ++p)
            for (int t = t0; t < t_end; t += W2P_PASS_TOKENS) {
                const int nt = t_end - t >= W2P_PASS_TOKENS ? W2P_PASS_TOKENS : t_end - t;
                f((const uint8_t *)j->w + (size_t)p * pb, j->xq + (size_t)t * nb, (size_t)nb, nt, ng, cpg,
                  j->y + (size_t)t * j->rows + (size_t)p * EAK_W2_PANEL, (size_t)j->rows);
            }
    }
}

static int w2p_job_ok(const eak_w2p_job *j) {
    return j->w && j->xq && j->y && j->rows > 0 && j->rows % EAK_W2_PANEL == 0 && j->row_bytes != 0 &&
           eak_w2_row_bytes(j->cols, j->group) == j->row_bytes;
}

void eak_matmul_w2p_jobs(const eak_w2p_job *a, const eak_w2p_job *b, const eak_w2p_job *c, int n_tok, int n_threads) {
    const eak_w2p_job *jobs[3] = { a, b, c };
    int nj = 0, np[3], total = 0;
    for (int k = 0; k < 3; ++k) {
        if (!jobs[k]) continue;
        if (!w2p_job_ok(jobs[k])) return;
        jobs[nj] = jobs[k];
        np[nj] = jobs[k]->rows / EAK_W2_PANEL;
        total += np[nj++];
    }
    if (nj == 0 || n_tok < 1) return;
    const w2p_fn f = pick_w2p();
    if (n_threads < 1) n_threads = 1;
    const int eak_nt = n_threads;
    /* the jobs' panels as one range, split in contiguous shares: one region for all of them */
    EAK_PARALLEL(n_threads > 1,
    const int lo = eak_team_lo(total), hi = eak_team_hi(total);
    for (int k = 0, base = 0; k < nj; base += np[k], ++k) {
        const int p_lo = lo > base ? lo - base : 0, p_hi = hi - base < np[k] ? hi - base : np[k];
        if (p_lo < p_hi) w2p_run(f, jobs[k], p_lo, p_hi, n_tok);
    });
}

void eak_matmul_w2p(const void *w, size_t row_bytes, int rows, int cols, int group, const eak_act_block *xq,
                    int n_tok, float *y, int n_threads) {
    const eak_w2p_job j = { w, row_bytes, rows, cols, group, xq, y };
    eak_matmul_w2p_jobs(&j, NULL, NULL, n_tok, n_threads);
}

/* ---- self test: every panel variant and the generic panel kernel against the row kernel --------- */
static uint32_t pt_rand(uint32_t *s) { *s = *s * 1664525u + 1013904223u; return *s >> 8; }

int eak_w2p_self_test(uint32_t seed, char *msg, size_t msg_len) {
    enum { NB = 24, R = EAK_W2_PANEL }; /* up to 768 columns */
    const float *h2f = eak_f16_table();
    static _Thread_local uint8_t rows[R * NB * 12], panel[R * NB * 12], scratch[R * NB * 12];
    static _Thread_local eak_act_block xa[4 * NB];
    uint32_t s = seed ? seed : 1;
    int checks = 0;
    w2p_fn vf[5];
    const char *vn[5];
    const int nv = w2p_variants(vf, vn);
    vf[nv] = w2p_generic; vn[nv] = "generic";
    for (int iter = 0; iter < 40; ++iter) {
        /* small groups and the converter's large ones (whole rows up to this buffer's 768 columns) */
        static const int groups[] = { 32, 64, 96, 128, 192, 256, 384, 768 };
        const int group = groups[pt_rand(&s) % (sizeof groups / sizeof groups[0])];
        const int ng = 1 + (int)(pt_rand(&s) % (NB * 32 / group)), cpg = group / 32, nb = ng * cpg, cols = nb * 32;
        const size_t gb = 4 + 8 * (size_t)cpg, rb = (size_t)ng * gb;
        for (size_t i = 0; i < R * rb; ++i) rows[i] = (uint8_t)pt_rand(&s);
        for (int r = 0; r < R; ++r)
            for (int g = 0; g < ng; ++g) { /* finite scales */
                uint8_t *gp = rows + (size_t)r * rb + (size_t)g * gb;
                const uint16_t d = eak_f32_to_f16((float)(pt_rand(&s) % 1000 + 1) * 1e-3f);
                const uint16_t m = eak_f32_to_f16(-(float)(pt_rand(&s) % 1000) * 1e-3f);
                gp[0] = (uint8_t)d; gp[1] = (uint8_t)(d >> 8); gp[2] = (uint8_t)m; gp[3] = (uint8_t)(m >> 8);
            }
        for (int i = 0; i < 4 * nb; ++i) { /* four distinct tokens, activations down to -128 */
            eak_act_block *o = &xa[i];
            o->d = h2f[eak_f32_to_f16((float)(pt_rand(&s) % 1000 + 1) * 1e-4f)];
            int sum = 0;
            for (int j = 0; j < 32; ++j) { o->qs[j] = (int8_t)((int)(pt_rand(&s) % 256) - 128); sum += o->qs[j]; }
            o->s = h2f[eak_f32_to_f16(o->d * (float)sum)];
        }
        memcpy(panel, rows, R * rb);
        if (eak_w2_pack_panels(panel, rb, R, cols, group, scratch) != 0) {
            if (msg) snprintf(msg, msg_len, "W2 panel packing refused %d columns in groups of %d", cols, group);
            return -1;
        }
        /* dequantized rows agree */
        for (int r = 0; r < R; r += 5) {
            float a[NB * 32], b[NB * 32];
            eak_w2_dequantize_row(rows + (size_t)r * rb, a, cols, group);
            eak_w2p_dequantize_row(panel, rb, r, b, cols, group);
            if (memcmp(a, b, sizeof(float) * (size_t)cols) != 0) {
                if (msg) snprintf(msg, msg_len, "W2 panel row %d (group %d) dequantizes differently from the row layout", r, group);
                return -1;
            }
        }
        const int nt = 1 + iter % 4;
        for (int v = 0; v <= nv; ++v) {
            float yv[4 * R];
            vf[v](panel, xa, (size_t)nb, nt, ng, cpg, yv, R);
            for (int t = 0; t < nt; ++t)
                for (int r = 0; r < R; ++r) {
                    const float want = eak_w2_row_ref(rows + (size_t)r * rb, xa + (size_t)t * nb, ng, cpg);
                    if (memcmp(&want, &yv[t * R + r], sizeof want) != 0) {
                        if (msg) snprintf(msg, msg_len, "W2 panel kernel %s (group %d, %d blocks, %d tokens, token %d, row %d): %.9g != row kernel %.9g",
                                          vn[v], group, nb, nt, t, r, yv[t * R + r], want);
                        return -1;
                    }
                }
            checks += nt * R;
        }
    }
    if (msg) snprintf(msg, msg_len, "%d W2 panel results (%d variants, dispatched %s) equal the row kernel's", checks, nv + 1,
                      eak_w2p_kernel_name());
    return 0;
}
