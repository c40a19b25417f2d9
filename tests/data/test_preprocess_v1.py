"""Golden tests of the `v1` family (vicuna_v1, llava_v1, v1_mmtag): `SeparatorStyle.TWO`.

Rule (upstream's net effect): the supervised tokens are exactly each assistant answer, with the space
before it, plus `</s>`; BOS, system, user turns and `ASSISTANT:` are masked.
"""

from __future__ import annotations

import pytest
import torch

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.conversation import conv_templates
from llava.data.preprocess import preprocess, preprocess_multimodal
from llava.mm_utils import tokenizer_image_token

# Upstream LLaVA's preprocess_v1 (HEAD, with its tokenizers>=0.14 correction) run with transformers 4.37.2's
# slow LlamaTokenizer(legacy=False) on the LLaMA-2 tokenizer, for GOLDEN_SAMPLE under `v1` with an image.
GOLDEN_SAMPLE = [
    {"from": "human", "value": "<image>\nWhat is it?"},
    {"from": "gpt", "value": "A cat."},
    {"from": "human", "value": "Color?"},
    {"from": "gpt", "value": "Black and white."},
]
GOLDEN_IDS = [
    1, 319, 13563, 1546, 263, 12758, 1404, 322, 385, 23116, 21082, 20255, 29889, 450, 20255, 4076, 8444,
    29892, 13173, 29892, 322, 1248, 568, 6089, 304, 278, 1404, 29915, 29879, 5155, 29889, 3148, 1001, 29901,
    29871, -200, 29871, 13, 5618, 338, 372, 29973, 319, 1799, 9047, 13566, 29901, 319, 6635, 29889, 2, 11889,
    29901, 9159, 29973, 319, 1799, 9047, 13566, 29901, 6054, 322, 4796, 29889, 2,
]  # fmt: skip
GOLDEN_SUPERVISED = {47: 319, 48: 6635, 49: 29889, 50: 2, 60: 6054, 61: 322, 62: 4796, 63: 29889, 64: 2}

V1_TEMPLATES = ["v1", "vicuna_v1", "llava_v1", "v1_mmtag"]

MULTI_TURN = [
    {"from": "human", "value": "What is shown?\n<image>"},
    {"from": "gpt", "value": "A red  circle, left of a square."},
    {"from": "human", "value": "  How many shapes?  "},
    {"from": "gpt", "value": "Two.\n"},
    {"from": "human", "value": "Unicode: é 中文 🙂 ok?"},
    {"from": "gpt", "value": " Yes: é 中文 🙂 123."},
]
TEXT_ONLY = [
    {"from": "human", "value": "Tell me a fact about the number 42."},
    {"from": "gpt", "value": "It is 2 × 3 × 7."},
    {"from": "human", "value": "And 7?"},
    {"from": "gpt", "value": "A prime."},
]


def _run(tokenizer, sample, name, has_image, mm_use_im_start_end=False, sample_id="s"):
    conv = conv_templates[name]
    sources = [sample]
    if has_image:
        sources = preprocess_multimodal(
            sources, is_multimodal=True, mm_use_im_start_end=mm_use_im_start_end, version=conv.version
        )
    out = preprocess(sources, tokenizer, conversation=conv, has_image=has_image, sample_id=sample_id)
    return out["input_ids"][0], out["labels"][0], sources[0]


def test_golden_ids_and_labels_match_upstream(llama2_tok):
    ids, labels, _ = _run(llama2_tok, GOLDEN_SAMPLE, "v1", has_image=True)
    assert ids.tolist() == GOLDEN_IDS
    expected = [GOLDEN_SUPERVISED.get(i, IGNORE_INDEX) for i in range(len(GOLDEN_IDS))]
    assert labels.tolist() == expected


@pytest.mark.parametrize("name", V1_TEMPLATES)
@pytest.mark.parametrize("sample,has_image", [(MULTI_TURN, True), (TEXT_ONLY, False)])
def test_supervised_spans_are_answers_plus_eos(
    sp_tokenizer, sp_encode, supervised_runs, name, sample, has_image
):
    ids, labels, turns = _run(sp_tokenizer, sample, name, has_image)
    eos = sp_tokenizer.eos_token_id
    answers = [t["value"] for t in turns if t["from"] == "gpt"]
    runs = supervised_runs(labels)
    # By hand: SentencePiece's encoding of " " + answer is sp_encode(answer) (dummy prefix), then </s>.
    assert runs == [sp_encode(answer) + [eos] for answer in answers]
    assert [sp_tokenizer.decode(run) for run in runs] == [answer + "</s>" for answer in answers]
    # Supervised labels equal their input ids; BOS and everything else is masked.
    keep = labels != IGNORE_INDEX
    assert torch.equal(labels[keep], ids[keep])
    assert labels[0].item() == IGNORE_INDEX and ids[0].item() == sp_tokenizer.bos_token_id
    # input_ids are the tokenization of the whole rendered prompt.
    conv = conv_templates[name].copy()
    conv.messages = []
    for turn in turns:
        conv.append_message(conv.roles[0] if turn["from"] == "human" else conv.roles[1], turn["value"])
    prompt = conv.get_prompt()
    expected_ids = (
        tokenizer_image_token(prompt, sp_tokenizer) if has_image else sp_tokenizer(prompt).input_ids
    )
    assert ids.tolist() == expected_ids
    assert (ids == IMAGE_TOKEN_INDEX).sum().item() == int(has_image)


def test_masked_part_is_the_prompt_without_answers(llama2_tok):
    ids, labels, turns = _run(llama2_tok, TEXT_ONLY, "v1", has_image=False)
    masked = ids[labels == IGNORE_INDEX].tolist()
    text = llama2_tok.decode(masked, skip_special_tokens=True)
    system = conv_templates["v1"].system
    assert (
        text == f"{system} USER: {TEXT_ONLY[0]['value']} ASSISTANT:USER: {TEXT_ONLY[2]['value']} ASSISTANT:"
    )


def test_text_after_eos_has_no_prefix_space(llama2_tok):
    # "</s>USER" is encoded as 'USER' (11889), not '▁US' 'ER': the 4.37 slow tokenizer's behaviour.
    ids, _labels, _ = _run(llama2_tok, TEXT_ONLY, "v1", has_image=False)
    eos_positions = (ids == 2).nonzero().flatten().tolist()
    assert ids[eos_positions[0] + 1].item() == 11889


def test_image_moved_to_front_and_start_end_tokens(llama2_tok):
    llama2_tok.add_tokens(["<im_patch>"], special_tokens=True)
    llama2_tok.add_tokens(["<im_start>", "<im_end>"], special_tokens=True)
    ids, labels, turns = _run(llama2_tok, MULTI_TURN, "v1", has_image=True, mm_use_im_start_end=True)
    assert turns[0]["value"] == "<im_start><image><im_end>\nWhat is shown?"
    start, end = llama2_tok.convert_tokens_to_ids(["<im_start>", "<im_end>"])
    assert (start, end) == (32001, 32002)
    where = (ids == IMAGE_TOKEN_INDEX).nonzero().flatten().tolist()
    assert len(where) == 1
    k = where[0]
    assert ids[k - 1 : k + 2].tolist() == [start, IMAGE_TOKEN_INDEX, end]
    assert (labels[: k + 2] == IGNORE_INDEX).all()


def test_mmtag_wraps_the_image(llama2_tok):
    _ids, _labels, turns = _run(llama2_tok, GOLDEN_SAMPLE, "v1_mmtag", has_image=True)
    assert turns[0]["value"] == "<Image><image></Image>\nWhat is it?"


def test_text_only_truncated_at_model_max_length(llama2_tok):
    full_ids, full_labels, _ = _run(llama2_tok, TEXT_ONLY, "v1", has_image=False)
    limit = len(full_ids) - 5
    llama2_tok.model_max_length = limit
    ids, labels, _ = _run(llama2_tok, TEXT_ONLY, "v1", has_image=False)
    assert ids.tolist() == full_ids[:limit].tolist()
    assert labels.tolist() == full_labels[:limit].tolist()


def test_image_samples_are_not_truncated(llama2_tok):
    full_ids, _labels, _ = _run(llama2_tok, GOLDEN_SAMPLE, "v1", has_image=True)
    llama2_tok.model_max_length = 10
    ids, _labels, _ = _run(llama2_tok, GOLDEN_SAMPLE, "v1", has_image=True)
    assert torch.equal(ids, full_ids)


def test_first_gpt_turn_is_dropped(llama2_tok):
    sample = [{"from": "gpt", "value": "Ignored."}] + TEXT_ONLY
    ids, labels, _ = _run(llama2_tok, sample, "v1", has_image=False)
    ref_ids, ref_labels, _ = _run(llama2_tok, TEXT_ONLY, "v1", has_image=False)
    assert torch.equal(ids, ref_ids) and torch.equal(labels, ref_labels)


def test_trailing_user_turn_is_masked(llama2_tok, supervised_runs):
    sample = TEXT_ONLY + [{"from": "human", "value": "One more?"}]
    _ids, labels, _ = _run(llama2_tok, sample, "v1", has_image=False)
    assert [llama2_tok.decode(run) for run in supervised_runs(labels)] == [
        "It is 2 × 3 × 7.</s>",
        "A prime.</s>",
    ]
