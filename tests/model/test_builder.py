"""`load_pretrained_model`: every checkpoint layout loads, chosen by its files, with identical logits.

Tiny models are built in-process (LLaMA: hidden 64, 2 layers, the real LLaMA-2 tokenizer; CLIP:
hidden 16, 32px images), and each layout is written with the training code's own save functions,
peft, or (for upstream-written checkpoints) by hand.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from llava.constants import IMAGE_TOKEN_INDEX, MM_PROJECTOR_FILE, NON_LORA_TRAINABLES_FILE
from llava.model.builder import (
    QUANTIZATION_SKIP_MODULES,
    CheckpointLayout,
    detect_layout,
    load_pretrained_model,
    rename_non_lora_keys,
    resolve_dtype,
)

# --------------------------------------------------------------------------------------------------
# Tiny world (plain functions, also used by tests/test_scripts_merge_extract.py)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TinyWorld:
    llm_dir: Path  # plain LlamaForCausalLM + LLaMA-2 tokenizer
    clip_dir: Path  # CLIPVisionModel + CLIPImageProcessor


def make_tiny_world(root: Path, tokenizer_dir: Path) -> TinyWorld:
    """Save a tiny LLaMA LM (with the LLaMA-2 tokenizer) and a tiny CLIP vision tower under `root`."""
    from llava.tokenization import load_tokenizer

    torch.manual_seed(0)
    llm_dir, clip_dir = root / "base-lm", root / "clip"
    tokenizer = load_tokenizer(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        # 64, not 32: bitsandbytes' CPU 4-bit inference kernel (AVX512-BF16 packed format) needs
        # in_features to be a multiple of its 64-element quantization block.
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(llm_dir)
    tokenizer.save_pretrained(llm_dir)

    vision = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    CLIPVisionModel(vision).save_pretrained(clip_dir)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        clip_dir
    )
    return TinyWorld(llm_dir=llm_dir, clip_dir=clip_dir)


def make_llava(world: TinyWorld, *, projector_type: str = "mlp2x_gelu", seed: int = 1):
    """LLaVA on the tiny base LM + tiny tower with a random projector, configured as training does."""
    from llava.model import LlavaLlamaForCausalLM

    torch.manual_seed(seed)
    model = LlavaLlamaForCausalLM.from_pretrained(world.llm_dir, dtype=torch.float32)
    model.get_model().initialize_vision_modules(
        vision_tower=str(world.clip_dir),
        mm_vision_select_layer=-2,
        mm_projector_type=projector_type,
    )
    config = model.config
    config.image_aspect_ratio = "pad"
    config.tokenizer_padding_side = "right"
    config.tokenizer_model_max_length = 256
    config.tune_mm_mlp_adapter = False
    config.freeze_mm_mlp_adapter = False
    config.mm_use_im_start_end = False
    config.mm_use_im_patch_token = False
    config.mm_projector_lr = None
    model.eval()
    return model


def model_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    """Two prompts with an image each (ids around IMAGE_TOKEN_INDEX) and their 32px images."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 32000, (2, 7), generator=generator)
    ids[:, 0] = 1
    ids[:, 3] = IMAGE_TOKEN_INDEX
    images = torch.randn(2, 3, 32, 32, generator=generator)
    return {"input_ids": ids, "images": images}


@torch.no_grad()
def logits_of(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**inputs).logits.float()


def add_lora(model, *, seed: int = 2):
    """LoRA as training adds it, with non-zero B (so the adapter matters) and a trainable projector."""
    from peft import get_peft_model

    from llava.train.lora import build_lora_config

    peft_model = get_peft_model(model, build_lora_config(model, r=4, alpha=8, dropout=0.0, bias="none"))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    peft_model.get_base_model().get_model().mm_projector.requires_grad_(True)
    peft_model.eval()
    return peft_model


def save_lora(model, out: Path) -> torch.Tensor:
    """LoRA layout via the training save function; returns the reference logits (adapter unmerged)."""
    from llava.train.checkpoint import save_lora_checkpoint

    peft_model = add_lora(model)
    save_lora_checkpoint(peft_model, str(out), bias="none", is_main_process=True)
    return logits_of(peft_model, model_inputs())


def save_full(model, tokenizer_dir: Path, out: Path) -> None:
    from llava.tokenization import load_tokenizer

    model.save_pretrained(out)
    load_tokenizer(tokenizer_dir).save_pretrained(out)


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory, llama2_tokenizer_dir) -> TinyWorld:
    return make_tiny_world(tmp_path_factory.mktemp("world"), llama2_tokenizer_dir)


@pytest.fixture(scope="module")
def full_ckpt(world, tmp_path_factory) -> tuple[Path, torch.Tensor]:
    """Our full fine-tune layout in a folder whose name says nothing (`run1`), with its logits."""
    model = make_llava(world)
    out = tmp_path_factory.mktemp("full") / "run1"
    save_full(model, world.llm_dir, out)
    return out, logits_of(model, model_inputs())


@pytest.fixture(scope="module")
def lora_ckpt(world, tmp_path_factory) -> tuple[Path, torch.Tensor]:
    """Our LoRA layout in `run2` (no `llava`, no `lora` in the name), with adapter+base logits."""
    out = tmp_path_factory.mktemp("lora") / "run2"
    return out, save_lora(make_llava(world), out)


@pytest.fixture(scope="module")
def projector_ckpt(world, tmp_path_factory) -> tuple[Path, torch.Tensor]:
    from llava.train.checkpoint import save_projector_checkpoint

    model = make_llava(world, projector_type="linear")
    out = tmp_path_factory.mktemp("proj") / "run3"
    save_projector_checkpoint(model, str(out), use_im_start_end=False, is_main_process=True)
    return out, logits_of(model, model_inputs())


def load_cpu(path, base=None, name="", **kwargs):
    return load_pretrained_model(str(path), None if base is None else str(base), name, device="cpu", **kwargs)


def assert_logits_equal(model, expected: torch.Tensor, *, atol: float = 1e-5) -> None:
    torch.testing.assert_close(logits_of(model, model_inputs()), expected, atol=atol, rtol=1e-4)


# --------------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------------


def test_full_layout_loads_by_files(full_ckpt):
    path, expected = full_ckpt
    assert detect_layout(str(path)) is CheckpointLayout.FULL
    tokenizer, model, image_processor, context_len = load_cpu(path, name="run1")
    assert type(model).__name__ == "LlavaLlamaForCausalLM"
    assert image_processor is not None and context_len == 2048
    assert len(tokenizer) == model.get_input_embeddings().weight.shape[0]
    assert_logits_equal(model, expected)


def test_full_layout_in_misleadingly_named_folder(full_ckpt, tmp_path, world):
    """A full model in `x-lora`, with a model_base given: upstream would take the LoRA branch."""
    path, expected = full_ckpt
    misleading = tmp_path / "llava-x-lora"
    shutil.copytree(path, misleading)
    _, model, _, _ = load_cpu(misleading, base=world.llm_dir, name="llava-x-lora")
    assert_logits_equal(model, expected)


def test_lora_layout_merges_and_matches_adapter_logits(lora_ckpt, world):
    path, expected = lora_ckpt
    assert {f for f in os.listdir(path)} >= {"adapter_config.json", NON_LORA_TRAINABLES_FILE, "config.json"}
    assert detect_layout(str(path)) is CheckpointLayout.LORA
    _, model, image_processor, _ = load_cpu(path, base=world.llm_dir, name="run2")
    assert not any("lora_" in n for n, _ in model.named_parameters())  # merged
    assert image_processor is not None
    assert_logits_equal(model, expected)


def test_adapter_and_projector_matter(lora_ckpt, world):
    """Sanity for the equality tests: without the adapter the logits are clearly different."""
    path, expected = lora_ckpt
    assert (logits_of(make_llava(world), model_inputs()) - expected).abs().max() > 0.1


def test_lora_in_folder_named_like_a_merged_model(lora_ckpt, world, tmp_path):
    """No `lora` in the name: upstream took the projector-only branch here (#1416)."""
    path, expected = lora_ckpt
    misleading = tmp_path / "llava-v1.5-7b-merged"
    shutil.copytree(path, misleading)
    _, model, _, _ = load_cpu(misleading, base=world.llm_dir, name="llava-v1.5-7b-merged")
    assert_logits_equal(model, expected)


def test_qlora_output_loads_in_16_bit(lora_ckpt, world, tmp_path):
    path = _with_qlora_config(lora_ckpt, tmp_path)
    _, model, _, _ = load_cpu(path, base=world.llm_dir)
    assert type(model.get_model().layers[0].self_attn.q_proj) is nn.Linear
    assert_logits_equal(model, lora_ckpt[1])


def test_lora_base_from_adapter_config(lora_ckpt):
    """Without model_base the adapter config's base_model_name_or_path is used (it exists here)."""
    path, expected = lora_ckpt
    _, model, _, _ = load_cpu(path, name="run2")
    assert_logits_equal(model, expected)


def test_lora_checkpoint_n_loads_like_final_output(lora_ckpt, world, tmp_path):
    path, expected = lora_ckpt
    ckpt = tmp_path / "checkpoint-5"
    shutil.copytree(path, ckpt)
    (ckpt / "trainer_state.json").write_text("{}")
    torch.save({}, ckpt / "optimizer.pt")
    _, model, _, _ = load_cpu(ckpt, base=world.llm_dir, name="checkpoint-5")
    assert_logits_equal(model, expected)


def test_projector_only_layout(projector_ckpt, world):
    path, expected = projector_ckpt
    assert sorted(os.listdir(path)) == ["config.json", MM_PROJECTOR_FILE]
    assert detect_layout(str(path), model_base=str(world.llm_dir)) is CheckpointLayout.PROJECTOR
    _, model, _, _ = load_cpu(path, base=world.llm_dir, name="run3")
    assert isinstance(model.get_model().mm_projector, nn.Linear)
    assert_logits_equal(model, expected)


def test_upstream_written_full_checkpoint(world, tmp_path):
    """v1.5-era layout: model_type `llava`, fp16 safetensors shards with the CLIP copy, no merge type."""
    model = make_llava(world)
    with torch.no_grad():  # the weights go through fp16 on disk: round them in the reference too
        for name, param in model.named_parameters():
            if "vision_tower" not in name:
                param.copy_(param.half().float())
    expected = logits_of(model, model_inputs())

    out = tmp_path / "upstream-ckpt"
    out.mkdir()
    state = {k: v.half().contiguous() for k, v in model.state_dict().items()}
    assert any(k.startswith("model.vision_tower.vision_tower.vision_model.") for k in state)
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    weight_map = {}
    for file, shard_keys in shards.items():
        save_file({k: state[k] for k in shard_keys}, str(out / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard_keys, file))
    index = {"metadata": {"total_size": sum(v.numel() * 2 for v in state.values())}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index))

    config = model.config.to_dict()
    config.update(model_type="llava", architectures=["LlavaLlamaForCausalLM"], torch_dtype="float16")
    config.update(transformers_version="4.31.0", use_cache=True)
    for key in ("mm_patch_merge_type", "dtype"):
        config.pop(key, None)
    (out / "config.json").write_text(json.dumps(config))
    shutil.copy(world.llm_dir / "tokenizer.model", out)
    shutil.copy(world.llm_dir / "tokenizer_config.json", out)

    _, loaded, _, _ = load_cpu(out, name="upstream-ckpt")
    assert loaded.dtype == torch.float32
    assert_logits_equal(loaded, expected)


def test_plain_language_model(world):
    tokenizer, model, image_processor, _ = load_cpu(world.llm_dir, name="base-lm")
    assert type(model) is LlamaForCausalLM
    assert image_processor is None
    assert tokenizer.convert_tokens_to_ids("<im_patch>") == tokenizer.unk_token_id  # no image tokens added


def test_plain_language_model_lora(world, tmp_path):
    """Upstream's "not llava" branch: an adapter on a plain LM (no config.json in the adapter folder)."""
    from peft import get_peft_model

    from llava.train.lora import build_lora_config

    base = LlamaForCausalLM.from_pretrained(world.llm_dir)
    peft_model = get_peft_model(base, build_lora_config(base, r=4, alpha=8, dropout=0.0, bias="none"))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    peft_model.eval()
    ids = model_inputs()["input_ids"].clamp(min=0)
    expected = logits_of(peft_model, {"input_ids": ids})
    peft_model.save_pretrained(tmp_path / "adapter")
    _, model, image_processor, _ = load_cpu(tmp_path / "adapter", base=world.llm_dir)
    assert type(model) is LlamaForCausalLM and image_processor is None
    torch.testing.assert_close(logits_of(model, {"input_ids": ids}), expected, atol=1e-5, rtol=1e-4)


def test_lora_trained_with_added_token(world, tmp_path):
    """`mm_use_im_patch_token` grew the vocabulary in training: the base is loaded and grown to fit."""
    from llava.tokenization import load_tokenizer

    model = make_llava(world)
    model.initialize_vision_tokenizer(
        load_tokenizer(world.llm_dir), mm_use_im_start_end=False, mm_use_im_patch_token=True
    )
    model.config.mm_use_im_patch_token = True
    vocab = model.config.vocab_size
    assert vocab == 32001
    expected = save_lora(model, tmp_path / "run")
    tokenizer, loaded, _, _ = load_cpu(tmp_path / "run", base=world.llm_dir)
    assert len(tokenizer) == vocab and loaded.get_input_embeddings().weight.shape[0] == vocab
    logits = logits_of(loaded, model_inputs())
    # The added row was never trained nor saved (as upstream): only its own logit column may differ.
    torch.testing.assert_close(logits[..., :-1], expected[..., :-1], atol=1e-5, rtol=1e-4)


def test_hub_id_falls_back_to_name_rules():
    assert detect_layout("org/llava-v1.5-7b-lora", model_base="base") is CheckpointLayout.LORA
    assert detect_layout("org/llava-pretrain", model_base="base") is CheckpointLayout.PROJECTOR
    assert detect_layout("org/vicuna-lora", model_base="base") is CheckpointLayout.LORA
    assert detect_layout("org/llava-v1.5-7b", model_base=None) is CheckpointLayout.FULL


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


def _copy_lora(lora_ckpt, tmp_path) -> Path:
    path = tmp_path / "run"
    shutil.copytree(lora_ckpt[0], path)
    return path


def test_missing_projector_key_is_an_error(lora_ckpt, world, tmp_path):
    path = _copy_lora(lora_ckpt, tmp_path)
    state = torch.load(path / NON_LORA_TRAINABLES_FILE, weights_only=True)
    dropped = next(k for k in state if k.endswith("mm_projector.2.weight"))
    del state[dropped]
    torch.save(state, path / NON_LORA_TRAINABLES_FILE)
    with pytest.raises(
        KeyError, match=r"non_lora_trainables\.bin lacks 1 parameters.*mm_projector\.2\.weight"
    ):
        load_cpu(path, base=world.llm_dir)


def test_unused_non_lora_key_is_an_error(lora_ckpt, world, tmp_path):
    path = _copy_lora(lora_ckpt, tmp_path)
    state = torch.load(path / NON_LORA_TRAINABLES_FILE, weights_only=True)
    state["base_model.model.model.mm_projektor.0.weight"] = torch.zeros(1)
    torch.save(state, path / NON_LORA_TRAINABLES_FILE)
    with pytest.raises(KeyError, match="match no model parameter.*mm_projektor"):
        load_cpu(path, base=world.llm_dir)


def test_missing_non_lora_trainables_is_an_error(lora_ckpt, world, tmp_path):
    path = _copy_lora(lora_ckpt, tmp_path)
    (path / NON_LORA_TRAINABLES_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="without non_lora_trainables.bin"):
        load_cpu(path, base=world.llm_dir)


def test_lora_without_any_base_names_both(lora_ckpt, tmp_path):
    path = _copy_lora(lora_ckpt, tmp_path)
    adapter_config = json.loads((path / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = str(tmp_path / "gone")
    (path / "adapter_config.json").write_text(json.dumps(adapter_config))
    with pytest.raises(FileNotFoundError, match=r"model_base=None.*base_model_name_or_path='.*gone'"):
        load_cpu(path)


def test_upstream_intermediate_lora_checkpoint_is_an_error(lora_ckpt, world, tmp_path):
    """Upstream's LoRA checkpoint-N: adapter only, no config.json, no non_lora_trainables.bin."""
    path = _copy_lora(lora_ckpt, tmp_path)
    (path / "config.json").unlink()
    (path / NON_LORA_TRAINABLES_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="LLaVA LoRA checkpoint but has no config.json"):
        load_cpu(path, base=world.llm_dir, name="llava-v1.5-7b-lora")


def test_hub_lora_needs_a_local_folder(world):
    with pytest.raises(FileNotFoundError, match="not a local folder.*huggingface-cli download"):
        load_cpu("someone/llava-v1.5-7b-lora", base=world.llm_dir, name="llava-v1.5-7b-lora")


def test_projector_file_missing_a_key_is_an_error(projector_ckpt, world, tmp_path):
    path = tmp_path / "proj"
    shutil.copytree(projector_ckpt[0], path)
    state = torch.load(path / MM_PROJECTOR_FILE, weights_only=True)
    del state["model.mm_projector.bias"]
    torch.save(state, path / MM_PROJECTOR_FILE)
    with pytest.raises(KeyError, match=r"mm_projector\.bin lacks 1 parameters.*model\.mm_projector\.bias"):
        load_cpu(path, base=world.llm_dir)


def test_projector_only_without_base_is_an_error(projector_ckpt):
    with pytest.raises(ValueError, match="mm_projector.bin but no language-model weights: pass model_base"):
        load_cpu(projector_ckpt[0])


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"holds no checkpoint.*\['config.json'\]"):
        detect_layout(str(tmp_path))


def test_rename_non_lora_keys_follows_upstream():
    state = {"base_model.model.model.mm_projector.0.weight": 1, "base_model.model.lm_head.base_layer.bias": 2}
    assert rename_non_lora_keys(state) == {"model.mm_projector.0.weight": 1, "lm_head.bias": 2}
    assert rename_non_lora_keys({"model.mm_projector.weight": 3}) == {"model.mm_projector.weight": 3}


# --------------------------------------------------------------------------------------------------
# Dtype / device / quantization
# --------------------------------------------------------------------------------------------------


def test_cpu_default_dtype_is_float32(full_ckpt):
    """Upstream always loaded fp16 and crashed on CPU ("addmm_impl_cpu_" not implemented for 'Half')."""
    path, expected = full_ckpt
    assert resolve_dtype(None, "cpu") == torch.float32
    assert resolve_dtype(None, "cuda") == torch.float16
    assert resolve_dtype(None, "mps") == torch.float16
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    # Upstream's defaults (device="cuda"): on a machine without CUDA this falls back to the CPU in fp32.
    if not torch.cuda.is_available():
        _, model, _, _ = load_pretrained_model(str(path), None, "run1")
        assert model.dtype == torch.float32
        assert model.get_vision_tower().dtype == torch.float32
        assert_logits_equal(model, expected)


def test_bf16_on_cpu_when_asked(full_ckpt):
    path, expected = full_ckpt
    _, model, _, _ = load_cpu(path, torch_dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.get_vision_tower().dtype == torch.bfloat16
    inputs = model_inputs()
    logits = model(input_ids=inputs["input_ids"], images=inputs["images"].bfloat16()).logits
    torch.testing.assert_close(logits.float(), expected, atol=0.1, rtol=0.1)


def test_skip_patterns_protect_nested_modules_under_transformers_matching():
    """transformers 5 matches skip names from the start of the module path or as a suffix: a bare
    `mm_projector` skips `model.mm_projector` but not its children; our patterns skip all of them."""
    from transformers.quantizers.quantizers_utils import should_convert_module

    assert should_convert_module("model.mm_projector.0", ["mm_projector"])  # the trap
    for kept in (
        "model.mm_projector",
        "model.mm_projector.0",
        "model.mm_projector.2",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj",
        "lm_head",
    ):
        assert not should_convert_module(kept, QUANTIZATION_SKIP_MODULES), kept
    for quantized in ("model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"):
        assert should_convert_module(quantized, QUANTIZATION_SKIP_MODULES), quantized


def _assert_quantized(model, bnb_class) -> None:
    language_model = model.get_model()
    q_proj = language_model.layers[0].self_attn.q_proj
    q_proj = getattr(q_proj, "base_layer", q_proj)  # under an unmerged LoRA layer
    assert isinstance(q_proj, bnb_class), type(q_proj)
    assert all(
        type(m) is nn.Linear for m in language_model.mm_projector.modules() if isinstance(m, nn.Linear)
    )
    assert type(model.lm_head) is nn.Linear
    tower_types = {type(m).__module__ for m in model.get_vision_tower().modules()}
    assert not any("bitsandbytes" in t for t in tower_types)


@pytest.mark.parametrize("bits", [4, 8])
def test_kbit_loading_on_cpu(full_ckpt, bits):
    import bitsandbytes as bnb

    path, expected = full_ckpt
    _, model, _, _ = load_cpu(path, load_4bit=bits == 4, load_8bit=bits == 8)
    _assert_quantized(model, bnb.nn.Linear4bit if bits == 4 else bnb.nn.Linear8bitLt)
    logits = logits_of(model, model_inputs())
    assert torch.isfinite(logits).all()
    assert (logits - expected).abs().max() < 0.5 * expected.abs().max()  # quantized, but the same model


def _with_qlora_config(lora_ckpt, tmp_path) -> Path:
    """The LoRA output as a QLoRA run writes it: config.json carries the run's 4-bit settings."""
    path = _copy_lora(lora_ckpt, tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "bitsandbytes",
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": "float32",
        "bnb_4bit_use_double_quant": True,
        "llm_int8_skip_modules": ["mm_projector", "vision_tower", "lm_head"],
    }
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_qlora_loading_keeps_adapter_unmerged(lora_ckpt, world, tmp_path):
    """Also: the saved quantization_config must not make the 16-bit base look pre-quantized."""
    import bitsandbytes as bnb

    expected = lora_ckpt[1]
    path = _with_qlora_config(lora_ckpt, tmp_path)
    _, model, _, _ = load_cpu(path, base=world.llm_dir, load_4bit=True)
    _assert_quantized(model, bnb.nn.Linear4bit)
    assert any("lora_" in n for n, _ in model.named_parameters())
    logits = logits_of(model, model_inputs())
    assert torch.isfinite(logits).all()
    assert (logits - expected).abs().max() < 0.5 * expected.abs().max()
