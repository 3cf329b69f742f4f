/* quant_dot.h - products of Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 weights with 8-bit activations
 * (quant_dot.c; SIMD forms in arch/x86/quant_dot.c and arch/arm/quant_dot.c). Internal. */
#ifndef EAK_QUANT_DOT_H
#define EAK_QUANT_DOT_H
#include "ea_kernels.h"
#include <string.h>

#define EAK_Q8_MAXB 512 /* blocks per row handled at once: 16384 columns */

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
typedef float (*eak_lanes_fn)(const int8_t *wq, const eak_act_block *xa, const float *dw, int nb);
/* Unpacks nb blocks of a Q4_0 / Q4_1 row to int8 (as unpack_block); returns 0 for other types. */
typedef int (*eak_unpack_fn)(int type, const uint8_t *row, int nb, int8_t *wq);
/* Single-token (decode) path: the same lanes computed straight from the packed blocks, without the
 * unpack pass. Returns 0 for types it does not cover. *out = the lane sum, plus for Q4_1 the offset
 * term sum_b m_b * s_b (block order, as the lanes path), computed in the same pass, where its add
 * chain overlaps the vector work. */
typedef int (*eak_fused_fn)(int type, const uint8_t *row, const eak_act_block *xa, int nb, const float *h2f, float *out);

/* The forms this CPU runs (cpu.h): unpack and fused NULL where there is none. */
typedef struct {
    eak_lanes_fn lanes;
    eak_unpack_fn unpack;
    eak_fused_fn fused;
    const char *name;
} eak_q8_kernels;
void eak_q8_pick(eak_q8_kernels *k);

float eak_lanes_generic(const int8_t *wq, const eak_act_block *xa, const float *dw, int nb);
/* eak_matmul_q8; panels: w holds Q4_1 panels (q4_panel.h), each row is rebuilt in the row layout
 * first, so the results are the row layout's bit for bit. */
void eak_matmul_q8_rows(int type, const void *w, size_t row_bytes, int rows, int cols, const eak_act_block *xq,
                        int n_tok, float *y, int n_threads, int panels);

#if defined(__x86_64__)
#define EAK_Q8_VNNI_MAXB 64 /* the decode bias of up to 2048 columns on the stack */
__attribute__((target("avx2"))) float eak_lanes_avx2(const int8_t *wq, const eak_act_block *xa, const float *dw, int nb);
__attribute__((target("avx2"))) int eak_unpack_row_avx2(int type, const uint8_t *row, int nb, int8_t *wq);
__attribute__((target("avx2"))) int eak_fused_avx2(int type, const uint8_t *row, const eak_act_block *xa, int nb,
                                                   const float *h2f, float *out);
/* One token (n_tok == 1) of a Q8_0 / Q4_0 / Q4_1 matrix of at most EAK_Q8_VNNI_MAXB blocks a row
 * with AVX512-VNNI, parallel over rows; the same bits as eak_fused_avx2. */
void eak_q8_decode_vnni(int type, const void *w, size_t row_bytes, int rows, const eak_act_block *xq, int nb_all,
                        const float *h2f, float *y, int n_threads);
/* The prefill part of a row chunk: nr (1 or 2) unpacked rows times tokens four at a time (two rows:
 * the AVX2 or AVX512-VNNI tile; one row: AVX2 when lanes is eak_lanes_avx2), added to y as
 * quant_dot.c's one-token loop would. Returns the first token not done. */
int eak_q8_tokens4_x86(eak_lanes_fn lanes, int nr, int chunk, const int8_t *wq, const float *dw, const float *mw, int off,
                       const eak_act_block *xq, int nb_all, int b0, int nb, int n_tok, float *y, int rows, int r);
#elif defined(__aarch64__)
float eak_lanes_neon(const int8_t *wq, const eak_act_block *xa, const float *dw, int nb);
__attribute__((target("arch=armv8.2-a+dotprod"))) float eak_lanes_dotprod(const int8_t *wq, const eak_act_block *xa,
                                                                          const float *dw, int nb);
int eak_unpack_row_neon(int type, const uint8_t *row, int nb, int8_t *wq);
int eak_fused_neon(int type, const uint8_t *row, const eak_act_block *xa, int nb, const float *h2f, float *out);
__attribute__((target("arch=armv8.2-a+dotprod"))) int eak_fused_dotprod(int type, const uint8_t *row,
                                                                        const eak_act_block *xa, int nb,
                                                                        const float *h2f, float *out);
#endif
#endif
