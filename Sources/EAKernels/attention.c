/* Causal grouped-query attention over a float or half (16-bit) KV cache, for every span form
 * (dense, sinks and window, Lambda ring, DHSA key lists). */
#include "ea_kernels.h"
#include "attention.h"
#include "cpu.h"
#include "team.h"
#include "span.h"
#include <math.h>
#include <string.h>

/* s[j] <- exp(s[j] - mx) for j in [j0, n); returns 1 / their sum (the softmax normaliser). */
static float softmax_exp(float *s, int j0, int n, float mx) {
    float sum = 0.0f;
    if (n > j0) eak_exp_sub(s + j0, n - j0, mx);
    for (int j = j0; j < n; ++j) sum += s[j];
    return 1.0f / sum;
}

/* ---- attention -------------------------------------------------------------------------------
 * One driver for every KV element format: it distributes (token, head) items over threads, finds
 * each query's key range (causal, optionally a sliding window), scores keys with `qk`, normalises
 * with softmax_exp and accumulates values with `pv`. The formats differ only in those two row
 * operations (and the half format rounds q and the weights to half, as llama.cpp does). */
/* Half-cache inner loops. Every version computes in the same order (8 lanes, lane k takes elements
 * i = k mod 8, multiply then add, lanes reduced ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)), tail in order;
 * the value update is elementwise), so host and board agree bit for bit. Half->float is exact. */
static float qk_generic(const float *q, const void *kv, int n, const float *h2f) {
    const uint16_t *k = kv;
    float l[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int m = 0; m < 8; ++m) l[m] = l[m] + q[i + m] * h2f[k[i + m]];
    float r = eak_reduce8(l);
    for (; i < n; ++i) r = r + q[i] * h2f[k[i]];
    return r;
}

static void pv_generic(float *o, const float *p, const void *const *vv, int nv, int n, const float *h2f) {
    for (int d = 0; d < n; ++d) {
        float a = o[d];
        for (int j = 0; j < nv; ++j) a = a + p[j] * h2f[((const uint16_t *)vv[j])[d]];
        o[d] = a;
    }
}

/* Float rows: the same lane order, plain C (the compiler vectorises the explicit lanes). */
static float qk_f32(const float *q, const void *kv, int n, const float *h2f) {
    (void)h2f;
    return eak_dot_f32(q, kv, n);
}

static void pv_f32(float *o, const float *p, const void *const *vv, int nv, int n, const float *h2f) {
    (void)h2f;
    for (int d = 0; d < n; ++d) {
        float a = o[d];
        for (int j = 0; j < nv; ++j) a = a + p[j] * ((const float *)vv[j])[d];
        o[d] = a;
    }
}

int eak_span_max_keys(const eak_span *span, int pos0, int n_tok) {
    const int dense = pos0 + n_tok;
    if (!span) return dense;
    if (span->keys) return span->n_keys < dense ? span->n_keys : dense;
    if (span->window <= 0) return dense;
    const int m = span->n_sink + span->window;
    return m < dense ? m : dense;
}

static void attention_driver(const float *q, const void *k_cache, const void *v_cache, size_t elem_bytes,
                             float *out, int n_tok, int pos0, int n_head, int n_kv_head, int head_dim,
                             float scale, const eak_span *span, float *scratch, int n_threads, int round_half,
                             qk_fn qk, pv_fn pv, pw_fn pw) {
    const float *h2f = eak_f16_table();
    const int group = n_head / n_kv_head;
    const size_t q_stride = (size_t)n_head * head_dim, kv_stride = (size_t)n_kv_head * head_dim;
    const int stride = eak_span_max_keys(span, pos0, n_tok);
    const int S = span ? span->n_sink : 0, R = span ? span->ring : 0;
    const int32_t *list = span ? span->keys : NULL;
    const float *sink_k = span && !list ? span->sink_k : NULL;
    if (n_threads < 1) n_threads = 1;
    if (head_dim > 512) return; /* the model loader rejects larger heads */
    const char *kc = k_cache, *vc = v_cache;
    const size_t step = kv_stride * elem_bytes;
    const int n_work = n_tok * n_head;
/* (t, h) items interleaved across threads (cyclic); dynamic schedules need a newer libomp than Debian 12 ships */
#define SLOT(k) (lst ? lst[k] : (k) < ns ? (k) : (R > 0 ? S + (w0 + (k) - ns - S) % R : w0 + (k) - ns))
    const int eak_nt = n_threads;
    EAK_PARALLEL(n_threads > 1 && n_work > 1,
    for (int wi = eak_team_id(); wi < n_work; wi += eak_team_size()) {
        int t = wi / n_head, h = wi % n_head;
        float *s = scratch + (size_t)eak_team_id() * stride;
        float qh[512];
        const float *qsrc = q + (size_t)t * q_stride + (size_t)h * head_dim;
        for (int d = 0; d < head_dim; ++d) qh[d] = round_half ? h2f[eak_f32_to_f16(qsrc[d])] : qsrc[d];
        const int kvh = h / group, p = pos0 + t;
        const size_t row = ((size_t)kvh * head_dim) * elem_bytes;
        const int32_t *lst = list ? list + (size_t)kvh * span->keys_stride : NULL;
        int ns = 0, w0 = 0, nk;
        if (lst) nk = span_upper(lst, span->n_keys, p);
        else nk = span_range(S, span ? span->window : 0, p, &ns, &w0);
        /* slot of key ordinal k */
        float mx = -INFINITY;
        for (int k = 0; k < nk; ++k) {
            if (sink_k && k < ns)
                s[k] = eak_dot_f32(qh, sink_k + ((size_t)t * S + k) * kv_stride + (size_t)kvh * head_dim, head_dim) * scale;
            else
                s[k] = qk(qh, kc + (size_t)SLOT(k) * step + row, head_dim, h2f) * scale;
            if (s[k] > mx) mx = s[k];
        }
        const float inv = softmax_exp(s, 0, nk, mx);
        float *o = out + (size_t)t * q_stride + (size_t)h * head_dim;
        for (int d = 0; d < head_dim; ++d) o[d] = 0.0f;
        pw(s, nk, inv, round_half, h2f);
        for (int k = 0; k < nk; k += 4) {
            const int nv = nk - k < 4 ? nk - k : 4;
            const void *vp[4];
            for (int j = 0; j < nv; ++j) vp[j] = vc + (size_t)SLOT(k + j) * step + row;
            pv(o, s + k, vp, nv, head_dim, h2f);
        }
    });
#undef SLOT
}

void eak_attention(const float *q, const float *k_cache, const float *v_cache, float *out,
                   int n_tok, int pos0, int n_head, int n_kv_head, int head_dim, float scale,
                   const eak_span *span, float *scratch, int n_threads) {
    attention_driver(q, k_cache, v_cache, sizeof(float), out, n_tok, pos0, n_head, n_kv_head, head_dim,
                     scale, span, scratch, n_threads, 0, qk_f32, pv_f32, pw_generic);
}

void eak_attention_f16(const float *q, const uint16_t *k_cache, const uint16_t *v_cache, float *out,
                       int n_tok, int pos0, int n_head, int n_kv_head, int head_dim, float scale,
                       const eak_span *span, float *scratch, int n_threads) {
    const qk_fn qk = EAK_PICK(qk_generic, eak_qk_f16c, eak_qk_neon);
    const pv_fn pv = EAK_PICK(pv_generic, eak_pv_f16c, eak_pv_neon);
    const pw_fn pw = EAK_PICK(pw_generic, eak_pw_f16c, pw_generic);
    attention_driver(q, k_cache, v_cache, sizeof(uint16_t), out, n_tok, pos0, n_head, n_kv_head, head_dim,
                     scale, span, scratch, n_threads, 1, qk, pv, pw);
}
