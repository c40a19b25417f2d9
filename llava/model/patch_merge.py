"""Turn per-image crop features into one token sequence per image (`mm_patch_merge_type`).

`flat` concatenates the crops' tokens. `spatial` / `spatial_unpad` (LLaVA-1.6 "anyres" at inference)
lay the crops out on their grid: the base (resized whole-image) crop first, then the grid tokens in
row-major order over the full grid; `unpad` also removes the rows/columns that only covered the
letterbox padding and ends every row with the learned `image_newline` vector.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

import torch

Size = tuple[int, int]


def select_best_resolution(original_size: Size, possible_resolutions: Sequence[Size]) -> Size:
    """Pick the grid resolution keeping the most image pixels, then wasting the fewest.

    Args:
        original_size: (width, height) of the image.
        possible_resolutions: Candidate (width, height) pairs (`image_grid_pinpoints`).

    Returns:
        The chosen (width, height).
    """
    orig_w, orig_h = original_size
    best, best_effective, best_wasted = None, 0, float("inf")
    for width, height in possible_resolutions:
        scale = min(width / orig_w, height / orig_h)
        scaled_w, scaled_h = int(orig_w * scale), int(orig_h * scale)
        effective = min(scaled_w * scaled_h, orig_w * orig_h)
        wasted = width * height - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (width, height), effective, wasted
    return best


def parse_grid_pinpoints(grid_pinpoints: str | Sequence[Size]) -> list[Size]:
    """Accept the config's list or its string form (`"[(336, 672), …]"`)."""
    if isinstance(grid_pinpoints, str):
        grid_pinpoints = ast.literal_eval(grid_pinpoints)
    return [tuple(p) for p in grid_pinpoints]


def get_anyres_image_grid_shape(image_size: Size, grid_pinpoints, crop_size: int) -> Size:
    """Number of crops (across, down) that anyres preprocessing made for an image of `image_size`."""
    width, height = select_best_resolution(image_size, parse_grid_pinpoints(grid_pinpoints))
    return width // crop_size, height // crop_size


def unpad_image(features: torch.Tensor, original_size: Size) -> torch.Tensor:
    """Crop a (C, H, W) feature map back to the original aspect ratio (undo centred letterboxing).

    Args:
        features: (C, H, W) features of the padded canvas.
        original_size: (width, height) of the original image.
    """
    orig_w, orig_h = original_size
    cur_h, cur_w = features.shape[1:]
    if orig_w / orig_h > cur_w / cur_h:
        new_h = int(orig_h * (cur_w / orig_w))
        pad = (cur_h - new_h) // 2
        return features[:, pad : cur_h - pad, :]
    new_w = int(orig_w * (cur_h / orig_h))
    pad = (cur_w - new_w) // 2
    return features[:, :, pad : cur_w - pad]


def _merge_spatial(
    crops: torch.Tensor,
    *,
    unpad: bool,
    image_size: Size | None,
    grid_pinpoints,
    crop_size: int,
    patches_per_side: int,
    image_newline: torch.Tensor | None,
    image_aspect_ratio: str,
    index: int,
) -> torch.Tensor:
    """(1 + nh*nw, N, C) crops → (tokens, C) for one image."""
    base = crops[0]
    if crops.shape[0] == 1:
        if unpad:
            return torch.cat((base, image_newline[None].to(base)), dim=0)
        return base
    side = patches_per_side
    if side * side != base.shape[0]:
        raise ValueError(
            f"Image {index}: base crop has {base.shape[0]} tokens but the tower gives "
            f"{side}x{side}={side * side} patches; spatial merging needs mm_vision_select_feature='patch'."
        )
    if image_aspect_ratio != "anyres":
        raise NotImplementedError(
            f"mm_patch_merge_type spatial* with several crops needs image_aspect_ratio='anyres', "
            f"got {image_aspect_ratio!r}"
        )
    if image_size is None:
        raise ValueError(f"Image {index}: spatial merging of anyres crops needs image_sizes")
    grid_w, grid_h = get_anyres_image_grid_shape(image_size, grid_pinpoints, crop_size)
    grid = crops[1:]
    if grid.shape[0] != grid_w * grid_h:
        raise ValueError(
            f"Image {index} of size {tuple(image_size)}: {grid.shape[0]} grid crops, but "
            f"image_grid_pinpoints give a {grid_w}x{grid_h} grid"
        )
    grid = grid.view(grid_h, grid_w, side, side, -1)  # (gh, gw, h, w, C)
    if unpad:
        fmap = grid.permute(4, 0, 2, 1, 3).flatten(1, 2).flatten(2, 3)  # (C, gh*h, gw*w)
        fmap = unpad_image(fmap, image_size)
        newline = image_newline[:, None, None].to(fmap).expand(*fmap.shape[:-1], 1)
        tokens = torch.cat((fmap, newline), dim=-1).flatten(1, 2).transpose(0, 1)  # (rows*(cols+1), C)
    else:
        tokens = grid.permute(0, 2, 1, 3, 4).flatten(0, 3)  # row-major over the full grid
    return torch.cat((base, tokens), dim=0)


def merge_patch_features(
    features: Sequence[torch.Tensor],
    merge_type: str,
    *,
    image_sizes: Sequence[Size] | None = None,
    image_aspect_ratio: str = "square",
    grid_pinpoints=None,
    crop_size: int | None = None,
    patches_per_side: int | None = None,
    image_newline: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Merge each image's crop features into one (tokens, C) sequence.

    Args:
        features: Per image, (crops, N, C) projected features (crop 0 = base image for anyres).
        merge_type: `flat`, `spatial` or `spatial_unpad` (`mm_patch_merge_type`).
        image_sizes: Per image, the original (width, height); needed for multi-crop spatial merges.
        image_aspect_ratio: The config's value; multi-crop spatial merging needs `anyres`.
        grid_pinpoints: `image_grid_pinpoints` (list or its string form).
        crop_size: The tower's input image size in pixels.
        patches_per_side: The tower's patches per side.
        image_newline: (C,) learned row terminator for `unpad`.

    Returns:
        One (tokens, C) tensor per image.
    """
    if merge_type == "flat":
        return [f.flatten(0, 1) for f in features]
    if not merge_type.startswith("spatial"):
        raise ValueError(
            f"Unexpected mm_patch_merge_type {merge_type!r}; expected flat, spatial or spatial_unpad"
        )
    unpad = "unpad" in merge_type
    if unpad and image_newline is None:
        raise ValueError(f"mm_patch_merge_type {merge_type!r} needs the model's image_newline parameter")
    return [
        _merge_spatial(
            crops,
            unpad=unpad,
            image_size=None if image_sizes is None else tuple(image_sizes[i]),
            grid_pinpoints=grid_pinpoints,
            crop_size=crop_size,
            patches_per_side=patches_per_side,
            image_newline=image_newline,
            image_aspect_ratio=image_aspect_ratio,
            index=i,
        )
        for i, crops in enumerate(features)
    ]
