"""Every weight type the reader accepts, against the `gguf` package's dequantizers.

The real models hold only some types (test_dequant.py covers those on real data). Here each type gets
random blocks: random bytes for the quants, random finite values for the fp16/fp32 scale fields (so
both sides compute with real numbers), written into a GGUF with gguf.GGUFWriter and decoded by
`edgeattn dequant`. The result must equal gguf.quants.dequantize bit for bit (both compute the same
float32 formulas). Q8_1 and Q8_K are activation formats the `gguf` package cannot dequantize, so
they have no reference here.
"""
from __future__ import annotations

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

# (type, byte offsets of fp16 scale fields inside a block)
TYPES = [
    (T.F32, None), (T.F16, None), (T.BF16, None),
    (T.Q4_0, [0]), (T.Q4_1, [0, 2]), (T.Q5_0, [0]), (T.Q5_1, [0, 2]), (T.Q8_0, [0]),
    (T.Q2_K, [80, 82]), (T.Q3_K, [108]), (T.Q4_K, [0, 2]), (T.Q5_K, [0, 2]), (T.Q6_K, [208]),
]
ROWS = 3


def random_blocks(t, n_blocks, rng):
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[t]
    if t == T.F32:
        return rng.standard_normal(n_blocks).astype("<f4").view(np.uint8)
    if t == T.F16:
        return rng.standard_normal(n_blocks).astype("<f2").view(np.uint8)
    if t == T.BF16:
        return (rng.standard_normal(n_blocks).astype("<f4").view("<u4") >> 16).astype("<u2").view(np.uint8)
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for off in dict(TYPES)[t]:
        scales = (rng.standard_normal(n_blocks) * 0.05).astype("<f2").view(np.uint8).reshape(n_blocks, 2)
        raw[:, off:off + 2] = scales
    return raw.reshape(-1)


@pytest.mark.parametrize("qtype", [t for t, _ in TYPES], ids=[t.name for t, _ in TYPES])
def test_dequant_matches_gguf(qtype, tmp_path, run_cli):
    rng = np.random.default_rng(int(qtype) + 1)
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    cols = 512 if block_elems == 256 else 96          # whole blocks per row, several blocks
    blocks_per_row = cols // block_elems
    data = random_blocks(qtype, ROWS * blocks_per_row, rng).reshape(ROWS, blocks_per_row * block_bytes)

    path = tmp_path / f"{qtype.name}.gguf"
    w = gguf.GGUFWriter(str(path), "test")
    w.add_tensor("t", data, raw_dtype=qtype)  # byte shape (ROWS, row bytes) -> logical (ROWS, cols)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    want = gguf.quants.dequantize(data, qtype).astype(np.float32).reshape(-1)
    out = tmp_path / "out.f32"
    run_cli(["dequant", "-m", path, "--tensor", "t", "-o", out])
    got = np.fromfile(out, dtype="<f4")
    assert got.shape == want.shape, f"{qtype.name}: {got.shape} values, expected {want.shape}"
    assert np.all(np.isfinite(want)), "the generated blocks should decode to finite values"
    bad = np.nonzero(got.view("<u4") != want.view("<u4"))[0]
    assert not len(bad), (f"{qtype.name}: {len(bad)} of {want.size} values differ, first at {bad[0]}: "
                          f"ours {got[bad[0]]!r} vs gguf {want[bad[0]]!r}")
