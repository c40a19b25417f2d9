"""Tiny in-process models for the model tests (independent of the toy world)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
)

IMAGE_SIZE, PATCH_SIZE = 28, 14  # 2x2 patches (+ CLS) per image
VISION_HIDDEN, LM_HIDDEN, VOCAB = 16, 32, 64


def _vision_config() -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=VISION_HIDDEN,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
    )


def _save_processor(path: Path) -> None:
    size = {"shortest_edge": IMAGE_SIZE}
    CLIPImageProcessorPil(size=size, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(
        path
    )


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    """A tiny `CLIPVisionModel` + `CLIPImageProcessor` folder."""
    path = tmp_path_factory.mktemp("clip")
    torch.manual_seed(0)
    CLIPVisionModel(_vision_config()).save_pretrained(path)
    _save_processor(path)
    return path


@pytest.fixture(scope="session")
def full_clip_dir(tmp_path_factory) -> Path:
    """A tiny full `CLIPModel` folder, the layout of the toy world's tower."""
    path = tmp_path_factory.mktemp("clip_full")
    torch.manual_seed(1)
    text = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "vocab_size": 50,
        "max_position_embeddings": 16,
    }
    config = CLIPConfig(text_config=text, vision_config=_vision_config().to_dict(), projection_dim=8)
    CLIPModel(config).save_pretrained(path)
    _save_processor(path)
    return path


def tiny_llama_config(**overrides) -> LlamaConfig:
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=LM_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


@pytest.fixture(scope="session")
def llm_dir(tmp_path_factory) -> Path:
    """A tiny plain LLaMA base checkpoint (no mm keys)."""
    path = tmp_path_factory.mktemp("llm")
    torch.manual_seed(2)
    LlamaForCausalLM(tiny_llama_config()).save_pretrained(path)
    return path


@pytest.fixture
def make_llava(llm_dir, clip_dir):
    """Build a LLaVA model from the tiny base LM + tiny tower; kwargs go to initialize_vision_modules."""
    from llava.model import LlavaLlamaForCausalLM

    def make(**vision_kwargs):
        torch.manual_seed(3)
        model = LlavaLlamaForCausalLM.from_pretrained(llm_dir)
        vision_kwargs = {
            "vision_tower": str(clip_dir),
            "mm_projector_type": "mlp2x_gelu",
            "mm_vision_select_layer": -2,
            **vision_kwargs,
        }
        model.get_model().initialize_vision_modules(**vision_kwargs)
        return model

    return make
