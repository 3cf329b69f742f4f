/* kv_quant.h - the quantized KV cache's SIMD forms (kv_quant.c; arch/x86/kv_quant.c). Internal. */
#ifndef EAK_KV_QUANT_H
#define EAK_KV_QUANT_H
#include "ea_kernels.h"

#define KVQ_HEADS 4 /* query heads scored together against one kv head's records (each unpacked once) */

#if defined(__x86_64__)
/* KV4 with groups of 32: the scores of one key block (acc[i][0..31] without the offset term,
 * base[i] the offset term) and the value sums of n keys of one block, for nh query heads, as
 * kv_quant.c's generic loops compute them, bit for bit. */
__attribute__((target("avx2,fma"))) void eak_kblock_heads_avx2(const float *const *qh, int nh, const uint8_t *kr,
                                                              size_t rb, int d, const float *h2f, float (*acc)[256],
                                                              float *base);
__attribute__((target("avx512f"))) void eak_kblock_heads_avx512(const float *const *qh, int nh, const uint8_t *kr,
                                                               size_t rb, int d, const float *h2f, float (*acc)[256],
                                                               float *base);
__attribute__((target("avx2,fma"))) void eak_vblock_heads_avx2(float *const *o, const float *const *w, int nh, int n,
                                                              const uint8_t *const *vrec, int d, size_t rb,
                                                              const float *h2f);
__attribute__((target("avx512f"))) void eak_vblock_heads_avx512(float *const *o, const float *const *w, int nh, int n,
                                                               const uint8_t *const *vrec, int d, size_t rb,
                                                               const float *h2f);
/* dst[e] = (acc[e] + base) * scale for a block of 32 keys and *mx = their maximum with *mx. */
__attribute__((target("avx2"))) void eak_scores32_avx2(float *dst, const float *acc, float base, float scale, float *mx);
#endif
#endif
