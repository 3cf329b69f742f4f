"""Checks shared by several test modules (kept out of the test modules so they need not import each other).

Each test keeps its own thresholds and passes them in; the helpers hold the common logic and messages.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

# llama.cpp's outputs on the same models, kept in the repository (see its README.md)
REFERENCE_DIR = Path(__file__).resolve().parents[1] / "Fixtures" / "reference"

# ---------------------------------------------------------------- logits


def max_diff(ours, want, label):
    """Per-position max abs difference of two logits arrays (shape and finiteness checked; worst printed)."""
    assert ours.shape == want.shape, f"{label}: logits shape {ours.shape}, expected {want.shape}"
    assert np.all(np.isfinite(ours)), f"{label}: non-finite logits"
    diff = np.abs(ours.astype(np.float64) - want)
    per_pos = diff.max(axis=1)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    print(f"  {label}: max abs diff {diff.max():.3g} at position {worst[0]} token {worst[1]} "
          f"(reference logits in [{want.min():.2f}, {want.max():.2f}])")
    return per_pos


def diff_up_to_kv_ties(ours, reference, label, tol, near=2e-5, most=4):
    """Per-position max abs difference of ours from a quantized-KV-cache reference, allowing for codes
    at a rounding tie. reference(stats) computes the reference logits, filling stats as
    refs/kvquant_numpy.forward does. Our float32 keys and values differ from the float64 reference's
    by float rounding (about 1e-6 of a code step), so a code within `near` steps of a tie may round
    the other way in ours and move every later logit; if ours is off by >= tol, the reference is
    recomputed with each subset of the (up to `most`) closest such codes rounded the other way, and
    the first variant within tol is used (and printed). A wrong kernel is not repaired by that."""
    from refs import kvquant_numpy as kvref
    stats = {"flips": kvref.TieFlips(near)}
    per_pos = max_diff(ours, reference(stats), label)
    found = sorted(stats["flips"].found, key=lambda f: f[1])[:most]
    print(f"    codes within {near:g} steps of a rounding tie in the reference: {len(stats['flips'].found)}"
          f" (closest {stats['min_tie']:.2g})")
    if per_pos.max() < tol or not found:
        return per_pos
    names = [f[0] for f in found]
    for r in range(1, len(names) + 1):
        for subset in itertools.combinations(names, r):
            alt = np.abs(ours.astype(np.float64) - reference({"flips": kvref.TieFlips(0.0, subset)})).max(axis=1)
            if alt.max() < tol:
                print(f"    within {tol:g} of the reference with codes (call, element) {list(subset)} rounded the "
                      f"other way: max abs diff {alt.max():.3g}")
                return alt
    return per_pos


def distribution_stats(ours, want):
    """Per position: KL(reference || ours) in nats."""
    def log_softmax(x):
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    lr, lo = log_softmax(want), log_softmax(ours.astype(np.float64))
    return (np.exp(lr) * (lr - lo)).sum(axis=1)


def distribution_problems(ours, want, label, prefix, *, max_abs, mean_kl, max_kl, top1_margin) -> list[str]:
    """Max abs, KL(ref || ours) and top-1 agreement away from near-ties (reference top-2 gap above
    top1_margin) against the given bounds; returns the problems, each starting with `prefix`."""
    problems = []
    per_pos = max_diff(ours, want, label)
    kl = distribution_stats(ours, want)
    print(f"    KL(ref||ours): mean {kl.mean():.4g}, max {kl.max():.4g} at position {int(kl.argmax())}")
    if per_pos.max() >= max_abs:
        problems.append(f"{prefix}: max abs diff {per_pos.max():.3g} >= {max_abs}")
    if kl.mean() >= mean_kl:
        problems.append(f"{prefix}: mean KL {kl.mean():.4g} >= {mean_kl}")
    if kl.max() >= max_kl:
        problems.append(f"{prefix}: max KL {kl.max():.4g} >= {max_kl} at position {int(kl.argmax())}")
    top_ours, top_ref = ours.argmax(axis=1), want.argmax(axis=1)
    srt = np.sort(want, axis=1)
    for pos in np.nonzero(top_ours != top_ref)[0]:
        margin = want[pos, top_ref[pos]] - want[pos, top_ours[pos]]
        gap2 = srt[pos, -1] - srt[pos, -2]
        print(f"    position {pos}: argmax ours {top_ours[pos]} vs reference {top_ref[pos]} "
              f"(reference margin {margin:.3g}, top-2 gap {gap2:.3g})")
        if gap2 > top1_margin:
            problems.append(f"{prefix}: argmax differs at position {pos} although the reference's "
                            f"top-2 gap is {gap2:.3g}")
    return problems


# ---------------------------------------------------------------- tokenizer


def first_diff(a: list[int], b: list[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b)) if len(a) != len(b) else -1


def explain(ours: list[int], want: list[int], ref) -> str:
    i = first_diff(ours, want)
    lo = max(0, i - 3)

    def show(ids):
        return [(t, ref.tokens[t] if 0 <= t < len(ref.tokens) else "?") for t in ids[lo:i + 4]]
    return (f"{len(ours)} ids vs reference {len(want)}; first difference at index {i}\n"
            f"  ours: {show(ours)}\n  ref:  {show(want)}")


def assert_same_ids(ours, want, ref, what):
    assert ours == want, f"{what}: " + explain(ours, want, ref)


def assert_roundtrip(detokenize, model, ids, text: bytes, what):
    back = detokenize(model, ids)
    if back != text:
        i = next((k for k, (x, y) in enumerate(zip(back, text)) if x != y), min(len(back), len(text)))
        raise AssertionError(f"{what}: detokenize(tokenize(x)) != x: {len(back)} bytes vs {len(text)}; "
                             f"first difference at byte {i}: got {back[max(0, i - 20):i + 20]!r}, "
                             f"want {text[max(0, i - 20):i + 20]!r}")


def check_tokenize_text(ref, model, name, text, back: bytes, tokenize, detokenize):
    """The CLI's ids for `text` equal the reference's, and detokenize gives `back`."""
    want = ref.encode(text)
    ours = tokenize(model, text)
    assert_same_ids(ours, want, ref, f"tokenize {name!r} ({text[:40]!r})")
    assert_roundtrip(detokenize, model, ours, back, name)


def check_tokenize_file(ref, model, path, tokenize, detokenize):
    """A whole text file through --file: ids equal the reference's and detokenize gives the file back."""
    fname = os.path.basename(path)
    data = open(path, "rb").read()
    want = ref.encode(data.decode("utf-8"))
    ours = tokenize(model, path=path)
    assert_same_ids(ours, want, ref, f"tokenize {fname} ({len(data)} bytes)")
    print(f"  {fname}: {len(data)} bytes -> {len(ours)} tokens, identical to the reference")
    assert_roundtrip(detokenize, model, ours, data, fname)


def assert_detokenized(got: bytes, ids, ref):
    """`got` equals the reference's bytes for ids; otherwise names the first token whose bytes differ."""
    want = ref.decode_bytes(ids)
    if got != want:
        pos = 0
        for t in ids:
            b = ref.decode_bytes([t])
            if got[pos:pos + len(b)] != b:
                raise AssertionError(f"detokenize differs at token {t} ({ref.tokens[t]!r}): want {b!r}, "
                                     f"got {got[pos:pos + len(b) + 8]!r}")
            pos += len(b)
        raise AssertionError(f"detokenize returned {len(got)} bytes, expected {len(want)}")


# ---------------------------------------------------------------- greedy generation


def read_reference(fname: str, parse):
    """parse(text of Tests/Fixtures/reference/FNAME), llama.cpp's outputs kept in the repository."""
    path = REFERENCE_DIR / fname
    if not path.is_file():
        pytest.fail(f"reference file missing from the checkout: {path}")
    return parse(path.read_text(encoding="utf-8"))


def prompt_sections(text: str):
    """(n, body, prompt or None, fenced text or None) for each `## Prompt N` section of a greedy reference."""
    for m in re.finditer(r"^## Prompt (\d+)\s*$(.*?)(?=^## |\Z)", text, re.S | re.M):
        body = m.group(2)
        prompt = re.search(r"^prompt: `(.*)`\s*$", body, re.M)
        txt = re.search(r"```\n(.*?)\n```", body, re.S)
        yield int(m.group(1)), body, prompt.group(1) if prompt else None, txt.group(1) if txt else None


def parse_smollm2_greedy(text: str) -> list[dict]:
    """[{n, prompt, prompt_ids, gen_ids, text_fa, text_nofa}] of smollm2-greedy.md, in file order."""
    main, _, other = text.partition("## The same prompts with llama.cpp's other attention path")
    cases = []
    for n, body, prompt, txt in prompt_sections(main):
        pids = re.search(r"^prompt token ids: ([\d ]+)$", body, re.M)
        gids = re.search(r"^generated token ids \((\d+)\): ([\d ]+)$", body, re.M)
        if prompt is None or not (pids and gids):
            raise ValueError(f"cannot parse prompt section {n} of the greedy reference")
        gen = [int(t) for t in gids.group(2).split()]
        if len(gen) != int(gids.group(1)):
            raise ValueError(f"prompt {n}: {len(gen)} ids listed, header says {gids.group(1)}")
        cases.append({"n": n, "prompt": prompt,
                      "prompt_ids": [int(t) for t in pids.group(1).split()], "gen_ids": gen,
                      "text_fa": txt, "text_nofa": None})
    for m in re.finditer(r"^### Prompt (\d+), flash attention off\s*\n+```\n(.*?)\n```", other, re.S | re.M):
        for c in cases:
            if c["n"] == int(m.group(1)):
                c["text_nofa"] = m.group(2)
    if not cases:
        raise ValueError("no prompts found in the greedy reference")
    return cases


def common_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def run_greedy_ids(run_cli, model, prompt, n_gen, n) -> list[int]:
    """`edgeattn run --ids` for prompt n: the generated ids (1 to n_gen of them)."""
    p = run_cli(["run", "-m", model, "-p", prompt, "-n", n_gen, "--ids"])
    out = p.stdout.decode("ascii", "replace")
    assert re.fullmatch(r"\d+( \d+)*\n?", out), f"run --ids should print ids separated by spaces, got {out[:200]!r}"
    gen = [int(t) for t in out.split()]
    assert 0 < len(gen) <= n_gen, f"prompt {n}: {len(gen)} tokens generated, asked for {n_gen}"
    return gen


def assert_near_argmax(refs: dict, gen, tokens, tie, n):
    """Each generated token is the argmax of every reference's row (row i predicts gen[i]) or within tie of it."""
    bad = []
    for name, lg in refs.items():
        for i, t in enumerate(gen):
            top = int(np.argmax(lg[i]))
            if top != t:
                margin = float(lg[i, top] - lg[i, t])
                print(f"  generated[{i}]: ours {t} {tokens[t]!r} vs {name} argmax {top} {tokens[top]!r}, "
                      f"margin {margin:.3g}")
                if margin > tie:
                    bad.append((name, i, t, top, round(margin, 3)))
    assert not bad, f"prompt {n}: generated tokens far from the reference's argmax: {bad}"


def assert_logits_pick(cli_lg, gen, n):
    """`run` (decode with a KV cache) and `logits` (one prefill) agree: row i picks gen[i]."""
    for i, t in enumerate(gen):
        top = int(np.argmax(cli_lg[i]))
        assert top == t or cli_lg[i, top] - cli_lg[i, t] < 1e-3, \
            f"prompt {n}: run generated {t} at {i}, but logits over the same prefix prefer {top}"


def assert_near_tie(refs: dict, j, a, b, n, n_must_match, tie):
    """Where ours (a) and llama.cpp (b) diverge at generated index j, every reference sees a near-tie."""
    for name, lg in refs.items():
        gap = abs(float(lg[j, a] - lg[j, b]))
        assert gap <= tie, (
            f"prompt {n}: diverges at generated index {j} < {n_must_match}, and under the {name} "
            f"llama.cpp's token {b} and ours {a} are {gap:.3f} logits apart (a near-tie is <= {tie})")


# ---------------------------------------------------------------- perplexity


def llama_cpp_ppl(key: str) -> tuple[float, str]:
    """(llama.cpp's perplexity, where it comes from) for entry `key` of reference/anchors.json."""
    path = REFERENCE_DIR / "anchors.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    entry = data["perplexity"][key]
    return float(entry["ppl"]), f"{path.name} {key}: llama.cpp build {data['llama_cpp']['build']}, {entry['command']}"


def run_ppl(run_cli, model, text, ctx=512, chunks=40) -> float:
    """`edgeattn ppl` over the text file: the value of its last line `ppl: X`."""
    p = run_cli(["ppl", "-m", model, "-f", text, "--ctx", ctx, "--chunks", chunks])
    lines = [ln for ln in p.stdout.decode("utf-8", "replace").splitlines() if ln.strip()]
    assert lines, "ppl printed nothing"
    m = re.fullmatch(r"ppl: ([0-9.eE+-]+|nan|inf)", lines[-1].strip())
    assert m, f"last stdout line should be 'ppl: <value>', got {lines[-1]!r}"
    return float(m.group(1))


def assert_ppl_close(got, want, source, rel_tol, label="ppl"):
    rel = (got - want) / want
    print(f"  {label} {got:.4f} vs llama.cpp {want} ({source}): {100 * rel:+.2f}%")
    assert abs(rel) <= rel_tol, \
        f"ppl {got:.4f} differs from llama.cpp's {want} by {100 * rel:+.2f}% (limit {100 * rel_tol:.0f}%)"


# ---------------------------------------------------------------- GGUF files


def copy_gguf_metadata(reader, writer, skip=()) -> None:
    """Every metadata entry of a GGUFReader into a GGUFWriter (made for the same architecture),
    except the reader's own GGUF.* entries, general.architecture and the keys in skip."""
    import gguf
    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in skip:
            continue
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, f.contents(), vt, sub_type=f.types[-1])
        else:
            writer.add_key_value(key, f.contents(), vt)
