"""Building the model to train: base LM (+ bitsandbytes), tokenizer and pad policy, vision modules,
LoRA and which parameters train. Each step is a function of plain arguments, called in upstream's
order by `llava.train.train`.
"""

from __future__ import annotations

import json
import logging
import os

import torch
import transformers
from transformers import BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase

from llava.constants import QUANTIZATION_SKIP_MODULES
from llava.train.lora import assert_no_lora_in_multimodal_modules, build_lora_config

logger = logging.getLogger(__name__)


def compute_dtype_for(*, fp16: bool, bf16: bool) -> torch.dtype:
    return torch.float16 if fp16 else torch.bfloat16 if bf16 else torch.float32


def quantization_config_for(
    bits: int, *, compute_dtype: torch.dtype, double_quant: bool, quant_type: str
) -> BitsAndBytesConfig | None:
    """bitsandbytes settings for `--bits 4|8` (None for 16), with the multimodal modules kept out."""
    if bits == 16:
        return None
    return BitsAndBytesConfig(
        load_in_4bit=bits == 4,
        load_in_8bit=bits == 8,
        llm_int8_skip_modules=list(QUANTIZATION_SKIP_MODULES),
        llm_int8_threshold=6.0,
        llm_int8_has_fp16_weight=False,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_quant_type=quant_type,
    )


def _config_model_type(model_name_or_path: str) -> str | None:
    path = os.path.join(model_name_or_path, "config.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f).get("model_type")


def load_language_model(
    model_name_or_path: str,
    *,
    multimodal: bool,
    torch_dtype: torch.dtype | None,
    quantization_config: BitsAndBytesConfig | None,
    device: torch.device | str | None,
    attn_implementation: str | None = None,
    cache_dir: str | None = None,
) -> PreTrainedModel:
    """The base language model, as a LLaVA class when a vision tower will be attached.

    The family is chosen from `config.model_type` (llama / llava / llava_llama → LLaMA, mistral /
    llava_mistral → Mistral), never from the folder name.
    """
    kwargs = {"cache_dir": cache_dir, "attn_implementation": attn_implementation}
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": str(device) if device is not None else "cpu"}
    if not multimodal:
        model = transformers.AutoModelForCausalLM.from_pretrained(model_name_or_path, **kwargs)
    else:
        model = _llava_class_for(model_name_or_path).from_pretrained(model_name_or_path, **kwargs)
    model.config.use_cache = False
    return model


def _llava_class_for(model_name_or_path: str):
    from llava.model import LlavaLlamaForCausalLM, LlavaMistralForCausalLM

    model_type = _config_model_type(model_name_or_path)
    if model_type in ("mistral", "llava_mistral"):
        return LlavaMistralForCausalLM
    if model_type in (None, "llama", "llava", "llava_llama"):
        return LlavaLlamaForCausalLM
    raise ValueError(
        f"{model_name_or_path}: model_type {model_type!r} is not supported for LLaVA training "
        "(supported: llama, llava, llava_llama, mistral, llava_mistral)."
    )


def prepare_for_kbit_training(
    model: PreTrainedModel, *, compute_dtype: torch.dtype, gradient_checkpointing: bool
):
    """peft's k-bit preparation (norms to fp32, input grads for checkpointing), as upstream."""
    from peft import prepare_model_for_kbit_training

    model.config.torch_dtype = torch.float32 if compute_dtype == torch.float16 else compute_dtype
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)


def enable_input_grads_for_checkpointing(model: PreTrainedModel) -> None:
    """With checkpointing and frozen embeddings, inputs must require grad for backward to reach LoRA."""
    model.enable_input_require_grads()


def add_lora(
    model: PreTrainedModel,
    *,
    r: int,
    alpha: int,
    dropout: float,
    bias: str,
    bits: int,
    compute_dtype: torch.dtype,
):
    """Inject LoRA into the language model's linear layers (never the multimodal modules)."""
    from peft import get_peft_model

    if bits == 16 and compute_dtype != torch.float32:
        model.to(compute_dtype)
    model = get_peft_model(model, build_lora_config(model, r=r, alpha=alpha, dropout=dropout, bias=bias))
    assert_no_lora_in_multimodal_modules(model)
    return model


def load_training_tokenizer(
    model_name_or_path: str, *, model_max_length: int, version: str, cache_dir: str | None = None
) -> tuple[PreTrainedTokenizerBase, int]:
    """Tokenizer with upstream's pad policy; returns it and how many tokens were added (to resize)."""
    from llava.tokenization import configure_pad_token, load_tokenizer

    tokenizer = load_tokenizer(model_name_or_path, model_max_length=model_max_length, padding_side="right")
    added = configure_pad_token(tokenizer, version)
    return tokenizer, added


def resize_embeddings_for_new_tokens(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, added: int
) -> None:
    """Grow the embeddings for `added` new tokens, initialising the new rows to the mean of the old ones."""
    if added <= 0:
        return
    model.resize_token_embeddings(len(tokenizer))
    for embeddings in (model.get_input_embeddings().weight.data, model.get_output_embeddings().weight.data):
        embeddings[-added:] = embeddings[:-added].mean(dim=0, keepdim=True)


def set_trainable_parameters(
    model: PreTrainedModel,
    *,
    tune_mm_mlp_adapter: bool,
    freeze_mm_mlp_adapter: bool,
    projector_dtype: torch.dtype | None,
) -> None:
    """Upstream's rules: projector pretraining trains only the projector; the projector can be frozen."""
    projector = model.get_model().mm_projector
    if tune_mm_mlp_adapter:
        model.requires_grad_(False)
        projector.requires_grad_(True)
    if freeze_mm_mlp_adapter:
        projector.requires_grad_(False)
    if projector_dtype is not None:
        projector.to(dtype=projector_dtype)


def fix_kbit_dtypes(model: PreTrainedModel, *, bf16: bool) -> None:
    """After LoRA on a k-bit model: LoRA layers in bf16 (when training in bf16), norms in fp32,
    embeddings/lm_head in the training precision (upstream's step 11)."""
    from peft.tuners.lora import LoraLayer

    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and bf16:
            module.to(torch.bfloat16)
        if "norm" in name:
            module.to(torch.float32)
        is_embedding = ("lm_head" in name or "embed_tokens" in name) and hasattr(module, "weight")
        if is_embedding and bf16 and module.weight.dtype == torch.float32:
            module.to(torch.bfloat16)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, for the start-up log."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
