"""Config classes and checkpoint round trips, including upstream's released `model_type: "llava"` configs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, MistralConfig, MistralForCausalLM

from llava.model import (
    LlavaConfig,
    LlavaLlamaForCausalLM,
    LlavaMistralConfig,
    LlavaMistralForCausalLM,
    load_llava_config,
)

UPSTREAM_NAMES = [
    "model.mm_projector.0.weight",
    "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight",
    "lm_head.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.embed_tokens.weight",
]


def test_parameter_and_checkpoint_names_match_upstream(make_llava, tmp_path):
    model = make_llava()
    names = dict(model.named_parameters())
    assert all(name in names for name in UPSTREAM_NAMES)
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert keys == set(model.state_dict())
    assert all(name in keys for name in UPSTREAM_NAMES)


def test_mm_fields_written_by_initialize_vision_modules(make_llava, clip_dir):
    config = make_llava(mm_vision_select_layer=-2).config
    assert (config.mm_vision_tower, config.use_mm_proj, config.mm_projector_type, config.mm_hidden_size) == (
        str(clip_dir),
        True,
        "mlp2x_gelu",
        16,
    )
    assert (config.mm_vision_select_layer, config.mm_vision_select_feature, config.mm_patch_merge_type) == (
        -2,
        "patch",
        "flat",
    )


def test_save_and_reload(make_llava, clip_dir, tmp_path):
    model = make_llava()
    model.config.tokenizer_padding_side = "right"
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "llava_llama"

    config = load_llava_config(tmp_path)
    assert type(config) is LlavaConfig and config.mm_projector_type == "mlp2x_gelu"
    assert isinstance(AutoConfig.from_pretrained(tmp_path), LlavaConfig)

    reloaded = LlavaLlamaForCausalLM.from_pretrained(tmp_path)
    tower = reloaded.get_vision_tower()
    assert not tower.is_loaded  # delay-loaded: re-read from mm_vision_tower, as upstream
    assert torch.equal(reloaded.get_model().mm_projector[0].weight, model.get_model().mm_projector[0].weight)
    tower.load_model()
    fresh = make_llava().get_vision_tower()
    assert torch.equal(
        tower.vision_tower.vision_model.embeddings.patch_embedding.weight,
        fresh.vision_tower.vision_model.embeddings.patch_embedding.weight,
    )
    assert isinstance(AutoModelForCausalLM.from_pretrained(tmp_path), LlavaLlamaForCausalLM)


def _released_v15_config(clip_dir) -> dict:
    """A config.json shaped like liuhaotian/llava-v1.5-7b's (tiny sizes)."""
    return {
        "_name_or_path": "./checkpoints/vicuna-7b-v1-5",
        "architectures": ["LlavaLlamaForCausalLM"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "freeze_mm_mlp_adapter": False,
        "hidden_act": "silu",
        "hidden_size": 32,
        "image_aspect_ratio": "pad",
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "max_length": 4096,
        "max_position_embeddings": 128,
        "mm_hidden_size": 16,
        "mm_projector_type": "mlp2x_gelu",
        "mm_resampler_type": None,
        "mm_use_im_patch_token": False,
        "mm_use_im_start_end": False,
        "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2,
        "mm_vision_tower": str(clip_dir),
        "model_type": "llava",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 4,
        "pad_token_id": 0,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "transformers_version": "4.31.0",
        "tune_mm_mlp_adapter": False,
        "tune_mm_vision_resampler": False,
        "unfreeze_mm_vision_tower": False,
        "use_cache": True,
        "use_mm_proj": True,
        "vocab_size": 64,
    }


def test_released_llava_model_type_loads(make_llava, clip_dir, tmp_path):
    model = make_llava()
    model.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(_released_v15_config(clip_dir)))

    config = load_llava_config(tmp_path)
    assert type(config) is LlavaConfig and config.model_type == "llava_llama"
    assert config.image_aspect_ratio == "pad" and config.mm_use_im_patch_token is False
    assert type(LlavaConfig.from_pretrained(tmp_path)) is LlavaConfig

    reloaded = LlavaLlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    assert reloaded.config.model_type == "llava_llama"
    assert torch.equal(reloaded.get_model().mm_projector[2].weight, model.get_model().mm_projector[2].weight)
    reloaded.save_pretrained(tmp_path / "resaved")
    assert json.loads((tmp_path / "resaved" / "config.json").read_text())["model_type"] == "llava_llama"


def test_plain_llama_config_is_promoted(llm_dir):
    config = load_llava_config(llm_dir)
    assert type(config) is LlavaConfig and getattr(config, "mm_vision_tower", None) is None


def test_foreign_configs_are_rejected(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "llava", "text_config": {}, "vision_config": {}})
    )
    with pytest.raises(ValueError, match="llava-hf"):
        load_llava_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(ValueError, match="qwen2"):
        load_llava_config(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_llava_config(tmp_path / "missing")


def test_mistral_family(clip_dir, tmp_path):
    base = MistralConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    MistralForCausalLM(base).save_pretrained(tmp_path / "base")
    model = LlavaMistralForCausalLM.from_pretrained(tmp_path / "base")
    assert type(model.config) is LlavaMistralConfig
    model.get_model().initialize_vision_modules(vision_tower=str(clip_dir), mm_projector_type="linear")
    ids = torch.tensor([[1, -200, 5, 6]])
    out = model(input_ids=ids, labels=ids.clamp(min=0), images=torch.randn(1, 3, 28, 28))
    assert out.logits.shape == (1, 7, 64) and torch.isfinite(out.loss)

    model.save_pretrained(tmp_path / "llava")
    assert type(load_llava_config(tmp_path / "llava")) is LlavaMistralConfig
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "llava")
    assert isinstance(reloaded, LlavaMistralForCausalLM)
    assert torch.equal(reloaded.get_model().mm_projector.weight, model.get_model().mm_projector.weight)


def test_initialize_on_a_llava_checkpoint_keeps_its_projector(make_llava, clip_dir, tmp_path):
    make_llava().save_pretrained(tmp_path)
    model = LlavaLlamaForCausalLM.from_pretrained(tmp_path)
    inner = model.get_model()
    inner.mm_projector.requires_grad_(False)  # as if LoRA had frozen it
    before = inner.mm_projector[0].weight.detach().clone()
    inner.initialize_vision_modules(vision_tower=str(clip_dir), mm_projector_type="mlp2x_gelu")
    assert inner.get_vision_tower().is_loaded
    assert torch.equal(inner.mm_projector[0].weight, before) and inner.mm_projector[0].weight.requires_grad
    with pytest.raises(ValueError, match="already has a 'mlp2x_gelu' projector"):
        inner.initialize_vision_modules(vision_tower=str(clip_dir), mm_projector_type="linear")


def test_fsdp_keeps_the_tower_out_of_the_module_tree(make_llava):
    model = make_llava(fsdp=True)
    assert isinstance(model.get_model().vision_tower, list)
    assert not any("vision_tower" in name for name, _ in model.named_parameters())
    out = model(input_ids=torch.tensor([[1, -200, 4]]), images=torch.randn(1, 3, 28, 28))
    assert out.logits.shape == (1, 6, 64)
