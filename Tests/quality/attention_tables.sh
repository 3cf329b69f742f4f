#!/usr/bin/env bash
# Builds the README's attention-policy tables on SmolLM2 (Q4_1 source, 16-bit KV): needle accuracy
# and prefill speed at 2K/4K/8K for dense, Λ and DHSA (25% and 50% of each prefix); decode speed with 1K and
# 8K cached; Λ decode and memory after 1K vs 64K tokens; long-stream perplexity per 4K segment over
# 68K tokens of Shakespeare (dense to its 8K limit, window only, Λ). Not part of CI (about 90
# minutes on 2 cores; steps whose output exists are skipped).
# Usage: bash Tests/quality/attention_tables.sh [OUT_DIR]   (needs a release build, fetched model/data)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
EA=${EA:-$ROOT/.build/release/edgeattn}
CACHE=${EA_CACHE:-$HOME/.cache/edgeattn}
M=${MODEL:-$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf}
S=$CACHE/shakespeare
OUT=${1:-/tmp/edgeattn-attention}
DEPTHS=${DEPTHS:-0.1,0.3,0.5,0.7,0.9}
DEPTHS8K=${DEPTHS8K:-0.2,0.5,0.8}
mkdir -p "$OUT"
LAMBDA=(--attn lambda --sinks 4 --window 1020)
WINONLY=(--attn lambda --sinks 0 --window 1024)
# the filler: several plays, so 8K tokens never repeat
cat "$S/julius_caesar_gut.txt" "$S/twelfth_night_gut.txt" "$S/coriolanus_gut.txt" > "$OUT/filler.txt"
# the long stream: whole plays back to back (about 300K tokens; 64K+ are read)
cat "$S/hamlet_gut.txt" "$S/macbeth_gut.txt" "$S/othello_gut.txt" "$S/lear_gut.txt" "$S/tempest_gut.txt" \
    "$S/romeo_and_juliet_gut.txt" "$S/richard_iii_gut.txt" "$S/henry_v_gut.txt" > "$OUT/stream.txt"

field() { python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])[sys.argv[2]])" "$1" "$2"; }

# ---- needle + prefill + decode (decode timed over 16 steps after each prompt)
needle() {  # ctx, policy, depths
    local ctx=$1 pol=$2 depths=$3 a
    case $pol in
        dense) a=(--attn dense) ;;
        lambda) a=("${LAMBDA[@]}") ;;
        # DHSA x%: every query block reads x% of the keys it may see (its causal prefix), at least
        # the first 64 + the latest 128 + its own; the prompt's last 64 tokens dense (the default)
        dhsa25) a=(--attn dhsa --budget-prefix-frac 0.25) ;;
        dhsa50) a=(--attn dhsa --budget-prefix-frac 0.5) ;;
    esac
    local f="$OUT/needle-$ctx-$pol.txt"
    [ -s "$f" ] || "$EA" needle -m "$M" -f "$OUT/filler.txt" --ctx "$ctx" --depths "$depths" "${a[@]}" > "$f"
    echo "needle $ctx $pol: $(grep accuracy: "$f")" >&2
}
for pol in dense lambda dhsa25 dhsa50; do needle 1024 "$pol" 0.5; done
for ctx in 2048 4096; do for pol in dense lambda dhsa25 dhsa50; do needle "$ctx" "$pol" "$DEPTHS"; done; done
for pol in dense lambda dhsa25 dhsa50; do needle 8192 "$pol" "$DEPTHS8K"; done
{
echo "| context | dense | Λ (4 + 1020) | DHSA 25% | DHSA 50% |"
echo "|---:|---:|---:|---:|---:|"
for ctx in 2048 4096 8192; do
    row="| $ctx"
    for pol in dense lambda dhsa25 dhsa50; do
        row="$row | $(grep '^accuracy:' "$OUT/needle-$ctx-$pol.txt" | awk '{print $2}' | tr -d ,)"
    done
    echo "$row |"
done
echo
echo "| context | dense prefill tok/s | Λ tok/s | DHSA 25% tok/s (x dense) | DHSA 50% tok/s (x dense) |"
echo "|---:|---:|---:|---:|---:|"
for ctx in 2048 4096 8192; do
    d=$(field "$OUT/needle-$ctx-dense.txt" prefill_tps); l=$(field "$OUT/needle-$ctx-lambda.txt" prefill_tps)
    h25=$(field "$OUT/needle-$ctx-dhsa25.txt" prefill_tps); h50=$(field "$OUT/needle-$ctx-dhsa50.txt" prefill_tps)
    python3 -c "import sys; d,l,a,b=map(float,sys.argv[2:]); print('| %s | %.1f | %.1f | %.1f (%.2fx) | %.1f (%.2fx) |' % (sys.argv[1], d, l, a, a/d, b, b/d))" "$ctx" "$d" "$l" "$h25" "$h50"
done
echo
echo "| policy | decode tok/s, 1K cached | decode tok/s, 8K cached | 8K / 1K |"
echo "|---|---:|---:|---:|"
for pol in dense lambda dhsa25 dhsa50; do
    a=$(field "$OUT/needle-1024-$pol.txt" decode_tps); b=$(field "$OUT/needle-8192-$pol.txt" decode_tps)
    python3 -c "import sys; a,b=map(float,sys.argv[2:]); print('| %s | %.1f | %.1f | %.2f |' % (sys.argv[1], a, b, b/a))" "$pol" "$a" "$b"
done
} > "$OUT/needle-table.md"
cat "$OUT/needle-table.md"

# ---- Λ decode and memory after 1K and 64K tokens
for p in 1024 65536; do
    [ -s "$OUT/bench-lambda-$p.txt" ] || "$EA" bench -m "$M" --prompt "$p" --gen 64 --reps 1 --batch 256 "${LAMBDA[@]}" > "$OUT/bench-lambda-$p.txt"
done
{
echo "| Λ (4 + 1020) | decode tok/s | session bytes | peak RSS MiB |"
echo "|---|---:|---:|---:|"
for p in 1024 65536; do
    python3 - "$OUT/bench-lambda-$p.txt" "$p" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print("| after %s tokens | %.1f | %d | %.0f |" % (sys.argv[2], j["decode_tps"], j["session_bytes"], j["peak_bytes"] / 1048576))
PY
done
} > "$OUT/lambda-table.md"
cat "$OUT/lambda-table.md"

# ---- long-stream perplexity per 4K segment
stream() {  # name, max tokens, args...
    local name=$1 n=$2; shift 2
    [ -s "$OUT/stream-$name.txt" ] || "$EA" ppl -m "$M" -f "$OUT/stream.txt" --stream --segment 4096 --max-tokens "$n" --batch 256 "$@" > "$OUT/stream-$name.txt"
}
stream dense 8192 --attn dense
stream window 69632 "${WINONLY[@]}"
stream lambda 69632 "${LAMBDA[@]}"
python3 - "$OUT" <<'PY' > "$OUT/stream-table.md"
import re, sys
out = sys.argv[1]
cols = [("dense", "dense (8K limit)"), ("window", "window only (0 + 1024)"), ("lambda", "Λ StreamingLLM (4 + 1020)")]
data = {}
for name, _ in cols:
    data[name] = [float(m.group(1)) for m in re.finditer(r"^segment \d+ tokens \d+-\d+: ppl ([0-9.]+)", open(f"{out}/stream-{name}.txt").read(), re.M)]
n = max(len(v) for v in data.values())
print("| tokens | " + " | ".join(t for _, t in cols) + " |")
print("|---|" + "---:|" * len(cols))
for i in range(n):
    cells = ["%.2f" % data[k][i] if i < len(data[k]) else "" for k, _ in cols]
    print(f"| {i * 4}K-{(i + 1) * 4}K | " + " | ".join(cells) + " |")
PY
cat "$OUT/stream-table.md"
