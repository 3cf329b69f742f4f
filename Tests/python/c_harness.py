"""Helpers and fixtures for the C-level tests (test_c_api.py, test_examples.py import them).

The libraries build/<triple>/libedgeattn.a must exist already (this suite never builds them);
the C programs are built with `make -C examples ...`, the model is fetched with
`examples/fetch-model.sh smollm2`, and aarch64 programs run under qemu-aarch64.
Environment: EA_BUILD overrides the build folder (default <repo>/build).
"""
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("EA_BUILD", REPO / "build")).resolve()
HOST = "x86_64-linux-gnu"
AARCH64 = "aarch64-linux-gnu"
QEMU_CPUS = ["cortex-a72", "max"]  # Pi 4 (ARMv8.0, NEON path) and everything (sdot path)
QEMU_TIMEOUT = 1800
HOST_TIMEOUT = 600


def lib_path(triple):
    return BUILD / triple / "libedgeattn.a"


def bin_path(triple, name):
    return BUILD / triple / "bin" / name


def qemu(cpu, argv):
    """The command line that runs an aarch64 program on the emulated board."""
    return ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", "-cpu", cpu] + [str(a) for a in argv]


def run(cmd, timeout=HOST_TIMEOUT, **kw):
    """Runs cmd, returns CompletedProcess with bytes stdout/stderr."""
    return subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, **kw)


def _need_lib(triple):
    lib = lib_path(triple)
    if not lib.is_file():
        pytest.fail("%s is missing: build libedgeattn.a for %s first (see cross/); these tests "
                    "only build the C programs" % (lib, triple), pytrace=False)


def _make(*targets):
    r = run(["make", "-C", REPO / "examples", "BUILD=%s" % BUILD] + list(targets))
    if r.returncode != 0:
        pytest.fail("make %s failed:\n%s%s" % (" ".join(targets), r.stdout.decode(errors="replace"),
                                               r.stderr.decode(errors="replace")), pytrace=False)


@pytest.fixture(scope="session")
def host_bins():
    _need_lib(HOST)
    _make("all", "test-progs")
    return BUILD / HOST / "bin"


@pytest.fixture(scope="session")
def aarch64_bins():
    for tool in ("aarch64-linux-gnu-gcc", "qemu-aarch64"):
        if shutil.which(tool) is None:
            pytest.fail("%s is not installed (run cross/setup.sh)" % tool, pytrace=False)
    _need_lib(AARCH64)
    _make("aarch64", "test-progs-aarch64")
    return BUILD / AARCH64 / "bin"


@pytest.fixture(scope="session")
def model_path():
    r = run(["bash", REPO / "examples" / "fetch-model.sh", "smollm2"], timeout=1800)
    if r.returncode != 0:
        pytest.fail("fetch-model.sh smollm2 failed:\n" + r.stderr.decode(errors="replace"),
                    pytrace=False)
    lines = r.stdout.decode().strip().splitlines()
    path = Path(lines[-1]) if lines else None
    if path is None or not path.is_file():
        pytest.fail("fetch-model.sh printed no model path: %r" % r.stdout, pytrace=False)
    return path


@functools.lru_cache(maxsize=None)
def recurrent_model(name):
    """Path of a recurrent-mode test model (aaren-forecaster.gguf, linear-lm.gguf): trained into the
    cache by `fetch-model.sh recurrent` (the first time only), never committed."""
    r = run(["bash", REPO / "examples" / "fetch-model.sh", "recurrent"], timeout=3600)
    lines = r.stdout.decode().strip().splitlines()
    path = Path(lines[-1]) / name if r.returncode == 0 and lines else None
    if path is None or not path.is_file():
        pytest.fail("fetch-model.sh recurrent failed:\n" + r.stderr.decode(errors="replace")[-3000:], pytrace=False)
    return path


@pytest.fixture(scope="session")
def corrupt_dir(model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("corrupt")
    r = run([sys.executable, REPO / "Tests" / "python" / "make_corrupt.py", model_path, out])
    if r.returncode != 0:
        pytest.fail("make_corrupt.py failed:\n" + r.stderr.decode(errors="replace"), pytrace=False)
    return out
