"""Upstream's LLaVA-1.5 flag sets (`scripts/v1_5/*.sh`), shrunk to the toy world.

The flags a stage passes are the GPU scripts' flags, minus what needs a GPU (DeepSpeed, bf16, tf32,
FlashAttention, wandb), with the toy world's paths and toy-sized batches, steps and learning rates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

STAGES = ("pretrain", "full", "lora", "qlora")


def toy_recipe(world, stage: str, output_dir: str | Path, **overrides: Any) -> list[str]:
    """Command-line flags for `python -m llava.train.train` running `stage` on `world`.

    Args:
        world: a `llava.toy.ToyWorld`.
        stage: pretrain (projector), full, lora or qlora (4-bit).
        output_dir: where the run writes.
        overrides: flag values that replace the recipe's (None drops a flag).
    """
    if stage not in STAGES:
        raise ValueError(f"Unknown stage {stage!r}: expected one of {STAGES}.")
    flags: dict[str, Any] = {
        "model_name_or_path": world.llm_dir,
        "vision_tower": world.clip_dir,
        "image_folder": world.image_folder,
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "output_dir": output_dir,
        "num_train_epochs": 1,
        "max_steps": 4,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "evaluation_strategy": "no",
        "save_strategy": "steps",
        "save_steps": 2,
        "save_total_limit": 1,
        "weight_decay": 0.0,
        "warmup_ratio": 0.03,
        "lr_scheduler_type": "cosine",
        "logging_steps": 1,
        "model_max_length": 256,
        "dataloader_num_workers": 0,
        "lazy_preprocess": True,
        "report_to": "none",
        "seed": 0,
    }
    if stage == "pretrain":
        flags.update(
            version="plain", data_path=world.pretrain_json, tune_mm_mlp_adapter=True, learning_rate=1e-3
        )
    else:
        flags.update(
            version="v1",
            data_path=world.finetune_json,
            image_aspect_ratio="pad",
            group_by_modality_length=True,
            learning_rate=2e-5,
        )
    if stage in ("lora", "qlora"):
        flags.update(lora_enable=True, lora_r=16, lora_alpha=32, mm_projector_lr=2e-5, learning_rate=2e-4)
    if stage == "qlora":
        flags.update(bits=4)
    flags.update(overrides)
    return [arg for key, value in flags.items() if value is not None for arg in (f"--{key}", str(value))]
