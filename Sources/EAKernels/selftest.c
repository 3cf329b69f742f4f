/* The self test: every SIMD form this CPU has against its generic twin on random data (deterministic
 * from the seed), through each kernel family's pick and variants functions. */
#include "ea_kernels.h"
#include "act_quant.h"
#include "quant_dot.h"
#include "q4_panel.h"
#include "w2.h"
#include "math_kernels.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static uint32_t st_rand(uint32_t *s) { *s = *s * 1664525u + 1013904223u; return *s >> 8; }

/* n random activation blocks: d in (0, 0.1] through fp16, codes in [-127, 127] ([-128, 127] when
 * wide), s = d * (their sum) through fp16. */
static void random_act_blocks(uint32_t *s, eak_act_block *o, int n, int wide, const float *h2f) {
    for (int i = 0; i < n; ++i) {
        o[i].d = h2f[eak_f32_to_f16((float)(st_rand(s) % 1000 + 1) * 1e-4f)];
        int sum = 0;
        for (int j = 0; j < 32; ++j) {
            o[i].qs[j] = (int8_t)(wide ? (int)(st_rand(s) % 256) - 128 : (int)(st_rand(s) % 255) - 127);
            sum += o[i].qs[j];
        }
        o[i].s = h2f[eak_f32_to_f16(o[i].d * (float)sum)];
    }
}

/* A W2 group header at gp: finite fp16 scale d in (0, 1] and offset m in (-1, 0]. */
static void random_w2_header(uint32_t *s, uint8_t *gp) {
    const uint16_t d = eak_f32_to_f16((float)(st_rand(s) % 1000 + 1) * 1e-3f);
    const uint16_t m = eak_f32_to_f16(-(float)(st_rand(s) % 1000) * 1e-3f);
    gp[0] = (uint8_t)d; gp[1] = (uint8_t)(d >> 8); gp[2] = (uint8_t)m; gp[3] = (uint8_t)(m >> 8);
}

/* Self test: random Q4_1 rows (32 of them: two panels), packed; every panel kernel and the rebuilt
 * rows against the row layout's generic steps. */
static int q4p_self_test(uint32_t *s, char *msg, size_t msg_len) {
    enum { R = 32, NB = 48 };
    static _Thread_local uint8_t rows[R * NB * 20], packed[R * NB * 20], back[NB * 20];
    static _Thread_local int8_t wq[NB * 32];
    static _Thread_local float dw[NB], y[R];
    static _Thread_local eak_act_block xa[NB];
    const float *h2f = eak_f16_table();
    eak_q4p_fn f[3];
    const char *nm[3];
    const int nv = eak_q4p_variants(f, nm);
    static const int nbs[] = { 1, 2, 18, 48 };
    for (int it = 0; it < 4; ++it) {
        const int nb = nbs[it];
        const size_t rb = (size_t)nb * 20;
        random_act_blocks(s, xa, nb, 0, h2f);
        for (size_t i = 0; i < R * rb; ++i) rows[i] = (uint8_t)st_rand(s);
        for (int i = 0; i < R * nb; ++i) { /* finite d and m */
            const uint16_t d = eak_f32_to_f16((float)(st_rand(s) % 1000 + 1) * 1e-3f);
            const uint16_t m = eak_f32_to_f16(((float)(st_rand(s) % 2001) - 1000.0f) * 1e-4f);
            rows[i * 20] = (uint8_t)d; rows[i * 20 + 1] = (uint8_t)(d >> 8);
            rows[i * 20 + 2] = (uint8_t)m; rows[i * 20 + 3] = (uint8_t)(m >> 8);
        }
        memcpy(packed, rows, R * rb);
        uint8_t scratch[Q4P * NB * 20];
        if (eak_q4p_pack_panels(packed, rb, R, nb * 32, scratch) != 0) {
            if (msg) snprintf(msg, msg_len, "Q4_1 panels: packing refused %d blocks", nb);
            return -1;
        }
        for (int r = 0; r < R; ++r) {
            q4p_row(packed, rb, r, back);
            if (memcmp(back, rows + r * rb, rb) != 0) {
                if (msg) snprintf(msg, msg_len, "Q4_1 panels: row %d (%d blocks) rebuilt differs", r, nb);
                return -1;
            }
        }
        for (int v = 0; v < nv; ++v) {
            for (int p = 0; p < R / Q4P; ++p) f[v](packed + (size_t)p * Q4P * rb, xa, nb, y + p * Q4P);
            for (int r = 0; r < R; ++r) {
                const uint8_t *row = rows + r * rb;
                float m = 0.0f;
                for (int b = 0; b < nb; ++b) {
                    unpack_block(EAK_Q4_1, row + b * 20, wq + b * 32);
                    dw[b] = h2f[(uint16_t)(row[b * 20] | (row[b * 20 + 1] << 8))];
                    m = m + h2f[(uint16_t)(row[b * 20 + 2] | (row[b * 20 + 3] << 8))] * xa[b].s;
                }
                const float want = eak_lanes_generic(wq, xa, dw, nb) + m;
                if (memcmp(&want, &y[r], sizeof want) != 0) {
                    if (msg) snprintf(msg, msg_len, "Q4_1 panel kernel %s (%d blocks, row %d): %.9g != generic %.9g",
                                      nm[v], nb, r, y[r], want);
                    return -1;
                }
            }
        }
    }
    return 0;
}

/* ---- self test: every panel variant and the generic panel kernel against the row kernel --------- */

int eak_w2p_self_test(uint32_t seed, char *msg, size_t msg_len) {
    enum { NB = 24, R = EAK_W2_PANEL }; /* up to 768 columns */
    const float *h2f = eak_f16_table();
    static _Thread_local uint8_t rows[R * NB * 12], panel[R * NB * 12], scratch[R * NB * 12];
    static _Thread_local eak_act_block xa[4 * NB];
    uint32_t s = seed ? seed : 1;
    int checks = 0;
    eak_w2p_fn vf[5];
    const char *vn[5];
    eak_w2_quad_fn vq[4];
    const int nv = eak_w2_variants(vq, vf, vn);
    vf[nv] = eak_w2p_generic; vn[nv] = "generic";
    for (int iter = 0; iter < 40; ++iter) {
        /* small groups and the converter's large ones (whole rows up to this buffer's 768 columns) */
        static const int groups[] = { 32, 64, 96, 128, 192, 256, 384, 768 };
        const int group = groups[st_rand(&s) % (sizeof groups / sizeof groups[0])];
        const int ng = 1 + (int)(st_rand(&s) % (NB * 32 / group)), cpg = group / 32, nb = ng * cpg, cols = nb * 32;
        const size_t gb = 4 + 8 * (size_t)cpg, rb = (size_t)ng * gb;
        for (size_t i = 0; i < R * rb; ++i) rows[i] = (uint8_t)st_rand(&s);
        for (int r = 0; r < R; ++r)
            for (int g = 0; g < ng; ++g) random_w2_header(&s, rows + (size_t)r * rb + (size_t)g * gb); /* finite scales */
        random_act_blocks(&s, xa, 4 * nb, 1, h2f); /* four distinct tokens, activations down to -128 */
        memcpy(panel, rows, R * rb);
        if (eak_w2_pack_panels(panel, rb, R, cols, group, scratch) != 0) {
            if (msg) snprintf(msg, msg_len, "W2 panel packing refused %d columns in groups of %d", cols, group);
            return -1;
        }
        /* dequantized rows agree */
        for (int r = 0; r < R; r += 5) {
            float a[NB * 32], b[NB * 32];
            eak_w2_dequantize_row(rows + (size_t)r * rb, a, cols, group);
            eak_w2p_dequantize_row(panel, rb, r, b, cols, group);
            if (memcmp(a, b, sizeof(float) * (size_t)cols) != 0) {
                if (msg) snprintf(msg, msg_len, "W2 panel row %d (group %d) dequantizes differently from the row layout", r, group);
                return -1;
            }
        }
        const int nt = 1 + iter % 4;
        for (int v = 0; v <= nv; ++v) {
            float yv[4 * R];
            vf[v](panel, xa, (size_t)nb, nt, ng, cpg, yv, R);
            for (int t = 0; t < nt; ++t)
                for (int r = 0; r < R; ++r) {
                    const float want = eak_w2_row_ref(rows + (size_t)r * rb, xa + (size_t)t * nb, ng, cpg);
                    if (memcmp(&want, &yv[t * R + r], sizeof want) != 0) {
                        if (msg) snprintf(msg, msg_len, "W2 panel kernel %s (group %d, %d blocks, %d tokens, token %d, row %d): %.9g != row kernel %.9g",
                                          vn[v], group, nb, nt, t, r, yv[t * R + r], want);
                        return -1;
                    }
                }
            checks += nt * R;
        }
    }
    if (msg) snprintf(msg, msg_len, "%d W2 panel results (%d variants, dispatched %s) equal the row kernel's", checks, nv + 1,
                      eak_w2p_kernel_name());
    return 0;
}

/* Self test (from eak_self_test): the dispatched SiLU gate against silu_generic on random values,
 * values around the clamps (-87, 88), infinities and NaN, over ragged lengths. */
int eak_ops_self_test(uint32_t seed, char *msg, size_t msg_len) {
    enum { N = 67 };
    float g[N], u[N], want[N], got[N];
    uint32_t s = seed ? seed : 1;
    for (int iter = 0; iter < 64; ++iter) {
        for (int i = 0; i < N; ++i) {
            s = s * 1664525u + 1013904223u;
            const uint32_t r = s >> 8;
            const float x = ((float)(r % 200001) - 100000.0f) * (iter % 4 == 0 ? 1e-3f : 1e-4f);
            g[i] = (r & 31) == 0 ? (float)((int)(r % 7) - 3) * 29.5f - 0.25f : x; /* near -88, 88 */
            u[i] = ((float)(r % 1999) - 999.0f) * 1e-3f;
        }
        if (iter == 0) { g[0] = INFINITY; g[1] = -INFINITY; g[2] = NAN; g[3] = 87.0f; g[4] = -88.0f; g[5] = -0.0f; }
        const int n = N - iter % 8;
        silu_generic(want, g, u, 0, n);
        eak_silu_pick()(got, g, u, 0, n);
        for (int i = 0; i < n; ++i)
            if (memcmp(&want[i], &got[i], sizeof(float)) != 0 && !(want[i] != want[i] && got[i] != got[i])) {
                if (msg) snprintf(msg, msg_len, "SiLU gate: silu(%.9g)*%.9g = %.9g, generic %.9g", g[i], u[i], got[i], want[i]);
                return -1;
            }
    }
    return 0;
}

/* ---- self test: the dispatched SIMD kernels against the generic ones, on this CPU --------------- */

int eak_self_test(uint32_t seed, char *msg, size_t msg_len) {
    enum { NB = 48 }; /* up to 1536 columns */
    eak_q8_kernels q8;
    eak_q8_pick(&q8);
    const eak_lanes_fn picked = q8.lanes;
    const float *h2f = eak_f16_table();
    static _Thread_local int8_t wq[NB * 32];
    static _Thread_local eak_act_block xa[NB];
    static _Thread_local uint8_t row[NB * 40];
    static _Thread_local float dw[NB];
    uint32_t s = seed ? seed : 1;
    int checks = 0;
    for (int iter = 0; iter < 200; ++iter) {
        /* the converter's group sizes: 32-128, and whole or third rows of 576 and 1536 columns */
        static const int groups[] = { 32, 64, 96, 128, 192, 256, 512, 576, 1536 };
        const int group = groups[st_rand(&s) % (sizeof groups / sizeof groups[0])];
        const int ng = 1 + (int)(st_rand(&s) % (NB * 32 / group)), nb = ng * group / 32;
        random_act_blocks(&s, xa, nb, 0, h2f);
        /* activation quantization: random blocks, ties (v * 127 / max|v| exactly k + 1/2), a zero block */
        {
            float v[32];
            const eak_quantize_block_fn f = eak_quantize_block_pick();
            for (int kind = 0; kind < 3; ++kind) {
                const float scale = (float)(1 + st_rand(&s) % 1000) * 1e-3f;
                for (int j = 0; j < 32; ++j)
                    v[j] = kind == 0 ? ((float)(st_rand(&s) % 20001) - 10000.0f) * scale
                         : kind == 1 ? (float)((int)(st_rand(&s) % 255) - 127) * 0.5f : 0.0f;
                if (kind == 1) v[st_rand(&s) % 32] = 63.5f; /* max|v| = 63.5: v * id = 2v */
                eak_act_block want, got;
                eak_quantize_block_generic(v, &want);
                f(v, &got);
                if (memcmp(want.qs, got.qs, 32) != 0 || memcmp(&want.d, &got.d, sizeof want.d) != 0 ||
                    memcmp(&want.s, &got.s, sizeof want.s) != 0) {
                    if (msg) snprintf(msg, msg_len, "activation quantization (block kind %d) differs from the generic one", kind);
                    return -1;
                }
                ++checks;
            }
        }
        /* int8 lanes: any weights in [-128, 127] (Q8_0's range) */
        for (int b = 0; b < nb; ++b) {
            dw[b] = h2f[eak_f32_to_f16((float)(st_rand(&s) % 1000 + 1) * 1e-3f)];
            for (int j = 0; j < 32; ++j) wq[b * 32 + j] = (int8_t)((int)(st_rand(&s) % 256) - 128);
        }
        float a = eak_lanes_generic(wq, xa, dw, nb), b2 = picked(wq, xa, dw, nb);
        if (memcmp(&a, &b2, sizeof a) != 0) {
            if (msg) snprintf(msg, msg_len, "int8 lanes (%s) %.9g != generic %.9g (%d blocks)", eak_idot_name(), b2, a, nb);
            return -1;
        }
        /* W2: a random packed row, one and three tokens, against the generic row */
        const int gb = 4 + group / 4;
        for (int i = 0; i < ng * gb; ++i) row[i] = (uint8_t)st_rand(&s);
        for (int g = 0; g < ng; ++g) random_w2_header(&s, row + g * gb);
        const int cpg = group / 32;
        const float ref = eak_w2_row_generic(row, xa, ng, cpg, h2f);
        float yv = 0.0f;
        eak_matmul_w2(row, (size_t)ng * gb, 1, nb * 32, group, xa, 1, &yv, 1); /* one token, a one-row tail */
        /* three tokens: the two-token pass, then one (same activations each time) */
        static _Thread_local eak_act_block xa3[3 * NB];
        for (int k = 0; k < 3; ++k) memcpy(xa3 + k * nb, xa, sizeof(eak_act_block) * nb);
        float y3[3];
        eak_matmul_w2(row, (size_t)ng * gb, 1, nb * 32, group, xa3, 3, y3, 1);
        if (memcmp(&ref, &yv, sizeof ref) != 0 || memcmp(&ref, &y3[0], sizeof ref) != 0 ||
            memcmp(&ref, &y3[1], sizeof ref) != 0 || memcmp(&ref, &y3[2], sizeof ref) != 0) {
            if (msg) snprintf(msg, msg_len, "W2 kernel (%s, group %d, %d blocks): one token %.9g, three %.9g %.9g %.9g, generic %.9g",
                              eak_w2_kernel_name(), group, nb, yv, y3[0], y3[1], y3[2], ref);
            return -1;
        }
        checks += 3;
        /* six rows in one call, each against the generic row: W2 (four rows through the four-row
         * kernel, two as a tail), then Q8_0 (one-row kernel) against generic unpack + generic lanes */
        {
            enum { R = 6 };
            static _Thread_local uint8_t many[R * NB * 40];
            float yr[R];
            for (int i = 0; i < R * ng * gb; ++i) many[i] = (uint8_t)st_rand(&s);
            for (int r = 0; r < R; ++r)
                for (int g = 0; g < ng; ++g) random_w2_header(&s, many + (size_t)r * ng * gb + (size_t)g * gb);
            eak_matmul_w2(many, (size_t)ng * gb, R, nb * 32, group, xa, 1, yr, 1);
            for (int r = 0; r < R; ++r) {
                const float want = eak_w2_row_generic(many + (size_t)r * ng * gb, xa, ng, cpg, h2f);
                if (memcmp(&want, &yr[r], sizeof want) != 0) {
                    if (msg) snprintf(msg, msg_len, "W2 multi-row kernel (%s, group %d, %d blocks, row %d): %.9g != generic %.9g",
                                      eak_w2_kernel_name(), group, nb, r, yr[r], want);
                    return -1;
                }
            }
            /* every W2 quad variant this CPU has (not only the dispatched one), two distinct tokens */
            random_act_blocks(&s, xa3 + nb, nb, 1, h2f);
            eak_w2_quad_fn vf[4];
            const char *vn[4];
            eak_w2p_fn vp[4];
            const int nv = eak_w2_variants(vf, vp, vn);
            const uint8_t *rp[4];
            for (int k = 0; k < 4; ++k) rp[k] = many + (size_t)(k + 1) * ng * gb; /* W2 rows 1-4 above */
            for (int v = 0; v < nv; ++v) {
                float q[8];
                vf[v](rp, xa3 + nb, (size_t)nb, 2, ng, cpg, h2f, q, 4);
                for (int t = 0; t < 2; ++t)
                    for (int k = 0; k < 4; ++k) {
                        const float want = eak_w2_row_generic(rp[k], xa3 + (size_t)(1 + t) * nb, ng, cpg, h2f);
                        if (memcmp(&want, &q[t * 4 + k], sizeof want) != 0) {
                            if (msg) snprintf(msg, msg_len, "W2 quad kernel %s (group %d, %d blocks, token %d, row %d): %.9g != generic %.9g",
                                              vn[v], group, nb, t, k, q[t * 4 + k], want);
                            return -1;
                        }
                    }
                checks += 8;
            }
            for (int i = 0; i < R * nb * 34; ++i) many[i] = (uint8_t)st_rand(&s);
            for (int i = 0; i < R * nb; ++i) { /* finite scales */
                uint16_t d = eak_f32_to_f16((float)(st_rand(&s) % 1000 + 1) * 1e-3f);
                many[i * 34] = (uint8_t)d; many[i * 34 + 1] = (uint8_t)(d >> 8);
            }
            eak_matmul_q8(EAK_Q8_0, many, (size_t)nb * 34, R, nb * 32, xa, 1, yr, 1);
            for (int r = 0; r < R; ++r) {
                for (int b = 0; b < nb; ++b) {
                    const uint8_t *blk = many + ((size_t)r * nb + b) * 34;
                    unpack_block(EAK_Q8_0, blk, wq + b * 32);
                    dw[b] = h2f[(uint16_t)(blk[0] | (blk[1] << 8))];
                }
                const float want = eak_lanes_generic(wq, xa, dw, nb);
                if (memcmp(&want, &yr[r], sizeof want) != 0) {
                    if (msg) snprintf(msg, msg_len, "Q8_0 multi-row kernel (%s, %d blocks, row %d): %.9g != generic %.9g",
                                      eak_idot_name(), nb, r, yr[r], want);
                    return -1;
                }
            }
            checks += 2 * R;
        }
    }
    char pmsg[200];
    if (eak_w2p_self_test(seed, pmsg, sizeof pmsg) != 0) {
        if (msg) snprintf(msg, msg_len, "%s", pmsg);
        return -1;
    }
    uint32_t qs = seed ? seed : 1;
    if (q4p_self_test(&qs, msg, msg_len) != 0) return -1;
    if (eak_ops_self_test(seed, msg, msg_len) != 0) return -1; /* the SIMD SiLU gate */
    if (msg) snprintf(msg, msg_len, "%d comparisons of the %s integer kernels (W2: %s, panels: %s; Q4_1 panels: %s) against the generic ones: all bit-identical (SiLU gate too); %s",
                      checks, eak_idot_name(), eak_w2_kernel_name(), eak_w2p_kernel_name(), eak_q4p_kernel_name(), pmsg);
    return 0;
}
