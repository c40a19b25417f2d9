"""CLIP vision tower: frozen, no-grad forward, feature selection, delayed loading, dtype handling."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from llava.model.multimodal_encoder.builder import build_vision_tower
from llava.model.multimodal_encoder.clip_encoder import CLIPVisionTower


def test_frozen_and_no_grad(clip_dir):
    tower = CLIPVisionTower(str(clip_dir))
    assert tower.is_loaded
    assert all(not p.requires_grad for p in tower.parameters())
    images = torch.randn(2, 3, 28, 28, requires_grad=True)
    features = tower(images)
    assert not features.requires_grad
    assert features.shape == (2, tower.num_patches, tower.hidden_size) == (2, 4, 16)
    assert tower.num_patches_per_side == 2


@pytest.mark.parametrize(("select_feature", "tokens"), [("patch", 4), ("cls_patch", 5)])
@pytest.mark.parametrize("select_layer", [-1, -2, 0])
def test_select_layer_and_feature(clip_dir, select_layer, select_feature, tokens):
    tower = CLIPVisionTower(str(clip_dir), select_layer=select_layer, select_feature=select_feature)
    images = torch.randn(2, 3, 28, 28)
    reference = CLIPVisionModel.from_pretrained(clip_dir)(images, output_hidden_states=True).hidden_states
    expected = reference[select_layer][:, 5 - tokens :]
    assert torch.allclose(tower(images), expected)


def test_unknown_select_feature():
    with pytest.raises(ValueError, match="cls"):
        CLIPVisionTower("unused", select_feature="cls", delay_load=True)


def test_delay_load_keeps_config_only(clip_dir):
    tower = CLIPVisionTower(str(clip_dir), delay_load=True)
    assert not tower.is_loaded and len(list(tower.parameters())) == 0
    assert isinstance(tower.config, CLIPVisionConfig)
    assert (tower.hidden_size, tower.num_patches) == (16, 4)
    with pytest.raises(RuntimeError, match="not loaded"):
        _ = tower.dtype
    tower.load_model()
    model = tower.vision_tower.vision_model
    tower.load_model()  # idempotent
    assert tower.vision_tower.vision_model is model
    assert tower.image_processor.crop_size["height"] == 28


def test_dtype_cast_in_and_out(clip_dir):
    tower = CLIPVisionTower(str(clip_dir)).to(torch.bfloat16)
    assert tower.dtype == torch.bfloat16
    assert tower(torch.randn(1, 3, 28, 28)).dtype == torch.float32


def test_list_input_encodes_each_image(clip_dir):
    tower = CLIPVisionTower(str(clip_dir))
    images = [torch.randn(3, 28, 28), torch.randn(3, 28, 28)]
    out = tower(images)
    assert [tuple(o.shape) for o in out] == [(1, 4, 16)] * 2
    assert torch.allclose(out[1][0], tower(torch.stack(images))[1], atol=1e-6)


def test_full_clip_checkpoint_loads(full_clip_dir):
    tower = CLIPVisionTower(str(full_clip_dir))
    assert tower(torch.randn(1, 3, 28, 28)).shape == (1, 4, 16)


def test_builder_reads_config(clip_dir):
    config = SimpleNamespace(
        mm_vision_tower=str(clip_dir), mm_vision_select_layer=-2, mm_vision_select_feature="cls_patch"
    )
    tower = build_vision_tower(config, delay_load=True)
    assert (tower.select_layer, tower.select_feature, tower.is_loaded) == (-2, "cls_patch", False)


@pytest.mark.parametrize("name", ["google/siglip-so400m", "/no/such/dir", None])
def test_builder_rejects_unknown_towers(name):
    with pytest.raises(ValueError, match="Unknown vision tower"):
        build_vision_tower(SimpleNamespace(mm_vision_tower=name, mm_vision_select_layer=-1))


def test_builder_rejects_s2(clip_dir):
    with pytest.raises(NotImplementedError, match="S2"):
        build_vision_tower(SimpleNamespace(mm_vision_tower=str(clip_dir), mm_vision_select_layer=-1, s2=True))
