/* q4_panel.h - Q4_1 matrices in panels of 16 rows (q4_panel.c; SIMD forms in arch/x86/q4_panel.c
 * and arch/arm/q4_panel.c). Internal. */
#ifndef EAK_Q4_PANEL_H
#define EAK_Q4_PANEL_H
#include "ea_kernels.h"
#include <string.h>

/* ---- Q4_1 panels ----------------------------------------------------------------------------------
 * Decode reads the output head (often Q4_1) once per token, one row at a time: per 32-weight block
 * two fp16 headers to decode and a scalar offset chain, about 25 instructions per 20 bytes. In
 * panels of 16 rows (per block: the 16 d, the 16 m, the 16 rows' code bytes) the scales of 16 rows
 * convert in one instruction, the offset term runs for 16 rows in one vector, and one 64-byte
 * vpdpbusd serves two rows. Every lane keeps the row layout's order (lane j: elements 4j..4j+3,
 * acc = acc + (d * dx) * L block by block, reduce8, then + m), so the results are the row kernels'
 * bit for bit. */
#define Q4P EAK_Q4P_PANEL
#define Q4P_COL (Q4P * 20) /* one block of 16 rows */

static inline const uint8_t *q4p_panel(const uint8_t *w, size_t row_bytes, int r) {
    return w + (size_t)(r / Q4P) * Q4P * row_bytes;
}

static inline void q4p_row(const uint8_t *w, size_t row_bytes, int r, uint8_t *o) {
    const uint8_t *p = q4p_panel(w, row_bytes, r);
    const int k = r % Q4P, nb = (int)(row_bytes / 20);
    for (int b = 0; b < nb; ++b, p += Q4P_COL, o += 20) {
        memcpy(o, p + 2 * k, 2);
        memcpy(o + 2, p + 32 + 2 * k, 2);
        memcpy(o + 4, p + 64 + 16 * k, 16);
    }
}

/* One panel (16 rows) times one token: y[0..15]. */
typedef void (*eak_q4p_fn)(const uint8_t *pan, const eak_act_block *xa, int nb, float *y);
/* Every panel kernel this CPU runs (cpu.h), the first the one decode uses; 0 when the generic
 * kernels are forced. f and name hold 3. */
int eak_q4p_variants(eak_q4p_fn *f, const char **name);
#if defined(__x86_64__)
__attribute__((target("avx2,f16c,avx512f,avx512vl,avx512bw,avx512vnni"))) void
eak_q4p_vnni512(const uint8_t *pan, const eak_act_block *xa, int nb, float *y);
__attribute__((target("avx2,f16c"))) void eak_q4p_avx2(const uint8_t *pan0, const eak_act_block *xa, int nb, float *y);
#elif defined(__aarch64__)
void eak_q4p_neon(const uint8_t *pan0, const eak_act_block *xa, int nb, float *y);
__attribute__((target("arch=armv8.2-a+dotprod"))) void eak_q4p_dotprod(const uint8_t *pan0, const eak_act_block *xa,
                                                                       int nb, float *y);
#endif
#endif
