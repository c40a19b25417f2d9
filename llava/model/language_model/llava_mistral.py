"""LLaVA on Mistral (`model_type: llava_mistral`)."""

from __future__ import annotations

from typing import ClassVar

from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, MistralConfig, MistralForCausalLM, MistralModel
from transformers.models.mistral.modeling_mistral import MistralPreTrainedModel

from llava.model.language_model._config_aliases import AcceptsModelTypeAliases
from llava.model.language_model.multimodal_causal_lm import MultimodalCausalLMMixin
from llava.model.llava_arch import LlavaMetaForCausalLM, LlavaMetaModel


class LlavaMistralConfig(AcceptsModelTypeAliases, MistralConfig):
    """MistralConfig plus upstream's `mm_*` attributes (kept as free attributes, as upstream).

    `from_pretrained` also reads plain `mistral` configs.
    """

    model_type = "llava_mistral"
    accepted_model_types: ClassVar[tuple[str, ...]] = ("mistral",)


class LlavaMistralModel(LlavaMetaModel, MistralModel):
    config_class = LlavaMistralConfig


class LlavaMistralForCausalLM(MultimodalCausalLMMixin, MistralForCausalLM, LlavaMetaForCausalLM):
    """Mistral causal LM with a vision tower and projector (parameter names as upstream)."""

    config_class = LlavaMistralConfig
    # A full LLaVA checkpoint carries a copy of CLIP, but the delay-loaded tower is re-read from
    # `mm_vision_tower` by `load_model()` (upstream behaviour), so those keys are expected to be unused.
    _keys_to_ignore_on_load_unexpected = [r"^model\.vision_tower\."]

    def __init__(self, config: LlavaMistralConfig) -> None:
        MistralPreTrainedModel.__init__(self, config)
        self.model = LlavaMistralModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_model(self) -> LlavaMistralModel:
        return self.model


AutoConfig.register(LlavaMistralConfig.model_type, LlavaMistralConfig, exist_ok=True)
AutoModelForCausalLM.register(LlavaMistralConfig, LlavaMistralForCausalLM, exist_ok=True)
