"""Allocation and concurrency guarantees, counted by Tests/c/test_alloc.c (malloc, calloc, realloc,
free and the aligned allocators interposed): zero heap calls per decoded token for every attention
policy and layer kind, the session arena == ea_estimate_session_bytes - the bookkeeping reserve and
all a session holds within the estimate, zero heap calls to create/run/free a session in a caller
workspace, 8 threads sharing one model == one session alone, the process-wide thread limit held
inside the kernels, peak RSS within the models + planned sessions + 32 MiB.

    pytest Tests/python/test_alloc.py
"""

from c_harness import QEMU_TIMEOUT, qemu, recurrent_model, run
from c_harness import aarch64_bins, host_bins, model_path  # noqa: F401 (fixtures)



def _check(r, where):
    out = r.stdout.decode(errors="replace")
    failed = [l for l in out.splitlines() if l.startswith("not ok")]
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    assert r.returncode == 0 and summary.endswith(" 0 failed"), "%s:\n%s\n%s\n%s" % (
        where, "\n".join(failed), summary, r.stderr.decode(errors="replace")[-2000:])
    assert int(summary.split()[0]) >= 50, summary


def test_alloc_host(host_bins, model_path):
    r = run([host_bins / "test_alloc", model_path, recurrent_model("linear-lm.gguf"), recurrent_model("aaren-forecaster.gguf"), "400"],
            timeout=1800)
    _check(r, "host (libomp)")


def test_alloc_board(aarch64_bins, model_path):
    # the board build uses GCC's libgomp: the same promise with another OpenMP runtime (16 steps and
    # 4 tokens per thread-test session: emulation runs about 1.5 tokens/s, and 8 sessions share 2 cores)
    r = run(qemu("cortex-a72", [aarch64_bins / "test_alloc", model_path, recurrent_model("linear-lm.gguf"),
                                recurrent_model("aaren-forecaster.gguf"), "16"]), timeout=QEMU_TIMEOUT)
    _check(r, "qemu cortex-a72 (libgomp)")


def test_alloc_host_two_planes(host_bins, model_path, run_cli, tmp_path):
    """The same promises on SmolLM2 with every layer matrix 4-bit in two W2 planes (w4g, rounded: the
    format's memory behaviour is under test, not its quality): its products read a doubled copy of
    the 8-bit activations from one more planned buffer, and nothing may allocate per token."""
    two = tmp_path / "smollm2-w4g.gguf"
    run_cli(["convert", model_path, two, "--quiet", "--plain", "--quantizer", "rtn", "--linear", "w4g576"])
    r = run([host_bins / "test_alloc", two, recurrent_model("linear-lm.gguf"), recurrent_model("aaren-forecaster.gguf"), "64"],
            timeout=1800)
    _check(r, "host, two-plane model")
