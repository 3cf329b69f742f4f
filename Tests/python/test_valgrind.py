"""valgrind memcheck over the C programs: no invalid reads or writes, no use of uninitialised
values, nothing lost (definitely, indirectly or possibly) for load, generate, free; series
streaming with a checkpoint; and failing loads of damaged files. LLVM libomp's own once-per-process
runtime state is suppressed (Tests/valgrind/libomp.supp); nothing of libedgeattn is.

    pytest Tests/python/test_valgrind.py
"""
import shutil
from pathlib import Path

import pytest

from c_harness import recurrent_model, run
from c_harness import corrupt_dir, host_bins, model_path  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
VG = ["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect,possible",
      "--suppressions=%s" % (ROOT / "Tests" / "valgrind" / "libomp.supp"), "--error-exitcode=99"]


def memcheck(argv, want_rc=0, stdin=None):
    if shutil.which("valgrind") is None:
        pytest.fail("valgrind is not installed (run cross/setup.sh)", pytrace=False)
    r = run(VG + [str(a) for a in argv], input=stdin, timeout=1200)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == want_rc, "exit %d (99 = memcheck errors):\n%s" % (r.returncode, err[-6000:])
    assert "ERROR SUMMARY: 0 errors" in err, err[-6000:]
    assert "definitely lost: 0 bytes" in err or "All heap blocks were freed" in err, err[-3000:]


def test_generate_smollm2(host_bins, model_path):
    memcheck([host_bins / "generate", "-m", model_path, "-p", "The capital of France is", "-n", "3", "-t", "2"])


def test_generate_lambda_kv4(host_bins, model_path):
    memcheck([host_bins / "generate", "-m", model_path, "-p", "Once upon a time", "-n", "3", "-t", "2",
              "--attn", "lambda", "--sinks", "2", "--window", "4", "--kv-bits", "4"])


def test_generate_linear_lm(host_bins):
    memcheck([host_bins / "generate", "-m", recurrent_model("linear-lm.gguf"), "-p", "KING:", "-n", "16", "-t", "2"])


def test_stream_with_checkpoint(host_bins, tmp_path):
    ck = tmp_path / "state.bin"
    samples = "".join("%.3f\n" % (350 + 0.1 * i) for i in range(100)).encode()
    memcheck([host_bins / "stream", "-m", recurrent_model("aaren-forecaster.gguf"), "--checkpoint", ck], stdin=samples)
    memcheck([host_bins / "stream", "-m", recurrent_model("aaren-forecaster.gguf"), "--checkpoint", ck], stdin=samples)


@pytest.mark.parametrize("name", ["syn_valid.gguf", "syn_wrong_shape.gguf", "syn_missing_tensor.gguf",
                                  "syn_arch_foo.gguf"])
def test_failed_and_tiny_loads(host_bins, corrupt_dir, name):
    # a load that fails must free what it built; the valid synthetic model generates a token
    path = corrupt_dir / name
    want = 0 if name == "syn_valid.gguf" else 1
    memcheck([host_bins / "generate", "-m", path, "-p", "a", "-n", "1"], want_rc=want)
