"""Template-independent behaviour of `llava.data.preprocess`: rewriting, validation, loud failures."""

from __future__ import annotations

import pytest

from llava.conversation import conv_templates
from llava.data import preprocess as pre
from llava.data.preprocess import PreprocessError, preprocess, preprocess_multimodal, template_kind


def test_template_dispatch_follows_upstream_order():
    kinds = {name: template_kind(conv) for name, conv in conv_templates.items()}
    assert kinds == {
        "default": "v0", "v0": "v0", "v1": "v1", "vicuna_v1": "v1", "llama_2": "llama_2",
        "mistral_instruct": "llama_2", "chatml_direct": "mpt", "mistral_direct": "mpt", "plain": "plain",
        "v0_plain": "plain", "llava_v0": "v0", "v0_mmtag": "v0", "llava_v1": "v1", "v1_mmtag": "v1",
        "llava_llama_2": "llama_2", "mpt": "mpt",
    }  # fmt: skip


def test_preprocess_multimodal_moves_and_wraps_image_without_mutating_input():
    source = [{"from": "human", "value": "  Look: <image> here.  "}, {"from": "gpt", "value": "Ok <image>"}]
    original = [dict(t) for t in source]
    out = preprocess_multimodal([source], is_multimodal=True, mm_use_im_start_end=False, version="v1")
    assert out[0][0]["value"] == "<image>\nLook:  here."
    assert out[0][1]["value"] == "<image>\nOk"
    assert source == original
    wrapped = preprocess_multimodal(
        [source], is_multimodal=True, mm_use_im_start_end=True, version="v1_mmtag"
    )
    assert wrapped[0][0]["value"] == "<Image><im_start><image><im_end></Image>\nLook:  here."
    untouched = preprocess_multimodal([source], is_multimodal=False, mm_use_im_start_end=True, version="v1")
    assert untouched == [original]


def test_image_only_turn_keeps_no_trailing_newline():
    out = preprocess_multimodal(
        [[{"from": "human", "value": "<image>"}]], is_multimodal=True, mm_use_im_start_end=False, version="v1"
    )
    assert out[0][0]["value"] == "<image>"


@pytest.mark.parametrize(
    "sample,match",
    [
        ([{"from": "human", "value": "a"}, {"from": "human", "value": "b"}], "alternate"),
        ([{"from": "user", "value": "a"}, {"from": "gpt", "value": "b"}], "'from'='user'"),
        ([{"from": "human", "value": "a"}, {"from": "gpt", "value": ""}], "empty"),
        ([{"from": "human", "value": 3}], "string 'value'"),
        ([], "non-empty"),
        ([{"from": "gpt", "value": "only an answer"}], "no turn left"),
    ],
)
@pytest.mark.parametrize("name", ["v1", "llava_llama_2", "chatml_direct", "llava_v0"])
def test_malformed_samples_raise_naming_the_sample(llama2_tok, sample, match, name):
    with pytest.raises(PreprocessError, match="Sample 'bad-7'") as excinfo:
        preprocess(
            [sample], llama2_tok, conversation=conv_templates[name], has_image=False, sample_id="bad-7"
        )
    assert match in str(excinfo.value)


@pytest.mark.parametrize("name", ["v1", "llava_llama_2"])
def test_sample_without_answer_raises(llama2_tok, name):
    sample = [{"from": "human", "value": "a question only"}]
    with pytest.raises(PreprocessError, match="Sample 'q': no supervised token"):
        preprocess([sample], llama2_tok, conversation=conv_templates[name], has_image=False, sample_id="q")


def test_truncation_that_removes_every_answer_raises(llama2_tok):
    sample = [{"from": "human", "value": "word " * 50}, {"from": "gpt", "value": "answer"}]
    llama2_tok.model_max_length = 30
    with pytest.raises(PreprocessError, match=r"Sample 'long'.*no supervised token.*30"):
        preprocess([sample], llama2_tok, conversation=conv_templates["v1"], has_image=False, sample_id="long")


def test_boundary_inside_a_token_raises_with_numbers():
    # A toy encoder whose tokens depend on the whole text: no prefix of it is a prefix of the next.
    def encode(text):
        return [len(text)]

    segments = [("question", False), (" answer", True)]
    with pytest.raises(PreprocessError, match=r"Sample 9: tokenization mismatch.*boundary 1.*1 tokens"):
        pre._tokenize_sample(segments, encode, [], 9)


def test_anchored_and_plain_prefix_tokenization_agree(llama2_tok):
    conv = conv_templates["v1"]
    sample = [
        {"from": "human", "value": "Q1"},
        {"from": "gpt", "value": "A1"},
        {"from": "human", "value": "Q2 </s> inside"},
        {"from": "gpt", "value": "A2"},
    ]
    segments = pre.conversation_segments(sample, conv, "x")
    texts = [text for text, _ in segments]

    def encode(text):
        return llama2_tok(text).input_ids

    anchored, failure = pre._segment_token_ids(texts, encode, ["</s>"])
    plain, failure_plain = pre._segment_token_ids(texts, encode, [])
    assert failure is None and failure_plain is None and anchored == plain


def test_segments_match_conversation_prompt(llama2_tok):
    sample = [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]
    for name in ("v1", "llava_llama_2", "mistral_instruct", "chatml_direct", "mpt"):
        conv = conv_templates[name]
        segments = pre.conversation_segments(sample, conv, "x")
        filled = conv.copy()
        filled.messages = []
        filled.append_message(conv.roles[0], "Q")
        filled.append_message(conv.roles[1], "A")
        assert "".join(text for text, _ in segments) == filled.get_prompt()


def test_batch_of_sources(llama2_tok):
    samples = [
        [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}],
        [{"from": "human", "value": "Longer question"}, {"from": "gpt", "value": "Longer answer"}],
    ]
    out = preprocess(samples, llama2_tok, conversation=conv_templates["v1"], has_image=False)
    assert len(out["input_ids"]) == len(out["labels"]) == 2
    assert [len(x) for x in out["input_ids"]] == [len(x) for x in out["labels"]]
