"""`edgeattn run` greedy generation against llama.cpp's SmolLM2 reference
(Tests/Fixtures/reference/smollm2-greedy.md).

llama.cpp rounds activations to 8 bits in its Q4_1 products, and the reference file notes that its
own two attention kernels already choose differently at near-ties. On this model 8-bit rounding is
amplified into ~1 logit of noise (refs/llama_numpy.py with that rounding, run in float32 and in
float64, differs from itself by that much), so near-ties (0.05-0.3 logits apart) fall either way:
the pure float reference leaves llama.cpp's flash-attention list at generated token 5, 12, 13 and 14
of the four prompts; the CLI (8-bit activations and a 16-bit KV cache, like llama.cpp) at 14, 12, 13 and 7, and follows
llama.cpp's `-fa off` text for prompt 1 completely.

So the test checks, per prompt:

1. the CLI's prompt ids equal llama.cpp's prompt ids;
2. every generated token is the reference's argmax given the same prefix (teacher-forced numpy
   forward on prompt + generated ids, with and without 8-bit activations), or within GREEDY_TIE
   logits of it;
3. `run` and `logits` agree: the CLI's own logits over prompt + generation pick the generated tokens;
4. the first 16 generated ids equal llama.cpp's flash-attention list, or, where they diverge earlier,
   llama.cpp's token and ours are a near-tie (within GREEDY_TIE) under both references. The
   divergence index, both candidates' logits and the agreement with the `-fa off` text are printed.
   With EA_GREEDY_STRICT=1 the first 16 tokens must equal llama.cpp's list exactly.
"""

from __future__ import annotations

import os
import numpy as np
import pytest

from helpers import (assert_logits_pick, assert_near_argmax, assert_near_tie, common_prefix, parse_smollm2_greedy,
                     read_reference, run_greedy_ids)
from refs import llama_numpy, tokenizer_ref

N_GEN = 48
N_MUST_MATCH = 16
GREEDY_TIE = 0.5     # logits: near-tie margin allowed (observed: <= 0.33; the A8 noise on SmolLM2 is ~1 logit)
STRICT = os.environ.get("EA_GREEDY_STRICT", "") not in ("", "0")


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    return read_reference("smollm2-greedy.md", parse_smollm2_greedy)


def test_reference_file_parses(cases):
    assert len(cases) == 4
    assert cases[0]["prompt"] == "The capital of France is"
    assert cases[0]["prompt_ids"] == [504, 3575, 282, 4649, 314]
    assert all(len(c["gen_ids"]) == N_GEN for c in cases)
    assert all(c["text_nofa"] for c in cases)


def test_reference_tokenizer_matches_reference_prompts(cases, smollm2_path):
    tok = tokenizer_ref.load(smollm2_path)
    for c in cases:
        assert tok.encode(c["prompt"]) == c["prompt_ids"], c["prompt"]
        text = tok.decode_bytes(c["prompt_ids"] + c["gen_ids"]).decode("utf-8")
        assert text == c["text_fa"], f"prompt {c['n']}: reference ids and reference text disagree"


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_greedy_matches_llama_cpp(n, cases, smollm2_path, run_cli, tokenize, cli_logits):
    case = next(c for c in cases if c["n"] == n)
    tok = tokenizer_ref.load(smollm2_path)
    prompt, pids, want = case["prompt"], case["prompt_ids"], case["gen_ids"]

    # 1. prompt ids
    ours_pids = tokenize(smollm2_path, prompt)
    assert ours_pids == pids, f"prompt {n}: CLI prompt ids {ours_pids} != llama.cpp {pids}"

    # generation
    gen = run_greedy_ids(run_cli, smollm2_path, prompt, N_GEN, n)
    eog = {i for i, s in enumerate(tok.tokens) if s in ("<|endoftext|>", "<|im_end|>")} | {tok.eos_id}
    if len(gen) < N_GEN:
        # an early stop must be an end-of-generation token (never printed): the CLI's own greedy
        # choice after the generated text, and the float reference's, must be one
        after = int(np.argmax(cli_logits(smollm2_path, pids + gen)[-1]))
        assert after in eog, (f"prompt {n}: stopped after {len(gen)} tokens but the next greedy token "
                              f"{after} is not end-of-generation {sorted(eog)}")
        ref_after = llama_numpy.logits(smollm2_path, pids + gen)[-1]
        assert float(ref_after.max() - max(ref_after[e] for e in eog)) <= GREEDY_TIE, \
            f"prompt {n}: the reference does not end the text where the CLI does"
    our_text = tok.decode_bytes(pids + gen).decode("utf-8", "replace")
    print(f"\n  prompt {n} ours: {our_text!r}")

    # 2. teacher-forced references over prompt + generation; row i predicts gen[i]
    seq = pids + gen
    refs = {"A8 reference": llama_numpy.logits(smollm2_path, seq[:-1], act_q8=True)[len(pids) - 1:],
            "float reference": llama_numpy.logits(smollm2_path, seq[:-1])[len(pids) - 1:]}
    assert_near_argmax(refs, gen, tok.tokens, GREEDY_TIE, n)

    # 3. run and logits agree (decode with a KV cache vs one prefill)
    cli_lg = cli_logits(smollm2_path, seq[:-1])[len(pids) - 1:]
    assert_logits_pick(cli_lg, gen, n)

    # 4. llama.cpp's flash-attention list
    j = common_prefix(gen, want)
    if case["text_nofa"]:
        k = common_prefix(our_text, case["text_nofa"])
        print(f"  prompt {n}: text agrees with llama.cpp -fa off for {k} of {len(case['text_nofa'])} characters")
    if j == min(len(gen), len(want)):
        print(f"  prompt {n}: all {j} generated tokens equal llama.cpp's (flash attention) list")
        return
    a, b = gen[j], want[j]
    print(f"  prompt {n}: diverges from llama.cpp's flash-attention list at generated index {j}: "
          f"ours {a} {tok.tokens[a]!r} vs llama.cpp {b} {tok.tokens[b]!r}; logits ours/llama.cpp's: "
          f"CLI {cli_lg[j, a]:.3f}/{cli_lg[j, b]:.3f}, "
          + ", ".join(f"{name} {rows[j, a]:.3f}/{rows[j, b]:.3f}" for name, rows in refs.items()))
    if j >= N_MUST_MATCH:
        return
    if STRICT:
        pytest.fail(f"prompt {n}: diverges at generated index {j} < {N_MUST_MATCH} (EA_GREEDY_STRICT)")
    assert_near_tie(refs, j, a, b, n, N_MUST_MATCH, GREEDY_TIE)
