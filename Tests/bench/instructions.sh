#!/usr/bin/env bash
# Instructions per decoded token: a noise-free speed figure (this VM has no hardware counters for
# `perf stat`, so valgrind's callgrind counts them). One thread, so no OpenMP spinning is counted;
# only the instructions executed inside Session.decode (and everything it calls) are collected.
#
#   bash Tests/bench/instructions.sh MODEL [GEN=32] [PROMPT=16] [extra edgeattn bench flags...]
#
# Prints the total, the per-token figure and the functions with the most inclusive instructions.
# Not part of CI (about a minute per model under valgrind).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
model=${1:?usage: instructions.sh MODEL [GEN] [PROMPT] [bench flags]}
gen=${2:-32}
prompt=${3:-16}
shift $(( $# < 3 ? $# : 3 ))
command -v valgrind >/dev/null || { echo "valgrind is missing: bash cross/setup.sh installs it" >&2; exit 1; }
cli="$root/.build/release/edgeattn"
[ -x "$cli" ] || (cd "$root" && swift build -c release --product edgeattn >&2)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# valgrind 3.19 cannot read the DWARF 5 the Swift toolchain writes; the symbol table is enough
objcopy --strip-debug "$cli" "$tmp/edgeattn"
cli="$tmp/edgeattn"
valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" --toggle-collect='*SessionC6decode*' \
    "$cli" bench -m "$model" -t 1 --prompt "$prompt" --gen "$gen" --reps 1 "$@" >"$tmp/bench.out" 2>"$tmp/vg.err" || {
    tail -20 "$tmp/vg.err" >&2; exit 1; }
total=$(callgrind_annotate "$tmp/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
echo "model: $model"
echo "decoded tokens: $gen (after a $prompt-token prompt), 1 thread, flags: ${*:-none}"
echo "instructions in decode: $total"
awk -v t="$total" -v n="$gen" 'BEGIN { printf "instructions per decoded token: %.0f (%.2f M)\n", t / n, t / n / 1e6 }'
echo "top functions (inclusive instructions per token):"
callgrind_annotate --inclusive=yes "$tmp/cg.out" 2>/dev/null |
    grep -v -e 'libc-start\|below main\|EdgeAttnCLI\|ld-linux\|SessionC6decode' |
    awk -v n="$gen" '/^ *[0-9,]+ .*[^ ]/ && !/PROGRAM TOTALS/ {
        v = $1; gsub(",", "", v); name = $0; sub(/^ *[0-9,]+ +(\([^)]*\) +)?/, "", name)
        if (++k <= 16) { sub(/ \[.*$/, "", name); sub(/^\?\?\?:/, "", name); printf "  %10.0f  %s\n", v / n, substr(name, 1, 100) } }'
