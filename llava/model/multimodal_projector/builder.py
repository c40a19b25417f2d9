"""Build the vision→language projector named by `config.mm_projector_type`.

State-dict keys match upstream's: `linear` → `weight`, `bias`; `mlp{N}x_gelu` → `0.*`, `2.*`, …
(a `Sequential` of Linear/GELU); `identity` has no parameters.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

_MLP_GELU = re.compile(r"^mlp(\d+)x_gelu$")


class IdentityMap(nn.Module):
    """Pass-through projector (features already live in the LM's hidden size)."""

    def forward(self, x, *args, **kwargs):
        return x

    @property
    def config(self) -> dict[str, str]:
        return {"mm_projector_type": "identity"}


def build_vision_projector(config: Any) -> nn.Module:
    """Build the projector described by a config.

    Args:
        config: Object with `mm_hidden_size`, `hidden_size` and optionally `mm_projector_type`
            (default `linear`, as upstream).

    Returns:
        The projector module (freshly initialised).

    Raises:
        ValueError: for an unknown `mm_projector_type`.
    """
    projector_type = getattr(config, "mm_projector_type", "linear")
    if projector_type == "linear":
        return nn.Linear(config.mm_hidden_size, config.hidden_size)
    mlp = _MLP_GELU.match(projector_type)
    if mlp:
        depth = int(mlp.group(1))
        layers: list[nn.Module] = [nn.Linear(config.mm_hidden_size, config.hidden_size)]
        for _ in range(1, depth):
            layers += [nn.GELU(), nn.Linear(config.hidden_size, config.hidden_size)]
        return nn.Sequential(*layers)
    if projector_type == "identity":
        return IdentityMap()
    raise ValueError(
        f"Unknown mm_projector_type {projector_type!r}; expected 'linear', 'mlp<N>x_gelu' "
        "(e.g. 'mlp2x_gelu') or 'identity'."
    )
