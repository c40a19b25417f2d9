"""Device/dtype resolution, conversation-template choice, prompts, generation helpers, records."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from llava.constants import IMAGE_PLACEHOLDER
from llava.eval import inference
from llava.eval.inference import (
    add_image_tokens,
    auto_conv_mode,
    build_prompt,
    clean_output,
    decode_new_tokens,
    generation_kwargs,
    left_pad,
    pick_conv_mode,
    resolve_device,
    resolve_dtype,
    stop_string,
)
from llava.eval.records import get_chunk, new_answer_id

# ----------------------------------------------------------------------------- device and dtype


def test_default_device_follows_cuda_availability():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_unavailable_or_unknown_devices_fail(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device(None).type == "cpu"
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="MPS"):
        resolve_device("mps")
    with pytest.raises(ValueError, match="--device must be one of"):
        resolve_device("meta")


@pytest.mark.parametrize(
    ("device", "name", "expected"),
    [
        ("cpu", "auto", torch.float32),
        ("cpu", None, torch.float32),
        ("cpu", "bf16", torch.bfloat16),
        ("cpu", "bfloat16", torch.bfloat16),
        ("cpu", "float32", torch.float32),
        ("cuda", "auto", torch.float16),
        ("cuda", "bfloat16", torch.bfloat16),
        ("mps", "auto", torch.float16),
    ],
)
def test_resolve_dtype(device, name, expected):
    assert resolve_dtype(torch.device(device), name) == expected


def test_fp16_on_cpu_warns_and_unknown_dtype_fails(caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_dtype(torch.device("cpu"), "fp16") == torch.float16
    assert "float16 on CPU" in caplog.text
    with pytest.raises(ValueError, match="--dtype"):
        resolve_dtype(torch.device("cpu"), "int8")


def test_kbit_on_mps_is_refused_before_loading(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    with pytest.raises(ValueError, match="MPS"):
        inference.load_model("unused", device="mps", load_4bit=True)


# ----------------------------------------------------------------------------- conversation templates


@pytest.mark.parametrize(
    ("model_name", "expected"),
    [
        ("llava-v1.5-7b", "llava_v1"),
        ("llava-v1.5-13b-lora", "llava_v1"),
        ("llava-llama-2-13b-chat-lightning-preview", "llava_llama_2"),
        ("llava-v1.6-mistral-7b", "mistral_instruct"),
        ("llava-v1.6-34b", "chatml_direct"),
        ("llava-v1.6-vicuna-7b", "llava_v1"),
        ("LLaVA-Lightning-MPT-7B-preview", "mpt"),
        ("LLaVA-13b-delta-v0", "llava_v0"),
        ("my-model", "llava_v0"),
    ],
)
def test_auto_conv_mode_from_name(model_name, expected):
    assert auto_conv_mode(model_name) == expected
    assert auto_conv_mode(model_name, SimpleNamespace(model_type="llava_llama")) == expected


def test_auto_conv_mode_prefers_the_config():
    # An explicit template recorded in the config beats the name rules.
    assert auto_conv_mode("llava-v1.5-7b", SimpleNamespace(conv_mode="vicuna_v1")) == "vicuna_v1"
    # The model type identifies Mistral/MPT when the name says nothing.
    assert auto_conv_mode("my-model", SimpleNamespace(model_type="llava_mistral")) == "mistral_instruct"
    assert auto_conv_mode("my-model", SimpleNamespace(model_type="llava_mpt")) == "mpt"
    with pytest.raises(ValueError, match="conv_mode='nope'"):
        auto_conv_mode("my-model", SimpleNamespace(conv_mode="nope"))


def test_explicit_conv_mode_wins_and_warns_when_it_differs(caplog):
    with caplog.at_level(logging.WARNING):
        assert pick_conv_mode("llava_v1", "llava-v1.5-7b") == "llava_v1"
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING):
        assert pick_conv_mode("vicuna_v1", "llava-v1.5-7b") == "vicuna_v1"
    assert "the auto inferred conversation mode is llava_v1, while `--conv-mode` is vicuna_v1" in caplog.text
    assert pick_conv_mode(None, "llava-v1.5-7b") == "llava_v1"
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # another name of the template training recorded
        assert pick_conv_mode("vicuna_v1", "my-model", SimpleNamespace(conv_mode="v1")) == "vicuna_v1"
    assert caplog.text == ""
    with pytest.raises(ValueError, match="not a conversation template"):
        pick_conv_mode("vicuna", "llava-v1.5-7b")


# ----------------------------------------------------------------------------- prompts


def test_image_tokens_in_front_or_at_placeholders():
    assert add_image_tokens("What?", 1, False) == "<image>\nWhat?"
    assert add_image_tokens("What?", 1, True) == "<im_start><image><im_end>\nWhat?"
    assert add_image_tokens("What?", 2, False) == "<image>\n<image>\nWhat?"
    query = f"Compare {IMAGE_PLACEHOLDER} and {IMAGE_PLACEHOLDER}."
    assert add_image_tokens(query, 2, False) == "Compare <image> and <image>."
    assert (
        add_image_tokens(query, 2, True) == "Compare <im_start><image><im_end> and <im_start><image><im_end>."
    )
    with pytest.raises(ValueError, match="2 <image-placeholder> but 1 image"):
        add_image_tokens(query, 1, False)


def test_build_prompt_and_stop_strings():
    prompt, conv = build_prompt("llava_v1", "<image>\nWhat?")
    assert prompt == (
        "A chat between a curious human and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the human's questions. USER: <image>\nWhat? ASSISTANT:"
    )
    assert stop_string(conv) == "</s>"
    prompt, conv = build_prompt("llava_v0", "Hi")
    assert prompt.endswith("###Human: Hi###Assistant:")
    assert stop_string(conv) == "###"
    assert stop_string(build_prompt("mpt", "Hi")[1]) == "<|im_end|>"


# ----------------------------------------------------------------------------- generation helpers


def test_greedy_at_temperature_zero():
    kw = generation_kwargs(temperature=0, top_p=0.9, num_beams=1, max_new_tokens=7)
    assert kw["do_sample"] is False and kw["temperature"] is None and kw["top_p"] is None
    assert kw["max_new_tokens"] == 7 and kw["num_beams"] == 1
    kw = generation_kwargs(temperature=0.2, top_p=0.9)
    assert kw["do_sample"] is True and kw["temperature"] == 0.2 and kw["top_p"] == 0.9


def test_left_pad():
    ids, mask = left_pad([torch.tensor([1, 2, 3]), torch.tensor([4])], padding_value=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_clean_output_cuts_at_the_stop_string():
    assert clean_output("  red  ", "</s>") == "red"
    assert clean_output("red###Human: more", "###") == "red"
    assert clean_output("red", "") == "red"


class _FakeTokenizer:
    eos_token_id = 2

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(f"w{i}" for i in ids if not (skip_special_tokens and i in (0, 1, 2)))


def test_decode_cuts_each_row_at_its_first_eos():
    out = torch.tensor([[5, 6, 2, 0, 0], [7, 2, 8, 9, 0], [5, 6, 7, 8, 9]])
    assert decode_new_tokens(_FakeTokenizer(), out, None) == ["w5 w6", "w7", "w5 w6 w7 w8 w9"]


def test_batched_slices():
    assert list(inference.batched([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    with pytest.raises(ValueError):
        list(inference.batched([1], 0))


# ----------------------------------------------------------------------------- records


def test_get_chunk_like_upstream():
    items = list(range(10))
    assert [get_chunk(items, 3, k) for k in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert get_chunk([1, 2], 4, 3) == []  # upstream raises IndexError here
    with pytest.raises(ValueError, match="--chunk-idx"):
        get_chunk(items, 2, 2)


def test_answer_ids_look_like_shortuuid():
    ids = {new_answer_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 22 and not set(i) & set("01IOl") for i in ids)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--device", "cuda"], "no CUDA device"),
        (["--device", "cpu", "--dtype", "int8"], "--dtype"),
        (["--device", "cpu", "--load-4bit", "--load-8bit"], "at most one"),
    ],
)
def test_bad_runtime_flags_are_usage_errors(monkeypatch, capsys, flags, message):
    from llava.eval import run_llava

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        run_llava.main(["--model-path", "unused", "--image-file", "x.png", "--query", "q", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
