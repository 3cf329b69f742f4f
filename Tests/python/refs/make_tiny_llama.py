"""Writes a tiny random-weight Llama GGUF for tests (seeded, so the same seed gives the same file).

Shape: d=64, 2 layers, 4 heads of 16, 2 KV heads, FFN 96, context 128, RoPE base 10000, vocab 3
control tokens + 256 byte tokens + a few dozen merges (~300). Most weights are F32; some are stored as
F16, Q8_0 and Q4_1 (quantized with gguf.quants.quantize) so loaders and dequantizers for those types
are exercised. The output head is `output.weight` (Q8_0), or absent with `tied=True`, in which case
the Q8_0 token embedding is the head (like SmolLM2). With `float_only=True` the block-quantized
tensors stay F32 (F16 ones stay F16): a model whose products involve no 8-bit activations, for exact
comparisons with a float reference.

Tokenizer: GPT-2 byte-level BPE (`tokenizer.ggml.model` = gpt2, pre = smollm): ids 0..2 are the
control tokens <|endoftext|>, <|im_start|>, <|im_end|>; ids 3..258 the GPT-2 byte characters in byte
order; then one token per merge.

The file is written to a temporary name beside the destination and renamed into place.

Usage as a script: python3 make_tiny_llama.py OUT.gguf [--tied] [--float-only] [--seed N]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import gguf
import numpy as np

try:
    from .tokenizer_ref import byte_to_unicode
except ImportError:  # run as a script
    from tokenizer_ref import byte_to_unicode

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
HEAD_DIM = N_EMBD // N_HEAD
N_FF = 96
N_CTX = 128
ROPE_BASE = 10000.0
RMS_EPS = 1e-5

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BOS_ID, EOS_ID = 1, 2

# Merges as (left, right) in rank order, in GPT-2 byte-level characters (Ġ = space, Ċ = newline).
MERGES = [
    ("Ġ", "t"), ("h", "e"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"), ("Ġt", "he"),
    ("r", "e"), ("a", "n"), ("Ġ", "s"), ("e", "n"), ("a", "t"), ("o", "u"), ("Ġ", "w"),
    ("i", "s"), ("Ġ", "o"), ("n", "d"), ("Ġa", "nd"), ("Ġ", "Ġ"), ("ĠĠ", "ĠĠ"), ("Ċ", "Ċ"),
    ("Ġ", "b"), ("l", "l"), ("o", "r"), ("e", "s"), ("i", "t"), ("Ġ", "c"), ("Ġ", "f"),
    ("Ġ", "m"), ("n", "g"), ("i", "ng"), ("Ġs", "t"), ("Ġo", "f"), ("Ġ", "h"), ("Ġh", "e"),
    ("Ġw", "h"), ("e", "d"), ("Ġ", "d"), ("'", "s"), ("Ġ", "1"),
]

# Tensors stored in a type other than F32 (the rest are F32).
TENSOR_TYPES = {
    "blk.0.attn_k.weight": gguf.GGMLQuantizationType.F16,
    "blk.1.ffn_up.weight": gguf.GGMLQuantizationType.F16,
    "blk.0.ffn_down.weight": gguf.GGMLQuantizationType.Q8_0,
    "blk.1.attn_q.weight": gguf.GGMLQuantizationType.Q8_0,
    "blk.1.ffn_gate.weight": gguf.GGMLQuantizationType.Q4_1,
    "output.weight": gguf.GGMLQuantizationType.Q8_0,
}


def vocab() -> tuple[list[str], list[int], list[str]]:
    """(tokens, token_types, merges as 'a b' strings)."""
    b2u = byte_to_unicode()
    tokens = list(SPECIALS) + [b2u[b] for b in range(256)]
    types = [3] * len(SPECIALS) + [1] * 256
    known = set(tokens)
    merges = []
    for a, b in MERGES:
        if a not in known or b not in known:
            raise AssertionError(f"merge {a!r} {b!r} uses an unknown token")
        tok = a + b
        if tok in known:
            raise AssertionError(f"merge {a!r} {b!r} gives an existing token")
        tokens.append(tok)
        types.append(1)
        known.add(tok)
        merges.append(f"{a} {b}")
    return tokens, types, merges


def weights(seed: int, n_vocab: int, tied: bool) -> dict[str, np.ndarray]:
    """Random float32 weights, numpy shape [out, in] (= reversed ggml ne)."""
    rng = np.random.default_rng(seed)

    def lin(out_dim, in_dim, gain=1.0):
        return (rng.standard_normal((out_dim, in_dim)) * gain / np.sqrt(in_dim)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = {"token_embd.weight": rng.standard_normal((n_vocab, N_EMBD)).astype(np.float32)}
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = norm(N_EMBD)
        w[p + "attn_q.weight"] = lin(N_HEAD * HEAD_DIM, N_EMBD)
        w[p + "attn_k.weight"] = lin(N_HEAD_KV * HEAD_DIM, N_EMBD)
        w[p + "attn_v.weight"] = lin(N_HEAD_KV * HEAD_DIM, N_EMBD)
        w[p + "attn_output.weight"] = lin(N_EMBD, N_HEAD * HEAD_DIM)
        w[p + "ffn_norm.weight"] = norm(N_EMBD)
        w[p + "ffn_gate.weight"] = lin(N_FF, N_EMBD)
        w[p + "ffn_up.weight"] = lin(N_FF, N_EMBD)
        w[p + "ffn_down.weight"] = lin(N_EMBD, N_FF)
    w["output_norm.weight"] = norm(N_EMBD)
    if not tied:
        w["output.weight"] = lin(n_vocab, N_EMBD, gain=3.0)
    else:
        # The embedding doubles as the head: scale it so logits span a few units, like a trained model.
        w["token_embd.weight"] *= np.float32(3.0 / np.sqrt(N_EMBD))
    return w


def tensor_types(tied: bool, float_only: bool = False) -> dict[str, gguf.GGMLQuantizationType]:
    types = dict(TENSOR_TYPES)
    if tied:
        del types["output.weight"]
        types["token_embd.weight"] = gguf.GGMLQuantizationType.Q8_0
    if float_only:
        types = {k: v for k, v in types.items() if v == gguf.GGMLQuantizationType.F16}
    return types


def write(path: str, seed: int = 0, tied: bool = False, float_only: bool = False, add_bos: bool = False) -> str:
    """Writes the tiny model to `path` (atomically) and returns the path. add_bos sets
    tokenizer.ggml.add_bos_token (the model asks for BOS <|im_start|>, id 1)."""
    tokens, types, merges = vocab()
    w = weights(seed, len(tokens), tied)
    qtypes = tensor_types(tied, float_only)

    dest_dir = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tiny-llama.", suffix=".gguf.tmp", dir=dest_dir)
    os.close(fd)
    try:
        wr = gguf.GGUFWriter(tmp, "llama")
        wr.add_name(f"tiny-llama-test seed={seed}{' tied' if tied else ''}{' float' if float_only else ''}")
        wr.add_context_length(N_CTX)
        wr.add_embedding_length(N_EMBD)
        wr.add_block_count(N_LAYER)
        wr.add_feed_forward_length(N_FF)
        wr.add_head_count(N_HEAD)
        wr.add_head_count_kv(N_HEAD_KV)
        wr.add_rope_freq_base(ROPE_BASE)
        wr.add_rope_dimension_count(HEAD_DIM)
        wr.add_layer_norm_rms_eps(RMS_EPS)
        wr.add_vocab_size(len(tokens))
        wr.add_tokenizer_model("gpt2")
        wr.add_tokenizer_pre("smollm")
        wr.add_token_list(tokens)
        wr.add_token_types(types)
        wr.add_token_merges(merges)
        wr.add_bos_token_id(BOS_ID)
        wr.add_eos_token_id(EOS_ID)
        wr.add_add_bos_token(add_bos)
        for name, arr in w.items():
            qt = qtypes.get(name, gguf.GGMLQuantizationType.F32)
            if qt == gguf.GGMLQuantizationType.F32:
                wr.add_tensor(name, arr)
            elif qt == gguf.GGMLQuantizationType.F16:
                wr.add_tensor(name, arr.astype(np.float16))
            else:
                wr.add_tensor(name, gguf.quants.quantize(arr, qt), raw_dtype=qt)
        wr.write_header_to_file()
        wr.write_kv_data_to_file()
        wr.write_tensors_to_file()
        wr.close()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--tied", action="store_true", help="no output.weight: the token embedding is the head")
    ap.add_argument("--float-only", action="store_true", help="F32/F16 tensors only (no block quantization)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(write(a.out, seed=a.seed, tied=a.tied, float_only=a.float_only))
