/* Integer matrix product: weights in GGUF's 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)
 * times 8-bit activation blocks (act_quant.c). Each weight row is unpacked to int8 once per call
 * and reused by every token; products are exact int32 sums of four, accumulated in eight float
 * lanes in one fixed order, so the AVX2, AVX512-VNNI, NEON, NEON dotprod and generic forms give
 * bit-identical results. */
#include "ea_kernels.h"
#include "quant_dot.h"
#include "q4_panel.h"
#include "cpu.h"
#include "team.h"
#include <string.h>

float eak_lanes_generic(const int8_t *wq, const eak_act_block *xa, const float *dw, int nb) {
    float acc[8] = {0};
    for (int b = 0; b < nb; ++b) {
        const int8_t *w = wq + (size_t)b * 32, *x = xa[b].qs;
        const float sc = dw[b] * xa[b].d;
        for (int m = 0; m < 8; ++m) {
            int32_t l = w[4 * m] * x[4 * m] + w[4 * m + 1] * x[4 * m + 1] + w[4 * m + 2] * x[4 * m + 2] + w[4 * m + 3] * x[4 * m + 3];
            acc[m] = acc[m] + sc * (float)l;
        }
    }
    return eak_reduce8(acc);
}

void eak_q8_pick(eak_q8_kernels *k) {
    const eak_q8_kernels generic = { eak_lanes_generic, NULL, NULL, "generic" };
    *k = generic;
#if defined(__x86_64__)
    if (eak_use_avx2()) *k = (eak_q8_kernels){ eak_lanes_avx2, eak_unpack_row_avx2, eak_fused_avx2, "avx2" };
#elif defined(__aarch64__)
    if (eak_use_neon_dotprod()) *k = (eak_q8_kernels){ eak_lanes_dotprod, eak_unpack_row_neon, eak_fused_dotprod, "neon-dotprod" };
    else if (eak_use_neon()) *k = (eak_q8_kernels){ eak_lanes_neon, eak_unpack_row_neon, eak_fused_neon, "neon" };
#endif
}

const char *eak_idot_name(void) {
    eak_q8_kernels k;
    eak_q8_pick(&k);
    return k.name;
}

/* Adds the products of nr (1 or 2) unpacked rows (row k: wq + k * chunk * 32, scales dw + k * chunk,
 * offsets mw + k * chunk or none) with blocks b0 .. b0 + nb of every token to y (token t, row r + k at
 * y[t * rows + r + k]): two rows through the tile, one row four tokens at a time (AVX2), the rest one
 * token at a time. off: the unsigned-code offset of the tile (unused for one row). */
static void rows_times_tokens(eak_lanes_fn lanes, int nr, int chunk, const int8_t *wq, const float *dw, const float *mw,
                              int off, const eak_act_block *xq, int nb_all, int b0, int nb, int n_tok, float *y,
                              int rows, int r) {
    int t = 0;
#if defined(__x86_64__)
    t = eak_q8_tokens4_x86(lanes, nr, chunk, wq, dw, mw, off, xq, nb_all, b0, nb, n_tok, y, rows, r);
#else
    (void)off;
#endif
    for (; t < n_tok; ++t) {
        const eak_act_block *xa = xq + (size_t)t * nb_all + b0;
        for (int k = 0; k < nr; ++k) {
            float v = lanes(wq + (size_t)k * chunk * 32, xa, dw + k * chunk, nb);
            if (mw) {
                float m = 0.0f;
                for (int b = 0; b < nb; ++b) m = m + mw[k * chunk + b] * xa[b].s;
                v = v + m;
            }
            y[(size_t)t * rows + r + k] += v;
        }
    }
}

/* panels (Q4_1 only): w is in Q4_1 panels; each row (pair) is first rebuilt in the row layout on
 * the stack, then goes through the same steps, so results equal the row layout's bit for bit. */
void eak_matmul_q8_rows(int type, const void *w, size_t row_bytes, int rows, int cols, const eak_act_block *xq,
                        int n_tok, float *y, int n_threads, int panels) {
    eak_q8_kernels kern;
    eak_q8_pick(&kern);
    const eak_lanes_fn lanes = kern.lanes;
    const eak_unpack_fn unpack = kern.unpack;
    const eak_fused_fn fused = kern.fused;
    const float *h2f = eak_f16_table();
    const int nb_all = cols / 32;
    const uint32_t bb = eak_type_block_bytes(type);
    const int has_min = type == EAK_Q4_1 || type == EAK_Q5_1;
    if (n_threads < 1) n_threads = 1;
    const int eak_nt = n_threads;
    /* unsigned-code offset for the two-row prefill tile; -1: Q8_0 (signed bytes, one row at a time) */
    const int off = type == EAK_Q4_0 ? 8 : type == EAK_Q5_0 ? 16 : type == EAK_Q8_0 ? -1 : 0;
    (void)off;
#if defined(__x86_64__)
    if (!panels && n_tok == 1 && nb_all <= EAK_Q8_VNNI_MAXB && (type == EAK_Q8_0 || type == EAK_Q4_0 || type == EAK_Q4_1) &&
        eak_use_vnni512()) {
        eak_q8_decode_vnni(type, w, row_bytes, rows, xq, nb_all, h2f, y, n_threads);
        return;
    }
#endif
    EAK_PARALLEL(n_threads > 1,
    for (int r = eak_team_lo(rows), r_end = eak_team_hi(rows), nr = 1; r < r_end; r += nr) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
        /* one row uses all of it; two rows (the prefill tile) take half each */
        int8_t wq[EAK_Q8_MAXB * 32];
        float dw[EAK_Q8_MAXB], mw[EAK_Q8_MAXB];
        uint8_t rebuilt[panels ? 2 * row_bytes : 1];
        if (panels) {
            q4p_row(w, row_bytes, r, rebuilt);
            if (r + 1 < r_end) q4p_row(w, row_bytes, r + 1, rebuilt + row_bytes);
            row = rebuilt;
        }
        nr = 1;
        if (n_tok == 1 && fused && nb_all <= EAK_Q8_MAXB) {
            float v;
            if (fused(type, row, xq, nb_all, h2f, &v)) {
                y[r] = v;
                continue;
            }
        }
#if defined(__x86_64__)
        if (lanes == eak_lanes_avx2 && n_tok >= 4 && off >= 0 && r + 1 < r_end) nr = 2;
#endif
        const int chunk = EAK_Q8_MAXB / nr;
        for (int k = 0; k < nr; ++k)
            for (int t = 0; t < n_tok; ++t) y[(size_t)t * rows + r + k] = 0.0f;
        for (int b0 = 0; b0 < nb_all; b0 += chunk) {
            const int nb = nb_all - b0 < chunk ? nb_all - b0 : chunk;
            /* decode the rows once for all tokens: int8 values and the block scales */
            for (int k = 0; k < nr; ++k) {
                const uint8_t *rb = row + (size_t)k * row_bytes + (size_t)b0 * bb;
                int8_t *wk = wq + (size_t)k * chunk * 32;
                if (!unpack || !unpack(type, rb, nb, wk))
                    for (int b = 0; b < nb; ++b) unpack_block(type, rb + (size_t)b * bb, wk + (size_t)b * 32);
                for (int b = 0; b < nb; ++b) {
                    const uint8_t *blk = rb + (size_t)b * bb;
                    dw[k * chunk + b] = h2f[(uint16_t)(blk[0] | (blk[1] << 8))];
                    mw[k * chunk + b] = has_min ? h2f[(uint16_t)(blk[2] | (blk[3] << 8))] : 0.0f;
                }
            }
            rows_times_tokens(lanes, nr, chunk, wq, dw, has_min ? mw : NULL, off, xq, nb_all, b0, nb, n_tok, y, rows, r);
        }
    });
}

void eak_matmul_q8(int type, const void *w, size_t row_bytes, int rows, int cols,
                   const eak_act_block *xq, int n_tok, float *y, int n_threads) {
    eak_matmul_q8_rows(type, w, row_bytes, rows, cols, xq, n_tok, y, n_threads, 0);
}
