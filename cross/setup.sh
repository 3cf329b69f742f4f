#!/usr/bin/env bash
# Installs everything the build, the examples and the tests need on a Debian machine:
# LLVM's OpenMP runtime and omp.h for the host (the board's programs use the cross gcc's libgomp),
# the aarch64 cross toolchain, qemu-user (the emulated board), pkg-config (for installed builds,
# cross/build-lib.sh install), and the Python reference packages. Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

need_apt=()
for p in libomp-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user make valgrind pkg-config; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt installing ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Python references (not ours): gguf reader/dequantizers, tokenizers, numpy, pytest.
py_need=()
for m in gguf tokenizers numpy pytest; do
  python3 -c "import $m" 2>/dev/null || py_need+=("$m")
done
if [ ${#py_need[@]} -gt 0 ]; then
  echo "setup: pip installing ${py_need[*]}" >&2
  python3 -m pip install -q "${py_need[@]}"
fi
echo "setup: ok" >&2
