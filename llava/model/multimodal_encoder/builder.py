"""Build the vision tower named by a config (`mm_vision_tower`, or `vision_tower` on argument objects)."""

from __future__ import annotations

import os
from typing import Any

from llava.model.multimodal_encoder.clip_encoder import CLIPVisionTower


def build_vision_tower(config: Any, **kwargs: Any) -> CLIPVisionTower:
    """Build a CLIP vision tower from a config.

    Accepted names are upstream's: an existing local path, or a name starting with `openai` or
    `laion`, or containing `ShareGPT4V`.

    Args:
        config: Object with `mm_vision_tower` (or `vision_tower`), `mm_vision_select_layer` and
            optionally `mm_vision_select_feature` (default `patch`).
        **kwargs: Passed to `CLIPVisionTower` (e.g. `delay_load=True`).

    Raises:
        ValueError: naming the value when the tower is not recognised.
        NotImplementedError: for S2 (multi-scale) towers (`s2: true` in the config).
    """
    name = getattr(config, "mm_vision_tower", getattr(config, "vision_tower", None))
    name = None if name is None else os.fspath(name)
    is_known = name is not None and (
        os.path.exists(name) or name.startswith(("openai", "laion")) or "ShareGPT4V" in name
    )
    if not is_known:
        raise ValueError(
            f"Unknown vision tower {name!r}: expected an existing local path, or a name starting with "
            "'openai'/'laion' or containing 'ShareGPT4V'."
        )
    if getattr(config, "s2", False):
        raise NotImplementedError(f"S2 (multi-scale) vision towers are not supported (tower {name!r})")
    return CLIPVisionTower(
        name,
        select_layer=getattr(config, "mm_vision_select_layer", -1),
        select_feature=getattr(config, "mm_vision_select_feature", "patch"),
        **kwargs,
    )
