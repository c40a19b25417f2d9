"""The learning-rate schedule of the toy world's pre-training runs (LM and CLIP)."""

from __future__ import annotations

import math

import torch


def warmup_cosine(
    optimizer: torch.optim.Optimizer, steps: int, floor: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over the first tenth of ``steps``, then cosine decay to ``floor`` x the peak rate."""
    warmup = max(1, steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        angle = math.pi * (step - warmup) / max(1, steps - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(angle))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
