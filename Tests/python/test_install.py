"""`cross/build-lib.sh install PREFIX` and pkg-config, the way a user builds against the library:

    bash cross/build-lib.sh install PREFIX
    cc examples/simple.c $(PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs edgeattn)
    aarch64-linux-gnu-gcc examples/simple.c \\
        $(PKG_CONFIG_PATH=PREFIX/aarch64-linux-gnu/lib/pkgconfig pkg-config --cflags --libs edgeattn)

The install uses the libraries already in build/ (EA_BUILD), as the other C-level tests do. The host
program and the board's (under qemu-aarch64) must print the same text.
"""
import os
import re
import shlex
import shutil

import pytest

from c_harness import AARCH64, BUILD, HOST, QEMU_TIMEOUT, REPO, lib_path, run
from c_harness import model_path  # noqa: F401 (fixture)

PROMPT = "The capital of France is"
N_TOKENS = 16


def _tool(name):
    if shutil.which(name) is None:
        pytest.fail("%s is not installed (run cross/setup.sh)" % name, pytrace=False)


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    for triple in (HOST, AARCH64):
        if not lib_path(triple).is_file():
            pytest.fail("%s is missing: build it first (cross/build-lib.sh all)" % lib_path(triple), pytrace=False)
    p = tmp_path_factory.mktemp("prefix")
    r = run(["bash", REPO / "cross" / "build-lib.sh", "install", p], env=dict(os.environ, OUT=str(BUILD)))
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return p


def _pkg_config(pcdir, *args):
    _tool("pkg-config")
    r = run(["pkg-config"] + list(args) + ["edgeattn"], env=dict(os.environ, PKG_CONFIG_PATH=str(pcdir)))
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout.decode()


def _build_simple(cc, pcdir, out):
    _tool(cc)
    flags = shlex.split(_pkg_config(pcdir, "--cflags", "--libs"))
    r = run([cc, REPO / "examples" / "simple.c", "-o", out] + flags)
    assert r.returncode == 0, "%s simple.c %s failed:\n%s" % (cc, " ".join(flags), r.stderr.decode(errors="replace"))
    return out


@pytest.fixture(scope="module")
def host_text(prefix, model_path, tmp_path_factory):
    exe = _build_simple("cc", prefix / "lib" / "pkgconfig", tmp_path_factory.mktemp("host") / "simple")
    r = run([exe, model_path, PROMPT, str(N_TOKENS)])
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout


def test_install_layout(prefix):
    header = (REPO / "include" / "edgeattn.h").read_text()
    version = ".".join(re.search(r"^#define EA_VERSION_%s (\d+)$" % k, header, re.M).group(1)
                       for k in ("MAJOR", "MINOR", "PATCH"))
    for root, triple in ((prefix, HOST), (prefix / AARCH64, AARCH64)):
        for f in ("include/edgeattn.h", "lib/libedgeattn.a", "lib/pkgconfig/edgeattn.pc"):
            assert (root / f).is_file(), "%s not installed" % (root / f)
        assert (root / "lib" / "libedgeattn.a").read_bytes() == lib_path(triple).read_bytes()
        assert _pkg_config(root / "lib" / "pkgconfig", "--modversion").strip() == version
    assert not [p.name for p in prefix.iterdir() if p.name.startswith(".")], "staging folder left behind"


def test_host_simple_via_pkg_config(host_text):
    # llama.cpp's greedy continuation on the same file starts " Paris.\n\n"
    assert host_text.startswith((PROMPT + " Paris.").encode()), host_text


def test_aarch64_simple_via_pkg_config_matches_host(prefix, model_path, host_text, tmp_path):
    _tool("qemu-aarch64")
    exe = _build_simple("aarch64-linux-gnu-gcc", prefix / AARCH64 / "lib" / "pkgconfig", tmp_path / "simple")
    r = run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", exe, model_path, PROMPT, str(N_TOKENS)],
            timeout=QEMU_TIMEOUT)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert r.stdout == host_text, "board differs from the host:\n host: %r\n arm:  %r" % (host_text, r.stdout)
