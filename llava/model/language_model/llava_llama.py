"""LLaVA on LLaMA / Vicuna (`model_type: llava_llama`; released v1.5 checkpoints say `llava`)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, LlamaModel
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.llama.modeling_llama import LlamaPreTrainedModel

from llava.model.language_model._config_aliases import normalize_model_type
from llava.model.llava_arch import LlavaMetaForCausalLM, LlavaMetaModel


class LlavaConfig(LlamaConfig):
    """LlamaConfig plus upstream's `mm_*` attributes (kept as free attributes, as upstream).

    `from_pretrained` also reads configs saved as `llava` (upstream ≤ v1.5) and plain `llama`.
    """

    model_type = "llava_llama"
    accepted_model_types: ClassVar[tuple[str, ...]] = ("llava", "llama")

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        return normalize_model_type(config_dict, cls.model_type, cls.accepted_model_types), kwargs

    def __post_init__(self, **kwargs):
        # A `model_type` kwarg (e.g. "llava" or "llama" from a loaded dict) would shadow the class's.
        kwargs.pop("model_type", None)
        super().__post_init__(**kwargs)


class LlavaLlamaModel(LlavaMetaModel, LlamaModel):
    config_class = LlavaConfig


class LlavaLlamaForCausalLM(LlamaForCausalLM, LlavaMetaForCausalLM):
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

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        images: torch.FloatTensor | list[torch.FloatTensor] | None = None,
        image_sizes: list[tuple[int, int]] | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """LlamaForCausalLM.forward, with `images` spliced in where `input_ids` hold -200."""
        kwargs.pop("cache_position", None)  # removed from transformers; older callers may still pass it
        if inputs_embeds is None:
            input_ids, position_ids, attention_mask, past_key_values, inputs_embeds, labels = (
                self.prepare_inputs_labels_for_multimodal(
                    input_ids, position_ids, attention_mask, past_key_values, labels, images, image_sizes
                )
            )
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    @torch.no_grad()
    def generate(self, inputs: torch.Tensor | None = None, images=None, image_sizes=None, **kwargs):
        """Generate from prompt ids (+ images); returns only the new tokens, like upstream."""
        return super().generate(**self.prepare_generation_inputs(inputs, images, image_sizes, **kwargs))

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, inputs_embeds=None, **kwargs):
        images = kwargs.pop("images", None)
        image_sizes = kwargs.pop("image_sizes", None)
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, past_key_values=past_key_values, inputs_embeds=inputs_embeds, **kwargs
        )
        # Images belong to the prompt only; later steps feed one new token against the cache.
        if images is not None and kwargs.get("is_first_iteration", False):
            model_inputs["images"] = images
            if image_sizes is not None:
                model_inputs["image_sizes"] = image_sizes
        return model_inputs


AutoConfig.register(LlavaConfig.model_type, LlavaConfig, exist_ok=True)
AutoModelForCausalLM.register(LlavaConfig, LlavaLlamaForCausalLM, exist_ok=True)
