"""Reference GPT-2 byte-level BPE tokenizer built from a GGUF file with the `tokenizers` library.

The model is a plain BPE over the GGUF's `tokenizer.ggml.tokens` (ids = list positions) and
`tokenizer.ggml.merges` (rank = list position). Pre-tokenization is the `smollm` recipe:
individual digits first, then GPT-2's byte-level regex split without a prefix space. Tokens whose
`tokenizer.ggml.token_type` is 3 (control) or 4 (user-defined) are registered as special tokens,
so their text is matched whole. This gives llama.cpp's ids exactly for SmolLM2 (checked on mixed text;
see Tests/Fixtures/reference/README.md).

Usage as a script: python3 tokenizer_ref.py MODEL.gguf "some text"  -> prints ids.
"""

from __future__ import annotations

import functools

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

try:
    from .common import check_added_ids, encode_ids, gguf_field, main
except ImportError:  # run as a script from this folder
    from common import check_added_ids, encode_ids, gguf_field, main

TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable unicode characters.

    Printable Latin-1 bytes map to themselves; every other byte b gets chr(256 + k), k counting
    the non-printable bytes in increasing order.
    """
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    out: dict[int, str] = {}
    k = 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + k)
            k += 1
    return out


UNICODE_TO_BYTE = {c: b for b, c in byte_to_unicode().items()}


class RefTokenizer:
    """A `tokenizers` BPE tokenizer plus the GGUF vocabulary it was built from."""

    def __init__(self, gguf_path: str):
        reader = gguf.GGUFReader(gguf_path)
        model = gguf_field(reader, "tokenizer.ggml.model")
        if model != "gpt2":
            raise ValueError(f"{gguf_path}: tokenizer.ggml.model is {model!r}, this reference handles 'gpt2' only")
        self.tokens: list[str] = list(gguf_field(reader, "tokenizer.ggml.tokens"))
        merges = gguf_field(reader, "tokenizer.ggml.merges") or []
        types = gguf_field(reader, "tokenizer.ggml.token_type")
        self.token_types: list[int] = list(types) if types is not None else [1] * len(self.tokens)
        self.pre = gguf_field(reader, "tokenizer.ggml.pre")
        self.bos_id = gguf_field(reader, "tokenizer.ggml.bos_token_id")
        self.eos_id = gguf_field(reader, "tokenizer.ggml.eos_token_id")

        vocab = {tok: i for i, tok in enumerate(self.tokens)}
        if len(vocab) != len(self.tokens):
            raise ValueError(f"{gguf_path}: duplicate token strings in tokenizer.ggml.tokens")
        pairs = []
        for m in merges:
            a, sep, b = m.partition(" ")
            if not sep:
                raise ValueError(f"{gguf_path}: malformed merge {m!r}")
            pairs.append((a, b))

        tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
        tok.decoder = decoders.ByteLevel()
        self.special_ids = [i for i, t in enumerate(self.token_types)
                            if t in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED)]
        tok.add_special_tokens([
            AddedToken(self.tokens[i], special=True, normalized=False, single_word=False, lstrip=False, rstrip=False)
            for i in self.special_ids
        ])
        check_added_ids(tok, self.tokens, self.special_ids, "special token")
        self._tok = tok

    def encode(self, text: str, parse_special: bool = True) -> list[int]:
        """Token ids for `text`; with parse_special=False special-token text is split like plain text."""
        return encode_ids(self._tok, text, parse_special)

    def decode_bytes(self, ids: list[int]) -> bytes:
        """Exact bytes of the ids: byte-level tokens mapped back to bytes, special tokens as their UTF-8 text."""
        out = bytearray()
        special = set(self.special_ids)
        for i in ids:
            s = self.tokens[i]
            if i in special:
                out += s.encode("utf-8")
            else:
                try:
                    out += bytes(UNICODE_TO_BYTE[c] for c in s)
                except KeyError:  # not a byte-level token: take its text as is
                    out += s.encode("utf-8")
        return bytes(out)


@functools.lru_cache(maxsize=4)
def load(gguf_path: str) -> RefTokenizer:
    return RefTokenizer(str(gguf_path))


if __name__ == "__main__":
    main(load, "tokenizer_ref.py")
