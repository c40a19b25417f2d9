"""`python -m llava.train.train …`: parse → build model → data → trainer → train → save.

Same flags, defaults and order of operations as upstream LLaVA's `llava/train/train.py`.
"""

from __future__ import annotations

import logging
import pathlib

import torch
import transformers

from llava.conversation import template_for_version, template_key_for_version
from llava.data import make_supervised_data_module
from llava.train import model_setup
from llava.train.args import DataArguments, ModelArguments, TrainingArguments, validate_arguments
from llava.train.checkpoint import SaveMode
from llava.train.distributed import check_world_size, prepare_distributed_environment
from llava.train.llava_trainer import LLaVATrainer

logger = logging.getLogger(__name__)


def parse_arguments(args: list[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    prepare_distributed_environment(args)
    parser = transformers.HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=args)
    check_world_size(training_args.world_size)
    validate_arguments(model_args, data_args, training_args)
    return model_args, data_args, training_args


def save_mode_for(model_args: ModelArguments, training_args: TrainingArguments) -> SaveMode:
    if model_args.tune_mm_mlp_adapter:
        return SaveMode.PROJECTOR
    return SaveMode.LORA if training_args.lora_enable else SaveMode.FULL


def build_model_and_tokenizer(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    attn_implementation=None,
):
    """Upstream's model set-up sequence; returns (model, tokenizer, image_processor or None)."""
    t = training_args
    compute_dtype = model_setup.compute_dtype_for(fp16=t.fp16, bf16=t.bf16)
    multimodal = model_args.vision_tower is not None
    model = model_setup.load_language_model(
        model_args.model_name_or_path,
        multimodal=multimodal,
        torch_dtype=torch.bfloat16 if t.bf16 else None,
        quantization_config=model_setup.quantization_config_for(
            t.bits, compute_dtype=compute_dtype, double_quant=t.double_quant, quant_type=t.quant_type
        ),
        device=t.device,
        attn_implementation=attn_implementation,
        cache_dir=t.cache_dir,
    )
    if model_args.freeze_backbone:
        model.model.requires_grad_(False)
    if t.bits in (4, 8):
        model = model_setup.prepare_for_kbit_training(
            model, compute_dtype=compute_dtype, gradient_checkpointing=t.gradient_checkpointing
        )
    if t.gradient_checkpointing:
        model_setup.enable_input_grads_for_checkpointing(model)
    if t.lora_enable:
        # Before the vision tower exists, as upstream (and LoRA targets exclude it by path anyway).
        model = model_setup.add_lora(
            model,
            r=t.lora_r,
            alpha=t.lora_alpha,
            dropout=t.lora_dropout,
            bias=t.lora_bias,
            bits=t.bits,
            compute_dtype=compute_dtype,
        )

    tokenizer, added = model_setup.load_training_tokenizer(
        model_args.model_name_or_path,
        model_max_length=t.model_max_length,
        version=model_args.version,
        cache_dir=t.cache_dir,
    )
    model_setup.resize_embeddings_for_new_tokens(model, tokenizer, added)

    image_processor = None
    if multimodal:
        image_processor = _attach_vision_modules(model, tokenizer, model_args, data_args, t, compute_dtype)
    if t.bits in (4, 8):
        model_setup.fix_kbit_dtypes(model, bf16=t.bf16)
    trainable, total = model_setup.count_parameters(model)
    logger.info("Trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / max(total, 1))
    return model, tokenizer, image_processor


def _attach_vision_modules(model, tokenizer, model_args, data_args, t, compute_dtype):
    llava_model = model.get_model()
    llava_model.initialize_vision_modules(
        vision_tower=model_args.vision_tower,
        mm_vision_select_layer=model_args.mm_vision_select_layer,
        mm_vision_select_feature=model_args.mm_vision_select_feature,
        mm_projector_type=model_args.mm_projector_type,
        mm_patch_merge_type=model_args.mm_patch_merge_type,
        pretrain_mm_mlp_adapter=model_args.pretrain_mm_mlp_adapter,
        projector_seed=t.seed,
    )
    vision_tower = model.get_vision_tower()
    # Upstream casts the tower to fp16 even in fp32 runs, which breaks CPU training; use the run's dtype.
    vision_tower.to(dtype=compute_dtype, device=t.device)

    config = model.config
    config.image_aspect_ratio = data_args.image_aspect_ratio
    config.tokenizer_padding_side = tokenizer.padding_side
    config.tokenizer_model_max_length = tokenizer.model_max_length
    config.tune_mm_mlp_adapter = model_args.tune_mm_mlp_adapter
    config.freeze_mm_mlp_adapter = t.freeze_mm_mlp_adapter
    model_setup.set_trainable_parameters(
        model,
        tune_mm_mlp_adapter=model_args.tune_mm_mlp_adapter,
        freeze_mm_mlp_adapter=t.freeze_mm_mlp_adapter,
        projector_dtype=compute_dtype if t.bits in (4, 8) else None,
    )
    config.mm_use_im_start_end = model_args.mm_use_im_start_end
    config.mm_projector_lr = t.mm_projector_lr
    config.mm_use_im_patch_token = model_args.mm_use_im_patch_token
    # Ours, not upstream's (which ignores it): inference then picks the template the model trained with.
    config.conv_mode = template_key_for_version(model_args.version)
    model.initialize_vision_tokenizer(
        tokenizer,
        mm_use_im_start_end=model_args.mm_use_im_start_end,
        mm_use_im_patch_token=model_args.mm_use_im_patch_token,
        tune_mm_mlp_adapter=model_args.tune_mm_mlp_adapter,
        pretrain_mm_mlp_adapter=model_args.pretrain_mm_mlp_adapter,
    )
    return vision_tower.image_processor


def data_module_from_args(
    tokenizer,
    image_processor,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
) -> dict:
    """The Trainer's dataset and collator for these flags (multimodal when the model has a vision tower)."""
    return make_supervised_data_module(
        tokenizer,
        data_path=data_args.data_path,
        conversation=template_for_version(model_args.version),
        image_folder=data_args.image_folder,
        image_processor=image_processor,
        image_aspect_ratio=data_args.image_aspect_ratio,
        is_multimodal=image_processor is not None,
        mm_use_im_start_end=model_args.mm_use_im_start_end,
        model_max_length=training_args.model_max_length,
    )


def resume_checkpoint_for(training_args: TrainingArguments) -> str | bool | None:
    """An explicit --resume_from_checkpoint, else upstream's auto-resume when checkpoints exist."""
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    return bool(list(pathlib.Path(training_args.output_dir).glob("checkpoint-*"))) or None


def train(attn_implementation: str | None = None, args: list[str] | None = None) -> LLaVATrainer:
    model_args, data_args, training_args = parse_arguments(args)
    # Seed before the model is built (the Trainer seeds only later), so new weights such as a fresh
    # projector are the same on every rank and in every run.
    transformers.set_seed(training_args.seed)
    model, tokenizer, image_processor = build_model_and_tokenizer(
        model_args, data_args, training_args, attn_implementation
    )
    data_module = data_module_from_args(tokenizer, image_processor, model_args, data_args, training_args)
    trainer = LLaVATrainer(
        model=model,
        processing_class=tokenizer,
        args=training_args,
        save_mode=save_mode_for(model_args, training_args),
        lora_bias=training_args.lora_bias,
        use_im_start_end=model_args.mm_use_im_start_end,
        **data_module,
    )
    trainer.train(resume_from_checkpoint=resume_checkpoint_for(training_args))
    trainer.save_state()
    model.config.use_cache = True
    trainer.save_model(training_args.output_dir)
    return trainer


if __name__ == "__main__":
    train()
