"""Trains the Aaren forecaster test model on the Mauna Loa CO2 series (Tests/Fixtures/co2-monthly.csv:
monthly means of the weekly co2 data set shipped in statsmodels), with JAX, on the CPU in about a
minute. The model is not committed: `bash examples/fetch-model.sh recurrent` runs this script (in a
virtual environment with jax, gguf and numpy from PyPI) and caches the result, or by hand:

    python3 Tests/Fixtures/train/train_aaren_forecaster.py OUT.gguf

Task: one-step-ahead forecast of the monthly mean CO2 concentration (weekly data averaged per
month, gaps interpolated). Split in time: first 70% train, next 10% validation, last 20% test.
The model sees the last 13 months (standardized by the training mean/std), runs 2 Aaren blocks
(learned query per head, keys/values from the input, residual + RMSNorm + SwiGLU MLP) and predicts
the change to the next month. Training uses the direct softmax formula (masked attention of the
learned query over each prefix), which the runtime computes as a scan/RNN: the tests check both
agree through the numpy reference.
"""
import os
import sys
import json
import numpy as np
import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(__file__))
import gguf_export  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# output path (argv[1]); the report goes next to it as .json. Models are not committed: tests get
# them through `bash examples/fetch-model.sh recurrent`, which runs this script into the cache.
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "aaren-forecaster.gguf")
REPORT = os.path.splitext(OUT)[0] + ".json"
LAGS, D, H, HD, FF, LAYERS = 13, 32, 2, 16, 64, 2
EPS = 1e-5


def load_series():
    csv = os.path.join(HERE, "..", "co2-monthly.csv")
    return np.array([float(l) for l in open(csv).read().splitlines() if l and not l.startswith("#")])


def split(n):
    return int(n * 0.7), int(n * 0.8)


def lag_features(z):
    """Row t: z[t], z[t-1], ..., z[t-LAGS+1]; before the start the first value repeats (as the runtime)."""
    n = len(z)
    f = np.empty((n, LAGS), np.float32)
    for j in range(LAGS):
        idx = np.maximum(np.arange(n) - j, 0)
        f[:, j] = z[idx]
    return f


def init(key):
    ks = iter(jax.random.split(key, 64))
    def mat(r, c, s=None):
        return jax.random.normal(next(ks), (r, c)) * (s if s is not None else 1 / np.sqrt(c))
    p = {"in_w": mat(D, LAGS), "in_b": jnp.zeros(D), "out_norm": jnp.ones(D), "out_w": mat(1, D, 0.01),
         "out_b": jnp.zeros(1), "layers": []}
    for _ in range(LAYERS):
        p["layers"].append({"attn_norm": jnp.ones(D), "query": mat(H, HD, 1.0), "wk": mat(H * HD, D),
                            "wv": mat(H * HD, D), "wo": mat(D, H * HD, 0.1 / np.sqrt(H * HD)),
                            "ffn_norm": jnp.ones(D), "gate": mat(FF, D), "up": mat(FF, D),
                            "down": mat(D, FF, 0.1 / np.sqrt(FF))})
    return p


def rms(x, w):
    return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + EPS) * w


def forward(p, feats):
    n = feats.shape[0]
    x = feats @ p["in_w"].T + p["in_b"]
    mask = jnp.tril(jnp.ones((n, n), bool))
    for L in p["layers"]:
        xb = rms(x, L["attn_norm"])
        k = (xb @ L["wk"].T).reshape(n, H, HD)
        v = (xb @ L["wv"].T).reshape(n, H, HD)
        s = jnp.einsum("hd,thd->ht", L["query"], k) / np.sqrt(HD)          # (H, n)
        s = jnp.where(mask[:, None, :], s[None, :, :], -jnp.inf)             # (t, H, s)
        a = jax.nn.softmax(s, -1)
        o = jnp.einsum("ths,shd->thd", a, v).reshape(n, H * HD)
        x = x + o @ L["wo"].T
        xb = rms(x, L["ffn_norm"])
        g = xb @ L["gate"].T
        x = x + (jax.nn.silu(g) * (xb @ L["up"].T)) @ L["down"].T
    return (rms(x, p["out_norm"]) @ p["out_w"].T + p["out_b"])[:, 0]


def adam(loss, p, steps, lr, val_loss, wd=0.1):
    """AdamW with warm-up and cosine decay; keeps the parameters of the best validation loss."""
    g_fn = jax.jit(jax.value_and_grad(loss))
    v_fn = jax.jit(val_loss)
    best, best_p = float("inf"), p
    m = jax.tree_util.tree_map(jnp.zeros_like, p)
    v = jax.tree_util.tree_map(jnp.zeros_like, p)
    for t in range(1, steps + 1):
        val, g = g_fn(p)
        m = jax.tree_util.tree_map(lambda a, b: 0.9 * a + 0.1 * b, m, g)
        v = jax.tree_util.tree_map(lambda a, b: 0.999 * a + 0.001 * b * b, v, g)
        step = lr * min(1.0, t / 100) * (0.5 * (1 + np.cos(np.pi * t / steps)))
        p = jax.tree_util.tree_map(lambda a, b, c: a - step * ((b / (1 - 0.9 ** t)) /
                                   (jnp.sqrt(c / (1 - 0.999 ** t)) + 1e-8) + wd * a), p, m, v)
        if t % 25 == 0:
            vl = float(v_fn(p))
            if vl < best:
                best, best_p = vl, p
        if t % 500 == 0 or t == 1:
            print(f"step {t} train {float(val):.6f} best val {best:.6f}", flush=True)
    return best_p


def main():
    y = load_series()
    n = len(y)
    tr, va = split(n)
    mean, scale = float(y[:tr].mean()), float(y[:tr].std())
    z = ((y - mean) / scale).astype(np.float32)
    feats = jnp.asarray(lag_features(z))
    # target at t: the change to t+1, in standardized units (the head predicts it)
    delta = jnp.asarray(np.append(z[1:] - z[:-1], 0).astype(np.float32))
    rows = jnp.arange(n)
    train_rows = rows < tr - 1
    val_rows = (rows >= tr) & (rows < va - 1)

    def masked(rows_mask):
        def f(p):
            e = forward(p, feats) - delta
            return jnp.sum(jnp.where(rows_mask, e * e, 0)) / jnp.sum(rows_mask)
        return f

    p = adam(masked(train_rows), init(jax.random.PRNGKey(0)), 3000, 1e-3, masked(val_rows))
    pred = y + scale * np.asarray(forward(p, feats), np.float64)  # forecast of y[t+1] made at t
    def err(f, lo, hi):  # forecasts made at t in [lo, hi) for y[t+1]
        e = f[lo:hi] - y[lo + 1:hi + 1]
        return float(np.mean(np.abs(e))), float(np.sqrt(np.mean(e * e)))
    last = y.copy()
    seasonal = np.array([y[max(t - 11, 0)] for t in range(n)])  # the value 12 months before t+1
    # seasonal naive with drift: last year's step added to the last value
    drift = np.array([y[t] + y[max(t - 11, 0)] - y[max(t - 12, 0)] for t in range(n)])
    rep = {}
    for name, f in [("aaren", pred), ("last_value", last), ("seasonal_naive", seasonal),
                    ("seasonal_drift", drift)]:
        rep[name] = {"val_mae": err(f, tr, va - 1)[0], "test_mae": err(f, va, n - 1)[0],
                     "test_rmse": err(f, va, n - 1)[1]}
    print(json.dumps(rep, indent=1))

    t = {"input.weight": p["in_w"], "input.bias": p["in_b"], "output_norm.weight": p["out_norm"],
         "output.weight": p["out_w"], "output.bias": p["out_b"]}
    for i, L in enumerate(p["layers"]):
        b = f"blk.{i}."
        t.update({b + "attn_norm.weight": L["attn_norm"], b + "attn_query": L["query"],
                  b + "attn_k.weight": L["wk"], b + "attn_v.weight": L["wv"], b + "attn_output.weight": L["wo"],
                  b + "ffn_norm.weight": L["ffn_norm"], b + "ffn_gate.weight": L["gate"],
                  b + "ffn_up.weight": L["up"], b + "ffn_down.weight": L["down"]})
    t = {k: np.asarray(v, np.float32) for k, v in t.items()}
    gguf_export.write(OUT, n_embd=D, n_ff=FF, n_head=H, head_dim=HD, kinds=["aaren"] * LAYERS, tensors=t,
                      eps=EPS, name="aaren-forecaster-co2",
                      series={"lags": LAGS, "outputs": 1, "mean": mean, "scale": scale, "residual": True})
    with open(REPORT, "w") as f:
        json.dump({"months": n, "train": tr, "val": va - tr, "test": n - va, "errors_ppm": rep}, f, indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
