"""QLoRA (--bits 4 / --bits 8) through the real entrypoint on the toy world, bitsandbytes on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch

from llava.demo.recipes import toy_recipe as recipe_args
from llava.model.builder import load_pretrained_model
from llava.train.args import ArgumentError
from llava.train.train import build_model_and_tokenizer, parse_arguments, train
from tests.train.helpers import fixed_batch, logits_of, merge_lora_with_script

REPO_ROOT = Path(__file__).resolve().parents[2]
QUANTIZED_TYPES = {4: bnb.nn.Linear4bit, 8: bnb.nn.Linear8bitLt}


def assert_quantization_layout(model, bits: int) -> None:
    quantized = QUANTIZED_TYPES[bits]
    decoder_linears = {
        name: module
        for name, module in model.named_modules()
        if name.endswith(("q_proj.base_layer", "down_proj.base_layer", "q_proj", "down_proj"))
        and "vision_tower" not in name
        and isinstance(module, torch.nn.Linear)
    }
    assert decoder_linears
    assert all(isinstance(m, quantized) for m in decoder_linears.values()), (
        "decoder linears must be quantized"
    )
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and (
            "mm_projector" in name or "vision_tower" in name or name.endswith("lm_head")
        ):
            assert not isinstance(module, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)), (
                f"{name} must stay full precision"
            )


@pytest.mark.parametrize("bits", [4, 8])
def test_kbit_model_setup(bits, toy_world, tmp_path):
    model_args, data_args, training_args = parse_arguments(
        recipe_args(toy_world, "qlora", tmp_path, bits=bits)
    )
    model, _, _ = build_model_and_tokenizer(model_args, data_args, training_args)
    assert_quantization_layout(model, bits)
    norms = [(n, p) for n, p in model.named_parameters() if "norm" in n]
    assert norms and all(p.dtype == torch.float32 for _, p in norms)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable) and any("mm_projector" in n for n in trainable)
    assert all("lora_" in n or "mm_projector" in n for n in trainable), trainable


@pytest.fixture(scope="module")
def qlora_run(toy_world, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("qlora")
    trainer = train(
        args=recipe_args(toy_world, "qlora", output_dir, max_steps=12, save_steps=12, learning_rate=1e-3)
    )
    return trainer, output_dir


def test_qlora_run_lowers_the_loss(qlora_run):
    trainer, _ = qlora_run
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_qlora_checkpoint_reloads_in_4bit_to_same_logits(qlora_run, toy_world):
    trainer, output_dir = qlora_run
    batch = fixed_batch(trainer)
    expected = logits_of(trainer.model, batch)
    _, model, _, _ = load_pretrained_model(
        str(output_dir), str(toy_world.llm_dir), "run", load_4bit=True, device_map="cpu", device="cpu"
    )
    assert_quantization_layout(model, 4)
    torch.testing.assert_close(logits_of(model, batch), expected, rtol=1e-3, atol=1e-3)


def test_qlora_merge_gives_a_16bit_model_close_to_the_adapter(qlora_run, toy_world, tmp_path):
    trainer, output_dir = qlora_run
    batch = fixed_batch(trainer)
    merged_dir = tmp_path / "merged"
    merge_lora_with_script(output_dir, toy_world.llm_dir, merged_dir)
    _, merged, _, _ = load_pretrained_model(str(merged_dir), None, "merged", device_map="cpu", device="cpu")
    assert not any(isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)) for m in merged.modules())
    # The adapter was trained against 4-bit weights and is merged into the unquantized base: close, not equal.
    merged_logits = logits_of(merged, batch)
    adapter_logits = logits_of(trainer.model, batch)
    # Measured on the toy world: mean |Δlogit| 0.17 and 90% argmax agreement, the 4-bit rounding of the base.
    assert (merged_logits - adapter_logits).abs().mean() < 0.3
    assert (merged_logits.argmax(-1) == adapter_logits.argmax(-1)).float().mean() > 0.85


def test_qlora_with_zero3_stops_at_start_up(toy_world, tmp_path):
    # A subprocess: DeepSpeed's start-up leaves process-wide state behind. The environment is what a
    # one-process launcher sets.
    env = dict(
        os.environ, RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29533"
    )
    args = recipe_args(toy_world, "qlora", tmp_path, deepspeed=REPO_ROOT / "scripts" / "zero3.json")
    result = subprocess.run(
        [sys.executable, "-m", "llava.train.train", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "does not work with DeepSpeed ZeRO-3" in result.stderr and "zero2.json" in result.stderr
    assert ArgumentError.__name__ in result.stderr
