/*
 * chat.c - an interactive ChatML conversation with libedgeattn.
 *
 *   chat -m MODEL [-n N] [-t THREADS] [--temp T] [--seed S] [--ctx N] [--system TEXT] [-v]
 *
 * Reads one user message per line from stdin and writes each reply to stdout followed by a
 * newline. Commands: "/reset" forgets the conversation. End of input ends the program (exit status
 * 0, or 1 if a turn failed). Works the same with a pipe: `printf 'Hi\nWho are you?\n' | chat -m M`.
 * The "> " prompt and all diagnostics go to stderr (the prompt only when stdin is a terminal).
 *
 * Each turn formats the whole conversation with ea_chat_format and tokenizes it. The session keeps
 * the tokens of the earlier turns in its KV cache, so only the tokens after the part already in
 * the cache are prefilled. When the new tokens do not continue the cached ones (the reply's tokens
 * re-tokenize differently, or the library kept a token we did not see), the session is reset and
 * the whole conversation is prefilled again. When the conversation outgrows the context, the oldest
 * exchanges are dropped.
 */
#define _POSIX_C_SOURCE 200809L
#include "edgeattn.h"
#include "common.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *model;
    const char *system;
    int32_t n_predict;
    uint32_t n_threads;
    float temp;
    uint64_t seed;
    uint32_t n_ctx;
    int verbose;
} options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: chat -m MODEL [options]   (one user message per line on stdin)\n"
            "  -m MODEL       GGUF model file (ChatML instruct model)\n"
            "  -n N           longest reply in tokens (default 256)\n"
            "  -t THREADS     threads (0 = all cores; default 0)\n"
            "  --temp T       temperature (0 = greedy; default 0)\n"
            "  --seed S       random seed (unsigned 64-bit)\n"
            "  --ctx N        context tokens (0 = the model's; default 2048)\n"
            "  --system TEXT  a system message at the start of the conversation\n"
            "  -v             per turn, print on stderr how many tokens were prefilled and reused\n"
            "commands: /reset forgets the conversation; end of input quits\n");
}

static int bad_value(const char *opt, const char *val, const char *want) {
    fprintf(stderr, "chat: invalid value '%s' for %s (expected %s)\n", val, opt, want);
    usage(stderr);
    return 0;
}

static int parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = 256;
    o->n_ctx = 2048;
    o->seed = ea_sampler_default_params().seed;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long long v = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "-v") == 0) {
            o->verbose = 1;
            continue;
        }
        if (strcmp(a, "-m") != 0 && strcmp(a, "-n") != 0 && strcmp(a, "-t") != 0 &&
            strcmp(a, "--temp") != 0 && strcmp(a, "--seed") != 0 && strcmp(a, "--ctx") != 0 &&
            strcmp(a, "--system") != 0) {
            fprintf(stderr, "chat: unknown option '%s'\n", a);
            usage(stderr);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "chat: option %s needs a value\n", a);
            usage(stderr);
            return 0;
        }
        const char *val = argv[++i];
        if (strcmp(a, "-m") == 0) {
            o->model = val;
        } else if (strcmp(a, "--system") == 0) {
            o->system = val;
        } else if (strcmp(a, "-n") == 0) {
            if (!parse_int(val, 1, INT32_MAX, &v)) return bad_value(a, val, "an integer >= 1");
            o->n_predict = (int32_t)v;
        } else if (strcmp(a, "-t") == 0) {
            if (!parse_int(val, 0, 4096, &v)) return bad_value(a, val, "an integer in [0, 4096]");
            o->n_threads = (uint32_t)v;
        } else if (strcmp(a, "--temp") == 0) {
            if (!parse_float(val, 0.0, 0, 100.0, 0, &o->temp))
                return bad_value(a, val, "a number in [0, 100]");
        } else if (strcmp(a, "--seed") == 0) {
            if (!parse_u64(val, &o->seed)) return bad_value(a, val, "an unsigned 64-bit integer");
        } else if (strcmp(a, "--ctx") == 0) {
            if (!parse_int(val, 0, INT32_MAX, &v)) return bad_value(a, val, "an integer >= 0");
            o->n_ctx = (uint32_t)v;
        }
    }
    if (!o->model) {
        fprintf(stderr, "chat: -m MODEL is required\n");
        usage(stderr);
        return 0;
    }
    return 1;
}

/* ---- growable buffers --------------------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
} text_buf;

static int text_append(text_buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = (char *)realloc(b->data, cap);
        if (!p) return 0;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 1;
}

typedef struct {
    ea_token *data;
    size_t len, cap;
} token_buf;

static int tokens_reserve(token_buf *b, size_t n) {
    if (n <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < n) cap *= 2;
    ea_token *p = (ea_token *)realloc(b->data, cap * sizeof *p);
    if (!p) return 0;
    b->data = p;
    b->cap = cap;
    return 1;
}

/* The conversation: roles are static strings, contents are owned. */
typedef struct {
    const char **roles;
    char **contents;
    size_t n, cap;
} history;

static int history_add(history *h, const char *role, const char *content, size_t len) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        const char **r = (const char **)realloc((void *)h->roles, cap * sizeof *r);
        if (!r) return 0;
        h->roles = r;
        char **c = (char **)realloc(h->contents, cap * sizeof *c);
        if (!c) return 0;
        h->contents = c;
        h->cap = cap;
    }
    char *copy = (char *)malloc(len + 1);
    if (!copy) return 0;
    memcpy(copy, content, len);
    copy[len] = '\0';
    h->roles[h->n] = role;
    h->contents[h->n] = copy;
    h->n++;
    return 1;
}

/* Removes n messages starting at index `at`. */
static void history_remove(history *h, size_t at, size_t n) {
    if (n == 0) return;
    for (size_t i = at; i < at + n; i++) free(h->contents[i]);
    memmove((void *)(h->roles + at), (const void *)(h->roles + at + n),
            (h->n - at - n) * sizeof *h->roles);
    memmove(h->contents + at, h->contents + at + n, (h->n - at - n) * sizeof *h->contents);
    h->n -= n;
}

static void history_free(history *h) {
    history_remove(h, 0, h->n);
    free((void *)h->roles);
    free(h->contents);
}

/* ---- the chat ---------------------------------------------------------------------------------- */

typedef struct {
    ea_model *model;
    ea_session *session;
    ea_sampler *sampler;
    ea_sampler_params sampler_params;
    history hist;
    size_t n_fixed;     /* messages never dropped (the system message) */
    token_buf cache;    /* the tokens in the session's KV cache, in order */
    int cache_valid;    /* cache mirrors the session exactly */
    text_buf formatted; /* scratch: the formatted conversation */
    token_buf tokens;   /* scratch: its tokens */
    text_buf reply;     /* the reply being streamed */
    token_buf generated;
    uint32_t n_ctx;
    int32_t n_predict;
    int write_error;
    int verbose;
} chat;

static void report(ea_status st, const char *what) {
    fprintf(stderr, "chat: %s: %s\n", ea_status_string(st), error_detail(what));
}

static int32_t on_token(ea_token token, const char *piece, size_t piece_len, void *user_data) {
    chat *c = (chat *)user_data;
    if (piece_len > 0 && fwrite(piece, 1, piece_len, stdout) != piece_len) c->write_error = 1;
    if (fflush(stdout) != 0) c->write_error = 1;
    if (!text_append(&c->reply, piece, piece_len)) return 1;
    if (!tokens_reserve(&c->generated, c->generated.len + 1)) return 1;
    c->generated.data[c->generated.len++] = token;
    return c->write_error ? 1 : 0;
}

/* Formats the whole conversation (with the assistant header) and tokenizes it into c->tokens. */
static ea_status format_and_tokenize(chat *c) {
    size_t need = 0, n = 0;
    char probe[1];
    ea_status st = ea_chat_format(c->model, (const char *const *)c->hist.roles,
                                  (const char *const *)c->hist.contents, c->hist.n, 1, probe,
                                  sizeof probe, &need);
    if (st != EA_OK && st != EA_ERR_BUFFER_TOO_SMALL) return st;
    c->formatted.len = 0;
    if (!text_append(&c->formatted, "", 0)) return EA_ERR_OUT_OF_MEMORY;
    if (c->formatted.cap < need + 1) {
        char *p = (char *)realloc(c->formatted.data, need + 1);
        if (!p) return EA_ERR_OUT_OF_MEMORY;
        c->formatted.data = p;
        c->formatted.cap = need + 1;
    }
    st = ea_chat_format(c->model, (const char *const *)c->hist.roles,
                        (const char *const *)c->hist.contents, c->hist.n, 1, c->formatted.data,
                        c->formatted.cap, &need);
    if (st != EA_OK) return st;
    c->formatted.len = need;

    if (!tokens_reserve(&c->tokens, need + 2)) return EA_ERR_OUT_OF_MEMORY;
    st = ea_tokenize(c->model, c->formatted.data, need, 1, 1, c->tokens.data, c->tokens.cap, &n);
    if (st == EA_ERR_BUFFER_TOO_SMALL) {
        if (!tokens_reserve(&c->tokens, n)) return EA_ERR_OUT_OF_MEMORY;
        st = ea_tokenize(c->model, c->formatted.data, need, 1, 1, c->tokens.data, c->tokens.cap,
                         &n);
    }
    c->tokens.len = st == EA_OK ? n : 0;
    return st;
}

static ea_status make_sampler(chat *c) {
    ea_sampler_free(c->sampler);
    c->sampler = NULL;
    return ea_sampler_create(c->model, &c->sampler_params, &c->sampler);
}

/* One exchange: the user's line in, the reply out. Returns 1 on success. */
static int turn(chat *c, const char *line, size_t len) {
    ea_status st;
    if (!history_add(&c->hist, "user", line, len)) {
        report(EA_ERR_OUT_OF_MEMORY, "cannot store the message");
        return 0;
    }
    /* Fit the context: leave room for the reply, dropping the oldest exchanges if needed. */
    for (;;) {
        st = format_and_tokenize(c);
        if (st != EA_OK) {
            report(st, ea_model_last_error(c->model));
            history_remove(&c->hist, c->hist.n - 1, 1);
            return 0;
        }
        if (c->tokens.len + (size_t)c->n_predict <= c->n_ctx) break;
        if (c->hist.n >= c->n_fixed + 3) { /* an old user + assistant pair, and the new message */
            history_remove(&c->hist, c->n_fixed, 2);
            continue;
        }
        if (c->tokens.len < c->n_ctx) break; /* the reply gets what is left */
        fprintf(stderr, "chat: the message (%zu tokens) does not fit the context of %u tokens\n",
                c->tokens.len, (unsigned)c->n_ctx);
        history_remove(&c->hist, c->hist.n - 1, 1);
        return 0;
    }
    int32_t n_reply = c->n_predict;
    if (c->tokens.len + (size_t)n_reply > c->n_ctx) n_reply = (int32_t)(c->n_ctx - c->tokens.len);

    /* Prefill only what the cache does not hold yet. */
    size_t keep = 0;
    if (c->cache_valid && c->cache.len > 0 && c->cache.len < c->tokens.len &&
        (int32_t)c->cache.len == ea_session_n_past(c->session) &&
        memcmp(c->cache.data, c->tokens.data, c->cache.len * sizeof(ea_token)) == 0) {
        keep = c->cache.len;
    } else {
        ea_session_reset(c->session);
    }
    c->cache_valid = 0;
    c->reply.len = 0;
    c->generated.len = 0;
    if (!text_append(&c->reply, "", 0)) {
        report(EA_ERR_OUT_OF_MEMORY, "cannot allocate the reply");
        history_remove(&c->hist, c->hist.n - 1, 1);
        return 0;
    }
    int32_t n_generated = 0;
    st = ea_generate(c->session, c->sampler, c->tokens.data + keep, c->tokens.len - keep, n_reply,
                     on_token, c, NULL, &n_generated);
    if (fputc('\n', stdout) == EOF || fflush(stdout) != 0) c->write_error = 1;
    if (st != EA_OK) {
        report(st, ea_session_last_error(c->session));
        history_remove(&c->hist, c->hist.n - 1, 1);
        return 0;
    }
    if (c->write_error) {
        fprintf(stderr, "chat: cannot write the reply: %s\n", strerror(errno));
        return 0;
    }
    if (c->verbose)
        fprintf(stderr, "chat: prefilled %zu tokens, reused %zu from the cache, generated %d\n",
                c->tokens.len - keep, keep, (int)n_generated);
    if (!history_add(&c->hist, "assistant", c->reply.data, c->reply.len)) {
        report(EA_ERR_OUT_OF_MEMORY, "cannot store the reply");
        return 0;
    }

    /* What the cache holds now: the prompt, then the generated tokens that were evaluated (the
     * last sampled one may still be pending). Anything else: rebuild the cache next turn. */
    size_t n_prompt = c->tokens.len;
    int32_t n_past = ea_session_n_past(c->session);
    if (n_past >= 0 && (size_t)n_past >= n_prompt && (size_t)n_past <= n_prompt + c->generated.len &&
        tokens_reserve(&c->cache, (size_t)n_past)) {
        memcpy(c->cache.data, c->tokens.data, n_prompt * sizeof(ea_token));
        if ((size_t)n_past > n_prompt)
            memcpy(c->cache.data + n_prompt, c->generated.data,
                   ((size_t)n_past - n_prompt) * sizeof(ea_token));
        c->cache.len = (size_t)n_past;
        c->cache_valid = 1;
    }
    return 1;
}

static void reset_chat(chat *c) {
    history_remove(&c->hist, c->n_fixed, c->hist.n - c->n_fixed);
    ea_session_reset(c->session);
    c->cache.len = 0;
    c->cache_valid = 0;
    ea_status st = make_sampler(c); /* forget the repetition history too */
    if (st != EA_OK) report(st, ea_last_error());
}

int main(int argc, char **argv) {
    options o;
    chat c;
    char *line = NULL;
    size_t line_cap = 0;
    int rc = 0, interactive;
    ea_status st;
    ea_session_params sp;

    memset(&c, 0, sizeof c);
    if (ea_version() != EA_VERSION_NUMBER) {
        fprintf(stderr, "chat: libedgeattn version %u does not match the header's %u\n",
                (unsigned)ea_version(), (unsigned)EA_VERSION_NUMBER);
        return 1;
    }
    if (!parse_args(argc, argv, &o)) return 2;

    st = ea_model_load(o.model, NULL, &c.model);
    if (st != EA_OK) {
        report(st, ea_last_error());
        rc = 1;
        goto done;
    }
    sp = ea_session_default_params();
    sp.n_ctx = o.n_ctx;
    {
        int32_t model_ctx = ea_model_context_length(c.model);
        if (model_ctx > 0 && (sp.n_ctx == 0 || sp.n_ctx > (uint32_t)model_ctx))
            sp.n_ctx = (uint32_t)model_ctx;
    }
    sp.n_threads = o.n_threads;
    st = ea_session_create(c.model, &sp, &c.session);
    if (st != EA_OK) {
        report(st, ea_last_error());
        rc = 1;
        goto done;
    }
    c.n_ctx = (uint32_t)ea_session_n_ctx(c.session);
    c.n_predict = o.n_predict;
    c.verbose = o.verbose;
    c.sampler_params = ea_sampler_default_params();
    c.sampler_params.temperature = o.temp;
    c.sampler_params.seed = o.seed;
    st = make_sampler(&c);
    if (st != EA_OK) {
        report(st, ea_last_error());
        rc = 1;
        goto done;
    }
    if (o.system) {
        if (!history_add(&c.hist, "system", o.system, strlen(o.system))) {
            report(EA_ERR_OUT_OF_MEMORY, "cannot store the system message");
            rc = 1;
            goto done;
        }
        c.n_fixed = 1;
    }

    interactive = isatty(STDIN_FILENO);
    if (interactive) fprintf(stderr, "chat: /reset forgets the conversation, Ctrl-D quits\n");
    for (;;) {
        if (interactive) {
            fputs("> ", stderr);
            fflush(stderr);
        }
        ssize_t n = getline(&line, &line_cap, stdin);
        if (n < 0) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (n == 0) continue;
        if (strcmp(line, "/reset") == 0) {
            reset_chat(&c);
            fprintf(stderr, "chat: conversation cleared\n");
            continue;
        }
        if (!turn(&c, line, (size_t)n)) {
            rc = 1;
            if (c.write_error) break;
        }
    }
    if (interactive) fputc('\n', stderr);

done:
    free(line);
    history_free(&c.hist);
    free(c.cache.data);
    free(c.formatted.data);
    free(c.tokens.data);
    free(c.reply.data);
    free(c.generated.data);
    ea_sampler_free(c.sampler);
    ea_session_free(c.session);
    ea_model_free(c.model);
    return rc;
}
