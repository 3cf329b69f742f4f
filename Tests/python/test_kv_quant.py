"""8- and 4-bit KV cache (`--kv-bits 8|4`) against the numpy reference refs/kvquant_numpy.py.

The KV group (32 tokens for keys, 32 channels for values) must divide the head dimension, so the
model here is a tiny random Llama like refs/make_tiny_llama's but with heads of 64: d=256, 4 heads,
2 KV heads, FFN 128, context 256, F32/F16 tensors only (no 8-bit activations, so the only rounding
that differs from the float reference is the cache's). 150 tokens give 4 sinks, 4 complete blocks of
32 and 18 positions in the last, incomplete block.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import assert_logits_pick, diff_up_to_kv_ties, distribution_stats, max_diff
from refs import kvquant_numpy as kvref
from refs import llama_numpy as ref
from refs import make_tiny_llama

N_TOK = 150
KV_TOL = 1e-3           # ours (float32) vs reference (float64 with float32 records), abs on logits
FLOAT_TOL = 1e-3        # as test_forward.py's TINY_TOL
KV4_MEAN_KL = 0.02      # KL(kv32 || kv4), mean over positions
KV4_MIN_DIFF = 1e-3     # kv4 must move some logit by at least this much (else it was not applied)
SAME_PATH_TOL = 1e-4    # positions reading no quantized block: float cache vs quantized-cache kernel

KV_SHAPE = dict(N_EMBD=256, N_HEAD=4, N_HEAD_KV=2, HEAD_DIM=64, N_FF=128, N_CTX=256)


@pytest.fixture(scope="module")
def kv_model_path(tmp_path_factory) -> str:
    """make_tiny_llama's model with the dimensions of KV_SHAPE (float tensors only)."""
    path = tmp_path_factory.mktemp("kvq") / "tiny-llama-hd64.gguf"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in KV_SHAPE.items():
            mp.setattr(make_tiny_llama, k, v)
        make_tiny_llama.write(str(path), seed=11, float_only=True)
    cfg = ref.load(str(path)).cfg
    assert (cfg.head_dim, cfg.n_head, cfg.n_head_kv, cfg.n_ctx) == (64, 4, 2, 256)
    return str(path)


@pytest.fixture(scope="module")
def kv_converted_path(kv_model_path, run_cli, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("kvq") / "tiny-hd64-w2.gguf"
    run_cli(["convert", kv_model_path, path, "--quantizer", "rtn", "--quiet", "--plain"])
    return str(path)


def ids_of(n=N_TOK, seed=31):
    return [int(t) for t in np.random.default_rng(seed).integers(0, 299, n)]


# ---------------------------------------------------------------- the reference checks itself

def test_reference_visibility_matches_incremental_cache():
    """The vectorized visibility rule equals a cache filled token by token."""
    rng = np.random.default_rng(0)
    n, H, Hkv, d, G, S = 75, 4, 2, 8, 8, 3       # small group: several complete blocks and a partial one
    q, k, v = rng.standard_normal((n, H, d)), rng.standard_normal((n, Hkv, d)), rng.standard_normal((n, Hkv, d))
    for bits in (4, 8):
        got = kvref.attention_kvq(q, k, v, bits, G, S)
        want = kvref.attention_kvq_loop(q, k, v, bits, G, S)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    # and the quantization is visible: differs from float attention after the first complete block
    flt = ref.attention(q, k, v)
    first = S + G - 1
    np.testing.assert_allclose(got[:first], flt[:first], atol=1e-12)
    assert np.abs(got[first:] - flt[first:]).max(axis=1).min() > 0


def test_reference_records():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 32)).astype(np.float32) * 3
    x[0] = 1.25                                                   # constant record
    for bits in (4, 8):
        vals, codes, _ = kvref.quantize_records(x, bits)
        d = kvref.fp16((x.max(1) - x.min(1)) / np.float32(2 ** bits - 1)).astype(np.float64)
        assert codes.min() == 0 and codes.max() == 2 ** bits - 1
        assert np.all(vals[0] == np.float16(1.25))
        err = np.abs(vals[1:] - x[1:])
        assert np.all(err <= d[1:, None] * 0.5 * 1.01 + np.abs(x[1:]).max() * 2.0 ** -11), "record error beyond d/2"


# ---------------------------------------------------------------- the CLI against the reference

@pytest.mark.parametrize("bits", [8, 4])
def test_kv_logits_match_reference(bits, kv_model_path, cli_logits):
    ids = ids_of()
    ours = cli_logits(kv_model_path, ids, kv_bits=bits)
    per_pos = diff_up_to_kv_ties(ours, lambda stats: kvref.logits(kv_model_path, ids, bits, stats=stats),
                                 f"KV{bits}, {len(ids)} tokens vs reference", KV_TOL)
    flt = max_diff(ours, ref.logits(kv_model_path, ids), f"KV{bits} vs float-cache reference (for information)")
    bad = np.nonzero(per_pos >= KV_TOL)[0]
    assert not len(bad), (f"KV{bits}: logits differ from the reference by >= {KV_TOL} at positions "
                          f"{bad.tolist()} (worst {per_pos.max():.3g}; the float-cache reference is "
                          f"{flt.max():.3g} away)")


def test_kv32_matches_float_reference(kv_model_path, cli_logits):
    """The float cache on this model shape (baseline for the figures above)."""
    ids = ids_of()
    per_pos = max_diff(cli_logits(kv_model_path, ids, kv_bits=32), ref.logits(kv_model_path, ids), "KV32 vs reference")
    assert per_pos.max() < FLOAT_TOL


@pytest.mark.parametrize("bits", [4, 8])
def test_kv_batch_independent(bits, kv_model_path, cli_logits):
    ids = ids_of()
    base = cli_logits(kv_model_path, ids, batch=1, kv_bits=bits)
    for batch in (7, 32, N_TOK):
        got = cli_logits(kv_model_path, ids, batch=batch, kv_bits=bits)
        if not np.array_equal(got, base):
            diff = np.abs(got - base)
            pos = np.nonzero(diff.max(axis=1) > 0)[0]
            raise AssertionError(f"KV{bits}: --batch {batch} differs from --batch 1 at {len(pos)} positions, "
                                 f"first {pos[0]}, max abs diff {diff.max():.3g}")


def test_kv4_differs_from_float_but_close(kv_model_path, cli_logits):
    ids = ids_of()
    f32 = cli_logits(kv_model_path, ids, kv_bits=32).astype(np.float64)
    kv4 = cli_logits(kv_model_path, ids, kv_bits=4).astype(np.float64)
    kv8 = cli_logits(kv_model_path, ids, kv_bits=8).astype(np.float64)
    first = kvref.SINKS + kvref.GROUP - 1            # first query that reads a quantized block
    d4, d8 = np.abs(kv4 - f32).max(axis=1), np.abs(kv8 - f32).max(axis=1)
    kl4, kl8 = distribution_stats(kv4, f32), distribution_stats(kv8, f32)
    print(f"  positions < {first}: max |kv4 - kv32| {d4[:first].max():.3g}, max |kv8 - kv32| {d8[:first].max():.3g}")
    print(f"  positions >= {first}: max |kv4 - kv32| {d4[first:].max():.3g} (mean KL {kl4[first:].mean():.4g}, "
          f"max KL {kl4.max():.4g}); max |kv8 - kv32| {d8[first:].max():.3g} (mean KL {kl8[first:].mean():.3g})")
    assert d4[:first].max() < SAME_PATH_TOL and d8[:first].max() < SAME_PATH_TOL, \
        "before the first complete block every position is read exact, as with the float cache"
    assert d4[first:].max() > KV4_MIN_DIFF, f"KV4 logits equal the float cache's ({d4.max():.3g}): not quantized?"
    assert kl4.mean() < KV4_MEAN_KL, f"KV4 mean KL from the float cache {kl4.mean():.4g} >= {KV4_MEAN_KL}"
    assert d8[first:].max() < d4[first:].max() and kl8.mean() < kl4.mean(), "KV8 should be closer to float than KV4"


def test_default_kv_bits(kv_model_path, kv_converted_path, cli_logits):
    """Omitted --kv-bits: 16 for a normal file, 4 for a converted one (edgeattn.kv_bits)."""
    ids = ids_of(n=80)
    assert np.array_equal(cli_logits(kv_model_path, ids), cli_logits(kv_model_path, ids, kv_bits=16))
    default = cli_logits(kv_converted_path, ids)
    assert np.array_equal(default, cli_logits(kv_converted_path, ids, kv_bits=4)), \
        "a converted file should default to the 4-bit KV cache"
    assert not np.array_equal(default, cli_logits(kv_converted_path, ids, kv_bits=16))


def test_run_kv4_agrees_with_logits(kv_model_path, run_cli, tokenize, cli_logits):
    """`run` decodes one token at a time through the KV4 cache (crossing block boundaries); its greedy
    tokens are the argmax of `logits --kv-bits 4` over the same prefix."""
    prompt = "hello"      # this seed's model does not stop early after it (other prompts reach EOS)
    p_ids = tokenize(kv_model_path, prompt)
    out = run_cli(["run", "-m", kv_model_path, "-p", prompt, "-n", 80, "--ids", "--kv-bits", 4]).stdout
    gen = [int(t) for t in out.split()]
    seq = p_ids + gen
    assert len(seq) > kvref.SINKS + 2 * kvref.GROUP, f"only {len(gen)} tokens generated: too few blocks"
    lg = cli_logits(kv_model_path, seq[:-1], kv_bits=4)
    assert_logits_pick(lg[len(p_ids) - 1:], gen, "kv4 run")


@pytest.mark.parametrize("cmd", ["logits", "ppl", "run"])
def test_kv_bits_5_rejected(cmd, kv_model_path, run_cli, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the cat and the hat " * 40)
    args = {"logits": ["logits", "-m", kv_model_path, "--tokens", "5 6 7", "-o", tmp_path / "l.f32"],
            "ppl": ["ppl", "-m", kv_model_path, "-f", text, "--ctx", 64, "--chunks", 1],
            "run": ["run", "-m", kv_model_path, "-p", "the cat", "-n", 3]}[cmd]
    p = run_cli(args + ["--kv-bits", 5], check=False)
    assert p.returncode != 0, f"{cmd} --kv-bits 5 should be rejected"
    ok = run_cli(args + ["--kv-bits", 4], check=False)
    assert ok.returncode == 0, f"{cmd} --kv-bits 4 should run: {ok.stderr.decode(errors='replace')[-500:]}"
