/* kv_quant.h - the quantized KV cache's SIMD forms (kv_quant.c; arch/x86/kv_quant.c). Internal. */
#ifndef EAK_KV_QUANT_H
#define EAK_KV_QUANT_H
#include "ea_kernels.h"

#define KVQ_HEADS 4 /* query heads scored together against one kv head's records (each unpacked once) */

#if defined(__x86_64__)
/* KV4 with groups of 32: the scores of one key block (acc[i][0..31] without the offset term,
 * base[i] the offset term) and the value sums of n keys of one block, for nh query heads, as
 * kv_quant.c's generic loops compute them, bit for bit. simd4: 1 the AVX2 loops, 2 their AVX-512
 * forms. */
void eak_kblock_scores_x86(int simd4, const float *const *qh, int nh, const uint8_t *kr, size_t rb, int d,
                           const float *h2f, float (*acc)[256], float *base);
void eak_vblock_add_x86(int simd4, float *const *o, const float *const *w, int nh, int n, const uint8_t *const *vrec,
                        int d, size_t rb, const float *h2f);
/* dst[e] = (acc[e] + base) * scale for a block of 32 keys and *mx = their maximum with *mx. */
__attribute__((target("avx2"))) void eak_scores32_avx2(float *dst, const float *acc, float base, float scale, float *mx);
#endif
#endif
