/* Quantized KV cache (KV8 / KV4, KIVI-style) and attention that reads it in place.
 *
 * Keys vary per channel, values per token (KIVI), so: keys are quantized per channel over blocks of
 * `group` tokens, values per token over groups of `group` channels. A "record" is fp16 scale d,
 * fp16 offset m and `group` codes of `bits` bits (4: element j in byte j/2, low nibble first;
 * 8: one byte each); value = code * d + m, codes from min/max of the group (asymmetric).
 * The first n_sink positions stay exact (float), and positions of a block that is not complete yet
 * stay in a float ring until it fills. A query at position t reads block b quantized iff the block
 * ends at or before t, so evaluating tokens one by one or in batches gives identical results. */
#include "ea_kernels.h"
#include "kv_quant.h"
#include "cpu.h"
#include "team.h"
#include "span.h"
#include <math.h>
#include <string.h>

#define KVQ_RUN_MIN 2 /* selected keys of a list in one block from which a block pass is cheaper */

size_t eak_kvq_record_bytes(int bits, int group) { return 4 + (size_t)group * (size_t)bits / 8; }

static inline int code_at(const uint8_t *codes, int bits, int j) {
    return bits == 8 ? codes[j] : (codes[j >> 1] >> (4 * (j & 1))) & 15;
}

/* Quantizes n values x[i * stride] into one record. */
static void make_record(const float *x, size_t stride, int n, int bits, uint8_t *rec) {
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; ++i) {
        const float v = x[(size_t)i * stride];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    const int qmax = (1 << bits) - 1;
    const uint16_t dh = eak_f32_to_f16((hi - lo) / (float)qmax), mh = eak_f32_to_f16(lo);
    const float d = eak_f16_to_f32(dh), m = eak_f16_to_f32(mh), id = d > 0 ? 1.0f / d : 0.0f;
    rec[0] = (uint8_t)dh; rec[1] = (uint8_t)(dh >> 8);
    rec[2] = (uint8_t)mh; rec[3] = (uint8_t)(mh >> 8);
    uint8_t *codes = rec + 4;
    if (bits == 4) memset(codes, 0, (size_t)n / 2);
    for (int i = 0; i < n; ++i) {
        float q = nearbyintf((x[(size_t)i * stride] - m) * id);
        int c = q <= 0 ? 0 : (q >= (float)qmax ? qmax : (int)q);
        if (bits == 8) codes[i] = (uint8_t)c;
        else codes[i >> 1] |= (uint8_t)(c << (4 * (i & 1)));
    }
}

static inline const float *ring_row(const eak_kvq *c, const float *ring, int pos) {
    return ring + (size_t)((pos - c->n_sink) % c->ring) * (size_t)c->n_kv_head * c->head_dim;
}

static inline int block_slot(const eak_kvq *c, int b) { return c->block_slots > 0 ? b % c->block_slots : b; }

void eak_kvq_append(const eak_kvq *c, const float *k, const float *v, int pos0, int n_tok, int n_threads) {
    const int kv_dim = c->n_kv_head * c->head_dim, G = c->group, d = c->head_dim;
    const size_t rb = eak_kvq_record_bytes(c->bits, G);
    for (int i = 0; i < n_tok; ++i) {
        const int p = pos0 + i;
        float *dk, *dv;
        if (p < c->n_sink) {
            dk = c->sink_k + (size_t)p * kv_dim;
            dv = c->sink_v + (size_t)p * kv_dim;
        } else {
            dk = (float *)ring_row(c, c->ring_k, p);
            dv = (float *)ring_row(c, c->ring_v, p);
        }
        memcpy(dk, k + (size_t)i * kv_dim, (size_t)kv_dim * sizeof(float));
        memcpy(dv, v + (size_t)i * kv_dim, (size_t)kv_dim * sizeof(float));
    }
    /* blocks completed by this call: b with old_end < S + (b+1)G <= new_end */
    const int end = pos0 + n_tok;
    const int b_first = pos0 > c->n_sink ? (pos0 - c->n_sink) / G : 0;
    const int b_last = end > c->n_sink ? (end - c->n_sink) / G : 0; /* exclusive */
    const int n_items = (b_last - b_first) * c->n_kv_head;
    if (n_items <= 0) return;
    if (n_threads < 1) n_threads = 1;
    const int eak_nt = n_threads;
    EAK_PARALLEL(n_threads > 1 && n_items > 1,
    for (int it = eak_team_lo(n_items), it_end = eak_team_hi(n_items); it < it_end; ++it) {
        const int b = b_first + it / c->n_kv_head, h = it % c->n_kv_head;
        const int p0 = c->n_sink + b * G;
        /* keys: one record per channel over the block's G tokens (ring rows are contiguous in
         * position within a block because ring >= G and blocks start at multiples of G) */
        const float *k0 = ring_row(c, c->ring_k, p0) + (size_t)h * d;
        const int bs = block_slot(c, b);
        uint8_t *kr = c->kq + ((size_t)bs * c->n_kv_head + h) * (size_t)d * rb;
        for (int ch = 0; ch < d; ++ch) make_record(k0 + ch, (size_t)kv_dim, G, c->bits, kr + (size_t)ch * rb);
        /* values: per token, one record per group of G channels */
        for (int t = 0; t < G; ++t) {
            const float *vr = ring_row(c, c->ring_v, p0 + t) + (size_t)h * d;
            uint8_t *vq = c->vq + (((size_t)(bs * G + t) * c->n_kv_head + h) * (size_t)(d / G)) * rb;
            for (int g = 0; g < d / G; ++g) make_record(vr + g * G, 1, G, c->bits, vq + (size_t)g * rb);
        }
    });
}

/* y[i] = y[i] + a * code_i for the G codes of a record. KV4 fuses the multiply and the add (fmaf,
 * one rounding) exactly as its AVX2/AVX-512 loops do with FMA instructions, so the two agree bit for
 * bit and the SIMD loops need one instruction per product instead of two; KV8 has no SIMD form and
 * multiplies, then adds. Nibbles are unpacked in pairs so the compiler vectorises across i. */
static inline void codes_axpy(float *y, float a, const uint8_t *codes, int bits, int G) {
    if (bits == 4) {
        for (int i = 0; i < G / 2; ++i) {
            y[2 * i] = fmaf(a, (float)(codes[i] & 15), y[2 * i]);
            y[2 * i + 1] = fmaf(a, (float)(codes[i] >> 4), y[2 * i + 1]);
        }
    } else {
        for (int i = 0; i < G; ++i) y[i] = y[i] + a * (float)codes[i];
    }
}

/* Score of position j (>= n_sink, in a complete block) read from its key records one channel at a
 * time, for a list (DHSA) entry whose block holds too few selected keys for a block pass. The same
 * operations in the same order as the block pass (scaled code sum and offset sum kept apart, added
 * at the end), so a key's score does not depend on which path computed it. */
static float kvq_score_one(const eak_kvq *c, const float *qh, int kvh, int j, size_t rb, const float *h2f) {
    const int G = c->group, d = c->head_dim, b = (j - c->n_sink) / G, i = (j - c->n_sink) % G;
    const uint8_t *kr = c->kq + ((size_t)block_slot(c, b) * c->n_kv_head + kvh) * (size_t)d * rb;
    float acc = 0.0f, base = 0.0f;
    for (int ch = 0; ch < d; ++ch) {
        const uint8_t *rec = kr + (size_t)ch * rb;
        const float a = qh[ch] * h2f[(uint16_t)(rec[0] | (rec[1] << 8))];
        base = base + qh[ch] * h2f[(uint16_t)(rec[2] | (rec[3] << 8))];
        acc = c->bits == 4 ? fmaf(a, (float)code_at(rec + 4, 4, i), acc) : acc + a * (float)code_at(rec + 4, c->bits, i);
    }
    return acc + base;
}

/* Scores of one quantized key block for nh query heads: acc[i][e] (scaled code sums of the block's
 * G keys) and base[i] (the offset sum); key e scores (acc[i][e] + base[i]) * scale. */
static void kblock_scores(const float *const *qh, int nh, const uint8_t *kr, size_t rb, int d, int bits, int G,
                          const float *h2f, int simd4, float (*acc)[256], float *base) {
#if defined(__x86_64__)
    if (simd4) { eak_kblock_scores_x86(simd4, qh, nh, kr, rb, d, h2f, acc, base); return; }
#endif
    (void)simd4;
    for (int i = 0; i < nh; ++i) {
        for (int e = 0; e < G; ++e) acc[i][e] = 0.0f;
        base[i] = 0.0f;
        for (int ch = 0; ch < d; ++ch) {
            const uint8_t *r = kr + (size_t)ch * rb;
            const float a = qh[i][ch] * h2f[(uint16_t)(r[0] | (r[1] << 8))];
            base[i] = base[i] + qh[i][ch] * h2f[(uint16_t)(r[2] | (r[3] << 8))];
            codes_axpy(acc[i], a, r + 4, bits, G);
        }
    }
}

/* Values of n keys of one quantized block for nh query heads: o_i[e] += (sum_r w_i[r] * d_r * code_re
 * + sum_r w_i[r] * m_r) per value record group. The scaled codes and the offsets are summed apart
 * over the block's keys (in key order, starting from zero) and added to the output once per block,
 * so the output row stays out of the per-key loop; the AVX2 form does the same operations in the
 * same order. */
static void vblock_add(float *const *o, const float *const *w, int nh, int n, const uint8_t *const *vrec, int d,
                       int bits, int G, size_t rb, const float *h2f, int simd4) {
#if defined(__x86_64__)
    if (simd4) { eak_vblock_add_x86(simd4, o, w, nh, n, vrec, d, rb, h2f); return; }
#endif
    (void)simd4;
    float acc[256];
    for (int g = 0; g < d / G; ++g)
        for (int i = 0; i < nh; ++i) {
            float off = 0.0f;
            for (int e = 0; e < G; ++e) acc[e] = 0.0f;
            for (int r = 0; r < n; ++r) {
                const uint8_t *rec = vrec[r] + (size_t)g * rb;
                const float dv = h2f[(uint16_t)(rec[0] | (rec[1] << 8))], mv = h2f[(uint16_t)(rec[2] | (rec[3] << 8))];
                off = off + w[i][r] * mv;
                codes_axpy(acc, w[i][r] * dv, rec + 4, bits, G);
            }
            float *y = o[i] + (size_t)g * G;
            for (int e = 0; e < G; ++e) y[e] = y[e] + (acc[e] + off);
        }
}

int eak_kvq_heads_per_pass(int n_head, int n_kv_head) {
    const int grp = n_kv_head > 0 ? n_head / n_kv_head : 1;
    return grp < 1 ? 1 : grp < KVQ_HEADS ? grp : KVQ_HEADS;
}

/* A query's keys (ordinals 0..nk-1) are attended in segments: ordinals [0, S + KVQ_SEG), then
 * KVQ_SEG at a time (S = the cache's exact sinks, so a dense query's segments start on block
 * boundaries). Each segment gets its own maximum, exponentials, sum and unnormalised value sum; the
 * segments are then merged in order. Decode splits one query's segments over the threads (three kv
 * heads alone would leave a quarter of two threads idle); the boundaries depend on nk and S only, so
 * results do not depend on the thread count or on how calls are batched. */
#define KVQ_SEG 256
#define KVQ_SPLIT_TOK 4 /* calls of at most this many queries split segments over threads */

static inline int kvq_n_seg(int nk, int S) { return nk <= S + KVQ_SEG ? 1 : 1 + (nk - S - 1) / KVQ_SEG; }
static inline int kvq_seg_lo(int q, int S) { return q == 0 ? 0 : S + q * KVQ_SEG; }

/* scores per head of one segment, and the partial records: [m, l, o[d]] per (head, segment) */
static inline int kvq_seg_keys(int max_keys, int S) { return max_keys < S + KVQ_SEG ? max_keys : S + KVQ_SEG; }

size_t eak_kvq_scratch_floats(int n_head, int n_kv_head, int head_dim, int n_sink, int max_keys, int n_threads) {
    if (n_threads < 1) n_threads = 1;
    if (max_keys < 1) max_keys = 1;
    const size_t cap = (size_t)eak_kvq_heads_per_pass(n_head, n_kv_head);
    const size_t split = (size_t)KVQ_SPLIT_TOK * (size_t)n_head, own = (size_t)n_threads * cap;
    return own * (size_t)kvq_seg_keys(max_keys, n_sink) +
           (split > own ? split : own) * (size_t)kvq_n_seg(max_keys, n_sink) * ((size_t)head_dim + 2);
}

/* Where the keys of one query live: the list, or sinks (ordinals 0..ns-1) and window w0..p. */
typedef struct kvq_query {
    const float *qh[KVQ_HEADS];
    int nh, kvh, t, p, qend, ns, w0, nk;
    const int32_t *lst;
} kvq_query;

typedef struct kvq_ctx {
    const eak_kvq *c;
    const eak_span *span;
    const float *h2f;
    float scale;
    size_t rb;
    int simd4; /* 0 generic, 1 AVX2, 2 AVX-512 (all bit-identical) */
} kvq_ctx;

static inline void put_score(float *s, float *mx, int k, float v) {
    s[k] = v;
    *mx = v > *mx ? v : *mx;
}

/* Ordinals [k0, k1) of query x for its nh heads: scores into s[i][k - k0], then exponentials from
 * the segment's maximum, their sum, and the exponential-weighted values into rec[i] = [m, l, o[d]]. */
static void kvq_segment(const kvq_ctx *X, const kvq_query *x, int k0, int k1, float *const *s, float *const *rec) {
    const eak_kvq *c = X->c;
    const int G = c->group, d = c->head_dim, S = c->n_sink, kv_dim = c->n_kv_head * d, bits = c->bits;
    const int nh = x->nh, kvh = x->kvh, qend = x->qend, ns = x->ns, w0 = x->w0;
    const int32_t *lst = x->lst;
    const size_t rb = X->rb;
    const float *h2f = X->h2f;
    const float scale = X->scale;
    const float *const *qh = x->qh;
    float mx[KVQ_HEADS];
    for (int i = 0; i < nh; ++i) mx[i] = -INFINITY;
    if (lst) {
        /* the list is ascending and DHSA selects whole chunks, so selected keys come in runs: a
         * quantized block holding KVQ_RUN_MIN or more of them is scored by one block pass */
        for (int k = k0; k < k1;) {
            const int j = lst[k];
            if (j < S || j >= qend) {
                const float *kr = j < S ? c->sink_k + (size_t)j * kv_dim : ring_row(c, c->ring_k, j);
                for (int i = 0; i < nh; ++i)
                    put_score(s[i], &mx[i], k - k0, eak_dot_f32(qh[i], kr + (size_t)kvh * d, d) * scale);
                ++k;
                continue;
            }
            const int b = (j - S) / G, p0 = S + b * G;
            int ke = k + 1;
            while (ke < k1 && lst[ke] < p0 + G) ++ke;
            if (ke - k >= KVQ_RUN_MIN) {
                const uint8_t *kr = c->kq + ((size_t)block_slot(c, b) * c->n_kv_head + kvh) * (size_t)d * rb;
                float acc[KVQ_HEADS][256], base[KVQ_HEADS];
                kblock_scores(qh, nh, kr, rb, d, bits, G, h2f, X->simd4, acc, base);
                for (int i = 0; i < nh; ++i)
                    for (int kk = k; kk < ke; ++kk)
                        put_score(s[i], &mx[i], kk - k0, (acc[i][lst[kk] - p0] + base[i]) * scale);
            } else {
                for (int i = 0; i < nh; ++i)
                    for (int kk = k; kk < ke; ++kk)
                        put_score(s[i], &mx[i], kk - k0, kvq_score_one(c, qh[i], kvh, lst[kk], rb, h2f) * scale);
            }
            k = ke;
        }
    } else {
        const eak_span *span = X->span;
        const float *sink_over = span && !span->keys ? span->sink_k : NULL;
        for (int i = 0; i < nh; ++i)
            for (int k = k0; k < k1 && k < ns; ++k) {
                const float *kr = sink_over ? sink_over + ((size_t)x->t * span->n_sink + k) * kv_dim
                                            : c->sink_k + (size_t)k * kv_dim;
                put_score(s[i], &mx[i], k - k0, eak_dot_f32(qh[i], kr + (size_t)kvh * d, d) * scale);
            }
        /* window positions [jlo, jhi) of this segment */
        const int jlo = w0 + (k0 > ns ? k0 : ns) - ns, jhi = w0 + k1 - ns;
        /* window positions below S (short windows early on) are exact rows */
        int j = jlo;
        for (; j < jhi && j < S; ++j)
            for (int i = 0; i < nh; ++i)
                put_score(s[i], &mx[i], ns + j - w0 - k0,
                          eak_dot_f32(qh[i], c->sink_k + (size_t)j * kv_dim + (size_t)kvh * d, d) * scale);
        /* quantized blocks overlapping [j, min(jhi, qend)): one pass over the block's channel records */
        const int qhi = jhi < qend ? jhi : qend;
        for (int b = j > S ? (j - S) / G : 0; S + b * G < qhi; ++b) {
            const int p0 = S + b * G;
            const uint8_t *kr = c->kq + ((size_t)block_slot(c, b) * c->n_kv_head + kvh) * (size_t)d * rb;
            float acc[KVQ_HEADS][256], base[KVQ_HEADS];
            kblock_scores(qh, nh, kr, rb, d, bits, G, h2f, X->simd4, acc, base);
            const int e0 = j > p0 ? j - p0 : 0, e1 = qhi - p0 < G ? qhi - p0 : G;
#if defined(__x86_64__)
            if (X->simd4 && e0 == 0 && e1 == 32) { /* a whole block: the same scores and maximum */
                for (int i = 0; i < nh; ++i) eak_scores32_avx2(s[i] + (ns + p0 - w0 - k0), acc[i], base[i], scale, &mx[i]);
                continue;
            }
#endif
            for (int i = 0; i < nh; ++i)
                for (int e = e0; e < e1; ++e)
                    put_score(s[i], &mx[i], ns + p0 + e - w0 - k0, (acc[i][e] + base[i]) * scale);
        }
        for (j = qend > j ? qend : j; j < jhi; ++j)
            for (int i = 0; i < nh; ++i)
                put_score(s[i], &mx[i], ns + j - w0 - k0,
                          eak_dot_f32(qh[i], ring_row(c, c->ring_k, j) + (size_t)kvh * d, d) * scale);
    }
    const int n = k1 - k0;
    float *o[KVQ_HEADS];
    for (int i = 0; i < nh; ++i) {
        const float sum = eak_exp32_sub_sum(s[i], n, mx[i]);
        rec[i][0] = mx[i];
        rec[i][1] = sum;
        o[i] = rec[i] + 2;
        for (int e = 0; e < d; ++e) o[i][e] = 0.0f;
    }
#define POS(k) (lst ? lst[k] : (k) < ns ? (k) : w0 + (k) - ns)
    for (int k = k0; k < k1;) {
        const int j = POS(k);
        if (j < S || j >= qend) {
            const float *vr = (j < S ? c->sink_v + (size_t)j * kv_dim : ring_row(c, c->ring_v, j)) + (size_t)kvh * d;
            for (int i = 0; i < nh; ++i) {
                const float pw = s[i][k - k0];
                for (int e = 0; e < d; ++e) o[i][e] = o[i][e] + pw * vr[e];
            }
            ++k;
            continue;
        }
        /* the keys of one quantized block: their value records summed together, then added */
        const int b = (j - S) / G, p0 = S + b * G;
        const uint8_t *vrec[256];
        int m = 0;
        if (lst) {
            for (; k + m < k1 && lst[k + m] < p0 + G; ++m) {
                const int vrow = block_slot(c, b) * G + (lst[k + m] - S) % G;
                vrec[m] = c->vq + (((size_t)vrow * c->n_kv_head + kvh) * (size_t)(d / G)) * rb;
            }
        } else { /* window keys are consecutive positions: consecutive value rows of the block */
            const size_t step = (size_t)c->n_kv_head * (size_t)(d / G) * rb;
            const uint8_t *v0 = c->vq + (((size_t)(block_slot(c, b) * G + (j - S) % G) * c->n_kv_head + kvh) * (size_t)(d / G)) * rb;
            m = p0 + G - j < k1 - k ? p0 + G - j : k1 - k;
            for (int r = 0; r < m; ++r) vrec[r] = v0 + (size_t)r * step;
        }
        const float *w[KVQ_HEADS];
        for (int i = 0; i < nh; ++i) w[i] = s[i] + (k - k0);
        vblock_add(o, w, nh, m, vrec, d, bits, G, rb, h2f, X->simd4);
        k += m;
    }
#undef POS
}

/* out[e] = sum_q exp(m_q - M) o_q[e] / sum_q exp(m_q - M) l_q over the n_seg records (stride d + 2),
 * in segment order; each record's m is replaced by its factor exp(m_q - M). No keys: zeros. */
static void kvq_merge(float *rec, int n_seg, int d, float *out) {
    const size_t rs = (size_t)d + 2;
    float M = -INFINITY, L = 0.0f;
    for (int e = 0; e < d; ++e) out[e] = 0.0f;
    for (int q = 0; q < n_seg; ++q) M = rec[q * rs] > M ? rec[q * rs] : M;
    if (M == -INFINITY) return;
    for (int q = 0; q < n_seg; ++q) {
        rec[q * rs] = eak_exp(rec[q * rs] - M);
        L = L + rec[q * rs] * rec[q * rs + 1];
    }
    const float inv = 1.0f / L;
    for (int q = 0; q < n_seg; ++q) {
        const float w = rec[q * rs] * inv;
        const float *o = rec + q * rs + 2;
        for (int e = 0; e < d; ++e) out[e] = out[e] + w * o[e];
    }
}

/* The keys of query t for kv head kvh (and the first nh heads from h0). */
static void kvq_query_at(const kvq_ctx *X, const float *q, int q_stride, int pos0, int t, int kvh, int h0, int nh,
                         kvq_query *x) {
    const eak_kvq *c = X->c;
    const eak_span *span = X->span;
    const int G = c->group, S = c->n_sink, d = c->head_dim;
    x->nh = nh;
    x->kvh = kvh;
    x->t = t;
    x->p = pos0 + t;
    for (int i = 0; i < nh; ++i) x->qh[i] = q + (size_t)t * q_stride + (size_t)(h0 + i) * d;
    const int nbq = x->p + 1 > S ? (x->p + 1 - S) / G : 0; /* blocks this query reads quantized */
    x->qend = S + nbq * G;                                /* first position read from the ring */
    x->lst = span && span->keys ? span->keys + (size_t)kvh * span->keys_stride : NULL;
    x->ns = 0;
    x->w0 = 0;
    if (x->lst) {
        x->nk = span_upper(x->lst, span->n_keys, x->p);
    } else {
        const int AS = span ? (span->n_sink < S ? span->n_sink : S) : 0; /* attended sinks */
        x->nk = span_range(AS, span ? span->window : 0, x->p, &x->ns, &x->w0);
    }
}

void eak_kvq_attention(const eak_kvq *c, const float *q, float *out, int n_tok, int pos0, int n_head,
                       float scale, const eak_span *span, float *scratch, int n_threads) {
    const int G = c->group, d = c->head_dim, S = c->n_sink, n_kv = c->n_kv_head;
    const int grp = n_head / n_kv;
    const int stride = eak_span_max_keys(span, pos0, n_tok);
    if (d > 512 || G > 256 || grp < 1) return; /* validated by the planner */
    if (n_threads < 1) n_threads = 1;
    kvq_ctx X = {c, span, eak_f16_table(), scale, eak_kvq_record_bytes(c->bits, G), 0};
#if defined(__x86_64__)
    /* the KV4/32 AVX2 loops (2: their AVX-512 form); they fuse multiply and add like the generic fmaf */
    X.simd4 = c->bits == 4 && G == 32 && eak_use_avx2();
    if (X.simd4 && eak_use_avx512()) X.simd4 = 2;
#endif
    const int q_stride = n_head * d, cap = eak_kvq_heads_per_pass(n_head, n_kv);
    const int seg_keys = kvq_seg_keys(stride, S), max_seg = kvq_n_seg(stride, S);
    const size_t rs = (size_t)d + 2;
    float *recs = scratch + (size_t)n_threads * cap * seg_keys;
    /* split: items are (query, kv head, heads, segment), partial records of all of them kept until
     * the merge after the parallel part; else items are (query, kv head, heads), each with its
     * segments one after another in the thread's own records */
    const int split = n_tok <= KVQ_SPLIT_TOK && max_seg > 1;
    const int n_seg_items = split ? max_seg : 1;
    /* fewer heads per item when there would be fewer items than threads (decode with one kv head) */
    int hc = cap;
    while (hc > 1 && (size_t)n_tok * n_kv * (size_t)((grp + hc - 1) / hc) * n_seg_items < (size_t)n_threads) --hc;
    const int n_chunks = (grp + hc - 1) / hc, n_work = n_tok * n_kv * n_chunks * n_seg_items;
    const int eak_nt = n_threads;
    EAK_PARALLEL(n_threads > 1 && n_work > 1,
    for (int wi = eak_team_id(); wi < n_work; wi += eak_team_size()) {
        const int sg = wi % n_seg_items, it = wi / n_seg_items;
        const int t = it / (n_kv * n_chunks), kvh = it / n_chunks % n_kv, h0 = kvh * grp + it % n_chunks * hc;
        const int nh = grp - (h0 - kvh * grp) < hc ? grp - (h0 - kvh * grp) : hc;
        kvq_query x;
        kvq_query_at(&X, q, q_stride, pos0, t, kvh, h0, nh, &x);
        const int n_seg = kvq_n_seg(x.nk, S);
        float *s[KVQ_HEADS], *rec[KVQ_HEADS];
        for (int i = 0; i < nh; ++i) s[i] = scratch + ((size_t)eak_team_id() * cap + i) * seg_keys;
        if (split) {
            if (sg >= n_seg) continue;
            for (int i = 0; i < nh; ++i) rec[i] = recs + (((size_t)t * n_head + h0 + i) * max_seg + sg) * rs;
            const int k1 = kvq_seg_lo(sg + 1, S) < x.nk ? kvq_seg_lo(sg + 1, S) : x.nk;
            kvq_segment(&X, &x, kvq_seg_lo(sg, S), k1, s, rec);
        } else {
            float *own = recs + (size_t)eak_team_id() * cap * max_seg * rs;
            for (int sq = 0; sq < n_seg; ++sq) {
                for (int i = 0; i < nh; ++i) rec[i] = own + ((size_t)i * max_seg + sq) * rs;
                const int k1 = kvq_seg_lo(sq + 1, S) < x.nk ? kvq_seg_lo(sq + 1, S) : x.nk;
                kvq_segment(&X, &x, kvq_seg_lo(sq, S), k1, s, rec);
            }
            for (int i = 0; i < nh; ++i)
                kvq_merge(own + (size_t)i * max_seg * rs, n_seg, d, out + (size_t)t * q_stride + (size_t)(h0 + i) * d);
        }
    });
    if (split)
        for (int t = 0; t < n_tok; ++t)
            for (int kvh = 0; kvh < n_kv; ++kvh) {
                kvq_query x;
                kvq_query_at(&X, q, q_stride, pos0, t, kvh, kvh * grp, 1, &x);
                const int n_seg = kvq_n_seg(x.nk, S);
                for (int h = kvh * grp; h < (kvh + 1) * grp; ++h)
                    kvq_merge(recs + ((size_t)t * n_head + h) * max_seg * rs, n_seg, d, out + (size_t)t * q_stride + (size_t)h * d);
            }
}
