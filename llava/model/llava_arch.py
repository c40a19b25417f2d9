"""LLaVA's additions to a decoder-only LM: vision tower + projector, and image-aware inputs.

`LlavaMetaModel` is mixed into the base model (`LlamaModel`, …): it owns `vision_tower`,
`mm_projector` and, for `unpad` merging, `image_newline`. `LlavaMetaForCausalLM` is mixed into the
causal-LM class: it encodes images and splices them into the token embeddings.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import initialization as hf_init

from llava.constants import (
    DEFAULT_IM_END_TOKEN,
    DEFAULT_IM_START_TOKEN,
    DEFAULT_IMAGE_PATCH_TOKEN,
    MM_PROJECTOR_KEY,
)
from llava.model.multimodal_encoder.builder import build_vision_tower
from llava.model.multimodal_encoder.clip_encoder import CLIPVisionTower
from llava.model.multimodal_inputs import prepare_inputs_labels_for_multimodal as splice_multimodal_inputs
from llava.model.multimodal_projector.builder import build_vision_projector
from llava.model.patch_merge import merge_patch_features

logger = logging.getLogger(__name__)


def load_mm_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a projector / non-LoRA-trainables state dict (`.bin` via torch, or `.safetensors`) on CPU."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)


def _describe(state: dict[str, torch.Tensor]) -> str:
    return ", ".join(f"{k}{tuple(v.shape)}" for k, v in sorted(state.items())) or "(none)"


def load_pretrain_mm_adapter(projector: nn.Module, path: str | os.PathLike, projector_type: str) -> None:
    """Load `mm_projector` weights saved by projector pretraining into `projector`.

    Keeps the keys containing `mm_projector` and strips everything up to `mm_projector.` (upstream's
    rule), then loads strictly.

    Raises:
        ValueError: naming the file and the projector type when keys or shapes do not match (e.g. a
            `linear` adapter, keys `weight`/`bias`, given to an `mlp2x_gelu` projector, keys `0.*`/`2.*`).
    """
    weights = load_mm_file(path)
    marker = MM_PROJECTOR_KEY + "."
    found = {k.split(marker, 1)[1]: v for k, v in weights.items() if marker in k}
    expected = projector.state_dict()
    mismatched = sorted(k for k in found.keys() & expected.keys() if found[k].shape != expected[k].shape)
    if found.keys() != expected.keys() or mismatched:
        raise ValueError(
            f"pretrain_mm_mlp_adapter {os.fspath(path)!r} does not fit the {projector_type!r} projector: "
            f"expected {_describe(expected)}; the file has {_describe(found)}"
            + (f" (shape mismatch: {mismatched})" if mismatched else "")
            + ". The adapter must come from a pretraining run with the same mm_projector_type, LLM and "
            "vision tower (a 'linear' adapter has keys weight/bias, 'mlp2x_gelu' has 0.*/2.*)."
        )
    projector.load_state_dict(found, strict=True)


def _new_image_newline(hidden_size: int, dtype: torch.dtype) -> torch.Tensor:
    """Upstream's init for a new `image_newline`: N(0, 1/hidden_size)."""
    return torch.randn(hidden_size, dtype=dtype) * hidden_size**-0.5


class LlavaMetaModel:
    """Mixin for the base model: builds the delay-loaded tower and projector from the config."""

    def __init__(self, config):
        super().__init__(config)
        if getattr(config, "mm_vision_tower", None) is not None:
            self.vision_tower = build_vision_tower(config, delay_load=True)
            self.mm_projector = build_vision_projector(config)
            if "unpad" in getattr(config, "mm_patch_merge_type", ""):
                # Normally filled from the checkpoint (LLaVA-1.6 carries it); see `_init_weights`.
                self.image_newline = nn.Parameter(_new_image_newline(config.hidden_size, self.dtype))

    def _init_weights(self, module: nn.Module) -> None:
        # transformers initialises parameters missing from a checkpoint here; upstream left
        # `image_newline` uninitialised (torch.empty), we give it the fresh-projector init instead.
        super()._init_weights(module)
        if module is self and getattr(self, "image_newline", None) is not None:
            hf_init.normal_(self.image_newline, std=self.config.hidden_size**-0.5)

    def get_vision_tower(self) -> CLIPVisionTower | None:
        tower = getattr(self, "vision_tower", None)
        if isinstance(tower, list):  # hidden from FSDP wrapping
            tower = tower[0]
        return tower

    def initialize_vision_modules(
        self,
        *,
        vision_tower: str,
        mm_vision_select_layer: int = -1,
        mm_vision_select_feature: str = "patch",
        mm_projector_type: str = "linear",
        mm_patch_merge_type: str = "flat",
        pretrain_mm_mlp_adapter: str | None = None,
        fsdp: bool = False,
        projector_seed: int | None = None,
    ) -> None:
        """Load the (frozen) vision tower, build the projector and record the mm fields in the config.

        Sets `mm_vision_tower`, `use_mm_proj`, `mm_projector_type`, `mm_hidden_size`,
        `mm_vision_select_layer`, `mm_vision_select_feature`, `mm_patch_merge_type` on `self.config`.
        A tower already present (delay-loaded from a LLaVA config) is loaded in place if it is the
        requested one, else replaced. An existing projector (from a LLaVA config) is kept and made
        trainable again, in case LoRA froze it; it must be of the requested type. Otherwise a new one
        is freshly initialised. Then `pretrain_mm_mlp_adapter` (if given) is loaded into it.

        Args:
            vision_tower: CLIP folder or name.
            mm_vision_select_layer: Tower layer whose hidden states are used.
            mm_vision_select_feature: `patch` or `cls_patch`.
            mm_projector_type: `linear`, `mlp<N>x_gelu` or `identity`.
            mm_patch_merge_type: `flat`, `spatial` or `spatial_unpad`.
            pretrain_mm_mlp_adapter: `mm_projector.bin` from projector pretraining.
            fsdp: Keep the tower in a list so FSDP does not wrap it (upstream's trick).
            projector_seed: Initialise a new projector from this seed alone, independent of how much
                randomness loading the tower consumed (it differs under ZeRO-3's zero.Init).
        """
        config = self.config
        vision_tower = os.fspath(vision_tower)
        has_projector = getattr(self, "mm_projector", None) is not None
        previous_type = getattr(config, "mm_projector_type", "linear")
        if has_projector and previous_type != mm_projector_type:
            raise ValueError(
                f"The model already has a {previous_type!r} projector (from its config), but "
                f"mm_projector_type={mm_projector_type!r} was requested; pass the checkpoint's type."
            )
        config.mm_vision_tower = vision_tower
        config.mm_vision_select_layer = mm_vision_select_layer
        config.mm_vision_select_feature = mm_vision_select_feature

        tower = self.get_vision_tower()
        if tower is not None and tower.vision_tower_name == vision_tower:
            tower.load_model()
            # Keep the live tower consistent with what a reload from this config would build.
            tower.select_layer, tower.select_feature = mm_vision_select_layer, mm_vision_select_feature
        else:
            tower = build_vision_tower(config)
        if fsdp:
            self._modules.pop("vision_tower", None)  # a registered child cannot be replaced by a list
            self.vision_tower = [tower]
        else:
            self.vision_tower = tower

        config.use_mm_proj = True
        config.mm_projector_type = mm_projector_type
        config.mm_hidden_size = tower.hidden_size
        config.mm_patch_merge_type = mm_patch_merge_type

        if has_projector:
            self.mm_projector.requires_grad_(True)  # in case LoRA froze it
        elif projector_seed is None:
            self.mm_projector = build_vision_projector(config)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(projector_seed)
                self.mm_projector = build_vision_projector(config)
        if "unpad" in mm_patch_merge_type and getattr(self, "image_newline", None) is None:
            self.image_newline = nn.Parameter(_new_image_newline(config.hidden_size, self.dtype))

        if pretrain_mm_mlp_adapter is not None:
            load_pretrain_mm_adapter(self.mm_projector, pretrain_mm_mlp_adapter, mm_projector_type)


def _first_dtype(module: nn.Module) -> torch.dtype | None:
    param = next(module.parameters(), None)
    return None if param is None else param.dtype


class LlavaMetaForCausalLM(ABC):
    """Mixin for the causal-LM class: image encoding and the multimodal input splice."""

    @abstractmethod
    def get_model(self) -> LlavaMetaModel: ...

    def get_vision_tower(self) -> CLIPVisionTower | None:
        return self.get_model().get_vision_tower()

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(K, 3, H, W) images → (K, N, D) projected features (in the projector's dtype)."""
        model = self.get_model()
        features = model.get_vision_tower()(images)
        dtype = _first_dtype(model.mm_projector)
        if dtype is not None:
            features = features.to(dtype)
        return model.mm_projector(features)

    def _image_features(self, images, image_sizes) -> torch.Tensor | list[torch.Tensor]:
        """Encode `images` into per-image token features.

        A 4-D tensor is a batch of single-crop images. A list (or 5-D tensor) holds one entry per
        image, each (crops, 3, H, W) or (3, H, W); all crops are encoded in one tower call and merged
        per `mm_patch_merge_type`.
        """
        if not isinstance(images, list) and images.ndim == 4:
            return self.encode_images(images)
        images = [x.unsqueeze(0) if x.ndim == 3 else x for x in images]
        features = self.encode_images(torch.cat(images, dim=0))
        per_image = torch.split(features, [x.shape[0] for x in images], dim=0)
        config, tower = self.config, self.get_vision_tower()
        return merge_patch_features(
            per_image,
            getattr(config, "mm_patch_merge_type", "flat"),
            image_sizes=image_sizes,
            image_aspect_ratio=getattr(config, "image_aspect_ratio", "square"),
            grid_pinpoints=getattr(config, "image_grid_pinpoints", None),
            crop_size=tower.config.image_size,
            patches_per_side=tower.num_patches_per_side,
            image_newline=getattr(self.get_model(), "image_newline", None),
        )

    def prepare_inputs_labels_for_multimodal(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        past_key_values: Any,
        labels: torch.Tensor | None,
        images: torch.Tensor | Sequence[torch.Tensor] | None,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        *,
        padding_side: str | None = None,
    ) -> tuple:
        """Upstream's entry point: returns `(None, position_ids, attention_mask, past_key_values,
        inputs_embeds, labels)`, or the inputs unchanged (inputs_embeds None) when there is no
        tower, no images, or a single-token (cached decoding) step.

        Truncation and padding side come from the config (`tokenizer_model_max_length`,
        `tokenizer_padding_side`) unless `padding_side` is given.
        """
        if self.get_vision_tower() is None or images is None or input_ids.shape[1] == 1:
            return input_ids, position_ids, attention_mask, past_key_values, None, labels
        config = self.config
        if getattr(config, "tune_mm_mlp_adapter", False) and getattr(config, "mm_use_im_start_end", False):
            raise NotImplementedError(
                "mm_use_im_start_end with tune_mm_mlp_adapter is not supported (as upstream): the image "
                "start/end tokens are not spliced during projector pretraining."
            )
        spliced = splice_multimodal_inputs(
            input_ids,
            position_ids,
            attention_mask,
            labels,
            self._image_features(images, image_sizes),
            self.get_model().embed_tokens,
            max_length=getattr(config, "tokenizer_model_max_length", None),
            padding_side=padding_side or getattr(config, "tokenizer_padding_side", "right"),
        )
        return (
            None,
            spliced.position_ids,
            spliced.attention_mask,
            past_key_values,
            spliced.inputs_embeds,
            spliced.labels,
        )

    def prepare_generation_inputs(
        self,
        inputs: torch.Tensor | None,
        images=None,
        image_sizes=None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Build the keyword arguments for `GenerationMixin.generate` from ids (+ images).

        Generation always runs from `inputs_embeds`, so HF returns only the new tokens (as upstream).
        Samples are left-padded after splicing (right padding would put pads between a prompt and
        its continuation).
        """
        if "inputs_embeds" in kwargs:
            raise ValueError("LLaVA generate() builds inputs_embeds itself; pass token ids as `inputs`.")
        if inputs is None:
            raise ValueError("LLaVA generate() needs prompt token ids as `inputs`.")
        position_ids = kwargs.pop("position_ids", None)
        attention_mask = kwargs.pop("attention_mask", None)
        if images is not None:
            _, position_ids, attention_mask, _, inputs_embeds, _ = self.prepare_inputs_labels_for_multimodal(
                inputs, position_ids, attention_mask, None, None, images, image_sizes, padding_side="left"
            )
        else:
            inputs_embeds = self.get_model().embed_tokens(inputs)
        return dict(
            kwargs, position_ids=position_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds
        )

    def initialize_vision_tokenizer(
        self,
        tokenizer,
        *,
        mm_use_im_start_end: bool,
        mm_use_im_patch_token: bool,
        tune_mm_mlp_adapter: bool = False,
        pretrain_mm_mlp_adapter: str | None = None,
    ) -> None:
        """Add LLaVA's image tokens to the tokenizer and resize/initialise the embeddings (upstream).

        `<im_patch>` (if `mm_use_im_patch_token`) gets default initialisation; `<im_start>`/`<im_end>`
        (if `mm_use_im_start_end`) start at the mean of the old rows, and are copied from
        `pretrain_mm_mlp_adapter`'s `model.embed_tokens.weight` when one is given. When tuning only
        the adapter, the input embeddings are trainable with start/end tokens and frozen otherwise;
        the output embeddings are frozen.
        """
        if mm_use_im_patch_token:
            tokenizer.add_tokens([DEFAULT_IMAGE_PATCH_TOKEN], special_tokens=True)
            self.resize_token_embeddings(len(tokenizer), mean_resizing=False)

        if mm_use_im_start_end:
            num_new = tokenizer.add_tokens(
                [DEFAULT_IM_START_TOKEN, DEFAULT_IM_END_TOKEN], special_tokens=True
            )
            self.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            input_rows = self.get_input_embeddings().weight.data
            output_rows = self.get_output_embeddings().weight.data
            if num_new > 0:
                input_rows[-num_new:] = input_rows[:-num_new].mean(dim=0, keepdim=True)
                output_rows[-num_new:] = output_rows[:-num_new].mean(dim=0, keepdim=True)
            if tune_mm_mlp_adapter:
                self.get_input_embeddings().requires_grad_(True)
                self.get_output_embeddings().requires_grad_(False)
            if pretrain_mm_mlp_adapter:
                self._load_start_end_rows(pretrain_mm_mlp_adapter, input_rows, num_new)
        elif mm_use_im_patch_token and tune_mm_mlp_adapter:
            self.get_input_embeddings().requires_grad_(False)
            self.get_output_embeddings().requires_grad_(False)

    @staticmethod
    def _load_start_end_rows(path: str, input_rows: torch.Tensor, num_new: int) -> None:
        key = "model.embed_tokens.weight"
        saved = load_mm_file(path)
        if key not in saved:
            raise ValueError(
                f"pretrain_mm_mlp_adapter {path!r} has no {key!r} (needed for mm_use_im_start_end)"
            )
        if num_new != 2:
            raise ValueError(f"Expected 2 new image start/end tokens, the tokenizer added {num_new}")
        rows = saved[key]
        if rows.shape == input_rows.shape:
            input_rows[-num_new:] = rows[-num_new:]
        elif rows.shape[0] == num_new:
            input_rows[-num_new:] = rows
        else:
            raise ValueError(
                f"Unexpected {key} shape in {path!r}: {tuple(rows.shape)}; current embeddings "
                f"{tuple(input_rows.shape)}, new tokens {num_new}"
            )
