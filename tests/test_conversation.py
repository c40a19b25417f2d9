"""Prompts rendered by `llava.conversation` templates, written by hand from upstream's rules."""

from __future__ import annotations

import pytest
from PIL import Image

from llava.conversation import SeparatorStyle, conv_templates, default_conversation

VICUNA = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
HUMAN = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


def _filled(name, *messages):
    conv = conv_templates[name].copy()
    for i, message in enumerate(messages):
        conv.append_message(conv.roles[i % 2], message)
    return conv


def test_v1_generation_prompt():
    conv = _filled("vicuna_v1", "<image>\nWhat is it?", None)
    assert conv.get_prompt() == f"{VICUNA} USER: <image>\nWhat is it? ASSISTANT:"


def test_v1_multi_turn():
    conv = _filled("llava_v1", "Q1", "A1", "Q2", "A2")
    assert conv.get_prompt() == f"{HUMAN} USER: Q1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: A2</s>"


def test_llama_2_prompts():
    system = conv_templates["llava_llama_2"].system
    conv = _filled("llava_llama_2", "Q1", "A1", "Q2", None)
    assert (
        conv.get_prompt() == f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\nQ1 [/INST] A1 </s><s>[INST] Q2 [/INST]"
    )
    mistral = _filled("mistral_instruct", "Q1", "A1", "Q2", "A2")
    assert mistral.get_prompt() == "[INST] Q1 [/INST] A1 </s>[INST] Q2 [/INST] A2 </s>"
    with pytest.raises(ValueError):
        _filled("llama_2", None).get_prompt()


def test_chatml_prompts():
    conv = _filled("chatml_direct", "Q1", "A1", "Q2", None)
    assert conv.get_prompt() == (
        "<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\nQ1<|im_end|>"
        "<|im_start|>assistant\nA1<|im_end|><|im_start|>user\nQ2<|im_end|><|im_start|>assistant\n"
    )
    assert conv_templates["mistral_direct"] is conv_templates["chatml_direct"]
    assert conv_templates["mpt"].system.startswith("<|im_start|>system\nA conversation between a user")


def test_single_and_plain_prompts():
    conv = _filled("llava_v0", "Q1", "A1", "Q2", None)
    assert conv.get_prompt() == f"{HUMAN}###Human: Q1###Assistant: A1###Human: Q2###Assistant:"
    plain = _filled("plain", "<image>\nQ", None)
    assert plain.get_prompt() == "<image>\nQ\n"
    v0 = conv_templates["v0"]
    assert v0.offset == 2 and len(v0.messages) == 2


def test_served_image_moves_to_front_and_mmtag():
    image = Image.new("RGB", (8, 8))
    conv = _filled("llava_v1", ("Describe <image> please", image, "Default"), None)
    assert conv.get_prompt() == f"{HUMAN} USER: <image>\nDescribe  please ASSISTANT:"
    tagged = _filled("v1_mmtag", ("<image>\nDescribe", image, "Default"), None)
    assert tagged.get_prompt().endswith(
        "USER: <Image><image></Image> ASSISTANT: Received.</s>USER: Describe ASSISTANT:"
    )


def test_templates_are_immutable_and_copies_independent():
    template = conv_templates["v1"]
    first = template.copy()
    first.append_message("USER", "hi")
    assert len(template.messages) == 0 and len(template.copy().messages) == 0
    assert default_conversation is conv_templates["v1"]
    assert {conv_templates[k].sep_style for k in ("v1", "llama_2", "mpt", "plain", "llava_v0")} == set(
        SeparatorStyle
    )
