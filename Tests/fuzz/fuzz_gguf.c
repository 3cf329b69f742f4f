/*
 * fuzz_gguf.c - libFuzzer harness for the GGUF loader and everything a loaded model feeds:
 * each input is a file given to ea_model_load (through a memfd, so the real mmap path runs); if it
 * loads, a small session is created and used (tokenize, prefill, decode; or series samples), the
 * state is saved and restored, and everything is freed. Any crash, sanitizer report or leak is a
 * finding; status codes are fine.
 *
 *   bash cross/build-lib.sh fuzz && make -C examples fuzz
 *   build/x86_64-linux-gnu-fuzz/bin/fuzz_gguf -max_total_time=60 CORPUS_DIR SEED_DIR...
 * Odd inputs read the file into memory (use_mmap = 0: ASan then guards the parser's reads), even
 * ones map it.
 */
#define _GNU_SOURCE
#include "edgeattn.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void exercise(ea_model *m) {
    ea_session_params p = ea_session_default_params();
    p.n_ctx = 16;
    p.n_batch = 4;
    p.n_threads = 1;
    p.memory_budget = 64u << 20; /* crafted hyperparameters must not make us allocate gigabytes */
    ea_session *s = NULL;
    if (ea_session_create(m, &p, &s) != EA_OK) return;
    if (ea_model_series_outputs(m) > 0) {
        float x[3] = {1.0f, 2.0f, 3.0f}, y[3 * 64];
        if (ea_model_series_outputs(m) <= 64) ea_session_eval_series(s, x, 3, y, sizeof y / sizeof y[0]);
    } else {
        ea_token toks[8];
        size_t n = 0;
        if (ea_tokenize(m, "Hi there 12", 11, 1, 1, toks, 8, &n) == EA_OK && n > 0) {
            const float *lg = NULL;
            if (ea_session_prefill(s, toks, n) == EA_OK) ea_session_decode(s, toks[0], &lg);
        }
        char buf[64];
        size_t nb = 0;
        ea_token_to_text(m, 0, buf, sizeof buf, &nb);
    }
    size_t sz = ea_session_state_size(s);
    void *st = sz && sz < (128u << 20) ? malloc(sz) : NULL;
    size_t written = 0;
    if (st && ea_session_state_save(s, st, sz, &written) == EA_OK) ea_session_state_load(s, st, written);
    free(st);
    ea_session_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz.gguf", 0);
    if (fd < 0) return 0;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ea_model *m = NULL;
    ea_model_params mp = ea_model_default_params();
    mp.use_mmap = size % 2 == 0;
    if (ea_model_load(path, &mp, &m) == EA_OK) {
        exercise(m);
        ea_model_free(m);
    }
    close(fd);
    return 0;
}
