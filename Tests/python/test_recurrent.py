"""Recurrent mode end to end (README "Recurrent mode"): the committed fixtures
aaren-forecaster.gguf and linear-lm.gguf (trained by `fetch-model.sh recurrent`) against the float64 numpy
reference (refs/recurrent_numpy.py: token-by-token RNN/recurrence written from the formulas), the
stream example's constant memory and checkpoint/resume, and host == emulated board.
"""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from c_harness import QEMU_TIMEOUT, qemu, recurrent_model, run
from c_harness import aarch64_bins, host_bins  # noqa: F401 (fixtures)
from refs.recurrent_numpy import RecurrentModel

FIX = Path(__file__).resolve().parents[1] / "Fixtures"
sys.path.insert(0, str(FIX / "train"))
import gguf_export  # noqa: E402
FORECASTER = recurrent_model("aaren-forecaster.gguf")
LM = recurrent_model("linear-lm.gguf")


def series(n, seed=0):
    """A CO2-like monthly series (trend + annual cycle + noise), not the training data."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 330 + 0.12 * t + 3 * np.sin(2 * np.pi * t / 12 + 0.3) + rng.normal(0, 0.3, n)


def lines(xs):
    return "".join("%.6f\n" % x for x in xs).encode()


def stream(bins, samples, *extra, wrap=lambda a: a, timeout=600):
    r = run(wrap([bins / "stream", "-m", FORECASTER] + list(extra)), input=lines(samples), timeout=timeout)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout.decode(), r.stderr.decode()


def parse(out):
    return np.array([float(x) for x in out.split()])


def test_forecaster_matches_numpy_reference(host_bins):
    xs = series(300)
    out, _ = stream(host_bins, xs)
    ours = parse(out)
    want = RecurrentModel(str(FORECASTER)).forecast(xs)[:, 0]
    assert ours.shape == want.shape
    # compare the predicted change (forecast - last sample): ~1 ppm, the part the network computes
    err = np.max(np.abs((ours - xs) - (want - xs)))
    assert err < 2e-3, f"forecast deltas differ from the numpy reference by up to {err:.2e} ppm"


def test_forecaster_beats_naive_baselines_on_the_test_split(host_bins):
    """The real series (Tests/Fixtures/co2-monthly.csv): forecasts made at months 420..524 of months
    421..525 (the held-out last 20%), streamed from the start so the state has seen everything before."""
    csv = FIX / "co2-monthly.csv"
    y = np.array([float(l) for l in csv.read_text().splitlines() if l and not l.startswith("#")])
    test0 = 420
    out, _ = stream(host_bins, y)
    f = parse(out)
    t = np.arange(test0, len(y) - 1)
    mae = {"aaren": np.mean(np.abs(f[t] - y[t + 1])),
           "last value": np.mean(np.abs(y[t] - y[t + 1])),
           "seasonal naive": np.mean(np.abs(y[t - 11] - y[t + 1]))}
    print("test-split MAE (ppm):", {k: round(float(v), 3) for k, v in mae.items()})
    assert mae["aaren"] < 0.75 * mae["last value"] and mae["aaren"] < 0.75 * mae["seasonal naive"], mae


def test_forecaster_board_prints_the_hosts_numbers(host_bins, aarch64_bins):
    xs = series(200, seed=1)
    host, _ = stream(host_bins, xs)
    board, _ = stream(aarch64_bins, xs, wrap=lambda a: qemu("cortex-a72", a), timeout=QEMU_TIMEOUT)
    assert board == host


def test_stream_checkpoint_kill_resume_is_identical(host_bins, tmp_path):
    xs = series(400, seed=2)
    whole, _ = stream(host_bins, xs)
    ck = tmp_path / "state.bin"
    # first process: 150 samples, then SIGTERM while it waits for more input
    p = subprocess.Popen([str(host_bins / "stream"), "-m", str(FORECASTER), "--checkpoint", str(ck)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(lines(xs[:150]))
    p.stdin.flush()
    first = [p.stdout.readline().decode() for _ in range(150)]  # every forecast printed as it arrived
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err.decode()
    assert ck.is_file() and not (tmp_path / "state.bin.tmp").exists()
    rest, err2 = stream(host_bins, xs[150:], "--checkpoint", ck)
    assert "resumed after 150 samples" in err2
    assert "".join(first) + rest == whole


def test_stream_rejects_damaged_checkpoints(host_bins, tmp_path):
    xs = series(50, seed=3)
    ck = tmp_path / "state.bin"
    stream(host_bins, xs, "--checkpoint", ck)
    good = ck.read_bytes()
    cases = {"truncated": (good[:-7], "EA_ERR_TRUNCATED"),
             "flipped payload byte": (good[:100] + bytes([good[100] ^ 1]) + good[101:], "EA_ERR_CORRUPT"),
             "not a snapshot": (b"GGUF" + good[4:], "EA_ERR_BAD_MAGIC"),
             "other configuration": (good[:8] + bytes([good[8] ^ 0xFF]) + good[9:], "EA_ERR_STATE_MISMATCH")}
    for what, (data, code) in cases.items():
        ck.write_bytes(data)
        r = run([host_bins / "stream", "-m", FORECASTER, "--checkpoint", ck], input=b"1\n")
        assert r.returncode == 1 and code in r.stderr.decode(), (what, r.stderr.decode())
        assert r.stdout == b"", what


def test_stream_memory_is_flat_over_a_million_samples(host_bins, tmp_path):
    """One process, 1,000,000 samples: its peak RSS (VmHWM, which never decreases) is read every
    10,000 samples and must not move from 20,000 samples to 1,000,000. (Across processes the figure varies by
    a few hundred kB with the loader, so the comparison stays inside one process.)"""
    f = tmp_path / "in.txt"
    f.write_bytes(lines(series(1_000_000, seed=4)))
    with open(f, "rb") as fin:
        r = subprocess.run([str(host_bins / "stream"), "-m", str(FORECASTER), "--stats-every", "10000"], stdin=fin,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=1800)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    peaks = {}
    for line in err.splitlines():
        if "peak RSS" in line:
            n = int(line.split()[1])
            peaks[n] = int(line.rsplit("peak RSS", 1)[1].split()[0])
    assert 10_000 in peaks and 20_000 in peaks and 1_000_000 in peaks, err[-2000:]
    # the first report itself may touch one more page (stdio formatting): compare from the second on
    assert peaks[20_000] - peaks[10_000] <= 4, peaks
    grown = {n: kb for n, kb in peaks.items() if n > 20_000 and kb != peaks[20_000]}
    assert not grown, f"peak RSS {peaks[20_000]} kB at 20K samples, then {grown}"


def test_linear_lm_logits_match_numpy_reference(cli_logits):
    text = b"ROMEO:\nBut soft, what light through yonder window breaks?\n"
    ids = list(text)
    want = RecurrentModel(str(LM)).logits(ids)
    for batch in (1, 64):  # recurrence and chunked prefill
        ours = cli_logits(str(LM), ids, batch=batch)
        err = np.max(np.abs(ours - want)) / np.max(np.abs(want))
        assert err < 1e-4, f"batch {batch}: logits differ from the numpy reference by {err:.2e} (relative)"
        assert (ours.argmax(1) == want.argmax(1)).mean() > 0.95


def test_linear_lm_generates_the_same_text_on_host_and_board(host_bins, aarch64_bins):
    args = ["-m", LM, "-p", "KING HENRY:\n", "-n", "80", "-t", "2"]
    h = run([host_bins / "generate"] + args)
    assert h.returncode == 0, h.stderr.decode(errors="replace")
    text = h.stdout.decode("utf-8", errors="replace")
    assert len(h.stdout) == 80 and sum(c.isalpha() for c in text) > 40, text
    b = run(qemu("cortex-a72", [aarch64_bins / "generate"] + args), timeout=QEMU_TIMEOUT)
    assert b.returncode == 0, b.stderr.decode(errors="replace")
    assert b.stdout == h.stdout


def test_series_and_text_calls_do_not_mix(host_bins, run_cli):
    for args in (["bench", "-m", FORECASTER, "--reps", "1"], ["run", "-m", FORECASTER, "-p", "x", "-n", "1"]):
        r = run_cli(args, check=False, timeout=60)
        assert r.returncode == 1 and b"EA_ERR_MODEL_KIND" in r.stderr, (args, r.stderr)
    r = run([host_bins / "stream", "-m", LM], input=b"1\n")
    assert r.returncode == 1 and "EA_ERR_MODEL_KIND" in r.stderr.decode()
    r = run([host_bins / "generate", "-m", FORECASTER, "-p", "x", "-n", "1"])
    assert r.returncode == 1 and "EA_ERR_MODEL_KIND" in r.stderr.decode(), r.stderr.decode()


def test_forecaster_runs_with_w8_w4_w2_weights(host_bins, run_cli, tmp_path):
    """`edgeattn convert` keeps the recurrent schema; the integer (A8) paths give close forecasts."""
    y = np.array([float(l) for l in (FIX / "co2-monthly.csv").read_text().splitlines() if l and not l.startswith("#")])
    t = np.arange(420, len(y) - 1)
    f32 = parse(stream(host_bins, y)[0])
    mae = lambda f: np.mean(np.abs(f[t] - y[t + 1]))  # noqa: E731
    got = {}
    for kind in ("w8", "w4", "w2g32"):
        out = tmp_path / f"f-{kind}.gguf"
        run_cli(["convert", FORECASTER, out, "--quantizer", "rtn", "--linear", kind, "--quiet", "--plain"])
        q = parse(stream(host_bins, y, wrap=lambda a, o=out: [a[0], "-m", o] + a[3:])[0])
        assert np.all(np.isfinite(q)) and q.shape == f32.shape
        got[kind] = (float(np.max(np.abs(q - f32))), float(mae(q)))
    print("max |forecast - f32| and test MAE:", got, "f32 MAE", round(float(mae(f32)), 4))
    assert got["w8"][0] < 0.1 and got["w8"][1] < 1.02 * mae(f32), got
    assert got["w4"][1] < 1.10 * mae(f32), got
    assert got["w2g32"][1] < np.mean(np.abs(y[t] - y[t + 1])), got  # still better than the last value


def test_series_model_default_conversion(run_cli, tmp_path):
    """Without --plain: the default quantizer calibrates on text, so a series model is refused with a
    message naming the quantizers that work and no file left; with one of them, the text-only parts of
    the default recipe (generated calibration, bit allocation) are skipped and the file is written."""
    p = run_cli(["convert", FORECASTER, tmp_path / "a.gguf", "--quiet"], check=False)
    assert p.returncode != 0 and b"--quantizer rtn or search" in p.stderr, p.stderr
    assert list(tmp_path.iterdir()) == []
    out = tmp_path / "b.gguf"
    r = run_cli(["convert", FORECASTER, out, "--quantizer", "search", "--quiet"])
    assert out.exists() and b"linear layers:" in r.stdout


@pytest.fixture(scope="module")
def hybrid_model(tmp_path_factory):
    """A random hybrid stack (linear, softmax, aaren, softmax layers) with the byte vocabulary."""
    rng = np.random.default_rng(5)
    d, H, hd, ff, V = 64, 4, 16, 96, 256
    kinds = ["linear", "softmax", "aaren", "softmax"]
    m = lambda r, c, s=1.0: (rng.normal(0, s / np.sqrt(c), (r, c))).astype(np.float32)  # noqa: E731
    t = {"token_embd.weight": m(V, d, 8.0), "output_norm.weight": 1 + 0.1 * rng.normal(size=d)}
    for l, kind in enumerate(kinds):
        b = f"blk.{l}."
        t.update({b + "attn_norm.weight": 1 + 0.1 * rng.normal(size=d), b + "attn_k.weight": m(H * hd, d, 2.0),
                  b + "attn_v.weight": m(H * hd, d), b + "attn_output.weight": m(d, H * hd),
                  b + "ffn_norm.weight": 1 + 0.1 * rng.normal(size=d), b + "ffn_gate.weight": m(ff, d),
                  b + "ffn_up.weight": m(ff, d), b + "ffn_down.weight": m(d, ff)})
        if kind == "aaren":
            t[b + "attn_query"] = rng.normal(0, 1, (H, hd))
        else:
            t[b + "attn_q.weight"] = m(H * hd, d, 2.0)
        if kind == "linear":
            t[b + "attn_decay"] = np.array([0.5, 0.8, 0.95, 0.99])
            t[b + "attn_gate.weight"] = m(H * hd, d)
            t[b + "attn_out_norm.weight"] = 1 + 0.1 * rng.normal(size=hd)
    path = tmp_path_factory.mktemp("hybrid") / "hybrid.gguf"
    gguf_export.write(str(path), n_embd=d, n_ff=ff, n_head=H, head_dim=hd, kinds=kinds, tensors=t, ctx=512,
                      linear={"feature_map": "elu1", "chunk": 16},
                      tokenizer={"model": "gpt2", "tokens": gguf_export.byte_tokens(), "types": [1] * 256})
    return path


def test_hybrid_stack_matches_reference_at_any_batch(hybrid_model, cli_logits):
    ids = list(b"To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer")
    want = RecurrentModel(str(hybrid_model)).logits(ids)
    for batch in (1, 7, 64):  # recurrence, chunks crossing query batches, one chunked prefill
        ours = cli_logits(str(hybrid_model), ids, batch=batch, kv_bits=32)
        err = np.max(np.abs(ours - want)) / np.max(np.abs(want))
        assert err < 1e-4, f"batch {batch}: hybrid logits differ from the reference by {err:.2e} (relative)"
