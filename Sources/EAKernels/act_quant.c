/* Activations quantized on the fly to 8 bits per 32-element block, as llama.cpp does: Q8_0-style
 * blocks for symmetric weights, Q8_1-style (with the block sum) for weights with an offset. */
#include "ea_kernels.h"
#include "act_quant.h"
#include "cpu.h"
#include "team.h"
#include <math.h>

int eak_act_type(int wtype) {
    switch (wtype) {
    case EAK_Q4_0: case EAK_Q5_0: case EAK_Q8_0: return EAK_Q8_0;
    case EAK_Q4_1: case EAK_Q5_1: return EAK_Q8_1;
    default: return -1;
    }
}

size_t eak_act_bytes(int n_tok, int cols) { return (size_t)n_tok * (size_t)(cols / 32) * sizeof(eak_act_block); }

/* One block: d = max|v| / 127, q = round-half-even(v * 127 / max|v|), s = d * sum(q), d and s rounded
 * through fp16. The SIMD forms take the same maximum (order-free), the same products and the same
 * rounding (the default mode, which nearbyintf also follows), so their blocks are bit-identical. */
void eak_quantize_block_generic(const float *v, eak_act_block *o) {
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

eak_quantize_block_fn eak_quantize_block_pick(void) {
    return EAK_PICK(eak_quantize_block_generic, eak_quantize_block_avx2, eak_quantize_block_neon);
}

void eak_quantize_act(const float *x, int n_tok, int cols, eak_act_block *out, int n_threads) {
    const int nb = cols / 32;
    const eak_quantize_block_fn f = eak_quantize_block_pick();
    const int eak_nt = n_threads > 0 ? n_threads : 1;
    /* rows split over the team from 8 up (a single row is faster than a parallel region) */
    EAK_PARALLEL(n_threads > 1 && n_tok >= 8,
    for (int t = eak_team_lo(n_tok), t_end = eak_team_hi(n_tok); t < t_end; ++t)
        for (int b = 0; b < nb; ++b) f(x + (size_t)t * cols + b * 32, out + (size_t)t * nb + b);
    );
}
