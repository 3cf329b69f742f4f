/* Platform shims for the Swift core: the core imports no libc module (the embedded aarch64 build has
 * none), so file mapping, allocation, clocks and CPU features come through these few functions. */
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
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

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
        p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
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

const char *eak_isa_name(void) {
#if defined(__aarch64__)
#if defined(__linux__)
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) return "neon-dotprod";
#endif
    return "neon";
#elif defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
    return "generic";
#else
    return "generic";
#endif
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
