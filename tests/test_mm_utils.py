"""`llava.mm_utils`: image-token tokenization, image padding/processing, names, stopping criteria."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor, StoppingCriteriaList

from llava.constants import IMAGE_TOKEN_INDEX
from llava.mm_utils import (
    KeywordsStoppingCriteria,
    expand2square,
    get_model_name_from_path,
    process_images,
    tokenizer_image_token,
)
from llava.tokenization import load_tokenizer


@pytest.fixture(scope="module")
def tok(llama2_tokenizer_dir):
    return load_tokenizer(llama2_tokenizer_dir)


def test_image_token_golden(tok):
    # Upstream (4.37 slow tokenizer): "... USER: " ends with '▁' (29871); the chunk after the image is
    # tokenized afresh, so it starts with '▁' '\n' (29871, 13).
    ids = tokenizer_image_token("A chat. USER: <image>\nWhat? ASSISTANT:", tok)
    assert ids == [1, 319, 13563, 29889, 3148, 1001, 29901, 29871, IMAGE_TOKEN_INDEX, 29871, 13, 5618, 29973,
                   319, 1799, 9047, 13566, 29901]  # fmt: skip


@pytest.mark.parametrize(
    "prompt",
    ["<image>\nhi", "hi <image>", "<image>", "a<image>b<image>c", "no image at all", "<image><image>", ""],
)
def test_image_token_rule(tok, prompt):
    ids = tokenizer_image_token(prompt, tok)
    chunks = prompt.split("<image>")
    expected = tok(chunks[0]).input_ids
    for chunk in chunks[1:]:
        expected += [IMAGE_TOKEN_INDEX] + tok(chunk).input_ids[1:]
    assert ids == expected
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    assert ids.count(IMAGE_TOKEN_INDEX) == prompt.count("<image>")


def test_image_token_tensor_and_errors(tok):
    ids = tokenizer_image_token("<image>\nhi", tok, return_tensors="pt")
    assert ids.dtype == torch.long and ids.tolist() == [1, IMAGE_TOKEN_INDEX, 29871, 13, 2918]
    assert tokenizer_image_token("<image>", tok, image_token_index=-7) == [1, -7]
    with pytest.raises(ValueError, match="return_tensors"):
        tokenizer_image_token("x", tok, return_tensors="np")


def test_image_token_without_bos(llama2_tokenizer_dir, tmp_path):
    shutil.copy(llama2_tokenizer_dir / "tokenizer.model", tmp_path / "tokenizer.model")
    config = json.loads((llama2_tokenizer_dir / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "add_bos_token": False}))
    no_bos = load_tokenizer(tmp_path)
    assert tokenizer_image_token("hi<image>\nyo", no_bos) == [7251, IMAGE_TOKEN_INDEX, 29871, 13, 9029]


@pytest.mark.parametrize("size", [(6, 2), (2, 6), (4, 4)])
def test_expand2square(size):
    image = Image.new("RGB", size, (255, 0, 0))
    out = expand2square(image, (1, 2, 3))
    side = max(size)
    assert out.size == (side, side)
    if size == (4, 4):
        assert out is image
        return
    w, h = size
    left, top = (side - w) // 2, (side - h) // 2
    assert out.getpixel((left, top)) == (255, 0, 0)
    assert out.getpixel((0, 0)) == (1, 2, 3) and out.getpixel((side - 1, side - 1)) == (1, 2, 3)


def test_process_images():
    processor = CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8})
    images = [Image.new("RGB", (16, 8), (250, 0, 0)), Image.new("RGB", (8, 24), (0, 0, 250))]
    padded = process_images(images, processor, SimpleNamespace(image_aspect_ratio="pad"))
    assert padded.shape == (2, 3, 8, 8)
    mean = tuple(int(x * 255) for x in processor.image_mean)
    assert mean == (122, 116, 104)
    manual = processor.preprocess(expand2square(images[0], mean), return_tensors="pt")["pixel_values"][0]
    assert torch.allclose(padded[0], manual)
    square = process_images(images, processor, SimpleNamespace(image_aspect_ratio="square"))
    assert torch.allclose(square, processor(images, return_tensors="pt")["pixel_values"])
    assert process_images(images, processor, SimpleNamespace()).shape == (2, 3, 8, 8)
    with pytest.raises(NotImplementedError, match="anyres"):
        process_images(images, processor, SimpleNamespace(image_aspect_ratio="anyres"))


@pytest.mark.parametrize(
    "path,name",
    [
        ("liuhaotian/llava-v1.5-7b", "llava-v1.5-7b"),
        ("/ckpt/llava-lora/", "llava-lora"),
        ("out/llava-v1.5-13b/checkpoint-500", "llava-v1.5-13b_checkpoint-500"),
        ("model", "model"),
    ],
)
def test_get_model_name_from_path(path, name):
    assert get_model_name_from_path(path) == name


def test_keywords_stopping_criteria_per_row(tok):
    prompt = torch.tensor([tok("USER: hi ASSISTANT:").input_ids] * 2)
    crit = KeywordsStoppingCriteria(["</s>", "###"], tok, prompt)
    answer = tok("Hello", add_special_tokens=False).input_ids
    done = torch.tensor([answer + [2], answer + [29889]])  # only new tokens (generation from embeddings)
    assert crit(done, None).tolist() == [True, False]
    marker = tok("Hi ###", add_special_tokens=False).input_ids  # "###" spans several tokens
    row = torch.tensor([marker, answer + [29889] * (len(marker) - len(answer))])
    assert StoppingCriteriaList([crit])(row, None).tolist() == [True, False]
    # When the prompt is passed back, its own tokens are not searched.
    with_prompt = torch.cat([prompt, torch.tensor([[29889], [2]])], dim=1)
    assert crit(with_prompt, None).tolist() == [False, True]
