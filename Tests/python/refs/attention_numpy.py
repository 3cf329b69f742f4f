"""Numpy references for the attention policies (ALGORITHMS.md sections 2-3), written from the papers
independently of the library: a Llama forward pass (float weights) whose attention step is replaced.

- Λ-shaped, StreamingLLM: keys are kept *before* RoPE; for each query the cache (sinks, then the
  window in order) is rotated by cache slot 0..n-1 and the query by n-1 (the explicit re-indexing
  the library replaces by one rotation of the cached sink keys).
- Λ-shaped, LM-Infinite: window keys at true positions, sink i at distance min(p - i, L_train).
"""
from __future__ import annotations

import numpy as np

from refs import llama_numpy as ref


def _softmax_attend(qv: np.ndarray, ks: np.ndarray, vs: np.ndarray) -> np.ndarray:
    """qv [d], ks/vs [n, d] -> [d]."""
    s = ks @ qv / np.sqrt(qv.shape[0])
    s = np.exp(s - s.max())
    return (s / s.sum()) @ vs


def lambda_keys(p: int, sinks: int, window: int) -> list[int]:
    """Positions a query at p attends in a Λ layer: sinks, then the window."""
    return list(range(min(sinks, p + 1))) + list(range(max(sinks, p - window + 1), p + 1))


def forward(m: ref.LlamaModel, token_ids, attend) -> np.ndarray:
    """Logits [n, vocab]; attend(q_pre [n,H,d], k_pre [n,Hkv,d], v [n,Hkv,d]) -> [n, H*d] does the
    positions and the attention (q_pre, k_pre before RoPE)."""
    c = m.cfg
    ids = ref.check_ids(token_ids, c.vocab)
    n = len(ids)
    h = m.w["token_embd.weight"][ids].astype(m.dtype)
    for i in range(c.n_layer):
        p = f"blk.{i}."
        x = ref.rms_norm(h, m.w[p + "attn_norm.weight"], c.eps)
        q = ref.linear(m, x, p + "attn_q.weight", False).reshape(n, c.n_head, c.head_dim)
        k = ref.linear(m, x, p + "attn_k.weight", False).reshape(n, c.n_head_kv, c.head_dim)
        v = ref.linear(m, x, p + "attn_v.weight", False).reshape(n, c.n_head_kv, c.head_dim)
        h = h + ref.linear(m, attend(q, k, v), p + "attn_output.weight", False)
        x = ref.rms_norm(h, m.w[p + "ffn_norm.weight"], c.eps)
        g = ref.linear(m, x, p + "ffn_gate.weight", False)
        u = ref.linear(m, x, p + "ffn_up.weight", False)
        h = h + ref.linear(m, ref.silu(g) * u, p + "ffn_down.weight", False)
    x = ref.rms_norm(h, m.w["output_norm.weight"], c.eps)
    return ref.linear(m, x, "token_embd.weight" if m.tied else "output.weight", False)


def lambda_logits(gguf_path: str, token_ids, sinks: int, window: int, mode: str) -> np.ndarray:
    m = ref.load(str(gguf_path), "float64")
    c = m.cfg
    group = c.n_head // c.n_head_kv
    rope = lambda x, pos: ref.rope_normal(x, np.asarray(pos), c.n_rot, c.rope_base)

    def attend(q, k, v):
        n = q.shape[0]
        out = np.zeros((n, c.n_head, c.head_dim))
        for p in range(n):
            idx = lambda_keys(p, sinks, window)
            if mode == "streaming":
                kpos = np.arange(len(idx))            # cache slots
                qpos = len(idx) - 1
            else:                                     # lm-infinite
                kpos = np.array([p - min(p - j, c.n_ctx) if j < sinks else j for j in idx])
                qpos = p
            kr = rope(k[idx], kpos)                   # [len, Hkv, d]
            qr = rope(q[p:p + 1], [qpos])[0]          # [H, d]
            for hh in range(c.n_head):
                out[p, hh] = _softmax_attend(qr[hh], kr[:, hh // group], v[idx, hh // group])
        return out.reshape(n, -1)

    return forward(m, token_ids, attend)
