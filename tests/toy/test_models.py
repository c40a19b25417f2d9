"""The toy LM and CLIP load with the standard transformers classes and run."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image
from transformers import CLIPImageProcessor, CLIPModel, CLIPVisionModel, LlamaForCausalLM

from llava.toy.clip import normalize
from llava.toy.scenes import IMAGE_SIZE


def test_llm_loads_and_has_learned_the_world(toy_world):
    model = LlamaForCausalLM.from_pretrained(toy_world.llm_dir).eval()
    config = model.config
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, 2, None)
    assert config.hidden_size == 128 and not config.tie_word_embeddings
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(toy_world.llm_dir / "tokenizer.model"))
    assert config.vocab_size == sp.get_piece_size()
    ids = torch.tensor([[1, *sp.encode("two blue squares on the left. three red circles at the top.")]])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert loss < 2.5, f"the pre-trained LM finds in-world text unlikely (loss {loss:.2f})"


def test_clip_loads_as_vision_tower(toy_world):
    vision = CLIPVisionModel.from_pretrained(toy_world.clip_dir).eval()
    processor = CLIPImageProcessor.from_pretrained(toy_world.clip_dir)
    config = vision.config
    assert (config.image_size, config.patch_size) == (IMAGE_SIZE, 8)
    assert processor.crop_size == {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    image = Image.open(toy_world.image_folder / "eval" / "000000.png").convert("RGB")
    pixels = processor(images=image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)
    # The processor and the normalisation CLIP was trained with agree.
    expected = normalize(torch.from_numpy(np.array(image))[None])
    assert torch.allclose(pixels, expected, atol=1e-4)
    with torch.no_grad():
        hidden = vision(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert hidden[-2].shape == (1, 1 + (IMAGE_SIZE // 8) ** 2, config.hidden_size)


def test_full_clip_model_is_saved(toy_world):
    model = CLIPModel.from_pretrained(toy_world.clip_dir)
    text_config = json.loads((toy_world.clip_dir / "config.json").read_text())["text_config"]
    assert text_config["eos_token_id"] == model.config.text_config.vocab_size - 1
