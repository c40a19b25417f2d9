"""Fixtures of the data tests: the real LLaMA-2 tokenizer and a tiny SentencePiece LLaMA tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sentencepiece as spm

from llava.constants import IGNORE_INDEX
from llava.tokenization import load_tokenizer

_TOY_CORPUS_LINES = [
    "A chat between a curious user and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "USER: What is in the image? ASSISTANT: A red circle on the left.",
    "USER: How many squares are there? ASSISTANT: There are 3 squares.",
    "Human: Describe the picture. Assistant: A blue triangle next to a green square.",
    "[INST] <<SYS>> You are a helpful language and vision assistant. <</SYS>> [/INST]",
    "system user assistant Answer the questions. im_start im_end",
    "The quick brown fox jumps over the lazy dog 0123456789 times.",
    "colors: red green blue yellow purple orange black white",
    "shapes: circle square triangle star hexagon; positions: left right top bottom center",
]


@pytest.fixture(scope="session")
def llama2_dir(llama2_tokenizer_dir: Path) -> Path:
    """The real LLaMA-2 tokenizer folder (tests/conftest.py fails, not skips, without it)."""
    return llama2_tokenizer_dir


@pytest.fixture(scope="session")
def toy_sp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SentencePiece BPE model saved as a LLaMA tokenizer (unk/bos/eos = 0/1/2, legacy=false)."""
    out = tmp_path_factory.mktemp("toy_sp")
    corpus = out / "corpus.txt"
    corpus.write_text("\n".join(_TOY_CORPUS_LINES * 20) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(out / "tokenizer"),
        model_type="bpe",
        vocab_size=400,
        byte_fallback=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        minloglevel=2,
    )
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "legacy": False,
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return out


@pytest.fixture(scope="session", params=["llama2", "toy"])
def sp_tokenizer_dir(request: pytest.FixtureRequest) -> Path:
    """Both SentencePiece LLaMA tokenizers, for tests that must hold for either."""
    return request.getfixturevalue("llama2_dir" if request.param == "llama2" else "toy_sp_dir")


@pytest.fixture()
def sp_tokenizer(sp_tokenizer_dir: Path):
    """A fresh training tokenizer (pad = unk, as `configure_pad_token(tok, "v1")`)."""
    tok = load_tokenizer(sp_tokenizer_dir, model_max_length=2048)
    tok.pad_token = tok.unk_token
    return tok


@pytest.fixture()
def llama2_tok(llama2_dir: Path):
    """A fresh LLaMA-2 training tokenizer (pad = unk)."""
    tok = load_tokenizer(llama2_dir, model_max_length=2048)
    tok.pad_token = tok.unk_token
    return tok


@pytest.fixture()
def sp_encode(sp_tokenizer_dir: Path):
    """SentencePiece's own encoding (dummy prefix as the model says): the reference for plain text."""
    processor = spm.SentencePieceProcessor(model_file=str(sp_tokenizer_dir / "tokenizer.model"))
    return lambda text: processor.encode(text)


def _supervised_runs(labels) -> list[list[int]]:
    """Contiguous runs of supervised label ids."""
    runs, current = [], []
    for label in [int(x) for x in labels]:
        if label == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(label)
    return runs + [current] if current else runs


@pytest.fixture()
def supervised_runs():
    """`supervised_runs(labels)` → the contiguous supervised id runs."""
    return _supervised_runs
