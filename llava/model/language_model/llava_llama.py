"""LLaVA on LLaMA / Vicuna (`model_type: llava_llama`; released v1.5 checkpoints say `llava`)."""

from __future__ import annotations

from typing import ClassVar

from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, LlamaModel
from transformers.models.llama.modeling_llama import LlamaPreTrainedModel

from llava.model.language_model._config_aliases import AcceptsModelTypeAliases
from llava.model.language_model.multimodal_causal_lm import MultimodalCausalLMMixin
from llava.model.llava_arch import LlavaMetaForCausalLM, LlavaMetaModel


class LlavaConfig(AcceptsModelTypeAliases, LlamaConfig):
    """LlamaConfig plus upstream's `mm_*` attributes (kept as free attributes, as upstream).

    `from_pretrained` also reads configs saved as `llava` (upstream ≤ v1.5) and plain `llama`.
    """

    model_type = "llava_llama"
    accepted_model_types: ClassVar[tuple[str, ...]] = ("llava", "llama")


class LlavaLlamaModel(LlavaMetaModel, LlamaModel):
    config_class = LlavaConfig


class LlavaLlamaForCausalLM(MultimodalCausalLMMixin, LlamaForCausalLM, LlavaMetaForCausalLM):
    """LLaMA causal LM with a vision tower and projector (parameter names as upstream)."""

    config_class = LlavaConfig
    # A full LLaVA checkpoint carries a copy of CLIP, but the delay-loaded tower is re-read from
    # `mm_vision_tower` by `load_model()` (upstream behaviour), so those keys are expected to be unused.
    _keys_to_ignore_on_load_unexpected = [r"^model\.vision_tower\."]

    def __init__(self, config: LlavaConfig) -> None:
        LlamaPreTrainedModel.__init__(self, config)
        self.model = LlavaLlamaModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_model(self) -> LlavaLlamaModel:
        return self.model


AutoConfig.register(LlavaConfig.model_type, LlavaConfig, exist_ok=True)
AutoModelForCausalLM.register(LlavaConfig, LlavaLlamaForCausalLM, exist_ok=True)
