"""Anyres geometry and `mm_patch_merge_type` merging, on coordinate-coded synthetic features."""

from __future__ import annotations

import pytest
import torch

from llava.model.patch_merge import (
    get_anyres_image_grid_shape,
    merge_patch_features,
    select_best_resolution,
    unpad_image,
)

PINPOINTS_16 = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)]  # LLaVA-1.6's list


@pytest.mark.parametrize(
    ("size", "best"),
    [
        ((800, 600), (672, 672)),
        ((1000, 300), (1008, 336)),
        ((300, 900), (336, 1008)),
        ((336, 336), (336, 672)),
    ],
)
def test_select_best_resolution(size, best):
    assert select_best_resolution(size, PINPOINTS_16) == best


def test_grid_shape_accepts_string_pinpoints():
    assert get_anyres_image_grid_shape((1000, 300), str(PINPOINTS_16), 336) == (3, 1)


def test_unpad_image_crops_letterbox():
    fmap = torch.arange(4 * 8).view(1, 4, 8)
    assert unpad_image(fmap, (100, 30)).shape == (1, 2, 8)  # wide image: keep the middle rows
    assert torch.equal(unpad_image(fmap, (100, 30)), fmap[:, 1:3])
    assert unpad_image(torch.zeros(1, 8, 4), (30, 100)).shape == (1, 8, 2)  # tall image: middle columns


def _coded_crops(num_crops: int, side: int) -> torch.Tensor:
    """(crops, side*side, 1) features whose value is crop*100 + token index."""
    crop = torch.arange(num_crops)[:, None] * 100
    token = torch.arange(side * side)[None, :]
    return (crop + token).float()[..., None]


GRID = {"grid_pinpoints": [(28, 56), (56, 28), (56, 56)], "crop_size": 28, "image_aspect_ratio": "anyres"}


def test_flat_concatenates_crops():
    feats = [_coded_crops(3, 2), _coded_crops(1, 2)]
    out = merge_patch_features(feats, "flat")
    assert [o.shape[0] for o in out] == [12, 4]
    assert torch.equal(out[0][:, 0], feats[0].flatten())


def test_spatial_is_row_major_over_the_full_grid():
    side = 2
    feats = [_coded_crops(1 + 2, side)]  # (100, 30) -> best (56, 28): 2 crops across, 1 down
    (out,) = merge_patch_features(feats, "spatial", image_sizes=[(100, 30)], patches_per_side=side, **GRID)
    expected = list(range(4))  # base crop first
    for row in range(side):
        for col in range(2 * side):
            crop, col_in_crop = 1 + col // side, col % side
            expected.append(crop * 100 + row * side + col_in_crop)
    assert out[:, 0].tolist() == expected


def test_spatial_unpad_drops_padding_rows_and_adds_newlines():
    side = 4
    newline = torch.tensor([-1.0])
    feats = [_coded_crops(1 + 2, side)]
    (out,) = merge_patch_features(
        feats, "spatial_unpad", image_sizes=[(100, 30)], patches_per_side=side, image_newline=newline, **GRID
    )
    values = out[:, 0].tolist()
    assert values[:16] == list(range(16))
    rows = [values[16 + r * 9 : 16 + (r + 1) * 9] for r in range(2)]  # 2 kept rows of 8 tokens + newline
    assert len(values) == 16 + 2 * 9
    for kept_row, row in zip((1, 2), rows):
        assert row[-1] == -1.0
        assert row[:8] == [(1 + c // side) * 100 + kept_row * side + c % side for c in range(8)]


def test_single_crop_unpad_appends_one_newline():
    (out,) = merge_patch_features(
        [_coded_crops(1, 2)], "spatial_unpad", image_newline=torch.tensor([7.0]), patches_per_side=2, **GRID
    )
    assert out[:, 0].tolist() == [0, 1, 2, 3, 7.0]


def test_spatial_errors():
    with pytest.raises(NotImplementedError):
        merge_patch_features(
            [_coded_crops(3, 2)],
            "spatial",
            image_sizes=[(100, 30)],
            patches_per_side=2,
            grid_pinpoints=GRID["grid_pinpoints"],
            crop_size=28,
            image_aspect_ratio="pad",
        )
    with pytest.raises(ValueError, match="2x1 grid"):
        merge_patch_features(
            [_coded_crops(4, 2)], "spatial", image_sizes=[(100, 30)], patches_per_side=2, **GRID
        )
    with pytest.raises(ValueError, match="maxpool"):
        merge_patch_features([_coded_crops(1, 2)], "maxpool")
