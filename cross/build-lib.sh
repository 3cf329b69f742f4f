#!/usr/bin/env bash
# Builds the C static library build/<triple>/libedgeattn.a: the Swift core compiled as Embedded
# Swift (no Swift runtime needed by the C program) plus the C kernels, bundled into one relocatable
# object whose only global symbols are the public ea_* API.
#
# Usage: cross/build-lib.sh [x86_64|aarch64|all|sanitize|fuzz]   (default: all)
#   sanitize: build/x86_64-linux-gnu-sanitize/libedgeattn.a, the host library with the C kernels
#   under AddressSanitizer + UndefinedBehaviorSanitizer (-O1 -g), for examples/Makefile's
#   `sanitize` and `fuzz` targets (the Swift core is not instrumented; ASan still guards every
#   heap block it allocates, since ASan replaces the allocator). It is also the debug build:
#   EA_DEBUG_HANDLES quarantines freed handles so that using one is an error, not a crash.
#   fuzz: build/x86_64-linux-gnu-fuzz/libedgeattn.a, the same with libFuzzer coverage and ASan in the
#   Swift core too (the GGUF parser is Swift), for `make -C examples fuzz`.
# Env:   SWIFT_BIN (default: dir of `swiftc` on PATH, else /opt/swift/usr/bin), OUT (default build/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/build}
want=${1:-all}
if [ -z "${SWIFT_BIN:-}" ]; then
  if command -v swiftc >/dev/null; then SWIFT_BIN=$(dirname "$(readlink -f "$(command -v swiftc)")"); else SWIFT_BIN=/opt/swift/usr/bin; fi
fi
swiftc=$SWIFT_BIN/swiftc
toolchain=$(cd "$SWIFT_BIN/.." && pwd)
omp_inc=/usr/lib/llvm-14/lib/clang/14.0.6/include
mapfile -t swift_srcs < <(find "$root/Sources/EdgeAttn" -name '*.swift' | sort)
mapfile -t c_srcs < <(find "$root/Sources/EAKernels" -name '*.c' | LC_ALL=C sort)

build_one() { # arch
  local arch=$1 triple swift_target cc cflags opt=-O3 swiftflags=()
  case $arch in
    x86_64) triple=x86_64-linux-gnu; swift_target=x86_64-unknown-linux-gnu
            cc="$SWIFT_BIN/clang"; cflags=(-fopenmp -idirafter "$omp_inc") ;;
    sanitize) triple=x86_64-linux-gnu-sanitize; swift_target=x86_64-unknown-linux-gnu; opt=-O1
            # a debug build: freed handles are quarantined and a later use returns an error
            cc="$SWIFT_BIN/clang"; swiftflags=(-D EA_DEBUG_HANDLES)
            # globals are not instrumented: their registration does not survive the ld -r + localize step
            cflags=(-fopenmp -idirafter "$omp_inc" -g -fno-omit-frame-pointer -fsanitize=address,undefined -mllvm -asan-globals=0
                    -fno-sanitize-recover=undefined) ;;
    fuzz) triple=x86_64-linux-gnu-fuzz; swift_target=x86_64-unknown-linux-gnu; opt=-O1
            cc="$SWIFT_BIN/clang"; swiftflags=(-sanitize=address,fuzzer -Xllvm -asan-globals=0)
            cflags=(-fopenmp -idirafter "$omp_inc" -g -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link
                    -mllvm -asan-globals=0 -fno-sanitize-recover=undefined) ;;
    aarch64) triple=aarch64-linux-gnu; swift_target=aarch64-none-none-elf
            # baseline armv8-a: the dotprod kernel is enabled per function and chosen at run time
            cc=aarch64-linux-gnu-gcc; cflags=(-fopenmp -march=armv8-a) ;;
  esac
  local obj=$out/$triple/obj
  rm -rf "$obj"; mkdir -p "$obj"
  echo "build-lib: $triple: swift core (embedded)" >&2
  "$swiftc" -enable-experimental-feature Embedded -wmo -parse-as-library -O \
    -target "$swift_target" -module-name EdgeAttn "${swiftflags[@]}" \
    -I "$root/Sources/EAKernels/include" -Xcc -ffreestanding \
    -c "${swift_srcs[@]}" -o "$obj/core.o"
  # The core's heap goes through coreheap.c, which can serve a session's bookkeeping from a
  # caller's workspace (ea_session_params.workspace): those are its only two allocator calls.
  "$SWIFT_BIN/llvm-objcopy" --redefine-sym posix_memalign=eak_core_memalign --redefine-sym free=eak_core_free \
    "$obj/core.o"
  if "$SWIFT_BIN/llvm-nm" -u "$obj/core.o" | grep -qwE 'malloc|calloc|realloc|aligned_alloc|memalign|posix_memalign|free|malloc_usable_size'; then
    echo "build-lib: the Swift core calls an allocator coreheap.c does not route" >&2; exit 1
  fi
  echo "build-lib: $triple: kernels" >&2
  for c in "${c_srcs[@]}"; do
    "$cc" $opt -ffp-contract=off -fPIC -std=gnu11 -Wall -I "$root/Sources/EAKernels/include" "${cflags[@]}" \
      -c "$c" -o "$obj/kern_$(rel=${c#"$root"/Sources/EAKernels/}; echo "${rel%.c}" | tr / _).o"
  done
  local unicode=$toolchain/lib/swift/embedded/$swift_target/libswiftUnicodeDataTables.a
  [ -f "$unicode" ] || { echo "build-lib: missing $unicode" >&2; exit 1; }
  # One relocatable object; keep only the public API global so the embedded runtime's symbols
  # (swift_retain, ...) cannot clash with anything in the host program.
  "$SWIFT_BIN/ld.lld" -r -o "$obj/edgeattn.o" "$obj"/*.o --whole-archive "$unicode"
  "$SWIFT_BIN/llvm-objcopy" --wildcard --keep-global-symbol='ea_*' "$obj/edgeattn.o" "$obj/edgeattn-local.o"
  rm -f "$out/$triple/libedgeattn.a.tmp"
  "$SWIFT_BIN/llvm-ar" rcs "$out/$triple/libedgeattn.a.tmp" "$obj/edgeattn-local.o"
  mv "$out/$triple/libedgeattn.a.tmp" "$out/$triple/libedgeattn.a"
  echo "build-lib: $out/$triple/libedgeattn.a" >&2
}

case $want in
  x86_64|aarch64|sanitize|fuzz) build_one "$want" ;;
  all) build_one x86_64; build_one aarch64 ;;
  *) echo "usage: build-lib.sh [x86_64|aarch64|all|sanitize|fuzz]" >&2; exit 2 ;;
esac
