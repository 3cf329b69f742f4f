"""Runs the C API test program (Tests/c/test_api.c) on the host and on the emulated boards.

    pytest Tests/python/test_c_api.py

Needs build/x86_64-linux-gnu/libedgeattn.a and build/aarch64-linux-gnu/libedgeattn.a.
"""
import os
import re
from pathlib import Path

import gguf
import pytest

from c_harness import HOST_TIMEOUT, QEMU_CPUS, QEMU_TIMEOUT, qemu, recurrent_model, run
from c_harness import aarch64_bins, corrupt_dir, host_bins, model_path  # noqa: F401 (fixtures)

FORECASTER = recurrent_model("aaren-forecaster.gguf")


def _check_tap(r, where):
    out = r.stdout.decode(errors="replace")
    err = r.stderr.decode(errors="replace")
    failed = [l for l in out.splitlines() if l.startswith("not ok")]
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", summary)
    assert m, "%s: test_api printed no summary (exit %d, crashed?)\n%s\n%s" % (
        where, r.returncode, out[-4000:], err[-2000:])
    assert r.returncode == 0 and m.group(2) == "0", "%s: %s failed:\n%s\n%s" % (
        where, m.group(2), "\n".join(failed), err[-2000:])
    assert int(m.group(1)) > 50, "%s: only %s checks ran" % (where, m.group(1))


def test_corrupt_files_manifest(corrupt_dir):
    """The crafted files are what the manifest says: the valid base reads back with the reference
    reader, the rewritten ones are valid GGUF, every listed file exists."""
    lines = [l.split("#")[0].split() for l in (corrupt_dir / "expected.txt").read_text().splitlines()]
    entries = [l for l in lines if l]
    assert len(entries) >= 20
    for name, status in entries:
        assert (corrupt_dir / name).is_file(), name
        assert re.fullmatch(r"EA_(OK|ERR_[A-Z_]+)", status), status
    r = gguf.GGUFReader(corrupt_dir / "syn_valid.gguf")
    assert len(r.tensors) == 1 + 1 + 9 * 2
    assert len(r.fields["tokenizer.ggml.tokens"].data) == 262
    shapes = {t.name: [int(d) for d in t.shape] for t in r.tensors}
    assert shapes["token_embd.weight"] == [32, 262]
    assert shapes["blk.1.ffn_down.weight"] == [64, 32]
    wrong = gguf.GGUFReader(corrupt_dir / "syn_wrong_shape.gguf")
    assert [int(d) for d in next(t for t in wrong.tensors if t.name == "blk.0.attn_q.weight").shape] == [32, 20]
    missing = gguf.GGUFReader(corrupt_dir / "syn_missing_tensor.gguf")
    assert "blk.1.ffn_down.weight" not in {t.name for t in missing.tensors}
    foo = gguf.GGUFReader(corrupt_dir / "syn_arch_foo.gguf")
    assert "foo.block_count" in foo.fields and "llama.block_count" not in foo.fields


def test_api_host(host_bins, model_path, corrupt_dir):
    # host: the synthetic model cut at every header byte and the real one at every header boundary
    env = dict(os.environ, EA_TEST_EXHAUSTIVE="2")
    r = run([host_bins / "test_api", model_path, corrupt_dir, FORECASTER], timeout=HOST_TIMEOUT, env=env)
    _check_tap(r, "host")


@pytest.mark.slow
@pytest.mark.parametrize("cpu", QEMU_CPUS)
def test_api_aarch64(aarch64_bins, model_path, corrupt_dir, cpu):
    r = run(qemu(cpu, [aarch64_bins / "test_api", model_path, corrupt_dir, FORECASTER]), timeout=QEMU_TIMEOUT)
    _check_tap(r, "qemu -cpu " + cpu)
