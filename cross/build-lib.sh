#!/usr/bin/env bash
# Builds the C static library build/<triple>/libedgeattn.a: the Swift core compiled as Embedded
# Swift (no Swift runtime needed by the C program) plus the C kernels, bundled into one relocatable
# object whose only global symbols are the public ea_* API.
#
# Usage: cross/build-lib.sh [x86_64|aarch64|all|sanitize|fuzz]   (default: all)
#        cross/build-lib.sh install PREFIX [x86_64|aarch64|all]   (default: all)
#   sanitize: build/x86_64-linux-gnu-sanitize/libedgeattn.a, the host library with the C kernels
#   under AddressSanitizer + UndefinedBehaviorSanitizer (-O1 -g), for examples/Makefile's
#   `sanitize` and `fuzz` targets (the Swift core is not instrumented; ASan still guards every
#   heap block it allocates, since ASan replaces the allocator). It is also the debug build:
#   EA_DEBUG_HANDLES quarantines freed handles so that using one is an error, not a crash.
#   fuzz: build/x86_64-linux-gnu-fuzz/libedgeattn.a, the same with libFuzzer coverage and ASan in the
#   Swift core too (the GGUF parser is Swift), for `make -C examples fuzz`.
#   install: include/edgeattn.h, lib/libedgeattn.a and lib/pkgconfig/edgeattn.pc under PREFIX for
#   the host, and under PREFIX/aarch64-linux-gnu/ for the board (building a missing library first);
#   then `cc prog.c $(PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs edgeattn)`.
# Env:   SWIFT_BIN (default: dir of `swiftc` on PATH, else /opt/swift/usr/bin), OUT (default build/),
#        EA_OMP_INCLUDE (folder of omp.h) and EA_OMP_LIB (folder of libomp.so.5): the host's OpenMP,
#        default the newest /usr/lib/llvm-*
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/build}
want=${1:-all}
if [ -z "${SWIFT_BIN:-}" ]; then
  if command -v swiftc >/dev/null; then SWIFT_BIN=$(dirname "$(readlink -f "$(command -v swiftc)")"); else SWIFT_BIN=/opt/swift/usr/bin; fi
fi
swiftc=$SWIFT_BIN/swiftc
toolchain=$(cd "$SWIFT_BIN/.." && pwd)
omp_h=$(ls -d /usr/lib/llvm-*/lib/clang/*/include/omp.h 2>/dev/null | sort -V | tail -1)
omp_inc=${EA_OMP_INCLUDE:-${omp_h%/omp.h}}  # Swift's clang ships no omp.h: a system LLVM's
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
  if [ "$cc" = "$SWIFT_BIN/clang" ] && [ ! -f "$omp_inc/omp.h" ]; then
    echo "build-lib: no omp.h for Swift's clang: install libomp-dev (cross/setup.sh) or set EA_OMP_INCLUDE" >&2; exit 1
  fi
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

# The OpenMP runtime a program linking the library needs: the host kernels are compiled by Swift's
# clang (LLVM libomp, often off the loader's path), the board's by gcc (libgomp).
omp_libs() { # triple
  if [ "$1" = aarch64-linux-gnu ]; then echo "-fopenmp"; return; fi
  local d=${EA_OMP_LIB:-}
  if [ -z "$d" ] && ! ldconfig -p 2>/dev/null | grep -q 'libomp\.so\.5 '; then
    d=$(ls -d /usr/lib/llvm-*/lib/libomp.so.5 2>/dev/null | sort -V | tail -1); d=${d%/libomp.so.5}
  fi
  echo "${d:+-L$d -Wl,-rpath,$d }-l:libomp.so.5"
}

version() { # MAJOR.MINOR.PATCH from the header's EA_VERSION_* macros
  local k v parts=()
  for k in MAJOR MINOR PATCH; do
    v=$(sed -n "s/^#define EA_VERSION_$k \([0-9][0-9]*\)\$/\1/p" "$root/include/edgeattn.h")
    [ -n "$v" ] || { echo "build-lib: no EA_VERSION_$k in include/edgeattn.h" >&2; exit 1; }
    parts+=("$v")
  done
  (IFS=.; echo "${parts[*]}")
}

# Every file is written completely into a folder inside PREFIX, then renamed into place (the .pc
# last), so a failed or interrupted install leaves no half-written file.
install_to() { # prefix x86_64|aarch64|all
  local prefix=$1 which=$2 arches=() arch triple dest f ver
  case $which in
    x86_64|x86_64-linux-gnu) arches=(x86_64) ;;
    aarch64|aarch64-linux-gnu) arches=(aarch64) ;;
    all) arches=(x86_64 aarch64) ;;
    *) usage ;;
  esac
  case $prefix in *[[:space:]]*) echo "build-lib: PREFIX must not contain spaces (pkg-config)" >&2; exit 2 ;; esac
  for arch in "${arches[@]}"; do
    [ -f "$out/$arch-linux-gnu/libedgeattn.a" ] || build_one "$arch"
  done
  ver=$(version)
  mkdir -p "$prefix"; prefix=$(cd "$prefix" && pwd)
  stage=$(mktemp -d "$prefix/.edgeattn-install.XXXXXX")
  trap 'rm -rf "$stage"' EXIT
  for arch in "${arches[@]}"; do
    triple=$arch-linux-gnu
    dest=$prefix; [ "$arch" = x86_64 ] || dest=$prefix/$triple
    mkdir -p "$stage/$triple/include" "$stage/$triple/lib/pkgconfig"
    cp "$root/include/edgeattn.h" "$stage/$triple/include/"
    cp "$out/$triple/libedgeattn.a" "$stage/$triple/lib/"
    printf '%s\n' "prefix=$dest" 'includedir=${prefix}/include' 'libdir=${prefix}/lib' '' \
      'Name: edgeattn' \
      "Description: Runtime for compressed language and sequence models on ARM Linux boards ($triple)" \
      "Version: $ver" \
      'Cflags: -I${includedir}' \
      "Libs: -L\${libdir} -ledgeattn $(omp_libs "$triple") -lm -lpthread" > "$stage/$triple/lib/pkgconfig/edgeattn.pc"
    chmod 644 "$stage/$triple/include/edgeattn.h" "$stage/$triple/lib/libedgeattn.a" "$stage/$triple/lib/pkgconfig/edgeattn.pc"
  done
  for arch in "${arches[@]}"; do
    triple=$arch-linux-gnu
    dest=$prefix; [ "$arch" = x86_64 ] || dest=$prefix/$triple
    mkdir -p "$dest/include" "$dest/lib/pkgconfig"
    for f in lib/libedgeattn.a include/edgeattn.h lib/pkgconfig/edgeattn.pc; do
      mv -f "$stage/$triple/$f" "$dest/$f"
      echo "build-lib: installed $dest/$f" >&2
    done
  done
}

usage() {
  echo "usage: build-lib.sh [x86_64|aarch64|all|sanitize|fuzz] | install PREFIX [x86_64|aarch64|all]" >&2; exit 2
}

case $want in
  x86_64|aarch64|sanitize|fuzz) build_one "$want" ;;
  all) build_one x86_64; build_one aarch64 ;;
  install) { [ $# -ge 2 ] && [ $# -le 3 ]; } || usage; install_to "$2" "${3:-all}" ;;
  *) usage ;;
esac
