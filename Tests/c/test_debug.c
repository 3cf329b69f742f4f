/*
 * test_debug.c - the debug build's handle guard (cross/build-lib.sh sanitize defines
 * EA_DEBUG_HANDLES): using a model, session or sampler after its ea_*_free returns
 * EA_ERR_INVALID_ARGUMENT with a message saying so, and a second free is harmless. In release
 * builds this is undefined behaviour, as the header says.
 *
 *   test_debug MODEL.gguf     -> "N passed, M failed"
 */
#include "edgeattn.h"

#include <stdio.h>
#include <string.h>

static int g_passed, g_failed;
static void check(int ok, const char *name, const char *detail) {
    printf("%s - %s%s%s\n", ok ? "ok" : "not ok", name, ok ? "" : ": ", ok ? "" : detail);
    if (ok) g_passed++; else g_failed++;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]); return 2; }
    ea_model *m = NULL;
    if (ea_model_load(argv[1], NULL, &m) != EA_OK) { printf("not ok - load: %s\n0 passed, 1 failed\n", ea_last_error()); return 1; }
    ea_session_params p = ea_session_default_params();
    p.n_ctx = 32;
    ea_session *s = NULL;
    ea_sampler *smp = NULL;
    check(ea_session_create(m, &p, &s) == EA_OK && ea_sampler_create(m, NULL, &smp) == EA_OK, "create", ea_last_error());
    ea_token t = 42;
    check(ea_session_decode(s, t, NULL) == EA_OK, "decode before free", ea_last_error());
    ea_session_free(s);
    ea_status st = ea_session_decode(s, t, NULL);
    check(st == EA_ERR_INVALID_ARGUMENT && strstr(ea_last_error(), "freed") != NULL,
          "decode on a freed session is refused and says why", ea_last_error());
    check(ea_session_n_past(s) == 0 && ea_session_logits(s) == NULL, "facts of a freed session are empty", "");
    ea_session_free(s); /* double free: no effect */
    check(1, "second ea_session_free is harmless", "");
    ea_sampler_free(smp);
    check(ea_sampler_sample(smp, NULL, NULL) != EA_OK, "a freed sampler is refused", ea_last_error());
    ea_model_free(m);
    check(ea_model_vocab_size(m) == 0, "a freed model reports nothing", "");
    ea_session *s2 = NULL;
    st = ea_session_create(m, &p, &s2);
    check(st == EA_ERR_INVALID_ARGUMENT && s2 == NULL && strstr(ea_last_error(), "freed") != NULL,
          "a session cannot be made from a freed model", ea_last_error());
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
