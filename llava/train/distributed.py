"""Multi-process set-up that must happen before the TrainingArguments exist, and its sanity check."""

from __future__ import annotations

import os
import sys

import torch

SINGLE_PROCESS_ENV = {
    "RANK": "0",
    "LOCAL_RANK": "0",
    "WORLD_SIZE": "1",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29500",
}


def launcher_world_size() -> int:
    """The number of processes the launcher (torchrun / deepspeed) started."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def has_accelerator() -> bool:
    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def prepare_distributed_environment(argv: list[str] | None = None) -> None:
    """Initialise the process group early when DeepSpeed runs several processes.

    ZeRO-3's `zero.Init` (entered while the model is loaded) reads the world size from the process
    group; it must exist before the TrainingArguments are built. DeepSpeed picks gloo on CPU by itself.
    """
    argv = sys.argv if argv is None else argv
    uses_deepspeed = any(arg == "--deepspeed" or arg.startswith("--deepspeed=") for arg in argv)
    if uses_deepspeed and "RANK" not in os.environ:
        # Started without a launcher: describe a one-process group, or DeepSpeed falls back to MPI
        # discovery (and fails without mpi4py).
        for key, value in SINGLE_PROCESS_ENV.items():
            os.environ.setdefault(key, value)
    if uses_deepspeed and launcher_world_size() > 1 and not torch.distributed.is_initialized():
        import deepspeed

        deepspeed.init_distributed()


def check_world_size(trainer_world_size: int) -> None:
    """Fail loudly instead of silently training as independent single-process jobs."""
    expected = launcher_world_size()
    if trainer_world_size != expected:
        raise RuntimeError(
            f"The launcher started {expected} processes but training sees a world size of "
            f"{trainer_world_size}; every rank would train alone on the full data."
        )
