/* The samplers' top-k selection: a bounded heap, no allocation. */
#include "ea_kernels.h"

/* a ranks before b: larger value, or equal value and lower index */
static inline int better(const float *x, int32_t a, int32_t b) {
    return x[a] > x[b] || (x[a] == x[b] && a < b);
}

static void sift_down(const float *x, int32_t *h, int n, int i) {
    /* min-heap on `better`: the root is the worst of the kept k */
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && better(x, h[m], h[l])) m = l;
        if (r < n && better(x, h[m], h[r])) m = r;
        if (m == i) return;
        int32_t tmp = h[i]; h[i] = h[m]; h[m] = tmp;
        i = m;
    }
}

void eak_top_k(const float *x, int n, int k, int32_t *idx) {
    if (k <= 0) return;
    if (k > n) k = n;
    for (int i = 0; i < k; ++i) idx[i] = i;
    for (int i = k / 2 - 1; i >= 0; --i) sift_down(x, idx, k, i);
    for (int i = k; i < n; ++i) {
        if (better(x, i, idx[0])) { idx[0] = i; sift_down(x, idx, k, 0); }
    }
    /* heap-sort: repeatedly move the worst to the end -> descending order */
    for (int end = k - 1; end > 0; --end) {
        int32_t tmp = idx[0]; idx[0] = idx[end]; idx[end] = tmp;
        sift_down(x, idx, end, 0);
    }
}
