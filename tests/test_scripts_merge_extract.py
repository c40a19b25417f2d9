"""`scripts/merge_lora_weights.py` and `scripts/extract_mm_projector.py` on tiny in-process checkpoints."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from llava.constants import ADAPTER_CONFIG_FILE, MM_PROJECTOR_FILE, NON_LORA_TRAINABLES_FILE
from llava.model.builder import CheckpointLayout, detect_layout, load_pretrained_model

REPO_ROOT = Path(__file__).resolve().parents[1]


def _import_path(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


# The tiny-model helpers live with the builder tests; the scripts are files, not modules.
helpers = _import_path("builder_test_helpers", REPO_ROOT / "tests" / "model" / "test_builder.py")
merge_script = _import_path("merge_lora_weights", REPO_ROOT / "scripts" / "merge_lora_weights.py")
extract_script = _import_path("extract_mm_projector", REPO_ROOT / "scripts" / "extract_mm_projector.py")


@pytest.fixture(scope="module")
def world(tmp_path_factory, llama2_tokenizer_dir):
    return helpers.make_tiny_world(tmp_path_factory.mktemp("world"), llama2_tokenizer_dir)


@pytest.fixture(scope="module")
def lora_ckpt(world, tmp_path_factory) -> tuple[Path, torch.Tensor]:
    out = tmp_path_factory.mktemp("lora") / "out"  # neither `llava` nor `lora` in the name
    return out, helpers.save_lora(helpers.make_llava(world), out)


def _projector_state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.get_model().mm_projector.state_dict().items()}


# --------------------------------------------------------------------------------------------------
# merge_lora_weights.py
# --------------------------------------------------------------------------------------------------


def test_merge_output_reloads_with_adapter_logits(lora_ckpt, world, tmp_path):
    path, expected = lora_ckpt
    merged = tmp_path / "merged"
    merge_script.main(
        ["--model-path", str(path), "--model-base", str(world.llm_dir), "--save-model-path", str(merged)]
    )

    assert detect_layout(str(merged)) is CheckpointLayout.FULL
    assert not (merged / ADAPTER_CONFIG_FILE).exists()
    assert (merged / "tokenizer.model").is_file()
    tokenizer, model, image_processor, _ = load_pretrained_model(str(merged), None, "merged", device="cpu")
    assert image_processor is not None
    assert not any("lora_" in n for n, _ in model.named_parameters())
    adapter_logits = helpers.logits_of(
        load_pretrained_model(str(path), str(world.llm_dir), "out", device="cpu")[1], helpers.model_inputs()
    )
    torch.testing.assert_close(adapter_logits, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        helpers.logits_of(model, helpers.model_inputs()), adapter_logits, atol=1e-5, rtol=1e-4
    )


def test_merge_of_qlora_output_is_16_bit(lora_ckpt, world, tmp_path):
    """A QLoRA run's config carries its 4-bit settings; the merged model must not inherit them."""
    path = tmp_path / "qlora"
    shutil.copytree(lora_ckpt[0], path)
    config = json.loads((path / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "bitsandbytes",
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": "float16",
        "llm_int8_skip_modules": ["mm_projector", "vision_tower", "lm_head"],
    }
    (path / "config.json").write_text(json.dumps(config))
    merged = tmp_path / "merged"
    merge_script.merge_lora(str(path), str(world.llm_dir), str(merged), save_dtype="float16")

    saved = json.loads((merged / "config.json").read_text())
    assert "quantization_config" not in saved
    _, model, _, _ = load_pretrained_model(str(merged), None, "merged", device="cpu", torch_dtype="float16")
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    expected = lora_ckpt[1]
    logits = helpers.logits_of(model.float(), helpers.model_inputs())
    torch.testing.assert_close(logits, expected, atol=5e-3, rtol=1e-2)


def test_merge_refuses_full_weights(world, tmp_path):
    full = tmp_path / "full"
    helpers.save_full(helpers.make_llava(world), world.llm_dir, full)
    with pytest.raises(ValueError, match="already holds full weights"):
        merge_script.merge_lora(str(full), str(world.llm_dir), str(tmp_path / "out"))


@pytest.mark.parametrize("script", ["merge_lora_weights.py", "extract_mm_projector.py"])
def test_scripts_run_from_repo_root(script):
    result = subprocess.run(
        [sys.executable, f"scripts/{script}", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--model-path" in result.stdout and "usage:" in result.stdout


# --------------------------------------------------------------------------------------------------
# extract_mm_projector.py
# --------------------------------------------------------------------------------------------------


def _fresh_model_with_adapter(world, adapter: Path):
    from llava.model import LlavaLlamaForCausalLM

    model = LlavaLlamaForCausalLM.from_pretrained(world.llm_dir, dtype=torch.float32)
    model.get_model().initialize_vision_modules(
        vision_tower=str(world.clip_dir), mm_projector_type="mlp2x_gelu", pretrain_mm_mlp_adapter=str(adapter)
    )
    return model


def _assert_same_state(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], atol=0, rtol=0)


def test_extract_from_full_checkpoint_round_trips(world, tmp_path):
    trained = helpers.make_llava(world, seed=7)
    full = tmp_path / "full"
    helpers.save_full(trained, world.llm_dir, full)
    out = tmp_path / "extracted" / MM_PROJECTOR_FILE
    # Subprocess: the script as users run it (sys.path set up from the script's location).
    subprocess.run(
        [sys.executable, "scripts/extract_mm_projector.py", "--model-path", str(full), "--output", str(out)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    state = torch.load(out, weights_only=True)
    assert sorted(state) == [f"model.mm_projector.{i}.{p}" for i in (0, 2) for p in ("bias", "weight")]
    _assert_same_state(_projector_state(_fresh_model_with_adapter(world, out)), _projector_state(trained))


def test_extract_from_sharded_bin_checkpoint(world, tmp_path):
    """Upstream's transformers-4.31 layout: `pytorch_model-0000k-of-0000n.bin` + index, with the CLIP copy."""
    trained = helpers.make_llava(world, seed=8)
    folder = tmp_path / "upstream"
    folder.mkdir()
    state = {k: v.half() for k, v in trained.state_dict().items()}
    keys = sorted(state)
    weight_map = {}
    for i, shard_keys in enumerate((keys[::2], keys[1::2]), start=1):
        name = f"pytorch_model-0000{i}-of-00002.bin"
        torch.save({k: state[k] for k in shard_keys}, folder / name)
        weight_map.update(dict.fromkeys(shard_keys, name))
    (folder / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    (folder / "config.json").write_text(json.dumps({"mm_use_im_start_end": False}))

    out = tmp_path / "mm_projector.bin"
    extract_script.main(["--model_name_or_path", str(folder), "--output", str(out)])
    extracted = torch.load(out, weights_only=True)
    assert all(v.dtype == torch.float16 for v in extracted.values())
    _assert_same_state(extracted, {k: v for k, v in state.items() if "mm_projector" in k})


def test_extract_from_sharded_safetensors_with_embeddings(world, tmp_path):
    trained = helpers.make_llava(world, seed=9)
    folder = tmp_path / "sharded"
    folder.mkdir()
    state = {k: v.contiguous() for k, v in trained.state_dict().items()}
    keys = sorted(state)
    weight_map = {}
    for i, shard_keys in enumerate((keys[::2], keys[1::2]), start=1):
        name = f"model-0000{i}-of-00002.safetensors"
        save_file({k: state[k] for k in shard_keys}, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard_keys, name))
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    (folder / "config.json").write_text(json.dumps({"mm_use_im_start_end": True}))

    extracted = extract_script.extract_projector(str(folder))
    assert "model.embed_tokens.weight" in extracted  # start/end tokens: the embeddings travel along
    expected = {k: v for k, v in state.items() if "mm_projector" in k or "embed_tokens" in k}
    _assert_same_state(extracted, expected)
    assert "model.embed_tokens.weight" not in extract_script.extract_projector(
        str(folder), include_embeddings=False
    )


def test_extract_from_lora_output(lora_ckpt, tmp_path):
    path = lora_ckpt[0]
    raw = torch.load(path / NON_LORA_TRAINABLES_FILE, weights_only=True)
    extracted = extract_script.extract_projector(str(path))
    assert sorted(extracted) == sorted(k.removeprefix("base_model.model.") for k in raw)
    assert all(k.startswith("model.mm_projector.") for k in extracted)


def test_extract_without_projector_is_an_error(world):
    with pytest.raises(FileNotFoundError, match="No mm_projector / vision_resampler tensors"):
        extract_script.extract_projector(str(world.llm_dir))
    with pytest.raises(FileNotFoundError, match="no weights to extract"):
        extract_script.extract_projector(os.fspath(world.clip_dir.parent / "nowhere"))
