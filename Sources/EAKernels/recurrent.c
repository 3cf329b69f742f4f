/*
 * recurrent.c - the constant-memory attention kernels: Aaren's softmax RNN (one learned query per
 * head) and decayed linear attention. See docs/algorithms.md sections 4 and 5 and ea_kernels.h.
 *
 * Both are deterministic whatever the thread count: the Aaren scan is blocked by a fixed number of
 * tokens and threads take whole blocks; linear attention is chunked by a fixed length and threads
 * take whole heads. So host and board (and 1 or 4 threads) print the same numbers.
 */
#include "ea_kernels.h"
#include "team.h"
#include <math.h>
#include <string.h>
#include <omp.h>

/* ---- Aaren -------------------------------------------------------------------------------------- */

/* Tokens per scan block: blocks are the unit of parallel work in prefill. */
#define AAREN_BLOCK 64

/* One head's running tuple (m, u, w[d]) in 2 + d floats. m = -inf marks the empty prefix. */
static inline void aaren_leaf(float *st, float s, const float *v, int32_t d) {
    float m = st[0];
    if (m == -INFINITY) {  /* first element: the tuple becomes the leaf (s, 1, v) */
        st[0] = s;
        st[1] = 1.0f;
        memcpy(st + 2, v, (size_t)d * sizeof(float));
        return;
    }
    float mn = m > s ? m : s;
    float a = eak_exp(m - mn), b = eak_exp(s - mn);
    st[0] = mn;
    st[1] = st[1] * a + b;
    float *w = st + 2;
    for (int32_t i = 0; i < d; i++) w[i] = w[i] * a + v[i] * b;
}

void eak_aaren_combine(float *a, const float *b, int32_t d) {
    if (b[0] == -INFINITY) return;
    if (a[0] == -INFINITY) {
        memcpy(a, b, (size_t)(d + 2) * sizeof(float));
        return;
    }
    float m = a[0] > b[0] ? a[0] : b[0];
    float ea = eak_exp(a[0] - m), eb = eak_exp(b[0] - m);
    a[0] = m;
    a[1] = a[1] * ea + b[1] * eb;
    for (int32_t i = 0; i < d; i++) a[2 + i] = a[2 + i] * ea + b[2 + i] * eb;
}

static inline float dot(const float *a, const float *b, int32_t n) {
    float s = 0;
    for (int32_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Runs tokens [t0, t1) of head h from tuple st (updated in place); writes w/u per token if out. */
static void aaren_run(const float *query, const float *k, const float *v, int32_t t0, int32_t t1, int32_t h,
                      int32_t n_head, int32_t d, float scale, float *st, float *out) {
    const int64_t row = (int64_t)n_head * d;
    const float *qh = query + (int64_t)h * d;
    for (int32_t t = t0; t < t1; t++) {
        const int64_t off = t * row + (int64_t)h * d;
        aaren_leaf(st, scale * dot(qh, k + off, d), v + off, d);
        if (out) {
            float inv = 1.0f / st[1];
            for (int32_t i = 0; i < d; i++) out[off + i] = st[2 + i] * inv;
        }
    }
}

int64_t eak_aaren_scratch_floats(int32_t n, int32_t n_head, int32_t head_dim) {
    int64_t blocks = ((int64_t)n + AAREN_BLOCK - 1) / AAREN_BLOCK;
    return blocks * n_head * (int64_t)(head_dim + 2);
}

void eak_aaren(const float *query, const float *k, const float *v, int32_t n, int32_t n_head, int32_t head_dim,
               float scale, float *state, float *out, float *scratch, int32_t n_threads) {
    const int32_t d = head_dim, tw = d + 2;
    const int32_t nb = (n + AAREN_BLOCK - 1) / AAREN_BLOCK;
    if (nb <= 1) {  /* decode and short batches: the recurrence itself */
        for (int32_t h = 0; h < n_head; h++) aaren_run(query, k, v, 0, n, h, n_head, d, scale, state + h * tw, out);
        return;
    }
    /* 1. each block's own total, from the empty tuple (parallel over blocks x heads) */
    const int32_t items = nb * n_head;
    const int eak_nt = n_threads > 0 ? n_threads : 1;
    EAK_PARALLEL(n_threads > 1,
    for (int32_t it = eak_team_id(); it < items; it += eak_team_size()) {
        int32_t b = it / n_head, h = it % n_head;
        float *st = scratch + (int64_t)it * tw;
        st[0] = -INFINITY;
        st[1] = 0;
        memset(st + 2, 0, (size_t)d * sizeof(float));
        int32_t t0 = b * AAREN_BLOCK, t1 = t0 + AAREN_BLOCK < n ? t0 + AAREN_BLOCK : n;
        aaren_run(query, k, v, t0, t1, h, n_head, d, scale, st, NULL);
    });
    /* 2. exclusive prefix of the block totals, seeded with the carried state (serial, nb steps per
     *    head): slot (b, h) becomes the tuple before block b; the state becomes the tuple after all */
    float tmp[514];
    for (int32_t h = 0; h < n_head; h++) {
        float *carry = state + h * tw;
        for (int32_t b = 0; b < nb; b++) {
            float *slot = scratch + ((int64_t)b * n_head + h) * tw;
            memcpy(tmp, slot, (size_t)tw * sizeof(float));
            memcpy(slot, carry, (size_t)tw * sizeof(float));
            eak_aaren_combine(carry, tmp, d);
        }
    }
    /* 3. every block again from its carried-in tuple, writing outputs (parallel) */
    EAK_PARALLEL(n_threads > 1,
    for (int32_t it = eak_team_id(); it < items; it += eak_team_size()) {
        int32_t b = it / n_head, h = it % n_head;
        int32_t t0 = b * AAREN_BLOCK, t1 = t0 + AAREN_BLOCK < n ? t0 + AAREN_BLOCK : n;
        aaren_run(query, k, v, t0, t1, h, n_head, d, scale, scratch + (int64_t)it * tw, out);
    });
}

/* ---- Decayed linear attention --------------------------------------------------------------------- */

void eak_linear_attention(const float *q, const float *k, const float *v, int32_t n, int32_t n_head,
                          int32_t head_dim, const float *decay, float *state, float *out, int32_t chunk,
                          int32_t n_threads) {
    const int32_t d = head_dim;
    const int64_t row = (int64_t)n_head * d;
    if (chunk < 1) chunk = 1;
    const int eak_nt = n_threads > 0 ? n_threads : 1;
    EAK_PARALLEL(n_threads > 1 && n_head > 1,
    for (int32_t h = eak_team_id(); h < n_head; h += eak_team_size()) {
        const float lam = decay[h];
        float *S = state + (int64_t)h * d * d; /* S[i][j] = sum_s lam^(t-s) k_s[i] v_s[j] */
        for (int32_t c0 = 0; c0 < n; c0 += chunk) {
            const int32_t L = n - c0 < chunk ? n - c0 : chunk;
            /* outputs: the inter-chunk part lam^(i+1) q_i S_prev, then the masked intra-chunk part
             * sum_{j<=i} lam^(i-j) (q_i . k_j) v_j; powers of lam stay within one chunk */
            float pw = lam;
            for (int32_t i = 0; i < L; i++, pw *= lam) {
                const float *qi = q + (c0 + i) * row + (int64_t)h * d;
                float *o = out + (c0 + i) * row + (int64_t)h * d;
                for (int32_t j = 0; j < d; j++) o[j] = 0;
                for (int32_t a = 0; a < d; a++) {
                    const float qa = qi[a] * pw;
                    const float *Sa = S + (int64_t)a * d;
                    for (int32_t j = 0; j < d; j++) o[j] += qa * Sa[j];
                }
                float dec = 1;
                for (int32_t jt = i; jt >= 0; jt--, dec *= lam) {
                    const float *kj = k + (c0 + jt) * row + (int64_t)h * d;
                    const float *vj = v + (c0 + jt) * row + (int64_t)h * d;
                    const float c = dec * dot(qi, kj, d);
                    for (int32_t j = 0; j < d; j++) o[j] += c * vj[j];
                }
            }
            /* state: S <- lam^L S + sum_j lam^(L-1-j) k_j^T v_j */
            float pl = 1;
            for (int32_t i = 0; i < L; i++) pl *= lam;
            for (int64_t e = 0; e < (int64_t)d * d; e++) S[e] *= pl;
            float dec = 1;
            for (int32_t jt = L - 1; jt >= 0; jt--, dec *= lam) {
                const float *kj = k + (c0 + jt) * row + (int64_t)h * d;
                const float *vj = v + (c0 + jt) * row + (int64_t)h * d;
                for (int32_t a = 0; a < d; a++) {
                    const float ka = dec * kj[a];
                    float *Sa = S + (int64_t)a * d;
                    for (int32_t j = 0; j < d; j++) Sa[j] += ka * vj[j];
                }
            }
        }
    });
}

/* ---- Elementwise helpers of the recurrent layers --------------------------------------------------- */

void eak_feature_map(float *x, int64_t n, int32_t kind) {
    if (kind == 1) {  /* SiLU */
        for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + eak_exp(-x[i]));
    } else if (kind == 2) {  /* ELU + 1: positive features */
        for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] + 1.0f : eak_exp(x[i]);
    }
}

void eak_sigmoid_mul(float *x, const float *g, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] *= 1.0f / (1.0f + eak_exp(-g[i]));
}
