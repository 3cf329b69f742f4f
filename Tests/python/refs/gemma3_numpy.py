"""Reference forward pass for Gemma 3 GGUF models (architecture `gemma3`) in plain numpy.

Written from the architecture description and the GGUF metadata, independent of the Swift/C code:

    h = token_embd[ids] * fp32(sqrt(n_embd))
    for each layer il (global iff il % 6 == 5, else local with a sliding window):
        x = rmsnorm(h) * attn_norm                      (GGUF norm weights already hold Gemma's +1)
        q, k, v = x Wq^T, x Wk^T, x Wv^T                (n_head / n_head_kv heads of key_length)
        q, k = rmsnorm_per_head(q) * attn_q_norm, rmsnorm_per_head(k) * attn_k_norm
        q, k = rope_neox(q), rope_neox(k)               (pairs (i, i + d/2); base 1e4 local, freq_base global)
        a = softmax(q k^T / sqrt(key_length) + mask) v  (causal; local layers: keys p-window+1..p)
        h = h + rmsnorm(a Wo^T) * post_attention_norm
        x = rmsnorm(h) * ffn_norm
        h = h + rmsnorm(Wdown (gelu_tanh(x Wgate^T) * x Wup^T)) * post_ffw_norm
    logits = rmsnorm(h) * output_norm @ token_embd^T     (tied head, no soft-capping)

Every rmsnorm uses gemma3.attention.layer_norm_rms_epsilon.

Weights are dequantized with gguf.quants.dequantize and kept in float32: every value those
dequantizers produce is a float32 (Q8_0 and Q5_0 values are fp16 scale x small integer, exactly
representable), so nothing is lost. The arithmetic runs in `dtype` (float64 by default, float32 to
measure the reference's own rounding noise); the 262144 x 640 head is multiplied in row chunks so
float64 never needs a full float64 copy of the embedding.

Optional 8-bit activations (act_q8=True), as the runtime and llama.cpp's CPU backend compute
products with 32-element block weights: for Q4_0, Q5_0 and Q8_0 weights (this model: attn_q/k/v,
ffn_gate/up, half the attn_v, and the Q8_0 embedding used as the head) each 32-element block of the
input row is rounded to 8 bits (refs.llama_numpy.quantize_act: d = max|x|/127, round half to even,
d rounded to fp16). Q4_K and Q6_K weights (attn_output, ffn_down) multiply the float input.

Usage as a script: python3 gemma3_numpy.py MODEL.gguf [--a8] [--f32] 2 818 5279  -> top-5 next tokens.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field

import gguf
import numpy as np

try:
    from . import llama_numpy as _llama
except ImportError:  # run as a script from this folder
    import llama_numpy as _llama

rms_norm = _llama.rms_norm
quantize_act = _llama.quantize_act

A8_TYPES = {"Q4_0", "Q5_0", "Q8_0"}   # symmetric 32-blocks: Q8_0-style 8-bit activations
HEAD_CHUNK = 32768                     # vocabulary rows per block of the head product


@dataclass
class Gemma3Config:
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_ctx: int
    rope_base_global: float
    rope_base_local: float
    sliding_window: int
    global_period: int   # layer il is global iff il % global_period == global_period - 1
    eps: float
    vocab: int

    def is_global(self, il: int) -> bool:
        return il % self.global_period == self.global_period - 1

    def rope_base(self, il: int) -> float:
        return self.rope_base_global if self.is_global(il) else self.rope_base_local

    @property
    def embd_scale(self) -> float:
        return float(np.sqrt(np.float32(self.n_embd), dtype=np.float32))


@dataclass
class Gemma3Model:
    cfg: Gemma3Config
    w: dict[str, np.ndarray] = field(default_factory=dict)       # float32, numpy shape = reversed ggml ne
    types: dict[str, str] = field(default_factory=dict)          # tensor name -> GGML type name


def read_config(reader: gguf.GGUFReader) -> Gemma3Config:
    arch = _llama._meta(reader, "general.architecture")
    if arch != "gemma3":
        raise ValueError(f"architecture {arch!r}: this reference implements 'gemma3' only")
    a = "gemma3."

    def meta(key, default=None):
        return _llama._meta(reader, a + key, default)

    n_embd = int(meta("embedding_length"))
    n_head = int(meta("attention.head_count"))
    tok = reader.fields.get("tokenizer.ggml.tokens")
    return Gemma3Config(
        n_embd=n_embd,
        n_layer=int(meta("block_count")),
        n_head=n_head,
        n_head_kv=int(meta("attention.head_count_kv", n_head)),
        head_dim=int(meta("attention.key_length", n_embd // n_head)),
        n_ff=int(meta("feed_forward_length")),
        n_ctx=int(meta("context_length")),
        rope_base_global=float(meta("rope.freq_base", 1e6)),
        rope_base_local=10000.0,
        sliding_window=int(meta("attention.sliding_window")),
        global_period=6,
        eps=float(meta("attention.layer_norm_rms_epsilon")),
        vocab=len(tok.data) if tok is not None else 0,
    )


@functools.lru_cache(maxsize=1)
def load(gguf_path: str) -> Gemma3Model:
    """Reads and dequantizes every tensor to float32 (cached: about 1.1 GB for Gemma 3 270M)."""
    reader = gguf.GGUFReader(str(gguf_path))
    m = Gemma3Model(cfg=read_config(reader))
    for t in reader.tensors:
        m.w[t.name] = _llama.dequantize_tensor(t)
        m.types[t.name] = t.tensor_type.name
    if not m.cfg.vocab:
        m.cfg.vocab = m.w["token_embd.weight"].shape[0]
    if "output.weight" in m.w:
        raise ValueError("this reference expects the tied head of Gemma 3 (no output.weight)")
    _check_shapes(m)
    return m


def _check_shapes(m: Gemma3Model) -> None:
    c = m.cfg
    want = _llama.llama_shapes(c)
    for i in range(c.n_layer):
        p = f"blk.{i}."
        want.update({
            p + "post_attention_norm.weight": (c.n_embd,), p + "post_ffw_norm.weight": (c.n_embd,),
            p + "attn_q_norm.weight": (c.head_dim,), p + "attn_k_norm.weight": (c.head_dim,),
        })
    _llama.check_shapes(m.w, want)


def rope_neox(x: np.ndarray, positions: np.ndarray, base: float) -> np.ndarray:
    """NEOX-style RoPE on x[n_tokens, n_heads, d]: the pair (x[i], x[i + d/2]) is rotated by
    theta_i = pos * base^(-2i/d), i < d/2."""
    d = x.shape[-1]
    half = d // 2
    inv_freq = base ** (-2.0 * np.arange(half, dtype=np.float64) / d)
    theta = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None]    # [n, half]
    cos = np.cos(theta)[:, None, :].astype(x.dtype)
    sin = np.sin(theta)[:, None, :].astype(x.dtype)
    x0, x1 = x[..., :half], x[..., half:]
    return np.concatenate([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    c = np.sqrt(2.0 / np.pi)
    return 0.5 * x * (1.0 + np.tanh(c * (x + 0.044715 * x * x * x)))


def attention_mask(positions: np.ndarray, window: int | None) -> np.ndarray:
    """[n_q, n_k] True where the key is visible: key position <= query position and, with a
    window, query position - key position < window."""
    p = np.asarray(positions)
    delta = p[:, None] - p[None, :]
    visible = delta >= 0
    if window is not None:
        visible &= delta < window
    return visible


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, visible: np.ndarray, scale: float) -> np.ndarray:
    """Grouped-query attention. q [n, H, d], k/v [n, Hkv, d], visible [n, n] -> [n, H*d]."""
    n, n_head, d = q.shape
    kv_of_head = np.arange(n_head) // (n_head // k.shape[1])
    scores = np.einsum("qhd,khd->hqk", q, k[:, kv_of_head]) * q.dtype.type(scale)
    scores = np.where(visible[None], scores, -np.inf)
    scores -= scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(axis=-1, keepdims=True)
    return np.einsum("hqk,khd->qhd", p, v[:, kv_of_head]).reshape(n, n_head * d)


def linear(m: Gemma3Model, x: np.ndarray, name: str, act_q8: bool, round_margin=None) -> np.ndarray:
    """x [n, in] (its dtype is the compute dtype) times the weight's transpose -> [n, out]."""
    dt = x.dtype
    if act_q8 and m.types[name] in A8_TYPES:
        x = quantize_act(x, round_margin)[0].astype(dt)
    w = m.w[name]
    if w.shape[0] <= HEAD_CHUNK:
        return x @ w.T.astype(dt, copy=False)
    out = np.empty((x.shape[0], w.shape[0]), dtype=dt)
    for s in range(0, w.shape[0], HEAD_CHUNK):
        out[:, s:s + HEAD_CHUNK] = x @ w[s:s + HEAD_CHUNK].T.astype(dt, copy=False)
    return out


ABLATIONS = {
    "rope_normal": "RoPE on adjacent pairs (2i, 2i+1) instead of NEOX halves",
    "one_rope_base": "every layer uses gemma3.rope.freq_base (no 10000 base on local layers)",
    "no_sliding_window": "local layers attend to the whole causal prefix",
    "no_post_norms": "no post_attention_norm / post_ffw_norm (plain residual adds)",
    "no_qk_norm": "no per-head RMSNorm of q and k",
    "no_embd_scale": "embeddings not multiplied by sqrt(n_embd)",
}


def forward(m: Gemma3Model, token_ids, dtype: str = "float64", act_q8: bool = False,
            round_margin=None, positions=None, rows=None, ablate=()) -> np.ndarray:
    """Logits [n_tokens, vocab] for token_ids evaluated from an empty cache.

    act_q8: 8-bit activations for block-quantized weights; round_margin: optional float array
    [n_tokens] filled with each position's closest activation rounding tie (in block steps);
    rows: optional indices of the positions whose logits are computed (default all: each row
    costs 1 MB of float32/2 MB of float64); ablate: names from ABLATIONS, deliberately wrong
    variants the tests use to show their tolerances catch such bugs."""
    unknown = set(ablate) - set(ABLATIONS)
    if unknown:
        raise ValueError(f"unknown ablations {sorted(unknown)}")
    c = m.cfg
    dt = np.dtype(dtype)
    ids = _llama.check_ids(token_ids, c.vocab)
    n = len(ids)
    pos = np.arange(n) if positions is None else np.asarray(positions)
    if round_margin is not None:
        round_margin[:] = np.inf
    window = None if "no_sliding_window" in ablate else c.sliding_window
    masks = {"global": attention_mask(pos, None), "local": attention_mask(pos, window)}
    scale = 1.0 / np.sqrt(c.head_dim)
    rope = (lambda x, ps, base: _llama.rope_normal(x, ps, x.shape[-1], base)) if "rope_normal" in ablate else rope_neox

    def norm(x, name):
        if ("no_post_norms" in ablate and ".post_" in name) or \
                ("no_qk_norm" in ablate and name.endswith(("_q_norm.weight", "_k_norm.weight"))):
            return x
        return rms_norm(x, m.w[name].astype(dt), c.eps)

    h = m.w["token_embd.weight"][ids].astype(dt)
    if "no_embd_scale" not in ablate:
        h *= dt.type(c.embd_scale)
    for il in range(c.n_layer):
        p = f"blk.{il}."
        base = c.rope_base_global if "one_rope_base" in ablate else c.rope_base(il)
        x = norm(h, p + "attn_norm.weight")
        q = linear(m, x, p + "attn_q.weight", act_q8, round_margin).reshape(n, c.n_head, c.head_dim)
        k = linear(m, x, p + "attn_k.weight", act_q8, round_margin).reshape(n, c.n_head_kv, c.head_dim)
        v = linear(m, x, p + "attn_v.weight", act_q8, round_margin).reshape(n, c.n_head_kv, c.head_dim)
        q = rope(norm(q, p + "attn_q_norm.weight"), pos, base)
        k = rope(norm(k, p + "attn_k_norm.weight"), pos, base)
        a = attention(q, k, v, masks["global" if c.is_global(il) else "local"], scale)
        h = h + norm(linear(m, a, p + "attn_output.weight", act_q8, round_margin), p + "post_attention_norm.weight")
        x = norm(h, p + "ffn_norm.weight")
        g = linear(m, x, p + "ffn_gate.weight", act_q8, round_margin)
        u = linear(m, x, p + "ffn_up.weight", act_q8, round_margin)
        f = linear(m, gelu_tanh(g) * u, p + "ffn_down.weight", act_q8, round_margin)
        h = h + norm(f, p + "post_ffw_norm.weight")
    if rows is None:
        return linear(m, norm(h, "output_norm.weight"), "token_embd.weight", act_q8, round_margin)
    rows = np.asarray(rows)
    head_margin = None if round_margin is None else np.full(len(rows), np.inf)
    out = linear(m, norm(h[rows], "output_norm.weight"), "token_embd.weight", act_q8, head_margin)
    if round_margin is not None:
        round_margin[rows] = np.minimum(round_margin[rows], head_margin)
    return out


def logits(gguf_path: str, token_ids, dtype: str = "float64", act_q8: bool = False, round_margin=None,
           rows=None, ablate=()) -> np.ndarray:
    """Reference logits [len(token_ids) or len(rows), vocab] for a Gemma 3 GGUF (see forward)."""
    return forward(load(str(gguf_path)), token_ids, dtype=dtype, act_q8=act_q8, round_margin=round_margin,
                   rows=rows, ablate=ablate)


def greedy(gguf_path: str, prompt_ids, n_new: int, dtype: str = "float64", stop_ids=(),
           act_q8: bool = False) -> list[int]:
    """Greedy continuation (recomputes the whole sequence each step: slow, for small checks only)."""
    m = load(str(gguf_path))
    return _llama.greedy_decode(lambda seq: forward(m, seq, dtype=dtype, act_q8=act_q8), prompt_ids, n_new, stop_ids)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: gemma3_numpy.py MODEL.gguf [--a8] [--f32] ID [ID ...]")
    args = sys.argv[2:]
    flags = {a for a in args if a.startswith("--")}
    lg = logits(sys.argv[1], [int(t) for t in args if t not in flags], act_q8="--a8" in flags,
                dtype="float32" if "--f32" in flags else "float64")
    print(_llama.top5(lg[-1]))
