/*
 * edgeattn.h - public C API of libedgeattn, a runtime for compressed language and sequence models on
 * ARM Linux boards.
 *
 * C99, freestanding-safe (only <stdint.h>, <stddef.h>). Link: libedgeattn.a, libm and the OpenMP
 * runtime (libgomp or libomp). No Swift runtime is needed.
 *
 * Conventions
 * - Every function that can fail returns an ea_status (EA_OK == 0). ea_status_string() names a
 *   status; ea_model_last_error() / ea_session_last_error() give the detail of the last failure on
 *   that handle (which tensor, which offset); ea_last_error() gives the calling thread's last failure,
 *   for calls that have no handle yet (ea_model_load).
 * - Handles are opaque. Free functions accept NULL. A pointer returned by the library is owned by the
 *   library unless the function says otherwise, and stays valid as long as stated.
 * - *_params structs start with a `size` field: always initialise them with *_default_params(), then
 *   change fields. The library reads only the fields that existed when `size` was set.
 * - One model may be shared by many sessions on different threads (it is read-only after load). A
 *   session (and a sampler) is used by one thread at a time.
 * - Using a handle after its ea_*_free is undefined behaviour. The debug build of the library
 *   (cross/build-lib.sh sanitize) quarantines freed handles instead, so such a call returns
 *   EA_ERR_INVALID_ARGUMENT saying the handle was freed, and a second free does nothing.
 * - Memory: ea_estimate_session_bytes() returns, before anything is allocated, the session's
 *   planned bytes: its buffers, exactly, plus a fixed reserve for its bookkeeping tables, so that
 *   everything a session holds is within the estimate; ea_session_create() refuses with EA_ERR_BUDGET when that exceeds
 *   the caller's budget (or, with auto_fit, shrinks the session until it fits). Decoding a token
 *   allocates nothing (see docs/c-api.md, "Guarantees").
 */
#ifndef EDGEATTN_H
#define EDGEATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Version ---------------------------------------------------------------------------------- */
#define EA_VERSION_MAJOR 0
#define EA_VERSION_MINOR 4
#define EA_VERSION_PATCH 0
/* EA_VERSION_NUMBER == MAJOR*10000 + MINOR*100 + PATCH: compare with ea_version() at run time to
 * check that the header and the linked library agree. */
#define EA_VERSION_NUMBER (EA_VERSION_MAJOR * 10000 + EA_VERSION_MINOR * 100 + EA_VERSION_PATCH)

/* Returns the library's EA_VERSION_NUMBER. */
uint32_t ea_version(void);

/* ---- Threads ---------------------------------------------------------------------------------- */
/* Process-wide limit on the OpenMP threads all sessions' kernels hold at once; 0 restores the
 * default, the number of online cores. A session evaluating a batch takes up to its n_threads from
 * what is free and returns them when the batch is done; when fewer than two are free it runs on its
 * calling thread alone (never waits). So sessions running concurrently never oversubscribe the
 * cores through OpenMP, whatever their n_threads. Results do not depend on the team a call got
 * (bit for bit). Thread-safe; takes effect at the next batch. */
void ea_set_thread_limit(uint32_t max_threads);
/* The limit in effect (the core count when none was set). */
uint32_t ea_get_thread_limit(void);
/* Most threads the process had inside the library's parallel kernels at once since the last call
 * with reset != 0 (which also clears it): measured by each team as it starts, for tests and tuning. */
uint32_t ea_thread_peak(int32_t reset);

/* ---- Status ----------------------------------------------------------------------------------- */
/* Stable values: new codes are only ever appended. */
typedef int32_t ea_status;
enum {
    EA_OK = 0,
    EA_ERR_INVALID_ARGUMENT = 1,  /* NULL pointer, bad params struct, value out of its range      */
    EA_ERR_IO = 2,                /* file cannot be opened, read, mapped or written              */
    EA_ERR_BAD_MAGIC = 3,         /* not a GGUF file                                              */
    EA_ERR_UNSUPPORTED_VERSION = 4, /* GGUF version other than 2 or 3                             */
    EA_ERR_TRUNCATED = 5,         /* file ends inside a header, a metadata value or tensor data    */
    EA_ERR_CORRUPT = 6,           /* impossible counts, lengths, offsets, alignment or overlaps    */
    EA_ERR_UNSUPPORTED_TYPE = 7,  /* tensor or metadata type this library does not know            */
    EA_ERR_UNSUPPORTED_ARCH = 8,  /* model architecture this library cannot run                    */
    EA_ERR_MISSING_TENSOR = 9,    /* a tensor the architecture needs is absent                     */
    EA_ERR_SHAPE = 10,            /* a tensor has the wrong shape for the model's hyperparameters  */
    EA_ERR_METADATA = 11,         /* a required metadata key is absent or has the wrong type       */
    EA_ERR_BUDGET = 12,           /* the session does not fit the caller's memory budget          */
    EA_ERR_OUT_OF_MEMORY = 13,    /* the system allocator refused                                  */
    EA_ERR_TOKEN_RANGE = 14,      /* a token id outside [0, vocab size)                            */
    EA_ERR_CONTEXT_FULL = 15,     /* the tokens would not fit the session's context                */
    EA_ERR_BUFFER_TOO_SMALL = 16, /* an output buffer is too small; the size needed is returned   */
    EA_ERR_ABORTED = 17,          /* the caller's abort flag or callback stopped the call         */
    EA_ERR_TOKENIZER = 18,        /* tokenizer metadata is missing or inconsistent                 */
    EA_ERR_KERNEL_MISMATCH = 19,  /* ea_self_test: a SIMD kernel disagrees with the generic C one  */
    EA_ERR_STATE_MISMATCH = 20,   /* a state snapshot made by another model or session configuration */
    EA_ERR_MODEL_KIND = 21        /* a text call on a series model, or a series call on a text model */
};

/* A static, human-readable name for a status ("EA_ERR_TRUNCATED: file is truncated").
 * Never NULL; unknown values give "unknown status". */
const char *ea_status_string(ea_status status);

/* The calling thread's last error message (set by every failing call, including ea_model_load).
 * Owned by the library; valid until the next failing call on the same thread. Never NULL ("" when
 * there was none). */
const char *ea_last_error(void);

/* Board bring-up check: runs the integer kernels this CPU dispatches to (AVX2, NEON or NEON dotprod)
 * against the generic C kernels on deterministic random data (W2 and 8-bit weights, ragged block
 * counts). Returns EA_OK when every result is bit-identical, else EA_ERR_KERNEL_MISMATCH. A one-line
 * report is copied to report (may be NULL; truncated to report_size - 1 bytes). Thread-safe;
 * allocates nothing. */
ea_status ea_self_test(char *report, size_t report_size);

/* ---- Types ------------------------------------------------------------------------------------ */
typedef struct ea_model ea_model;     /* weights, hyperparameters and tokenizer; read-only after load */
typedef struct ea_session ea_session; /* one conversation: KV cache, scratch, logits                  */
typedef struct ea_sampler ea_sampler; /* sampling chain and its random state                          */
typedef int32_t ea_token;

/* ---- Model ------------------------------------------------------------------------------------ */
typedef struct ea_model_params {
    uint32_t size;        /* sizeof(ea_model_params); set by ea_model_default_params()          */
    uint32_t use_mmap;    /* 1 (default): map the file (private, copy on write: the file is never
                           * written; W2 matrices are reordered in place at load into the panel
                           * layout, so their pages become this process's own, as with 0);
                           * 0: read the whole file into memory                                   */
    uint32_t validate_data; /* 1: also scan every float tensor for NaN/Inf at load (slower); default 0 */
    uint32_t reserved;
} ea_model_params;

/* Defaults: use_mmap = 1, validate_data = 0. */
ea_model_params ea_model_default_params(void);

/* Loads a GGUF model. On success *out_model receives a new model (free with ea_model_free) and
 * EA_OK is returned. On failure *out_model is set to NULL, the status says what kind of problem it
 * is and ea_last_error() says where (key, tensor name, file offset). params may be NULL (defaults).
 * Every offset, count, length and shape in the file is validated before use. */
ea_status ea_model_load(const char *path, const ea_model_params *params, ea_model **out_model);

/* Layer kinds (docs/recurrent.md): softmax attention over a KV cache, Aaren's softmax RNN
 * with a learned query, decayed linear attention. The last two keep a constant state. */
typedef enum ea_layer_kind { EA_LAYER_SOFTMAX = 0, EA_LAYER_AAREN = 1, EA_LAYER_LINEAR = 2 } ea_layer_kind;

/* ea_layer_kind of a layer; -1 for a NULL model or a layer out of range. */
int32_t ea_model_layer_kind(const ea_model *model, int32_t layer);
/* Series models (numbers in, forecasts out: edgeattn.series.* metadata) return the numbers
 * predicted per sample (>= 1); text models return 0. Text calls (ea_tokenize, ea_token_to_text,
 * ea_chat_format, ea_sampler_create, ea_session_prefill/decode) on a series model, and
 * ea_session_eval_series on a text model, return EA_ERR_MODEL_KIND. */
int32_t ea_model_series_outputs(const ea_model *model);

/* Frees a model. NULL is ignored. All sessions of the model must be freed first. */
void ea_model_free(ea_model *model);

/* Model facts. All return 0 / "" for a NULL model. */
int32_t ea_model_vocab_size(const ea_model *model);     /* 0 for series models                  */
int32_t ea_model_context_length(const ea_model *model); /* training context, from metadata */
int32_t ea_model_n_layers(const ea_model *model);
int32_t ea_model_n_embd(const ea_model *model);
/* "llama", "gemma3", ... Owned by the model, valid until ea_model_free. */
const char *ea_model_architecture(const ea_model *model);
/* Bytes the model itself holds outside the mapped file (tokenizer tables, repacked weights), and the
 * size of the mapped file. */
uint64_t ea_model_resident_bytes(const ea_model *model);
uint64_t ea_model_file_bytes(const ea_model *model);
/* Last error text for this model (e.g. from ea_tokenize). Owned by the model. Never NULL. */
const char *ea_model_last_error(const ea_model *model);

/* ---- Tokenizer -------------------------------------------------------------------------------- */
/* Tokenizes `text` (text_len bytes, UTF-8; need not be NUL-terminated). With parse_special != 0 the
 * text of special tokens (e.g. "<|im_start|>") becomes that token; otherwise it is tokenized as
 * plain text. add_bos != 0 prepends BOS when the model asks for it (tokenizer.ggml.add_bos_token).
 * Writes at most max_tokens ids to `tokens` and the count to *n_tokens. If max_tokens is too small,
 * returns EA_ERR_BUFFER_TOO_SMALL with *n_tokens set to the count needed (tokens may be NULL then). */
ea_status ea_tokenize(const ea_model *model, const char *text, size_t text_len, int32_t add_bos,
                      int32_t parse_special, ea_token *tokens, size_t max_tokens, size_t *n_tokens);

/* Writes the bytes of one token (special tokens give their text) to buf, no NUL added, and the byte
 * count to *n_bytes. A token may hold part of a UTF-8 character: concatenate pieces before
 * displaying. EA_ERR_BUFFER_TOO_SMALL sets *n_bytes to the size needed. */
ea_status ea_token_to_text(const ea_model *model, ea_token token, char *buf, size_t buf_size,
                           size_t *n_bytes);

/* Special tokens: -1 when the model has none (or model is NULL). ea_token_is_eog: end of generation
 * (EOS, EOT, <|im_end|>, ...); 0 for a NULL model. */
ea_token ea_token_bos(const ea_model *model);
ea_token ea_token_eos(const ea_model *model);
int32_t ea_token_is_eog(const ea_model *model, ea_token token);

/* Formats a chat in the model's format: ChatML (<|im_start|>role\ncontent<|im_end|>\n ..., then
 * "<|im_start|>assistant\n" when add_assistant != 0), or Gemma's turns when the vocabulary has
 * <start_of_turn> (<start_of_turn>user\n...<end_of_turn>\n, then "<start_of_turn>model\n"; a system
 * message is prepended to the first user turn). roles/contents are n_messages NUL-terminated
 * strings. Writes a NUL-terminated string to buf; *n_bytes receives its length without the NUL.
 * EA_ERR_BUFFER_TOO_SMALL sets *n_bytes to the length needed (allocate *n_bytes + 1). */
ea_status ea_chat_format(const ea_model *model, const char *const *roles,
                         const char *const *contents, size_t n_messages, int32_t add_assistant,
                         char *buf, size_t buf_size, size_t *n_bytes);

/* ---- Session ---------------------------------------------------------------------------------- */
/* Attention policies (docs/attention.md): which cached keys each query reads. */
typedef enum ea_attention {
    EA_ATTN_DENSE = 0,  /* every earlier key (the model's own sliding window on local layers)      */
    EA_ATTN_LAMBDA = 1, /* Λ-shaped: attn_sinks first tokens + the attn_window latest; the cache is a
                           ring of attn_sinks + attn_window + n_batch - 1 slots per layer, so memory
                           and per-token time stay flat; a session whose layers are all Λ has no
                           context limit (n_ctx is ignored)                                       */
    EA_ATTN_DHSA = 2    /* dynamic hierarchical sparse attention: keys in variable chunks, each
                           query block reads dhsa_budget keys (first, local and best chunks)       */
} ea_attention;

/* Where Λ layers place the sinks once the stream outgrows the window. */
typedef enum ea_position_mode {
    EA_POS_STREAMING = 0,  /* StreamingLLM: positions are cache slots (sink distance <= S + W - 1) */
    EA_POS_LM_INFINITE = 1 /* LM-Infinite: true positions, sink distance capped at n_ctx_train    */
} ea_position_mode;

typedef struct ea_session_params {
    uint32_t size;          /* sizeof(ea_session_params)                                          */
    uint32_t n_ctx;         /* tokens the KV cache holds; 0 = the model's training context         */
    uint32_t n_batch;       /* tokens evaluated together in prefill (scratch scales with it); 32  */
    uint32_t n_threads;     /* OpenMP threads for this session's kernels; 0 = all cores. At most:
                               teams come from the process-wide limit (ea_set_thread_limit). 1
                               never starts an OpenMP team                                         */
    uint64_t memory_budget; /* bytes the session may allocate; 0 = no limit                         */
    uint32_t kv_bits;       /* bits per cached key/value element: 32 (float), 16 (IEEE half), 8 or 4
                               (quantized, KIVI-style: keys per channel over kv_group tokens, values
                               per token over kv_group channels); 0 = the model's default: 4 for
                               files from `edgeattn convert`, else 16                              */
    uint32_t kv_group;      /* KV8/KV4 group (tokens for keys, channels for values); must divide the
                               head dimension; 0 = 32 (or the largest even divisor
                               of the head dimension below 32)                                    */
    uint32_t kv_sinks;      /* KV8/KV4: the first max(kv_sinks, attn_sinks of Λ layers) positions
                               are kept exact; default 4                                           */
    uint32_t attention;     /* ea_attention of every layer not set by layer_attention; default dense */
    uint32_t attn_sinks;    /* Λ: sink tokens; default 4                                            */
    uint32_t attn_window;   /* Λ: latest tokens attended (the query included); default 1020         */
    uint32_t attn_pos_mode; /* Λ: ea_position_mode; default EA_POS_STREAMING                        */
    uint32_t dhsa_budget;   /* DHSA: keys per query block, global + local included; 0 = n_ctx / 2
                               (with dhsa_prefix_frac: the cap, 0 = none); must be >= dhsa_global +
                               dhsa_local + dhsa_query_block                                       */
    uint32_t dhsa_global;   /* DHSA: first tokens always kept; default 64                          */
    uint32_t dhsa_local;    /* DHSA: recent tokens always kept before the query block; default 128  */
    uint32_t dhsa_chunk_min;/* DHSA chunking: shortest chunk; default 16                           */
    uint32_t dhsa_chunk_max;/* DHSA chunking: longest chunk; default 64                            */
    float dhsa_chunk_threshold; /* DHSA chunking: cosine below which a key opens a new chunk; 0.8  */
    uint32_t dhsa_query_block;  /* DHSA: prefill queries sharing one selection; default 32         */
    uint32_t n_layer_attention; /* entries in layer_attention (<= the model's layer count)        */
    const uint8_t *layer_attention; /* NULL, or per-layer ea_attention values for layers
                               0..n_layer_attention-1 (read during create only; caller keeps it)   */
    uint32_t auto_fit;      /* non-zero: when the session exceeds memory_budget (or workspace_size),
                               shrink it instead of failing: kv_bits (to 8, then 4), then n_batch
                               (halved to 1), then n_ctx (dense/DHSA) or attn_window (Λ-only), the
                               largest that fits; ea_session_get_params reports the choice.
                               EA_ERR_BUDGET if even n_ctx/window 16 does not fit. Default 0      */
    void *workspace;        /* NULL, or caller memory for the whole session: 64-byte aligned,
                               workspace_size >= the estimate (else EA_ERR_BUDGET). Create, use
                               and free of the session then call no allocator at all (its buffers
                               and its bookkeeping both live in the workspace). The caller keeps it
                               alive until ea_session_free and frees it after. Default NULL        */
    uint64_t workspace_size;/* bytes at workspace                                                  */
    /* since 0.4 (callers built against 0.3 or 0.2 get the defaults below)                         */
    float dhsa_prefix_frac; /* DHSA: > 0: a query block that may see A keys reads
                               ceil(dhsa_prefix_frac * A) of them, at least dhsa_global + dhsa_local +
                               dhsa_query_block and at most dhsa_budget (0 there: no cap), so the
                               saving is the same fraction at every position; 0: every block reads
                               dhsa_budget. In [0, 1]; default 0                                  */
    uint32_t dhsa_dense_tail; /* DHSA: the query blocks holding the last dhsa_dense_tail tokens of
                               every multi-token ea_session_prefill call (a prompt's instruction)
                               attend densely; single-token decode stays sparse. Default 64      */
    uint32_t dhsa_score;    /* DHSA: ea_dhsa_score, how the query heads sharing a kv head score a
                               chunk; default EA_DHSA_SCORE_MAX                                   */
} ea_session_params;

/* DHSA chunk scoring over the query heads that share a kv head (GQA). */
typedef enum ea_dhsa_score {
    EA_DHSA_SCORE_MAX = 0, /* the largest head's score: a chunk one head needs is kept          */
    EA_DHSA_SCORE_SUM = 1  /* the summed query's score (the heads vote)                          */
} ea_dhsa_score;

/* Defaults: n_ctx = 0 (model's context), n_batch = 32, n_threads = 0, memory_budget = 0,
 * kv_bits = 0 (model default), kv_group = 0 (32), kv_sinks = 4, attention = EA_ATTN_DENSE,
 * attn_sinks = 4, attn_window = 1020, attn_pos_mode = EA_POS_STREAMING, dhsa_budget = 0,
 * dhsa_global = 64, dhsa_local = 128, dhsa_chunk_min = 16, dhsa_chunk_max = 64,
 * dhsa_chunk_threshold = 0.8, dhsa_query_block = 32, no per-layer overrides, auto_fit = 0, no
 * workspace, dhsa_prefix_frac = 0, dhsa_dense_tail = 64, dhsa_score = EA_DHSA_SCORE_MAX. */
ea_session_params ea_session_default_params(void);

/* The bytes a session with these params holds, computed by the same planner that allocates: its
 * buffers (KV cache, scratch, logits) exactly, plus the reserve its bookkeeping tables live in
 * (16 KiB + 512 B per layer). This is the workspace size to give. Returns EA_OK and writes
 * *out_bytes, or an error for bad params. */
ea_status ea_estimate_session_bytes(const ea_model *model, const ea_session_params *params,
                                    uint64_t *out_bytes);

/* Creates a session. Fails with EA_ERR_BUDGET (ea_last_error names the planned bytes and the
 * budget) when params->memory_budget != 0 and the plan exceeds it; all memory is allocated here and
 * never again. *out_session is NULL on failure. params may be NULL (defaults). */
ea_status ea_session_create(const ea_model *model, const ea_session_params *params,
                            ea_session **out_session);

/* Frees a session. NULL is ignored. */
void ea_session_free(ea_session *session);

/* The parameters the session runs with: the caller's, or what auto_fit chose (n_ctx, n_batch,
 * kv_bits, attn_window, dhsa_budget as planned; layer_attention is returned as given). */
ea_status ea_session_get_params(const ea_session *session, ea_session_params *out_params);
/* The session's planned bytes: its buffers plus a reserve for its bookkeeping (equals the
 * estimate; all the memory the session holds is within it, inside the workspace if one was given). */
uint64_t ea_session_allocated_bytes(const ea_session *session);
/* Positions evaluated so far (tokens or series samples); saturates at INT32_MAX for the endless
 * streams of recurrent-only sessions. */
int32_t ea_session_n_past(const ea_session *session);
/* Positions this session can hold: n_ctx, or INT32_MAX for a session whose softmax layers are all Λ
 * (or that has none: recurrent-only streams never fill up). */
int32_t ea_session_n_ctx(const ea_session *session);
/* Empties the KV cache and recurrent state (keeps the memory). NULL is ignored. */
void ea_session_reset(ea_session *session);
/* Last error text for this session. Owned by the session. Never NULL. */
const char *ea_session_last_error(const ea_session *session);

/* Appends n_tokens tokens to the cache, in batches of n_batch, and computes the logits of the last
 * one. Fails with EA_ERR_TOKEN_RANGE for an id out of range and EA_ERR_CONTEXT_FULL when the tokens
 * do not fit; both are checked first, so nothing is appended then. n_tokens == 0 does nothing. */
ea_status ea_session_prefill(ea_session *session, const ea_token *tokens, size_t n_tokens);

/* Appends one token and computes its logits. *out_logits (may be NULL) receives a pointer to
 * vocab-size floats owned by the session, valid until the next call on the session. */
ea_status ea_session_decode(ea_session *session, ea_token token, const float **out_logits);

/* The logits of the last evaluated token (vocab-size floats, owned by the session), or NULL if none
 * has been evaluated since creation or reset. */
const float *ea_session_logits(const ea_session *session);

/* Series models: feeds n samples (one number each) and writes, for every sample, the forecast of
 * what follows: n x ea_model_series_outputs() floats into out (out_len = its capacity in floats;
 * EA_ERR_BUFFER_TOO_SMALL if short). Samples must be finite (else EA_ERR_INVALID_ARGUMENT). Costs
 * the same per sample however long the stream when every layer is recurrent (or Λ). Nothing is
 * changed when it fails. n = 0 does nothing. */
ea_status ea_session_eval_series(ea_session *session, const float *samples, size_t n, float *out,
                                 size_t out_len);

/* State snapshots: everything the session has accumulated (KV caches, recurrent states, series lags,
 * position, the last logits) as a byte string that ea_session_state_load restores into a session
 * created from the same model file with the same params, in this or another process. The size is
 * fixed per session: constant for recurrent and Λ sessions, n_ctx-sized for dense ones. */
/* Bytes a snapshot of this session takes (0 for NULL). */
size_t ea_session_state_size(const ea_session *session);
/* Writes the snapshot into buf (caller-owned, buf_size bytes); *written (may be NULL) receives the
 * bytes written, or on EA_ERR_BUFFER_TOO_SMALL the size needed. */
ea_status ea_session_state_save(const ea_session *session, void *buf, size_t buf_size, size_t *written);
/* Restores a snapshot. EA_ERR_BAD_MAGIC: not a snapshot; EA_ERR_STATE_MISMATCH: made by another
 * model or session configuration; EA_ERR_TRUNCATED: wrong size; EA_ERR_CORRUPT: checksum or
 * fields damaged. On error the session is unchanged. */
ea_status ea_session_state_load(ea_session *session, const void *buf, size_t buf_size);

/* ---- Sampler ---------------------------------------------------------------------------------- */
typedef struct ea_sampler_params {
    uint32_t size;             /* sizeof(ea_sampler_params)                                     */
    float temperature;         /* <= 0: greedy (argmax); default 0                                */
    int32_t top_k;             /* keep the k most likely (0 = off); default 40                   */
    float top_p;               /* nucleus: smallest set with probability >= p (1 = off); 0.95    */
    float min_p;               /* drop tokens below min_p * p(max) (0 = off); default 0.05        */
    float repeat_penalty;      /* llama.cpp style on the last repeat_last_n tokens (1 = off); 1   */
    int32_t repeat_last_n;     /* window of the penalty; default 64                              */
    uint64_t seed;             /* random seed; default 0x5eed                                    */
} ea_sampler_params;

/* Defaults as documented on each field. */
ea_sampler_params ea_sampler_default_params(void);

/* Creates a sampler for the model's vocabulary (allocates its scratch once). */
ea_status ea_sampler_create(const ea_model *model, const ea_sampler_params *params,
                            ea_sampler **out_sampler);
/* Frees a sampler. NULL is ignored. */
void ea_sampler_free(ea_sampler *sampler);
/* Picks a token from vocab-size logits (not modified) and records it for the repetition penalty. */
ea_status ea_sampler_sample(ea_sampler *sampler, const float *logits, ea_token *out_token);
/* Records a token (e.g. the prompt) for the repetition penalty without sampling. NULL is ignored. */
void ea_sampler_accept(ea_sampler *sampler, ea_token token);

/* ---- Generation ------------------------------------------------------------------------------- */
/* Called once per generated token with its bytes (see ea_token_to_text). Return 0 to continue,
 * non-zero to stop (ea_generate then returns EA_OK). */
typedef int32_t (*ea_token_callback)(ea_token token, const char *piece, size_t piece_len,
                                     void *user_data);

/* Prefills `prompt`, then samples up to n_predict tokens, streaming each to `callback` (may be
 * NULL), stopping early at an end-of-generation token (neither streamed, counted nor evaluated). The
 * sampler sees the prompt for its repetition penalty. Every streamed token is evaluated into the
 * cache (including the one whose callback asked to stop), so afterwards n_past = previous n_past +
 * n_prompt + *n_generated and a later call continues the text. With n_prompt == 0 generation
 * continues from the last evaluated token. abort_flag (may be NULL) is read between prefill batches
 * and before each token: when non-zero the call returns EA_ERR_ABORTED. *n_generated (may be NULL)
 * receives the count of tokens streamed, also on failure. Fails with EA_ERR_CONTEXT_FULL when the
 * context fills up (tokens streamed so far stay in the cache). */
ea_status ea_generate(ea_session *session, ea_sampler *sampler, const ea_token *prompt,
                      size_t n_prompt, int32_t n_predict, ea_token_callback callback,
                      void *user_data, const volatile int32_t *abort_flag, int32_t *n_generated);

#ifdef __cplusplus
}
#endif
#endif /* EDGEATTN_H */
