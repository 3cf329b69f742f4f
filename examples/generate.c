/*
 * generate.c - one prompt in, generated text out, with libedgeattn.
 *
 *   generate -m MODEL -p PROMPT -n N [-t THREADS] [--temp T] [--top-k K] [--top-p P] [--min-p P]
 *            [--repeat-penalty R] [--seed S] [--ctx N] [--budget BYTES] [--kv-bits 32|16|8|4] [--chat]
 *            [--attn dense|lambda|dhsa] [--sinks S] [--window W] [--pos-mode streaming|lm-infinite]
 *            [--budget-tokens N] [--budget-prefix-frac F] [--dense-tail N] [--dhsa-global N] [--dhsa-local N]
 *            [--chunk-min N] [--chunk-max N]
 *            [--chunk-threshold X] [--query-block N]
 *
 * stdout receives exactly the generated text, streamed as it is produced (no prompt echo, no final
 * newline). stderr receives the statistics: prompt token count, prefill and decode speed, the
 * session's planned bytes and the process's peak resident memory. Any failure prints
 * "generate: <status>: <detail>" on stderr and exits with status 1 (2 for a usage error).
 *
 * The prompt is tokenized as given: special-token text such as "<|im_start|>" becomes that token,
 * and BOS is added only if the model asks for it. --chat wraps the prompt as one ChatML user
 * message followed by the assistant header. --temp 0 (the default) is greedy decoding.
 * --ctx defaults to just what the run needs (prompt + N tokens); --ctx 0 means the model's context.
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
#include <time.h>

typedef struct {
    const char *model;
    const char *prompt;
    int32_t n_predict;
    uint32_t n_threads;
    float temp, top_p, min_p, repeat_penalty;
    int32_t top_k;
    uint64_t seed;
    int seed_set;
    uint32_t n_ctx;
    int ctx_set;
    uint64_t budget;
    uint32_t kv_bits;
    int chat;
    ea_session_params attn; /* only the attention fields are used */
} options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: generate -m MODEL -p PROMPT -n N [options]\n"
            "  -m MODEL            GGUF model file\n"
            "  -p PROMPT           prompt text (special-token text is parsed)\n"
            "  -n N                tokens to generate (>= 0)\n"
            "  -t THREADS          threads (0 = all cores; default 0)\n"
            "  --temp T            temperature (0 = greedy; default 0)\n"
            "  --top-k K           keep the K most likely tokens (0 = off; default 40)\n"
            "  --top-p P           nucleus probability in (0, 1] (1 = off; default 0.95)\n"
            "  --min-p P           minimum relative probability in [0, 1] (default 0.05)\n"
            "  --repeat-penalty R  repetition penalty > 0 (1 = off; default 1)\n"
            "  --seed S            random seed (unsigned 64-bit)\n"
            "  --ctx N             context tokens (0 = the model's; default prompt + N)\n"
            "  --budget BYTES      session memory budget in bytes (0 = no limit)\n"
            "  --kv-bits B         KV cache bits per element: 32, 16, 8 or 4 (default: the model's, 4 for converted files, else 16)\n"
            "  --chat              wrap the prompt as a ChatML user message\n"
            "  --attn POLICY       dense (default), lambda (sinks + window, unbounded stream) or dhsa (sparse)\n"
            "  --sinks S           lambda: first tokens kept (default 4)\n"
            "  --window W          lambda: latest tokens kept (default 1020)\n"
            "  --pos-mode MODE     lambda: streaming (StreamingLLM, default) or lm-infinite\n"
            "  --budget-tokens N   dhsa: keys per query block (default: half the context)\n"
            "  --budget-prefix-frac F dhsa: each query block reads this fraction of its prefix (0 = off)\n"
            "  --dense-tail N      dhsa: the prompt's last N tokens attend densely (default 64)\n"
            "  --dhsa-global N     dhsa: first tokens always kept (default 64)\n"
            "  --dhsa-local N      dhsa: recent tokens always kept (default 128)\n"
            "  --chunk-min N       dhsa: shortest key chunk (default 16)\n"
            "  --chunk-max N       dhsa: longest key chunk (default 64)\n"
            "  --chunk-threshold X dhsa: cosine similarity below which a key opens a chunk (default 0.8)\n"
            "  --query-block N     dhsa: prefill queries sharing one selection (default 32)\n");
}

static int bad_value(const char *opt, const char *val, const char *want) {
    fprintf(stderr, "generate: invalid value '%s' for %s (expected %s)\n", val ? val : "", opt,
            want);
    usage(stderr);
    return 0;
}

/* Returns 1 on success; prints the problem and the usage otherwise. */
static int parse_args(int argc, char **argv, options *o) {
    int have_n = 0;
    memset(o, 0, sizeof *o);
    ea_sampler_params d = ea_sampler_default_params();
    o->temp = 0.0f;
    o->top_k = d.top_k;
    o->top_p = d.top_p;
    o->min_p = d.min_p;
    o->repeat_penalty = d.repeat_penalty;
    o->seed = d.seed;
    o->attn = ea_session_default_params();

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long long v = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--chat") == 0) {
            o->chat = 1;
            continue;
        }
        /* every other option takes a value */
        static const char *const with_value[] = {"-m", "-p", "-n", "-t", "--temp", "--top-k",
                                                 "--top-p", "--min-p", "--repeat-penalty",
                                                 "--seed", "--ctx", "--budget", "--kv-bits",
                                                 "--attn", "--sinks", "--window", "--pos-mode",
                                                 "--budget-tokens", "--dhsa-global", "--dhsa-local",
                                                 "--chunk-min", "--chunk-max", "--chunk-threshold",
                                                 "--query-block", "--budget-prefix-frac", "--dense-tail"};
        int known = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
            if (strcmp(a, with_value[k]) == 0) known = 1;
        if (!known) {
            fprintf(stderr, "generate: unknown option '%s'\n", a);
            usage(stderr);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "generate: option %s needs a value\n", a);
            usage(stderr);
            return 0;
        }
        const char *val = argv[++i];
        if (strcmp(a, "-m") == 0) {
            o->model = val;
        } else if (strcmp(a, "-p") == 0) {
            o->prompt = val;
        } else if (strcmp(a, "-n") == 0) {
            if (!parse_int(val, 0, INT32_MAX, &v)) return bad_value(a, val, "an integer >= 0");
            o->n_predict = (int32_t)v;
            have_n = 1;
        } else if (strcmp(a, "-t") == 0) {
            if (!parse_int(val, 0, 4096, &v)) return bad_value(a, val, "an integer in [0, 4096]");
            o->n_threads = (uint32_t)v;
        } else if (strcmp(a, "--temp") == 0) {
            if (!parse_float(val, 0.0, 0, 100.0, 0, &o->temp))
                return bad_value(a, val, "a number in [0, 100]");
        } else if (strcmp(a, "--top-k") == 0) {
            if (!parse_int(val, 0, INT32_MAX, &v)) return bad_value(a, val, "an integer >= 0");
            o->top_k = (int32_t)v;
        } else if (strcmp(a, "--top-p") == 0) {
            if (!parse_float(val, 0.0, 1, 1.0, 0, &o->top_p))
                return bad_value(a, val, "a number in (0, 1]");
        } else if (strcmp(a, "--min-p") == 0) {
            if (!parse_float(val, 0.0, 0, 1.0, 0, &o->min_p))
                return bad_value(a, val, "a number in [0, 1]");
        } else if (strcmp(a, "--repeat-penalty") == 0) {
            if (!parse_float(val, 0.0, 1, 100.0, 0, &o->repeat_penalty))
                return bad_value(a, val, "a number in (0, 100]");
        } else if (strcmp(a, "--seed") == 0) {
            if (!parse_u64(val, &o->seed)) return bad_value(a, val, "an unsigned 64-bit integer");
            o->seed_set = 1;
        } else if (strcmp(a, "--ctx") == 0) {
            if (!parse_int(val, 0, INT32_MAX, &v)) return bad_value(a, val, "an integer >= 0");
            o->n_ctx = (uint32_t)v;
            o->ctx_set = 1;
        } else if (strcmp(a, "--budget") == 0) {
            if (!parse_u64(val, &o->budget)) return bad_value(a, val, "a byte count");
        } else if (strcmp(a, "--kv-bits") == 0) {
            if (!parse_int(val, 4, 32, &v) || (v != 4 && v != 8 && v != 16 && v != 32)) return bad_value(a, val, "32, 16, 8 or 4");
            o->kv_bits = (uint32_t)v;
        } else if (strcmp(a, "--attn") == 0) {
            if (strcmp(val, "dense") == 0) o->attn.attention = EA_ATTN_DENSE;
            else if (strcmp(val, "lambda") == 0) o->attn.attention = EA_ATTN_LAMBDA;
            else if (strcmp(val, "dhsa") == 0) o->attn.attention = EA_ATTN_DHSA;
            else return bad_value(a, val, "dense, lambda or dhsa");
        } else if (strcmp(a, "--pos-mode") == 0) {
            if (strcmp(val, "streaming") == 0) o->attn.attn_pos_mode = EA_POS_STREAMING;
            else if (strcmp(val, "lm-infinite") == 0) o->attn.attn_pos_mode = EA_POS_LM_INFINITE;
            else return bad_value(a, val, "streaming or lm-infinite");
        } else if (strcmp(a, "--chunk-threshold") == 0) {
            if (!parse_float(val, -1.0, 0, 1.0, 0, &o->attn.dhsa_chunk_threshold))
                return bad_value(a, val, "a number in [-1, 1]");
        } else if (strcmp(a, "--budget-prefix-frac") == 0) {
            if (!parse_float(val, 0.0, 0, 1.0, 0, &o->attn.dhsa_prefix_frac))
                return bad_value(a, val, "a number in [0, 1]");
        } else {
            /* the integer attention settings */
            static const char *const names[] = {"--sinks", "--window", "--budget-tokens", "--dhsa-global",
                                                "--dhsa-local", "--chunk-min", "--chunk-max", "--query-block",
                                                "--dense-tail"};
            uint32_t *const dst[] = {&o->attn.attn_sinks, &o->attn.attn_window, &o->attn.dhsa_budget,
                                     &o->attn.dhsa_global, &o->attn.dhsa_local, &o->attn.dhsa_chunk_min,
                                     &o->attn.dhsa_chunk_max, &o->attn.dhsa_query_block, &o->attn.dhsa_dense_tail};
            for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
                if (strcmp(a, names[k]) != 0) continue;
                if (!parse_int(val, 0, INT32_MAX, &v)) return bad_value(a, val, "an integer >= 0");
                *dst[k] = (uint32_t)v;
            }
        }
    }
    if (!o->model || !o->prompt || !have_n) {
        fprintf(stderr, "generate: -m, -p and -n are required\n");
        usage(stderr);
        return 0;
    }
    return 1;
}

/* ---- helpers -------------------------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Peak resident set size in kB from /proc/self/status (VmHWM), or -1. */
static long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            char *end = NULL;
            long v = strtol(line + 6, &end, 10);
            if (end != line + 6) kb = v;
            break;
        }
    }
    fclose(f);
    return kb;
}

static void fail(ea_status st, const char *what) {
    fprintf(stderr, "generate: %s: %s\n", ea_status_string(st), error_detail(what));
}

typedef struct {
    int32_t n;
    double t_first;
    int write_error;
} stream_state;

static int32_t on_token(ea_token token, const char *piece, size_t piece_len, void *user_data) {
    stream_state *ss = (stream_state *)user_data;
    (void)token;
    if (ss->n == 0) ss->t_first = now_s();
    ss->n++;
    if (piece_len > 0 && fwrite(piece, 1, piece_len, stdout) != piece_len) ss->write_error = 1;
    if (fflush(stdout) != 0) ss->write_error = 1;
    return ss->write_error ? 1 : 0;
}

/* Prefill ends when the first token arrives; every later token is one decode step. */
static void print_stats(size_t n_prompt, const stream_state *ss, double t0, double t_end,
                        int32_t n_generated, uint64_t planned, const ea_session *session) {
    double t_prefill = (ss->n > 0 ? ss->t_first : t_end) - t0;
    double t_decode = ss->n > 0 ? t_end - ss->t_first : 0.0;
    int32_t n_decode = ss->n > 1 ? ss->n - 1 : 0;
    long rss = peak_rss_kb();
    fprintf(stderr, "\n");
    fprintf(stderr, "generate: prompt tokens: %zu\n", n_prompt);
    fprintf(stderr, "generate: prefill: %zu tokens in %.3f s, %.2f tokens/s\n", n_prompt,
            t_prefill, t_prefill > 0 ? (double)n_prompt / t_prefill : 0.0);
    fprintf(stderr, "generate: decode: %d tokens in %.3f s, %.2f tokens/s (%d generated)\n",
            (int)n_decode, t_decode, t_decode > 0 ? (double)n_decode / t_decode : 0.0,
            (int)n_generated);
    fprintf(stderr, "generate: planned session bytes: %llu (n_ctx %d, allocated %llu)\n",
            (unsigned long long)planned, (int)ea_session_n_ctx(session),
            (unsigned long long)ea_session_allocated_bytes(session));
    if (rss >= 0)
        fprintf(stderr, "generate: peak RSS: %ld kB\n", rss);
    else
        fprintf(stderr, "generate: peak RSS: unknown\n");
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    options o;
    ea_model *model = NULL;
    ea_session *session = NULL;
    ea_sampler *sampler = NULL;
    char *chat_text = NULL;
    ea_token *tokens = NULL;
    const char *text = NULL;
    size_t text_len = 0, cap = 0, n_prompt = 0;
    ea_session_params sp;
    ea_sampler_params smp;
    uint64_t planned = 0;
    int32_t model_ctx = 0, n_predict = 0, n_generated = 0;
    uint32_t n_ctx = 0;
    stream_state ss = {0, 0.0, 0};
    double t0 = 0, t_end = 0;
    int rc = 1;
    ea_status st;

    if (ea_version() != EA_VERSION_NUMBER) {
        fprintf(stderr, "generate: libedgeattn version %u does not match the header's %u\n",
                (unsigned)ea_version(), (unsigned)EA_VERSION_NUMBER);
        return 1;
    }
    if (!parse_args(argc, argv, &o)) return 2;

    st = ea_model_load(o.model, NULL, &model);
    if (st != EA_OK) {
        fail(st, ea_last_error());
        goto done;
    }

    /* the text to tokenize: the prompt, or the prompt as one ChatML user turn */
    text = o.prompt;
    text_len = strlen(o.prompt);
    if (o.chat) {
        const char *roles[1] = {"user"}, *contents[1] = {o.prompt};
        char probe[1];
        size_t need = 0;
        st = ea_chat_format(model, roles, contents, 1, 1, probe, sizeof probe, &need);
        if (st != EA_OK && st != EA_ERR_BUFFER_TOO_SMALL) {
            fail(st, ea_model_last_error(model));
            goto done;
        }
        chat_text = (char *)malloc(need + 1);
        if (!chat_text) {
            fail(EA_ERR_OUT_OF_MEMORY, "cannot allocate the chat text");
            goto done;
        }
        st = ea_chat_format(model, roles, contents, 1, 1, chat_text, need + 1, &need);
        if (st != EA_OK) {
            fail(st, ea_model_last_error(model));
            goto done;
        }
        text = chat_text;
        text_len = need;
    }

    /* tokens: at most one per byte plus BOS; ask again if the library says otherwise */
    cap = text_len + 2;
    tokens = (ea_token *)malloc(cap * sizeof *tokens);
    if (!tokens) {
        fail(EA_ERR_OUT_OF_MEMORY, "cannot allocate the prompt tokens");
        goto done;
    }
    st = ea_tokenize(model, text, text_len, 1, 1, tokens, cap, &n_prompt);
    if (st == EA_ERR_BUFFER_TOO_SMALL) {
        ea_token *bigger = (ea_token *)realloc(tokens, n_prompt * sizeof *tokens);
        if (!bigger) {
            fail(EA_ERR_OUT_OF_MEMORY, "cannot allocate the prompt tokens");
            goto done;
        }
        tokens = bigger;
        cap = n_prompt;
        st = ea_tokenize(model, text, text_len, 1, 1, tokens, cap, &n_prompt);
    }
    if (st != EA_OK) {
        fail(st, ea_model_last_error(model));
        goto done;
    }
    if (n_prompt == 0) {
        fprintf(stderr, "generate: the prompt is empty\n");
        rc = 2;
        goto done;
    }

    /* session: just the context this run needs, unless --ctx says otherwise */
    sp = ea_session_default_params();
    model_ctx = ea_model_context_length(model);
    if (o.ctx_set) {
        sp.n_ctx = o.n_ctx;
    } else {
        uint64_t want = (uint64_t)n_prompt + (uint64_t)o.n_predict;
        if (want < 1) want = 1;
        sp.n_ctx = (model_ctx > 0 && want > (uint64_t)model_ctx) ? (uint32_t)model_ctx
                                                                   : (uint32_t)want;
    }
    sp.n_threads = o.n_threads;
    sp.memory_budget = o.budget;
    if (o.kv_bits) sp.kv_bits = o.kv_bits;
    sp.attention = o.attn.attention;
    sp.attn_sinks = o.attn.attn_sinks;
    sp.attn_window = o.attn.attn_window;
    sp.attn_pos_mode = o.attn.attn_pos_mode;
    sp.dhsa_budget = o.attn.dhsa_budget;
    sp.dhsa_global = o.attn.dhsa_global;
    sp.dhsa_local = o.attn.dhsa_local;
    sp.dhsa_chunk_min = o.attn.dhsa_chunk_min;
    sp.dhsa_chunk_max = o.attn.dhsa_chunk_max;
    sp.dhsa_chunk_threshold = o.attn.dhsa_chunk_threshold;
    sp.dhsa_query_block = o.attn.dhsa_query_block;
    sp.dhsa_prefix_frac = o.attn.dhsa_prefix_frac;
    sp.dhsa_dense_tail = o.attn.dhsa_dense_tail;
    n_ctx = sp.n_ctx ? sp.n_ctx : (uint32_t)(model_ctx > 0 ? model_ctx : 0);
    n_predict = o.n_predict;
    /* a Λ session has no context limit */
    if (sp.attention != EA_ATTN_LAMBDA && n_prompt < n_ctx && (uint64_t)n_prompt + (uint64_t)n_predict > n_ctx) {
        n_predict = (int32_t)(n_ctx - n_prompt);
        fprintf(stderr, "generate: only %d tokens fit the context of %u after the prompt\n",
                (int)n_predict, (unsigned)n_ctx);
    }

    st = ea_estimate_session_bytes(model, &sp, &planned);
    if (st != EA_OK) {
        fail(st, ea_last_error());
        goto done;
    }
    st = ea_session_create(model, &sp, &session);
    if (st != EA_OK) {
        fail(st, ea_last_error());
        goto done;
    }

    smp = ea_sampler_default_params();
    smp.temperature = o.temp;
    smp.top_k = o.top_k;
    smp.top_p = o.top_p;
    smp.min_p = o.min_p;
    smp.repeat_penalty = o.repeat_penalty;
    smp.seed = o.seed;
    st = ea_sampler_create(model, &smp, &sampler);
    if (st != EA_OK) {
        fail(st, ea_last_error());
        goto done;
    }

    t0 = now_s();
    st = ea_generate(session, sampler, tokens, n_prompt, n_predict, on_token, &ss, NULL,
                     &n_generated);
    t_end = now_s();
    if (st != EA_OK) {
        fail(st, ea_session_last_error(session));
        goto done;
    }
    if (ss.write_error) {
        fprintf(stderr, "generate: cannot write the output: %s\n", strerror(errno));
        goto done;
    }

    print_stats(n_prompt, &ss, t0, t_end, n_generated, planned, session);
    rc = 0;

done:
    ea_sampler_free(sampler);
    ea_session_free(session);
    ea_model_free(model);
    free(tokens);
    free(chat_text);
    return rc;
}
