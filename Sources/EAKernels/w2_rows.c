/* W2 row kernels (the format: ea_kernels.h), row dequantization and the four-row dispatch.
 * W2 has its own lane order (not the eight quad lanes of quant_dot.c): per row two float
 * accumulators, one for elements 0-15 and one for 16-31 of every 32-element block, updated block by
 * block as lo = lo + (d * dx) * (float)L_lo (L: the exact int32 sum of code * x over those 16
 * elements), the offset term m = m + mn * s block by block, and y = (lo + hi) + m. Two sums per
 * block instead of eight let the SIMD kernels gather four rows' integer sums into one vector (x86:
 * products summed vertically, one horizontal add per token; NEON dotprod: sdot by lane, no
 * reduction at all) and do the float work of four rows in one multiply and add. Decode and prefill run the
 * same kernels (one to four tokens per pass), so a token's result does not depend on its batch. */
#include "ea_kernels.h"
#include "w2.h"
#include "cpu.h"
#include "team.h"

static inline float f16(const uint8_t *p) { return eak_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

size_t eak_w2_row_bytes(int cols, int group) {
    if (group < 32 || group % 32 != 0 || cols <= 0 || cols % group != 0) return 0;
    return (size_t)(cols / group) * (size_t)(4 + group / 4);
}

int eak_w2_dequantize_row(const void *row, float *dst, int cols, int group) {
    if (eak_w2_row_bytes(cols, group) == 0) return -1;
    const uint8_t *p = (const uint8_t *)row;
    for (int g = 0; g < cols / group; ++g, p += 4 + group / 4) {
        const float d = f16(p), m = f16(p + 2);
        for (int c = 0; c < group / 32; ++c) {
            const uint8_t *q = p + 4 + 8 * c;
            for (int j = 0; j < 32; ++j) *dst++ = (float)((q[j & 7] >> (2 * (j >> 3))) & 3) * d + m;
        }
    }
    return 0;
}

static inline int w2_code(const uint8_t *chunk, int j) { return (chunk[j & 7] >> (2 * (j >> 3))) & 3; }

float eak_w2_row_generic(const uint8_t *row, const eak_act_block *xa, int ng, int cpg, const float *h2f) {
    float lo = 0.0f, hi = 0.0f, m = 0.0f;
    for (int g = 0, b = 0; g < ng; ++g, row += 4 + 8 * cpg) {
        const float d = h2f[(uint16_t)(row[0] | (row[1] << 8))], mn = h2f[(uint16_t)(row[2] | (row[3] << 8))];
        for (int c = 0; c < cpg; ++c, ++b) {
            const uint8_t *chunk = row + 4 + 8 * c;
            int32_t l0 = 0, l1 = 0;
            for (int j = 0; j < 16; ++j) {
                l0 += w2_code(chunk, j) * xa[b].qs[j];
                l1 += w2_code(chunk, j + 16) * xa[b].qs[j + 16];
            }
            const float sc = d * xa[b].d;
            lo = lo + sc * (float)l0;
            hi = hi + sc * (float)l1;
            m = m + mn * xa[b].s;
        }
    }
    return (lo + hi) + m;
}

float eak_w2_row_ref(const uint8_t *row, const eak_act_block *xa, int ng, int cpg) {
    return eak_w2_row_generic(row, xa, ng, cpg, eak_f16_table());
}

void eak_w2_quad_generic(const uint8_t *const r[4], const eak_act_block *x, size_t xs, int nt, int ng, int cpg,
                         const float *h2f, float *y, size_t ys) {
    for (int t = 0; t < nt; ++t)
        for (int k = 0; k < 4; ++k) y[(size_t)t * ys + k] = eak_w2_row_generic(r[k], x + (size_t)t * xs, ng, cpg, h2f);
}

int eak_w2_variants(eak_w2_quad_fn quad[4], eak_w2p_fn panel[4], const char *name[4]) {
    static const struct {
        int (*has)(void);
        eak_w2_quad_fn quad;
        eak_w2p_fn panel;
        const char *name;
    } forms[] = {
#if defined(__x86_64__)
        { eak_cpu_avx2, eak_w2_quad_avx2, eak_w2p_avx2, "avx2" },
        /* both VNNI forms where both exist: the EVEX one is dispatched, it is the faster in prefill */
        { eak_cpu_avxvnni, eak_w2_quad_avxvnni, eak_w2p_avxvnni, "avx-vnni" },
        { eak_cpu_avx512, eak_w2_quad_vnni512, eak_w2p_vnni512, "avx512-vnni" },
#elif defined(__aarch64__)
        { eak_cpu_neon, eak_w2_quad_neon, eak_w2p_neon, "neon" },
        { eak_cpu_neon_dotprod, eak_w2_quad_dotprod, eak_w2p_dotprod, "neon-dotprod" },
#endif
        { NULL, NULL, NULL, NULL }
    };
    int n = 0;
    for (int i = 0; forms[i].has; ++i)
        if (forms[i].has()) {
            quad[n] = forms[i].quad;
            panel[n] = forms[i].panel;
            name[n++] = forms[i].name;
        }
    return n;
}

const char *eak_w2_pick(eak_w2_quad_fn *quad, eak_w2p_fn *panel) {
    eak_w2_quad_fn q[4];
    eak_w2p_fn p[4];
    const char *nm[4];
    const int n = eak_generic_forced() ? 0 : eak_w2_variants(q, p, nm);
    if (quad) *quad = n ? q[n - 1] : eak_w2_quad_generic;
    if (panel) *panel = n ? p[n - 1] : eak_w2p_generic;
    return n ? nm[n - 1] : "generic";
}

const char *eak_w2_kernel_name(void) { return eak_w2_pick(NULL, NULL); }

#define W2_PASS_TOKENS 4 /* tokens per kernel call (the codes of a block unpacked once for them) */
#define W2_TOKEN_TILE 32 /* prefill: tokens per pass over a thread's rows (their activations stay in cache) */

void eak_matmul_w2(const void *w, size_t row_bytes, int rows, int cols, int group,
                   const eak_act_block *xq, int n_tok, float *y, int n_threads) {
    eak_w2_quad_fn quad;
    eak_w2_pick(&quad, NULL);
    const float *h2f = eak_f16_table();
    if (eak_w2_row_bytes(cols, group) == 0) return; /* callers validate; never read out of bounds */
    const int cpg = group / 32, ng = cols / group, nb_all = cols / 32;
    if (n_threads < 1) n_threads = 1;
    const int eak_nt = n_threads;
    EAK_PARALLEL(n_threads > 1,
    const int r_lo = eak_team_lo(rows), r_hi = eak_team_hi(rows);
    for (int t0 = 0; t0 < n_tok; t0 += W2_TOKEN_TILE) {
        const int t_end = n_tok - t0 < W2_TOKEN_TILE ? n_tok : t0 + W2_TOKEN_TILE;
        for (int r = r_lo; r < r_hi; r += 4) {
            const int nr = r_hi - r < 4 ? r_hi - r : 4;
            const uint8_t *rp[4];
            for (int k = 0; k < 4; ++k) rp[k] = (const uint8_t *)w + (size_t)(r + (k < nr ? k : nr - 1)) * row_bytes;
            for (int t = t0; t < t_end; t += W2_PASS_TOKENS) {
                const int nt = t_end - t >= W2_PASS_TOKENS ? W2_PASS_TOKENS : t_end - t;
                const eak_act_block *x = xq + (size_t)t * nb_all;
                if (nr == 4) {
                    quad(rp, x, (size_t)nb_all, nt, ng, cpg, h2f, y + (size_t)t * rows + r, (size_t)rows);
                } else {
                    float tmp[4 * W2_PASS_TOKENS];
                    quad(rp, x, (size_t)nb_all, nt, ng, cpg, h2f, tmp, 4);
                    for (int u = 0; u < nt; ++u)
                        for (int k = 0; k < nr; ++k) y[(size_t)(t + u) * rows + r + k] = tmp[u * 4 + k];
                }
            }
        }
    });
}
