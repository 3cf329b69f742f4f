/* W2 panels: sixteen W2 rows interleaved so that a SIMD register holds one 32-bit lane per row.
 *
 * The row layout (w2_rows.c) keeps each row's codes together, so every kernel over it has to
 * add lanes across a vector (horizontal adds) to get one row's sum. A panel stores the codes of 16
 * rows side by side, four consecutive elements of a row in one 32-bit lane, so that a dot product of
 * unsigned code bytes with signed activation bytes (x86 vpdpbusd, AVX2 maddubs + madd, ARM sdot by
 * lane) leaves each row's sum in its own lane: no horizontal add anywhere, and one broadcast of four
 * activation bytes serves all 16 rows. The model loader repacks W2 matrices whose row count is a
 * multiple of 16 into panels in place (same bytes, other order), so this costs no memory.
 *
 * Results are the row kernels' bit for bit: per 32-element block the same exact int32 sums over
 * elements 0-15 and 16-31, and per row the same float operations in the same order
 * (eak_w2_row_generic in w2_rows.c), which the self test checks for every variant on this CPU. */
#include "ea_kernels.h"
#include "w2.h"
#include "cpu.h"
#include "team.h"
#include <string.h>

/* Byte (4r + e) of half-vector V_h of a chunk holds, at bits 2j, the code of row r for element
 * 16h + 4j + e (j, e in 0..3). So (V_h >> 2j) & 3 has row r's codes for elements 16h + 4j .. +3 in
 * lane r, matching dword 4h + j of the activation block. */
static inline int w2p_code(const uint8_t *vh, int r, int i) { return (vh[4 * r + (i & 3)] >> (2 * (i >> 2))) & 3; }

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the panel packer reads code bytes as little-endian words"
#endif

int eak_w2_pack_panels(void *w, size_t row_bytes, int rows, int cols, int group, void *scratch) {
    if (!w || !scratch || rows < 0 || rows % EAK_W2_PANEL != 0 || row_bytes == 0 ||
        eak_w2_row_bytes(cols, group) != row_bytes)
        return -1;
    const int ng = cols / group, cpg = group / 32;
    const size_t gb = 4 + 8 * (size_t)cpg, pb = EAK_W2_PANEL * row_bytes;
    uint8_t *tmp = (uint8_t *)scratch;
    for (int p = 0; p < rows / EAK_W2_PANEL; ++p) {
        uint8_t *base = (uint8_t *)w + (size_t)p * pb;
        memcpy(tmp, base, pb);
        for (int g = 0; g < ng; ++g) {
            uint8_t *q = base + (size_t)g * EAK_W2_PANEL * gb;
            for (int r = 0; r < EAK_W2_PANEL; ++r) {
                const uint8_t *src = tmp + (size_t)r * row_bytes + (size_t)g * gb;
                q[2 * r] = src[0]; q[2 * r + 1] = src[1];           /* d */
                q[32 + 2 * r] = src[2]; q[32 + 2 * r + 1] = src[3]; /* m */
                for (int c = 0; c < cpg; ++c) {
                    /* element i = 16h + 4j + e sits in chunk byte 4(j & 1) + e at bit 4h + 2(j >> 1): the
                     * four bytes e = 0..3 of V_h's lane r come from the chunk's two dwords at once */
                    uint32_t lo, hi;
                    memcpy(&lo, src + 4 + 8 * c, 4);
                    memcpy(&hi, src + 8 + 8 * c, 4);
                    const uint32_t M = 0x03030303u;
                    for (int h = 0; h < 2; ++h) {
                        const int s0 = 4 * h, s1 = 4 * h + 2;
                        const uint32_t lane = ((lo >> s0) & M) | (((hi >> s0) & M) << 2) | (((lo >> s1) & M) << 4) |
                                              (((hi >> s1) & M) << 6);
                        memcpy(q + 64 + 128 * (size_t)c + 64 * h + 4 * r, &lane, 4); /* little-endian: byte e = element e */
                    }
                }
            }
        }
    }
    return 0;
}

int eak_w2p_dequantize_row(const void *w, size_t row_bytes, int r, float *dst, int cols, int group) {
    if (r < 0 || eak_w2_row_bytes(cols, group) != row_bytes || row_bytes == 0) return -1;
    const float *h2f = eak_f16_table();
    const int ng = cols / group, cpg = group / 32, k = r % EAK_W2_PANEL;
    const size_t gb = EAK_W2_PANEL * (4 + 8 * (size_t)cpg);
    const uint8_t *p = (const uint8_t *)w + (size_t)(r / EAK_W2_PANEL) * EAK_W2_PANEL * row_bytes;
    for (int g = 0; g < ng; ++g) {
        const uint8_t *q = p + (size_t)g * gb;
        const float d = h2f[(uint16_t)(q[2 * k] | (q[2 * k + 1] << 8))];
        const float m = h2f[(uint16_t)(q[32 + 2 * k] | (q[32 + 2 * k + 1] << 8))];
        for (int c = 0; c < cpg; ++c)
            for (int i = 0; i < 32; ++i) *dst++ = (float)w2p_code(q + 64 + 128 * (size_t)c + 64 * (i >> 4), k, i & 15) * d + m;
    }
    return 0;
}

void eak_w2p_generic(const uint8_t *p, const eak_act_block *x, size_t xs, int nt, int ng, int cpg, float *y,
                     size_t ys) {
    const float *h2f = eak_f16_table();
    const size_t gb = EAK_W2_PANEL * (4 + 8 * (size_t)cpg);
    for (int t = 0; t < nt; ++t) {
        const eak_act_block *xa = x + (size_t)t * xs;
        for (int r = 0; r < EAK_W2_PANEL; ++r) {
            float lo = 0.0f, hi = 0.0f, m = 0.0f;
            for (int g = 0, b = 0; g < ng; ++g) {
                const uint8_t *q = p + (size_t)g * gb;
                const float d = h2f[(uint16_t)(q[2 * r] | (q[2 * r + 1] << 8))];
                const float mn = h2f[(uint16_t)(q[32 + 2 * r] | (q[32 + 2 * r + 1] << 8))];
                for (int c = 0; c < cpg; ++c, ++b) {
                    const uint8_t *v = q + 64 + 128 * (size_t)c;
                    int32_t l0 = 0, l1 = 0;
                    for (int i = 0; i < 16; ++i) {
                        l0 += w2p_code(v, r, i) * xa[b].qs[i];
                        l1 += w2p_code(v + 64, r, i) * xa[b].qs[16 + i];
                    }
                    const float sc = d * xa[b].d;
                    lo = lo + sc * (float)l0;
                    hi = hi + sc * (float)l1;
                    m = m + mn * xa[b].s;
                }
            }
            y[(size_t)t * ys + r] = (lo + hi) + m;
        }
    }
}

const char *eak_w2p_kernel_name(void) { return eak_w2_pick(NULL, NULL); }

#define W2P_PASS_TOKENS 4 /* tokens per kernel call (a chunk's codes unpacked once for them) */
#define W2P_TOKEN_TILE 32 /* prefill: tokens per pass over a thread's panels (their activations stay in cache) */

/* One job's panels p_lo..p_hi-1 for every token (token tiles outermost: a tile's activations stay
 * in cache across the panels). */
static void w2p_run(eak_w2p_fn f, const eak_w2p_job *j, int p_lo, int p_hi, int n_tok) {
    const int cpg = j->group / 32, ng = j->cols / j->group, nb = j->cols / 32;
    const size_t pb = EAK_W2_PANEL * j->row_bytes;
    for (int t0 = 0; t0 < n_tok; t0 += W2P_TOKEN_TILE) {
        const int t_end = n_tok - t0 < W2P_TOKEN_TILE ? n_tok : t0 + W2P_TOKEN_TILE;
        for (int p = p_lo; p < p_hi; ++p)
            for (int t = t0; t < t_end; t += W2P_PASS_TOKENS) {
                const int nt = t_end - t >= W2P_PASS_TOKENS ? W2P_PASS_TOKENS : t_end - t;
                f((const uint8_t *)j->w + (size_t)p * pb, j->xq + (size_t)t * nb, (size_t)nb, nt, ng, cpg,
                  j->y + (size_t)t * j->rows + (size_t)p * EAK_W2_PANEL, (size_t)j->rows);
            }
    }
}

static int w2p_job_ok(const eak_w2p_job *j) {
    return j->w && j->xq && j->y && j->rows > 0 && j->rows % EAK_W2_PANEL == 0 && j->row_bytes != 0 &&
           eak_w2_row_bytes(j->cols, j->group) == j->row_bytes;
}

void eak_matmul_w2p_jobs(const eak_w2p_job *a, const eak_w2p_job *b, const eak_w2p_job *c, int n_tok, int n_threads) {
    const eak_w2p_job *jobs[3] = { a, b, c };
    int nj = 0, np[3], total = 0;
    for (int k = 0; k < 3; ++k) {
        if (!jobs[k]) continue;
        if (!w2p_job_ok(jobs[k])) return;
        jobs[nj] = jobs[k];
        np[nj] = jobs[k]->rows / EAK_W2_PANEL;
        total += np[nj++];
    }
    if (nj == 0 || n_tok < 1) return;
    eak_w2p_fn f;
    eak_w2_pick(NULL, &f);
    if (n_threads < 1) n_threads = 1;
    const int eak_nt = n_threads;
    /* the jobs' panels as one range, split in contiguous shares: one region for all of them */
    EAK_PARALLEL(n_threads > 1,
    const int lo = eak_team_lo(total), hi = eak_team_hi(total);
    for (int k = 0, base = 0; k < nj; base += np[k], ++k) {
        const int p_lo = lo > base ? lo - base : 0, p_hi = hi - base < np[k] ? hi - base : np[k];
        if (p_lo < p_hi) w2p_run(f, jobs[k], p_lo, p_hi, n_tok);
    });
}

void eak_matmul_w2p(const void *w, size_t row_bytes, int rows, int cols, int group, const eak_act_block *xq,
                    int n_tok, float *y, int n_threads) {
    const eak_w2p_job j = { w, row_bytes, rows, cols, group, xq, y };
    eak_matmul_w2p_jobs(&j, NULL, NULL, n_tok, n_threads);
}
