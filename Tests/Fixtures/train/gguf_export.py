"""Writes the recurrent-mode GGUF schema (README "Recurrent mode") with the PyPI `gguf` writer.

Architecture "edgeattn": edgeattn.{embedding_length, block_count, feed_forward_length,
attention.head_count, attention.head_count_kv, attention.key_length, context_length,
attention.layer_norm_rms_epsilon, layer_kinds}, optional edgeattn.linear.{feature_map, chunk} and
edgeattn.series.{lags, outputs, mean, scale, residual}. Tensors use llama.cpp names where they exist
(token_embd, attn_norm, attn_q/k/v/output, ffn_norm, ffn_gate/up/down, output_norm, output) plus
blk.N.attn_query (Aaren), blk.N.attn_decay, blk.N.attn_gate, blk.N.attn_out_norm (linear),
input.weight/input.bias and output.bias (series models).
"""
import os
import numpy as np
import gguf


def write(path, *, n_embd, n_ff, n_head, head_dim, kinds, tensors, ctx=4096, eps=1e-5,
          series=None, linear=None, tokenizer=None, name="edgeattn"):
    tmp = path + ".tmp"
    w = gguf.GGUFWriter(tmp, "edgeattn")
    w.add_name(name)
    a = "edgeattn."
    w.add_uint32(a + "embedding_length", n_embd)
    w.add_uint32(a + "block_count", len(kinds))
    w.add_uint32(a + "feed_forward_length", n_ff)
    w.add_uint32(a + "attention.head_count", n_head)
    w.add_uint32(a + "attention.head_count_kv", n_head)
    w.add_uint32(a + "attention.key_length", head_dim)
    w.add_uint32(a + "context_length", ctx)
    w.add_float32(a + "attention.layer_norm_rms_epsilon", eps)
    w.add_array(a + "layer_kinds", list(kinds))
    if linear:
        w.add_string(a + "linear.feature_map", linear["feature_map"])
        w.add_uint32(a + "linear.chunk", linear.get("chunk", 64))
    if series:
        w.add_uint32(a + "series.lags", series["lags"])
        w.add_uint32(a + "series.outputs", series.get("outputs", 1))
        w.add_float32(a + "series.mean", float(series["mean"]))
        w.add_float32(a + "series.scale", float(series["scale"]))
        w.add_bool(a + "series.residual", bool(series.get("residual", False)))
    if tokenizer:
        w.add_tokenizer_model(tokenizer["model"])
        w.add_token_list(tokenizer["tokens"])
        w.add_token_types(tokenizer["types"])
        w.add_add_bos_token(False)
    for tname, arr in tensors.items():
        w.add_tensor(tname, np.ascontiguousarray(arr, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)


def byte_tokens():
    """GPT-2's byte-to-unicode map: token i is byte i written as one printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    m = dict(zip(bs, cs))
    return [chr(m[b]) for b in range(256)]
