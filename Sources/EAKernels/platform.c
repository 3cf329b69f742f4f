/* Platform shims for the Swift core: the core imports no libc module (the embedded aarch64 build has
 * none), so file mapping, allocation, clocks and threads come through these few functions (CPU features:
 * cpu.c). */
#define _GNU_SOURCE
#include "ea_kernels.h"
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const void *eak_map_file(const char *path, int use_mmap, uint64_t *out_size, int *err_no) {
    *out_size = 0;
    *err_no = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { *err_no = errno; return NULL; }
    struct stat st;
    if (fstat(fd, &st) != 0) { *err_no = errno; close(fd); return NULL; }
    if (!S_ISREG(st.st_mode)) { *err_no = EISDIR; close(fd); return NULL; }
    uint64_t size = (uint64_t)st.st_size;
    *out_size = size;
    if (size == 0) { close(fd); *err_no = 0; return ""; } /* empty file: non-NULL, parser reports truncation */
    void *p = NULL;
    if (use_mmap) {
        /* writable and private (copy on write): the model loader reorders W2 matrices in place into
         * panels; the file itself never changes, and pages nobody writes stay shared page cache */
        p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) { *err_no = errno; close(fd); return NULL; }
    } else {
        p = malloc((size_t)size);
        if (!p) { *err_no = ENOMEM; close(fd); return NULL; }
        uint64_t done = 0;
        while (done < size) {
            ssize_t r = read(fd, (char *)p + done, (size_t)(size - done));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) { *err_no = r < 0 ? errno : EIO; free(p); close(fd); return NULL; }
            done += (uint64_t)r;
        }
    }
    close(fd);
    return p;
}

void eak_unmap_file(const void *ptr, uint64_t size, int use_mmap) {
    if (!ptr || size == 0) return;
    if (use_mmap) munmap((void *)ptr, (size_t)size);
    else free((void *)ptr);
}

void *eak_alloc(uint64_t size) {
    void *p = NULL;
    if (size == 0) size = 1;
    if (posix_memalign(&p, 64, (size_t)size) != 0) return NULL;
    return p;
}

void eak_free(void *ptr) { free(ptr); }

void eak_strerror(int e, char *buf, size_t size) {
    if (!buf || size == 0) return;
    snprintf(buf, size, "%s", strerror(e));
}

int eak_num_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

uint64_t eak_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static _Thread_local char tls_error[512];

void eak_tls_error_set(const char *msg, size_t len) {
    if (len >= sizeof tls_error) len = sizeof tls_error - 1;
    memcpy(tls_error, msg, len);
    tls_error[len] = 0;
}

const char *eak_tls_error_get(void) { return tls_error; }

/* Debug builds' handle quarantine: freed handles stay allocated (and reachable from here, so leak
 * checkers do not report them) so that a later use can be recognised instead of touching freed
 * memory. Never used by release builds. */
static void **quarantine;
static size_t quarantine_n, quarantine_cap;
static pthread_mutex_t quarantine_lock = PTHREAD_MUTEX_INITIALIZER;

void eak_quarantine_push(void *p) {
    pthread_mutex_lock(&quarantine_lock);
    if (quarantine_n == quarantine_cap) {
        size_t cap = quarantine_cap ? quarantine_cap * 2 : 64;
        void **q = realloc(quarantine, cap * sizeof *q);
        if (q) {
            quarantine = q;
            quarantine_cap = cap;
        }
    }
    if (quarantine_n < quarantine_cap) quarantine[quarantine_n++] = p;
    pthread_mutex_unlock(&quarantine_lock);
}

int32_t eak_load_flag(const volatile int32_t *flag) {
    return atomic_load_explicit((const volatile _Atomic int32_t *)flag, memory_order_acquire);
}

int eak_write_fd(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* ---- process-wide thread limit ------------------------------------------------------------------
 * Sessions share `limit` kernel-thread slots (default: online cores). A call with n_threads > 1
 * takes up to n_threads free slots for its team and gives them back when its batch is done; when
 * none are free it runs on its calling thread alone. So however many sessions run at once, their
 * OpenMP teams hold at most `limit` threads together (callers' own threads aside), and nothing
 * blocks. Thread count does not change results (every kernel splits work, never a reduction). */
static atomic_int g_thread_limit;   /* 0: online cores */
static atomic_int g_threads_in_use;
static atomic_int g_team_threads, g_team_peak; /* measured inside parallel regions */

static atomic_int g_cores; /* cached: sysconf reads /sys, not for every batch */
static int thread_limit(void) {
    int l = atomic_load(&g_thread_limit);
    if (l > 0) return l;
    int c = atomic_load(&g_cores);
    if (c == 0) atomic_store(&g_cores, c = eak_num_cores());
    return c;
}

int32_t eak_threads_acquire(int32_t want) {
    int used = atomic_load(&g_threads_in_use);
    for (;;) {
        int take = thread_limit() - used;
        if (take > want) take = want;
        if (take < 2) return 0; /* a team of one is the calling thread: no slot, no region */
        if (atomic_compare_exchange_weak(&g_threads_in_use, &used, used + take)) return take;
    }
}

void eak_threads_release(int32_t taken) {
    if (taken > 0) atomic_fetch_sub(&g_threads_in_use, taken);
}

void eak_set_thread_limit(int32_t limit) { atomic_store(&g_thread_limit, limit > 0 ? limit : 0); }
int32_t eak_get_thread_limit(void) { return thread_limit(); }

void eak_team_enter(int n) {
    int now = atomic_fetch_add(&g_team_threads, n) + n;
    int peak = atomic_load(&g_team_peak);
    while (now > peak && !atomic_compare_exchange_weak(&g_team_peak, &peak, now)) {}
}
void eak_team_leave(int n) { atomic_fetch_sub(&g_team_threads, n); }
int32_t eak_team_peak(int reset) { return reset ? atomic_exchange(&g_team_peak, 0) : atomic_load(&g_team_peak); }
