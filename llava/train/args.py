"""The three argument dataclasses of `llava.train.train`, with upstream's flag names and defaults.

Every field carries help text (`--help` shows it). `validate_arguments` rejects contradictory
settings before any model is loaded, naming the flags involved.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field

import transformers

from llava.train.distributed import has_accelerator, launcher_world_size

logger = logging.getLogger(__name__)

PROJECTOR_TYPE_PATTERN = re.compile(r"^(linear|identity|mlp\d+x_gelu)$")
# Versions whose preprocessing upstream never switches away from the module default (vicuna_v1).
VERSIONS_KEEPING_DEFAULT_TEMPLATE = ("v0", "v0.5")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default="facebook/opt-125m",
        metadata={"help": "Base language model (folder or hub id) or a LLaVA checkpoint to continue from."},
    )
    version: str = field(
        default="v0",
        metadata={
            "help": "Conversation template / preprocessing: plain (projector pretraining), v1 (Vicuna, "
            "LLaVA-1.5), llava_llama_2, mistral_instruct, chatml_direct, mpt, llava_v0 … "
            "(keys of llava.conversation.conv_templates)."
        },
    )
    freeze_backbone: bool = field(
        default=False, metadata={"help": "Freeze the decoder and embeddings (lm_head stays trainable)."}
    )
    tune_mm_mlp_adapter: bool = field(
        default=False,
        metadata={
            "help": "Projector pretraining: train only the multimodal projector; saves mm_projector.bin."
        },
    )
    vision_tower: str | None = field(
        default=None, metadata={"help": "CLIP vision tower (folder or hub id). None trains a text-only LM."}
    )
    mm_vision_select_layer: int = field(
        default=-1, metadata={"help": "Vision tower hidden layer whose features are used (-2 in LLaVA-1.5)."}
    )
    pretrain_mm_mlp_adapter: str | None = field(
        default=None,
        metadata={"help": "mm_projector.bin from a pretraining run to initialise the projector."},
    )
    mm_projector_type: str | None = field(
        default="linear", metadata={"help": "Projector: linear, mlp{N}x_gelu (e.g. mlp2x_gelu), identity."}
    )
    mm_use_im_start_end: bool = field(
        default=False, metadata={"help": "Wrap each image in <im_start>/<im_end> tokens."}
    )
    mm_use_im_patch_token: bool = field(
        default=True, metadata={"help": "Add the <im_patch> token to the vocabulary (scripts pass False)."}
    )
    mm_patch_merge_type: str | None = field(
        default="flat",
        metadata={"help": "How image patch features are merged: flat, spatial, spatial_unpad."},
    )
    mm_vision_select_feature: str | None = field(
        default="patch", metadata={"help": "patch (drop CLS) or cls_patch (keep CLS)."}
    )


@dataclass
class DataArguments:
    data_path: str | None = field(
        default=None, metadata={"help": "Training data: a JSON list in LLaVA's format."}
    )
    lazy_preprocess: bool = field(
        default=False, metadata={"help": "Accepted for compatibility; preprocessing is always lazy."}
    )
    is_multimodal: bool = field(
        default=False, metadata={"help": "Set automatically when a vision tower is given."}
    )
    image_folder: str | None = field(
        default=None, metadata={"help": "Folder the samples' `image` paths are relative to."}
    )
    image_aspect_ratio: str = field(
        default="square",
        metadata={
            "help": "square (processor resize + centre crop) or pad (pad to square with the mean colour)."
        },
    )


@dataclass
class TrainingArguments(transformers.TrainingArguments):
    cache_dir: str | None = field(default=None, metadata={"help": "Cache folder for downloaded models."})
    optim: str = field(default="adamw_torch", metadata={"help": "Optimizer (HF Trainer names)."})
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Must stay False: the collator's `images` column is used by the model."},
    )
    freeze_mm_mlp_adapter: bool = field(default=False, metadata={"help": "Keep the projector frozen."})
    mpt_attn_impl: str | None = field(
        default="triton", metadata={"help": "MPT attention implementation (MPT only)."}
    )
    model_max_length: int = field(
        default=512,
        metadata={"help": "Maximum sequence length; sequences are right-padded and truncated to it."},
    )
    double_quant: bool = field(
        default=True, metadata={"help": "Compress the quantization statistics through double quantization."}
    )
    quant_type: str = field(default="nf4", metadata={"help": "4-bit quantization data type: nf4 or fp4."})
    bits: int = field(default=16, metadata={"help": "Language model weight bits: 16, 8 or 4 (QLoRA)."})
    lora_enable: bool = field(default=False, metadata={"help": "Train LoRA adapters on the language model."})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (scaling = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_weight_path: str = field(default="", metadata={"help": "Unused (kept for upstream compatibility)."})
    lora_bias: str = field(
        default="none", metadata={"help": "Which biases LoRA trains: none, all, lora_only."}
    )
    mm_projector_lr: float | None = field(
        default=None, metadata={"help": "Learning rate of the projector (defaults to --learning_rate)."}
    )
    group_by_modality_length: bool = field(
        default=False,
        metadata={"help": "Batch image and text-only samples separately, grouped by length (LLaVA-1.5)."},
    )
    evaluation_strategy: str | None = field(
        default=None, metadata={"help": "Deprecated alias of --eval_strategy (upstream's scripts pass it)."}
    )
    warmup_ratio: float | None = field(
        default=None, metadata={"help": "Warmup as a fraction of all steps (upstream's scripts pass 0.03)."}
    )

    def __post_init__(self):
        # transformers 5 dropped `evaluation_strategy`; upstream's launch scripts still pass it.
        if self.evaluation_strategy is not None:
            self.eval_strategy = self.evaluation_strategy
        # transformers 5 folded `warmup_ratio` into `warmup_steps` (a float below 1 is a ratio).
        if self.warmup_ratio is not None:
            if not 0 <= self.warmup_ratio < 1:
                raise ValueError(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
            if self.warmup_steps:
                raise ValueError("Give --warmup_ratio or --warmup_steps, not both.")
            self.warmup_steps = self.warmup_ratio
        # Without an accelerator, accelerate reports world size 1 on every rank unless told to use the
        # CPU; a multi-process CPU launch would then train as independent single-process jobs.
        if launcher_world_size() > 1 and not has_accelerator():
            self.use_cpu = True
        super().__post_init__()


class ArgumentError(ValueError):
    """Contradictory or invalid command-line settings, found before any model is loaded."""


def validate_arguments(
    model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments
) -> None:
    """Reject contradictory settings up front, naming the flags involved.

    Raises:
        ArgumentError: the first problem found.
    """
    problems = list(_argument_problems(model_args, data_args, training_args))
    if problems:
        raise ArgumentError("Invalid arguments:\n  - " + "\n  - ".join(problems))


def _argument_problems(
    model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments
):
    t = training_args
    if t.bits not in (4, 8, 16):
        yield f"--bits must be 4, 8 or 16, got {t.bits}."
    if t.bits in (4, 8) and not (t.lora_enable or model_args.tune_mm_mlp_adapter):
        yield f"--bits {t.bits} quantizes the language model, which cannot train: add --lora_enable True."
    if t.quant_type not in ("nf4", "fp4"):
        yield f"--quant_type must be nf4 or fp4, got {t.quant_type!r}."
    if t.lora_bias not in ("none", "all", "lora_only"):
        yield f"--lora_bias must be none, all or lora_only, got {t.lora_bias!r}."
    if model_args.tune_mm_mlp_adapter and t.freeze_mm_mlp_adapter:
        yield "--tune_mm_mlp_adapter True and --freeze_mm_mlp_adapter True leave nothing to train."
    if model_args.tune_mm_mlp_adapter and t.lora_enable:
        yield "--tune_mm_mlp_adapter True trains only the projector; it excludes --lora_enable True."
    if model_args.tune_mm_mlp_adapter and model_args.mm_use_im_start_end:
        yield "--mm_use_im_start_end True is not supported with --tune_mm_mlp_adapter True (as upstream)."
    if model_args.mm_projector_type and not PROJECTOR_TYPE_PATTERN.match(model_args.mm_projector_type):
        yield f"--mm_projector_type must be linear, identity or mlpNx_gelu: {model_args.mm_projector_type!r}."
    if model_args.mm_vision_select_feature not in ("patch", "cls_patch"):
        feature = model_args.mm_vision_select_feature
        yield f"--mm_vision_select_feature must be patch or cls_patch, got {feature!r}."
    if data_args.image_aspect_ratio not in ("square", "pad"):
        yield (
            f"--image_aspect_ratio {data_args.image_aspect_ratio!r} is not supported for training "
            "(square or pad; upstream never trains anyres either)."
        )
    if data_args.data_path is None:
        yield "--data_path is required."
    elif not os.path.isfile(data_args.data_path):
        yield f"--data_path {data_args.data_path} does not exist."
    if model_args.vision_tower is None and data_args.image_folder is not None:
        yield "--image_folder is set but --vision_tower is not: images would be ignored."
    if model_args.pretrain_mm_mlp_adapter and not os.path.isfile(model_args.pretrain_mm_mlp_adapter):
        yield f"--pretrain_mm_mlp_adapter {model_args.pretrain_mm_mlp_adapter} does not exist."
    if model_args.pretrain_mm_mlp_adapter and model_args.vision_tower is None:
        yield "--pretrain_mm_mlp_adapter needs --vision_tower."
    if t.model_max_length <= 0:
        yield f"--model_max_length must be positive, got {t.model_max_length}."
    if t.bits in (4, 8) and deepspeed_zero_stage(t.deepspeed) == 3:
        yield (
            f"--bits {t.bits} (QLoRA) does not work with DeepSpeed ZeRO-3: bitsandbytes weights are placed "
            "on one device at load time and cannot be partitioned. Use --deepspeed scripts/zero2.json."
        )
    if t.mm_projector_lr is not None and deepspeed_defines_optimizer(t.deepspeed):
        yield (
            "--mm_projector_lr is set but the DeepSpeed config defines its own `optimizer`, which would "
            "silently drop the projector's learning rate (upstream's zero3_offload.json does). Remove the "
            "`optimizer` section from the DeepSpeed config or drop --mm_projector_lr."
        )


def _deepspeed_config(deepspeed: str | dict | None) -> dict:
    if deepspeed is None:
        return {}
    if isinstance(deepspeed, dict):
        return deepspeed
    with open(deepspeed) as f:
        return json.load(f)


def deepspeed_zero_stage(deepspeed: str | dict | None) -> int | None:
    """ZeRO stage of a DeepSpeed config file or dict (None when DeepSpeed is not used)."""
    config = _deepspeed_config(deepspeed)
    return config.get("zero_optimization", {}).get("stage") if config else None


def deepspeed_defines_optimizer(deepspeed: str | dict | None) -> bool:
    return "optimizer" in _deepspeed_config(deepspeed)
