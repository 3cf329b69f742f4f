/*
 * test_alloc.c - what the library allocates, proven by counting: malloc, calloc, realloc, free,
 * posix_memalign, aligned_alloc and memalign are interposed (defined here, forwarded to glibc's
 * __libc_* entry points), so every allocation of libedgeattn, its embedded Swift runtime and the
 * OpenMP runtime passes through the counters.
 *
 *   test_alloc SMOLLM2.gguf LINEAR_LM.gguf FORECASTER.gguf [STEPS]
 *
 * Checks (TAP-like "ok"/"not ok" lines, then "N passed, M failed"):
 * - zero heap calls during STEPS (default 1000) decode steps after a short warm-up, for every
 *   attention policy (dense with half, float and 4-bit KV; Λ past its window; DHSA; a per-layer
 *   mix), for the linear-attention LM and for the Aaren forecaster (ea_session_eval_series);
 * - the session's arena is one allocation of exactly ea_estimate_session_bytes minus the documented
 *   bookkeeping reserve (16 KiB + 512 B per layer), and everything ea_session_create keeps allocated
 *   (the arena and the Swift objects: the plan's per-layer tables, the handle) is within the
 *   estimate (transient allocations during create are freed);
 * - with a caller workspace of exactly the estimate, create, decode and free make zero heap calls,
 *   over the same sweep of configurations, with auto_fit too;
 * - 8 sessions of one shared model on 8 threads each produce exactly the tokens of a session run
 *   alone; with 4 threads each under a process-wide limit of 3 (ea_set_thread_limit), at most 3
 *   threads are inside the kernels' parallel regions at once (ea_thread_peak), same tokens;
 * - the process's peak RSS stays within the model file + the sessions' planned bytes + 32 MiB for the
 *   binary, libc, the OpenMP runtime and thread stacks.
 */
#define _GNU_SOURCE
#include "edgeattn.h"

#include <dirent.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- interposed allocator ---------------------------------------------------------------------- */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

/* While counting: calls, bytes requested, the largest request, and the live bytes (usable sizes of
 * blocks allocated minus blocks freed), so transient allocations cancel out. */
static atomic_int g_counting;
static atomic_long g_calls, g_bytes, g_largest, g_live;

static void *note(void *p, size_t n) {
    if (!atomic_load(&g_counting)) return p;
    atomic_fetch_add(&g_calls, 1);
    atomic_fetch_add(&g_bytes, (long)n);
    if (p) atomic_fetch_add(&g_live, (long)malloc_usable_size(p));
    long cur = atomic_load(&g_largest);
    while ((long)n > cur && !atomic_compare_exchange_weak(&g_largest, &cur, (long)n)) {}
    return p;
}
static void unnote(void *p) {
    if (!p || !atomic_load(&g_counting)) return;
    atomic_fetch_add(&g_calls, 1);
    atomic_fetch_sub(&g_live, (long)malloc_usable_size(p));
}
void *malloc(size_t n) { return note(__libc_malloc(n), n); }
void *calloc(size_t a, size_t b) { return note(__libc_calloc(a, b), a * b); }
void *realloc(void *p, size_t n) {
    unnote(p);
    return note(__libc_realloc(p, n), n);
}
void free(void *p) {
    unnote(p);
    __libc_free(p);
}
void *memalign(size_t a, size_t n) { return note(__libc_memalign(a, n), n); }
void *aligned_alloc(size_t a, size_t n) { return note(__libc_memalign(a, n), n); }
int posix_memalign(void **out, size_t a, size_t n) {
    void *p = note(__libc_memalign(a, n), n);
    if (!p) return 12; /* ENOMEM */
    *out = p;
    return 0;
}

static void count_start(void) {
    atomic_store(&g_calls, 0);
    atomic_store(&g_bytes, 0);
    atomic_store(&g_largest, 0);
    atomic_store(&g_live, 0);
    atomic_store(&g_counting, 1);
}
static void count_stop(void) { atomic_store(&g_counting, 0); }

/* ---- checks ------------------------------------------------------------------------------------ */
static int g_passed, g_failed;
static int check(int ok, const char *name, const char *fmt, ...) {
    if (ok) {
        printf("ok - %s\n", name);
        g_passed++;
    } else {
        va_list ap;
        printf("not ok - %s: ", name);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        g_failed++;
    }
    fflush(stdout);
    return ok;
}

/* The reserve ea_estimate_session_bytes includes for a session's bookkeeping (edgeattn.h). */
static long table_reserve(const ea_model *m) { return 16384 + 512L * ea_model_n_layers(m); }

static const ea_token k_prompt[] = {504, 3575, 282, 4649, 314}; /* "The capital of France is" */
static int g_steps = 1000;
static uint64_t g_planned_max;

/* Creates a session (checking what create allocates), prefills, warms up, then counts heap calls
 * over g_steps decode steps (or series samples). */
static void decode_without_allocating(const ea_model *m, ea_session_params p, const char *what, int series) {
    char name[256];
    uint64_t est = 0;
    if (!check(ea_estimate_session_bytes(m, &p, &est) == EA_OK, what, "estimate failed: %s", ea_last_error())) return;
    ea_session *s = NULL;
    count_start();
    ea_status st = ea_session_create(m, &p, &s);
    count_stop();
    if (!check(st == EA_OK, what, "create failed: %s", ea_last_error())) return;
    if (est > g_planned_max) g_planned_max = est;
    long largest = atomic_load(&g_largest), live = atomic_load(&g_live);
    long reserve = table_reserve(m);
    snprintf(name, sizeof name, "%s: the arena is one allocation of exactly the estimate minus the table reserve", what);
    check((uint64_t)largest == est - (uint64_t)reserve && ea_session_allocated_bytes(s) == est, name,
          "largest allocation %ld, estimate %llu - reserve %ld, allocated %llu", largest, (unsigned long long)est,
          reserve, (unsigned long long)ea_session_allocated_bytes(s));
    snprintf(name, sizeof name, "%s: all the session holds (arena + tables) is within the estimate", what);
    check(live >= largest && (uint64_t)live <= est, name, "%ld bytes held, %ld of them besides the arena (reserve %ld)",
          live, live - largest, reserve);

    float x = 350.0f, y[8];
    ea_token tok = 42;
    int warm = 8, fails = 0;
    if (series) {
        for (int i = 0; i < warm; i++, x += 0.1f) fails += ea_session_eval_series(s, &x, 1, y, 8) != EA_OK;
    } else {
        ea_token prompt[5];
        for (int i = 0; i < 5; i++) prompt[i] = k_prompt[i] % ea_model_vocab_size(m);
        fails += ea_session_prefill(s, prompt, 5) != EA_OK;
        for (int i = 0; i < warm; i++) fails += ea_session_decode(s, (ea_token)((100 + i) % ea_model_vocab_size(m)), NULL) != EA_OK;
    }
    count_start();
    for (int i = 0; i < g_steps; i++) {
        if (series) {
            x += 0.1f;
            fails += ea_session_eval_series(s, &x, 1, y, 8) != EA_OK;
        } else {
            const float *lg = NULL;
            fails += ea_session_decode(s, tok, &lg) != EA_OK;
            tok = (ea_token)((100 + i * 7919) % ea_model_vocab_size(m)); /* varied tokens, no sampler needed */
        }
    }
    count_stop();
    snprintf(name, sizeof name, "%s: %d steps run", what, g_steps);
    check(fails == 0, name, "%d calls failed: %s", fails, ea_session_last_error(s));
    snprintf(name, sizeof name, "%s: zero heap calls over %d steps", what, g_steps);
    check(atomic_load(&g_calls) == 0, name, "%ld allocator calls (%ld bytes)", atomic_load(&g_calls),
          atomic_load(&g_bytes));
    ea_session_free(s);
}

/* ---- concurrency ------------------------------------------------------------------------------- */
#define N_GEN 24 /* at most; g_gen are generated (fewer under emulation) */
static int g_gen = N_GEN;
typedef struct {
    const ea_model *m;
    uint32_t n_threads;
    ea_token out[N_GEN];
    int n;
    ea_status st;
} gen_job;

static int32_t collect(ea_token t, const char *piece, size_t len, void *user) {
    (void)piece;
    (void)len;
    gen_job *j = user;
    if (j->n < N_GEN) j->out[j->n++] = t;
    return 0;
}

static void *run_job(void *arg) {
    gen_job *j = arg;
    ea_session_params p = ea_session_default_params();
    p.n_ctx = 64;
    p.n_threads = j->n_threads ? j->n_threads : 1;
    ea_session *s = NULL;
    ea_sampler *smp = NULL;
    ea_sampler_params sp = ea_sampler_default_params();
    sp.temperature = 0;
    j->st = ea_session_create(j->m, &p, &s);
    if (j->st == EA_OK) j->st = ea_sampler_create(j->m, &sp, &smp);
    if (j->st == EA_OK) j->st = ea_generate(s, smp, k_prompt, 5, g_gen, collect, j, NULL, NULL);
    ea_sampler_free(smp);
    ea_session_free(s);
    return NULL;
}

static void test_threads(const ea_model *m) {
    gen_job alone = {.m = m};
    run_job(&alone);
    if (!check(alone.st == EA_OK && alone.n == g_gen, "threads: a session alone generates", "status %d, %d tokens",
               alone.st, alone.n))
        return;
    gen_job jobs[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].m = m;
        pthread_create(&th[i], NULL, run_job, &jobs[i]);
    }
    int same = 1;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].st != EA_OK || jobs[i].n != g_gen || memcmp(jobs[i].out, alone.out, sizeof alone.out) != 0) same = 0;
    }
    check(same, "threads: 8 sessions of one model on 8 threads each give the lone session's tokens", "a thread differed");

    /* the process-wide limit: 8 sessions asking for 4 threads each; their teams together stay within
     * the limit (measured inside the kernels' parallel regions), tokens unchanged; a high limit lets
     * the same run go past it, so the measure can see oversubscription */
    const uint32_t limits[] = {3, 16};
    for (int li = 0; li < 2; li++) {
        ea_set_thread_limit(limits[li]);
        ea_thread_peak(1);
        same = ea_get_thread_limit() == limits[li];
        for (int i = 0; i < 8; i++) {
            memset(&jobs[i], 0, sizeof jobs[i]);
            jobs[i].m = m;
            jobs[i].n_threads = 4;
            pthread_create(&th[i], NULL, run_job, &jobs[i]);
        }
        for (int i = 0; i < 8; i++) {
            pthread_join(th[i], NULL);
            if (jobs[i].st != EA_OK || jobs[i].n != g_gen || memcmp(jobs[i].out, alone.out, sizeof alone.out) != 0) same = 0;
        }
        uint32_t peak = ea_thread_peak(1);
        char name[200];
        if (li == 0) {
            snprintf(name, sizeof name, "threads: limit %u, 8 sessions x 4 threads: at most %u threads in kernels at once, same tokens",
                     limits[li], limits[li]);
            check(same && peak >= 2 && peak <= limits[li], name, "peak %u, tokens %s", peak, same ? "same" : "differ");
        } else {
            snprintf(name, sizeof name, "threads: limit %u: the same run puts more than 3 threads in kernels at once (the measure sees it)",
                     limits[li]);
            check(same && peak > 3, name, "peak %u, tokens %s", peak, same ? "same" : "differ");
        }
    }
    ea_set_thread_limit(0);
    check(ea_get_thread_limit() > 0, "threads: limit 0 restores the core count", "%u", ea_get_thread_limit());
}

/* Threads of this process (/proc/self/task entries; qemu-user shows the guest's threads there too).
 * Not inside a counting window: opendir allocates. */
static int task_count(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Waits (up to 60 s) until the process has at most `base` threads again. The OpenMP worker threads
 * of test_threads' pthreads are released when those exit and free their state on their own time:
 * a free landing in a later counting window would be counted against the library (seen on the
 * emulated board: "create makes no heap calls ... 1 calls", not reproducible). */
static void wait_for_threads(int base) {
    for (int i = 0; i < 600 && base > 0 && task_count() > base; ++i) usleep(100000);
}

/* Creates a session in a workspace of ws_size bytes; returns the heap calls create made (-1 if it
 * failed; *st gets the status). */
static long create_in_workspace(const ea_model *m, ea_session_params p, void *ws, uint64_t ws_size, ea_session **s,
                                ea_status *st) {
    p.workspace = ws;
    p.workspace_size = ws_size;
    *s = NULL;
    count_start();
    *st = ea_session_create(m, &p, s);
    count_stop();
    return *st == EA_OK ? atomic_load(&g_calls) : -1;
}

/* With a caller workspace the library calls no allocator: create, prefill, decode, free. */
static void test_workspace(const ea_model *m) {
    ea_session_params p = ea_session_default_params();
    p.n_ctx = 512;
    p.n_threads = 2;
    uint64_t est = 0;
    ea_estimate_session_bytes(m, &p, &est);
    void *ws = NULL;
    if (posix_memalign(&ws, 64, (size_t)est) != 0) { check(0, "workspace: allocation", ""); return; }
    ea_session *s = NULL;
    ea_status st;
    long calls = create_in_workspace(m, p, ws, est, &s, &st);
    check(st == EA_OK && calls == 0, "workspace: create makes no heap calls", "status %d (%s), %ld calls", st,
          ea_last_error(), calls);
    if (st != EA_OK) { free(ws); return; }
    /* warm-up, not counted (as in the per-token test): GNU libgomp may allocate a thread team the
     * first time this thread runs a parallel region of a given size; that is the OpenMP runtime's */
    int fails = ea_session_prefill(s, k_prompt, 5) != EA_OK;
    fails += ea_session_decode(s, 99, NULL) != EA_OK;
    ea_session_reset(s);
    count_start();
    fails += ea_session_prefill(s, k_prompt, 5) != EA_OK;
    for (int i = 0; i < 32; i++) fails += ea_session_decode(s, (ea_token)(100 + i), NULL) != EA_OK;
    ea_session_reset(s);
    fails += ea_session_prefill(s, k_prompt, 5) != EA_OK;
    count_stop();
    check(fails == 0 && atomic_load(&g_calls) == 0, "workspace: prefill, decode and reset make no heap calls",
          "%d failures, %ld calls", fails, atomic_load(&g_calls));
    count_start();
    ea_session_free(s);
    count_stop();
    check(atomic_load(&g_calls) == 0, "workspace: ea_session_free makes no heap calls", "%ld calls", atomic_load(&g_calls));

    /* the same tokens as a session on the heap */
    ea_session *h = NULL;
    const float *la = NULL, *lb = NULL;
    calls = create_in_workspace(m, p, ws, est, &s, &st);
    int same = st == EA_OK && ea_session_create(m, &p, &h) == EA_OK && ea_session_prefill(s, k_prompt, 5) == EA_OK &&
               ea_session_prefill(h, k_prompt, 5) == EA_OK && ea_session_decode(s, 1234, &la) == EA_OK &&
               ea_session_decode(h, 1234, &lb) == EA_OK && memcmp(la, lb, sizeof(float) * ea_model_vocab_size(m)) == 0;
    check(same, "workspace: logits equal a heap session's", "status %d", st);
    ea_session_free(s);
    ea_session_free(h);

    /* one byte short: refused, nothing allocated, nothing left held */
    calls = create_in_workspace(m, p, ws, est - 1, &s, &st);
    check(st == EA_ERR_BUDGET && s == NULL, "workspace: one byte short of the estimate is EA_ERR_BUDGET",
          "status %d", st);

    /* auto_fit inside a workspace: the search's temporaries also stay in the workspace */
    ea_session_params f = p;
    f.n_ctx = 8192; /* even at 4-bit KV too large: the search bisects the context */
    f.auto_fit = 1;
    calls = create_in_workspace(m, f, ws, est, &s, &st);
    ea_session_params got = ea_session_default_params();
    check(st == EA_OK && calls == 0 && ea_session_get_params(s, &got) == EA_OK && ea_session_allocated_bytes(s) <= est &&
          got.kv_bits == 4 && got.n_ctx > 512 && got.n_ctx < 8192,
          "workspace: auto_fit bisects to a session inside it without heap calls", "status %d (%s), %ld calls, n_ctx %u kv %u",
          st, ea_last_error(), calls, got.n_ctx, got.kv_bits);
    ea_session_free(s);
    free(ws);
}

/* The arena equals the estimate across threads, contexts, KV formats, windows and budgets (create
 * only: cheap, so the sweep is wide). */
static void sweep_estimates(const ea_model *m) {
    const uint32_t threads[] = {1, 2, 4, 8}, ctxs[] = {16, 100, 1000, 4096}, bits[] = {32, 16, 8, 4};
    const uint32_t pols[] = {EA_ATTN_DENSE, EA_ATTN_LAMBDA, EA_ATTN_DHSA};
    int n = 0, bad = 0, bad_ws = 0;
    long reserve = table_reserve(m);
    char detail[256] = "", detail_ws[512] = "";
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 4; b++)
            for (size_t c = 0; c < 4; c++)
                for (size_t d = 0; d < 3; d++) {
                    ea_session_params p = ea_session_default_params();
                    p.n_threads = threads[a];
                    p.n_ctx = ctxs[b];
                    p.kv_bits = bits[c];
                    p.attention = pols[d];
                    p.attn_window = ctxs[b] / 2 + 1;
                    p.dhsa_budget = ctxs[b] >= 512 ? ctxs[b] / 4 : 0;
                    p.n_batch = 1 + (uint32_t)(a * 7 + b * 3) % 64;
                    uint64_t est = 0;
                    if (ea_estimate_session_bytes(m, &p, &est) != EA_OK) continue;
                    ea_session *s = NULL;
                    count_start();
                    ea_status st = ea_session_create(m, &p, &s);
                    count_stop();
                    n++;
                    long largest = atomic_load(&g_largest), live = atomic_load(&g_live);
                    if (st != EA_OK || (uint64_t)largest != est - (uint64_t)reserve || (uint64_t)live > est ||
                        ea_session_allocated_bytes(s) != est) {
                        bad++;
                        snprintf(detail, sizeof detail, "threads %u ctx %u kv %u policy %u: status %d, largest %ld, held %ld, estimate %llu",
                                 p.n_threads, p.n_ctx, p.kv_bits, p.attention, st, largest, live, (unsigned long long)est);
                    }
                    ea_session_free(s);
                    /* the same configuration in a workspace of exactly the estimate */
                    void *ws = NULL;
                    if (posix_memalign(&ws, 64, (size_t)est) != 0) { bad_ws++; continue; }
                    long calls = create_in_workspace(m, p, ws, est, &s, &st);
                    count_start();
                    ea_session_free(s);
                    count_stop();
                    if (calls != 0 || atomic_load(&g_calls) != 0) {
                        bad_ws++;
                        snprintf(detail_ws, sizeof detail_ws, "threads %u ctx %u kv %u policy %u: status %d (%s), %ld calls",
                                 p.n_threads, p.n_ctx, p.kv_bits, p.attention, st, ea_last_error(), calls);
                    }
                    free(ws);
                }
    char name[160];
    snprintf(name, sizeof name, "arena == estimate - reserve, held <= estimate over %d configurations (threads, n_ctx, KV bits, policy, batch)", n);
    check(bad == 0 && n > 150, name, "%d wrong; last: %s", bad, detail);
    snprintf(name, sizeof name, "zero heap calls to create and free in a workspace over the same %d configurations", n);
    check(bad_ws == 0 && n > 150, name, "%d wrong; last: %s", bad_ws, detail_ws);
}

static long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static ea_model *load(const char *path) {
    ea_model *m = NULL;
    if (!check(ea_model_load(path, NULL, &m) == EA_OK, path, "load failed: %s", ea_last_error())) return NULL;
    return m;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s SMOLLM2.gguf LINEAR_LM.gguf FORECASTER.gguf [STEPS]\n", argv[0]);
        return 2;
    }
    if (argc == 5) g_steps = atoi(argv[4]);
    /* the thread tests generate 8 sessions x 3 rounds: a few tokens each under emulation */
    if (g_steps < 4 * N_GEN) g_gen = g_steps / 4 < 4 ? 4 : g_steps / 4;
    setvbuf(stdout, NULL, _IOLBF, 0);
    ea_model *m = load(argv[1]), *lm = load(argv[2]), *fc = load(argv[3]);
    if (m) {
        ea_session_params p = ea_session_default_params();
        p.n_ctx = (uint32_t)g_steps + 64;
        p.n_threads = 2;
        decode_without_allocating(m, p, "dense, 16-bit KV", 0);
        p.kv_bits = 32;
        decode_without_allocating(m, p, "dense, float KV", 0);
        p.kv_bits = 4;
        decode_without_allocating(m, p, "dense, 4-bit KV", 0);
        p.kv_bits = 0;
        ea_session_params l = p;
        l.attention = EA_ATTN_LAMBDA;
        l.attn_sinks = 4;
        l.attn_window = 60; /* the stream passes the window many times */
        decode_without_allocating(m, l, "lambda, 16-bit KV", 0);
        l.kv_bits = 4;
        decode_without_allocating(m, l, "lambda, 4-bit KV", 0);
        ea_session_params d = p;
        d.attention = EA_ATTN_DHSA;
        d.dhsa_budget = 256;
        decode_without_allocating(m, d, "DHSA", 0);
        uint8_t mix[30];
        for (int i = 0; i < 30; i++) mix[i] = (uint8_t)(i % 3);
        ea_session_params x = p;
        x.n_layer_attention = 30;
        x.layer_attention = mix;
        x.attn_window = 60;
        x.dhsa_budget = 256;
        decode_without_allocating(m, x, "per-layer dense/lambda/DHSA", 0);
        const int base = task_count();
        test_threads(m);
        wait_for_threads(base);
        test_workspace(m);
        sweep_estimates(m);
    }
    if (lm) {
        ea_session_params p = ea_session_default_params();
        p.n_threads = 2;
        decode_without_allocating(lm, p, "linear-attention LM", 0);
    }
    if (fc) {
        ea_session_params p = ea_session_default_params();
        p.n_threads = 1;
        decode_without_allocating(fc, p, "Aaren forecaster (series)", 1);
    }
    if (m) {
        long rss = peak_rss_kb();
        uint64_t limit = ea_model_file_bytes(m) + ea_model_file_bytes(lm) + ea_model_file_bytes(fc) +
                         ea_model_resident_bytes(m) + ea_model_resident_bytes(lm) + ea_model_resident_bytes(fc) +
                         9 * g_planned_max + (32u << 20);
        check(rss > 0 && (uint64_t)rss * 1024 <= limit, "peak RSS within models + planned sessions + 32 MiB",
              "peak %ld kB, limit %llu kB", rss, (unsigned long long)(limit / 1024));
    }
    ea_model_free(m);
    ea_model_free(lm);
    ea_model_free(fc);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
