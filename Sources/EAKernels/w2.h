/* w2.h - W2 (group-wise 2-bit weights, format in ea_kernels.h): the row kernels (w2_rows.c) and
 * the 16-row panel kernels (w2_panel.c), with their SIMD forms in arch/x86/ and arch/arm/
 * (w2_rows.c, w2_panel.c). Internal. */
#ifndef EAK_W2_H
#define EAK_W2_H
#include "ea_kernels.h"

/* The row kernels' result for one row and one token: the reference every form must equal. */
float eak_w2_row_generic(const uint8_t *row, const eak_act_block *xa, int ng, int cpg, const float *h2f);

/* Four rows (r[k]; a short tail repeats a row) times nt (1 to 4) tokens (token t at x + t * xs);
 * y[t * ys + k] receives row k's result for token t. */
typedef void (*eak_w2_quad_fn)(const uint8_t *const r[4], const eak_act_block *x, size_t xs, int nt, int ng, int cpg,
                               const float *h2f, float *y, size_t ys);
void eak_w2_quad_generic(const uint8_t *const r[4], const eak_act_block *x, size_t xs, int nt, int ng, int cpg,
                         const float *h2f, float *y, size_t ys);

/* One panel (16 rows) times nt (1..4) tokens: y[t * ys + r] for r < 16. */
typedef void (*eak_w2p_fn)(const uint8_t *p, const eak_act_block *x, size_t xs, int nt, int ng, int cpg, float *y,
                           size_t ys);
void eak_w2p_generic(const uint8_t *p, const eak_act_block *x, size_t xs, int nt, int ng, int cpg, float *y,
                     size_t ys);

/* The W2 forms this CPU has (cpu.h), slowest first: each form's four-row and panel kernel and its
 * name (arrays of 4). The last is dispatched unless the generic kernels are forced; the self test
 * checks every one against the generic kernels. */
int eak_w2_variants(eak_w2_quad_fn quad[4], eak_w2p_fn panel[4], const char *name[4]);
/* The dispatched four-row and panel kernels (either pointer may be NULL); returns the form's name. */
const char *eak_w2_pick(eak_w2_quad_fn *quad, eak_w2p_fn *panel);

/* BODY(LSUM, NT) with the token count nt (1 to 4) as the constant NT, so that the SIMD forms'
 * per-token accumulators become registers. */
#define EAK_W2_NT_SWITCH(BODY, LSUM)                                                                    \
    switch (nt) {                                                                                       \
    case 1: BODY(LSUM, 1) break;                                                                        \
    case 2: BODY(LSUM, 2) break;                                                                        \
    case 3: BODY(LSUM, 3) break;                                                                        \
    default: BODY(LSUM, 4) break;                                                                       \
    }

#if defined(__x86_64__)
__attribute__((target("avx2,f16c"))) void eak_w2_quad_avx2(const uint8_t *const r[4], const eak_act_block *x, size_t xs,
                                                          int nt, int ng, int cpg, const float *h2f, float *y, size_t ys);
__attribute__((target("avx2,f16c,avxvnni"))) void eak_w2_quad_avxvnni(const uint8_t *const r[4], const eak_act_block *x,
                                                                     size_t xs, int nt, int ng, int cpg,
                                                                     const float *h2f, float *y, size_t ys);
__attribute__((target("avx2,f16c,avx512f,avx512vl,avx512vnni"))) void eak_w2_quad_vnni512(
    const uint8_t *const r[4], const eak_act_block *x, size_t xs, int nt, int ng, int cpg, const float *h2f, float *y,
    size_t ys);
__attribute__((target("avx2,f16c"))) void eak_w2p_avx2(const uint8_t *p, const eak_act_block *x, size_t xs, int nt,
                                                      int ng, int cpg, float *y, size_t ys);
__attribute__((target("avx2,f16c,avxvnni"))) void eak_w2p_avxvnni(const uint8_t *p, const eak_act_block *x, size_t xs,
                                                                 int nt, int ng, int cpg, float *y, size_t ys);
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void eak_w2p_vnni512(const uint8_t *p, const eak_act_block *x,
                                                                           size_t xs, int nt, int ng, int cpg,
                                                                           float *y, size_t ys);
#elif defined(__aarch64__)
void eak_w2_quad_neon(const uint8_t *const r[4], const eak_act_block *x, size_t xs, int nt, int ng, int cpg,
                      const float *h2f, float *y, size_t ys);
__attribute__((target("arch=armv8.2-a+dotprod"))) void eak_w2_quad_dotprod(const uint8_t *const r[4],
                                                                           const eak_act_block *x, size_t xs, int nt,
                                                                           int ng, int cpg, const float *h2f,
                                                                           float *y, size_t ys);
void eak_w2p_neon(const uint8_t *p, const eak_act_block *x, size_t xs, int nt, int ng, int cpg, float *y, size_t ys);
__attribute__((target("arch=armv8.2-a+dotprod"))) void eak_w2p_dotprod(const uint8_t *p, const eak_act_block *x,
                                                                       size_t xs, int nt, int ng, int cpg, float *y,
                                                                       size_t ys);
#endif
#endif
