"""Tiny runs of the real training entrypoint on the toy world, with upstream's v1.5 flag sets."""

from __future__ import annotations

import pytest
import torch


def recipe_args(world, mode: str, output_dir, **overrides) -> list[str]:
    """Command-line flags of `scripts/v1_5/{pretrain,finetune,finetune_lora}.sh`, shrunk to the toy world."""
    flags = {
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
    if mode == "pretrain":
        flags.update(version="plain", data_path=world.pretrain_json, tune_mm_mlp_adapter=True, learning_rate=1e-3)
    else:
        flags.update(
            version="v1", data_path=world.finetune_json, image_aspect_ratio="pad",
            group_by_modality_length=True, learning_rate=2e-5,
        )
        if mode in ("lora", "qlora"):
            flags.update(lora_enable=True, lora_r=16, lora_alpha=32, mm_projector_lr=2e-5, learning_rate=2e-4)
        if mode == "qlora":
            flags.update(bits=4)
    flags.update(overrides)
    args = []
    for key, value in flags.items():
        if value is not None:
            args += [f"--{key}", str(value)]
    return args


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.set_num_threads(2)
