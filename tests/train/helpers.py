"""Helpers shared by the training tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


def fixed_batch(trainer, n: int = 4) -> dict:
    """A deterministic training batch (images included) from the trainer's own dataset and collator."""
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


@torch.no_grad()
def logits_of(model, batch) -> torch.Tensor:
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return model(**inputs).logits.float()


def merge_lora_with_script(model_path: Path, model_base: Path, merged_dir: Path) -> None:
    """Merge a LoRA run into its base with `scripts/merge_lora_weights.py`, as a user would."""
    subprocess.run(
        [
            sys.executable,
            "scripts/merge_lora_weights.py",
            *("--model-path", str(model_path), "--model-base", str(model_base)),
            *("--save-model-path", str(merged_dir)),
        ],
        cwd=REPO_ROOT,
        check=True,
    )
