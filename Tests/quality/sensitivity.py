#!/usr/bin/env python3
"""Which W2 tensors are worth more bits: measured, not guessed (not part of CI).

For each candidate group of tensors (every layer's W2 matrices, and every matrix kind across the
layers), writes a copy of a converted file BASE in which that group is restored to the source
file's own tensors (SmolLM2's source is Q4_1, which our `w4` reproduces exactly), runs
`edgeattn ppl` on a text that is neither calibration nor evaluation text, and prints what each
group buys per extra bit: (PPL(base) - PPL(hybrid)) / extra Mbit. A mix for --type overrides is then
chosen greedily from that list under the bits budget.

A second round starts from the first choices: --keep GLOB restores those tensors in the base too,
and --each GLOB makes every matching W2 tensor a candidate of its own (repeatable), e.g.
`--keep 'blk.0.*' --each 'blk.1.*' --each '*attn_v*'`.

Usage: python3 Tests/quality/sensitivity.py BASE.gguf SOURCE.gguf TEXT [--chunks 6] [--out DIR]
           [--keep GLOB ...] [--each GLOB ...]
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Tests/python"))
from helpers import copy_gguf_metadata  # noqa: E402
EA = os.environ.get("EA", str(ROOT / ".build/release/edgeattn"))


def hybrid(base: str, source: str, restore: set[str], dst: str) -> None:
    """BASE with the tensors in `restore` taken from SOURCE (bytes and type), their W2 group and
    rotation keys dropped. Written to a temporary name, then renamed."""
    rb, rs = gguf.GGUFReader(base), gguf.GGUFReader(source)
    src = {t.name: t for t in rs.tensors}
    tmp = dst + ".tmp"
    w = gguf.GGUFWriter(tmp, rb.fields["general.architecture"].contents())
    drop = {f"edgeattn.w2.{n}.group_size" for n in restore} | {f"edgeattn.rotation.{n}" for n in restore}
    copy_gguf_metadata(rb, w, skip=drop)
    for t in rb.tensors:
        u = src[t.name] if t.name in restore else t
        data = np.asarray(u.data)
        if u.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            w.add_tensor(u.name, data)
        else:
            w.add_tensor(u.name, data, raw_dtype=u.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, dst)


def ppl(path: str, text: str, chunks: int) -> float:
    out = subprocess.run([EA, "ppl", "-m", path, "-f", text, "--chunks", str(chunks), "--kv-bits", "16"],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1].split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base")
    ap.add_argument("source")
    ap.add_argument("text")
    ap.add_argument("--chunks", type=int, default=6)
    ap.add_argument("--out", default="/tmp/edgeattn-sensitivity")
    ap.add_argument("--keep", action="append", default=[], help="restored in the base as well")
    ap.add_argument("--each", action="append", default=[], help="each matching tensor is a candidate")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    rb = gguf.GGUFReader(args.base)
    w2 = {f.name.split(".", 2)[2].rsplit(".", 1)[0] for f in rb.fields.values()
          if f.name.startswith("edgeattn.w2.blk.")}
    src_bits = {t.name: 8 * int(t.n_bytes) for t in gguf.GGUFReader(args.source).tensors}
    base_bits = {t.name: 8 * int(t.n_bytes) for t in rb.tensors}
    n_layers = 1 + max(int(re.match(r"blk\.(\d+)\.", n).group(1)) for n in w2)
    kinds = sorted({n.split(".")[2] for n in w2})
    keep = {n for n in w2 if any(fnmatch.fnmatchcase(n, g) for g in args.keep)}
    w2 -= keep
    if args.each:
        candidates = [(n, {n}) for n in sorted(w2) if any(fnmatch.fnmatchcase(n, g) for g in args.each)]
    else:
        candidates = [(f"blk.{l}.*", {n for n in w2 if n.startswith(f"blk.{l}.")}) for l in range(n_layers)]
        candidates += [(f"*{k}*", {n for n in w2 if n.split(".")[2] == k}) for k in kinds]
    candidates = [(name, names) for name, names in candidates if names]

    base = args.base
    if keep:
        base = os.path.join(args.out, "base.gguf")
        hybrid(args.base, args.source, keep, base)
        print(f"kept at the source's precision in the base: {', '.join(args.keep)} ({len(keep)} tensors)")
    p0 = ppl(base, args.text, args.chunks)
    print(f"base {args.base}: PPL {p0:.3f} on {args.chunks} chunks of {args.text}", flush=True)
    print("| restored to source | tensors | extra Mbit | PPL | gain | gain per Mbit |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, names in candidates:
        dst = os.path.join(args.out, "hybrid.gguf")
        hybrid(args.base, args.source, names | keep, dst)
        extra = sum(src_bits[n] - base_bits[n] for n in names) / 1e6
        p = ppl(dst, args.text, args.chunks)
        print(f"| `{name}` | {len(names)} | {extra:.2f} | {p:.3f} | {p0 - p:.3f} | {(p0 - p) / extra:.4f} |", flush=True)
        os.remove(dst)


if __name__ == "__main__":
    main()
