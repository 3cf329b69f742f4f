/* The Swift core's heap, and the session workspace region.
 *
 * In the C library (cross/build-lib.sh) the embedded Swift core's only allocator calls,
 * posix_memalign and free, are renamed to eak_core_memalign / eak_core_free. Every block gets a
 * 16-byte header just below it: the malloc base to free, or REGION_TAG for a block carved from a
 * caller's workspace. While a thread has a region open (eak_region_begin, used by ea_session_create
 * with a workspace), the core's allocations on that thread come from the region, top down, so a
 * session created in a workspace calls no allocator at all; freeing such a block never calls free.
 * When the region is full the block comes from the heap instead and the region records the
 * overflow, so that the caller can fail cleanly (the headers keep both kinds freeable).
 *
 * The host build (SwiftPM) does not rename anything: these functions exist there but the Swift
 * runtime allocates as usual.
 */
#include "ea_kernels.h"
#include <errno.h>
#include <stdlib.h>

#define HEADER 16u
#define REGION_TAG ((uintptr_t)1)

typedef struct {
    char *floor, *top, *cur;  /* blocks live in [cur, top); allocation moves cur down to floor */
    char *low;                /* lowest address handed out (high-water mark of the region) */
    int open, overflow;
} region_t;

static _Thread_local region_t g_region;

static int in_region(const region_t *r, const void *p) {
    return r->open && (const char *)p >= r->floor && (const char *)p < r->top;
}

int eak_core_memalign(void **out, size_t align, size_t size) {
    if (align < HEADER) align = HEADER;
    if ((align & (align - 1)) != 0 || align > 4096 || size > SIZE_MAX / 2) return EINVAL;
    region_t *r = &g_region;
    if (r->open) {
        uintptr_t cur = (uintptr_t)r->cur;
        if (cur >= (uintptr_t)r->floor && cur - (uintptr_t)r->floor >= size + HEADER + align) {
            uintptr_t user = (cur - size) & ~(uintptr_t)(align - 1);
            uintptr_t *h = (uintptr_t *)(user - HEADER);
            if ((char *)h >= r->floor) {
                h[0] = REGION_TAG;
                h[1] = (uintptr_t)r->cur;  /* where cur was: freeing the newest block gives it back */
                r->cur = (char *)h;
                if (r->cur < r->low) r->low = r->cur;
                *out = (void *)user;
                return 0;
            }
        }
        r->overflow = 1;
    }
    void *base = NULL;
    int e = posix_memalign(&base, align, size + align);  /* align >= HEADER: room for the header */
    if (e != 0) return e;
    uintptr_t user = (uintptr_t)base + align;
    ((uintptr_t *)(user - HEADER))[0] = (uintptr_t)base;
    ((uintptr_t *)(user - HEADER))[1] = 0;
    *out = (void *)user;
    return 0;
}

void eak_core_free(void *p) {
    if (p == NULL) return;
    uintptr_t *h = (uintptr_t *)((uintptr_t)p - HEADER);
    if (h[0] == REGION_TAG) {
        /* region memory is the caller's; only the newest block on the owning thread is reclaimed,
         * which keeps the short-lived temporaries of session planning from piling up */
        region_t *r = &g_region;
        if (in_region(r, h) && (char *)h == r->cur) r->cur = (char *)h[1];
        return;
    }
    free((void *)h[0]);
}

void eak_region_begin(void *base, uint64_t size) {
    region_t *r = &g_region;
    r->floor = (char *)base;
    r->top = r->cur = r->low = (char *)base + size;
    r->open = 1;
    r->overflow = 0;
}

int eak_region_set_floor(void *floor) {
    region_t *r = &g_region;
    if (!r->open) return 0;
    if ((char *)floor > r->low) {  /* something already lies below the new floor: the caller fails */
        r->overflow = 1;
        return -1;
    }
    r->floor = (char *)floor;
    return 0;
}

uint64_t eak_region_used(void) {
    region_t *r = &g_region;
    return r->open ? (uint64_t)(r->top - r->low) : 0;
}

int eak_region_end(void) {
    region_t *r = &g_region;
    int overflow = r->overflow;
    r->open = 0;
    r->overflow = 0;
    return overflow;
}

void *eak_region_mark(void) { return g_region.open ? g_region.cur : NULL; }

void eak_region_release(void *mark) {
    region_t *r = &g_region;
    if (r->open && mark != NULL && (char *)mark >= r->cur && (char *)mark <= r->top) r->cur = (char *)mark;
}
