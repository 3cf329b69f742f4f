/* cpu.h - which form of a kernel runs: the CPU features the SIMD forms need (detected once, cpu.c)
 * and the test override eak_force_generic. Every kernel family's dispatch asks these functions; no
 * other file reads cpuid or HWCAP or keeps feature flags of its own. Internal. */
#ifndef EAK_CPU_H
#define EAK_CPU_H
#include "ea_kernels.h"

/* ---- What the CPU has (fixed for the process; 0 on other architectures) ------------------------ */
/* x86-64: AVX2, FMA and F16C, with the OS saving YMM state: the union of the AVX2-tier kernels'
 * target attributes (avx2; avx2,f16c; avx2,fma). */
int eak_cpu_avx2(void);
/* eak_cpu_avx2() and AVX-VNNI (the VEX dot products of the W2 row and panel kernels). */
int eak_cpu_avxvnni(void);
/* eak_cpu_avx2() and AVX-512 F, BW, VL and VNNI, with the OS saving the mask and ZMM state: the
 * union of what the AVX-512 kernels' target attributes name, so none runs on a CPU lacking one. */
int eak_cpu_avx512(void);
/* aarch64: Advanced SIMD (part of armv8-a, always there). */
int eak_cpu_neon(void);
/* aarch64 Linux: SDOT/UDOT (HWCAP_ASIMDDP). The build is baseline armv8-a; the dotprod forms are
 * enabled per function. */
int eak_cpu_neon_dotprod(void);

/* ---- Which form runs: what the CPU has, less what eak_force_generic turned off ----------------- */
/* Level 1 of eak_force_generic: every kernel runs its generic form. */
int eak_generic_forced(void);
/* eak_use_avx2() (ea_kernels.h): AVX2-tier forms. eak_use_avx512() (ea_kernels.h): the AVX-512F
 * forms of loops that also have an AVX2 form (KV4 attention, Q4_1 panels); level 2 turns them off. */
/* The AVX512-VNNI integer forms (Q8/Q4 decode rows, the two-row prefill tile); level 2 leaves them
 * on, as it leaves the W2 row and panel kernels (their variants lists below take every form). */
int eak_use_vnni512(void);
/* NEON forms, and their dotprod twins. */
int eak_use_neon(void);
int eak_use_neon_dotprod(void);

/* The form of a kernel with an AVX2 and a NEON twin that runs here (only the argument of this
 * architecture is compiled). */
#if defined(__x86_64__)
#define EAK_PICK(generic, avx2, neon) (eak_use_avx2() ? (avx2) : (generic))
#elif defined(__aarch64__)
#define EAK_PICK(generic, avx2, neon) (eak_use_neon() ? (neon) : (generic))
#else
#define EAK_PICK(generic, avx2, neon) (generic)
#endif
#endif
