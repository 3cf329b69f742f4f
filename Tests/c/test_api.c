/*
 * test_api.c - checks the C API of libedgeattn against the contract in include/edgeattn.h.
 *
 * Usage: test_api MODEL_PATH CORRUPT_DIR
 *   MODEL_PATH  the real SmolLM2-135M-Instruct Q4_1 GGUF (examples/fetch-model.sh smollm2)
 *   CORRUPT_DIR the output of Tests/python/make_corrupt.py (crafted GGUF files + expected.txt)
 *
 * Prints one line per check, "ok - name" or "not ok - name: detail", then "N passed, M failed".
 * Exit status 1 if any check failed, 2 for a usage error.
 */
#define _POSIX_C_SOURCE 200809L
#include "edgeattn.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- reporting ------------------------------------------------------------------------------ */

static int g_passed, g_failed;

/* Records one check. fmt/... describe the failure (ignored when ok). Returns ok. */
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

static const struct {
    const char *name;
    ea_status value;
} k_status[] = {
    {"EA_OK", EA_OK},
    {"EA_ERR_INVALID_ARGUMENT", EA_ERR_INVALID_ARGUMENT},
    {"EA_ERR_IO", EA_ERR_IO},
    {"EA_ERR_BAD_MAGIC", EA_ERR_BAD_MAGIC},
    {"EA_ERR_UNSUPPORTED_VERSION", EA_ERR_UNSUPPORTED_VERSION},
    {"EA_ERR_TRUNCATED", EA_ERR_TRUNCATED},
    {"EA_ERR_CORRUPT", EA_ERR_CORRUPT},
    {"EA_ERR_UNSUPPORTED_TYPE", EA_ERR_UNSUPPORTED_TYPE},
    {"EA_ERR_UNSUPPORTED_ARCH", EA_ERR_UNSUPPORTED_ARCH},
    {"EA_ERR_MISSING_TENSOR", EA_ERR_MISSING_TENSOR},
    {"EA_ERR_SHAPE", EA_ERR_SHAPE},
    {"EA_ERR_METADATA", EA_ERR_METADATA},
    {"EA_ERR_BUDGET", EA_ERR_BUDGET},
    {"EA_ERR_OUT_OF_MEMORY", EA_ERR_OUT_OF_MEMORY},
    {"EA_ERR_TOKEN_RANGE", EA_ERR_TOKEN_RANGE},
    {"EA_ERR_CONTEXT_FULL", EA_ERR_CONTEXT_FULL},
    {"EA_ERR_BUFFER_TOO_SMALL", EA_ERR_BUFFER_TOO_SMALL},
    {"EA_ERR_ABORTED", EA_ERR_ABORTED},
    {"EA_ERR_TOKENIZER", EA_ERR_TOKENIZER},
    {"EA_ERR_KERNEL_MISMATCH", EA_ERR_KERNEL_MISMATCH},
    {"EA_ERR_STATE_MISMATCH", EA_ERR_STATE_MISMATCH},
    {"EA_ERR_MODEL_KIND", EA_ERR_MODEL_KIND},
};
#define N_STATUS (sizeof k_status / sizeof k_status[0])

static const char *status_name(ea_status s) {
    for (size_t i = 0; i < N_STATUS; i++)
        if (k_status[i].value == s) return k_status[i].name;
    return "(unknown status value)";
}

/* Checks that `got` is `want`; the failure detail names both and the library's message. */
static int expect(ea_status got, ea_status want, const char *name, const char *errtext) {
    return check(got == want, name, "got %s (%d), want %s; error text: \"%s\"", status_name(got),
                 (int)got, status_name(want), errtext ? errtext : "(null)");
}

static const char *nonnull(const char *s) { return s ? s : "(null)"; }

/* ---- shared fixtures -------------------------------------------------------------------------- */

#define PROMPT "The capital of France is"
/* llama.cpp's ids for PROMPT and the first greedy ids after it (Tests/Fixtures/reference/smollm2-greedy.md). */
static const ea_token k_prompt_ids[] = {504, 3575, 282, 4649, 314};
#define N_PROMPT_IDS 5
static const ea_token k_ref_greedy_head[] = {7042, 30, 198, 198}; /* " Paris" "." "\n" "\n" */

typedef struct {
    ea_token tokens[256];
    int n;          /* callbacks seen */
    int stop_at;    /* return non-zero on this call (1-based); 0 = never */
    int abort_at;   /* set *abort_flag on this call; 0 = never */
    volatile int32_t *abort_flag;
    const ea_model *model;
    int piece_mismatch; /* a piece differed from ea_token_to_text */
} gen_log;

static int32_t on_token(ea_token token, const char *piece, size_t piece_len, void *user_data) {
    gen_log *g = (gen_log *)user_data;
    char buf[256];
    size_t nb = 0;
    if (g->n < (int)(sizeof g->tokens / sizeof g->tokens[0])) g->tokens[g->n] = token;
    g->n++;
    if (ea_token_to_text(g->model, token, buf, sizeof buf, &nb) != EA_OK || nb != piece_len ||
        (piece_len > 0 && (piece == NULL || memcmp(buf, piece, piece_len) != 0)))
        g->piece_mismatch++;
    if (g->abort_at > 0 && g->n == g->abort_at && g->abort_flag) *g->abort_flag = 1;
    return (g->stop_at > 0 && g->n == g->stop_at) ? 1 : 0;
}

static void gen_log_init(gen_log *g, const ea_model *m) {
    memset(g, 0, sizeof *g);
    g->model = m;
}

static ea_session_params small_session(uint32_t n_ctx) {
    ea_session_params p = ea_session_default_params();
    p.n_ctx = n_ctx;
    return p;
}

/* DHSA with small global/local/query blocks, so a prompt of 64 tokens is already sparse */
static ea_session_params small_dhsa(uint32_t n_ctx) {
    ea_session_params p = small_session(n_ctx);
    p.attention = EA_ATTN_DHSA;
    p.dhsa_global = 8;
    p.dhsa_local = 16;
    p.dhsa_query_block = 8;
    p.dhsa_chunk_min = 4;
    p.dhsa_chunk_max = 16;
    return p;
}

/* ---- checks without a model ----------------------------------------------------------------- */

/* The SIMD integer kernels this CPU dispatches to equal the generic C ones bit for bit (run on the
 * host, and under qemu as Cortex-A72 = NEON and as "max" = NEON dotprod). */
static void test_self_test(void) {
    char report[200] = "";
    ea_status st = ea_self_test(report, sizeof report);
    check(st == EA_OK, "ea_self_test: SIMD kernels == generic", "%s: %s", ea_status_string(st), report);
    printf("  self test: %s\n", report);
    char tiny[8];
    ea_self_test(tiny, sizeof tiny);
    check(strlen(tiny) == 7, "ea_self_test truncates its report to the buffer", "got %zu bytes", strlen(tiny));
    check(ea_self_test(NULL, 0) == st, "ea_self_test accepts a NULL report", "");
}

static void test_version_and_status(void) {
    char name[160] = "";
    check(ea_version() == EA_VERSION_NUMBER, "ea_version() == EA_VERSION_NUMBER",
          "library %u, header %u", (unsigned)ea_version(), (unsigned)EA_VERSION_NUMBER);

    int all_ok = 1, distinct = 1, prefixed = 1;
    char detail[256] = "";
    for (size_t i = 0; i < N_STATUS; i++) {
        const char *s = ea_status_string(k_status[i].value);
        if (!s || !*s) {
            all_ok = 0;
            snprintf(detail, sizeof detail, "%s gives %s", k_status[i].name, s ? "\"\"" : "NULL");
            continue;
        }
        if (strncmp(s, k_status[i].name, strlen(k_status[i].name)) != 0 ||
            (s[strlen(k_status[i].name)] != '\0' && s[strlen(k_status[i].name)] != ':')) {
            prefixed = 0;
            snprintf(name, sizeof name, "%s gives \"%.80s\"", k_status[i].name, s);
        }
        for (size_t j = 0; j < i; j++) {
            const char *t = ea_status_string(k_status[j].value);
            if (t && strcmp(s, t) == 0) {
                distinct = 0;
                snprintf(detail, sizeof detail, "%s and %s both give \"%s\"", k_status[i].name,
                         k_status[j].name, s);
            }
        }
    }
    check(all_ok, "ea_status_string is non-empty for every status", "%s", detail);
    check(distinct, "ea_status_string is distinct for every status", "%s", detail);
    check(prefixed, "ea_status_string starts with the status name", "%s", name);
    {
        const ea_status unknown[] = {-1, 22, 1000, INT32_MIN};
        int ok = 1;
        const char *bad = "";
        for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
            const char *s = ea_status_string(unknown[i]);
            if (!s || strstr(s, "unknown status") == NULL) {
                ok = 0;
                bad = s ? s : "(null)";
            }
        }
        check(ok, "ea_status_string of unknown values says \"unknown status\"", "got \"%s\"", bad);
    }
    check(ea_last_error() != NULL, "ea_last_error() is never NULL", "NULL");
}

static void test_null_arguments_without_model(void) {
    ea_model *m = (ea_model *)&g_passed; /* a non-NULL sentinel the library must overwrite */
    ea_session *s = (ea_session *)&g_passed;
    ea_sampler *smp = (ea_sampler *)&g_passed;
    ea_token toks[8];
    char buf[64];
    size_t n = 0;
    uint64_t bytes = 0;
    int32_t ngen = -1;
    ea_status st;

    ea_model_free(NULL);
    ea_session_free(NULL);
    ea_sampler_free(NULL);
    check(1, "free functions accept NULL", "");

    st = ea_model_load(NULL, NULL, &m);
    expect(st, EA_ERR_INVALID_ARGUMENT, "ea_model_load(path NULL)", ea_last_error());
    check(m == NULL, "ea_model_load(path NULL) sets *out_model to NULL", "left %p", (void *)m);
    st = ea_model_load("/nonexistent/x.gguf", NULL, NULL);
    expect(st, EA_ERR_INVALID_ARGUMENT, "ea_model_load(out_model NULL)", ea_last_error());

    check(ea_model_vocab_size(NULL) == 0 && ea_model_context_length(NULL) == 0 &&
              ea_model_n_layers(NULL) == 0 && ea_model_n_embd(NULL) == 0,
          "model integer getters return 0 for NULL", "vocab %d ctx %d layers %d embd %d",
          (int)ea_model_vocab_size(NULL), (int)ea_model_context_length(NULL),
          (int)ea_model_n_layers(NULL), (int)ea_model_n_embd(NULL));
    {
        const char *a = ea_model_architecture(NULL);
        check(a != NULL && a[0] == '\0', "ea_model_architecture(NULL) is \"\"", "got %s",
              a ? a : "NULL");
    }
    check(ea_model_resident_bytes(NULL) == 0 && ea_model_file_bytes(NULL) == 0,
          "model byte getters return 0 for NULL", "resident %llu file %llu",
          (unsigned long long)ea_model_resident_bytes(NULL),
          (unsigned long long)ea_model_file_bytes(NULL));
    check(ea_model_last_error(NULL) != NULL, "ea_model_last_error(NULL) is not NULL", "NULL");
    check(ea_token_bos(NULL) == -1 && ea_token_eos(NULL) == -1,
          "ea_token_bos/eos(NULL) are -1", "bos %d eos %d", (int)ea_token_bos(NULL),
          (int)ea_token_eos(NULL));
    check(ea_token_is_eog(NULL, 0) == 0, "ea_token_is_eog(NULL, 0) is 0", "got %d",
          (int)ea_token_is_eog(NULL, 0));

    st = ea_tokenize(NULL, "a", 1, 0, 0, toks, 8, &n);
    expect(st, EA_ERR_INVALID_ARGUMENT, "ea_tokenize(model NULL)", ea_last_error());
    st = ea_token_to_text(NULL, 0, buf, sizeof buf, &n);
    expect(st, EA_ERR_INVALID_ARGUMENT, "ea_token_to_text(model NULL)", ea_last_error());
    {
        const char *roles[] = {"user"}, *contents[] = {"hi"};
        st = ea_chat_format(NULL, roles, contents, 1, 1, buf, sizeof buf, &n);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_chat_format(model NULL)", ea_last_error());
    }
    {
        ea_session_params p = ea_session_default_params();
        st = ea_estimate_session_bytes(NULL, &p, &bytes);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_estimate_session_bytes(model NULL)",
               ea_last_error());
        st = ea_session_create(NULL, &p, &s);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_session_create(model NULL)", ea_last_error());
        check(s == NULL, "ea_session_create(model NULL) sets *out_session to NULL", "left %p",
              (void *)s);
    }
    check(ea_session_allocated_bytes(NULL) == 0 && ea_session_n_past(NULL) == 0 &&
              ea_session_n_ctx(NULL) == 0 && ea_session_logits(NULL) == NULL,
          "session getters return 0/NULL for NULL", "allocated %llu n_past %d n_ctx %d",
          (unsigned long long)ea_session_allocated_bytes(NULL), (int)ea_session_n_past(NULL),
          (int)ea_session_n_ctx(NULL));
    check(ea_session_last_error(NULL) != NULL, "ea_session_last_error(NULL) is not NULL", "NULL");
    ea_session_reset(NULL);
    check(1, "ea_session_reset(NULL) does not crash", "");
    toks[0] = 0;
    st = ea_session_prefill(NULL, toks, 1);
    expect(st, EA_ERR_INVALID_ARGUMENT, "ea_session_prefill(session NULL)", ea_last_error());
    st = ea_session_decode(NULL, 0, NULL);
    expect(st, EA_ERR_INVALID_ARGUMENT, "ea_session_decode(session NULL)", ea_last_error());
    {
        ea_sampler_params sp = ea_sampler_default_params();
        st = ea_sampler_create(NULL, &sp, &smp);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_sampler_create(model NULL)", ea_last_error());
        check(smp == NULL, "ea_sampler_create(model NULL) sets *out_sampler to NULL", "left %p",
              (void *)smp);
    }
    {
        float logits[4] = {0, 1, 2, 3};
        ea_token t = 0;
        st = ea_sampler_sample(NULL, logits, &t);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_sampler_sample(sampler NULL)", ea_last_error());
    }
    ea_sampler_accept(NULL, 0);
    check(1, "ea_sampler_accept(NULL, 0) does not crash", "");
    st = ea_generate(NULL, NULL, toks, 1, 4, NULL, NULL, NULL, &ngen);
    expect(st, EA_ERR_INVALID_ARGUMENT, "ea_generate(session NULL)", ea_last_error());
    check(ea_last_error() != NULL && ea_last_error()[0] != '\0',
          "ea_last_error() is set after a failing call", "empty");
}

static void test_missing_and_directory(const char *dir) {
    ea_model *m = (ea_model *)&g_passed;
    ea_status st = ea_model_load("/nonexistent-dir/no-such-model.gguf", NULL, &m);
    expect(st, EA_ERR_IO, "ea_model_load(missing path) is EA_ERR_IO", ea_last_error());
    check(m == NULL, "ea_model_load(missing path) sets *out_model to NULL", "left %p", (void *)m);
    check(ea_last_error()[0] != '\0', "ea_model_load(missing path) sets ea_last_error()", "empty");
    if (m && m != (ea_model *)&g_passed) ea_model_free(m);

    m = NULL;
    st = ea_model_load(dir, NULL, &m);
    expect(st, EA_ERR_IO, "ea_model_load(a directory) is EA_ERR_IO", ea_last_error());
    if (m) ea_model_free(m);
}

/* Every line of CORRUPT_DIR/expected.txt, loaded with mmap and with read(). */
/* NaN/Inf weights: a plain load accepts them (checking every float costs a full read), generation
 * then runs on NaN without crashing; validate_data finds them. */
static void test_nan_weights(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/syn_nan_weights.gguf", dir);
    ea_model_params mp = ea_model_default_params();
    mp.validate_data = 1;
    ea_model *m = NULL;
    ea_status st = ea_model_load(path, &mp, &m);
    expect(st, EA_ERR_CORRUPT, "NaN weights: validate_data -> EA_ERR_CORRUPT", ea_last_error());
    check(st != EA_OK || strstr(ea_last_error(), "non-finite") != NULL, "NaN weights: the message names it", "%s",
          ea_last_error());
    if (st == EA_OK) ea_model_free(m);
    m = NULL;
    if (!expect(ea_model_load(path, NULL, &m), EA_OK, "NaN weights: plain load", ea_last_error())) return;
    ea_session *s = NULL;
    const float *lg = NULL;
    if (ea_session_create(m, NULL, &s) == EA_OK) {
        ea_status d = ea_session_decode(s, 1, &lg);
        check(d == EA_OK && lg != NULL, "NaN weights: decoding runs (NaN logits, no crash)", "%s", status_name(d));
        ea_session_free(s);
    }
    ea_model_free(m);
}

/* ---- truncation everywhere ----------------------------------------------------------------- */

typedef struct {
    char base[8];
    long off;
    char label[200];
} cut_t;

/* The listed boundary a cut falls in: the last listed offset <= cut of that base (list sorted). */
static const char *cut_label(const cut_t *cuts, int n, const char *base, long cut) {
    const char *lab = "?";
    for (int i = 0; i < n; i++)
        if (strcmp(cuts[i].base, base) == 0 && cuts[i].off <= cut) lab = cuts[i].label;
    return lab;
}

/* Loads path (mmap and read) and expects `want`; on a miss records the cut in *first_bad. */
static int load_expect(const char *path, ea_status want, long cut, const char *label, char *first_bad, size_t fb) {
    int ok = 1;
    for (int use_mmap = 1; use_mmap >= 0; use_mmap--) {
        ea_model_params mp = ea_model_default_params();
        mp.use_mmap = (uint32_t)use_mmap;
        ea_model *m = NULL;
        ea_status st = ea_model_load(path, &mp, &m);
        const char *err = ea_last_error();
        int good = st == want && (want == EA_OK ? m != NULL : m == NULL && err && err[0]);
        if (!good && ok && first_bad[0] == '\0')
            snprintf(first_bad, fb, "cut at %ld (%s, %s): %s \"%s\"", cut, label, use_mmap ? "mmap" : "read",
                     status_name(st), nonnull(err));
        ok &= good;
        if (st == EA_OK) ea_model_free(m);
    }
    return ok;
}

/* Cuts the synthetic model at every byte of its header and at the start, inside, middle and last
 * byte of each tensor's data (EA_TEST_EXHAUSTIVE >= 1; else at the listed header boundaries only:
 * the emulated boards), and with EA_TEST_EXHAUSTIVE=2 (host) the real model at every listed header
 * boundary (1,777 for SmolLM2: every field of every metadata entry and tensor info). Every cut before
 * the end of the tensor data is EA_ERR_TRUNCATED, with mmap and with read(); the whole data is EA_OK. */
static void test_truncation(const char *dir, const char *model_path) {
    char path[4096], tmp[4200], line[512], first_bad[600] = "";
    snprintf(path, sizeof path, "%s/truncation.txt", dir);
    FILE *f = fopen(path, "r");
    if (!check(f != NULL, "truncation: cut list is readable", "cannot open %s", path)) return;
    static cut_t cuts[8192];
    int n = 0;
    long header_end = -1, data_end = -1, real_max = 0;
    while (fgets(line, sizeof line, f) && n < 8192) {
        if (line[0] == '#') continue;
        line[strcspn(line, "\n")] = 0;
        int used = 0;
        if (sscanf(line, "syn-header-end %ld", &header_end) == 1) continue;
        if (sscanf(line, "syn-data-end %ld", &data_end) == 1) continue;
        if (sscanf(line, "%7s %ld %n", cuts[n].base, &cuts[n].off, &used) != 2) continue;
        snprintf(cuts[n].label, sizeof cuts[n].label, "%s", line + used);
        if (strcmp(cuts[n].base, "real") == 0 && cuts[n].off > real_max) real_max = cuts[n].off;
        n++;
    }
    fclose(f);
    if (!check(n > 100 && header_end > 24 && data_end > header_end, "truncation: cut list parses",
               "%d cuts, header end %ld, data end %ld", n, header_end, data_end))
        return;
    const char *ex = getenv("EA_TEST_EXHAUSTIVE");
    const int exhaustive = ex != NULL && atoi(ex) >= 1, with_real = ex != NULL && atoi(ex) >= 2;

    snprintf(path, sizeof path, "%s/syn_valid.gguf", dir);
    f = fopen(path, "rb");
    if (!check(f != NULL, "truncation: syn_valid.gguf is readable", "%s", path)) return;
    unsigned char *syn = malloc((size_t)data_end);
    size_t got = syn ? fread(syn, 1, (size_t)data_end, f) : 0;
    fclose(f);
    if (!check(got == (size_t)data_end, "truncation: syn_valid.gguf holds its tensor data", "%zu bytes", got)) {
        free(syn);
        return;
    }
    snprintf(tmp, sizeof tmp, "%s/cut-%ld.gguf", dir, (long)getpid());
    int n_cut = 0, bad = 0;
    /* write the prefix once, longest first, then shorten it in place for each smaller cut */
    long *order = malloc(sizeof(long) * (size_t)(header_end + 1 + n + 1));
    int n_order = 0;
    order[n_order++] = data_end; /* the whole tensor data: loads */
    for (int i = n - 1; i >= 0; i--)
        if (strcmp(cuts[i].base, "syn") == 0 && cuts[i].off > header_end && cuts[i].off < data_end) order[n_order++] = cuts[i].off;
    for (long c = header_end; c >= 0; c--) {
        int listed = 0;
        for (int i = 0; i < n && !listed; i++) listed = strcmp(cuts[i].base, "syn") == 0 && cuts[i].off == c;
        if (exhaustive || listed || c == header_end) order[n_order++] = c;
    }
    f = fopen(tmp, "wb");
    int wrote = f && fwrite(syn, 1, (size_t)data_end, f) == (size_t)data_end;
    if (f) fclose(f);
    free(syn);
    if (!check(wrote, "truncation: temporary file written", "%s", tmp)) {
        free(order);
        return;
    }
    long prev = data_end + 1;
    for (int i = 0; i < n_order; i++) {
        long c = order[i];
        if (c >= prev) continue; /* listed twice */
        prev = c;
        if (truncate(tmp, (off_t)c) != 0) {
            bad++;
            break;
        }
        n_cut++;
        bad += !load_expect(tmp, c < data_end ? EA_ERR_TRUNCATED : EA_OK, c, cut_label(cuts, n, "syn", c), first_bad,
                            sizeof first_bad);
    }
    free(order);
    char cname[256];
    snprintf(cname, sizeof cname, "truncation: synthetic model cut at %d places (%s header, data boundaries) -> "
             "EA_ERR_TRUNCATED, whole -> EA_OK", n_cut, exhaustive ? "every byte of the" : "each field of the");
    check(bad == 0, cname, "%d wrong; first: %s", bad, first_bad);

    /* the real model: its header prefix, shortened boundary by boundary */
    if (!with_real) {
        remove(tmp);
        return;
    }
    f = fopen(model_path, "rb");
    unsigned char *head = malloc((size_t)real_max + 1);
    got = f && head ? fread(head, 1, (size_t)real_max + 1, f) : 0;
    if (f) fclose(f);
    f = got == (size_t)real_max + 1 ? fopen(tmp, "wb") : NULL;
    wrote = f && fwrite(head, 1, got, f) == got;
    if (f) fclose(f);
    free(head);
    if (!check(wrote, "truncation: real header prefix written", "%zu of %ld bytes", got, real_max + 1)) return;
    first_bad[0] = '\0';
    n_cut = bad = 0;
    prev = real_max + 1;
    for (int i = n - 1; i >= 0; i--) {
        if (strcmp(cuts[i].base, "real") != 0 || cuts[i].off >= prev) continue;
        prev = cuts[i].off;
        if (truncate(tmp, (off_t)prev) != 0) {
            bad++;
            break;
        }
        n_cut++;
        bad += !load_expect(tmp, EA_ERR_TRUNCATED, prev, cuts[i].label, first_bad, sizeof first_bad);
    }
    remove(tmp);
    snprintf(cname, sizeof cname, "truncation: real model cut at each of %d header boundaries -> EA_ERR_TRUNCATED", n_cut);
    check(bad == 0 && n_cut > 1000, cname, "%d wrong; first: %s", bad, first_bad);
}

static void test_corrupt_files(const char *dir) {
    char path[4096], line[1024], name[256], want_name[64], check_name[512];
    snprintf(path, sizeof path, "%s/expected.txt", dir);
    FILE *f = fopen(path, "r");
    if (!check(f != NULL, "corrupt-file manifest is readable", "cannot open %s", path)) return;
    int n_lines = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\0') continue;
        if (sscanf(p, "%255s %63s", name, want_name) != 2) {
            check(0, "manifest line parses", "bad line: %s", line);
            continue;
        }
        ea_status want = -1;
        for (size_t i = 0; i < N_STATUS; i++)
            if (strcmp(k_status[i].name, want_name) == 0) want = k_status[i].value;
        if (want < 0) {
            check(0, "manifest status is known", "%s: unknown status %s", name, want_name);
            continue;
        }
        n_lines++;
        snprintf(path, sizeof path, "%s/%s", dir, name);
        for (int use_mmap = 1; use_mmap >= 0; use_mmap--) {
            ea_model_params mp = ea_model_default_params();
            mp.use_mmap = (uint32_t)use_mmap;
            ea_model *m = (ea_model *)&g_passed;
            ea_status st = ea_model_load(path, &mp, &m);
            const char *err = ea_last_error();
            snprintf(check_name, sizeof check_name, "%s (%s) -> %s", name,
                     use_mmap ? "mmap" : "read", want_name);
            if (st == want && want != EA_OK) {
                check(m == NULL && err != NULL && err[0] != '\0', check_name,
                      "status right, but out_model %p, ea_last_error \"%s\"", (void *)m,
                      nonnull(err));
            } else if (st == want) {
                check(m != NULL && m != (ea_model *)&g_passed, check_name, "out_model %p",
                      (void *)m);
            } else {
                expect(st, want, check_name, err);
            }
            if (st == EA_OK && m && m != (ea_model *)&g_passed) ea_model_free(m);
        }
    }
    fclose(f);
    check(n_lines > 0, "corrupt-file manifest lists files", "no entries in %s/expected.txt", dir);
}

/* ---- checks with the real model ------------------------------------------------------------- */

static void test_model_facts(const ea_model *m, const char *path) {
    struct stat sb;
    check(ea_model_vocab_size(m) == 49152, "vocab size 49152", "got %d",
          (int)ea_model_vocab_size(m));
    check(ea_model_n_layers(m) == 30, "n_layers 30", "got %d", (int)ea_model_n_layers(m));
    check(ea_model_n_embd(m) == 576, "n_embd 576", "got %d", (int)ea_model_n_embd(m));
    check(ea_model_context_length(m) == 8192, "context length 8192", "got %d",
          (int)ea_model_context_length(m));
    check(ea_model_architecture(m) && strcmp(ea_model_architecture(m), "llama") == 0,
          "architecture \"llama\"", "got %s", nonnull(ea_model_architecture(m)));
    if (stat(path, &sb) == 0)
        check(ea_model_file_bytes(m) == (uint64_t)sb.st_size, "ea_model_file_bytes == file size",
              "got %llu, file has %lld", (unsigned long long)ea_model_file_bytes(m),
              (long long)sb.st_size);
    check(ea_model_resident_bytes(m) > 0, "ea_model_resident_bytes > 0", "got 0");
    {
        ea_token eos = ea_token_eos(m);
        check(eos >= 0 && eos < ea_model_vocab_size(m) && ea_token_is_eog(m, eos),
              "EOS is in range and is an end-of-generation token", "eos %d is_eog %d", (int)eos,
              eos >= 0 ? (int)ea_token_is_eog(m, eos) : -1);
    }
}

static void test_null_arguments_with_model(const ea_model *m) {
    ea_token toks[8];
    char buf[64];
    size_t n = 0;
    ea_status st;

    st = ea_tokenize(m, NULL, 3, 0, 0, toks, 8, &n);
    expect(st, EA_ERR_INVALID_ARGUMENT, "ea_tokenize(text NULL)", ea_model_last_error(m));
    st = ea_tokenize(m, "abc", 3, 0, 0, toks, 8, NULL);
    expect(st, EA_ERR_INVALID_ARGUMENT, "ea_tokenize(n_tokens NULL)", ea_model_last_error(m));
    st = ea_tokenize(m, "abc", 3, 0, 0, NULL, 8, &n);
    expect(st, EA_ERR_INVALID_ARGUMENT, "ea_tokenize(tokens NULL, max_tokens 8)",
           ea_model_last_error(m));
    st = ea_token_to_text(m, 504, NULL, 8, &n);
    expect(st, EA_ERR_INVALID_ARGUMENT, "ea_token_to_text(buf NULL, buf_size 8)",
           ea_model_last_error(m));
    st = ea_token_to_text(m, 504, buf, sizeof buf, NULL);
    expect(st, EA_ERR_INVALID_ARGUMENT, "ea_token_to_text(n_bytes NULL)", ea_model_last_error(m));
    {
        const char *roles[] = {"user"}, *contents[] = {"hi"}, *null_content[] = {NULL};
        st = ea_chat_format(m, NULL, contents, 1, 1, buf, sizeof buf, &n);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_chat_format(roles NULL)", ea_model_last_error(m));
        st = ea_chat_format(m, roles, NULL, 1, 1, buf, sizeof buf, &n);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_chat_format(contents NULL)",
               ea_model_last_error(m));
        st = ea_chat_format(m, roles, null_content, 1, 1, buf, sizeof buf, &n);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_chat_format(contents[0] NULL)",
               ea_model_last_error(m));
        st = ea_chat_format(m, roles, contents, 1, 1, buf, sizeof buf, NULL);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_chat_format(n_bytes NULL)",
               ea_model_last_error(m));
        st = ea_chat_format(m, roles, contents, 1, 1, NULL, 64, &n);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_chat_format(buf NULL, buf_size 64)",
               ea_model_last_error(m));
    }
    {
        ea_session_params p = small_session(32);
        st = ea_estimate_session_bytes(m, &p, NULL);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_estimate_session_bytes(out_bytes NULL)",
               ea_last_error());
        st = ea_session_create(m, &p, NULL);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_session_create(out_session NULL)",
               ea_last_error());
    }
    {
        ea_sampler_params sp = ea_sampler_default_params();
        st = ea_sampler_create(m, &sp, NULL);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_sampler_create(out_sampler NULL)",
               ea_last_error());
    }
    {
        ea_session_params p = small_session(32);
        ea_session *s = NULL;
        ea_sampler *smp = NULL;
        ea_sampler_params sp = ea_sampler_default_params();
        if (ea_session_create(m, &p, &s) != EA_OK || ea_sampler_create(m, &sp, &smp) != EA_OK) {
            check(0, "session and sampler for NULL-argument checks", "%s", ea_last_error());
        } else {
            float *logits = NULL;
            ea_token t = 0;
            int32_t ngen = 0;
            st = ea_session_prefill(s, NULL, 3);
            expect(st, EA_ERR_INVALID_ARGUMENT, "ea_session_prefill(tokens NULL, 3)",
                   ea_session_last_error(s));
            check(ea_session_n_past(s) == 0, "failed prefill leaves n_past 0", "n_past %d",
                  (int)ea_session_n_past(s));
            st = ea_sampler_sample(smp, NULL, &t);
            expect(st, EA_ERR_INVALID_ARGUMENT, "ea_sampler_sample(logits NULL)", ea_last_error());
            logits = (float *)calloc((size_t)ea_model_vocab_size(m), sizeof *logits);
            if (logits) {
                st = ea_sampler_sample(smp, logits, NULL);
                expect(st, EA_ERR_INVALID_ARGUMENT, "ea_sampler_sample(out_token NULL)",
                       ea_last_error());
                logits[1234] = 5.0f;
                st = ea_sampler_sample(smp, logits, &t);
                check(st == EA_OK && t == 1234, "greedy ea_sampler_sample picks the argmax",
                      "status %s token %d", status_name(st), (int)t);
                free(logits);
            }
            st = ea_generate(s, NULL, k_prompt_ids, N_PROMPT_IDS, 4, NULL, NULL, NULL, &ngen);
            expect(st, EA_ERR_INVALID_ARGUMENT, "ea_generate(sampler NULL)",
                   ea_session_last_error(s));
            st = ea_generate(s, smp, NULL, 3, 4, NULL, NULL, NULL, &ngen);
            expect(st, EA_ERR_INVALID_ARGUMENT, "ea_generate(prompt NULL, n_prompt 3)",
                   ea_session_last_error(s));
        }
        ea_sampler_free(smp);
        ea_session_free(s);
    }
}

static void test_params_size_zero(const ea_model *m, const char *model_path) {
    ea_status st;
    {
        ea_model_params mp = ea_model_default_params();
        ea_model *mm = (ea_model *)&g_passed;
        mp.size = 0;
        st = ea_model_load(model_path, &mp, &mm);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_model_load(params.size 0)", ea_last_error());
        if (st == EA_OK && mm) ea_model_free(mm);
    }
    {
        ea_session_params p = small_session(32);
        uint64_t b = 0;
        ea_session *s = (ea_session *)&g_passed;
        p.size = 0;
        st = ea_estimate_session_bytes(m, &p, &b);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_estimate_session_bytes(params.size 0)",
               ea_last_error());
        st = ea_session_create(m, &p, &s);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_session_create(params.size 0)", ea_last_error());
        check(s == NULL, "ea_session_create(params.size 0) sets *out_session to NULL", "left %p",
              (void *)s);
        if (st == EA_OK && s && s != (ea_session *)&g_passed) ea_session_free(s);
        /* a caller built against 0.2 (struct ends before auto_fit): accepted, new fields default;
         * the garbage after its struct end is not read */
        p = small_session(32);
        p.size = (uint32_t)offsetof(ea_session_params, auto_fit);
        p.auto_fit = 7;
        p.workspace = (void *)&g_failed;
        p.workspace_size = 1;
        s = NULL;
        st = ea_session_create(m, &p, &s);
        expect(st, EA_OK, "ea_session_create with a 0.2-sized params struct", ea_last_error());
        ea_session_params got;
        if (st == EA_OK && ea_session_get_params(s, &got) == EA_OK)
            check(got.auto_fit == 0 && got.workspace == NULL, "0.2-sized params: fields beyond it not read", "");
        ea_session_free(s);
        /* a caller built against 0.3 (ends before dhsa_prefix_frac): its auto_fit is read, the
         * 0.4 fields default */
        p = small_session(32);
        p.size = (uint32_t)offsetof(ea_session_params, dhsa_prefix_frac);
        p.auto_fit = 1;
        p.dhsa_prefix_frac = -5.0f;
        p.dhsa_score = 9;
        s = NULL;
        st = ea_session_create(m, &p, &s);
        expect(st, EA_OK, "ea_session_create with a 0.3-sized params struct", ea_last_error());
        if (st == EA_OK && ea_session_get_params(s, &got) == EA_OK)
            check(got.auto_fit == 1 && got.dhsa_prefix_frac == 0.0f && got.dhsa_score == EA_DHSA_SCORE_MAX,
                  "0.3-sized params: its fields read, 0.4 fields default", "auto_fit %u frac %g score %u",
                  got.auto_fit, (double)got.dhsa_prefix_frac, got.dhsa_score);
        ea_session_free(s);
    }
    {
        ea_sampler_params sp = ea_sampler_default_params();
        ea_sampler *smp = (ea_sampler *)&g_passed;
        sp.size = 0;
        st = ea_sampler_create(m, &sp, &smp);
        expect(st, EA_ERR_INVALID_ARGUMENT, "ea_sampler_create(params.size 0)", ea_last_error());
        if (st == EA_OK && smp && smp != (ea_sampler *)&g_passed) ea_sampler_free(smp);
    }
    {
        ea_model_params mp = ea_model_default_params();
        ea_session_params p = ea_session_default_params();
        ea_sampler_params sp = ea_sampler_default_params();
        check(mp.size == sizeof mp && p.size == sizeof p && sp.size == sizeof sp,
              "default params set size to sizeof(struct)", "model %u session %u sampler %u",
              (unsigned)mp.size, (unsigned)p.size, (unsigned)sp.size);
        check(mp.use_mmap == 1 && mp.validate_data == 0 && p.n_ctx == 0 && p.n_batch == 32 &&
                  p.n_threads == 0 && p.memory_budget == 0 && sp.temperature <= 0.0f &&
                  sp.top_k == 40 && sp.repeat_penalty == 1.0f && sp.repeat_last_n == 64,
              "default params match the header", "one of the documented defaults differs");
    }
}

static void test_tokenizer(const ea_model *m) {
    ea_token toks[64];
    size_t n = 0;
    ea_status st;
    const size_t len = strlen(PROMPT);
    int same;

    st = ea_tokenize(m, PROMPT, len, 1, 1, toks, 64, &n);
    same = st == EA_OK && n == N_PROMPT_IDS;
    for (size_t i = 0; same && i < n; i++) same = toks[i] == k_prompt_ids[i];
    check(same, "ea_tokenize(\"" PROMPT "\") gives llama.cpp's ids 504 3575 282 4649 314",
          "status %s, %zu tokens, first %d", status_name(st), n, n > 0 ? (int)toks[0] : -1);

    n = 0;
    st = ea_tokenize(m, PROMPT, len, 1, 1, NULL, 0, &n);
    check(st == EA_ERR_BUFFER_TOO_SMALL && n == N_PROMPT_IDS,
          "ea_tokenize(tokens NULL, max 0) is EA_ERR_BUFFER_TOO_SMALL with the count needed",
          "status %s, n_tokens %zu (want %d)", status_name(st), n, N_PROMPT_IDS);
    n = 0;
    st = ea_tokenize(m, PROMPT, len, 1, 1, toks, N_PROMPT_IDS - 1, &n);
    check(st == EA_ERR_BUFFER_TOO_SMALL && n == N_PROMPT_IDS,
          "ea_tokenize(buffer one too small) is EA_ERR_BUFFER_TOO_SMALL with the count needed",
          "status %s, n_tokens %zu (want %d)", status_name(st), n, N_PROMPT_IDS);
    n = 0;
    st = ea_tokenize(m, PROMPT, len, 1, 1, toks, N_PROMPT_IDS, &n);
    check(st == EA_OK && n == N_PROMPT_IDS, "ea_tokenize(buffer exactly the count) is EA_OK",
          "status %s, n_tokens %zu", status_name(st), n);
    {
        /* text_len is respected: the bytes after it are not read as text */
        static const char longer[] = PROMPT "!!! and more";
        ea_token t2[64];
        size_t n2 = 0;
        st = ea_tokenize(m, longer, len, 1, 1, t2, 64, &n2);
        same = st == EA_OK && n2 == n && memcmp(t2, toks, n * sizeof *toks) == 0;
        check(same, "ea_tokenize reads only text_len bytes", "status %s, %zu tokens",
              status_name(st), n2);
        st = ea_tokenize(m, "", 0, 0, 1, t2, 64, &n2);
        check(st == EA_OK && n2 == 0, "ea_tokenize of empty text gives 0 tokens",
              "status %s, %zu tokens", status_name(st), n2);
    }
    {
        /* decode round trip */
        char text[256];
        size_t pos = 0, nb = 0;
        int ok = 1;
        for (size_t i = 0; i < n && ok; i++) {
            ok = ea_token_to_text(m, toks[i], text + pos, sizeof text - pos, &nb) == EA_OK;
            pos += nb;
        }
        check(ok && pos == len && memcmp(text, PROMPT, len) == 0,
              "ea_token_to_text pieces concatenate to the prompt", "got \"%.*s\"", (int)pos, text);
    }
    {
        /* special tokens */
        static const char sp[] = "<|im_start|>user";
        ea_token a[64], b[64];
        size_t na = 0, nb = 0, piece_len = 0;
        char piece[64];
        ea_status sa = ea_tokenize(m, sp, strlen(sp), 0, 1, a, 64, &na);
        ea_status sb = ea_tokenize(m, sp, strlen(sp), 0, 0, b, 64, &nb);
        int is_special = sa == EA_OK && na >= 2 &&
                         ea_token_to_text(m, a[0], piece, sizeof piece, &piece_len) == EA_OK &&
                         piece_len == 12 && memcmp(piece, "<|im_start|>", 12) == 0;
        check(is_special, "parse_special=1 turns \"<|im_start|>\" into one token",
              "status %s, %zu tokens", status_name(sa), na);
        int plain = sb == EA_OK && nb > na;
        for (size_t i = 0; plain && i < nb; i++) plain = b[i] != a[0];
        check(plain, "parse_special=0 tokenizes \"<|im_start|>\" as plain text",
              "status %s, %zu tokens (special: %zu)", status_name(sb), nb, na);
        sa = ea_tokenize(m, "<|im_end|>", 10, 0, 1, a, 64, &na);
        check(sa == EA_OK && na == 1 && ea_token_is_eog(m, a[0]),
              "\"<|im_end|>\" is one end-of-generation token", "status %s, %zu tokens, eog %d",
              status_name(sa), na, na > 0 ? (int)ea_token_is_eog(m, a[0]) : -1);
        check(!ea_token_is_eog(m, 504), "an ordinary token is not end-of-generation", "504 is eog");
    }
}

static void test_token_text(const ea_model *m) {
    char buf[64];
    size_t nb = 0;
    ea_status st;
    const int32_t vocab = ea_model_vocab_size(m);

    st = ea_token_to_text(m, 3575, buf, sizeof buf, &nb);
    check(st == EA_OK && nb == 8 && memcmp(buf, " capital", 8) == 0,
          "ea_token_to_text(3575) is \" capital\"", "status %s, %zu bytes \"%.*s\"",
          status_name(st), nb, (int)(nb < sizeof buf ? nb : sizeof buf), buf);
    nb = 0;
    st = ea_token_to_text(m, 3575, buf, 3, &nb);
    check(st == EA_ERR_BUFFER_TOO_SMALL && nb == 8,
          "ea_token_to_text(buf_size 3) is EA_ERR_BUFFER_TOO_SMALL with the size needed",
          "status %s, n_bytes %zu (want 8)", status_name(st), nb);
    nb = 0;
    st = ea_token_to_text(m, 3575, buf, 0, &nb);
    check(st == EA_ERR_BUFFER_TOO_SMALL && nb == 8,
          "ea_token_to_text(buf_size 0) is EA_ERR_BUFFER_TOO_SMALL with the size needed",
          "status %s, n_bytes %zu (want 8)", status_name(st), nb);
    st = ea_token_to_text(m, -1, buf, sizeof buf, &nb);
    expect(st, EA_ERR_TOKEN_RANGE, "ea_token_to_text(-1) is EA_ERR_TOKEN_RANGE",
           ea_model_last_error(m));
    st = ea_token_to_text(m, vocab, buf, sizeof buf, &nb);
    expect(st, EA_ERR_TOKEN_RANGE, "ea_token_to_text(vocab) is EA_ERR_TOKEN_RANGE",
           ea_model_last_error(m));
    check(ea_model_last_error(m) != NULL && ea_model_last_error(m)[0] != '\0',
          "ea_model_last_error is set after a failing call on the model", "empty");
}

static void test_token_range_session(const ea_model *m) {
    ea_session_params p = small_session(32);
    ea_session *s = NULL;
    ea_status st = ea_session_create(m, &p, &s);
    const int32_t vocab = ea_model_vocab_size(m);
    if (!expect(st, EA_OK, "ea_session_create(n_ctx 32)", ea_last_error())) return;
    check(ea_session_logits(s) == NULL, "a new session has no logits", "logits not NULL");

    st = ea_session_decode(s, -1, NULL);
    expect(st, EA_ERR_TOKEN_RANGE, "ea_session_decode(-1) is EA_ERR_TOKEN_RANGE",
           ea_session_last_error(s));
    st = ea_session_decode(s, vocab, NULL);
    expect(st, EA_ERR_TOKEN_RANGE, "ea_session_decode(vocab) is EA_ERR_TOKEN_RANGE",
           ea_session_last_error(s));
    check(ea_session_last_error(s)[0] != '\0', "ea_session_last_error is set after a failure",
          "empty");
    {
        const ea_token bad_lo[] = {504, -1, 282}, bad_hi[] = {504, 3575, 0};
        ea_token hi[3];
        memcpy(hi, bad_hi, sizeof hi);
        hi[2] = vocab;
        st = ea_session_prefill(s, bad_lo, 3);
        expect(st, EA_ERR_TOKEN_RANGE, "ea_session_prefill({504, -1, 282}) is EA_ERR_TOKEN_RANGE",
               ea_session_last_error(s));
        st = ea_session_prefill(s, hi, 3);
        expect(st, EA_ERR_TOKEN_RANGE,
               "ea_session_prefill({504, 3575, vocab}) is EA_ERR_TOKEN_RANGE",
               ea_session_last_error(s));
    }
    check(ea_session_n_past(s) == 0, "token-range failures append nothing", "n_past %d",
          (int)ea_session_n_past(s));
    {
        const float *logits = NULL;
        st = ea_session_decode(s, 504, &logits);
        int finite = logits != NULL;
        for (int32_t i = 0; finite && i < vocab; i++)
            finite = logits[i] == logits[i] && logits[i] < 1e30f && logits[i] > -1e30f;
        check(st == EA_OK && ea_session_n_past(s) == 1 && logits != NULL &&
                  logits == ea_session_logits(s) && finite,
              "ea_session_decode(504) gives finite logits and n_past 1",
              "status %s, n_past %d, logits %p / %p, finite %d", status_name(st),
              (int)ea_session_n_past(s), (const void *)logits, (const void *)ea_session_logits(s),
              finite);
    }
    ea_session_free(s);
}

static void test_budget(const ea_model *m) {
    ea_session_params p = small_session(64);
    uint64_t e64 = 0, e128 = 0, e0 = 0, e8192 = 0;
    ea_status st = ea_estimate_session_bytes(m, &p, &e64);
    if (!check(st == EA_OK && e64 > 0, "ea_estimate_session_bytes(n_ctx 64)", "status %s, %llu",
               status_name(st), (unsigned long long)e64))
        return;
    p.n_ctx = 128;
    st = ea_estimate_session_bytes(m, &p, &e128);
    check(st == EA_OK && e128 > e64, "the estimate grows with n_ctx", "64: %llu, 128: %llu",
          (unsigned long long)e64, (unsigned long long)e128);
    p.n_ctx = 0;
    ea_status s0 = ea_estimate_session_bytes(m, &p, &e0);
    p.n_ctx = 8192;
    st = ea_estimate_session_bytes(m, &p, &e8192);
    check(s0 == EA_OK && st == EA_OK && e0 == e8192 && e8192 > e128,
          "n_ctx 0 means the model's context (8192)", "0: %llu, 8192: %llu",
          (unsigned long long)e0, (unsigned long long)e8192);

    {
        ea_session *s = (ea_session *)&g_passed;
        p = small_session(64);
        p.memory_budget = e64 - 1;
        st = ea_session_create(m, &p, &s);
        expect(st, EA_ERR_BUDGET, "budget = estimate - 1 is EA_ERR_BUDGET", ea_last_error());
        check(s == NULL, "EA_ERR_BUDGET sets *out_session to NULL", "left %p", (void *)s);
        check(ea_last_error()[0] != '\0', "EA_ERR_BUDGET sets ea_last_error()", "empty");
        if (st == EA_OK && s && s != (ea_session *)&g_passed) ea_session_free(s);
    }
    {
        ea_session *s = NULL;
        uint64_t e_budget = 0;
        p = small_session(64);
        p.memory_budget = e64;
        ea_estimate_session_bytes(m, &p, &e_budget);
        check(e_budget == e64, "a budget that fits does not change the estimate", "%llu vs %llu",
              (unsigned long long)e_budget, (unsigned long long)e64);
        st = ea_session_create(m, &p, &s);
        if (expect(st, EA_OK, "budget = estimate is EA_OK", ea_last_error())) {
            check(ea_session_allocated_bytes(s) == e64, "ea_session_allocated_bytes == estimate",
                  "allocated %llu, estimate %llu",
                  (unsigned long long)ea_session_allocated_bytes(s), (unsigned long long)e64);
            check(ea_session_n_ctx(s) == 64 && ea_session_n_past(s) == 0,
                  "the new session has n_ctx 64 and n_past 0", "n_ctx %d n_past %d",
                  (int)ea_session_n_ctx(s), (int)ea_session_n_past(s));
        }
        ea_session_free(s);
    }
}

/* KV8 / KV4: the planner's estimate is what the session allocates, the quantized cache is smaller
 * than the half cache, and invalid kv settings are refused with EA_ERR_INVALID_ARGUMENT. */
static void test_kv_quant_plan(const ea_model *m) {
    uint64_t e[4] = {0};
    const uint32_t bits[4] = {32, 16, 8, 4};
    for (int i = 0; i < 4; i++) {
        ea_session_params p = small_session(1024);
        p.kv_bits = bits[i];
        ea_session *s = NULL;
        ea_status st = ea_estimate_session_bytes(m, &p, &e[i]);
        char what[96];
        snprintf(what, sizeof what, "kv_bits %u: estimate", (unsigned)bits[i]);
        if (!expect(st, EA_OK, what, ea_last_error())) continue;
        st = ea_session_create(m, &p, &s);
        snprintf(what, sizeof what, "kv_bits %u: session", (unsigned)bits[i]);
        if (expect(st, EA_OK, what, ea_last_error())) {
            check(ea_session_allocated_bytes(s) == e[i], "KV session allocates exactly the estimate",
                  "kv_bits %u: allocated %llu, estimate %llu", (unsigned)bits[i],
                  (unsigned long long)ea_session_allocated_bytes(s), (unsigned long long)e[i]);
            /* the block-quantized caches (32/16 bits are prefilled by every other check) */
            if (bits[i] <= 8) {
                ea_token toks[40];
                for (int k = 0; k < 40; k++) toks[k] = k_prompt_ids[k % N_PROMPT_IDS];
                st = ea_session_prefill(s, toks, 40); /* crosses a 32-token block after the 4 sinks */
                check(st == EA_OK && ea_session_n_past(s) == 40, "KV session prefills 40 tokens", "%s",
                      ea_session_last_error(s));
            }
        }
        ea_session_free(s);
    }
    check(e[0] > e[1] && e[1] > e[2] && e[2] > e[3], "estimates shrink with kv_bits 32 > 16 > 8 > 4",
          "%llu %llu %llu %llu", (unsigned long long)e[0], (unsigned long long)e[1],
          (unsigned long long)e[2], (unsigned long long)e[3]);
    const uint32_t bad_bits[3] = {5, 2, 64};
    for (int i = 0; i < 3; i++) {
        ea_session_params p = small_session(64);
        p.kv_bits = bad_bits[i];
        uint64_t x = 0;
        expect(ea_estimate_session_bytes(m, &p, &x), EA_ERR_INVALID_ARGUMENT, "unsupported kv_bits refused",
               ea_last_error());
    }
    ea_session_params p = small_session(64);
    p.kv_bits = 4;
    p.kv_group = 48; /* does not divide the head dimension (64) */
    uint64_t x = 0;
    expect(ea_estimate_session_bytes(m, &p, &x), EA_ERR_INVALID_ARGUMENT, "kv_group not dividing the head refused",
           ea_last_error());
}

/* Attention policies through the C API: a Λ session is unbounded (n_ctx INT32_MAX, decode far past
 * the model-independent n_ctx given), its memory does not depend on the stream length, and it
 * equals dense while the window holds everything; per-layer overrides and DHSA sessions allocate
 * exactly their estimate; bad policy values are refused with EA_ERR_INVALID_ARGUMENT. */
/* Small windows and DHSA blocks keep the token counts low (each token of the real model costs about
 * half a second under qemu) while every limit is still crossed several times over. */
static void test_attention_policies(const ea_model *m) {
    ea_session_params p = small_session(24);
    p.attention = EA_ATTN_LAMBDA;
    p.attn_sinks = 4;
    p.attn_window = 12;
    p.n_batch = 4;
    uint64_t est = 0;
    ea_session *s = NULL, *d = NULL;
    if (!expect(ea_estimate_session_bytes(m, &p, &est), EA_OK, "Λ estimate", ea_last_error())) return;
    if (!expect(ea_session_create(m, &p, &s), EA_OK, "Λ session", ea_last_error())) return;
    check(ea_session_allocated_bytes(s) == est, "Λ session allocates exactly the estimate", "%llu vs %llu",
          (unsigned long long)ea_session_allocated_bytes(s), (unsigned long long)est);
    check(ea_session_n_ctx(s) == INT32_MAX, "a Λ-only session is unbounded", "n_ctx %d", (int)ea_session_n_ctx(s));
    ea_session_params dp = small_session(24);
    dp.n_batch = 4;
    if (expect(ea_session_create(m, &dp, &d), EA_OK, "dense twin session", ea_last_error())) {
        ea_token toks[16];
        for (int k = 0; k < 16; k++) toks[k] = k_prompt_ids[k % N_PROMPT_IDS];
        const float *ls = NULL, *ld = NULL;
        ea_session_prefill(s, toks, 16);
        ea_session_prefill(d, toks, 16);
        ls = ea_session_logits(s);
        ld = ea_session_logits(d);
        check(ls && ld && memcmp(ls, ld, sizeof(float) * (size_t)ea_model_vocab_size(m)) == 0,
              "Λ with S + W >= L equals dense (16 tokens, S 4 + W 12)", "logits differ");
    }
    ea_session_free(d);
    ea_status st = EA_OK;
    int i = 0;
    for (; i < 60 && st == EA_OK; i++) st = ea_session_decode(s, k_prompt_ids[i % N_PROMPT_IDS], NULL);
    check(st == EA_OK && ea_session_n_past(s) == 76 && ea_session_allocated_bytes(s) == est,
          "Λ decodes 60 tokens past a 24-token n_ctx (ring of 19 slots) with the same memory", "status %s at step %d: %s",
          status_name(st), i, ea_session_last_error(s));
    ea_session_free(s);

    /* memory flat: the estimate does not depend on n_ctx for a Λ-only session */
    uint64_t e1 = 0, e2 = 0;
    p.n_ctx = 128;
    ea_estimate_session_bytes(m, &p, &e1);
    p.n_ctx = 1u << 20;
    ea_estimate_session_bytes(m, &p, &e2);
    check(e1 == e2 && e1 == est, "Λ estimate independent of n_ctx", "%llu %llu %llu", (unsigned long long)e1,
          (unsigned long long)e2, (unsigned long long)est);

    /* per-layer overrides: dense first layers, DHSA the rest */
    const uint8_t layers[3] = {EA_ATTN_DENSE, EA_ATTN_LAMBDA, EA_ATTN_DENSE};
    ea_session_params q = small_dhsa(128);
    q.dhsa_budget = 48;
    q.layer_attention = layers;
    q.n_layer_attention = 3;
    if (expect(ea_estimate_session_bytes(m, &q, &est), EA_OK, "mixed-policy estimate", ea_last_error()) &&
        expect(ea_session_create(m, &q, &s), EA_OK, "mixed-policy session", ea_last_error())) {
        check(ea_session_allocated_bytes(s) == est, "mixed-policy session allocates exactly the estimate", "");
        ea_token toks[100];
        for (int k = 0; k < 100; k++) toks[k] = k_prompt_ids[k % N_PROMPT_IDS];
        st = ea_session_prefill(s, toks, 100);
        check(st == EA_OK && ea_session_n_ctx(s) == 128, "mixed-policy session prefills 100 tokens past its DHSA budget of 48",
              "%s", ea_session_last_error(s));
        for (i = 0; i < 8 && st == EA_OK; i++) st = ea_session_decode(s, 504, NULL);
        check(st == EA_OK, "mixed-policy session decodes sparse", "%s", ea_session_last_error(s));
        ea_session_free(s);
    }
    /* budget as a fraction of each prefix, a dense prompt tail, summed head scores: planned
     * exactly, reported back, and a prefix fraction of 1 is dense attention bit for bit */
    {
        ea_session_params fr = small_dhsa(128);
        fr.dhsa_prefix_frac = 0.5f;
        fr.dhsa_dense_tail = 16;
        fr.dhsa_score = EA_DHSA_SCORE_SUM;
        ea_session_params dn = small_session(128);
        ea_session_params one = fr;
        one.dhsa_prefix_frac = 1.0f;
        ea_session *sf = NULL, *sd = NULL, *so = NULL;
        ea_token toks[64];
        for (int k = 0; k < 64; k++) toks[k] = k_prompt_ids[k % N_PROMPT_IDS];
        if (expect(ea_estimate_session_bytes(m, &fr, &est), EA_OK, "prefix-fraction DHSA estimate", ea_last_error()) &&
            expect(ea_session_create(m, &fr, &sf), EA_OK, "prefix-fraction DHSA session", ea_last_error()) &&
            expect(ea_session_create(m, &dn, &sd), EA_OK, "dense session", ea_last_error()) &&
            expect(ea_session_create(m, &one, &so), EA_OK, "prefix-fraction 1 session", ea_last_error())) {
            ea_session_params got;
            check(ea_session_allocated_bytes(sf) == est, "prefix-fraction session allocates exactly the estimate", "");
            if (ea_session_get_params(sf, &got) == EA_OK)
                check(got.dhsa_prefix_frac == 0.5f && got.dhsa_dense_tail == 16 && got.dhsa_score == EA_DHSA_SCORE_SUM,
                      "prefix-fraction params reported back", "");
            const float *lf = NULL, *ld = NULL, *lo = NULL;
            st = ea_session_prefill(sf, toks, 64);
            if (st == EA_OK) st = ea_session_prefill(sd, toks, 64);
            if (st == EA_OK) st = ea_session_prefill(so, toks, 64);
            for (i = 0; i < 8 && st == EA_OK; i++) {
                st = ea_session_decode(sf, 504, &lf);
                if (st == EA_OK) st = ea_session_decode(sd, 504, &ld);
                if (st == EA_OK) st = ea_session_decode(so, 504, &lo);
            }
            check(st == EA_OK, "prefix-fraction sessions prefill and decode", "%s", ea_last_error());
            if (st == EA_OK) {
                int32_t nv = ea_model_vocab_size(m);
                check(memcmp(lo, ld, (size_t)nv * sizeof(float)) == 0, "prefix fraction 1 == dense bit for bit", "");
                check(memcmp(lf, ld, (size_t)nv * sizeof(float)) != 0, "prefix fraction 0.5 is sparse", "");
            }
        }
        ea_session_free(sf);
        ea_session_free(sd);
        ea_session_free(so);
    }

    struct { const char *what; ea_session_params p; } bad[9];
    for (int k = 0; k < 9; k++) bad[k].p = small_session(256);
    bad[0].what = "attention 7 refused"; bad[0].p.attention = 7;
    bad[1].what = "Λ window 0 refused"; bad[1].p.attention = EA_ATTN_LAMBDA; bad[1].p.attn_window = 0;
    bad[2].what = "attn_pos_mode 2 refused"; bad[2].p.attn_pos_mode = 2;
    bad[3].what = "DHSA chunk_max < chunk_min refused"; bad[3].p.attention = EA_ATTN_DHSA;
    bad[3].p.dhsa_chunk_min = 32; bad[3].p.dhsa_chunk_max = 8;
    bad[4].what = "DHSA budget below global + local + block refused"; bad[4].p.attention = EA_ATTN_DHSA;
    bad[4].p.dhsa_budget = 100;
    bad[5].what = "layer_attention NULL with a count refused"; bad[5].p.n_layer_attention = 2;
    bad[6].what = "DHSA budget fraction 1.5 refused"; bad[6].p.attention = EA_ATTN_DHSA;
    bad[6].p.dhsa_prefix_frac = 1.5f;
    bad[7].what = "DHSA budget fraction NaN refused"; bad[7].p.attention = EA_ATTN_DHSA;
    bad[7].p.dhsa_prefix_frac = NAN;
    bad[8].what = "dhsa_score 2 refused"; bad[8].p.attention = EA_ATTN_DHSA; bad[8].p.dhsa_score = 2;
    for (int k = 0; k < 9; k++) {
        uint64_t x = 0;
        expect(ea_estimate_session_bytes(m, &bad[k].p, &x), EA_ERR_INVALID_ARGUMENT, bad[k].what, ea_last_error());
    }
}

static void test_context_full(const ea_model *m) {
    ea_session_params p = small_session(16);
    ea_session *s = NULL;
    ea_token toks[17];
    ea_status st = ea_session_create(m, &p, &s);
    if (!expect(st, EA_OK, "ea_session_create(n_ctx 16)", ea_last_error())) return;
    for (int i = 0; i < 17; i++) toks[i] = k_prompt_ids[i % N_PROMPT_IDS];

    st = ea_session_prefill(s, toks, 17);
    expect(st, EA_ERR_CONTEXT_FULL, "prefill 17 tokens into n_ctx 16 is EA_ERR_CONTEXT_FULL",
           ea_session_last_error(s));
    check(ea_session_n_past(s) == 0, "EA_ERR_CONTEXT_FULL leaves n_past unchanged (0)",
          "n_past %d", (int)ea_session_n_past(s));
    st = ea_session_prefill(s, toks, 10);
    check(st == EA_OK && ea_session_n_past(s) == 10 && ea_session_logits(s) != NULL,
          "prefill 10 tokens gives n_past 10 and logits", "status %s, n_past %d",
          status_name(st), (int)ea_session_n_past(s));
    st = ea_session_prefill(s, toks, 7);
    expect(st, EA_ERR_CONTEXT_FULL, "prefill 7 more into 6 free slots is EA_ERR_CONTEXT_FULL",
           ea_session_last_error(s));
    check(ea_session_n_past(s) == 10, "EA_ERR_CONTEXT_FULL leaves n_past unchanged (10)",
          "n_past %d", (int)ea_session_n_past(s));
    st = ea_session_prefill(s, toks, 6);
    check(st == EA_OK && ea_session_n_past(s) == 16, "prefill exactly the 6 free slots",
          "status %s, n_past %d", status_name(st), (int)ea_session_n_past(s));
    st = ea_session_decode(s, 504, NULL);
    expect(st, EA_ERR_CONTEXT_FULL, "decode into a full context is EA_ERR_CONTEXT_FULL",
           ea_session_last_error(s));
    check(ea_session_n_past(s) == 16, "a full context stays at n_past 16", "n_past %d",
          (int)ea_session_n_past(s));
    ea_session_reset(s);
    check(ea_session_n_past(s) == 0 && ea_session_logits(s) == NULL,
          "ea_session_reset empties the cache and the logits", "n_past %d, logits %p",
          (int)ea_session_n_past(s), (const void *)ea_session_logits(s));
    st = ea_session_prefill(s, toks, 16);
    check(st == EA_OK && ea_session_n_past(s) == 16, "after reset the whole context is usable",
          "status %s, n_past %d", status_name(st), (int)ea_session_n_past(s));
    ea_session_free(s);
}

/* Runs one generation from a reset session into g. */
static ea_status run_gen(ea_session *s, ea_sampler *smp, gen_log *g, int n_predict,
                         volatile int32_t *abort_flag, int32_t *n_generated) {
    ea_session_reset(s);
    *n_generated = -1;
    return ea_generate(s, smp, k_prompt_ids, N_PROMPT_IDS, n_predict, on_token, g, abort_flag,
                       n_generated);
}

static int same_tokens(const gen_log *a, const gen_log *b) {
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++)
        if (a->tokens[i] != b->tokens[i]) return 0;
    return 1;
}

static void test_generation(const ea_model *m) {
    ea_session_params p = small_session(64);
    ea_sampler_params sp = ea_sampler_default_params();
    ea_session *s = NULL;
    ea_sampler *smp = NULL;
    gen_log a, b;
    int32_t ngen = 0;
    ea_status st;
    const int n_predict = 8;

    if (!expect(ea_session_create(m, &p, &s), EA_OK, "session for generation", ea_last_error()))
        return;
    if (!expect(ea_sampler_create(m, &sp, &smp), EA_OK, "greedy sampler", ea_last_error())) {
        ea_session_free(s);
        return;
    }

    gen_log_init(&a, m);
    st = run_gen(s, smp, &a, n_predict, NULL, &ngen);
    check(st == EA_OK && ngen == a.n && a.n >= 1 && a.n <= n_predict,
          "ea_generate streams n_generated tokens", "status %s (%s), n_generated %d, callbacks %d",
          status_name(st), ea_session_last_error(s), (int)ngen, a.n);
    check(a.piece_mismatch == 0, "each streamed piece equals ea_token_to_text of its token",
          "%d mismatches", a.piece_mismatch);
    {
        int32_t np = ea_session_n_past(s);
        check(np == N_PROMPT_IDS + a.n || np == N_PROMPT_IDS + a.n - 1,
              "after ea_generate n_past is prompt + generated (the last may be pending)",
              "n_past %d, prompt %d, generated %d", (int)np, N_PROMPT_IDS, a.n);
    }
    {
        int ok = a.n >= 4;
        for (int i = 0; ok && i < 4; i++) ok = a.tokens[i] == k_ref_greedy_head[i];
        check(ok, "greedy continuation starts like llama.cpp (\" Paris.\\n\\n\")",
              "got %d %d %d %d", a.n > 0 ? (int)a.tokens[0] : -1, a.n > 1 ? (int)a.tokens[1] : -1,
              a.n > 2 ? (int)a.tokens[2] : -1, a.n > 3 ? (int)a.tokens[3] : -1);
    }
    gen_log_init(&b, m);
    st = run_gen(s, smp, &b, n_predict, NULL, &ngen);
    check(st == EA_OK && same_tokens(&a, &b), "greedy generation twice from a reset session is identical",
          "status %s, %d vs %d tokens", status_name(st), a.n, b.n);

    /* callback returning non-zero */
    gen_log_init(&b, m);
    b.stop_at = 2;
    st = run_gen(s, smp, &b, n_predict, NULL, &ngen);
    check(st == EA_OK && b.n == 2 && ngen == 2,
          "a callback returning non-zero stops generation with EA_OK",
          "status %s, callbacks %d, n_generated %d", status_name(st), b.n, (int)ngen);

    /* abort flag */
    {
        volatile int32_t flag = 1;
        gen_log_init(&b, m);
        st = run_gen(s, smp, &b, n_predict, &flag, &ngen);
        check(st == EA_ERR_ABORTED && b.n == 0, "abort flag set before the call is EA_ERR_ABORTED",
              "status %s, callbacks %d", status_name(st), b.n);
        flag = 0;
        gen_log_init(&b, m);
        b.abort_at = 3;
        b.abort_flag = &flag;
        st = run_gen(s, smp, &b, n_predict, &flag, &ngen);
        check(st == EA_ERR_ABORTED && b.n == 3 && ngen == 3,
              "abort flag set during generation is EA_ERR_ABORTED after that token",
              "status %s, callbacks %d, n_generated %d", status_name(st), b.n, (int)ngen);
    }
    ea_sampler_free(smp);
    smp = NULL;

    /* thread count does not change greedy results */
    {
        ea_session *s1 = NULL;
        ea_sampler *g1 = NULL;
        ea_session_params p1 = small_session(64);
        p1.n_threads = 1;
        if (ea_session_create(m, &p1, &s1) == EA_OK && ea_sampler_create(m, &sp, &g1) == EA_OK) {
            gen_log_init(&b, m);
            st = run_gen(s1, g1, &b, n_predict, NULL, &ngen);
            check(st == EA_OK && same_tokens(&a, &b),
                  "greedy tokens with 1 thread equal those with all cores", "status %s",
                  status_name(st));
        } else {
            check(0, "session with n_threads 1", "%s", ea_last_error());
        }
        ea_sampler_free(g1);
        ea_session_free(s1);
    }

    /* seeded sampling is reproducible */
    {
        ea_sampler *r1 = NULL, *r2 = NULL;
        ea_sampler_params rp = ea_sampler_default_params();
        rp.temperature = 0.9f;
        rp.seed = 42;
        if (ea_sampler_create(m, &rp, &r1) == EA_OK && ea_sampler_create(m, &rp, &r2) == EA_OK) {
            gen_log_init(&a, m);
            gen_log_init(&b, m);
            ea_status s1 = run_gen(s, r1, &a, n_predict, NULL, &ngen);
            ea_status s2 = run_gen(s, r2, &b, n_predict, NULL, &ngen);
            check(s1 == EA_OK && s2 == EA_OK && a.n > 0 && same_tokens(&a, &b),
                  "sampling with temperature 0.9 and the same seed is reproducible",
                  "status %s / %s, %d vs %d tokens", status_name(s1), status_name(s2), a.n, b.n);
        } else {
            check(0, "samplers with temperature 0.9", "%s", ea_last_error());
        }
        ea_sampler_free(r1);
        ea_sampler_free(r2);
    }
    ea_session_free(s);
}

static void test_chat_format(const ea_model *m) {
    const char *roles[] = {"system", "user"};
    const char *contents[] = {"You are helpful.", "Hi there"};
    static const char want[] = "<|im_start|>system\nYou are helpful.<|im_end|>\n"
                               "<|im_start|>user\nHi there<|im_end|>\n"
                               "<|im_start|>assistant\n";
    const size_t want_len = sizeof want - 1;
    char buf[256];
    size_t n = 0;
    ea_status st;

    st = ea_chat_format(m, roles, contents, 2, 1, buf, 10, &n);
    check(st == EA_ERR_BUFFER_TOO_SMALL && n == want_len,
          "ea_chat_format(buf_size 10) is EA_ERR_BUFFER_TOO_SMALL with the length needed",
          "status %s, n_bytes %zu (want %zu)", status_name(st), n, want_len);
    n = 0;
    st = ea_chat_format(m, roles, contents, 2, 1, buf, want_len, &n);
    check(st == EA_ERR_BUFFER_TOO_SMALL && n == want_len,
          "ea_chat_format with no room for the NUL is EA_ERR_BUFFER_TOO_SMALL",
          "status %s, n_bytes %zu", status_name(st), n);
    memset(buf, 'x', sizeof buf);
    n = 0;
    st = ea_chat_format(m, roles, contents, 2, 1, buf, want_len + 1, &n);
    check(st == EA_OK && n == want_len && memcmp(buf, want, want_len + 1) == 0,
          "ea_chat_format writes the ChatML text and a NUL", "status %s, n_bytes %zu, \"%.*s\"",
          status_name(st), n, (int)(n < sizeof buf ? n : 0), buf);
    st = ea_chat_format(m, roles, contents, 2, 0, buf, sizeof buf, &n);
    check(st == EA_OK && n == want_len - strlen("<|im_start|>assistant\n") &&
              memcmp(buf, want, n) == 0 && buf[n] == '\0',
          "ea_chat_format(add_assistant 0) leaves out the assistant header", "status %s, %zu",
          status_name(st), n);
    st = ea_chat_format(m, roles, contents, 0, 1, buf, sizeof buf, &n);
    check(st == EA_OK && n == 22 && strcmp(buf, "<|im_start|>assistant\n") == 0,
          "ea_chat_format of no messages is the assistant header", "status %s, \"%s\"",
          status_name(st), st == EA_OK ? buf : "");
}

/* The synthetic model of make_corrupt.py: a fully known vocabulary and merges. */
static void test_synthetic(const char *dir) {
    char path[4096];
    ea_model *m = NULL;
    snprintf(path, sizeof path, "%s/syn_valid.gguf", dir);
    if (!expect(ea_model_load(path, NULL, &m), EA_OK, "synthetic model loads", ea_last_error()))
        return;
    check(ea_model_vocab_size(m) == 262 && ea_model_n_layers(m) == 2 && ea_model_n_embd(m) == 32 &&
              ea_model_context_length(m) == 256,
          "synthetic model facts (vocab 262, 2 layers, d 32, ctx 256)",
          "vocab %d layers %d embd %d ctx %d", (int)ea_model_vocab_size(m),
          (int)ea_model_n_layers(m), (int)ea_model_n_embd(m), (int)ea_model_context_length(m));
    {
        /* merges (by rank): "Ġ t" -> 256, "h e" -> 257, "t he" -> 258 */
        ea_token t[16];
        size_t n = 0;
        ea_status st = ea_tokenize(m, " the", 4, 1, 1, t, 16, &n);
        check(st == EA_OK && n == 2 && t[0] == 256 && t[1] == 257,
              "synthetic BPE: \" the\" -> [256 \"Ġt\", 257 \"he\"]", "status %s, %zu tokens: %d %d",
              status_name(st), n, n > 0 ? (int)t[0] : -1, n > 1 ? (int)t[1] : -1);
        st = ea_tokenize(m, "the", 3, 1, 1, t, 16, &n);
        check(st == EA_OK && n == 1 && t[0] == 258, "synthetic BPE: \"the\" -> [258 \"the\"]",
              "status %s, %zu tokens: %d", status_name(st), n, n > 0 ? (int)t[0] : -1);
        st = ea_tokenize(m, "A<|im_end|>", 11, 1, 1, t, 16, &n);
        check(st == EA_OK && n == 2 && t[0] == 65 && t[1] == 261 && ea_token_is_eog(m, 261),
              "synthetic: \"A<|im_end|>\" -> [65, 261 (end of generation)]",
              "status %s, %zu tokens: %d %d", status_name(st), n, n > 0 ? (int)t[0] : -1,
              n > 1 ? (int)t[1] : -1);
    }
    {
        ea_session *s = NULL;
        ea_sampler *smp = NULL;
        ea_session_params p = small_session(32);
        ea_sampler_params sp = ea_sampler_default_params();
        gen_log g;
        int32_t ngen = 0;
        const ea_token prompt[] = {256, 257, 65};
        gen_log_init(&g, m);
        if (ea_session_create(m, &p, &s) == EA_OK && ea_sampler_create(m, &sp, &smp) == EA_OK) {
            ea_status st = ea_generate(s, smp, prompt, 3, 4, on_token, &g, NULL, &ngen);
            check(st == EA_OK && ngen == g.n && g.piece_mismatch == 0,
                  "synthetic model (F32 weights) generates", "status %s (%s), %d tokens",
                  status_name(st), ea_session_last_error(s), (int)ngen);
        } else {
            check(0, "synthetic session and sampler", "%s", ea_last_error());
        }
        ea_sampler_free(smp);
        ea_session_free(s);
    }
    ea_model_free(m);
}

/* State snapshots on a Λ session of the real model: constant size, restorable into a fresh session
 * (the next logits are bit-identical), refused by a session of another configuration. */
static void test_state_snapshots(const ea_model *m) {
    ea_session_params p = small_session(24);
    p.attention = EA_ATTN_LAMBDA;
    p.attn_sinks = 4;
    p.attn_window = 12;
    p.n_batch = 4;
    ea_session *a = NULL, *b = NULL, *c = NULL;
    if (!expect(ea_session_create(m, &p, &a), EA_OK, "snapshot: Λ session", ea_last_error())) return;
    size_t size0 = ea_session_state_size(a);
    check(size0 > 64, "snapshot: size reported", "size %zu", size0);
    check(ea_session_state_size(NULL) == 0, "snapshot: size of NULL is 0", "");
    size_t need = 0;
    expect(ea_session_state_save(a, NULL, 0, &need), EA_ERR_BUFFER_TOO_SMALL, "snapshot: NULL buffer -> size needed",
           ea_session_last_error(a));
    check(need == size0, "snapshot: BUFFER_TOO_SMALL returns the size needed", "need %zu, size %zu", need, size0);
    expect(ea_session_state_save(NULL, NULL, 0, NULL), EA_ERR_INVALID_ARGUMENT, "snapshot: save NULL session", ea_last_error());
    expect(ea_session_state_load(NULL, NULL, 0), EA_ERR_INVALID_ARGUMENT, "snapshot: load NULL session", ea_last_error());
    expect(ea_session_state_load(a, NULL, 0), EA_ERR_INVALID_ARGUMENT, "snapshot: load NULL buffer", ea_last_error());
    unsigned char *buf = malloc(size0), *buf2 = malloc(size0);
    float *want = malloc(sizeof(float) * (size_t)ea_model_vocab_size(m));
    if (!buf || !buf2 || !want) { check(0, "snapshot: malloc", ""); goto out; }
    /* 40 tokens: past the 4 + 12 + n_batch - 1 = 19 ring slots, so the ring has wrapped twice */
    for (int i = 0; i < 40; i++) ea_session_decode(a, k_prompt_ids[i % N_PROMPT_IDS], NULL);
    check(ea_session_state_size(a) == size0, "snapshot: size constant after 40 tokens on a Λ session", "");
    size_t written = 0;
    expect(ea_session_state_save(a, buf, size0, &written), EA_OK, "snapshot: save", ea_session_last_error(a));
    check(written == size0, "snapshot: wrote state_size bytes", "%zu", written);
    const float *la = NULL, *lb = NULL;
    ea_session_decode(a, 42, &la);
    memcpy(want, la, sizeof(float) * (size_t)ea_model_vocab_size(m));
    if (!expect(ea_session_create(m, &p, &b), EA_OK, "snapshot: second session", ea_last_error())) goto out;
    expect(ea_session_state_load(b, buf, size0), EA_OK, "snapshot: load into a fresh session", ea_session_last_error(b));
    check(ea_session_n_past(b) == 40, "snapshot: position restored", "n_past %d", ea_session_n_past(b));
    const float *restored = ea_session_logits(b);
    check(restored != NULL, "snapshot: last logits restored", "");
    ea_session_decode(b, 42, &lb);
    check(lb && memcmp(lb, want, sizeof(float) * (size_t)ea_model_vocab_size(m)) == 0,
          "snapshot: next token's logits bit-identical after restore", "");
    /* damaged or foreign snapshots leave the session untouched */
    expect(ea_session_state_load(b, buf, size0 - 1), EA_ERR_TRUNCATED, "snapshot: short buffer", ea_session_last_error(b));
    memcpy(buf2, buf, size0);
    buf2[size0 / 2] ^= 0x10;
    expect(ea_session_state_load(b, buf2, size0), EA_ERR_CORRUPT, "snapshot: damaged payload", ea_session_last_error(b));
    memcpy(buf2, buf, size0);
    buf2[0] ^= 1;
    expect(ea_session_state_load(b, buf2, size0), EA_ERR_BAD_MAGIC, "snapshot: not a snapshot", ea_session_last_error(b));
    check(ea_session_n_past(b) == 41, "snapshot: failed loads change nothing", "n_past %d", ea_session_n_past(b));
    p.attn_window = 60;
    if (expect(ea_session_create(m, &p, &c), EA_OK, "snapshot: session with another window", ea_last_error()))
        expect(ea_session_state_load(c, buf, size0), EA_ERR_STATE_MISMATCH, "snapshot: other configuration refused",
               ea_session_last_error(c));
out:
    free(buf);
    free(buf2);
    free(want);
    ea_session_free(a);
    ea_session_free(b);
    ea_session_free(c);
}

/* A series model (the Aaren forecaster fixture): kinds, the series call, and text calls refused. */
static void test_series_model(const char *path, const ea_model *text_model) {
    ea_model *m = NULL;
    if (!expect(ea_model_load(path, NULL, &m), EA_OK, "series: forecaster loads", ea_last_error())) return;
    check(ea_model_series_outputs(m) == 1, "series: one output", "%d", ea_model_series_outputs(m));
    check(ea_model_vocab_size(m) == 0, "series: no vocabulary", "%d", ea_model_vocab_size(m));
    check(ea_model_layer_kind(m, 0) == EA_LAYER_AAREN, "series: layer 0 is Aaren", "%d", ea_model_layer_kind(m, 0));
    check(ea_model_layer_kind(m, 99) == -1 && ea_model_layer_kind(NULL, 0) == -1, "series: layer kind out of range", "");
    check(ea_model_layer_kind(text_model, 0) == EA_LAYER_SOFTMAX, "series: text model layers are softmax", "");
    check(ea_model_series_outputs(text_model) == 0, "series: text model has no series outputs", "");
    ea_token ids[4];
    size_t n = 0;
    expect(ea_tokenize(m, "abc", 3, 0, 0, ids, 4, &n), EA_ERR_MODEL_KIND, "series: tokenize refused", ea_model_last_error(m));
    ea_sampler *smp = NULL;
    expect(ea_sampler_create(m, NULL, &smp), EA_ERR_MODEL_KIND, "series: sampler refused", ea_last_error());
    ea_session *s = NULL, *t = NULL;
    ea_session_params p = ea_session_default_params();
    if (!expect(ea_session_create(m, &p, &s), EA_OK, "series: session", ea_last_error())) goto out;
    check(ea_session_n_ctx(s) == INT32_MAX, "series: unbounded stream", "%d", ea_session_n_ctx(s));
    expect(ea_session_decode(s, 0, NULL), EA_ERR_MODEL_KIND, "series: decode refused", ea_session_last_error(s));
    float x[3] = {350.0f, 350.5f, 351.0f}, y[3] = {0};
    expect(ea_session_eval_series(s, NULL, 3, y, 3), EA_ERR_INVALID_ARGUMENT, "series: NULL samples", ea_session_last_error(s));
    expect(ea_session_eval_series(s, x, 3, NULL, 3), EA_ERR_INVALID_ARGUMENT, "series: NULL out", ea_session_last_error(s));
    expect(ea_session_eval_series(s, x, 3, y, 2), EA_ERR_BUFFER_TOO_SMALL, "series: out too small", ea_session_last_error(s));
    float bad[2] = {1.0f, NAN};
    expect(ea_session_eval_series(s, bad, 2, y, 2), EA_ERR_INVALID_ARGUMENT, "series: NaN sample refused", ea_session_last_error(s));
    check(ea_session_n_past(s) == 0, "series: refused calls change nothing", "n_past %d", ea_session_n_past(s));
    expect(ea_session_eval_series(s, x, 3, y, 3), EA_OK, "series: three samples", ea_session_last_error(s));
    check(isfinite(y[2]) && fabsf(y[2] - 351.0f) < 10, "series: forecast near the series", "%g", (double)y[2]);
    ea_session *st = NULL;
    if (ea_session_create(text_model, NULL, &st) == EA_OK) {
        expect(ea_session_eval_series(st, x, 3, y, 3), EA_ERR_MODEL_KIND, "series: text session refuses samples",
               ea_session_last_error(st));
        ea_session_free(st);
    }
    /* the same samples one at a time give the same forecasts (constant state, any batching) */
    if (expect(ea_session_create(m, &p, &t), EA_OK, "series: second session", ea_last_error())) {
        float y1[3];
        for (int i = 0; i < 3; i++) ea_session_eval_series(t, &x[i], 1, &y1[i], 1);
        check(fabsf(y1[2] - y[2]) <= 1e-4f * fabsf(y[2]), "series: one at a time == batch", "%g vs %g", (double)y1[2], (double)y[2]);
    }
out:
    ea_session_free(s);
    ea_session_free(t);
    ea_model_free(m);
}

/* A caller workspace replaces the session's own arena; auto_fit shrinks a session into its budget. */
static void test_workspace_and_auto_fit(const ea_model *m) {
    ea_session_params p = small_session(256);
    uint64_t est = 0;
    if (!expect(ea_estimate_session_bytes(m, &p, &est), EA_OK, "workspace: estimate", ea_last_error())) return;
    void *wsv = NULL;
    if (posix_memalign(&wsv, 64, (size_t)est + 64) != 0) { check(0, "workspace: allocation", ""); return; }
    unsigned char *ws = wsv;
    ea_session *a = NULL, *b = NULL, *c = NULL;
    p.workspace = ws;
    p.workspace_size = est;
    if (expect(ea_session_create(m, &p, &a), EA_OK, "workspace: session in caller memory", ea_last_error())) {
        check(ea_session_allocated_bytes(a) == est, "workspace: the session's bytes are the estimate", "");
        ea_session_params q = small_session(256);
        const float *la = NULL, *lb = NULL;
        if (expect(ea_session_create(m, &q, &b), EA_OK, "workspace: reference session", ea_last_error())) {
            ea_session_prefill(a, k_prompt_ids, N_PROMPT_IDS);
            ea_session_prefill(b, k_prompt_ids, N_PROMPT_IDS);
            ea_session_decode(a, 42, &la);
            ea_session_decode(b, 42, &lb);
            check(la && lb && memcmp(la, lb, sizeof(float) * (size_t)ea_model_vocab_size(m)) == 0,
                  "workspace: same logits as an owned arena", "");
            check((const unsigned char *)la >= ws && (const unsigned char *)la < ws + est,
                  "workspace: the logits live in the caller's memory", "");
        }
        ea_session_free(a);
        ea_session_free(b);
        a = b = NULL;
    }
    p.workspace_size = est - 64;
    expect(ea_session_create(m, &p, &a), EA_ERR_BUDGET, "workspace: too small -> EA_ERR_BUDGET", ea_last_error());
    p.workspace = ws + 8;
    p.workspace_size = est;
    expect(ea_session_create(m, &p, &a), EA_ERR_INVALID_ARGUMENT, "workspace: misaligned", ea_last_error());
    p.workspace = NULL;
    expect(ea_session_create(m, &p, &a), EA_ERR_INVALID_ARGUMENT, "workspace: NULL with a size", ea_last_error());
    ea_session_free(a);
    a = NULL;

    /* auto_fit: a budget between the KV4 and KV16 sizes chooses KV4 and keeps the context */
    ea_session_params f = small_session(2048);
    uint64_t e16 = 0, e4 = 0;
    ea_estimate_session_bytes(m, &f, &e16);
    f.kv_bits = 4;
    ea_estimate_session_bytes(m, &f, &e4);
    f.kv_bits = 16;
    f.memory_budget = (e4 + e16) / 2;
    expect(ea_session_create(m, &f, &a), EA_ERR_BUDGET, "auto_fit off: over budget fails", ea_last_error());
    f.auto_fit = 1;
    ea_session_params got;
    if (expect(ea_session_create(m, &f, &a), EA_OK, "auto_fit: fits by KV bits", ea_last_error()) &&
        expect(ea_session_get_params(a, &got), EA_OK, "auto_fit: get_params", ea_session_last_error(a))) {
        check(got.kv_bits < 16 && got.n_ctx == 2048 && ea_session_allocated_bytes(a) <= f.memory_budget,
              "auto_fit: chose fewer KV bits, kept n_ctx 2048, within budget", "kv_bits %u n_ctx %u bytes %llu",
              got.kv_bits, got.n_ctx, (unsigned long long)ea_session_allocated_bytes(a));
    }
    /* a budget too small for any KV format at 2048: the context shrinks, and the session still works */
    f.memory_budget = e4 / 3;
    if (expect(ea_session_create(m, &f, &b), EA_OK, "auto_fit: fits by context", ea_last_error()) &&
        expect(ea_session_get_params(b, &got), EA_OK, "auto_fit: get_params (context)", ea_session_last_error(b))) {
        check(got.n_ctx < 2048 && got.n_ctx >= 16 && got.kv_bits == 4 && ea_session_allocated_bytes(b) <= f.memory_budget,
              "auto_fit: KV4, smaller batch/context, within budget", "kv_bits %u n_ctx %u n_batch %u bytes %llu",
              got.kv_bits, got.n_ctx, got.n_batch, (unsigned long long)ea_session_allocated_bytes(b));
        /* largest: one more context token would not fit */
        ea_session_params more = got;
        more.n_ctx = got.n_ctx + 1;
        more.auto_fit = 0;
        more.workspace = NULL;
        more.workspace_size = 0;
        uint64_t e_more = 0;
        ea_estimate_session_bytes(m, &more, &e_more);
        check(e_more > f.memory_budget, "auto_fit: the chosen context is the largest that fits", "n_ctx+1 needs %llu",
              (unsigned long long)e_more);
        check(ea_session_prefill(b, k_prompt_ids, N_PROMPT_IDS) == EA_OK, "auto_fit: the fitted session runs", "%s",
              ea_session_last_error(b));
    }
    f.memory_budget = 4096;
    expect(ea_session_create(m, &f, &c), EA_ERR_BUDGET, "auto_fit: impossible budget -> EA_ERR_BUDGET", ea_last_error());
    check(strstr(ea_last_error(), "auto_fit") != NULL, "auto_fit: the message says what it tried", "%s", ea_last_error());
    ea_session_free(a);
    ea_session_free(b);
    ea_session_free(c);
    free(ws);
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s MODEL_PATH CORRUPT_DIR [SERIES_MODEL_PATH]\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1], *dir = argv[2];
    setvbuf(stdout, NULL, _IOLBF, 0);

    test_version_and_status();
    test_self_test();
    test_null_arguments_without_model();
    test_missing_and_directory(dir);
    test_corrupt_files(dir);
    test_truncation(dir, model_path);
    test_nan_weights(dir);
    test_synthetic(dir);

    ea_model *m = NULL;
    ea_status st = ea_model_load(model_path, NULL, &m);
    if (expect(st, EA_OK, "the real model loads", ea_last_error())) {
        test_model_facts(m, model_path);
        test_null_arguments_with_model(m);
        test_params_size_zero(m, model_path);
        test_tokenizer(m);
        test_token_text(m);
        test_token_range_session(m);
        test_budget(m);
        test_kv_quant_plan(m);
        test_context_full(m);
        test_attention_policies(m);
        test_generation(m);
        test_chat_format(m);
        test_state_snapshots(m);
        test_workspace_and_auto_fit(m);
        if (argc == 4) test_series_model(argv[3], m);
    }
    ea_model_free(m);

    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
