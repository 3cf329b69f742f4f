/*
 * stream.c - online forecasting with a series model (e.g. aaren-forecaster.gguf from `bash examples/fetch-model.sh recurrent`):
 * one sample in, one forecast out, forever, in constant memory.
 *
 *   stream -m MODEL [-t THREADS] [--checkpoint FILE] [--checkpoint-every N] [--stats-every N]
 *
 * Reads samples from stdin, one number per line (blank lines are skipped), and after each sample
 * prints the model's forecast of the next value on its own line ("%.9g", several outputs separated
 * by spaces), flushed at once. Every layer of a series model is recurrent, so the session holds a
 * constant-size state and the process's memory does not grow however long the stream runs.
 *
 * --checkpoint FILE: if FILE exists, the session state is restored from it first (same model file
 * needed); at end of input, on SIGINT/SIGTERM, and every N samples with --checkpoint-every N, the
 * state is written to FILE.tmp and renamed over FILE (a crash never leaves a half-written FILE).
 * A resumed stream prints exactly what the uninterrupted stream would have printed.
 *
 * stderr receives: "stream: resumed after K samples" when a checkpoint was loaded, and at the end
 * (and every N samples with --stats-every N) "stream: N samples, state B bytes, peak RSS R kB". Errors print "stream: <status>: <detail>" and
 * exit with status 1 (2 for usage errors; a malformed input line is an error).
 */
#define _POSIX_C_SOURCE 200809L
#include "edgeattn.h"
#include "common.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: stream -m MODEL [-t THREADS] [--checkpoint FILE] [--checkpoint-every N]\n"
            "  reads one number per line on stdin, prints one forecast per line on stdout\n"
            "  -m MODEL               series model (GGUF with edgeattn.series.* metadata)\n"
            "  -t THREADS             threads (0 = all cores; default 1)\n"
            "  --checkpoint FILE      resume from FILE if it exists; save to it at the end / on SIGINT, SIGTERM\n"
            "  --checkpoint-every N   also save every N samples (default 0 = only at the end)\n"
            "  --stats-every N        print the sample count and peak RSS to stderr every N samples\n");
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

/* Writes the snapshot to path.tmp, then renames it over path. */
static int save_checkpoint(ea_session *s, void *buf, size_t size, const char *path) {
    size_t written = 0;
    ea_status st = ea_session_state_save(s, buf, size, &written);
    if (st != EA_OK) {
        fprintf(stderr, "stream: %s: %s\n", ea_status_string(st), error_detail(ea_session_last_error(s)));
        return 0;
    }
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        fprintf(stderr, "stream: checkpoint path too long\n");
        return 0;
    }
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(buf, 1, written, f) == written;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "stream: cannot write checkpoint %s: %s\n", path, strerror(errno));
        remove(tmp);
        return 0;
    }
    return 1;
}

/* Reads FILE into buf (exactly size bytes expected); 0 = absent, 1 = read, -1 = error. */
static int read_checkpoint(const char *path, void *buf, size_t size, size_t *got) {
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? 0 : -1;
    *got = fread(buf, 1, size, f);
    int extra = fgetc(f) != EOF; /* a longer file is not ours */
    fclose(f);
    if (extra) *got = size + 1;
    return 1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *ckpt = NULL;
    long long threads = 1, every = 0, stats = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!v) { fprintf(stderr, "stream: %s needs a value\n", a); usage(stderr); return 2; }
        if (!strcmp(a, "-m")) model_path = v;
        else if (!strcmp(a, "--checkpoint")) ckpt = v;
        else if (!strcmp(a, "-t")) { if (!parse_int(v, 0, 1024, &threads)) { fprintf(stderr, "stream: bad -t %s\n", v); return 2; } }
        else if (!strcmp(a, "--checkpoint-every")) { if (!parse_int(v, 0, INT64_MAX, &every)) { fprintf(stderr, "stream: bad --checkpoint-every %s\n", v); return 2; } }
        else if (!strcmp(a, "--stats-every")) { if (!parse_int(v, 0, INT64_MAX, &stats)) { fprintf(stderr, "stream: bad --stats-every %s\n", v); return 2; } }
        else { fprintf(stderr, "stream: unknown option %s\n", a); usage(stderr); return 2; }
        i++;
    }
    if (!model_path) { fprintf(stderr, "stream: -m MODEL is required\n"); usage(stderr); return 2; }

    ea_model *model = NULL;
    ea_status st = ea_model_load(model_path, NULL, &model);
    if (st != EA_OK) { fprintf(stderr, "stream: %s: %s\n", ea_status_string(st), error_detail(NULL)); return 1; }
    int32_t n_out = ea_model_series_outputs(model);
    if (n_out < 1) {
        fprintf(stderr, "stream: %s: %s is a text model, not a series model\n", ea_status_string(EA_ERR_MODEL_KIND), model_path);
        ea_model_free(model);
        return 1;
    }
    ea_session_params sp = ea_session_default_params();
    sp.n_threads = (uint32_t)threads;
    sp.n_batch = 1; /* samples arrive one at a time */
    ea_session *s = NULL;
    st = ea_session_create(model, &sp, &s);
    if (st != EA_OK) {
        fprintf(stderr, "stream: %s: %s\n", ea_status_string(st), error_detail(NULL));
        ea_model_free(model);
        return 1;
    }
    /* everything the loop needs is allocated here, once */
    size_t state_size = ea_session_state_size(s);
    void *state = malloc(state_size + 1);
    float *out = malloc(sizeof(float) * (size_t)n_out);
    int rc = 0;
    if (!state || !out) { fprintf(stderr, "stream: out of memory\n"); rc = 1; goto done; }

    if (ckpt) {
        size_t got = 0;
        int r = read_checkpoint(ckpt, state, state_size, &got);
        if (r < 0) { fprintf(stderr, "stream: cannot read checkpoint %s: %s\n", ckpt, strerror(errno)); rc = 1; goto done; }
        if (r == 1) {
            st = ea_session_state_load(s, state, got);
            if (st != EA_OK) {
                fprintf(stderr, "stream: checkpoint %s: %s: %s\n", ckpt, ea_status_string(st), error_detail(ea_session_last_error(s)));
                rc = 1;
                goto done;
            }
            fprintf(stderr, "stream: resumed after %d samples\n", ea_session_n_past(s));
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: a blocked read returns so the state can be saved */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char line[512];
    long long n = 0, lineno = 0;
    while (!g_stop && fgets(line, sizeof line, stdin)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            fprintf(stderr, "stream: line %lld is too long\n", lineno);
            rc = 1;
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = 0;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) continue;
        float x;
        if (!parse_float(p, -INFINITY, 0, INFINITY, 0, &x)) {
            fprintf(stderr, "stream: line %lld: '%s' is not a finite number\n", lineno, p);
            rc = 1;
            break;
        }
        st = ea_session_eval_series(s, &x, 1, out, (size_t)n_out);
        if (st != EA_OK) {
            fprintf(stderr, "stream: %s: %s\n", ea_status_string(st), error_detail(ea_session_last_error(s)));
            rc = 1;
            break;
        }
        for (int32_t j = 0; j < n_out; j++) printf(j ? " %.9g" : "%.9g", (double)out[j]);
        putchar('\n');
        fflush(stdout);
        n++;
        if (stats > 0 && n % stats == 0)
            fprintf(stderr, "stream: %lld samples, state %zu bytes, peak RSS %ld kB\n", n, state_size, peak_rss_kb());
        if (ckpt && every > 0 && n % every == 0 && !save_checkpoint(s, state, state_size, ckpt)) { rc = 1; break; }
    }
    if (ckpt && rc == 0 && !save_checkpoint(s, state, state_size, ckpt)) rc = 1;
    fprintf(stderr, "stream: %lld samples, state %zu bytes, peak RSS %ld kB\n", n, state_size, peak_rss_kb());
done:
    free(state);
    free(out);
    ea_session_free(s);
    ea_model_free(model);
    return rc;
}
