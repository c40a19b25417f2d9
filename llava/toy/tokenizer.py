"""A SentencePiece tokenizer trained on the world's text and saved the way LLaMA's is.

The trainer options mirror LLaMA-2's ``tokenizer.model`` (BPE, byte fallback, split digits, dummy prefix,
no whitespace normalisation, identity normaliser, unk/bos/eos = 0/1/2, no pad), so every LLaMA code path
(upstream's slow ``LlamaTokenizer(legacy=False)``, transformers' converter, our SentencePiece-exact
tokenizer) treats it like the real one.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from types import MappingProxyType

import sentencepiece as spm

TOKENIZER_FILE = "tokenizer.model"
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
_SPECIAL_TOKENS = MappingProxyType({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})


def train_sentencepiece(lines: Iterable[str], vocab_size: int) -> bytes:
    """Train a LLaMA-style BPE SentencePiece model.

    Args:
        lines: training sentences; each must be a single line (newlines are left to byte fallback,
            as in LLaMA, where ``"\\n"`` is ``<0x0A>``).
        vocab_size: total vocabulary size, including the 3 special and 256 byte pieces.

    Returns:
        The serialized model (the bytes of ``tokenizer.model``).
    """
    sentences = list(lines)
    for i, line in enumerate(sentences):
        if "\n" in line:
            raise ValueError(f"Tokenizer training line {i} contains a newline: {line!r}")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=1.0,
        byte_fallback=True,
        split_digits=True,
        split_by_unicode_script=True,
        split_by_whitespace=True,
        split_by_number=True,
        allow_whitespace_only_pieces=True,
        max_sentencepiece_length=16,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        pad_id=-1,
        unk_surface=" \u2047 ",
        # Determinism: no sampling or shuffling of the input, one thread.
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def save_llama_tokenizer(model_bytes: bytes, out_dir: Path, model_max_length: int) -> None:
    """Write ``tokenizer.model``, ``tokenizer_config.json`` and ``special_tokens_map.json`` like LLaMA-2's.

    Args:
        model_bytes: serialized SentencePiece model.
        out_dir: existing folder (usually the LLM's checkpoint folder).
        model_max_length: the tokenizer's default maximum length (the LM's context size).
    """
    (out_dir / TOKENIZER_FILE).write_bytes(model_bytes)
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        **_SPECIAL_TOKENS,
        "clean_up_tokenization_spaces": False,
        "legacy": False,
        "model_max_length": model_max_length,
        "pad_token": None,
        "padding_side": "right",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
    }
    _write_json(out_dir / "tokenizer_config.json", config)
    _write_json(out_dir / "special_tokens_map.json", dict(_SPECIAL_TOKENS))


def load_processor(model_bytes: bytes) -> spm.SentencePieceProcessor:
    """A SentencePiece processor for a serialized model (ids without BOS/EOS)."""
    processor = spm.SentencePieceProcessor()
    processor.LoadFromSerializedProto(model_bytes)
    return processor


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
