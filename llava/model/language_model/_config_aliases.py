"""Let a LLaVA config class read configs written under older or plain model types."""

from __future__ import annotations

from typing import Any, ClassVar


def normalize_model_type(
    config_dict: dict[str, Any], model_type: str, aliases: tuple[str, ...]
) -> dict[str, Any]:
    """Rewrite `config_dict["model_type"]` to `model_type` when it is one of `aliases`.

    Upstream v1.5 checkpoints say `"llava"` (a name transformers gives its own llava-hf models) and
    base LLMs say `"llama"`/`"mistral"`; both load into the LLaVA class of the same family. Any other
    model type is left alone, so transformers still warns about it.
    """
    if config_dict.get("model_type") in aliases:
        config_dict = dict(config_dict, model_type=model_type)
    return config_dict


class AcceptsModelTypeAliases:
    """Config mixin: `from_pretrained` reads configs saved under `accepted_model_types` too.

    Listed before the family's config class (e.g. `LlamaConfig`) so `super()` reaches it.
    """

    model_type: ClassVar[str]
    accepted_model_types: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        return normalize_model_type(config_dict, cls.model_type, cls.accepted_model_types), kwargs

    def __post_init__(self, **kwargs):
        # A `model_type` kwarg (e.g. "llava" or "llama" from a loaded dict) would shadow the class's.
        kwargs.pop("model_type", None)
        super().__post_init__(**kwargs)
