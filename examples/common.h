/*
 * common.h - helpers shared by the example programs:
 * - strict command-line number parsing: the whole string must be a number inside the given range,
 *   or the parse fails (strtol alone accepts "12abc" and " -1");
 * - error_detail(): the most specific error text available for a failed call.
 */
#ifndef EA_EXAMPLES_COMMON_H
#define EA_EXAMPLES_COMMON_H
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "edgeattn.h"

static inline int parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end = NULL;
    if (!s || !*s || (*s != '-' && *s != '+' && (*s < '0' || *s > '9'))) return 0;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static inline int parse_u64(const char *s, uint64_t *out) {
    char *end = NULL;
    if (!s || *s < '0' || *s > '9') return 0; /* no sign, no space: strtoull accepts "-1" */
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') return 0;
    *out = (uint64_t)v;
    return 1;
}

/* lo_open/hi_open: exclude the bound. */
static inline int parse_float(const char *s, double lo, int lo_open, double hi, int hi_open, float *out) {
    char *end = NULL;
    if (!s || !*s || (*s != '-' && *s != '+' && *s != '.' && (*s < '0' || *s > '9'))) return 0;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v)) return 0;
    if (v < lo || (lo_open && v == lo) || v > hi || (hi_open && v == hi)) return 0;
    *out = (float)v;
    return 1;
}

/* The handle's own error text when there is one, else the thread's last error. */
static inline const char *error_detail(const char *handle_error) {
    if (handle_error && handle_error[0]) return handle_error;
    const char *t = ea_last_error();
    return (t && t[0]) ? t : "(no detail)";
}

#endif
