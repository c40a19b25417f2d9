"""Golden tests of the `mpt` family (chatml_direct, mistral_direct, mpt): `SeparatorStyle.MPT`.

Rule: each answer plus its `<|im_end|>` is supervised; the system, user turns and the
`<|im_end|><|im_start|>assistant\\n` prefix are masked. Chat-ML tokenizers have `<|im_start|>`/`<|im_end|>`
as special tokens and (Yi, as in LLaVA-1.6-34B) no BOS: the tests build such a LLaMA-2 variant.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.conversation import conv_templates
from llava.data.preprocess import PreprocessError, preprocess, preprocess_multimodal
from llava.tokenization import load_tokenizer

SAMPLE = [
    {"from": "human", "value": "<image>\nWhat is it?"},
    {"from": "gpt", "value": "A cat."},
    {"from": "human", "value": "Color?"},
    {"from": "gpt", "value": "Black and white."},
]
# Upstream preprocess_mpt with 4.37.2's slow tokenizer: LLaMA-2 without BOS, chat-ML tokens 32000/32001.
GOLDEN_IDS = [
    32000, 5205, 13, 22550, 278, 5155, 29889, 32001, 32000, 1792, 13, -200, 29871, 13, 5618, 338, 372, 29973,
    32001, 32000, 465, 22137, 13, 29909, 6635, 29889, 32001, 32000, 1792, 13, 3306, 29973, 32001, 32000, 465,
    22137, 13, 18700, 322, 4796, 29889, 32001,
]  # fmt: skip
GOLDEN_SUPERVISED = {
    23: 29909,
    24: 6635,
    25: 29889,
    26: 32001,
    37: 18700,
    38: 322,
    39: 4796,
    40: 29889,
    41: 32001,
}


@pytest.fixture(params=[False, True], ids=["no_bos", "bos"])
def chatml_tok(request, sp_tokenizer_dir, tmp_path):
    folder = tmp_path / "chatml"
    folder.mkdir()
    shutil.copy(sp_tokenizer_dir / "tokenizer.model", folder / "tokenizer.model")
    config = json.loads((sp_tokenizer_dir / "tokenizer_config.json").read_text())
    config["add_bos_token"] = request.param
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    tok = load_tokenizer(folder)
    tok.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
    tok.pad_token = tok.unk_token
    return tok


def _run(tokenizer, sample, name="chatml_direct", has_image=True):
    conv = conv_templates[name]
    sources = [sample]
    if has_image:
        sources = preprocess_multimodal(
            sources, is_multimodal=True, mm_use_im_start_end=False, version=conv.version
        )
    out = preprocess(sources, tokenizer, conversation=conv, has_image=has_image, sample_id="s")
    return out["input_ids"][0], out["labels"][0], sources[0]


def test_golden_chatml_without_bos(llama2_dir, tmp_path):
    shutil.copy(llama2_dir / "tokenizer.model", tmp_path / "tokenizer.model")
    config = json.loads((llama2_dir / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "add_bos_token": False}))
    tok = load_tokenizer(tmp_path)
    tok.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
    tok.pad_token = tok.unk_token
    ids, labels, _ = _run(tok, SAMPLE)
    assert ids.tolist() == GOLDEN_IDS
    assert labels.tolist() == [GOLDEN_SUPERVISED.get(i, IGNORE_INDEX) for i in range(len(GOLDEN_IDS))]


@pytest.mark.parametrize("name", ["chatml_direct", "mistral_direct", "mpt"])
@pytest.mark.parametrize("has_image", [True, False])
def test_supervised_spans_are_answers_plus_im_end(chatml_tok, supervised_runs, name, has_image):
    sample = SAMPLE if has_image else [dict(t, value=t["value"].replace("<image>\n", "")) for t in SAMPLE]
    ids, labels, turns = _run(chatml_tok, sample, name, has_image)
    im_end = chatml_tok.convert_tokens_to_ids("<|im_end|>")
    answers = [t["value"] for t in turns if t["from"] == "gpt"]
    runs = supervised_runs(labels)
    assert [run[-1] for run in runs] == [im_end] * len(answers)
    # By hand: after "assistant\n" an answer is encoded as written (no prefix space).
    assert runs == [chatml_tok.sp_model.encode(answer) + [im_end] for answer in answers]
    assert [chatml_tok.decode(run, spaces_between_special_tokens=False) for run in runs] == [
        answer + "<|im_end|>" for answer in answers
    ]
    keep = labels != IGNORE_INDEX
    assert torch.equal(labels[keep], ids[keep])
    assert (ids == IMAGE_TOKEN_INDEX).sum().item() == int(has_image)
    if chatml_tok.add_bos_token:
        assert ids[0].item() == chatml_tok.bos_token_id and labels[0].item() == IGNORE_INDEX


def test_chatml_without_special_tokens_fails_loudly(llama2_tok):
    # With "<|im_end|>" as plain text, "…|><|…" merges across the turn boundary: no silent masking.
    with pytest.raises(PreprocessError, match=r"Sample 's'.*tokenization mismatch.*\d+ tokens"):
        _run(llama2_tok, SAMPLE)
