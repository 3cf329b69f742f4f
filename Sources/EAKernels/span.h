/* Which keys a query reads under an eak_span (see ea_kernels.h): shared by the float/half driver
 * (attention.c) and the quantized cache (kv_quant.c), so both enumerate keys identically. Internal. */
#ifndef EAK_SPAN_H
#define EAK_SPAN_H
#include "ea_kernels.h"

/* Entries of the ascending list[0..n) that are <= p. */
static inline int span_upper(const int32_t *list, int n, int p) {
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (list[mid] <= p) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* Range form for a query at p with S attended sinks and window W (0 = all): n_sink_q sinks
 * (ordinals 0..n_sink_q-1 = positions), then window positions w0..p. Returns the key count. */
static inline int span_range(int S, int W, int p, int *n_sink_q, int *w0) {
    *n_sink_q = S < p + 1 ? S : p + 1;
    const int start = W > 0 ? p - W + 1 : 0;
    *w0 = start > S ? start : S;
    return *n_sink_q + (p >= *w0 ? p - *w0 + 1 : 0);
}
#endif
