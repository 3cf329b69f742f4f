"""`edgeattn dequant` against gguf.quants.dequantize, for one tensor of every type in each model.

Both compute the same per-block formulas in float32, so they must agree to float32 rounding: every
element within 1e-6 relative (tolerance floor 1e-6 of the tensor's largest magnitude, for values that
cancel to near zero, e.g. d*q + m in Q4_1).
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest

REL_TOL = 1e-6


def pick_tensors(path: str) -> dict[str, object]:
    """type name -> the smallest tensor of that type in the file (keeps outputs small)."""
    best: dict[str, object] = {}
    for t in gguf.GGUFReader(path).tensors:
        k = t.tensor_type.name
        if k not in best or int(t.n_elements) < int(best[k].n_elements):
            best[k] = t
    return best


def compare(run_cli, model: str, t, out_dir) -> str | None:
    """None when `edgeattn dequant` matches the reference for tensor t, else a description."""
    out = out_dir / (t.name.replace("/", "_") + ".f32")
    run_cli(["dequant", "-m", model, "--tensor", t.name, "-o", out])
    ours = np.fromfile(out, dtype="<f4")
    ref = np.asarray(gguf.quants.dequantize(np.asarray(t.data), t.tensor_type), dtype=np.float32).reshape(-1)
    ne = [int(n) for n in t.shape]
    label = f"{t.name} ({t.tensor_type.name}, ne={ne})"
    if ours.size != ref.size:
        return f"{label}: wrote {out.stat().st_size} bytes = {ours.size} floats, expected {ref.size}"
    if not np.all(np.isfinite(ours)):
        return f"{label}: {int(np.sum(~np.isfinite(ours)))} non-finite values"
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    scale = float(np.max(np.abs(ref))) or 1.0
    tol = REL_TOL * np.maximum(np.abs(ref).astype(np.float64), scale)
    bad = diff > tol
    max_abs = float(diff.max())
    print(f"  {label}: max abs diff {max_abs:.3g} (max |value| {scale:.3g})")
    if bad.any():
        i = int(np.argmax(bad))
        row, col = divmod(i, ne[0])
        return (f"{label}: {int(bad.sum())} of {ref.size} elements differ beyond {REL_TOL} relative; "
                f"max abs diff {max_abs:.6g}; first at flat index {i} (row {row}, col {col}): "
                f"ours {ours[i]!r} vs reference {ref[i]!r}")
    return None


def check_model(run_cli, model: str, tmp_path, expect_types=None, only_types=None):
    tensors = pick_tensors(model)
    if expect_types is not None:
        missing = set(expect_types) - set(tensors)
        assert not missing, f"{model}: expected tensor types {sorted(missing)} not present (has {sorted(tensors)})"
    failures = []
    for kind, t in sorted(tensors.items()):
        if only_types is not None and kind not in only_types:
            continue
        msg = compare(run_cli, model, t, tmp_path)
        if msg:
            failures.append(msg)
    assert not failures, "dequant mismatches:\n" + "\n".join(failures)


@pytest.mark.slow
def test_dequant_smollm2(run_cli, smollm2_path, tmp_path):
    check_model(run_cli, smollm2_path, tmp_path, expect_types={"F32", "Q8_0", "Q4_1"})


@pytest.mark.slow
def test_dequant_gemma3(run_cli, gemma3_path, tmp_path):
    check_model(run_cli, gemma3_path, tmp_path, expect_types={"F32", "Q5_0", "Q4_K", "Q8_0", "Q6_K"})


def test_dequant_smollm2_token_embedding(run_cli, smollm2_path, tmp_path):
    """The full Q8_0 embedding (also the output head): 49152 rows, checks row addressing end to end."""
    t = next(t for t in gguf.GGUFReader(smollm2_path).tensors if t.name == "token_embd.weight")
    msg = compare(run_cli, smollm2_path, t, tmp_path)
    assert msg is None, msg


@pytest.mark.parametrize("which", ["untied", "tied"])
def test_dequant_tiny(run_cli, tiny_model_path, tiny_tied_model_path, tmp_path, which):
    model = tiny_model_path if which == "untied" else tiny_tied_model_path
    check_model(run_cli, model, tmp_path, expect_types={"F32", "F16", "Q8_0", "Q4_1"})


def test_dequant_unknown_tensor_fails(run_cli, tiny_model_path, tmp_path):
    p = run_cli(["dequant", "-m", tiny_model_path, "--tensor", "no.such.tensor", "-o", tmp_path / "x.f32"],
                check=False)
    assert p.returncode != 0, "dequant of a missing tensor should fail"
    assert p.stderr.strip(), "dequant of a missing tensor should say why on stderr"
