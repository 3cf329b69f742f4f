"""Reference SentencePiece-style tokenizer (GGUF `tokenizer.ggml.model` = "llama", e.g. Gemma 3) built
with the `tokenizers` library.

The GGUF stores pieces (`tokenizer.ggml.tokens`, ids = list positions), their scores and types, but
no merges. As Hugging Face's SentencePiece converters do, the merges are derived from the scores:
every split of a vocabulary piece into two vocabulary pieces is a merge, ranked by the score of the
merged piece (highest first; the splits of one piece ordered by the ids of their halves). The
resulting `tokenizers.models.BPE` (byte_fallback: characters outside the vocabulary become `<0xXX>`
byte tokens) gets:

- normalizer Replace(" ", "▁") and no pre-tokenizer (tokenizer.ggml.add_space_prefix is false:
  no space is prepended);
- control tokens (type 3) as special added tokens (matched whole unless special-token parsing is
  off), user-defined tokens (type 4: newline/space/tab runs, HTML tags) as non-special added tokens
  (always matched whole), all with normalized=False so they match the raw text;
- decoder ByteFallback + Replace("▁", " ") + Fuse.

Relation to llama.cpp's SPM tokenizer (which repeatedly merges the adjacent pair whose concatenation
is a vocabulary piece with the highest score, leftmost on ties): both apply the same set of merges
in the same score order, so they agree whenever no two applicable merges tie. They can differ in
two corner cases:
1. the same piece reachable by two overlapping splits at once, e.g. symbols [aa][a][aa] where "aaa"
   is the best merge: llama.cpp merges the leftmost pair, this BPE the split with the smaller ids
   first ([aa][aaa] vs [aaa][aa]); only repeated-character runs can produce such states;
2. pieces with equal scores (control/user-defined pieces all -1000, byte pieces 0): irrelevant in
   practice because those pieces are matched whole before the merge stage or are never formed.
Added-token matching is leftmost-longest here and longest-token-first in llama.cpp; for Gemma's
added tokens (runs of one character, and tags that begin with "<"/"[" and hold no other "<"/"[")
no two occurrences can overlap partially, so both choose the same matches.

Usage as a script: python3 spm_ref.py MODEL.gguf "some text"  -> prints ids (no BOS).
"""

from __future__ import annotations

import functools
import re

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

try:
    from .common import check_added_ids, encode_ids, gguf_field, main
except ImportError:  # run as a script from this folder
    from common import check_added_ids, encode_ids, gguf_field, main

TOKEN_TYPE_NORMAL = 1
TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4
TOKEN_TYPE_BYTE = 6
SPACE = "\u2581"
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def merges_from_scores(tokens: list[str], scores: list[float]) -> list[tuple[str, str]]:
    """All (left, right) pairs of vocabulary pieces whose concatenation is a vocabulary piece,
    ordered by that piece's score (highest first), then by piece id, then by the halves' ids."""
    vocab = {t: i for i, t in enumerate(tokens)}
    rows = []
    for piece, pid in vocab.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            li, ri = vocab.get(left), vocab.get(right)
            if li is not None and ri is not None:
                rows.append((-scores[pid], pid, li, ri))
    rows.sort()
    return [(tokens[li], tokens[ri]) for _, _, li, ri in rows]


class SpmRefTokenizer:
    """A `tokenizers` BPE equivalent of a GGUF SentencePiece vocabulary, plus that vocabulary."""

    def __init__(self, gguf_path: str):
        reader = gguf.GGUFReader(gguf_path)
        model = gguf_field(reader, "tokenizer.ggml.model")
        if model != "llama":
            raise ValueError(f"{gguf_path}: tokenizer.ggml.model is {model!r}, this reference handles 'llama' (SPM)")
        # llama.cpp's default is true when the key is missing; Gemma 3 sets it to false
        self.add_space_prefix = gguf_field(reader, "tokenizer.ggml.add_space_prefix") is not False
        if self.add_space_prefix:
            raise ValueError(f"{gguf_path}: add_space_prefix=true is not handled by this reference")
        self.tokens: list[str] = list(gguf_field(reader, "tokenizer.ggml.tokens"))
        self.scores: list[float] = [float(s) for s in gguf_field(reader, "tokenizer.ggml.scores")]
        self.token_types: list[int] = [int(t) for t in gguf_field(reader, "tokenizer.ggml.token_type")]
        self.bos_id = gguf_field(reader, "tokenizer.ggml.bos_token_id")
        self.eos_id = gguf_field(reader, "tokenizer.ggml.eos_token_id")
        self.add_bos = bool(gguf_field(reader, "tokenizer.ggml.add_bos_token"))
        unk_id = gguf_field(reader, "tokenizer.ggml.unknown_token_id")

        vocab = {t: i for i, t in enumerate(self.tokens)}
        if len(vocab) != len(self.tokens):
            raise ValueError(f"{gguf_path}: duplicate token strings in tokenizer.ggml.tokens")
        self.control_ids = [i for i, t in enumerate(self.token_types) if t == TOKEN_TYPE_CONTROL]
        self.user_ids = [i for i, t in enumerate(self.token_types) if t == TOKEN_TYPE_USER_DEFINED]

        bpe = models.BPE(vocab=vocab, merges=merges_from_scores(self.tokens, self.scores),
                         unk_token=self.tokens[unk_id] if unk_id is not None else None,
                         byte_fallback=True, fuse_unk=False)
        tok = Tokenizer(bpe)
        tok.normalizer = normalizers.Replace(" ", SPACE)
        tok.pre_tokenizer = None
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Replace(SPACE, " "), decoders.Fuse()])

        def added(i, special):
            return AddedToken(self.tokens[i], special=special, normalized=False,
                              single_word=False, lstrip=False, rstrip=False)
        tok.add_special_tokens([added(i, True) for i in self.control_ids])
        tok.add_tokens([added(i, False) for i in self.user_ids])
        check_added_ids(tok, self.tokens, self.control_ids + self.user_ids, "added token")
        self._tok = tok

    def encode(self, text: str, parse_special: bool = True, bos: bool = False) -> list[int]:
        """Token ids for `text` (BOS first if bos and the model asks for it); with
        parse_special=False control-token text is split like plain text (user-defined tokens are
        still matched whole)."""
        return ([self.bos_id] if bos and self.add_bos else []) + encode_ids(self._tok, text, parse_special)

    def decode(self, ids: list[int]) -> str:
        """Text through the `tokenizers` decoder (invalid UTF-8 from byte tokens becomes U+FFFD)."""
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def piece_bytes(self, i: int) -> bytes:
        """Exact bytes of one token: byte pieces give their byte, control and user-defined pieces
        their text, other pieces their text with "▁" as a space."""
        s = self.tokens[i]
        t = self.token_types[i]
        if t == TOKEN_TYPE_BYTE:
            m = _BYTE_PIECE.fullmatch(s)
            if m:
                return bytes([int(m.group(1), 16)])
        if t in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED):
            return s.encode("utf-8")
        return s.replace(SPACE, " ").encode("utf-8")

    def decode_bytes(self, ids: list[int]) -> bytes:
        return b"".join(self.piece_bytes(int(i)) for i in ids)

    @functools.cached_property
    def _ids_by_bytes(self) -> dict[bytes, list[int]]:
        table: dict[bytes, list[int]] = {}
        for i in range(len(self.tokens)):
            table.setdefault(self.piece_bytes(i), []).append(i)
        return table

    def ids_for_prefixes_of(self, data: bytes) -> list[int]:
        """Every token whose bytes are a non-empty prefix of data."""
        return [i for n in range(1, min(len(data), 256) + 1) for i in self._ids_by_bytes.get(data[:n], [])]


@functools.lru_cache(maxsize=2)
def load(gguf_path: str) -> SpmRefTokenizer:
    return SpmRefTokenizer(str(gguf_path))


if __name__ == "__main__":
    main(load, "spm_ref.py")
