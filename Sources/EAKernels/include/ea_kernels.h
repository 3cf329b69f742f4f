/*
 * ea_kernels.h - the C leaf kernels of libedgeattn and the few platform calls the Swift core needs.
 *
 * Contract: every function here is a leaf. It takes plain pointers and sizes, never allocates (except
 * eak_alloc / eak_map_file, which exist to allocate), never decides policy, and is safe to call from
 * several threads on disjoint outputs. The Swift core validates all sizes before calling.
 *
 * This header must stay freestanding (stdint/stddef only): Swift imports it for aarch64-none-none-elf,
 * where the importer has no libc headers.
 */
#ifndef EA_KERNELS_H
#define EA_KERNELS_H
#include <stddef.h>
#include <stdint.h>
#include "../../../include/edgeattn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Platform --------------------------------------------------------------------------------- */
/* Maps (copy on write: writes stay in this process) or reads (use_mmap == 0) a whole file; the file is never modified. Returns NULL and sets *err_no on failure.
 * *out_size receives the file size. Release with eak_unmap_file(ptr, size, use_mmap). */
const void *eak_map_file(const char *path, int use_mmap, uint64_t *out_size, int *err_no);
void eak_unmap_file(const void *ptr, uint64_t size, int use_mmap);
/* 64-byte aligned allocation (posix_memalign); NULL on failure. eak_free(NULL) is fine. */
void *eak_alloc(uint64_t size);
void eak_free(void *ptr);
/* The Swift core's allocator in the C library (coreheap.c): cross/build-lib.sh renames the core's
 * posix_memalign/free to these. While a region is open on the calling thread, the core's blocks
 * come from it (top down to the floor); a full region hands out heap blocks and reports overflow
 * at eak_region_end (non-zero). eak_region_used: bytes below the region's top handed out so far. */
int eak_core_memalign(void **out, size_t align, size_t size);
void eak_core_free(void *p);
void eak_region_begin(void *base, uint64_t size);
int eak_region_set_floor(void *floor); /* -1: blocks already lie below it (reserve too small) */
uint64_t eak_region_used(void);
int eak_region_end(void);
/* Gives back everything allocated since the mark (NULL when no region is open). Only for work
 * whose every object is gone by then: a call that returns a plain value. */
void *eak_region_mark(void);
void eak_region_release(void *mark);
/* Process-wide kernel thread limit (platform.c): acquire takes up to `want` slots (returns the team
 * size, or 0 when fewer than 2 are free: run on the calling thread), release gives them back.
 * Limit <= 0 means the online core count. A parallel region's master calls eak_team_enter with the
 * team size as it starts, every member eak_team_leave(1) as it ends; eak_team_peak is the most threads ever inside
 * regions at once (reset: read and clear). */
int32_t eak_threads_acquire(int32_t want);
void eak_threads_release(int32_t taken);
void eak_set_thread_limit(int32_t limit);
int32_t eak_get_thread_limit(void);
void eak_team_enter(int n);
void eak_team_leave(int n);
int32_t eak_team_peak(int reset);
/* Writes a human-readable text for errno value e into buf. */
void eak_strerror(int e, char *buf, size_t size);
/* Number of online cores. */
int eak_num_cores(void);
/* Monotonic clock in nanoseconds. */
uint64_t eak_now_ns(void);
/* Which kernel family dispatch chose: "avx2", "neon", "neon-dotprod" or "generic". */
const char *eak_isa_name(void);
/* Thread-local last-error text (ea_last_error). The setter copies at most size-1 bytes. */
void eak_tls_error_set(const char *msg, size_t len);
const char *eak_tls_error_get(void);
/* Debug builds (EA_DEBUG_HANDLES): keeps a freed handle's memory, reachable (see platform.c). */
void eak_quarantine_push(void *p);
/* Atomic acquire load of a caller's abort flag. */
int32_t eak_load_flag(const volatile int32_t *flag);
/* Writes bytes to a file descriptor (host CLI / diagnostics); returns 0 on success. */
int eak_write_fd(int fd, const void *buf, size_t len);

/* ---- Half precision (software, identical on every target) ------------------------------------ */
float eak_f16_to_f32(uint16_t h);
uint16_t eak_f32_to_f16(float f); /* round to nearest even */
void eak_f32_to_f16_row(const float *x, uint16_t *y, int64_t n);
/* The 65536 halves as floats (filled once, thread-safe). */
const float *eak_f16_table(void);

/* ---- Tensor types (ggml numbering, as stored in GGUF) ------------------------------------------ */
enum {
    EAK_F32 = 0, EAK_F16 = 1, EAK_Q4_0 = 2, EAK_Q4_1 = 3, EAK_Q5_0 = 6, EAK_Q5_1 = 7, EAK_Q8_0 = 8,
    EAK_Q8_1 = 9, EAK_Q2_K = 10, EAK_Q3_K = 11, EAK_Q4_K = 12, EAK_Q5_K = 13, EAK_Q6_K = 14,
    EAK_Q8_K = 15, EAK_I8 = 24, EAK_BF16 = 30,
    /* not a ggml type: libedgeattn's W2 rows (stored in GGUF as I8 bytes, described by metadata) */
    EAK_W2 = 1002
};
/* Elements per block and bytes per block of a type; 0 for a type this library does not know. */
uint32_t eak_type_block_elems(int type);
uint32_t eak_type_block_bytes(int type);

/* Dequantizes n elements (a multiple of the type's block size) from src into dst. Returns 0, or -1
 * for an unknown type or a ragged n. */
int eak_dequantize(int type, const void *src, float *dst, int64_t n);

/* ---- Linear algebra --------------------------------------------------------------------------- */
/* The one reduction order of every float kernel (so all ISA versions agree bit for bit): 8 lanes,
 * lane k sums elements i = k (mod 8) with separate multiply and add, then
 * ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)); a tail shorter than 8 adds in order afterwards. */
static inline float eak_reduce8(const float l[8]) {
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}
/* dot(a, b) over n floats in that order (the generic kernel the SIMD ones must equal). */
float eak_dot_f32(const float *a, const float *b, int n);

/* y[t*rows + r] = sum_c W[r][c] * x[t*cols + c] for t < n_tok, r < rows, where row r of W is stored
 * at w + r*row_bytes in `type`. cols must be a multiple of the type's block size. Parallel over rows
 * with n_threads OpenMP threads. Each weight row is decoded once per call and reused for all tokens. */
void eak_matmul(int type, const void *w, size_t row_bytes, int rows, int cols, const float *x,
                int n_tok, float *y, int n_threads);

/* ---- 8-bit activations (A8) ------------------------------------------------------------------ */
/* One activation block: 32 int8 values with scale d (x ~= d * q) and s = d * sum(q), both rounded
 * through fp16 as llama.cpp stores them, so integer products reproduce its numerics. */
typedef struct eak_act_block {
    float d;
    float s;
    int8_t qs[32];
} eak_act_block;

/* Activation block type the integer path uses for weight type wtype (EAK_Q8_0 or EAK_Q8_1), or -1
 * when wtype has no integer path (use eak_matmul). */
int eak_act_type(int wtype);
/* Bytes of activation blocks for n_tok rows of cols (cols a multiple of 32). */
size_t eak_act_bytes(int n_tok, int cols);
/* Quantizes n_tok rows of cols floats: per 32-block d = max|x|/127, q = round-to-nearest-even(x/d).
 * Rows are split over n_threads (from 8 rows up); the result does not depend on it. */
void eak_quantize_act(const float *x, int n_tok, int cols, eak_act_block *out, int n_threads);
/* y[t*rows + r] = sum over blocks of dw*dx*int_dot(qw, qx) (+ mw*sx for Q4_1/Q5_1), for weights of
 * type Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0 and activations from eak_quantize_act. Every ISA version
 * returns bit-identical results. Parallel over rows. */
void eak_matmul_q8(int type, const void *w, size_t row_bytes, int rows, int cols,
                   const eak_act_block *xq, int n_tok, float *y, int n_threads);
/* Name of the int8 dot kernel in use: "avx2", "neon", "neon-dotprod" or "generic". */
const char *eak_idot_name(void);
/* Name of the four-row W2 kernel in use: "avx2", "avx-vnni", "avx512-vnni", "neon", "neon-dotprod"
 * or "generic" (every one gives bit-identical results). */
const char *eak_w2_kernel_name(void);
/* Tests: force (1) or release (0) the generic int8 and float dot kernels; 2 releases them but turns
 * the AVX-512F forms of the AVX2 loops off (eak_use_avx512() == 0), so AVX-512 hosts test the AVX2
 * forms too. Not thread-safe. */
void eak_force_generic(int on);
/* 1 when AVX2 kernels may run: the CPU has AVX2, FMA and F16C (cpu.c, checked once) and the generic
 * ones are not forced. */
int eak_use_avx2(void);
/* 1 when AVX-512F forms of the AVX2 loops may run (the CPU has AVX-512 F, BW, VL and VNNI, and
 * eak_use_avx2(), and eak_force_generic(2) is not in effect). */
int eak_use_avx512(void);

/* Compares the dispatched SIMD integer kernels (int8 lanes, the four-row W2 kernel, the W2 panel kernels) and the SiLU gate with the
 * generic C ones on random data (deterministic from seed). Returns 0 if all are bit-identical, else
 * -1; msg receives a one-line report either way. Thread-safe (no global state changes). */
int eak_self_test(uint32_t seed, char *msg, size_t msg_len);
/* The part of eak_self_test for the SIMD float kernels (the SiLU gate): same contract. */
int eak_ops_self_test(uint32_t seed, char *msg, size_t msg_len);

/* ---- W2: group-wise asymmetric 2-bit weights --------------------------------------------------
 * A row of `cols` weights is cols/group groups (group a multiple of 32 dividing cols). A group is
 * 4 + group/4 bytes: fp16 scale d, fp16 offset m (little-endian), then group/32 chunks of 8 bytes;
 * element j (0..31) of a chunk is the 2-bit code q = (byte[j % 8] >> (2 * (j / 8))) & 3, and its
 * value is q * d + m. (Shifting a chunk by 0, 2, 4, 6 yields elements 0-7, 8-15, 16-23, 24-31 in
 * order, which is what the SIMD unpackers exploit.) 2 + 32/group bits per weight. */
/* Bytes of one row, or 0 when cols/group do not fit the format. */
size_t eak_w2_row_bytes(int cols, int group);
/* Decodes one row to float. Returns 0, or -1 for a bad cols/group. */
int eak_w2_dequantize_row(const void *row, float *dst, int cols, int group);
/* y[t*rows + r] = W2 row r . x[t] with 8-bit activations: per 32-block (d*dx) times the exact int32
 * dots of the codes with qx over elements 0-15 and 16-31, accumulated block by block in two float
 * sums lo and hi, plus the offset sum m = sum over blocks of mn*sx; y = (lo + hi) + m. The same for
 * one token or many; bit-identical on every ISA. */
void eak_matmul_w2(const void *w, size_t row_bytes, int rows, int cols, int group,
                   const eak_act_block *xq, int n_tok, float *y, int n_threads);
/* The row kernel's result for one row and one token (the reference the panel kernels must equal). */
float eak_w2_row_ref(const uint8_t *row, const eak_act_block *xa, int ng, int cpg);

/* ---- W2 panels (w2_panel.c): 16 rows interleaved for the SIMD width ----------------------------
 * Rows 16p .. 16p + 15 occupy the same 16 * row_bytes bytes as in the row layout, reordered: per
 * group g, at offset g * 16 * (4 + group/4): the 16 rows' fp16 scales d (32 bytes), their fp16
 * offsets m (32 bytes), then per 32-element chunk two 64-byte code vectors V_0, V_1, where byte
 * 4r + e of V_h holds at bits 2j the code of row r for element 16h + 4j + e. A 32-bit lane then
 * holds four consecutive codes of one row, so products with broadcast activations need no
 * horizontal adds. Results are those of eak_matmul_w2 on the row layout, bit for bit. */
#define EAK_W2_PANEL 16
/* Repacks rows (a multiple of 16) of W2 row layout into panels in place. scratch: 16 * row_bytes
 * bytes. Returns 0, or -1 for bad arguments (nothing changed). */
int eak_w2_pack_panels(void *w, size_t row_bytes, int rows, int cols, int group, void *scratch);
/* Decodes row r of a panel-packed matrix to float (the values eak_w2_dequantize_row gives for the
 * row before packing). Returns 0, or -1 for bad arguments. */
int eak_w2p_dequantize_row(const void *w, size_t row_bytes, int r, float *dst, int cols, int group);
/* eak_matmul_w2 for a panel-packed matrix (rows a multiple of 16). Parallel over panels. */
void eak_matmul_w2p(const void *w, size_t row_bytes, int rows, int cols, int group,
                    const eak_act_block *xq, int n_tok, float *y, int n_threads);
/* One panel-packed W2 product for eak_matmul_w2p_jobs: y (n_tok x rows) = W (rows x cols) times the
 * activation blocks xq (n_tok x cols / 32). */
typedef struct {
    const void *w;
    size_t row_bytes;
    int rows, cols, group;
    const eak_act_block *xq;
    float *y;
} eak_w2p_job;
/* Up to three products (b, c may be NULL) in one parallel region: their panels are split over the
 * team as one range (q/k/v, gate/up: one fork and join instead of three or two). Each result equals
 * its own eak_matmul_w2p call bit for bit. Nothing is done if a job is malformed. */
void eak_matmul_w2p_jobs(const eak_w2p_job *a, const eak_w2p_job *b, const eak_w2p_job *c, int n_tok, int n_threads);
/* Name of the panel kernel in use: "avx2", "avx-vnni", "avx512-vnni", "neon", "neon-dotprod", "generic". */
const char *eak_w2p_kernel_name(void);
/* Q4_1 panels: a Q4_1 matrix of a multiple of 16 rows (and at most 512 blocks per row) reordered in
 * place into panels of 16 rows. Per 32-column block (320 bytes): the 16 rows' fp16 d, then their
 * fp16 m, then each row's 16 code bytes in row order; the same bytes as 16 rows of the row layout.
 * Decode reads 16 rows' scales in one load and two rows' codes per SIMD product. Results equal
 * eak_matmul_q8(EAK_Q4_1) on the row layout bit for bit. */
#define EAK_Q4P_PANEL 16
/* Repacks in place. scratch: 16 * row_bytes bytes. Returns 0, or -1 for bad arguments (nothing
 * changed). */
int eak_q4p_pack_panels(void *w, size_t row_bytes, int rows, int cols, void *scratch);
/* Writes row r of a panel-packed matrix in the Q4_1 row layout (row_bytes bytes) to out. */
void eak_q4p_row(const void *w, size_t row_bytes, int r, void *out);
/* eak_matmul_q8(EAK_Q4_1, ...) for a panel-packed matrix. Parallel over panels. */
void eak_matmul_q4p(const void *w, size_t row_bytes, int rows, int cols, const eak_act_block *xq, int n_tok,
                    float *y, int n_threads);
/* Name of the Q4_1 panel decode kernel: "avx512-vnni", "avx2", "neon-dotprod", "neon" or "generic". */
const char *eak_q4p_kernel_name(void);
/* Every panel kernel this CPU has, and the generic one, against the row kernel on random panels
 * (and packed rows dequantized against the originals). 0 if all are bit-identical, else -1; msg
 * receives a one-line report. Thread-safe. */
int eak_w2p_self_test(uint32_t seed, char *msg, size_t msg_len);


/* out[i] = x[i] / sqrt(mean(x^2) + eps) * (w[i] + w_offset), for n_rows rows of n. out may be x.
 * Rows are split over n_threads from 8 rows up; the result does not depend on it. */
void eak_rmsnorm(float *out, const float *x, const float *w, int n, int n_rows, float eps,
                 float w_offset, int n_threads);

/* Rotary embedding in place on n_heads heads of head_dim at position pos. neox == 0: pairs
 * (2i, 2i+1) (llama's GGUF layout); neox == 1: pairs (i, i + head_dim/2). Frequencies
 * theta_i = pos * base^(-2i/head_dim), scaled by freq_scale. */
void eak_rope(float *x, int n_heads, int head_dim, int pos, float base, float freq_scale, int neox);
/* eak_rope on n_tok rows of queries (q_heads heads each) and keys (k_heads) at positions pos0, pos0+1,
 * ...: the same results as eak_rope per row and matrix, with the angles computed once per row and
 * the rows split over n_threads (from 8 rows up). */
void eak_rope_rows(float *q, int q_heads, float *k, int k_heads, int head_dim, int n_tok, int pos0,
                   float base, float freq_scale, int neox, int n_threads);

/* Which cached keys each query attends to, and where they live. NULL (or all zero) = dense causal.
 * Range form (keys == NULL): a query at position p attends the attention sinks 0..min(n_sink,p+1)-1
 * and the window max(n_sink, p-window+1)..p (window 0 = every key after the sinks). Sinks sit at
 * slots 0..n_sink-1; with ring > 0, position j >= n_sink sits at slot n_sink + (j - n_sink) % ring
 * (a Lambda-shaped cache), else at slot j. sink_k (may be NULL) replaces the cached sink keys, per
 * query: [n_tok][n_sink][n_kv_head*head_dim] floats (sink keys re-rotated to a shifted position).
 * List form (keys != NULL, DHSA): per kv head h, keys + h*keys_stride holds n_keys ascending
 * positions (slot = position); a query at p attends the entries <= p. */
typedef struct eak_span {
    int n_sink, window, ring;
    const float *sink_k;
    const int32_t *keys;
    int n_keys, keys_stride;
} eak_span;

/* Most keys one query of this call can attend: the per-thread scratch stride. */
int eak_span_max_keys(const eak_span *span, int pos0, int n_tok);

/* Causal grouped-query attention for n_tok new queries at positions pos0..pos0+n_tok-1.
 * q: [n_tok][n_head*head_dim]; k_cache/v_cache: [slots][n_kv_head*head_dim] holding the keys and
 * values of the positions the span names (after they were stored); out: [n_tok][n_head*head_dim].
 * Keys are scored in the span's order (sinks, then window ascending; or the list), so a span that
 * names every key gives bit-identical results to the dense one.
 * scratch: n_threads * eak_span_max_keys(span, pos0, n_tok) floats. */
void eak_attention(const float *q, const float *k_cache, const float *v_cache, float *out,
                   int n_tok, int pos0, int n_head, int n_kv_head, int head_dim, float scale,
                   const eak_span *span, float *scratch, int n_threads);

/* The same over a 16-bit KV cache (k_cache/v_cache hold IEEE halves), with llama.cpp's rounding:
 * each query head is rounded to half before q.k, and the softmax weights are rounded to half before
 * they weight the values; sums are float. Sink keys from span->sink_k are float. */
void eak_attention_f16(const float *q, const uint16_t *k_cache, const uint16_t *v_cache, float *out,
                       int n_tok, int pos0, int n_head, int n_kv_head, int head_dim, float scale,
                       const eak_span *span, float *scratch, int n_threads);

/* ---- Quantized KV cache (KV8 / KV4), see kv_quant.c ------------------------------------------- */
/* One layer's cache. Keys: per block of `group` tokens, per kv head, per channel one record over the
 * block's tokens. Values: per token, per kv head, one record per `group` channels. A record is
 * eak_kvq_record_bytes(bits, group) bytes: fp16 scale, fp16 offset, group codes of `bits` bits.
 * Positions < n_sink are kept in float (sink_k/sink_v: [n_sink][n_kv_head*head_dim]); positions of
 * an incomplete block in a float ring of `ring` slots (a multiple of group, >= group + n_batch).
 * block_slots > 0 makes the quantized blocks a ring too (block b at slot b % block_slots, for a
 * Lambda-shaped window); 0 = one slot per block. */
typedef struct eak_kvq {
    int head_dim, n_kv_head, bits, group, n_sink, ring, block_slots;
    uint8_t *kq;  /* [block slot][n_kv_head][head_dim] records */
    uint8_t *vq;  /* [(position - n_sink) in block slots][n_kv_head][head_dim / group] records */
    float *sink_k, *sink_v;
    float *ring_k, *ring_v; /* [ring][n_kv_head*head_dim] */
} eak_kvq;

size_t eak_kvq_record_bytes(int bits, int group);
/* Stores keys/values ([n_tok][n_kv_head*head_dim], keys already rotated) of positions
 * pos0..pos0+n_tok-1 (n_tok <= ring - group) and quantizes every block they complete. */
void eak_kvq_append(const eak_kvq *c, const float *k, const float *v, int pos0, int n_tok, int n_threads);
/* Causal GQA attention of n_tok queries at pos0.. over the cache (after eak_kvq_append of the same
 * tokens), reading quantized blocks in place: block scores are sum_c (q_c d_c) code + sum_c q_c m_c.
 * span as for eak_attention (NULL = dense; span->n_sink <= c->n_sink; span->ring is ignored: the
 * cache's own geometry says where a position lives). The query heads of one kv head are scored
 * together (each key record unpacked once for up to eak_kvq_heads_per_pass of them); results are
 * those of one head at a time, bit for bit. A query's keys are attended in fixed segments (ordinals
 * [0, n_sink + 256), then 256 at a time; per segment its own maximum, sum and value sum, merged in
 * order), which decode spreads over the threads: results depend on neither the thread count nor the
 * batching. scratch: eak_kvq_scratch_floats(n_head, n_kv_head, head_dim, n_sink,
 * eak_span_max_keys(span, pos0, n_tok), n_threads) floats (the same with a larger key count or
 * thread count is enough). */
int eak_kvq_heads_per_pass(int n_head, int n_kv_head);
size_t eak_kvq_scratch_floats(int n_head, int n_kv_head, int head_dim, int n_sink, int max_keys, int n_threads);
void eak_kvq_attention(const eak_kvq *c, const float *q, float *out, int n_tok, int pos0, int n_head,
                       float scale, const eak_span *span, float *scratch, int n_threads);

/* In-place orthonormal Walsh-Hadamard transform of each block of `block` values (a power of two
 * dividing cols) in n_rows rows: the activation side of a Hadamard-rotated weight matrix. Rows are
 * split over n_threads from 8 rows up. */
void eak_hadamard(float *x, int n_rows, int cols, int block, int n_threads);

/* out[i] = silu(g[i]) * u[i] (SwiGLU) or gelu_tanh(g[i]) * u[i] (GeGLU, gelu != 0). silu(x) is
 * x / (1 + eak_exp32(-x)) (float exp, the same bits on every target and SIMD width); the GeLU's tanh
 * uses eak_exp. Elements are split over n_threads from 16384 up; the result does not depend on it. */
void eak_glu(float *out, const float *g, const float *u, int64_t n, int gelu, int n_threads);

/* exp(x), identical on every target (see math.c); eak_expf is the same, for Swift callers. */
float eak_exp(float x);
float eak_expf(float x);
/* s[i] <- eak_exp(s[i] - mx) for i < n (vectorised where the CPU allows, same bits). */
void eak_exp_sub(float *s, int n, float mx);

/* exp in float (degree-6 polynomial, within a few float ulp; 0 below -87, infinity above 88), the
 * same operations on every target. eak_exp32_sub_sum: s[i] <- eak_exp32(s[i] - mx) for i < n and
 * returns their sum in a fixed order (eight running sums over the whole eights, combined pairwise,
 * then the rest in order); the AVX2 form gives the same bits. The quantized-cache softmax uses it
 * (cheaper than the double-precision eak_exp_sub). */
float eak_exp32(float x);
float eak_exp32_sub_sum(float *s, int n, float mx);

/* y[i] += x[i] */
void eak_add(float *y, const float *x, int64_t n);
/* x[i] *= s */
void eak_scale(float *x, float s, int64_t n);

/* Indices of the k largest of x[0..n) in descending order of value (ties: lower index first),
 * written to idx[0..k). k <= n. No allocation. */
void eak_top_k(const float *x, int n, int k, int32_t *idx);

/* ---- Recurrent attention (recurrent.c): constant state per head --------------------------------- */
/* Aaren (softmax attention of one learned query as an RNN). query: n_head x head_dim; k, v, out:
 * n rows of n_head x head_dim. state: per head the tuple (m, u, w[head_dim]) in head_dim + 2 floats,
 * carried across calls (empty: m = -INFINITY, u = 0, w = 0). out[t] = w/u after token t. Scores are
 * scale * (query . k). Prefill runs a blocked parallel prefix scan over (m, u, w) (blocks of 64
 * tokens, same numbers for any thread count); scratch: eak_aaren_scratch_floats(n, ...) floats.
 * head_dim <= 512. */
void eak_aaren(const float *query, const float *k, const float *v, int32_t n, int32_t n_head, int32_t head_dim,
               float scale, float *state, float *out, float *scratch, int32_t n_threads);
int64_t eak_aaren_scratch_floats(int32_t n, int32_t n_head, int32_t head_dim);
/* The associative combine a <- a (+) b of two (m, u, w[d]) tuples. */
void eak_aaren_combine(float *a, const float *b, int32_t d);
/* Decayed linear attention S_t = decay[h] S_(t-1) + k_t^T v_t, out_t = q_t S_t, per head.
 * q, k, v, out: n rows of n_head x head_dim; state: n_head x head_dim x head_dim floats (S[i][j],
 * row i = key channel), carried across calls. Chunkwise-parallel form with chunks of `chunk` tokens
 * (threads take heads); chunk 1 is the recurrence itself. */
void eak_linear_attention(const float *q, const float *k, const float *v, int32_t n, int32_t n_head,
                          int32_t head_dim, const float *decay, float *state, float *out, int32_t chunk,
                          int32_t n_threads);
/* Feature map in place: kind 0 identity, 1 SiLU, 2 ELU+1. */
void eak_feature_map(float *x, int64_t n, int32_t kind);
/* x[i] *= sigmoid(g[i]) (output gate). */
void eak_sigmoid_mul(float *x, const float *g, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
