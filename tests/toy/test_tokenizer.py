"""The world's tokenizer behaves like LLaMA's: SentencePiece BPE, byte fallback, ids 0/1/2, no pad."""

from __future__ import annotations

import json

import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
from transformers import AutoTokenizer

TEXTS = (
    "three red circles on the left.",
    "What color are the shapes?\nAnswer with a single word.",
    "hi  there, 12 stars!",
    "Context: N/A\nQuestion: Which word is a color?\nOptions: (A) red (B) star",
)


@pytest.fixture(scope="module")
def sp(toy_world):
    return spm.SentencePieceProcessor(model_file=str(toy_world.llm_dir / "tokenizer.model"))


def test_trainer_options_match_llama(toy_world):
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((toy_world.llm_dir / "tokenizer.model").read_bytes())
    spec, norm = proto.trainer_spec, proto.normalizer_spec
    assert spec.model_type == sentencepiece_model_pb2.TrainerSpec.BPE
    assert spec.byte_fallback and spec.split_digits and spec.allow_whitespace_only_pieces
    assert (spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id) == (0, 1, 2, -1)
    assert norm.name == "identity" and norm.add_dummy_prefix and not norm.remove_extra_whitespaces
    assert 1000 <= len(proto.pieces) <= 2000


def test_sentencepiece_round_trip(sp):
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    for text in TEXTS:
        assert sp.decode(sp.encode(text)) == text
    assert sp.encode("\n") == [sp.piece_to_id("▁"), sp.piece_to_id("<0x0A>")]
    assert sp.encode("7") == [sp.piece_to_id("▁"), sp.piece_to_id("7")] or sp.encode("7") == [
        sp.piece_to_id("▁7")
    ]


def test_tokenizer_config_files(toy_world):
    config = json.loads((toy_world.llm_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "LlamaTokenizer" and config["legacy"] is False
    assert (
        config["add_bos_token"] is True and config["add_eos_token"] is False and config["pad_token"] is None
    )
    assert (config["bos_token"], config["eos_token"], config["unk_token"]) == ("<s>", "</s>", "<unk>")
    special = json.loads((toy_world.llm_dir / "special_tokens_map.json").read_text())
    assert special == {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def test_auto_tokenizer_loads_and_matches_sentencepiece(toy_world, sp):
    tokenizer = AutoTokenizer.from_pretrained(toy_world.llm_dir)
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.pad_token is None
    for text in TEXTS:
        ids = tokenizer(text).input_ids
        assert ids == [1, *sp.encode(text)], text
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
