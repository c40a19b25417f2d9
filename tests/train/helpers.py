"""Helpers shared by the training tests."""

from __future__ import annotations

import torch


def fixed_batch(trainer, n: int = 4) -> dict:
    """A deterministic training batch (images included) from the trainer's own dataset and collator."""
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


@torch.no_grad()
def logits_of(model, batch) -> torch.Tensor:
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return model(**inputs).logits.float()
