/* act_quant.h - 8-bit activation blocks (act_quant.c; SIMD forms in arch/x86/act_quant.c and
 * arch/arm/act_quant.c). Internal. */
#ifndef EAK_ACT_QUANT_H
#define EAK_ACT_QUANT_H
#include "ea_kernels.h"

/* One block of 32 floats to an activation block; every form gives the same bits. */
typedef void (*eak_quantize_block_fn)(const float *v, eak_act_block *o);
void eak_quantize_block_generic(const float *v, eak_act_block *o);
/* The form this CPU runs (cpu.h). */
eak_quantize_block_fn eak_quantize_block_pick(void);
#if defined(__x86_64__)
__attribute__((target("avx2"))) void eak_quantize_block_avx2(const float *v, eak_act_block *o);
#elif defined(__aarch64__)
void eak_quantize_block_neon(const float *v, eak_act_block *o);
#endif
#endif
