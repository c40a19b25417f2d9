"""LLaVA models: config classes, causal LMs with vision tower + projector, config loading."""

from llava.model.config_loading import load_llava_config
from llava.model.language_model.llava_llama import LlavaConfig, LlavaLlamaForCausalLM, LlavaLlamaModel
from llava.model.language_model.llava_mistral import (
    LlavaMistralConfig,
    LlavaMistralForCausalLM,
    LlavaMistralModel,
)

__all__ = [
    "LlavaConfig",
    "LlavaLlamaForCausalLM",
    "LlavaLlamaModel",
    "LlavaMistralConfig",
    "LlavaMistralForCausalLM",
    "LlavaMistralModel",
    "load_llava_config",
]
