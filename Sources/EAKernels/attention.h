/* attention.h - the row operations of causal attention over a float or half KV cache
 * (attention.c; SIMD forms in arch/x86/attention.c and arch/arm/attention.c). Internal. */
#ifndef EAK_ATTENTION_H
#define EAK_ATTENTION_H
#include "ea_kernels.h"

/* q . k over n elements of a key row. */
typedef float (*qk_fn)(const float *q, const void *k, int n, const float *h2f);
/* o[d] += p[j] * v[j][d] for j = 0 .. nv-1 in that order (nv <= 4): the same sums as nv calls for
 * one key, with o loaded and stored once per 4 keys instead of once per key */
typedef void (*pv_fn)(float *o, const float *p, const void *const *v, int nv, int n, const float *h2f);
/* s[k] <- s[k] * inv, rounded to half and back when round_half (llama.cpp's half probabilities) */
typedef void (*pw_fn)(float *s, int n, float inv, int round_half, const float *h2f);

static inline void pw_generic(float *s, int n, float inv, int round_half, const float *h2f) {
    for (int k = 0; k < n; ++k) s[k] = round_half ? h2f[eak_f32_to_f16(s[k] * inv)] : s[k] * inv;
}

#if defined(__x86_64__)
__attribute__((target("avx2,f16c"))) float eak_qk_f16c(const float *q, const void *kv, int n, const float *h2f);
__attribute__((target("avx2,f16c"))) void eak_pv_f16c(float *o, const float *p, const void *const *vv, int nv, int n,
                                                     const float *h2f);
__attribute__((target("avx2,f16c"))) void eak_pw_f16c(float *s, int n, float inv, int round_half, const float *h2f);
#elif defined(__aarch64__)
float eak_qk_neon(const float *q, const void *kv, int n, const float *h2f);
void eak_pv_neon(float *o, const float *p, const void *const *vv, int nv, int n, const float *h2f);
#endif
#endif
