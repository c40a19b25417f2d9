"""Frozen CLIP vision tower with upstream LLaVA's feature selection and delayed loading."""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoImageProcessor, CLIPVisionConfig, CLIPVisionModel
from transformers.image_processing_utils import BaseImageProcessor

_SELECT_FEATURES = ("patch", "cls_patch")


class CLIPVisionModelV4Layout(nn.Module):
    """A `CLIPVisionModel` kept under `.vision_model`, the module layout of transformers 4.

    transformers 5 flattened `CLIPVisionModel` (its parameters are `embeddings.*`, `encoder.*`), but
    upstream LLaVA checkpoints name the tower `…vision_tower.vision_model.embeddings.*`. Holding the
    model one level down keeps the parameter names, and hence every saved key, byte-identical to
    upstream's without relying on transformers' load-time renaming.
    """

    def __init__(self, vision_model: CLIPVisionModel) -> None:
        super().__init__()
        self.vision_model = vision_model

    def forward(self, pixel_values: torch.Tensor, **kwargs):
        return self.vision_model(pixel_values, **kwargs)

    @property
    def config(self) -> CLIPVisionConfig:
        return self.vision_model.config

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_model.dtype

    @property
    def device(self) -> torch.device:
        return self.vision_model.device


class CLIPVisionTower(nn.Module):
    """A frozen CLIP vision model returning the hidden states of one layer.

    `self.vision_tower` is a `CLIPVisionModelV4Layout` (the `CLIPVisionModel` is
    `self.vision_tower.vision_model`), so inside a LLaVA model the parameter names are
    `model.vision_tower.vision_tower.vision_model.…` exactly as upstream's checkpoints have them.

    Args:
        vision_tower: Local folder (or hub name) holding a CLIP vision or full CLIP checkpoint.
        select_layer: Index into the tower's `hidden_states` (upstream scripts use -2).
        select_feature: `patch` (drop the CLS token) or `cls_patch` (keep it).
        delay_load: Only read the `CLIPVisionConfig` now; weights come with `load_model()`. Used when
            a LLaVA model is built from its config, so that its tower is re-read from
            `mm_vision_tower` instead of from the LLaVA checkpoint (upstream behaviour).
    """

    def __init__(
        self,
        vision_tower: str,
        *,
        select_layer: int = -1,
        select_feature: str = "patch",
        delay_load: bool = False,
    ) -> None:
        super().__init__()
        if select_feature not in _SELECT_FEATURES:
            raise ValueError(
                f"Unexpected mm_vision_select_feature {select_feature!r}; expected one of {_SELECT_FEATURES}"
            )
        self.is_loaded = False
        self.vision_tower_name = vision_tower
        self.select_layer = select_layer
        self.select_feature = select_feature
        self._image_processor: BaseImageProcessor | None = None
        self.cfg_only: CLIPVisionConfig | None = None
        if delay_load:
            self.cfg_only = CLIPVisionConfig.from_pretrained(vision_tower)
        else:
            self.load_model()

    def load_model(self, device_map=None) -> None:
        """Load the CLIP image processor and the frozen vision model (no-op when already loaded).

        Args:
            device_map: Forwarded to `CLIPVisionModel.from_pretrained`.
        """
        if self.is_loaded:
            return
        # AutoImageProcessor picks the CLIP processor backend that is installed (PIL without torchvision).
        self._image_processor = AutoImageProcessor.from_pretrained(self.vision_tower_name)
        model = CLIPVisionModel.from_pretrained(self.vision_tower_name, device_map=device_map)
        self.vision_tower = CLIPVisionModelV4Layout(model)
        self.vision_tower.requires_grad_(False)
        self.is_loaded = True

    def _require_loaded(self, what: str) -> None:
        if not self.is_loaded:
            raise RuntimeError(
                f"Vision tower {self.vision_tower_name!r} is not loaded (delay_load); call load_model() "
                f"before using its {what}."
            )

    def feature_select(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Pick `select_layer` and drop CLS for `patch`. Returns (B, N, C)."""
        features = hidden_states[self.select_layer]
        if self.select_feature == "patch":
            features = features[:, 1:]
        return features

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        out = self.vision_tower(images.to(device=self.device, dtype=self.dtype), output_hidden_states=True)
        return self.feature_select(out.hidden_states).to(images.dtype)

    @torch.no_grad()
    def forward(self, images: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """Encode images without gradients (the tower is never trained here, as upstream).

        Args:
            images: (B, 3, H, W) tensor, or a list of (3, H, W) tensors encoded one by one.

        Returns:
            (B, N, C) features in the input's dtype, or a list of (1, N, C) tensors for list input.
        """
        self._require_loaded("forward")
        if isinstance(images, list):
            return [self._encode(image.unsqueeze(0)) for image in images]
        return self._encode(images)

    @property
    def image_processor(self) -> BaseImageProcessor:
        self._require_loaded("image_processor")
        return self._image_processor

    @property
    def dummy_feature(self) -> torch.Tensor:
        return torch.zeros(1, self.hidden_size, device=self.device, dtype=self.dtype)

    @property
    def dtype(self) -> torch.dtype:
        self._require_loaded("dtype")
        return self.vision_tower.dtype

    @property
    def device(self) -> torch.device:
        self._require_loaded("device")
        return self.vision_tower.device

    @property
    def config(self) -> CLIPVisionConfig:
        return self.vision_tower.config if self.is_loaded else self.cfg_only

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_patches_per_side(self) -> int:
        return self.config.image_size // self.config.patch_size

    @property
    def num_patches(self) -> int:
        return self.num_patches_per_side**2
