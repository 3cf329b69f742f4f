/* simd_x86.h - static inline AVX2 helpers shared by several x86 kernel files. Internal. */
#ifndef EAK_SIMD_X86_H
#define EAK_SIMD_X86_H
#include "ea_kernels.h"
#include <immintrin.h>

/* eak_reduce8 on a register: high half onto low ((l0+l4), (l1+l5), (l2+l6), (l3+l7)), then lanes 2, 3
 * onto 0, 1, then lane 1 onto 0: the same three levels of adds in the same pairing, so the same bits. */
__attribute__((target("avx2"))) static inline float reduce8_m256(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}
#endif
