"""Golden tests of `plain` (pretraining) and the legacy `###` (v0) format."""

from __future__ import annotations

import pytest

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.conversation import conv_templates
from llava.data.preprocess import PreprocessError, preprocess, preprocess_multimodal

CAPTION_SAMPLE = [
    {"from": "human", "value": "<image>\nDescribe."},
    {"from": "gpt", "value": "A cat on a mat."},
]
# Upstream preprocess_plain / legacy path with 4.37.2's slow LlamaTokenizer(legacy=False), LLaMA-2 tokenizer.
PLAIN_IDS = [1, -200, 319, 6635, 373, 263, 1775, 29889, 13]
V0_TEXT = [{"from": "human", "value": "Hi there"}, {"from": "gpt", "value": "Hello!"}]
V0_IDS = [
    1, 319, 13563, 1546, 263, 12758, 5199, 322, 385, 23116, 21082, 20255, 29889, 450, 20255, 4076, 8444,
    29892, 13173, 29892, 322, 1248, 568, 6089, 304, 278, 5199, 29915, 29879, 5155, 29889, 13, 13, 2277, 29937,
    12968, 29901, 6324, 727, 13, 2277, 29937, 4007, 22137, 29901, 15043, 29991, 13, 2277, 29937, 29871,
]  # fmt: skip
V0_SUPERVISED = set(range(33, 35)) | set(range(40, 51))


def _run(tokenizer, sample, name, has_image, mm_use_im_start_end=False):
    conv = conv_templates[name]
    sources = [sample]
    if has_image:
        sources = preprocess_multimodal(
            sources, is_multimodal=True, mm_use_im_start_end=mm_use_im_start_end, version=conv.version
        )
    out = preprocess(sources, tokenizer, conversation=conv, has_image=has_image, sample_id="cap-1")
    return out["input_ids"][0], out["labels"][0]


def test_plain_golden(llama2_tok):
    ids, labels = _run(llama2_tok, CAPTION_SAMPLE, "plain", has_image=True)
    assert ids.tolist() == PLAIN_IDS
    assert labels.tolist() == [IGNORE_INDEX, IGNORE_INDEX] + PLAIN_IDS[2:]


@pytest.mark.parametrize("mm_use_im_start_end", [False, True])
@pytest.mark.parametrize("caption", ["A cat on a mat.", "  two  spaces ", "é 中文 🙂 42\n"])
def test_plain_drops_instruction_and_supervises_caption(
    sp_tokenizer, sp_encode, caption, mm_use_im_start_end
):
    sp_tokenizer.add_tokens(["<im_start>", "<im_end>"], special_tokens=True)
    sample = [{"from": "human", "value": "Render a caption.\n<image>"}, {"from": "gpt", "value": caption}]
    ids, labels = _run(sp_tokenizer, sample, "plain", has_image=True, mm_use_im_start_end=mm_use_im_start_end)
    # The human turn is replaced by a bare <image> (start/end tokens too); no EOS is appended.
    expected = [sp_tokenizer.bos_token_id, IMAGE_TOKEN_INDEX] + sp_encode(caption + "\n")
    assert ids.tolist() == expected
    assert labels.tolist() == [IGNORE_INDEX, IGNORE_INDEX] + expected[2:]


@pytest.mark.parametrize(
    "sample",
    [
        [{"from": "human", "value": "No image here."}, {"from": "gpt", "value": "x"}],
        CAPTION_SAMPLE + CAPTION_SAMPLE,
    ],
)
def test_plain_rejects_malformed_samples(llama2_tok, sample):
    with pytest.raises(PreprocessError, match="cap-1"):
        preprocess(
            [sample], llama2_tok, conversation=conv_templates["plain"], has_image=True, sample_id="cap-1"
        )


def test_v0_golden(llama2_tok):
    ids, labels = _run(llama2_tok, V0_TEXT, "llava_v0", has_image=False)
    assert ids.tolist() == V0_IDS
    assert labels.tolist() == [x if i in V0_SUPERVISED else IGNORE_INDEX for i, x in enumerate(V0_IDS)]


@pytest.mark.parametrize("name", ["llava_v0", "v0_mmtag", "default"])
@pytest.mark.parametrize("has_image", [True, False])
def test_v0_supervises_markers_and_assistant_turns(sp_tokenizer, supervised_runs, name, has_image):
    sample = [
        {"from": "human", "value": ("<image>\n" if has_image else "") + "What is it?"},
        {"from": "gpt", "value": "A  cat."},
        {"from": "human", "value": "Color?"},
        {"from": "gpt", "value": "Black 🙂"},
    ]
    ids, labels = _run(sp_tokenizer, sample, name, has_image)
    decoded = [sp_tokenizer.decode(run) for run in supervised_runs(labels)]
    assert decoded == ["###", "### Assistant: A  cat.\n###", "### Assistant: Black 🙂\n### "]
    header = conv_templates[name].system + "\n\n"
    masked_head = ids[: len(sp_tokenizer(header).input_ids)]
    assert sp_tokenizer.decode(masked_head, skip_special_tokens=True) == header
