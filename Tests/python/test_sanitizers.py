"""AddressSanitizer + UndefinedBehaviorSanitizer builds (cross/build-lib.sh sanitize, make -C examples
sanitize) of the C programs, and a bounded libFuzzer run of the GGUF loader (cross/build-lib.sh
fuzz, Tests/fuzz/fuzz_gguf.c) seeded with the crafted files and the fixtures.

    pytest Tests/python/test_sanitizers.py       (FUZZ_SECONDS=600 for a longer run)
"""
import os
import re
import shutil
from pathlib import Path

import pytest

from c_harness import BUILD, HOST, recurrent_model, run
from c_harness import corrupt_dir, model_path  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
SAN = BUILD / (HOST + "-sanitize") / "bin"
FUZZ = BUILD / (HOST + "-fuzz") / "bin" / "fuzz_gguf"
ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1",
           EA_TEST_EXHAUSTIVE="1")  # test_api: the synthetic model cut at every header byte


def _need(path):
    if not Path(path).is_file():
        pytest.fail("%s is missing: bash cross/build-lib.sh sanitize && bash cross/build-lib.sh fuzz && "
                    "make -C examples sanitize fuzz" % path, pytrace=False)


def _clean(r, what, want_rc=0):
    err = r.stderr.decode(errors="replace")
    assert "ERROR: AddressSanitizer" not in err and "runtime error:" not in err and \
        "ERROR: LeakSanitizer" not in err, "%s:\n%s" % (what, err[-6000:])
    assert r.returncode == want_rc, "%s: exit %d\n%s" % (what, r.returncode, err[-3000:])


def test_api_under_asan_ubsan(model_path, corrupt_dir):
    _need(SAN / "test_api")
    r = run([SAN / "test_api", model_path, corrupt_dir, recurrent_model("aaren-forecaster.gguf")], timeout=1800, env=ENV)
    _clean(r, "test_api")
    assert r.stdout.decode().strip().splitlines()[-1].endswith(" 0 failed")


def test_debug_build_guards_freed_handles(model_path):
    _need(SAN / "test_debug")
    r = run([SAN / "test_debug", model_path], env=ENV)
    _clean(r, "test_debug")
    assert r.stdout.decode().strip().splitlines()[-1] == "8 passed, 0 failed", r.stdout.decode()


def test_examples_under_asan_ubsan(model_path, tmp_path):
    _need(SAN / "generate")
    _clean(run([SAN / "generate", "-m", model_path, "-p", "The capital of France is", "-n", "8", "-t", "2",
                "--attn", "dhsa", "--budget-tokens", "4", "--dhsa-global", "1", "--dhsa-local", "1",
                "--query-block", "2", "--chunk-min", "1", "--chunk-max", "2", "--dense-tail", "0"], env=ENV), "generate DHSA")
    _clean(run([SAN / "generate", "-m", model_path, "-p", "The capital of France is", "-n", "8", "--attn", "dhsa",
                "--budget-prefix-frac", "0.5", "--dhsa-global", "1", "--dhsa-local", "1", "--query-block", "2",
                "--dense-tail", "2"], env=ENV), "generate DHSA prefix fraction")
    _clean(run([SAN / "generate", "-m", model_path, "-p", "Once upon a time", "-n", "8", "--attn", "lambda",
                "--sinks", "2", "--window", "3", "--kv-bits", "4"], env=ENV), "generate Λ KV4")
    _clean(run([SAN / "generate", "-m", recurrent_model("linear-lm.gguf"), "-p", "KING:", "-n", "64"], env=ENV), "generate LM")
    ck = tmp_path / "ck.bin"
    data = "".join("%.2f\n" % (340 + i * 0.1) for i in range(300)).encode()
    _clean(run([SAN / "stream", "-m", recurrent_model("aaren-forecaster.gguf"), "--checkpoint", ck], input=data, env=ENV), "stream")
    ck.write_bytes(ck.read_bytes()[:-3])
    _clean(run([SAN / "stream", "-m", recurrent_model("aaren-forecaster.gguf"), "--checkpoint", ck], input=b"1\n", env=ENV),
           "stream with a damaged checkpoint", want_rc=1)


def _no_huge_pages():
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE
    except Exception:
        pass


def test_fuzz_gguf_loader(corrupt_dir, tmp_path):
    _need(FUZZ)
    seeds = tmp_path / "seeds"
    corpus = tmp_path / "corpus"
    seeds.mkdir()
    corpus.mkdir()
    for f in corrupt_dir.glob("syn_*.gguf"):
        shutil.copy(f, seeds)
    shutil.copy(recurrent_model("aaren-forecaster.gguf"), seeds)
    secs = int(os.environ.get("FUZZ_SECONDS", "60"))
    # Runaway allocation shows as one big malloc (a crafted dimension times a size): any single
    # allocation over 256 MiB is a finding (sessions here have a 64 MiB budget, state copies stay
    # under 128 MiB). The whole-process RSS limit is only a backstop: a clean run peaks near 0.5 GiB
    # here, but one CI host reported 4.9 GiB peak RSS with 37 MiB of live heap, an accounting effect
    # of that host (transparent huge pages or the sandbox), so it is set well above, and huge pages
    # are switched off for the fuzzer (PR_SET_THP_DISABLE is inherited across exec).
    r = run([FUZZ, "-max_total_time=%d" % secs, "-malloc_limit_mb=256", "-rss_limit_mb=12288", "-max_len=131072",
             "-print_final_stats=1", "-artifact_prefix=%s/" % tmp_path, corpus, seeds], timeout=secs + 600,
            cwd=tmp_path, preexec_fn=_no_huge_pages,
            env=dict(os.environ, ASAN_OPTIONS="quarantine_size_mb=64:malloc_context_size=20"))
    err = r.stderr.decode(errors="replace")
    execs = re.search(r"stat::number_of_executed_units: (\d+)", err)
    cov = re.findall(r"cov: (\d+)", err)
    peak = re.search(r"stat::peak_rss_mb: +(\d+)", err)
    print("fuzz: %s executions in %d s, coverage %s edges, peak RSS %s MiB" % (
        execs.group(1) if execs else "?", secs, cov[-1] if cov else "?", peak.group(1) if peak else "?"))
    crashes = list(tmp_path.glob("crash-*")) + list(tmp_path.glob("leak-*")) + list(tmp_path.glob("oom-*"))
    assert r.returncode == 0 and not crashes, "fuzzer finding %s:\n%s" % (crashes, err[-6000:])
    assert execs and int(execs.group(1)) > 1000, err[-3000:]
