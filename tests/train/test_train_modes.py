"""The real entrypoint on the toy world, one test per mode: files written, reload, resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llava.demo.recipes import toy_recipe as recipe_args
from llava.model.builder import load_pretrained_model
from llava.train.llava_trainer import LLaVATrainer
from llava.train.train import train
from tests.train.helpers import fixed_batch, logits_of, merge_lora_with_script

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINER_FILES = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"}


def count_training_steps(monkeypatch) -> list[int]:
    """Record the global step at which each training step of the next run starts (1-based)."""
    steps: list[int] = []
    original = LLaVATrainer.training_step

    def counting_training_step(self, *args, **kwargs):
        steps.append(self.state.global_step + 1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LLaVATrainer, "training_step", counting_training_step)
    return steps


def files_in(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()}


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    return sorted(output_dir.glob("checkpoint-*"))


@pytest.fixture(scope="module")
def pretrain_run(toy_world, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("pretrain")
    trainer = train(args=recipe_args(toy_world, "pretrain", output_dir, save_total_limit=None))
    return trainer, output_dir


@pytest.fixture(scope="module")
def lora_run(toy_world, pretrain_run, tmp_path_factory):
    _, pretrain_dir = pretrain_run
    output_dir = tmp_path_factory.mktemp("lora")
    trainer = train(
        args=recipe_args(
            toy_world, "lora", output_dir, pretrain_mm_mlp_adapter=pretrain_dir / "mm_projector.bin"
        )
    )
    return trainer, output_dir


def test_pretrain_writes_upstream_layout(pretrain_run):
    trainer, output_dir = pretrain_run
    assert files_in(output_dir) >= {"config.json", "mm_projector.bin", "trainer_state.json"}
    assert not any(name.endswith(".safetensors") for name in files_in(output_dir))
    state = torch.load(output_dir / "mm_projector.bin", weights_only=True)
    assert set(state) == {
        "model.mm_projector.0.weight",
        "model.mm_projector.0.bias",
        "model.mm_projector.2.weight",
        "model.mm_projector.2.bias",
    }
    config = json.loads((output_dir / "config.json").read_text())
    assert config["mm_projector_type"] == "mlp2x_gelu"
    assert config["mm_vision_select_layer"] == -2
    assert config["tune_mm_mlp_adapter"] is True
    assert config["use_cache"] is True
    # Every checkpoint is complete: the projector files plus the Trainer's resume state.
    checkpoints = checkpoint_dirs(output_dir)
    assert [c.name for c in checkpoints] == ["checkpoint-2", "checkpoint-4"]
    for ckpt in checkpoints:
        assert files_in(ckpt) >= {"config.json", "mm_projector.bin"} | TRAINER_FILES
    assert not (output_dir / ".staging").exists()


def test_pretrain_trains_only_the_projector(pretrain_run):
    trainer, _ = pretrain_run
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("mm_projector" in n for n in trainable)


def test_projector_reloads_to_same_logits(pretrain_run, toy_world):
    trainer, output_dir = pretrain_run
    batch = fixed_batch(trainer)
    expected = logits_of(trainer.model, batch)
    _, model, _, _ = load_pretrained_model(
        str(output_dir), str(toy_world.llm_dir), "run", device_map="cpu", device="cpu"
    )
    torch.testing.assert_close(logits_of(model, batch), expected, rtol=1e-4, atol=1e-4)


def test_lora_writes_upstream_layout(lora_run):
    trainer, output_dir = lora_run
    assert files_in(output_dir) >= {
        "config.json",
        "adapter_config.json",
        "adapter_model.safetensors",
        "non_lora_trainables.bin",
        "trainer_state.json",
    }
    non_lora = torch.load(output_dir / "non_lora_trainables.bin", weights_only=True)
    assert set(non_lora) == {
        "base_model.model.model.mm_projector.0.weight",
        "base_model.model.model.mm_projector.0.bias",
        "base_model.model.model.mm_projector.2.weight",
        "base_model.model.model.mm_projector.2.bias",
    }
    adapter = load_file(output_dir / "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter)
    assert not [k for k in adapter if "vision_tower" in k or "mm_projector" in k]
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in adapter
    for ckpt in checkpoint_dirs(output_dir):
        assert (
            files_in(ckpt)
            >= {
                "config.json",
                "adapter_config.json",
                "adapter_model.safetensors",
                "non_lora_trainables.bin",
            }
            | TRAINER_FILES
        )


def test_lora_never_lands_in_multimodal_modules(lora_run):
    trainer, _ = lora_run
    lora_names = [n for n, _ in trainer.model.named_parameters() if "lora_" in n]
    assert lora_names
    assert not [n for n in lora_names if "vision_tower" in n or "mm_projector" in n]


def test_projector_learning_rate_is_applied(lora_run):
    trainer, _ = lora_run
    projector_params = {id(p) for n, p in trainer.model.named_parameters() if "mm_projector" in n}
    groups = trainer.optimizer.param_groups
    projector_groups = [g for g in groups if any(id(p) in projector_params for p in g["params"])]
    other_groups = [g for g in groups if not any(id(p) in projector_params for p in g["params"])]
    assert projector_groups and other_groups
    assert all(g["initial_lr"] == pytest.approx(2e-5) for g in projector_groups)
    assert all(g["initial_lr"] == pytest.approx(2e-4) for g in other_groups)
    assert all(all(id(p) in projector_params for p in g["params"]) for g in projector_groups)


def test_lora_reloads_and_merges_to_same_logits(lora_run, toy_world, tmp_path):
    trainer, output_dir = lora_run
    batch = fixed_batch(trainer)
    expected = logits_of(trainer.model, batch)
    _, model, _, _ = load_pretrained_model(
        str(output_dir), str(toy_world.llm_dir), "run", device_map="cpu", device="cpu"
    )
    torch.testing.assert_close(logits_of(model, batch), expected, rtol=1e-4, atol=1e-4)

    merged_dir = tmp_path / "merged"
    merge_lora_with_script(output_dir, toy_world.llm_dir, merged_dir)
    _, merged, _, _ = load_pretrained_model(str(merged_dir), None, "merged", device_map="cpu", device="cpu")
    torch.testing.assert_close(logits_of(merged, batch), expected, rtol=1e-4, atol=1e-4)


def test_lora_checkpoint_loads_like_the_final_output(lora_run, toy_world):
    trainer, output_dir = lora_run
    batch = fixed_batch(trainer)
    (last,) = checkpoint_dirs(output_dir)  # save_total_limit 1 keeps the newest
    _, from_checkpoint, _, _ = load_pretrained_model(
        str(last), str(toy_world.llm_dir), "ckpt", device_map="cpu", device="cpu"
    )
    _, from_output, _, _ = load_pretrained_model(
        str(output_dir), str(toy_world.llm_dir), "out", device_map="cpu", device="cpu"
    )
    # The last checkpoint is the final step, so both hold the same weights.
    torch.testing.assert_close(logits_of(from_checkpoint, batch), logits_of(from_output, batch))


@pytest.mark.parametrize("mode", ["pretrain", "lora"])
def test_resume_from_checkpoint_matches_uninterrupted_run(
    mode, toy_world, pretrain_run, tmp_path, monkeypatch
):
    extra = {} if mode == "pretrain" else {"pretrain_mm_mlp_adapter": pretrain_run[1] / "mm_projector.bin"}
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    full = train(
        args=recipe_args(toy_world, mode, full_dir, max_steps=4, save_steps=2, save_total_limit=None, **extra)
    )
    # A run stopped right after step 2 leaves exactly checkpoint-2 behind; resume from a copy of it.
    resumed_dir.mkdir()
    shutil.copytree(full_dir / "checkpoint-2", resumed_dir / "checkpoint-2")
    steps_run = count_training_steps(monkeypatch)
    resumed = train(args=recipe_args(toy_world, mode, resumed_dir, max_steps=4, save_steps=2, **extra))
    assert resumed.state.global_step == 4
    assert steps_run == [3, 4], "the resumed run must start after the checkpoint, not from scratch"
    full_state = {n: p for n, p in full.model.named_parameters() if p.requires_grad}
    resumed_state = {n: p for n, p in resumed.model.named_parameters() if p.requires_grad}
    assert full_state.keys() == resumed_state.keys()
    for name, param in full_state.items():
        torch.testing.assert_close(resumed_state[name], param, rtol=1e-5, atol=1e-6, msg=name)


def test_full_finetune_writes_shards_with_projector(toy_world, pretrain_run, tmp_path):
    output_dir = tmp_path / "full"
    trainer = train(
        args=recipe_args(
            toy_world,
            "full",
            output_dir,
            max_steps=2,
            save_steps=2,
            pretrain_mm_mlp_adapter=pretrain_run[1] / "mm_projector.bin",
        )
    )
    weights = {}
    for shard in output_dir.glob("*.safetensors"):
        weights.update(load_file(shard))
    assert "model.mm_projector.0.weight" in weights
    assert "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight" in weights
    batch = fixed_batch(trainer)
    expected = logits_of(trainer.model, batch)
    _, model, _, _ = load_pretrained_model(str(output_dir), None, "full", device_map="cpu", device="cpu")
    torch.testing.assert_close(logits_of(model, batch), expected, rtol=1e-4, atol=1e-4)


def test_cli_rejects_contradictory_flags(toy_world, tmp_path):
    args = recipe_args(toy_world, "pretrain", tmp_path, lora_enable=True)
    result = subprocess.run(
        [sys.executable, "-m", "llava.train.train", *args], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "--tune_mm_mlp_adapter True trains only the projector" in result.stderr
