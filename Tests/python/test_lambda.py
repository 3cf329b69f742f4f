"""Λ-shaped attention (docs/algorithms.md section 2) against the numpy reference of refs/attention_numpy.py
and against the library's own dense path.

Invariants checked: the result equals a reference that keeps keys before RoPE and rotates them
explicitly by cache slot (StreamingLLM) or caps sink distances at the training length (LM-Infinite),
far beyond the tiny model's 128-token training context; with S + W >= L the result equals dense
attention bit for bit (float, half and 4-bit caches); the answer does not depend on the prefill batch
(the ring wraps inside batches); the session's memory does not depend on the stream length; sinks
are tokens 0..S-1 (the reference attends exactly those).
"""
from __future__ import annotations

import numpy as np
import pytest

from helpers import max_diff
from refs import attention_numpy as aref
from test_forward import TINY_TOL, BATCH_TOL, check_exact, tiny_ids


def lam(s, w, mode="streaming"):
    return ["--attn", "lambda", "--sinks", s, "--window", w, "--pos-mode", mode]


@pytest.mark.parametrize("mode", ["streaming", "lm-infinite"])
@pytest.mark.parametrize("sinks,window,batch", [(4, 24, 7), (2, 40, 32), (0, 16, 5)])
def test_lambda_matches_reference_beyond_training_context(mode, sinks, window, batch, tiny_float_model_path, cli_logits):
    """300 tokens through a 128-token model: sinks shifted, ring wrapped many times, inside batches."""
    ids = tiny_ids(n=300, seed=21)
    ours = cli_logits(tiny_float_model_path, ids, batch=batch, kv_bits=32, extra=lam(sinks, window, mode))
    want = aref.lambda_logits(tiny_float_model_path, ids, sinks, window, mode)
    check_exact(ours, want, f"lambda S={sinks} W={window} {mode} batch {batch}")


def test_lambda_modes_differ_only_after_they_should(tiny_float_model_path, cli_logits):
    """StreamingLLM shifts sinks once the window is full; LM-Infinite only past the training context
    (128 tokens): before 128 + S they must agree, after it they must not (so both paths are used)."""
    ids = tiny_ids(n=200, seed=4)
    a = cli_logits(tiny_float_model_path, ids, kv_bits=32, extra=lam(4, 24, "streaming")).astype(np.float64)
    b = cli_logits(tiny_float_model_path, ids, kv_bits=32, extra=lam(4, 24, "lm-infinite")).astype(np.float64)
    d = np.abs(a - b).max(axis=1)
    assert d[:28].max() == 0, "both modes are dense-equivalent while the window holds everything"
    assert d[40:].min() > 1e-4, "StreamingLLM must shift the sinks once the window is full"


@pytest.mark.parametrize("kv_bits", [32, 16, 4])
def test_lambda_with_room_equals_dense(kv_bits, tiny_float_model_path, cli_logits):
    """S + W >= L: the same keys in the same order, so identical bits (no sink shift is needed)."""
    ids = tiny_ids(n=100, seed=9)
    dense = cli_logits(tiny_float_model_path, ids, batch=7, kv_bits=kv_bits)
    # (KV4 keeps max(kv_sinks=4, S) leading positions exact, so S > 4 changes its blocks: not dense)
    for s, w in [(4, 96), (0, 100), (10, 200)][: 2 if kv_bits == 4 else 3]:
        got = cli_logits(tiny_float_model_path, ids, batch=7, kv_bits=kv_bits, extra=lam(s, w))
        assert np.array_equal(got, dense), f"kv{kv_bits} S={s} W={w}: differs from dense by {np.abs(got - dense).max():.3g}"


@pytest.mark.parametrize("kv_bits", [32, 16, 4])
def test_lambda_batch_independent(kv_bits, tiny_float_model_path, cli_logits):
    ids = tiny_ids(n=260, seed=13)
    base = cli_logits(tiny_float_model_path, ids, batch=1, kv_bits=kv_bits, extra=lam(4, 36))
    for b in (7, 64):
        got = cli_logits(tiny_float_model_path, ids, batch=b, kv_bits=kv_bits, extra=lam(4, 36))
        check_exact(got, base, f"kv{kv_bits} lambda batch {b} vs 1", tol=BATCH_TOL)


def test_lambda_kv4_close_to_float(tiny_float_model_path, cli_logits):
    """4-bit keys/values in a Λ ring (with its block ring) stay close to the float Λ result, and are
    really quantized (not equal)."""
    ids = tiny_ids(n=260, seed=17)
    f32 = cli_logits(tiny_float_model_path, ids, kv_bits=32, extra=lam(4, 40)).astype(np.float64)
    q4 = cli_logits(tiny_float_model_path, ids, kv_bits=4, extra=lam(4, 40)).astype(np.float64)
    per = max_diff(q4, f32, "kv4 lambda vs float lambda")
    scale = np.abs(f32).max()
    assert 0 < per.max() < 0.1 * scale, f"KV4 Λ differs by {per.max():.3g} (logit scale {scale:.3g})"


def test_lambda_memory_flat(run_cli, tiny_float_model_path, tmp_path):
    """The session is the same size for 50 and for 1000 tokens of stream (and far beyond the
    model's context), and a dense session of that length is refused."""
    text = tmp_path / "t.txt"
    text.write_text(" ".join(["to be or not to be that is the question"] * 80))
    sizes = []
    for n in (50, 1000):
        r = run_cli(["ppl", "-m", tiny_float_model_path, "-f", text, "--stream", "--max-tokens", n,
                     "--segment", 25, "--kv-bits", 32] + lam(4, 28))
        line = [l for l in r.stderr.decode().splitlines() if "session" in l][0]
        sizes.append(int(line.split("session ")[1].split(" bytes")[0]))
        out = r.stdout.decode()
        assert "context limit" not in out
        assert out.count("segment ") == (n - 1 + 24) // 25
    assert sizes[0] == sizes[1], sizes
    r = run_cli(["ppl", "-m", tiny_float_model_path, "-f", text, "--stream", "--max-tokens", 1000,
                 "--segment", 100, "--kv-bits", 32])
    assert "context limit: stopped after 128 of 1000 tokens" in r.stdout.decode()
