"""LoRA target selection and configuration.

Targets are decided on the full module path: every linear layer of the language model except
`lm_head`, never anything under the vision tower, projector or resampler. Upstream matched leaf names
only, so when the vision tower was loaded before LoRA was injected, CLIP's `q_proj`/`k_proj`/… got
adapters too (haotian-liu/LLaVA#1647); `exclude_modules` makes that impossible here.
"""

from __future__ import annotations

import re

import torch
from peft import LoraConfig

from llava.constants import MULTIMODAL_KEYWORDS

# peft matches a string `exclude_modules` as a full-match regex against each module path.
MULTIMODAL_MODULES_PATTERN = r".*(" + "|".join(re.escape(k) for k in MULTIMODAL_KEYWORDS) + r").*"


def is_multimodal_module(name: str) -> bool:
    """True for modules under the vision tower, projector or resampler."""
    return any(keyword in name for keyword in MULTIMODAL_KEYWORDS)


def find_all_linear_names(model: torch.nn.Module) -> list[str]:
    """Leaf names of the language model's linear layers (upstream's function, same name and result).

    bitsandbytes' `Linear4bit` / `Linear8bitLt` subclass `nn.Linear`, so quantized models work too.
    """
    names = {
        name.split(".")[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not is_multimodal_module(name)
    }
    names.discard("lm_head")
    return sorted(names)


def build_lora_config(model: torch.nn.Module, *, r: int, alpha: int, dropout: float, bias: str) -> LoraConfig:
    """LoRA over the language model's linear layers, with the multimodal modules excluded by path."""
    has_multimodal_modules = any(is_multimodal_module(name) for name, _ in model.named_modules())
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules=find_all_linear_names(model),
        # Upstream injects LoRA before the tower exists; when continuing from a LLaVA checkpoint it does.
        exclude_modules=MULTIMODAL_MODULES_PATTERN if has_multimodal_modules else None,
        lora_dropout=dropout,
        bias=bias,
        task_type="CAUSAL_LM",
    )


def assert_no_lora_in_multimodal_modules(model: torch.nn.Module) -> None:
    """Fail loudly if an adapter ever landed in the vision tower, projector or resampler."""
    misplaced = [
        name for name, _ in model.named_parameters() if "lora_" in name and is_multimodal_module(name)
    ]
    if misplaced:
        raise RuntimeError(f"LoRA adapters were injected into multimodal modules: {misplaced[:5]}")
