"""Golden tests of the `llama_2` family (llava_llama_2, llama_2, mistral_instruct): `SeparatorStyle.LLAMA_2`.

Rule: the supervised tokens are exactly each answer as rendered, `" " + answer + " "`, plus `</s>`; the
`[INST] … [/INST]` user turns (with the `<s>` that opens later rounds) and BOS are masked.
"""

from __future__ import annotations

import pytest
import torch

from llava.constants import IGNORE_INDEX
from llava.conversation import conv_templates
from llava.data.preprocess import preprocess, preprocess_multimodal

# Upstream preprocess_llama_2 with transformers 4.37.2's slow LlamaTokenizer(legacy=False), LLaMA-2 tokenizer.
GOLDEN_SAMPLE = [
    {"from": "human", "value": "<image>\nWhat is it?"},
    {"from": "gpt", "value": "A cat."},
    {"from": "human", "value": "Color?"},
    {"from": "gpt", "value": "Black and white."},
]
GOLDEN_IDS = [
    1, 518, 25580, 29962, 3532, 14816, 29903, 6778, 13, 3492, 526, 263, 8444, 4086, 322, 18551, 20255,
    29889, 887, 526, 2221, 304, 2274, 278, 7604, 2793, 393, 278, 1404, 8128, 29892, 322, 6985, 278, 1404,
    411, 263, 12875, 310, 9595, 773, 5613, 4086, 29889, 13, 29966, 829, 14816, 29903, 6778, 13, 13, -200,
    29871, 13, 5618, 338, 372, 29973, 518, 29914, 25580, 29962, 319, 6635, 29889, 29871, 2, 1, 29961, 25580,
    29962, 9159, 29973, 518, 29914, 25580, 29962, 6054, 322, 4796, 29889, 29871, 2,
]  # fmt: skip
GOLDEN_SUPERVISED = {63: 319, 64: 6635, 65: 29889, 66: 29871, 67: 2, 78: 6054, 79: 322, 80: 4796, 81: 29889,
                     82: 29871, 83: 2}  # fmt: skip
MISTRAL_TEXT = [{"from": "human", "value": "Hi there"}, {"from": "gpt", "value": "Hello!"}]
MISTRAL_IDS = [1, 518, 25580, 29962, 6324, 727, 518, 29914, 25580, 29962, 15043, 29991, 29871, 2]
MISTRAL_LABELS = [IGNORE_INDEX] * 10 + [15043, 29991, 29871, 2]

SAMPLES = [
    (GOLDEN_SAMPLE, True),
    (
        [
            {"from": "human", "value": "Where is the star?  <image>"},
            {"from": "gpt", "value": "Top  right.\n"},
            {"from": "human", "value": "\nAnd the 2 squares? 中文"},
            {"from": "gpt", "value": "  Bottom left 🙂"},
        ],
        True,
    ),
    (MISTRAL_TEXT + [{"from": "human", "value": "Again"}, {"from": "gpt", "value": "Hello again."}], False),
]


def _run(tokenizer, sample, name, has_image):
    conv = conv_templates[name]
    sources = [sample]
    if has_image:
        sources = preprocess_multimodal(
            sources, is_multimodal=True, mm_use_im_start_end=False, version=conv.version
        )
    out = preprocess(sources, tokenizer, conversation=conv, has_image=has_image, sample_id="s")
    return out["input_ids"][0], out["labels"][0], sources[0]


def test_golden_llava_llama_2(llama2_tok):
    ids, labels, _ = _run(llama2_tok, GOLDEN_SAMPLE, "llava_llama_2", has_image=True)
    assert ids.tolist() == GOLDEN_IDS
    assert labels.tolist() == [GOLDEN_SUPERVISED.get(i, IGNORE_INDEX) for i in range(len(GOLDEN_IDS))]


def test_golden_mistral_instruct(llama2_tok):
    ids, labels, _ = _run(llama2_tok, MISTRAL_TEXT, "mistral_instruct", has_image=False)
    assert ids.tolist() == MISTRAL_IDS
    assert labels.tolist() == MISTRAL_LABELS


@pytest.mark.parametrize("name", ["llava_llama_2", "llama_2", "mistral_instruct"])
@pytest.mark.parametrize("sample,has_image", SAMPLES)
def test_supervised_spans_are_answers_plus_eos(
    sp_tokenizer, sp_encode, supervised_runs, name, sample, has_image
):
    ids, labels, turns = _run(sp_tokenizer, sample, name, has_image)
    answers = [t["value"] for t in turns if t["from"] == "gpt"]
    runs = supervised_runs(labels)
    assert runs == [sp_encode(answer + " ") + [sp_tokenizer.eos_token_id] for answer in answers]
    assert [sp_tokenizer.decode(run) for run in runs] == [answer + " </s>" for answer in answers]
    keep = labels != IGNORE_INDEX
    assert torch.equal(labels[keep], ids[keep])
    assert ids[0].item() == sp_tokenizer.bos_token_id and labels[0].item() == IGNORE_INDEX


def test_later_rounds_open_with_masked_bos(llama2_tok):
    ids, labels, _ = _run(llama2_tok, GOLDEN_SAMPLE, "llava_llama_2", has_image=True)
    bos_positions = (ids == 1).nonzero().flatten().tolist()
    assert bos_positions == [0, 68]
    assert labels[68].item() == IGNORE_INDEX
