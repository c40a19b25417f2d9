"""`deepspeed llava/train/train_mem.py …`: the training entrypoint with FlashAttention-2 when it can run."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

if __package__ in (None, ""):
    # Run as a script by the deepspeed launcher: make the repository importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

from llava.train.train import train  # noqa: E402

logger = logging.getLogger(__name__)


def attention_implementation() -> str:
    """flash_attention_2 on CUDA with flash-attn installed (upstream's choice), else PyTorch SDPA."""
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    logger.warning("flash-attn is not available here; training with PyTorch's SDPA attention instead.")
    return "sdpa"


if __name__ == "__main__":
    train(attn_implementation=attention_implementation())
