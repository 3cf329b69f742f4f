#!/usr/bin/env bash
# Runs an aarch64 Linux program on the emulated board: qemu-aarch64 user mode with the Debian
# aarch64 sysroot. CPU model: $EA_CPU or --cpu (default cortex-a72, a Raspberry Pi 4: ARMv8.0,
# no dot-product instructions; "max" enables sdot like a Cortex-A76 / Pi 5).
# Usage: cross/run-board.sh [--cpu cortex-a72|max] PROGRAM [ARGS...]
set -euo pipefail
cpu=${EA_CPU:-cortex-a72}
if [ "${1:-}" = "--cpu" ]; then cpu=$2; shift 2; fi
[ $# -ge 1 ] || { echo "usage: run-board.sh [--cpu MODEL] PROGRAM [ARGS...]" >&2; exit 2; }
command -v qemu-aarch64 >/dev/null || { echo "run-board: qemu-aarch64 missing: run cross/setup.sh" >&2; exit 1; }
exec qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu "$cpu" "$@"
