/*
 * team.h - work sharing inside `#pragma omp parallel` regions without `omp for`.
 *
 * LLVM 14's libomp (the host build's OpenMP runtime) calls the allocator in every
 * __kmpc_for_static_init, i.e. on every `omp parallel for` (about 4 heap calls per loop, even when
 * the region is serialized by an if clause). That would break the promise that decoding a token
 * allocates nothing (Tests/c/test_alloc.c counts), so the kernels split their loops by hand:
 * eak_team_lo/hi give the calling thread a contiguous block (as schedule(static)); a cyclic split
 * (as schedule(static, 1)) steps by eak_team_size() from eak_team_id(). Same iterations, same
 * results.
 */
#ifndef EA_TEAM_H
#define EA_TEAM_H
#include <stdint.h>
#include <omp.h>

static inline int eak_team_id(void) { return omp_get_thread_num(); }
static inline int eak_team_size(void) { return omp_get_num_threads(); }
static inline int eak_team_lo(int n) { return (int)((int64_t)n * eak_team_id() / eak_team_size()); }
static inline int eak_team_hi(int n) { return (int)((int64_t)n * (eak_team_id() + 1) / eak_team_size()); }

/* Runs the statement (a loop split with the helpers above) on a team of eak_nt threads (a variable
 * the caller declares; the master adds its team's size as the region starts and each member takes
 * itself off as it finishes, so the count is the threads OpenMP gave to kernels that are still at
 * work: the thread-limit test reads its peak)
 * when use_team, else directly on the calling thread: libomp also allocates on
 * entering a serialized region (num_threads(1) or a false if clause), so a one-thread call must not
 * enter one. Outside a region eak_team_id() is 0 and eak_team_size() 1. No preprocessor directives
 * inside the statement (it is a macro argument). */
#define EAK_PARALLEL(use_team, ...)                                                            \
    do {                                                                                        \
        if (use_team) {                                                                         \
            _Pragma("omp parallel num_threads(eak_nt)") {                                       \
                if (omp_get_thread_num() == 0) eak_team_enter(omp_get_num_threads());          \
                { __VA_ARGS__ }                                                                 \
                eak_team_leave(1);                                                              \
            }                                                                                   \
        } else {                                                                                \
            __VA_ARGS__                                                                         \
        }                                                                                       \
    } while (0)

#endif
