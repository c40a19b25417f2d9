"""LLaVATrainer: HF Trainer plus LLaVA's optimizer groups, sampler and checkpoint layouts."""

from __future__ import annotations

import logging
import os
import shutil

import torch
from torch import nn
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from llava.constants import MM_PROJECTOR_FILE, MM_PROJECTOR_KEY, NON_LORA_TRAINABLES_FILE
from llava.data.samplers import LengthGroupedSampler
from llava.train import checkpoint
from llava.train.checkpoint import SaveMode

logger = logging.getLogger(__name__)

STAGING_DIR = ".staging"


class LLaVATrainer(Trainer):
    """Trainer for the three LLaVA modes.

    Args:
        save_mode: what `save_model` writes (projector only, LoRA adapter + projector, or everything).
        lora_bias: `--lora_bias`, for the LoRA layout.
        use_im_start_end: whether `<im_start>`/`<im_end>` embeddings are trained and saved with the projector.
    """

    def __init__(
        self, *args, save_mode: SaveMode, lora_bias: str = "none", use_im_start_end: bool = False, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.save_mode = save_mode
        self.lora_bias = lora_bias
        self.use_im_start_end = use_im_start_end
        self._staging_run_dir: str | None = None

    # ---- data order -------------------------------------------------------------------------
    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if not self.args.group_by_modality_length or dataset is None:
            return super()._get_train_sampler(train_dataset)
        # One megabatch = one global optimizer step, as upstream.
        return LengthGroupedSampler(
            self.args.train_batch_size,
            world_size=self.args.world_size * self.args.gradient_accumulation_steps,
            lengths=dataset.modality_lengths,
            generator=_seeded_generator(
                self.args.data_seed if self.args.data_seed is not None else self.args.seed
            ),
            group_by_modality=True,
        )

    # ---- optimizer --------------------------------------------------------------------------
    def create_optimizer(self, model=None):
        if self.args.mm_projector_lr is None or self.optimizer is not None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(self.parameter_groups(opt_model), **optimizer_kwargs)
        return self.optimizer

    def parameter_groups(self, model: nn.Module) -> list[dict]:
        """Upstream's four groups: (projector or not) × (weight decay or not); projector at its own lr."""
        decay = set(self.get_decay_parameter_names(model))
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, param in model.named_parameters():
            if param.requires_grad:
                groups.setdefault((MM_PROJECTOR_KEY in name, name in decay), []).append(param)
        result = []
        for (is_projector, decays), params in sorted(groups.items()):
            group = {"params": params, "weight_decay": self.args.weight_decay if decays else 0.0}
            if is_projector:
                group["lr"] = self.args.mm_projector_lr
            result.append(group)
        return result

    # ---- saving -----------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        output_dir = output_dir or self.args.output_dir
        if self.save_mode is SaveMode.FULL:
            return super().save_model(output_dir, _internal_call)
        model = self.accelerator.unwrap_model(self.model) if hasattr(self, "accelerator") else self.model
        if self.save_mode is SaveMode.PROJECTOR:
            checkpoint.save_projector_checkpoint(
                model,
                output_dir,
                use_im_start_end=self.use_im_start_end,
                is_main_process=self.args.should_save,
            )
        else:
            checkpoint.save_lora_checkpoint(
                model, output_dir, bias=self.lora_bias, is_main_process=self.args.should_save
            )

    def _get_output_dir(self, trial) -> str:
        return self._staging_run_dir or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        """Write `checkpoint-N` into a staging folder, then move it into place in one rename."""
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging_run_dir = os.path.join(run_dir, STAGING_DIR)
        self._staging_run_dir = staging_run_dir
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_run_dir = None
        if self.args.should_save:
            final = os.path.join(run_dir, name)
            if os.path.isdir(final):
                shutil.rmtree(final)
            os.replace(os.path.join(staging_run_dir, name), final)
            shutil.rmtree(staging_run_dir, ignore_errors=True)
            _rotate_checkpoints(run_dir, self.args.save_total_limit)
        self.accelerator.wait_for_everyone()

    # ---- resuming ---------------------------------------------------------------------------
    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None):
        model = self.model if model is None else model
        if self.save_mode is SaveMode.PROJECTOR:
            checkpoint.load_projector_into(model, os.path.join(resume_from_checkpoint, MM_PROJECTOR_FILE))
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if self.save_mode is SaveMode.LORA:
            checkpoint.load_non_lora_trainables_into(
                model, os.path.join(resume_from_checkpoint, NON_LORA_TRAINABLES_FILE)
            )


def _seeded_generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def _rotate_checkpoints(run_dir: str, save_total_limit: int | None) -> None:
    """Keep the newest `save_total_limit` checkpoints (by step), as HF does."""
    if not save_total_limit:
        return
    steps = sorted(
        int(entry.split("-")[-1])
        for entry in os.listdir(run_dir)
        if entry.startswith(f"{PREFIX_CHECKPOINT_DIR}-") and entry.split("-")[-1].isdigit()
    )
    for step in steps[: max(0, len(steps) - save_total_limit)]:
        shutil.rmtree(os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{step}"), ignore_errors=True)
