"""Numpy references for the attention policies (docs/algorithms.md sections 2-3), written from the papers
independently of the library: a Llama forward pass (float weights) whose attention step is replaced.

- Λ-shaped, StreamingLLM: keys are kept *before* RoPE; for each query the cache (sinks, then the
  window in order) is rotated by cache slot 0..n-1 and the query by n-1 (the explicit re-indexing
  the library replaces by one rotation of the cached sink keys).
- Λ-shaped, LM-Infinite: window keys at true positions, sink i at distance min(p - i, L_train).
"""
from __future__ import annotations

import numpy as np

from refs import kvquant_numpy as kvq
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


def dhsa_chunks(k_pre: np.ndarray, min_len: int, max_len: int, thr: float, tie: float = 1e-4):
    """Chunk starts of keys k_pre [n, Hkv, d] (before RoPE) by the documented rule, and the
    smallest |cos - thr| met at a decision (a float32 implementation may decide the other way when
    it is tiny)."""
    flat = k_pre.reshape(k_pre.shape[0], -1)
    starts, acc, closest = [0], flat[0].copy(), np.inf
    for p in range(1, flat.shape[0]):
        n = p - starts[-1]
        new = n >= max_len
        if not new and n >= min_len:
            cos = flat[p] @ acc / np.sqrt((flat[p] @ flat[p]) * (acc @ acc))
            closest = min(closest, abs(cos - thr))
            new = cos < thr
        if new:
            starts.append(p)
            acc = np.zeros_like(acc)
        acc += flat[p]
    return starts, closest


def dhsa_select(qr_block: np.ndarray, kr: np.ndarray, starts: list[int], b0: int, b1: int,
                budget: int, glob: int, local: int, group: int, head_max: bool = True):
    """Key positions per kv head for query block [b0, b1] (qr_block [nq, H, d], kr [n, Hkv, d]
    after RoPE), or None for dense. Also returns the smallest score gap at the selection edge.
    A chunk's score: the largest over the kv head's query heads of (the head's summed block
    queries) . k_c (head_max), or the summed query's."""
    allowed = b1 + 1
    if budget >= allowed:
        return None, np.inf
    g = min(glob, allowed)
    ls = max(g, b0 - local)
    room = budget - g - (b1 - ls + 1)
    st = [s for s in starts if s <= b1]
    ends = st[1:] + [b1 + 1]
    mid = [c for c in range(len(st)) if ends[c] > g and st[c] < ls]
    lists, gap = [], np.inf
    for h in range(kr.shape[1]):
        qh = qr_block[:, h * group:(h + 1) * group, :].sum(axis=0)  # [group, d]
        # k_c = sqrt(n) * mean: the direct mean, no prefix sums
        kc = {c: np.sqrt(ends[c] - st[c]) * kr[st[c]:ends[c], h].mean(axis=0) for c in mid}
        score = {c: (qh @ kc[c]).max() if head_max else qh.sum(axis=0) @ kc[c] for c in mid}
        order = sorted(mid, key=lambda c: (-score[c], c))
        take, left = {}, room
        for r, c in enumerate(order):
            if left <= 0:
                if r > 0:  # no room at all decides nothing
                    gap = min(gap, score[order[r - 1]] - score[c])
                break
            ov = min(ends[c], ls) - max(st[c], g)
            take[c] = min(ov, left)
            left -= take[c]
        keys = list(range(g))
        for c in mid:
            if take.get(c, 0) > 0:
                oe = min(ends[c], ls)
                keys += list(range(oe - take[c], oe))
        keys += list(range(ls, b1 + 1))
        lists.append(keys)
    return lists, gap


def dhsa_logits(gguf_path: str, token_ids, *, budget: int, glob: int, local: int, min_len: int,
                max_len: int, thr: float, qblock: int, batch: int, head_max: bool = True,
                frac: float = 0.0, dense_tail: int = 0, kv_bits: int = 32, stats=None):
    """Logits with every layer DHSA, the tokens given in one call evaluated in batches of `batch`
    (query blocks are the qblock-aligned pieces of each batch). frac > 0: a block that may see
    `allowed` keys reads min(budget, max(glob + local + qblock, ceil(frac * allowed))). The
    blocks holding the last dense_tail tokens are dense. kv_bits 8 or 4: the selected keys and values
    are read through the quantized cache of refs/kvquant_numpy.py (its visibility rule, the runtime's
    default group: 32 or the largest even divisor of the head size below it); chunking and selection
    use the float keys, as the runtime's running chunk sums do. Returns (logits, info) where info
    holds the smallest chunking and selection margins and how many blocks were sparse; stats (a
    dict), if given, receives "min_tie" as kvquant_numpy.forward's does."""
    m = ref.load(str(gguf_path), "float64")
    c = m.cfg
    group = c.n_head // c.n_head_kv
    rope = lambda x, pos: ref.rope_normal(x, np.asarray(pos), c.n_rot, c.rope_base)
    info = {"cos_margin": np.inf, "score_gap": np.inf, "sparse_blocks": 0, "chunks": [], "blocks": []}

    def attend(q, k, v):
        n = q.shape[0]
        pos = np.arange(n)
        qr, kr = rope(q, pos), rope(k, pos)
        kq, vq, useq = kr, v, np.zeros((n, n), dtype=bool)
        if kv_bits != 32:
            g = 32
            while g > 2 and c.head_dim % g:
                g -= 2
            kq, vq, tie = kvq.quantized_cache(kr, v, kv_bits, g, flips=stats.get("flips") if stats is not None else None)
            useq = kvq.reads_quantized(n, g)
            if stats is not None:
                stats["min_tie"] = min(stats.get("min_tie", np.inf), tie)
        starts, closest = dhsa_chunks(k, min_len, max_len, thr)
        info["cos_margin"] = min(info["cos_margin"], closest)
        info["chunks"].append(starts)
        blocks = []
        for s in range(0, n, batch):
            b0 = s
            while b0 < min(n, s + batch):
                b1 = min(min(n, s + batch), (b0 // qblock + 1) * qblock) - 1
                blocks.append((b0, b1))
                b0 = b1 + 1
        out = np.zeros((n, c.n_head, c.head_dim))
        for b0, b1 in blocks:
            nb = budget if frac <= 0 else min(budget, max(glob + local + qblock, int(np.ceil(frac * (b1 + 1)))))
            if dense_tail > 0 and b1 >= n - dense_tail:
                nb = b1 + 1
            lists, gap = dhsa_select(qr[b0:b1 + 1], kr, starts, b0, b1, nb, glob, local, group, head_max)
            info["score_gap"] = min(info["score_gap"], gap)
            info["blocks"].append((len(info["chunks"]) - 1, b0, b1, lists, nb))
            if lists is not None:
                info["sparse_blocks"] += 1
            for p in range(b0, b1 + 1):
                for hh in range(c.n_head):
                    kv = hh // group
                    idx = list(range(p + 1)) if lists is None else [j for j in lists[kv] if j <= p]
                    uq = useq[p, idx][:, None]
                    out[p, hh] = _softmax_attend(qr[p, hh], np.where(uq, kq[idx, kv], kr[idx, kv]),
                                                 np.where(uq, vq[idx, kv], v[idx, kv]))
        return out.reshape(n, -1)

    return forward(m, token_ids, attend), info
