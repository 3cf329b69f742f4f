/* Integer matrix product: weights in GGUF's 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)
 * times activations quantized on the fly to 8 bits per 32-element block, as llama.cpp does
 * (Q8_0-style blocks for symmetric weights, Q8_1-style with the block sum for weights with an
 * offset). Each block's dot product is an exact int32; SIMD (AVX2, NEON, NEON dotprod) only computes
 * those int32 sums, and the float scaling runs in the same order in every version, so all versions
 * give bit-identical results. */
#include "ea_kernels.h"
#include <math.h>
#include <string.h>
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

static inline float h2f(const uint8_t *p) { return eak_f16_table()[(uint16_t)(p[0] | (p[1] << 8))]; }

int eak_act_type(int wtype) {
    switch (wtype) {
    case EAK_Q4_0: case EAK_Q5_0: case EAK_Q8_0: return EAK_Q8_0;
    case EAK_Q4_1: case EAK_Q5_1: return EAK_Q8_1;
    default: return -1;
    }
}

size_t eak_act_bytes(int n_tok, int cols) { return (size_t)n_tok * (size_t)(cols / 32) * sizeof(eak_act_block); }

void eak_quantize_act(const float *x, int n_tok, int cols, eak_act_block *out) {
    const int nb = cols / 32;
    for (int t = 0; t < n_tok; ++t) {
        for (int b = 0; b < nb; ++b) {
            const float *v = x + (size_t)t * cols + b * 32;
            eak_act_block *o = out + (size_t)t * nb + b;
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
    }
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

static int32_t idot_generic(const int8_t *a, const int8_t *b) {
    int32_t s = 0;
    for (int j = 0; j < 32; ++j) s += (int32_t)a[j] * b[j];
    return s;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static int32_t idot_avx2(const int8_t *a, const int8_t *b) {
    __m256i x = _mm256_loadu_si256((const __m256i *)a), y = _mm256_loadu_si256((const __m256i *)b);
    /* sign trick: |x| (unsigned) * (y with x's sign); pairs fit int16 since |x| <= 128, |y| <= 127 */
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    __m256i s = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
    return _mm_cvtsi128_si32(h);
}
#endif

#if defined(__aarch64__)
static int32_t idot_neon(const int8_t *a, const int8_t *b) {
    int8x16_t a0 = vld1q_s8(a), a1 = vld1q_s8(a + 16), b0 = vld1q_s8(b), b1 = vld1q_s8(b + 16);
    int16x8_t p0 = vmull_s8(vget_low_s8(a0), vget_low_s8(b0));
    p0 = vmlal_s8(p0, vget_high_s8(a0), vget_high_s8(b0));
    int16x8_t p1 = vmull_s8(vget_low_s8(a1), vget_low_s8(b1));
    p1 = vmlal_s8(p1, vget_high_s8(a1), vget_high_s8(b1));
    return vaddvq_s32(vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)));
}

__attribute__((target("arch=armv8.2-a+dotprod"))) static int32_t idot_dotprod(const int8_t *a, const int8_t *b) {
    int32x4_t acc = vdupq_n_s32(0);
    acc = vdotq_s32(acc, vld1q_s8(a), vld1q_s8(b));
    acc = vdotq_s32(acc, vld1q_s8(a + 16), vld1q_s8(b + 16));
    return vaddvq_s32(acc);
}
#endif

/* ---- exact int32 sums of every block of one weight row against one token ----------------------
 * sums[b] = int_dot(unpacked weight block b, activation block b). The SIMD versions unpack with
 * vector instructions; types they do not cover fall back to unpack_block + idot. */
typedef void (*rowsums_fn)(int type, const uint8_t *row, const eak_act_block *xa, int nb, int32_t *sums);

#if defined(__x86_64__)
__attribute__((target("avx2"))) static inline int32_t hsum_i32x8(__m256i s) {
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
    return _mm_cvtsi128_si32(h);
}

__attribute__((target("avx2"))) static int rowsums_avx2(int type, const uint8_t *row, const eak_act_block *xa,
                                                        int nb, int32_t *sums) {
    const __m256i ones16 = _mm256_set1_epi16(1);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    switch (type) {
    case EAK_Q4_0:
    case EAK_Q4_1: {
        const int bb = type == EAK_Q4_0 ? 18 : 20, qoff = type == EAK_Q4_0 ? 2 : 4;
        const __m256i eight = _mm256_set1_epi8(8);
        for (int b = 0; b < nb; ++b) {
            __m128i raw = _mm_loadu_si128((const __m128i *)(row + (size_t)b * bb + qoff));
            __m256i w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
            __m256i x = _mm256_loadu_si256((const __m256i *)xa[b].qs);
            __m256i p;
            if (type == EAK_Q4_1) {
                p = _mm256_maddubs_epi16(w, x); /* w in 0..15 unsigned */
            } else {
                __m256i ws = _mm256_sub_epi8(w, eight);
                p = _mm256_maddubs_epi16(_mm256_sign_epi8(ws, ws), _mm256_sign_epi8(x, ws));
            }
            sums[b] = hsum_i32x8(_mm256_madd_epi16(p, ones16));
        }
        return 1;
    }
    case EAK_Q8_0:
        for (int b = 0; b < nb; ++b) {
            __m256i w = _mm256_loadu_si256((const __m256i *)(row + (size_t)b * 34 + 2));
            __m256i x = _mm256_loadu_si256((const __m256i *)xa[b].qs);
            __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
            sums[b] = hsum_i32x8(_mm256_madd_epi16(p, ones16));
        }
        return 1;
    default:
        return 0;
    }
}
#endif

#if defined(__aarch64__)
static inline int32_t dot16_neon(int8x16_t a, int8x16_t b) {
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    p = vmlal_s8(p, vget_high_s8(a), vget_high_s8(b));
    return vaddlvq_s16(p);
}

__attribute__((target("arch=armv8.2-a+dotprod"))) static inline int32_t dot32_dp(int8x16_t a0, int8x16_t a1,
                                                                              int8x16_t b0, int8x16_t b1) {
    return vaddvq_s32(vdotq_s32(vdotq_s32(vdupq_n_s32(0), a0, b0), a1, b1));
}

/* Shared body; DP selects the sdot instruction. Inlined into two dispatch targets below. */
#define ROWSUMS_NEON_BODY(DOT32)                                                                     \
    switch (type) {                                                                                  \
    case EAK_Q4_0:                                                                                   \
    case EAK_Q4_1: {                                                                                 \
        const int bb = type == EAK_Q4_0 ? 18 : 20, qoff = type == EAK_Q4_0 ? 2 : 4;                   \
        const uint8x16_t m4 = vdupq_n_u8(0x0F);                                                      \
        const int8x16_t off = vdupq_n_s8(type == EAK_Q4_0 ? 8 : 0);                                  \
        for (int b = 0; b < nb; ++b) {                                                               \
            uint8x16_t raw = vld1q_u8(row + (size_t)b * bb + qoff);                                  \
            int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, m4)), off);                    \
            int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), off);                   \
            sums[b] = DOT32(lo, hi, vld1q_s8(xa[b].qs), vld1q_s8(xa[b].qs + 16));                    \
        }                                                                                            \
        return 1;                                                                                    \
    }                                                                                                \
    case EAK_Q8_0:                                                                                   \
        for (int b = 0; b < nb; ++b) {                                                               \
            const int8_t *w = (const int8_t *)(row + (size_t)b * 34 + 2);                            \
            sums[b] = DOT32(vld1q_s8(w), vld1q_s8(w + 16), vld1q_s8(xa[b].qs), vld1q_s8(xa[b].qs + 16)); \
        }                                                                                            \
        return 1;                                                                                    \
    default:                                                                                         \
        return 0;                                                                                    \
    }

static inline int32_t dot32_neon(int8x16_t a0, int8x16_t a1, int8x16_t b0, int8x16_t b1) {
    return dot16_neon(a0, b0) + dot16_neon(a1, b1);
}

static int rowsums_neon(int type, const uint8_t *row, const eak_act_block *xa, int nb, int32_t *sums) {
    ROWSUMS_NEON_BODY(dot32_neon)
}

__attribute__((target("arch=armv8.2-a+dotprod"))) static int rowsums_dotprod(int type, const uint8_t *row,
                                                                            const eak_act_block *xa, int nb,
                                                                            int32_t *sums) {
    ROWSUMS_NEON_BODY(dot32_dp)
}
#endif

typedef int32_t (*idot_fn)(const int8_t *, const int8_t *);
typedef int (*rowsums_sel_fn)(int, const uint8_t *, const eak_act_block *, int, int32_t *);
static idot_fn g_idot;
static rowsums_sel_fn g_rowsums; /* NULL: generic only */
static int g_picked;
static int g_forced_generic = -1;
void eak_matmul_reset_dispatch(void); /* matmul.c */
int eak_generic_forced(void) { return g_forced_generic == 1; }

void eak_force_generic(int on) {
    g_forced_generic = on;
    g_idot = 0;
    g_rowsums = 0;
    g_picked = 0;
    eak_matmul_reset_dispatch();
}

static idot_fn pick_idot(void) {
    if (g_picked) return g_idot;
    idot_fn f = idot_generic;
    rowsums_sel_fn r = 0;
    if (g_forced_generic != 1) {
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2")) { f = idot_avx2; r = rowsums_avx2; }
#elif defined(__aarch64__)
        f = idot_neon;
        r = rowsums_neon;
#if defined(__linux__)
        if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) { f = idot_dotprod; r = rowsums_dotprod; }
#endif
#endif
    }
    g_idot = f;
    g_rowsums = r;
    g_picked = 1; /* racing first calls store the same values */
    return f;
}

const char *eak_idot_name(void) {
    idot_fn f = pick_idot();
#if defined(__x86_64__)
    if (f == idot_avx2) return "avx2";
#elif defined(__aarch64__)
    if (f == idot_dotprod) return "neon-dotprod";
    if (f == idot_neon) return "neon";
#endif
    (void)f;
    return "generic";
}

void eak_matmul_q8(int type, const void *w, size_t row_bytes, int rows, int cols,
                   const eak_act_block *xq, int n_tok, float *y, int n_threads) {
    const idot_fn idot = pick_idot();
    const rowsums_sel_fn rowsums = g_rowsums;
    const int nb = cols / 32;
    const uint32_t bb = eak_type_block_bytes(type);
    const int has_min = type == EAK_Q4_1 || type == EAK_Q5_1;
    if (n_threads < 1) n_threads = 1;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n_threads > 1)
    for (int r = 0; r < rows; ++r) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
        int32_t sums[512]; /* blocks per chunk: 16384 columns */
        for (int t = 0; t < n_tok; ++t) {
            const eak_act_block *xa = xq + (size_t)t * nb;
            float acc = 0.0f, accm = 0.0f;
            for (int b0 = 0; b0 < nb; b0 += 512) {
                const int n = nb - b0 < 512 ? nb - b0 : 512;
                const uint8_t *rb = row + (size_t)b0 * bb;
                if (!rowsums || !rowsums(type, rb, xa + b0, n, sums)) {
                    int8_t wq[32];
                    for (int b = 0; b < n; ++b) {
                        unpack_block(type, rb + (size_t)b * bb, wq);
                        sums[b] = idot(wq, xa[b0 + b].qs);
                    }
                }
                /* the float scaling, in block order: identical in every ISA version */
                for (int b = 0; b < n; ++b) {
                    const uint8_t *blk = rb + (size_t)b * bb;
                    acc += (h2f(blk) * xa[b0 + b].d) * (float)sums[b];
                    if (has_min) accm += h2f(blk + 2) * xa[b0 + b].s;
                }
            }
            y[(size_t)t * rows + r] = acc + accm;
        }
    }
}
