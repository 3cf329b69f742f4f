"""Reference forward pass for Llama-family GGUF models in plain numpy.

Written from the architecture description, independent of the Swift/C implementation:

    h = token_embd[ids]
    for each layer:
        x = rmsnorm(h) * attn_norm
        q, k, v = x Wq^T, x Wk^T, x Wv^T            (heads of size head_dim; n_kv heads for k, v)
        q, k = rope(q), rope(k)                     (GGUF "normal" mode: adjacent pairs)
        a = softmax(q k^T / sqrt(head_dim) + causal mask) v   (query head h reads kv head h // group)
        h = h + a Wo^T
        x = rmsnorm(h) * ffn_norm
        h = h + Wdown^T (silu(x Wgate^T) * (x Wup^T))
    logits = rmsnorm(h) * output_norm  @  (output.weight or token_embd.weight)^T

Weights are dequantized with gguf.quants.dequantize (the gguf package's own formulas) and held in
float64 by default, so this is a high-precision reference for float32 implementations.

Optional 8-bit activations (act_q8=True), as llama.cpp's CPU backend computes products with
32-element block weights: for weights of type Q4_0, Q5_0, Q8_0 (Q8_0-style activations) and Q4_1,
Q5_1 (Q8_1-style), each 32-element block of the input row is rounded to q = round-half-even(x / d)
with d = max|x| / 127, and the product uses d rounded to fp16; for Q4_1/Q5_1 the weight offset m
multiplies s = fp16(d * sum(q)) instead of the sum of the rounded inputs. Other weight types (F32,
F16, K-quants) multiply the float input.

GGUF tensors list their dimensions fastest-first (ggml `ne`); numpy arrays from GGUFReader have the
reverse shape, so a linear layer's weight is [out, in] in numpy and y = x @ W.T.

Usage as a script: python3 llama_numpy.py MODEL.gguf [--a8] 504 3575 282  -> prints top-5 next tokens.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field

import gguf
import numpy as np


def _meta(reader: gguf.GGUFReader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        if default is None:
            raise KeyError(f"GGUF metadata key {key!r} missing")
        return default
    return f.contents()


def dequantize_tensor(t) -> np.ndarray:
    """A ReaderTensor as float32, numpy shape = reversed ggml ne."""
    arr = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
    shape = tuple(int(n) for n in reversed(t.shape))
    return np.asarray(arr, dtype=np.float32).reshape(shape)


@dataclass
class LlamaConfig:
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_rot: int
    n_ff: int
    n_ctx: int
    rope_base: float
    eps: float
    vocab: int


A8_Q8_0_TYPES = {"Q4_0", "Q5_0", "Q8_0"}      # symmetric weight blocks: Q8_0-style activations
A8_Q8_1_TYPES = {"Q4_1", "Q5_1"}              # weight blocks with an offset m: Q8_1-style (with s)


@dataclass
class LlamaModel:
    cfg: LlamaConfig
    dtype: np.dtype
    w: dict[str, np.ndarray] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)       # tensor name -> GGML type name
    block_min: dict[str, np.ndarray] = field(default_factory=dict)  # Q4_1/Q5_1: m per block [rows, blocks]
    tied: bool = False

    def output_weight(self) -> np.ndarray:
        return self.w["token_embd.weight"] if self.tied else self.w["output.weight"]


def read_config(reader: gguf.GGUFReader) -> LlamaConfig:
    arch = _meta(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"architecture {arch!r}: this reference implements 'llama' only")
    a = "llama."
    n_embd = int(_meta(reader, a + "embedding_length"))
    n_head = int(_meta(reader, a + "attention.head_count"))
    head_dim = int(_meta(reader, a + "attention.key_length", n_embd // n_head))
    tok = reader.fields.get("tokenizer.ggml.tokens")
    vocab = int(_meta(reader, a + "vocab_size", len(tok.data) if tok is not None else 0))
    return LlamaConfig(
        n_embd=n_embd,
        n_layer=int(_meta(reader, a + "block_count")),
        n_head=n_head,
        n_head_kv=int(_meta(reader, a + "attention.head_count_kv", n_head)),
        head_dim=head_dim,
        n_rot=int(_meta(reader, a + "rope.dimension_count", head_dim)),
        n_ff=int(_meta(reader, a + "feed_forward_length")),
        n_ctx=int(_meta(reader, a + "context_length")),
        rope_base=float(_meta(reader, a + "rope.freq_base", 10000.0)),
        eps=float(_meta(reader, a + "attention.layer_norm_rms_epsilon")),
        vocab=vocab,
    )


@functools.lru_cache(maxsize=2)
def load(gguf_path: str, dtype: str = "float64") -> LlamaModel:
    """Reads and dequantizes every tensor (cached per path and dtype)."""
    reader = gguf.GGUFReader(str(gguf_path))
    cfg = read_config(reader)
    m = LlamaModel(cfg=cfg, dtype=np.dtype(dtype))
    for t in reader.tensors:
        m.w[t.name] = dequantize_tensor(t).astype(m.dtype, copy=False)
        m.types[t.name] = t.tensor_type.name
        if t.tensor_type.name in A8_Q8_1_TYPES:
            # both block layouts start with fp16 d, fp16 m
            block_bytes = gguf.GGML_QUANT_SIZES[t.tensor_type][1]
            raw = np.asarray(t.data).reshape(-1, block_bytes)
            mins = raw[:, 2:4].copy().view(np.float16).astype(np.float64)
            m.block_min[t.name] = mins.reshape(m.w[t.name].shape[0], -1)
    m.tied = "output.weight" not in m.w
    if not cfg.vocab:
        cfg.vocab = m.w["token_embd.weight"].shape[0]
    _check_shapes(m)
    return m


def _check_shapes(m: LlamaModel) -> None:
    c = m.cfg
    want = llama_shapes(c)
    if not m.tied:
        want["output.weight"] = (c.vocab, c.n_embd)
    check_shapes(m.w, want)


def llama_shapes(c) -> dict[str, tuple]:
    """numpy shapes of the tensors every Llama-style model has (embedding, output norm and, per layer,
    the two norms and the attention and MLP projections); c: a LlamaConfig or a config with the same
    fields (refs/gemma3_numpy.py adds its extra norms)."""
    q_dim, kv_dim = c.n_head * c.head_dim, c.n_head_kv * c.head_dim
    want = {"token_embd.weight": (c.vocab, c.n_embd), "output_norm.weight": (c.n_embd,)}
    for i in range(c.n_layer):
        p = f"blk.{i}."
        want.update({
            p + "attn_norm.weight": (c.n_embd,), p + "ffn_norm.weight": (c.n_embd,),
            p + "attn_q.weight": (q_dim, c.n_embd), p + "attn_k.weight": (kv_dim, c.n_embd),
            p + "attn_v.weight": (kv_dim, c.n_embd), p + "attn_output.weight": (c.n_embd, q_dim),
            p + "ffn_gate.weight": (c.n_ff, c.n_embd), p + "ffn_up.weight": (c.n_ff, c.n_embd),
            p + "ffn_down.weight": (c.n_embd, c.n_ff),
        })
    return want


def check_shapes(w: dict[str, np.ndarray], want: dict[str, tuple]) -> None:
    """Every tensor named in `want` is in w with that numpy shape (shared with refs/gemma3_numpy.py)."""
    for name, shape in want.items():
        if name not in w:
            raise KeyError(f"tensor {name} missing")
        if w[name].shape != shape:
            raise ValueError(f"tensor {name}: numpy shape {w[name].shape}, expected {shape}")


def check_ids(token_ids, vocab: int) -> np.ndarray:
    """token_ids as a non-empty 1-D int64 array of ids in [0, vocab)."""
    ids = np.asarray(list(token_ids), dtype=np.int64)
    if ids.ndim != 1 or len(ids) == 0:
        raise ValueError("token_ids must be a non-empty 1-D sequence")
    if ids.min() < 0 or ids.max() >= vocab:
        raise ValueError(f"token id out of range [0, {vocab})")
    return ids


def greedy_decode(next_logits, prompt_ids, n_new: int, stop_ids=()) -> list[int]:
    """Greedy continuation: next_logits(seq) gives logits for the whole sequence, its last row is used
    (recomputed from scratch each step: slow, for small checks only)."""
    seq = list(prompt_ids)
    out = []
    for _ in range(n_new):
        nxt = int(np.argmax(next_logits(seq)[-1]))
        out.append(nxt)
        seq.append(nxt)
        if nxt in stop_ids:
            break
    return out


def top5(row: np.ndarray) -> str:
    """`id:logit` of the five highest logits of one row (the scripts' output)."""
    return " ".join(f"{t}:{row[t]:.4f}" for t in np.argsort(-row)[:5])


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    ms = np.mean(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(ms + eps) * weight


def rope_normal(x: np.ndarray, positions: np.ndarray, n_rot: int, base: float) -> np.ndarray:
    """GGUF/llama.cpp "normal" RoPE on x[..., n_tokens, n_heads, head_dim].

    Pairs (x[2i], x[2i+1]) for 2i < n_rot are rotated by theta_i = pos * base^(-2i/n_rot);
    dimensions from n_rot on pass through unchanged.
    """
    out = x.copy()
    half = n_rot // 2
    i = np.arange(half, dtype=np.float64)
    inv_freq = base ** (-2.0 * i / n_rot)                          # [half]
    theta = positions.astype(np.float64)[:, None] * inv_freq[None]  # [n, half]
    cos = np.cos(theta)[:, None, :].astype(x.dtype)                # broadcast over heads
    sin = np.sin(theta)[:, None, :].astype(x.dtype)
    x0 = x[..., 0:n_rot:2]
    x1 = x[..., 1:n_rot:2]
    out[..., 0:n_rot:2] = x0 * cos - x1 * sin
    out[..., 1:n_rot:2] = x0 * sin + x1 * cos
    return out


class ActTies:
    """Rounding ties met by forward()'s 8-bit activations, for round_margin. Three roundings there
    can go the other way in an implementation whose float activations differ in the last bits: x/d to
    an int8 ("q", per element), the block scale d to fp16 ("d") and d * sum(q) to fp16 ("s", per
    block). margin[n] is each row's smallest distance from such a tie, in steps of the rounding (as
    the plain array form, which covers "q" only); where[n] names it: (kind, index in the row, the
    float32 value rounded). flips holds (kind, row, index, value) roundings to take the other way, in
    every quantization that meets that exact value (q, k and v quantize the same input, as gate and
    up do): re-running with a row's closest tie flipped shows whether that tie alone explains a
    difference."""

    def __init__(self, n: int, flips=()):
        self.margin = np.full(n, np.inf)
        self.where: list = [None] * n
        self.flips = set(flips)

    def reset(self):
        self.margin[:] = np.inf
        self.where = [None] * len(self.margin)

    def flip(self, kind: str, row: int, idx: int, value) -> bool:
        return (kind, row, idx, float(value)) in self.flips

    def note(self, kind: str, dist: np.ndarray, values: np.ndarray):
        arg = dist.argmin(axis=1)
        rows = np.arange(dist.shape[0])
        mins = dist[rows, arg]
        for row in np.nonzero(mins < self.margin)[0]:
            self.margin[row] = mins[row]
            self.where[row] = (kind, int(arg[row]), float(values[row, arg[row]]))


def _f16_tie(v: np.ndarray):
    """For float32 values: (distance from the midpoint between their two nearest fp16 values, in
    fp16 steps; the fp16 value on the other side of v from the nearest one), both float64."""
    near16 = v.astype(np.float16)
    near = near16.astype(np.float64)
    v64 = v.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        other = np.where(v64 >= near, np.nextafter(near16, np.float16(np.inf)),
                         np.nextafter(near16, np.float16(-np.inf))).astype(np.float64)
        step = np.abs(other - near)
        dist = np.where(np.isfinite(step) & (step > 0), np.abs(v64 - (near + other) / 2) / step, np.inf)
    return dist, other


def quantize_act(x: np.ndarray, round_margin=None):
    """8-bit activation blocks of the rows of x [n, cols]: returns (x_q, d16, s16, qsum) where
    x_q = d16 * q is what the integer product sees, per block [n, cols/32]: d16 = fp16(d),
    s16 = fp16(d * sum(q)), qsum = sum(q).

    round_margin [n], if given, is lowered to each row's smallest distance of x/d from a rounding
    boundary (k + 1/2): rows where it is tiny (below ~1e-4) can legitimately round the other way in
    an implementation whose float activations differ in the last bits. An ActTies instead also
    tracks the fp16 roundings and can take listed roundings the other way."""
    n, cols = x.shape
    b = x.astype(np.float32).reshape(n, cols // 32, 32)
    amax = np.max(np.abs(b), axis=-1)
    d = (amax / np.float32(127)).astype(np.float32)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, np.float32(1)), np.float32(0)).astype(np.float32)
    r = b * inv[..., None]
    q = np.rint(r)                                              # round half to even
    t = round_margin if isinstance(round_margin, ActTies) else None
    qf, rf = q.reshape(n, -1), r.reshape(n, -1)                 # views
    if t is not None:
        for kind, row, j, value in t.flips:
            if kind == "q" and float(rf[row, j]) == value:
                lo = np.floor(rf[row, j])
                qf[row, j] = lo + 1 if qf[row, j] == lo else lo
        t.note("q", np.abs(np.abs(rf - np.floor(rf)) - np.float32(0.5)), rf)
    elif round_margin is not None:
        dist = np.abs(np.abs(rf - np.floor(rf)) - np.float32(0.5)).min(axis=1)
        np.minimum(round_margin, dist, out=round_margin)
    qsum = q.sum(axis=-1)
    sd = (d * qsum.astype(np.float32)).astype(np.float32)
    d16 = d.astype(np.float16).astype(np.float64)
    s16 = sd.astype(np.float16).astype(np.float64)
    if t is not None:
        for kind, vals, out in (("d", d, d16), ("s", sd, s16)):
            dist, other = _f16_tie(vals)
            for fk, row, j, value in t.flips:
                if fk == kind and float(vals[row, j]) == value:
                    out[row, j] = other[row, j]
            t.note(kind, dist, vals)
    xq = (q.astype(np.float64) * d16[..., None]).reshape(n, cols)
    return xq, d16, s16, qsum


def linear(m: LlamaModel, x: np.ndarray, name: str, act_q8: bool, round_margin=None) -> np.ndarray:
    """x [n, in] times the weight's transpose -> [n, out]."""
    w = m.w[name]
    kind = m.types.get(name, "F32")
    if not act_q8 or kind not in A8_Q8_0_TYPES | A8_Q8_1_TYPES:
        return x @ w.T
    xq, d16, s16, qsum = quantize_act(x, round_margin)
    y = xq @ w.T       # = sum over blocks of (d_w q_w + m_w) d16 q
    if kind in A8_Q8_1_TYPES:
        # the offset term uses s16 rather than d16 * sum(q)
        y = y + (s16 - d16 * qsum) @ m.block_min[name].T
    return y.astype(m.dtype, copy=False)


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Causal grouped-query attention. q [n, H, d], k/v [n, Hkv, d] -> [n, H*d]."""
    n, n_head, d = q.shape
    n_kv = k.shape[1]
    group = n_head // n_kv
    kv_of_head = np.arange(n_head) // group
    kh = k[:, kv_of_head, :]                                   # [n, H, d]
    vh = v[:, kv_of_head, :]
    scores = np.einsum("qhd,khd->hqk", q, kh) / np.sqrt(d)      # [H, n, n]
    mask = np.triu(np.ones((n, n), dtype=bool), k=1)
    scores = np.where(mask[None], -np.inf, scores)
    scores -= scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(axis=-1, keepdims=True)
    out = np.einsum("hqk,khd->qhd", p, vh)                      # [n, H, d]
    return out.reshape(n, n_head * d)


def forward(m: LlamaModel, token_ids, positions=None, act_q8: bool = False, round_margin=None) -> np.ndarray:
    """Logits [n_tokens, vocab] for token_ids evaluated from an empty cache (act_q8: 8-bit
    activations for block-quantized weights, as llama.cpp computes them; round_margin: optional
    float array [n_tokens] filled with each position's closest activation rounding tie)."""
    c = m.cfg
    ids = check_ids(token_ids, c.vocab)
    n = len(ids)
    pos = np.arange(n) if positions is None else np.asarray(positions)
    rm = round_margin
    if isinstance(rm, ActTies):
        rm.reset()
    elif rm is not None:
        rm[:] = np.inf
    h = m.w["token_embd.weight"][ids].astype(m.dtype)
    for i in range(c.n_layer):
        p = f"blk.{i}."
        x = rms_norm(h, m.w[p + "attn_norm.weight"], c.eps)
        q = linear(m, x, p + "attn_q.weight", act_q8, rm).reshape(n, c.n_head, c.head_dim)
        k = linear(m, x, p + "attn_k.weight", act_q8, rm).reshape(n, c.n_head_kv, c.head_dim)
        v = linear(m, x, p + "attn_v.weight", act_q8, rm).reshape(n, c.n_head_kv, c.head_dim)
        q = rope_normal(q, pos, c.n_rot, c.rope_base)
        k = rope_normal(k, pos, c.n_rot, c.rope_base)
        h = h + linear(m, attention(q, k, v), p + "attn_output.weight", act_q8, rm)
        x = rms_norm(h, m.w[p + "ffn_norm.weight"], c.eps)
        g = linear(m, x, p + "ffn_gate.weight", act_q8, rm)
        u = linear(m, x, p + "ffn_up.weight", act_q8, rm)
        h = h + linear(m, silu(g) * u, p + "ffn_down.weight", act_q8, rm)
    x = rms_norm(h, m.w["output_norm.weight"], c.eps)
    return linear(m, x, "token_embd.weight" if m.tied else "output.weight", act_q8, rm)


def logits(gguf_path: str, token_ids, dtype: str = "float64", act_q8: bool = False, round_margin=None) -> np.ndarray:
    """Reference logits [len(token_ids), vocab] for a Llama GGUF."""
    return forward(load(str(gguf_path), dtype), token_ids, act_q8=act_q8, round_margin=round_margin)


def greedy(gguf_path: str, prompt_ids, n_new: int, dtype: str = "float64", stop_ids=(),
           act_q8: bool = False) -> list[int]:
    """Greedy continuation (recomputes the whole sequence each step: slow, for small checks only)."""
    m = load(str(gguf_path), dtype)
    return greedy_decode(lambda seq: forward(m, seq, act_q8=act_q8), prompt_ids, n_new, stop_ids)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: llama_numpy.py MODEL.gguf [--a8] ID [ID ...]")
    args = sys.argv[2:]
    a8 = "--a8" in args
    print(top5(logits(sys.argv[1], [int(t) for t in args if t != "--a8"], act_q8=a8)[-1]))
