"""Pick the LLaVA config class for a checkpoint folder from its `config.json`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import PreTrainedConfig

from llava.constants import CONFIG_FILE
from llava.model.language_model.llava_llama import LlavaConfig
from llava.model.language_model.llava_mistral import LlavaMistralConfig

# model_type in config.json → our config class. `llava` is what upstream's v1.5-era checkpoints say;
# plain `llama`/`mistral` base LLMs are promoted (no mm fields yet).
CONFIG_CLASSES: dict[str, type[PreTrainedConfig]] = {
    "llava_llama": LlavaConfig,
    "llava": LlavaConfig,
    "llama": LlavaConfig,
    "llava_mistral": LlavaMistralConfig,
    "mistral": LlavaMistralConfig,
}


def load_llava_config(path: str | os.PathLike) -> LlavaConfig | LlavaMistralConfig:
    """Load a folder's config as the matching LLaVA config class.

    Args:
        path: Checkpoint folder containing `config.json`.

    Returns:
        `LlavaConfig` for `llava_llama`/`llava`/`llama`, `LlavaMistralConfig` for
        `llava_mistral`/`mistral`; the instance's `model_type` is the class's.

    Raises:
        FileNotFoundError: when the folder has no config.json.
        ValueError: for other model types, including transformers' own llava-hf layout.
    """
    config_file = Path(path) / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"No {CONFIG_FILE} in {os.fspath(path)!r}")
    with open(config_file, encoding="utf-8") as f:
        config_dict = json.load(f)
    model_type = config_dict.get("model_type")
    if model_type == "llava" and "text_config" in config_dict:
        raise ValueError(
            f"{config_file} is a transformers llava-hf checkpoint (LlavaForConditionalGeneration, nested "
            "text_config/vision_config), not an upstream LLaVA checkpoint; convert it or load it with "
            "transformers' own Llava classes."
        )
    if model_type not in CONFIG_CLASSES:
        raise ValueError(f"{config_file} has model_type {model_type!r}; supported: {sorted(CONFIG_CLASSES)}")
    return CONFIG_CLASSES[model_type].from_pretrained(os.fspath(path))
