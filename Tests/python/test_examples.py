"""End-to-end checks of the example programs and of what the libraries link against.

    pytest Tests/python/test_examples.py

The same greedy text must come out of the host build and of the aarch64 build on both emulated
boards (Cortex-A72: NEON path; max: dot-product path), byte for byte.
"""
import re
import shutil

import pytest

from c_harness import AARCH64, HOST, QEMU_CPUS, QEMU_TIMEOUT, lib_path, qemu, run
from c_harness import aarch64_bins, host_bins, model_path  # noqa: F401 (fixtures)

N_TOKENS = 24
PROMPTS = [
    ("capital", ["-p", "The capital of France is"]),
    ("story", ["-p", "Once upon a time, there was a little"]),
    ("chat", ["--chat", "-p", "What is the capital of France? Answer in one sentence."]),
]
_host_cache = {}


def _generate_args(model, args, n=N_TOKENS):
    return ["-m", model, "-n", str(n), "-t", "2"] + args


def _host_text(host_bins, model, key, args):
    if key not in _host_cache:
        r = run([host_bins / "generate"] + _generate_args(model, args))
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        _host_cache[key] = r
    return _host_cache[key]


@pytest.mark.parametrize("key,args", PROMPTS, ids=[p[0] for p in PROMPTS])
def test_host_generate(host_bins, model_path, key, args):
    r = _host_text(host_bins, model_path, key, args)
    err = r.stderr.decode(errors="replace")
    assert len(r.stdout) > 0, "no text generated"
    for what in ("prompt tokens:", "prefill:", "decode:", "planned session bytes:", "peak RSS:"):
        assert what in err, "stderr lacks %r:\n%s" % (what, err)
    if key == "capital":
        assert "prompt tokens: 5" in err
        # llama.cpp's greedy continuation on the same file starts " Paris.\n\n"
        assert r.stdout.startswith(b" Paris."), r.stdout
    if key == "chat":
        assert b"<|im_start|>" not in r.stdout and b"<|im_end|>" not in r.stdout


@pytest.mark.slow
@pytest.mark.parametrize("cpu", QEMU_CPUS)
@pytest.mark.parametrize("key,args", PROMPTS, ids=[p[0] for p in PROMPTS])
def test_aarch64_matches_host(host_bins, aarch64_bins, model_path, key, args, cpu):
    want = _host_text(host_bins, model_path, key, args).stdout
    r = run(qemu(cpu, [aarch64_bins / "generate"] + _generate_args(model_path, args)),
            timeout=QEMU_TIMEOUT)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert r.stdout == want, "qemu -cpu %s differs from the host:\n host: %r\n arm:  %r" % (
        cpu, want, r.stdout)


def _nm(triple):
    tool = "aarch64-linux-gnu-nm" if triple == AARCH64 else "nm"
    if shutil.which(tool) is None:
        tool = "llvm-nm"
    return tool


@pytest.mark.parametrize("triple", [HOST, AARCH64])
def test_library_needs_no_swift_runtime(triple):
    lib = lib_path(triple)
    if not lib.is_file():
        pytest.fail("%s is missing: build the library first (see cross/)" % lib, pytrace=False)
    r = run([_nm(triple), "-u", lib])
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    # lines are "<member>.o:" headers and "                 U symbol"
    undefined = [l.split()[-1] for l in r.stdout.decode().splitlines()
                 if len(l.split()) == 2 and l.split()[0] in ("U", "w", "v")]
    assert undefined, "nm -u listed nothing for %s" % lib
    swift = [s for s in undefined if s.startswith(("swift_", "$s", "_swift"))]
    assert not swift, "undefined Swift runtime symbols in %s: %s" % (lib, swift[:20])
    # only the C API may be exported: a global swift_* definition would clash with a Swift runtime
    r = run([_nm(triple), "-g", "--defined-only", lib])
    exported = [l.split()[-1] for l in r.stdout.decode().splitlines() if len(l.split()) == 3]
    leaked = [s for s in exported if s.startswith(("swift_", "$s", "_swift"))]
    assert not leaked, "Swift runtime symbols exported by %s: %s" % (lib, leaked[:20])


def test_host_program_links_no_swift(host_bins):
    r = run(["ldd", host_bins / "generate"])
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert "libswift" not in r.stdout.decode(), r.stdout.decode()


def test_aarch64_program_links_no_swift(aarch64_bins):
    tool = "aarch64-linux-gnu-readelf" if shutil.which("aarch64-linux-gnu-readelf") else "readelf"
    r = run([tool, "-d", aarch64_bins / "generate"])
    needed = re.findall(r"\(NEEDED\).*\[(.*)\]", r.stdout.decode())
    assert not [n for n in needed if "swift" in n], needed


def test_budget_too_small_fails(host_bins, model_path):
    r = run([host_bins / "generate", "-m", model_path, "-p", "Hello", "-n", "4", "--budget", "1000"])
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0
    assert "EA_ERR_BUDGET" in err and err.startswith("generate: "), err
    assert r.stdout == b""


def test_missing_model_fails(host_bins, tmp_path):
    r = run([host_bins / "generate", "-m", tmp_path / "no-such-model.gguf", "-p", "Hi", "-n", "4"])
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0
    assert err.startswith("generate: EA_ERR_IO"), err


@pytest.mark.parametrize("bad", [["-n", "12x"], ["-n", "-3"], ["--temp", "hot"], ["--top-p", "0"],
                                 ["--seed", "-1"], ["--budget", "1e9"], ["--nope", "1"]])
def test_bad_arguments_give_usage(host_bins, bad):
    args = ["-m", "x.gguf", "-p", "Hi", "-n", "4"] + bad
    r = run([host_bins / "generate"] + args)
    assert r.returncode == 2
    assert b"usage:" in r.stderr


def test_chat_answers_piped_lines(host_bins, model_path):
    r = run([host_bins / "chat", "-m", model_path, "-n", str(N_TOKENS), "-t", "2", "-v"],
            input=b"Hi! What is your name?\nWhat is the capital of France?\n")
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, err
    replies = r.stdout.decode(errors="replace").split("\n")
    assert len([x for x in replies if x.strip()]) >= 2, r.stdout
    assert "EA_ERR" not in err, err
    # the second turn prefills only the new tokens: the first exchange stays in the KV cache
    reused = [int(x) for x in re.findall(r"reused (\d+) from the cache", err)]
    assert len(reused) == 2 and reused[0] == 0 and reused[1] > 0, err


def test_chat_reset_and_eof(host_bins, model_path):
    r = run([host_bins / "chat", "-m", model_path, "-n", "8", "-t", "2"],
            input=b"Hello\n/reset\nHello\n")
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    replies = r.stdout.split(b"\n")
    # greedy: the same first message after /reset gives the same reply
    assert len(replies) >= 3 and replies[0] == replies[1], r.stdout
