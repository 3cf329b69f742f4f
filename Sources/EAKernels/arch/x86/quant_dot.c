/* x86 forms of the Q4/Q5/Q8 products (quant_dot.c): AVX2 lanes, the prefill tiles (one row x four
 * tokens, two rows x four tokens in AVX2 and AVX512-VNNI), the nibble unpacker and the single-token
 * decode rows (AVX2 and AVX512-VNNI). Every one gives eak_lanes_generic's lanes bit for bit. */
#if defined(__x86_64__)
#include "../../quant_dot.h"
#include "../../cpu.h"
#include "../../team.h"
#include "simd_x86.h"
#include <immintrin.h>

__attribute__((target("avx2"))) float eak_lanes_avx2(const int8_t *wq, const eak_act_block *xa, const float *dw, int nb) {
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

/* Four tokens against one unpacked row (prefill): for each token exactly eak_lanes_avx2's operations
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
 * and off * (the lane's sum of x) is subtracted in int32, so each lane is exactly eak_lanes_generic's
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
__attribute__((target("avx2"))) int eak_unpack_row_avx2(int type, const uint8_t *row, int nb, int8_t *wq) {
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

__attribute__((target("avx2"))) int eak_fused_avx2(int type, const uint8_t *row, const eak_act_block *xa, int nb,
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

/* Single-token rows with VNNI (decode: the output head above all). The weights as unsigned bytes
 * u = w + off (Q8_0: w ^ 0x80 = w + 128; Q4_0: the nibble itself, w + 8; Q4_1: the nibble, off 0) and
 * vpdpbusd started from bias = -off * (the lane's sum of x) give exactly eak_lanes_generic's int32 lane
 * sums; the float steps are eak_fused_avx2's. bias: per block, computed once per call (fused_bias). */
__attribute__((target("avx2,avx512f,avx512vl,avx512vnni"))) static void fused_bias(int type, const eak_act_block *xa, int nb,
                                                                                __m256i *bias) {
    const int sh = type == EAK_Q8_0 ? 7 : type == EAK_Q4_0 ? 3 : -1;
    for (int b = 0; b < nb; ++b) {
        const __m256i xs = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1),
                                               _mm256_loadu_si256((const __m256i *)xa[b].qs));
        bias[b] = sh < 0 ? _mm256_setzero_si256() : _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(xs, sh));
    }
}

/* The rows are read once per token (the output head), one after another. Asking for the block
 * PF_ROWS rows ahead keeps loads in flight that the one-row chain alone does not issue early
 * enough; four rows ahead is the fastest distance, and faster than interleaving four rows' chains.
 * A prefetch never faults, so the hint past the last row is harmless. */
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

void eak_q8_decode_vnni(int type, const void *w, size_t row_bytes, int rows, const eak_act_block *xq, int nb_all,
                        const float *h2f, float *y, int n_threads) {
    const int eak_nt = n_threads;
    EAK_PARALLEL(n_threads > 1,
    __m256i bias[EAK_Q8_VNNI_MAXB];
    fused_bias(type, xq, nb_all, bias);
    for (int r = eak_team_lo(rows), r_end = eak_team_hi(rows); r < r_end; ++r) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
        y[r] = fused_vnni(type, row, xq, nb_all, h2f, bias);
    });
}

int eak_q8_tokens4_x86(eak_lanes_fn lanes, int nr, int chunk, const int8_t *wq, const float *dw, const float *mw, int off,
                       const eak_act_block *xq, int nb_all, int b0, int nb, int n_tok, float *y, int rows, int r) {
    int t = 0;
    if (nr == 2) {
        /* the two-row tile: its AVX512-VNNI form where the CPU has it */
        const tile_fn tile = eak_use_vnni512() ? tile2x4_vnni512 : tile2x4_avx2;
        for (; t + 4 <= n_tok; t += 4) {
            float va[4], vb[4];
            tile(wq, wq + (size_t)chunk * 32, off, xq + (size_t)t * nb_all + b0, (size_t)nb_all, dw, dw + chunk,
                         mw, mw ? mw + chunk : NULL, nb, va, vb);
            for (int k = 0; k < 4; ++k) {
                y[(size_t)(t + k) * rows + r] += va[k];
                y[(size_t)(t + k) * rows + r + 1] += vb[k];
            }
        }
    } else if (lanes == eak_lanes_avx2)
        for (; t + 4 <= n_tok; t += 4) {
            float v4[4];
            lanes4_avx2(wq, xq + (size_t)t * nb_all + b0, (size_t)nb_all, dw, mw, nb, v4);
            for (int k = 0; k < 4; ++k) y[(size_t)(t + k) * rows + r] += v4[k];
        }
    return t;
}
#endif
