"""Float64 numpy references for the recurrent-mode models (README "Recurrent mode"), read straight
from the GGUF file with the PyPI `gguf` reader and written from docs/algorithms.md sections 4-5, token by
token: Aaren as its RNN (m, c, a) over the learned query's scores; decayed linear attention as the
recurrence S_t = lambda S_(t-1) + k_t^T v_t, o_t = q_t S_t. No scans, no chunks: the runtime's
blocked scan and chunked forms are checked against these.
"""
from __future__ import annotations

import numpy as np
import gguf

from .common import gguf_field
from .llama_numpy import rope_normal


class RecurrentModel:
    def __init__(self, path: str):
        r = gguf.GGUFReader(path)
        assert gguf_field(r, "general.architecture") == "edgeattn"
        a = "edgeattn."
        self.d = int(gguf_field(r, a + "embedding_length"))
        self.n_layer = int(gguf_field(r, a + "block_count"))
        self.n_head = int(gguf_field(r, a + "attention.head_count"))
        self.head_dim = int(gguf_field(r, a + "attention.key_length"))
        self.eps = float(gguf_field(r, a + "attention.layer_norm_rms_epsilon"))
        self.kinds = list(gguf_field(r, a + "layer_kinds"))
        self.feature_map = gguf_field(r, a + "linear.feature_map") or "none"
        self.rope_base = float(gguf_field(r, a + "rope.freq_base") or 10000.0)
        lags = gguf_field(r, a + "series.lags")
        self.series = None
        if lags is not None:
            self.series = dict(lags=int(lags), outputs=int(gguf_field(r, a + "series.outputs")),
                               mean=float(gguf_field(r, a + "series.mean")),
                               scale=float(gguf_field(r, a + "series.scale")),
                               residual=bool(gguf_field(r, a + "series.residual")))
        self.w = {}
        for t in r.tensors:
            if t.tensor_type != gguf.GGMLQuantizationType.F32:
                raise ValueError(f"the reference reads F32 fixtures; {t.name} is {t.tensor_type.name}")
            self.w[t.name] = np.asarray(t.data, dtype=np.float64).reshape([int(x) for x in reversed(t.shape)])

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x) + self.eps) * w

    def fmap(self, x):
        if self.feature_map == "silu":
            return x / (1 + np.exp(-x))
        if self.feature_map == "elu1":
            return np.where(x > 0, x + 1, np.exp(x))
        return x

    def new_state(self):
        st = []
        H, hd = self.n_head, self.head_dim
        for kind in self.kinds:
            if kind == "aaren":
                st.append({"m": np.full(H, -np.inf), "c": np.zeros(H), "a": np.zeros((H, hd))})
            elif kind == "linear":
                st.append({"S": np.zeros((H, hd, hd))})
            elif kind == "softmax":  # hybrids: a plain growing KV cache, keys after RoPE
                st.append({"K": [], "V": [], "pos": 0})
            else:
                raise ValueError(f"unknown layer kind {kind}")
        return st

    def step(self, x, st):
        """One position through every layer: x (d,) -> final hidden (d,), state updated."""
        H, hd = self.n_head, self.head_dim
        for l, kind in enumerate(self.kinds):
            p = f"blk.{l}."
            xb = self.rms(x, self.w[p + "attn_norm.weight"])
            k = (self.w[p + "attn_k.weight"] @ xb).reshape(H, hd)
            v = (self.w[p + "attn_v.weight"] @ xb).reshape(H, hd)
            s = st[l]
            if kind == "aaren":
                q = self.w[p + "attn_query"].reshape(H, hd)
                o = np.zeros((H, hd))
                for h in range(H):
                    sc = float(q[h] @ k[h]) / np.sqrt(hd)
                    m_new = max(s["m"][h], sc)
                    decay = 0.0 if s["m"][h] == -np.inf else np.exp(s["m"][h] - m_new)
                    s["c"][h] = s["c"][h] * decay + np.exp(sc - m_new)
                    s["a"][h] = s["a"][h] * decay + v[h] * np.exp(sc - m_new)
                    s["m"][h] = m_new
                    o[h] = s["a"][h] / s["c"][h]
            elif kind == "softmax":
                q = (self.w[p + "attn_q.weight"] @ xb).reshape(H, hd)
                pos = np.array([s["pos"]])
                q = rope_normal(q[None], pos, hd, self.rope_base)[0]
                s["K"].append(rope_normal(k[None], pos, hd, self.rope_base)[0])
                s["V"].append(v)
                s["pos"] += 1
                K, Vs = np.stack(s["K"]), np.stack(s["V"])          # (t, H, hd)
                sc = np.einsum("hd,thd->ht", q, K) / np.sqrt(hd)
                w = np.exp(sc - sc.max(1, keepdims=True))
                w /= w.sum(1, keepdims=True)
                o = np.einsum("ht,thd->hd", w, Vs)
            else:
                q = self.fmap((self.w[p + "attn_q.weight"] @ xb).reshape(H, hd))
                k = self.fmap(k)
                lam = self.w[p + "attn_decay"]
                o = np.zeros((H, hd))
                for h in range(H):
                    s["S"][h] = lam[h] * s["S"][h] + np.outer(k[h], v[h])
                    o[h] = q[h] @ s["S"][h]
                if p + "attn_out_norm.weight" in self.w:
                    o = np.stack([self.rms(o[h], self.w[p + "attn_out_norm.weight"]) for h in range(H)])
                if p + "attn_gate.weight" in self.w:
                    o = o * (1 / (1 + np.exp(-(self.w[p + "attn_gate.weight"] @ xb).reshape(H, hd))))
            x = x + self.w[p + "attn_output.weight"] @ o.reshape(-1)
            xb = self.rms(x, self.w[p + "ffn_norm.weight"])
            g = self.w[p + "ffn_gate.weight"] @ xb
            x = x + self.w[p + "ffn_down.weight"] @ (g / (1 + np.exp(-g)) * (self.w[p + "ffn_up.weight"] @ xb))
        return self.rms(x, self.w["output_norm.weight"])

    def forecast(self, samples):
        """Series model: the forecast after each sample (n, outputs)."""
        sp = self.series
        st = self.new_state()
        lags = None
        out = []
        for x in samples:
            z = (x - sp["mean"]) / sp["scale"]
            lags = np.full(sp["lags"], z) if lags is None else np.concatenate([[z], lags[:-1]])
            h = self.w["input.weight"] @ lags + self.w.get("input.bias", 0)
            y = self.w["output.weight"] @ self.step(h, st) + self.w.get("output.bias", 0)
            out.append((x if sp["residual"] else sp["mean"]) + sp["scale"] * y)
        return np.array(out)

    def logits(self, ids):
        """Token model: logits after each id (n, vocab); tied head unless output.weight exists."""
        st = self.new_state()
        emb = self.w["token_embd.weight"]
        head = self.w.get("output.weight", emb)
        return np.array([head @ self.step(emb[i].copy(), st) for i in ids])
