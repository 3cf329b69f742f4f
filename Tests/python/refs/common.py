"""Pieces shared by the two tokenizer references (spm_ref.py and tokenizer_ref.py)."""

from __future__ import annotations

import sys

import gguf


def gguf_field(reader: gguf.GGUFReader, key: str):
    """The value of a GGUF metadata key, None if it is missing."""
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def check_added_ids(tok, tokens: list[str], ids, what: str) -> None:
    """Tokens added to a `tokenizers.Tokenizer` must keep their GGUF ids."""
    for i in ids:
        got = tok.token_to_id(tokens[i])
        if got != i:
            raise AssertionError(f"{what} {tokens[i]!r} got id {got}, GGUF id {i}")


def encode_ids(tok, text: str, parse_special: bool) -> list[int]:
    """tok.encode(text) without template tokens; parse_special=False splits special-token text like plain text."""
    tok.encode_special_tokens = not parse_special
    try:
        return tok.encode(text, add_special_tokens=False).ids
    finally:
        tok.encode_special_tokens = False


def main(load, script: str) -> None:
    """The references' script entry: SCRIPT MODEL.gguf TEXT prints the ids of TEXT."""
    if len(sys.argv) != 3:
        sys.exit(f"usage: {script} MODEL.gguf TEXT")
    print(" ".join(map(str, load(sys.argv[1]).encode(sys.argv[2]))))
