/* Q4_1 panels: packing, row access, and the decode product over 16 rows at a time (the layout is
 * described in q4_panel.h and ea_kernels.h). Prefill goes through the row kernels (quant_dot.c),
 * rebuilding each row first. */
#include "ea_kernels.h"
#include "q4_panel.h"
#include "quant_dot.h"
#include "cpu.h"
#include "team.h"
#include <string.h>

void eak_q4p_row(const void *w, size_t row_bytes, int r, void *out) { q4p_row(w, row_bytes, r, out); }

int eak_q4p_pack_panels(void *w, size_t row_bytes, int rows, int cols, void *scratch) {
    if (!w || !scratch || rows <= 0 || rows % Q4P != 0 || cols <= 0 || cols % 32 != 0 || cols / 32 > EAK_Q8_MAXB ||
        row_bytes != (size_t)(cols / 32) * 20)
        return -1;
    const int nb = cols / 32;
    for (int p0 = 0; p0 < rows; p0 += Q4P) {
        uint8_t *pan = (uint8_t *)w + (size_t)p0 * row_bytes;
        memcpy(scratch, pan, Q4P * row_bytes);
        for (int k = 0; k < Q4P; ++k)
            for (int b = 0; b < nb; ++b) {
                const uint8_t *blk = (const uint8_t *)scratch + (size_t)k * row_bytes + (size_t)b * 20;
                uint8_t *o = pan + (size_t)b * Q4P_COL;
                memcpy(o + 2 * k, blk, 2);
                memcpy(o + 32 + 2 * k, blk + 2, 2);
                memcpy(o + 64 + 16 * k, blk + 4, 16);
            }
    }
    return 0;
}

int eak_q4p_variants(eak_q4p_fn *f, const char **name) {
    int n = 0;
#if defined(__x86_64__)
    if (eak_use_avx512()) { f[n] = eak_q4p_vnni512; name[n++] = "avx512-vnni"; }
    if (eak_use_avx2()) { f[n] = eak_q4p_avx2; name[n++] = "avx2"; }
#elif defined(__aarch64__)
    if (eak_use_neon_dotprod()) { f[n] = eak_q4p_dotprod; name[n++] = "neon-dotprod"; }
    if (eak_use_neon()) { f[n] = eak_q4p_neon; name[n++] = "neon"; }
#endif
    (void)f; (void)name;
    return n;
}

void eak_matmul_q4p(const void *w, size_t row_bytes, int rows, int cols, const eak_act_block *xq, int n_tok,
                    float *y, int n_threads) {
    eak_q4p_fn f[3];
    const char *nm[3];
    if (n_tok != 1 || eak_q4p_variants(f, nm) == 0) {
        eak_matmul_q8_rows(EAK_Q4_1, w, row_bytes, rows, cols, xq, n_tok, y, n_threads, 1);
        return;
    }
    const eak_q4p_fn k = f[0];
    const int np = rows / Q4P, nb = cols / 32;
    const int eak_nt = n_threads < 1 ? 1 : n_threads;
    EAK_PARALLEL(eak_nt > 1,
    for (int p = eak_team_lo(np), pe = eak_team_hi(np); p < pe; ++p)
        k((const uint8_t *)w + (size_t)p * Q4P * row_bytes, xq, nb, y + (size_t)p * Q4P););
}

const char *eak_q4p_kernel_name(void) {
    eak_q4p_fn f[3];
    const char *nm[3];
    return eak_q4p_variants(f, nm) ? nm[0] : "generic";
}
