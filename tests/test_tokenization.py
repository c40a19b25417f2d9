"""`llava.tokenization`: SentencePiece-exact LLaMA tokenizer, loading, saving and the pad policy.

Golden ids/strings below were produced by transformers 4.37.2's slow `LlamaTokenizer` (what upstream
LLaVA-1.5 trained with) on the LLaMA-2 tokenizer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from llava.tokenization import LlamaSentencePieceTokenizer, configure_pad_token, load_tokenizer

PLAIN_TEXTS = [
    "hi  there", "Hello, world!", "  leading spaces", "trailing spaces   ", "a\nb", "line\n\n\nline", "\n",
    "\nWhat is this?", "tabs\tand\tmore", "numbers 1234567 and 3.14159", "é ü ñ ß", "中文 日本語 한국어",
    "emoji 🙂🚀 done", "ＡＢＣ full width", "e\u0301 combining", "\u00a0nbsp", "mixed ▁ underscore", " ", "",
    "USER: What is in the image? ASSISTANT:", "x" * 300,
]  # fmt: skip


@pytest.fixture(scope="module")
def llama2_dir(llama2_tokenizer_dir) -> Path:
    return llama2_tokenizer_dir


@pytest.fixture()
def tok(llama2_dir):
    return load_tokenizer(llama2_dir)


@pytest.fixture(scope="module")
def sp(llama2_dir):
    return spm.SentencePieceProcessor(model_file=str(llama2_dir / "tokenizer.model"))


def test_loads_our_class_with_settings(llama2_dir):
    tok = load_tokenizer(llama2_dir, model_max_length=123, padding_side="right")
    assert type(tok) is LlamaSentencePieceTokenizer
    assert (tok.model_max_length, tok.padding_side, tok.legacy) == (123, "right", False)
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token) == (0, 1, 2, None)
    assert len(tok) == 32000


def test_hi_there(tok):
    assert tok("hi  there").input_ids == [1, 7251, 29871, 727]


@pytest.mark.parametrize("text", PLAIN_TEXTS)
def test_plain_text_equals_sentencepiece(tok, sp, text):
    assert tok(text).input_ids == [1] + sp.encode(text)
    assert tok(text, add_special_tokens=False).input_ids == sp.encode(text)


@pytest.mark.parametrize(
    "text,ids",
    [
        ("a</s>USER", [1, 263, 2, 11889]),  # no prefix space after a special token
        ("a</s> USER", [1, 263, 2, 3148, 1001]),
        ("USER: a</s>USER: b", [1, 3148, 1001, 29901, 263, 2, 11889, 29901, 289]),
        ("<s>[INST] hi", [1, 1, 29961, 25580, 29962, 7251]),
        ("x<unk>y", [1, 921, 0, 29891]),
        ("<image>", [1, 529, 3027, 29958]),  # not a token: tokenizer_image_token handles it
    ],
)
def test_special_tokens_are_split_out(tok, text, ids):
    assert tok(text).input_ids == ids


def test_added_tokens(tok):
    tok.add_tokens(["<im_patch>"], special_tokens=True)
    tok.add_tokens(["<im_start>", "<im_end>"], special_tokens=True)
    assert tok.add_special_tokens({"pad_token": "[PAD]"}) == 1
    assert tok.convert_tokens_to_ids(["<im_patch>", "<im_start>", "<im_end>", "[PAD]"]) == [
        32000,
        32001,
        32002,
        32003,
    ]
    assert len(tok) == 32004
    assert tok("a <im_start> b<im_end>c").input_ids == [1, 263, 29871, 32001, 289, 32002, 29883]
    assert tok("hi <im_patch><im_patch> there").input_ids == [1, 7251, 29871, 32000, 32000, 727]
    assert tok("<im_start>\nhi").input_ids == [1, 32001, 13, 2918]
    assert tok.decode([1, 32001, 13, 2918, 32002, 263]) == "<s> <im_start> \nhi <im_end> a"


def test_add_bos_and_eos_flags(llama2_dir, tmp_path):
    shutil.copy(llama2_dir / "tokenizer.model", tmp_path / "tokenizer.model")
    config = json.loads((llama2_dir / "tokenizer_config.json").read_text())
    config.update(add_bos_token=False, add_eos_token=True)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = load_tokenizer(tmp_path)
    assert tok("hi").input_ids == [7251, 2]
    assert tok("hi", "yo").input_ids == [7251, 2] + tok("yo").input_ids


def test_legacy_true_when_config_does_not_say(llama2_dir, tmp_path):
    # transformers 4.37 defaulted to legacy=True: text after a special token gets SentencePiece's prefix.
    shutil.copy(llama2_dir / "tokenizer.model", tmp_path / "tokenizer.model")
    config = json.loads((llama2_dir / "tokenizer_config.json").read_text())
    del config["legacy"]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = load_tokenizer(tmp_path)
    assert tok.legacy is True
    assert tok("a</s>USER").input_ids == [1, 263, 2, 3148, 1001]
    assert tok("hi  there").input_ids == [1, 7251, 29871, 727]


@pytest.mark.parametrize(
    "ids,text,skipped",
    [
        ([1, 7251, 29871, 727, 2, 11889, 29901], "<s> hi  there</s>USER:", "hi  thereUSER:"),
        ([29871, 13, 5618], "\nWhat", "\nWhat"),
        ([1, 319, 6635, 29889, 2], "<s> A cat.</s>", "A cat."),
    ],
)
def test_decode_matches_slow_tokenizer(tok, ids, text, skipped):
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=True) == skipped


@pytest.mark.parametrize("text", [t for t in PLAIN_TEXTS if "▁" not in t])
def test_decode_round_trips_plain_text(tok, text):
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text


def test_save_pretrained_round_trip(tok, tmp_path):
    tok.add_tokens(["<im_patch>"], special_tokens=True)
    tok.add_tokens(["<im_start>", "<im_end>"], special_tokens=True)
    tok.add_special_tokens({"pad_token": "[PAD]"})
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert (tmp_path / "tokenizer.model").is_file()
    assert config["tokenizer_class"] == "LlamaTokenizer"
    assert (config["legacy"], config["add_bos_token"], config["add_eos_token"]) == (False, True, False)
    assert config["additional_special_tokens"] == ["<im_patch>", "<im_start>", "<im_end>"]
    assert config["pad_token"] == "[PAD]"
    again = load_tokenizer(tmp_path)
    assert type(again) is LlamaSentencePieceTokenizer
    text = "A chat. USER: <im_start>x<im_end>\nhi  there</s>USER: [PAD] ok"
    assert again(text).input_ids == tok(text).input_ids
    assert (again.pad_token_id, len(again)) == (32003, 32004)


def _fast_tokenizer_dir(tmp_path, vocab, **special):
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=backend, **special)
    fast.save_pretrained(tmp_path)
    return tmp_path


def test_non_llama_folder_goes_through_autotokenizer(tmp_path):
    folder = _fast_tokenizer_dir(tmp_path, {"a": 0, "b": 1, "<eos>": 2}, eos_token="<eos>")
    tok = load_tokenizer(folder, model_max_length=7)
    assert not isinstance(tok, LlamaSentencePieceTokenizer)
    assert tok.model_max_length == 7 and tok.padding_side == "right"


def test_pad_policy_upstream(llama2_dir):
    tok = load_tokenizer(llama2_dir)
    assert configure_pad_token(tok, "v1") == 0
    assert (tok.pad_token, tok.pad_token_id) == ("<unk>", 0)
    v0 = load_tokenizer(llama2_dir)
    assert configure_pad_token(v0, "v0") == 1
    assert (v0.pad_token, v0.pad_token_id, len(v0)) == ("[PAD]", 32000, 32001)


def test_pad_policy_without_unk(tmp_path):
    vocab = {"a": 0, "b": 1, "<|eot|>": 2, "<|reserved_special_token_0|>": 3}
    reserved = load_tokenizer(_fast_tokenizer_dir(tmp_path / "r", vocab, eos_token="<|eot|>"))
    assert configure_pad_token(reserved, "v1") == 0
    assert reserved.pad_token == "<|reserved_special_token_0|>" and reserved.pad_token_id == 3

    bare = load_tokenizer(_fast_tokenizer_dir(tmp_path / "b", {"a": 0, "<|eot|>": 1}, eos_token="<|eot|>"))
    assert configure_pad_token(bare, "llava_llama_2") == 1
    assert (bare.pad_token, bare.pad_token_id) == ("<pad>", 2)

    own = load_tokenizer(_fast_tokenizer_dir(tmp_path / "o", {"a": 0, "<|eot|>": 1, "<|endoftext|>": 2},
                                             eos_token="<|eot|>", pad_token="<|endoftext|>"))  # fmt: skip
    assert configure_pad_token(own, "mpt") == 0
    assert own.pad_token == "<|endoftext|>"
