#!/usr/bin/env python3
"""Writes crafted broken GGUF files for the C API test (Tests/c/test_api.c).

Usage: make_corrupt.py REAL_MODEL.gguf OUT_DIR

OUT_DIR receives small files (the largest is a ~2 MB header prefix of the real model; nothing copies
its 98 MB of tensor data) and a manifest OUT_DIR/expected.txt with one line per file:

    <file> <EXPECTED_STATUS_NAME>  # <base>: <what was done>

The first two fields are what test_api checks; the comment names the base the file came from:
  synthetic - a tiny llama GGUF written here with gguf.GGUFWriter (2 layers, d=32, F32 tensors,
              GPT-2 byte-level tokenizer with the 256 byte tokens, 3 merges and 3 ChatML specials);
              it loads with EA_OK, so each mutation of it isolates one fault;
  real      - a prefix of the real SmolLM2 file, patched.
"Byte-patched" files keep every other byte of their base, so exactly one field is wrong;
"rewritten" ones are complete, valid GGUF files written by GGUFWriter whose content is wrong for
the model (shape, missing tensor, metadata, architecture).

Error policy the expectations follow (header edgeattn.h and the reader's documented policy):
  - a count or length that cannot fit in the whole file (tensor count, metadata count, array
    element count, string length larger than the file) is EA_ERR_CORRUPT, even though a reader
    could also call it truncation: it is impossible for *any* file of this size;
  - a value that is plausible but runs past the end of this file is EA_ERR_TRUNCATED. The
    truncated files are therefore cut where every count read so far still fits the shortened file
    (checked below with assertions, so the expectation cannot silently change meaning);
  - an unknown metadata value type is EA_ERR_UNSUPPORTED_TYPE (the header: "tensor or metadata
    type this library does not know").
"""
import os
import struct
import sys

import numpy as np

try:
    import gguf
except ImportError:  # pragma: no cover
    sys.exit("make_corrupt: the Python package 'gguf' is needed (pip install gguf)")

GGUF_MAGIC = 0x46554747  # "GGUF" little-endian

# ---- a minimal GGUF header walker (offsets of every field, for byte patches) -------------------

SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
T_STRING, T_ARRAY = 8, 9


class Header:
    """Positions of the fields of a GGUF v2/v3 header."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        magic, self.version = struct.unpack_from("<II", data, 0)
        assert magic == GGUF_MAGIC, "not a GGUF file"
        self.n_tensors_off, self.n_kv_off = 8, 16
        self.n_tensors, self.n_kv = struct.unpack_from("<QQ", data, 8)
        self.pos = 24
        # kv: dict key -> {key_len_off, type_off, value_off, end, type, value(scalars/strings),
        #                  count_off/count for arrays}
        self.kv = {}
        self.kv_order = []
        for _ in range(self.n_kv):
            key_len_off = self.pos
            key = self._string()
            type_off = self.pos
            (t,) = struct.unpack_from("<I", data, self.pos)
            self.pos += 4
            e = {"key_len_off": key_len_off, "type_off": type_off, "value_off": self.pos, "type": t}
            e["value"] = self._value(t, e)
            e["end"] = self.pos
            self.kv[key] = e
            self.kv_order.append(key)
        self.alignment = 32
        if "general.alignment" in self.kv:
            self.alignment = int(self.kv["general.alignment"]["value"])
        self.tensors = []
        for _ in range(self.n_tensors):
            t = {"name_len_off": self.pos}
            t["name"] = self._string()
            t["n_dims_off"] = self.pos
            (nd,) = struct.unpack_from("<I", data, self.pos)
            self.pos += 4
            t["dims_off"] = self.pos
            t["dims"] = list(struct.unpack_from("<%dQ" % nd, data, self.pos))
            self.pos += 8 * nd
            t["type_off"] = self.pos
            (t["type"],) = struct.unpack_from("<I", data, self.pos)
            self.pos += 4
            t["offset_off"] = self.pos
            (t["offset"],) = struct.unpack_from("<Q", data, self.pos)
            self.pos += 8
            t["end"] = self.pos
            self.tensors.append(t)
        self.info_end = self.pos
        self.data_offset = (self.pos + self.alignment - 1) // self.alignment * self.alignment

    def _string(self) -> str:
        (n,) = struct.unpack_from("<Q", self.data, self.pos)
        s = self.data[self.pos + 8:self.pos + 8 + n]
        self.pos += 8 + n
        return s.decode("utf-8", "replace")

    def _value(self, t, e):
        if t in SCALAR_SIZE:
            fmt = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "B", 10: "Q", 11: "q",
                   12: "d"}[t]
            (v,) = struct.unpack_from("<" + fmt, self.data, self.pos)
            self.pos += SCALAR_SIZE[t]
            return v
        if t == T_STRING:
            return self._string()
        if t == T_ARRAY:
            (et,) = struct.unpack_from("<I", self.data, self.pos)
            e["count_off"] = self.pos + 4
            (n,) = struct.unpack_from("<Q", self.data, self.pos + 4)
            self.pos += 12
            e["elem_type"], e["count"] = et, n
            if et in SCALAR_SIZE:
                self.pos += SCALAR_SIZE[et] * n
            elif et == T_STRING:
                for _ in range(n):
                    self._string()
            else:
                raise ValueError("nested arrays are not used here")
            return None
        raise ValueError("unknown value type %d" % t)

    def tensor(self, name):
        for t in self.tensors:
            if t["name"] == name:
                return t
        raise KeyError(name)


def patched(data: bytes, patches) -> bytes:
    """patches: list of (offset, struct format, value)."""
    b = bytearray(data)
    for off, fmt, val in patches:
        struct.pack_into("<" + fmt, b, off, val)
    return bytes(b)


def counts_fit(h: Header, cut: int) -> bool:
    """True when every count, length and offset the reader meets before byte `cut` is possible for
    a file of `cut` bytes (so that cutting the file there is truncation, not an impossible value).
    Tensor data offsets count too: an offset read before the cut that lies beyond the shortened
    file is corrupt under the reader's absolute-limit policy."""
    if h.n_tensors * 32 > cut or h.n_kv * 13 > cut:
        return False
    for e in h.kv.values():
        if e["type"] == T_ARRAY and e["value_off"] < cut:
            min_elem = SCALAR_SIZE.get(e["elem_type"], 8)
            if e["count"] * min_elem > cut:
                return False
    for t in h.tensors:
        if t["end"] <= cut and t["offset"] > cut:
            return False
    return True


def cut_in_tensor_info(h: Header, where: str):
    """The latest cut inside a tensor info (field `where` + 3 bytes) where counts_fit holds.
    Returns (cut, tensor index)."""
    best = None
    for i, t in enumerate(h.tensors):
        cut = t[where] + 3
        if counts_fit(h, cut):
            best = (cut, i)
    assert best is not None, "no place in the tensor infos where a cut is plain truncation"
    return best


def boundaries(h: Header, what: str):
    """(offset, label) at every field boundary of the header: the magic, version and counts, each
    metadata entry (key length, key text, value type, value; an array's element type, count and
    first element), each tensor info (name length, name, dimension count, dimensions, type, data
    offset), the end of the infos (alignment padding) and the start of the tensor data."""
    b = [(0, "%s: empty file" % what), (4, "%s: after the magic" % what), (8, "%s: after the version" % what),
         (16, "%s: after the tensor count" % what), (24, "%s: after the metadata count" % what)]
    for k in h.kv_order:
        e = h.kv[k]
        b += [(e["key_len_off"], "%s: metadata '%s', key length" % (what, k)),
              (e["key_len_off"] + 8, "%s: metadata '%s', key text" % (what, k)),
              (e["type_off"], "%s: metadata '%s', value type" % (what, k)),
              (e["value_off"], "%s: metadata '%s', value" % (what, k))]
        if e["type"] == T_ARRAY:
            b += [(e["count_off"], "%s: metadata '%s', array element count" % (what, k)),
                  (e["count_off"] + 8, "%s: metadata '%s', array elements" % (what, k))]
    for i, t in enumerate(h.tensors):
        lab = "%s: tensor info %d '%s'" % (what, i, t["name"])
        b += [(t["name_len_off"], lab + ", name length"), (t["name_len_off"] + 8, lab + ", name text"),
              (t["n_dims_off"], lab + ", dimension count"), (t["dims_off"], lab + ", dimensions"),
              (t["type_off"], lab + ", type"), (t["offset_off"], lab + ", data offset")]
    b += [(h.info_end, "%s: end of the tensor infos (alignment padding)" % what),
          (h.data_offset, "%s: start of the tensor data" % what)]
    return b


# ---- the synthetic llama model --------------------------------------------------------------------

N_EMBD, N_HEAD, N_HEAD_KV, N_FF, N_LAYER, N_CTX = 32, 2, 1, 64, 2, 256
HEAD_DIM = N_EMBD // N_HEAD
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "t he"]


def gpt2_byte_chars():
    """GPT-2's byte -> printable character map (byte-level BPE), in byte order."""
    out, extra = [], 0
    for b in range(256):
        printable = 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF
        out.append(chr(b) if printable else chr(256 + extra))
        if not printable:
            extra += 1
    return out


def synthetic_vocab():
    tokens = gpt2_byte_chars()
    for m in MERGES:
        left, right = m.split(" ")
        tokens.append(left + right)
    types = [1] * len(tokens)
    tokens += SPECIALS
    types += [3] * len(SPECIALS)
    return tokens, types


def synthetic_tensors(n_vocab, rng):
    """name -> float32 array in numpy order (reversed ggml dims)."""
    def w(rows, cols):  # ggml dims [cols, rows]
        return (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)

    def ones():
        return np.ones(N_EMBD, dtype=np.float32)

    t = {"token_embd.weight": w(n_vocab, N_EMBD), "output_norm.weight": ones()}
    for l in range(N_LAYER):
        p = "blk.%d." % l
        t[p + "attn_norm.weight"] = ones()
        t[p + "attn_q.weight"] = w(N_HEAD * HEAD_DIM, N_EMBD)
        t[p + "attn_k.weight"] = w(N_HEAD_KV * HEAD_DIM, N_EMBD)
        t[p + "attn_v.weight"] = w(N_HEAD_KV * HEAD_DIM, N_EMBD)
        t[p + "attn_output.weight"] = w(N_EMBD, N_HEAD * HEAD_DIM)
        t[p + "ffn_norm.weight"] = ones()
        t[p + "ffn_gate.weight"] = w(N_FF, N_EMBD)
        t[p + "ffn_up.weight"] = w(N_FF, N_EMBD)
        t[p + "ffn_down.weight"] = w(N_EMBD, N_FF)
    return t


def write_synthetic(path, arch="llama", drop_keys=(), string_keys=(), drop_tensors=(),
                    replace_tensors=None, merges=None, types_cut=0, bos=None):
    """Writes the synthetic model, optionally wrong in one way.
    drop_keys: metadata keys left out; string_keys: integer or float keys written as strings;
    drop_tensors: tensors left out; replace_tensors: name -> array written instead; merges: the
    merge list written instead of MERGES; types_cut: token types left off the end; bos: BOS id."""
    tokens, types = synthetic_vocab()
    types = types[:len(types) - types_cut]
    rng = np.random.default_rng(1234)
    tensors = synthetic_tensors(len(tokens), rng)
    for name, arr in (replace_tensors or {}).items():
        tensors[name] = arr
    w = gguf.GGUFWriter(path, arch)
    a = arch + "."
    ints = [
        (a + "context_length", N_CTX),
        (a + "embedding_length", N_EMBD),
        (a + "block_count", N_LAYER),
        (a + "feed_forward_length", N_FF),
        (a + "attention.head_count", N_HEAD),
        (a + "attention.head_count_kv", N_HEAD_KV),
    ]
    w.add_string("general.name", "edgeattn synthetic test model")
    for key, val in ints:
        if key in drop_keys:
            continue
        if key in string_keys:
            w.add_string(key, str(val))
        else:
            w.add_uint32(key, val)
    w.add_float32(a + "rope.freq_base", 10000.0)
    if a + "attention.layer_norm_rms_epsilon" in string_keys:
        w.add_string(a + "attention.layer_norm_rms_epsilon", "1e-5")
    else:
        w.add_float32(a + "attention.layer_norm_rms_epsilon", 1e-5)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(MERGES if merges is None else merges)
    w.add_uint32("tokenizer.ggml.bos_token_id", tokens.index("<|endoftext|>") if bos is None else bos)
    w.add_uint32("tokenizer.ggml.eos_token_id", tokens.index("<|im_end|>"))
    w.add_bool("tokenizer.ggml.add_bos_token", False)
    for name, arr in tensors.items():
        if name in drop_tensors:
            continue
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---- the crafted files ------------------------------------------------------------------------------

def main(argv):
    if len(argv) != 3:
        sys.exit("usage: make_corrupt.py REAL_MODEL.gguf OUT_DIR")
    real_path, out = argv[1], argv[2]
    os.makedirs(out, exist_ok=True)
    manifest = []

    def emit(name, data, status, base, what):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        manifest.append((name, status, base, what))

    def emit_written(name, status, what, **kw):
        write_synthetic(os.path.join(out, name), **kw)
        manifest.append((name, status, "synthetic", "rewritten: " + what))

    # The valid base: must load, or every mutation below proves nothing.
    valid_path = os.path.join(out, "syn_valid.gguf")
    write_synthetic(valid_path)
    manifest.append(("syn_valid.gguf", "EA_OK", "synthetic", "the valid base of every syn_* file"))
    with open(valid_path, "rb") as f:
        syn = f.read()
    h = Header(syn)
    # Cross-check the walker against the reference reader.
    r = gguf.GGUFReader(valid_path)
    assert len(r.tensors) == h.n_tensors
    assert [k for k in r.fields if not k.startswith("GGUF.")] == h.kv_order
    for rt in r.tensors:
        ht = h.tensor(rt.name)
        assert ht["dims"] == [int(d) for d in rt.shape], (rt.name, ht["dims"], rt.shape)
        assert h.data_offset + ht["offset"] == rt.data_offset, rt.name
    assert str(bytes(r.fields["general.architecture"].parts[-1]), "utf-8") == "llama"

    # -- file-level: magic, version, truncation at the start
    emit("empty.gguf", b"", "EA_ERR_TRUNCATED", "none", "zero bytes")
    emit("three_bytes.gguf", b"GGU", "EA_ERR_TRUNCATED", "none", "ends inside the magic")
    emit("syn_bad_magic.gguf", b"GGUX" + syn[4:], "EA_ERR_BAD_MAGIC", "synthetic",
         "byte-patched: magic 'GGUX'")
    emit("syn_version99.gguf", patched(syn, [(4, "I", 99)]), "EA_ERR_UNSUPPORTED_VERSION",
         "synthetic", "byte-patched: version 99")
    emit("syn_header_cut.gguf", syn[:20], "EA_ERR_TRUNCATED", "synthetic",
         "cut at byte 20, inside the metadata count")

    # -- impossible counts and lengths
    emit("syn_huge_tensor_count.gguf", patched(syn, [(h.n_tensors_off, "Q", 1 << 60)]),
         "EA_ERR_CORRUPT", "synthetic", "byte-patched: tensor count 2^60")
    emit("syn_huge_kv_count.gguf", patched(syn, [(h.n_kv_off, "Q", 1 << 60)]),
         "EA_ERR_CORRUPT", "synthetic", "byte-patched: metadata count 2^60")
    first_key = h.kv_order[0]
    emit("syn_huge_key_length.gguf", patched(syn, [(h.kv[first_key]["key_len_off"], "Q", 1 << 40)]),
         "EA_ERR_CORRUPT", "synthetic",
         "byte-patched: length of the first key 2^40 (beyond the 4096-byte key limit: corrupt, not truncated)")
    name_e = h.kv["general.name"]
    emit("syn_huge_string_value.gguf", patched(syn, [(name_e["value_off"], "Q", 1 << 40)]),
         "EA_ERR_CORRUPT", "synthetic",
         "byte-patched: length of the general.name string = 2^40, beyond the reader's 2^30 limit "
         "(a plausible length that runs past the end of the file would be EA_ERR_TRUNCATED)")
    tok_e = h.kv["tokenizer.ggml.tokens"]
    emit("syn_huge_array_count.gguf", patched(syn, [(tok_e["count_off"], "Q", 1 << 50)]),
         "EA_ERR_CORRUPT", "synthetic", "byte-patched: tokenizer.ggml.tokens element count 2^50")
    emit("syn_kv_type99.gguf", patched(syn, [(name_e["type_off"], "I", 99)]),
         "EA_ERR_UNSUPPORTED_TYPE", "synthetic",
         "byte-patched: general.name has value type 99 (unknown metadata type)")

    # -- truncation inside the header, where every count read so far still fits
    last_key = h.kv_order[-1]
    cut = h.kv[last_key]["key_len_off"] + 8 + 5  # inside the last key's text
    assert counts_fit(h, cut), "cut inside the last key would make a count impossible"
    emit("syn_cut_in_metadata.gguf", syn[:cut], "EA_ERR_TRUNCATED", "synthetic",
         "cut inside the key of the last metadata entry '%s' (byte %d)" % (last_key, cut))
    cut, i = cut_in_tensor_info(h, "dims_off")  # inside dimension 0 of a tensor
    emit("syn_cut_in_tensor_info.gguf", syn[:cut], "EA_ERR_TRUNCATED", "synthetic",
         "cut inside dimension 0 of tensor %d '%s' (byte %d)" % (i, h.tensors[i]["name"], cut))

    # -- tensor infos
    tq = h.tensor("blk.0.attn_q.weight")
    beyond = (len(syn) + (1 << 20) + h.alignment - 1) // h.alignment * h.alignment
    emit("syn_offset_beyond_eof.gguf", patched(syn, [(tq["offset_off"], "Q", beyond)]),
         "EA_ERR_CORRUPT", "synthetic",
         "byte-patched: blk.0.attn_q.weight data offset %d (aligned, beyond the end)" % beyond)
    emit("syn_offset_misaligned.gguf", patched(syn, [(tq["offset_off"], "Q", tq["offset"] + 1)]),
         "EA_ERR_CORRUPT", "synthetic",
         "byte-patched: blk.0.attn_q.weight data offset +1 (not aligned to %d)" % h.alignment)
    tk = h.tensor("blk.0.attn_k.weight")
    emit("syn_offset_overlap.gguf", patched(syn, [(tk["offset_off"], "Q", tq["offset"])]),
         "EA_ERR_CORRUPT", "synthetic",
         "byte-patched: blk.0.attn_k.weight data offset = blk.0.attn_q.weight's (overlap)")
    emit("syn_tensor_type99.gguf", patched(syn, [(tq["type_off"], "I", 99)]),
         "EA_ERR_UNSUPPORTED_TYPE", "synthetic", "byte-patched: blk.0.attn_q.weight has type 99")
    assert len(tq["dims"]) == 2
    emit("syn_shape_overflow.gguf",
         patched(syn, [(tq["dims_off"], "Q", 1 << 32), (tq["dims_off"] + 8, "Q", (1 << 32) + 1)]),
         "EA_ERR_CORRUPT", "synthetic",
         "byte-patched: blk.0.attn_q.weight dims [2^32, 2^32+1] (element count overflows 64 bits)")

    # -- truncation inside the tensor data
    last = max(h.tensors, key=lambda t: t["offset"])
    nbytes = 4
    for d in last["dims"]:
        nbytes *= d
    cut = h.data_offset + last["offset"] + nbytes // 2
    assert cut < len(syn)
    emit("syn_cut_in_data.gguf", syn[:cut], "EA_ERR_TRUNCATED", "synthetic",
         "cut in the middle of the data of '%s' (byte %d of %d)" % (last["name"], cut, len(syn)))

    # -- valid GGUF, wrong for the model
    emit_written("syn_wrong_shape.gguf", "EA_ERR_SHAPE",
                 "blk.0.attn_q.weight has ggml shape [%d, 20] instead of [%d, %d]"
                 % (N_EMBD, N_EMBD, N_HEAD * HEAD_DIM),
                 replace_tensors={"blk.0.attn_q.weight": np.zeros((20, N_EMBD), np.float32)})
    emit_written("syn_missing_tensor.gguf", "EA_ERR_MISSING_TENSOR",
                 "blk.1.ffn_down.weight left out", drop_tensors={"blk.1.ffn_down.weight"})
    emit_written("syn_missing_block_count.gguf", "EA_ERR_METADATA", "llama.block_count left out",
                 drop_keys={"llama.block_count"})
    emit_written("syn_block_count_string.gguf", "EA_ERR_METADATA",
                 "llama.block_count written as the string \"2\"",
                 string_keys={"llama.block_count"})
    emit_written("syn_eps_string.gguf", "EA_ERR_METADATA",
                 "llama.attention.layer_norm_rms_epsilon (a float) written as the string \"1e-5\"",
                 string_keys={"llama.attention.layer_norm_rms_epsilon"})
    # vocabulary and merges inconsistent with each other
    emit_written("syn_merge_unknown_token.gguf", "EA_ERR_TOKENIZER",
                 "a merge 'q zz' whose right side is not a token", merges=MERGES + ["q zz"])
    emit_written("syn_merge_result_missing.gguf", "EA_ERR_TOKENIZER",
                 "a merge 'x y' of two tokens whose concatenation 'xy' is not in the vocabulary",
                 merges=MERGES + ["x y"])
    emit_written("syn_token_types_short.gguf", "EA_ERR_TOKENIZER",
                 "tokenizer.ggml.token_type one entry shorter than the vocabulary", types_cut=1)
    emit_written("syn_bos_out_of_range.gguf", "EA_ERR_TOKENIZER",
                 "tokenizer.ggml.bos_token_id = 100000 (the vocabulary has 262 tokens)", bos=100000)
    # NaN weights load (checking every float would cost a full read at each load); validate_data
    # finds them: test_api checks that with this file
    nan_q = np.zeros((N_HEAD * HEAD_DIM, N_EMBD), np.float32)
    nan_q[3, 5] = np.nan
    nan_q[7, 1] = np.inf
    emit_written("syn_nan_weights.gguf", "EA_OK",
                 "blk.0.attn_q.weight holds a NaN and an Inf (found with validate_data: test_api)",
                 replace_tensors={"blk.0.attn_q.weight": nan_q})
    emit_written("syn_arch_foo.gguf", "EA_ERR_UNSUPPORTED_ARCH",
                 "general.architecture 'foo' (keys foo.*)", arch="foo")
    arch_e = h.kv["general.architecture"]
    emit("syn_no_arch_key.gguf",
         patched(syn, [(arch_e["key_len_off"] + 8 + len("general.architectur"), "B", ord("X"))]),
         "EA_ERR_METADATA", "synthetic",
         "byte-patched: key general.architecture renamed general.architecturX (missing)")
    emit("syn_no_tokens.gguf",
         patched(syn, [(tok_e["key_len_off"] + 8 + len("tokenizer.ggml.token"), "B", ord("X"))]),
         "EA_ERR_TOKENIZER", "synthetic",
         "byte-patched: key tokenizer.ggml.tokens renamed tokenizer.ggml.tokenX (no vocabulary)")

    # -- prefixes of the real model (magic, version, header truncation): no tensor data copied
    rh, want = None, 4 << 20
    while rh is None:
        with open(real_path, "rb") as f:
            head = f.read(want)
        try:
            rh = Header(head)
        except struct.error:  # the header is longer than what was read
            if len(head) < want:
                sys.exit("make_corrupt: %s ends inside its GGUF header" % real_path)
            want *= 2
    real_prefix = head[:4096]
    emit("real_bad_magic.gguf", b"GGML" + real_prefix[4:], "EA_ERR_BAD_MAGIC", "real",
         "first 4096 bytes, magic 'GGML'")
    emit("real_version99.gguf", patched(real_prefix, [(4, "I", 99)]), "EA_ERR_UNSUPPORTED_VERSION",
         "real", "first 4096 bytes, version 99")
    cut, i = cut_in_tensor_info(rh, "type_off")  # inside the type of a tensor
    emit("real_cut_in_tensor_info.gguf", head[:cut], "EA_ERR_TRUNCATED", "real",
         "first %d bytes: cut inside the type of tensor %d '%s'" % (cut, i, rh.tensors[i]["name"]))

    # -- truncation everywhere: test_api cuts syn_valid.gguf at every byte of its header and at
    # these boundaries of its tensor data, and the real model at every boundary listed for it;
    # every cut before the end of the last tensor's data must be EA_ERR_TRUNCATED (the reader's
    # limits are absolute, so no cut turns a valid count into an impossible one)
    syn_b = boundaries(h, "synthetic")
    data_end = 0
    for t in h.tensors:
        assert t["type"] == 0, "the synthetic model is all F32"
        n = 4
        for d in t["dims"]:
            n *= d
        start = h.data_offset + t["offset"]
        syn_b += [(start, "synthetic: data of '%s', first byte" % t["name"]),
                  (start + 1, "synthetic: data of '%s', inside" % t["name"]),
                  (start + n // 2, "synthetic: data of '%s', middle" % t["name"]),
                  (start + n - 1, "synthetic: data of '%s', last byte" % t["name"])]
        data_end = max(data_end, start + n)
    assert data_end <= len(syn)
    with open(os.path.join(out, "truncation.txt"), "w") as f:
        f.write("# <base> <offset> <label>: cuts for test_api (written by make_corrupt.py); syn = syn_valid.gguf,\n"
                "# real = the real model file; 'syn-header-end' and 'syn-data-end' bound the sweep\n")
        f.write("syn-header-end %d\n" % h.data_offset)
        f.write("syn-data-end %d\n" % data_end)
        for off, lab in sorted(syn_b):
            f.write("syn %d %s\n" % (off, lab))
        for off, lab in sorted(boundaries(rh, "real")):
            f.write("real %d %s\n" % (off, lab))

    with open(os.path.join(out, "expected.txt"), "w") as f:
        f.write("# <file> <expected ea_status>  # <base>: <what> (written by make_corrupt.py)\n")
        for name, status, base, what in manifest:
            f.write("%s %s  # %s: %s\n" % (name, status, base, what))
    print(os.path.join(out, "expected.txt"))


if __name__ == "__main__":
    main(sys.argv)
