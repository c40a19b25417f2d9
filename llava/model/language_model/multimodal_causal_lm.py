"""The causal-LM entry points shared by every LLaVA language-model family."""

from __future__ import annotations

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast


class MultimodalCausalLMMixin:
    """`forward`, `generate` and `prepare_inputs_for_generation` with images.

    Listed before the HF causal-LM class (e.g. `LlamaForCausalLM`) in a subclass's bases, so `super()`
    reaches that class; the subclass also inherits `LlavaMetaForCausalLM` for the splice.
    """

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
        """The family's causal-LM forward, with `images` spliced in where `input_ids` hold -200."""
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
