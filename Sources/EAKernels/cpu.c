/* CPU features, detected once (cpuid and xgetbv on x86-64, getauxval's HWCAP on aarch64 Linux), and
 * the answers of cpu.h: which form of each kernel family runs. eak_force_generic (tests) lowers
 * them: 1 selects the generic forms everywhere, 2 turns off the AVX-512F forms that have an AVX2
 * twin (eak_use_avx512), so AVX-512 hosts test those AVX2 forms too. */
#include "cpu.h"
#include <stdatomic.h>
#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

enum { F_AVX2 = 1, F_AVXVNNI = 2, F_AVX512 = 4, F_NEON = 8, F_DOTPROD = 16 };

#if defined(__x86_64__)
static uint64_t xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return 0;
    const uint64_t x = xcr0();
    if ((x & 6) != 6) return 0; /* the OS does not save XMM and YMM state */
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned max_sub = a;
    const int avx2 = (b >> 5) & 1, f512 = (b >> 16) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1, vnni = (c >> 11) & 1;
    int avxvnni = 0;
    if (max_sub >= 1) {
        __cpuid_count(7, 1, a, b, c, d);
        avxvnni = (a >> 4) & 1;
    }
    if (!avx2 || !fma || !f16c) return 0;
    int f = F_AVX2;
    if (avxvnni) f |= F_AVXVNNI;
    if (f512 && bw && vl && vnni && (x & 0xE0) == 0xE0) f |= F_AVX512; /* opmask, ZMM0-15 high, ZMM16-31 */
    return f;
}
#elif defined(__aarch64__)
static int detect(void) {
    int f = F_NEON;
#if defined(__linux__)
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) f |= F_DOTPROD;
#endif
    return f;
}
#else
static int detect(void) { return 0; }
#endif

static atomic_int g_features = -1; /* racing first calls store the same value */

static int features(void) {
    int f = atomic_load_explicit(&g_features, memory_order_relaxed);
    if (f < 0) {
        f = detect();
        atomic_store_explicit(&g_features, f, memory_order_relaxed);
    }
    return f;
}

int eak_cpu_avx2(void) { return (features() & F_AVX2) != 0; }
int eak_cpu_avxvnni(void) { return (features() & F_AVXVNNI) != 0; }
int eak_cpu_avx512(void) { return (features() & F_AVX512) != 0; }
int eak_cpu_neon(void) { return (features() & F_NEON) != 0; }
int eak_cpu_neon_dotprod(void) { return (features() & F_DOTPROD) != 0; }

static int g_level = -1; /* eak_force_generic's level; set by tests only (not thread-safe) */

void eak_force_generic(int on) { g_level = on; }
int eak_generic_forced(void) { return g_level == 1; }
int eak_use_avx2(void) { return eak_cpu_avx2() && !eak_generic_forced(); }
int eak_use_avx512(void) { return eak_cpu_avx512() && g_level != 2 && eak_use_avx2(); }
int eak_use_vnni512(void) { return eak_cpu_avx512() && eak_use_avx2(); }
int eak_use_neon(void) { return eak_cpu_neon() && !eak_generic_forced(); }
int eak_use_neon_dotprod(void) { return eak_cpu_neon_dotprod() && !eak_generic_forced(); }

const char *eak_isa_name(void) {
#if defined(__aarch64__)
    return eak_cpu_neon_dotprod() ? "neon-dotprod" : "neon";
#else
    return eak_cpu_avx2() ? "avx2" : "generic";
#endif
}
