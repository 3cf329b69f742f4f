"""Reference for the quantized KV cache (KV8 / KV4) in plain numpy: llama_numpy's forward pass with
the attention reading keys and values as the cache holds them.

Written from the cache's description, independent of the C kernels. Per layer and kv head, with a
group of G tokens/channels (default 32) and S sink positions (default 4):

- positions p < S stay exact (float32);
- positions p >= S form blocks b of G tokens, [S + bG, S + (b+1)G); a block is quantized once it is
  complete (its last token appended). Keys (after RoPE): per channel one record over the block's G
  tokens. Values: per token one record per group of G consecutive channels of the head;
- a record over G values x: lo = min, hi = max, d = fp16(( hi - lo) / (2^bits - 1)), m = fp16(lo),
  code = clamp(round_half_even((x - m) / d), 0, 2^bits - 1) (0 if d == 0), value = code * d + m;
- a query at position t reads the sinks exact, every block ending (S + (b+1)G - 1) at or before t
  dequantized, and every other position <= t exact. So results do not depend on the batch size.

Everything else is as with a float cache. Records are computed in float32 from the float32-rounded
keys/values (as a float32 implementation stores them); the rest of the pass runs in float64.
"""

from __future__ import annotations

import numpy as np

try:
    from . import llama_numpy as base
except ImportError:  # run as a script
    import llama_numpy as base

GROUP = 32
SINKS = 4


def fp16(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


class TieFlips:
    """Codes that sit within `near` code steps of a rounding tie, and rounding chosen ones the other
    way. A float32 implementation's keys and values differ from this float64 pass's by float
    rounding, so such a code may round either way there; a test that finds ours off the reference
    can check whether rounding exactly those codes the other way reproduces ours (a wrong kernel is
    not repaired by flipping a handful of codes that were a millionth of a step from a tie).
    Elements are named (call number of quantize_records in this pass, flat index)."""

    def __init__(self, near: float = 0.0, flip=()):
        self.near, self.flip, self.calls, self.found = near, set(flip), 0, []

    def mask(self, tie: np.ndarray) -> np.ndarray:
        call = self.calls
        self.calls += 1
        for i in np.flatnonzero(tie < self.near):
            self.found.append(((call, int(i)), float(tie.flat[i])))
        m = np.zeros(tie.shape, dtype=bool)
        for c, i in self.flip:
            if c == call:
                m.flat[i] = True
        return m


def quantize_records(x, bits: int, flips: TieFlips | None = None):
    """Records over the last axis of x (rounded to float32 first).

    Returns (values float64, codes, tie) where tie is each element's distance of (x - m) / d from a
    rounding boundary k + 1/2 (in code units; inf where d == 0). flips, if given, notes the near
    ties and rounds its chosen elements to the other neighbour."""
    x = np.asarray(x, dtype=np.float32)
    qmax = np.float32(2 ** bits - 1)
    lo = x.min(axis=-1, keepdims=True)
    hi = x.max(axis=-1, keepdims=True)
    d = fp16((hi - lo) / qmax)
    m = fp16(lo)
    nz = d > 0
    r = np.where(nz, (x - m) / np.where(nz, d, np.float32(1)), np.float32(0)).astype(np.float32)
    codes = np.rint(r)
    tie = np.where(nz, np.abs(np.abs(r - np.floor(r)) - np.float32(0.5)), np.inf)
    if flips is not None:
        codes = np.where(flips.mask(tie), np.where(codes > r, np.floor(r), np.ceil(r)), codes)
    codes = np.clip(codes, 0, qmax)
    values = codes.astype(np.float64) * d.astype(np.float64) + m.astype(np.float64)
    return values, codes.astype(np.int64), tie


def quantized_cache(k, v, bits: int, group: int = GROUP, sinks: int = SINKS, flips: TieFlips | None = None):
    """k, v [n, n_kv, head_dim] -> (kq, vq, min tie): the values each complete block's records decode
    to (other positions unchanged, in float64)."""
    n, n_kv, hd = k.shape
    if hd % group:
        raise ValueError(f"value groups of {group} channels do not divide head_dim {hd}")
    kq = np.array(k, dtype=np.float64)
    vq = np.array(v, dtype=np.float64)
    min_tie = np.inf
    for b in range(max(0, (n - sinks) // group)):
        sl = slice(sinks + b * group, sinks + (b + 1) * group)
        # keys: per (head, channel) one record over the block's tokens
        vals, _, tie = quantize_records(np.transpose(k[sl], (1, 2, 0)), bits, flips)     # [n_kv, hd, G]
        kq[sl] = np.transpose(vals, (2, 0, 1))
        min_tie = min(min_tie, float(tie.min()))
        # values: per (token, head) one record per group of G channels
        vals, _, tie = quantize_records(np.asarray(v[sl]).reshape(group, n_kv, hd // group, group), bits, flips)
        vq[sl] = vals.reshape(group, n_kv, hd)
        min_tie = min(min_tie, float(tie.min()))
    return kq, vq, min_tie


def reads_quantized(n: int, group: int = GROUP, sinks: int = SINKS) -> np.ndarray:
    """[query t, position p]: True where the query at t reads position p from a quantized record."""
    pos = np.arange(n)
    block_end = np.where(pos >= sinks, sinks + ((pos - sinks) // group + 1) * group - 1, np.iinfo(np.int64).max)
    return (pos >= sinks)[None, :] & (block_end[None, :] <= pos[:, None])


def attention_kvq(q, k, v, bits: int, group: int = GROUP, sinks: int = SINKS, stats=None):
    """Causal GQA attention through the quantized cache. q [n, H, d], k/v [n, Hkv, d] -> [n, H*d]."""
    n, n_head, d = q.shape
    n_kv = k.shape[1]
    kq, vq, tie = quantized_cache(k, v, bits, group, sinks, stats.get("flips") if stats is not None else None)
    if stats is not None:
        stats["min_tie"] = min(stats.get("min_tie", np.inf), tie)
    use_q = reads_quantized(n, group, sinks)[None]                 # [1, t, p]
    kv_of_head = np.arange(n_head) // (n_head // n_kv)
    s_exact = np.einsum("qhd,khd->hqk", q, k[:, kv_of_head, :])
    s_quant = np.einsum("qhd,khd->hqk", q, kq[:, kv_of_head, :])
    scores = np.where(use_q, s_quant, s_exact) / np.sqrt(d)
    mask = np.triu(np.ones((n, n), dtype=bool), k=1)
    scores = np.where(mask[None], -np.inf, scores)
    scores -= scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(axis=-1, keepdims=True)
    out = (np.einsum("hqk,khd->qhd", np.where(use_q, 0.0, p), v[:, kv_of_head, :])
           + np.einsum("hqk,khd->qhd", np.where(use_q, p, 0.0), vq[:, kv_of_head, :]))
    return out.reshape(n, n_head * d)


def attention_kvq_loop(q, k, v, bits: int, group: int = GROUP, sinks: int = SINKS):
    """The same, token by token as a cache fills: after appending position t, quantize the block it
    completes; the query at t then reads the cache as it is. (Slow; checks attention_kvq.)"""
    n, n_head, d = q.shape
    n_kv = k.shape[1]
    ck = np.array(k, dtype=np.float64)     # the cache's view of each position
    cv = np.array(v, dtype=np.float64)
    out = np.zeros((n, n_head, d))
    for t in range(n):
        if t >= sinks and (t - sinks + 1) % group == 0:          # block [t-G+1, t] is now complete
            sl = slice(t - group + 1, t + 1)
            for h in range(n_kv):
                for c in range(d):
                    ck[sl, h, c] = quantize_records(k[sl, h, c], bits)[0]
                for tok in range(t - group + 1, t + 1):
                    for g0 in range(0, d, group):
                        cv[tok, h, g0:g0 + group] = quantize_records(v[tok, h, g0:g0 + group], bits)[0]
        for h in range(n_head):
            kv = h // (n_head // n_kv)
            s = np.array([q[t, h] @ ck[j, kv] for j in range(t + 1)]) / np.sqrt(d)
            p = np.exp(s - s.max())
            p /= p.sum()
            out[t, h] = sum(p[j] * cv[j, kv] for j in range(t + 1))
    return out.reshape(n, n_head * d)


def forward(m: base.LlamaModel, token_ids, bits: int, group: int = GROUP, sinks: int = SINKS,
            act_q8: bool = False, stats=None) -> np.ndarray:
    """llama_numpy.forward with the attention reading a `bits`-bit cache (bits 4 or 8; 32 = float).
    stats (a dict), if given, receives "min_tie": the smallest distance of a code from a rounding tie;
    a TieFlips in stats["flips"] notes near ties and rounds its chosen codes the other way."""
    if bits == 32:
        return base.forward(m, token_ids, act_q8=act_q8)
    if bits not in (4, 8):
        raise ValueError(f"bits {bits}: 4, 8 or 32")
    c = m.cfg
    ids = base.check_ids(token_ids, c.vocab)
    n = len(ids)
    pos = np.arange(n)
    lin = base.linear
    h = m.w["token_embd.weight"][ids].astype(m.dtype)
    for i in range(c.n_layer):
        p = f"blk.{i}."
        x = base.rms_norm(h, m.w[p + "attn_norm.weight"], c.eps)
        q = lin(m, x, p + "attn_q.weight", act_q8).reshape(n, c.n_head, c.head_dim)
        k = lin(m, x, p + "attn_k.weight", act_q8).reshape(n, c.n_head_kv, c.head_dim)
        v = lin(m, x, p + "attn_v.weight", act_q8).reshape(n, c.n_head_kv, c.head_dim)
        q = base.rope_normal(q, pos, c.n_rot, c.rope_base)
        k = base.rope_normal(k, pos, c.n_rot, c.rope_base)       # keys are cached after RoPE
        a = attention_kvq(q, k, v, bits, group, sinks, stats)
        h = h + lin(m, a, p + "attn_output.weight", act_q8)
        x = base.rms_norm(h, m.w[p + "ffn_norm.weight"], c.eps)
        g = lin(m, x, p + "ffn_gate.weight", act_q8)
        u = lin(m, x, p + "ffn_up.weight", act_q8)
        h = h + lin(m, base.silu(g) * u, p + "ffn_down.weight", act_q8)
    x = base.rms_norm(h, m.w["output_norm.weight"], c.eps)
    return lin(m, x, "token_embd.weight" if m.tied else "output.weight", act_q8)


def logits(gguf_path: str, token_ids, bits: int, group: int = GROUP, sinks: int = SINKS, stats=None) -> np.ndarray:
    """Reference logits [len(token_ids), vocab] of a float Llama GGUF with a `bits`-bit KV cache."""
    return forward(base.load(str(gguf_path)), token_ids, bits, group, sinks, stats=stats)
