"""Let a LLaVA config class read configs written under older or plain model types."""

from __future__ import annotations

from typing import Any


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
