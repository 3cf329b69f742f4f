/*
 * simple.c - the smallest complete libedgeattn program: load a GGUF model, tokenize a prompt and
 * print the prompt and its greedy continuation as it is generated.
 *
 *   simple MODEL [PROMPT] [N]        (defaults: "The capital of France is", 32 tokens)
 *
 * Build against an installed library (cross/build-lib.sh install PREFIX):
 *   cc simple.c $(PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs edgeattn)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeattn.h"

/* Every call that can fail returns a status; the handle (or the thread) holds the detail. */
#define CHECK(call, detail)                                                         \
    do {                                                                            \
        ea_status st_ = (call);                                                     \
        if (st_ != EA_OK) {                                                         \
            fprintf(stderr, "simple: %s: %s\n", ea_status_string(st_), (detail));   \
            goto done;                                                              \
        }                                                                           \
    } while (0)

int main(int argc, char **argv) {
    const char *prompt = argc > 2 ? argv[2] : "The capital of France is";
    int n_predict = argc > 3 ? atoi(argv[3]) : 32;
    ea_model_params mp = ea_model_default_params(); /* always start from the defaults */
    ea_session_params sp = ea_session_default_params();
    ea_model *model = NULL;
    ea_session *session = NULL;
    ea_token tokens[512], next = 0;
    size_t n_prompt = 0, len = 0;
    int32_t vocab = 0;
    char piece[256];
    const float *logits = NULL;
    int rc = 1;

    if (argc < 2 || argc > 4 || n_predict < 1) {
        fprintf(stderr, "usage: simple MODEL [PROMPT] [N >= 1]\n");
        return 2;
    }
    if (ea_version() != EA_VERSION_NUMBER) { /* header and library from different releases */
        fprintf(stderr, "simple: library %u, header %u\n", (unsigned)ea_version(),
                (unsigned)EA_VERSION_NUMBER);
        return 1;
    }
    CHECK(ea_model_load(argv[1], &mp, &model), ea_last_error());
    vocab = ea_model_vocab_size(model);
    /* BOS only if the model asks for it; special-token text such as "<|im_start|>" is parsed */
    CHECK(ea_tokenize(model, prompt, strlen(prompt), 1, 1, tokens, sizeof tokens / sizeof tokens[0], &n_prompt),
          ea_model_last_error(model));
    sp.n_ctx = (uint32_t)(n_prompt + (size_t)n_predict); /* just what this run needs */
    sp.memory_budget = 64u << 20; /* EA_ERR_BUDGET instead of more than 64 MiB */
    CHECK(ea_session_create(model, &sp, &session), ea_last_error());
    CHECK(ea_session_prefill(session, tokens, n_prompt), ea_session_last_error(session));
    logits = ea_session_logits(session);

    printf("%s", prompt);
    for (int i = 0; i < n_predict; i++) {
        next = 0; /* greedy: the most likely token */
        for (ea_token t = 1; t < vocab; t++)
            if (logits[t] > logits[next]) next = t;
        if (ea_token_is_eog(model, next)) break;
        CHECK(ea_token_to_text(model, next, piece, sizeof piece, &len), ea_model_last_error(model));
        fwrite(piece, 1, len, stdout); /* a piece may be part of a UTF-8 character: print bytes */
        fflush(stdout);
        CHECK(ea_session_decode(session, next, &logits), ea_session_last_error(session));
    }
    printf("\n");
    rc = 0;
done:
    ea_session_free(session); /* the session before its model; NULL is ignored */
    ea_model_free(model);
    return rc;
}
