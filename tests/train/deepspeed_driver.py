"""Run under a multi-process launcher by the DeepSpeed tests: train, then record on rank 0 what the
trained (still partitioned) model holds, so the test can compare it with what was saved.

    RECORD=out.pt torchrun --nproc_per_node 2 tests/train/deepspeed_driver.py <training flags…>

(The record path travels in the environment: the deepspeed launcher puts `--local_rank=N` first.)
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

from llava.train.checkpoint import gather_state_dict  # noqa: E402
from llava.train.train import train  # noqa: E402
from tests.train.helpers import fixed_batch, logits_of  # noqa: E402


def main() -> None:
    record_path, args = os.environ["RECORD"], sys.argv[1:]
    trainer = train(args=args)
    model = trainer.model
    # Collective under ZeRO-3: every rank gathers and runs the forward pass.
    trainable = gather_state_dict((n, p) for n, p in model.named_parameters() if p.requires_grad)
    logits = logits_of(model, fixed_batch(trainer))
    if trainer.args.process_index == 0:
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        torch.save(
            {
                "trainable": trainable,
                "logits": logits,
                "losses": losses,
                "world_size": trainer.args.world_size,
            },
            record_path,
        )


if __name__ == "__main__":
    main()
