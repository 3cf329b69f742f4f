/* Float matrix product over weights stored in any GGUF type: each weight row is decoded to float once
 * (in segments, on the stack) and dotted with every token of the batch, so prefill reads the weights
 * once per batch. Parallel over output rows. The dot product has a generic version and SIMD versions
 * (AVX2 on x86_64, NEON on aarch64) chosen at run time, all with one summation order. */
#include "ea_kernels.h"
#include "matmul_f32.h"
#include "cpu.h"
#include "team.h"
#include <string.h>

#define SEG 4096 /* columns decoded at a time: 16 KiB of stack per thread */

/* Every version computes the same thing in the same order, so host and board agree bit for bit:
 * 8 lanes, lane k sums elements i = k (mod 8) of the 8-aligned prefix with separate multiply and add
 * (no FMA); the lanes reduce as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)); the tail adds in order. */
float eak_dot_f32(const float *w, const float *x, int n) {
    float l[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) l[k] = l[k] + w[i + k] * x[i + k];
    float r = eak_reduce8(l);
    for (; i < n; ++i) r = r + w[i] * x[i];
    return r;
}

static void dot4_generic(const float *w, const float *x0, const float *x1, const float *x2,
                         const float *x3, int n, float acc[4]) {
    acc[0] += eak_dot_f32(w, x0, n);
    acc[1] += eak_dot_f32(w, x1, n);
    acc[2] += eak_dot_f32(w, x2, n);
    acc[3] += eak_dot_f32(w, x3, n);
}

void eak_matmul(int type, const void *w, size_t row_bytes, int rows, int cols, const float *x,
                int n_tok, float *y, int n_threads) {
    const uint32_t be = eak_type_block_elems(type), bb = eak_type_block_bytes(type);
    if (be == 0 || cols % be != 0) return; /* the caller validated; keep the kernel total */
    if (n_threads < 1) n_threads = 1;
    const eak_dot4_fn dot4 = EAK_PICK(dot4_generic, eak_dot4_avx2, eak_dot4_neon);
    const eak_dot1_fn dot1 = EAK_PICK(eak_dot_f32, eak_dot1_avx2, eak_dot1_neon);
    /* a segment holds a whole number of blocks */
    const int seg = (int)(SEG / be * be);
    const int eak_nt = n_threads;
    EAK_PARALLEL(n_threads > 1,
    for (int r = eak_team_lo(rows), r_end = eak_team_hi(rows); r < r_end; ++r) {
        float buf[SEG];
        const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes;
        for (int t = 0; t < n_tok; ++t) y[(size_t)t * rows + r] = 0.0f;
        for (int c0 = 0; c0 < cols; c0 += seg) {
            int n = cols - c0 < seg ? cols - c0 : seg;
            const float *wf;
            if (type == EAK_F32) {
                wf = (const float *)row + c0;
            } else {
                eak_dequantize(type, row + (size_t)(c0 / be) * bb, buf, n);
                wf = buf;
            }
            int t = 0;
            for (; t + 4 <= n_tok; t += 4) {
                float acc[4] = {0, 0, 0, 0};
                const float *xt = x + (size_t)t * cols + c0;
                dot4(wf, xt, xt + cols, xt + 2 * (size_t)cols, xt + 3 * (size_t)cols, n, acc);
                for (int k = 0; k < 4; ++k) y[(size_t)(t + k) * rows + r] += acc[k];
            }
            for (; t < n_tok; ++t) y[(size_t)t * rows + r] += dot1(wf, x + (size_t)t * cols + c0, n);
        }
    });
}
