"""Linear probes on frozen CLIP patch features: does the tower see colour, shape, position and count?

LLaVA feeds the LLM the patch tokens of one tower layer (``mm_vision_select_layer``, -2 in the v1.5
recipes, CLS dropped). A ridge-regression probe on those tokens, flattened, approximates what a projector
plus LLM can read out of them; the mean-pooled variant shows what survives averaging over patches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import CLIPVisionModel

from llava.toy.clip import normalize
from llava.toy.language import CATEGORIES
from llava.toy.scenes import ATTRIBUTE_VALUES, Scene


def attribute_codes(scenes: Sequence[Scene]) -> np.ndarray:
    """(N, 4) int codes of colour, shape, position and count (column order of ``CATEGORIES``)."""
    return np.asarray(
        [[ATTRIBUTE_VALUES[c].index(scene.attributes()[c]) for c in CATEGORIES] for scene in scenes],
        dtype=np.int64,
    )


@torch.no_grad()
def patch_features(
    vision: CLIPVisionModel, images: torch.Tensor, select_layer: int = -2, batch_size: int = 256
) -> torch.Tensor:
    """Patch tokens (CLS dropped) of ``hidden_states[select_layer]`` → (N, num_patches, hidden) float32.

    Args:
        vision: the tower (any module with CLIP's vision forward, e.g. ``CLIPModel.vision_model``).
        images: uint8 (N, H, W, 3) at the tower's image size.
        select_layer: which hidden state, as LLaVA's ``mm_vision_select_layer``.
        batch_size: images per forward pass.
    """
    chunks = []
    for start in range(0, len(images), batch_size):
        out = vision(pixel_values=normalize(images[start : start + batch_size]), output_hidden_states=True)
        chunks.append(out.hidden_states[select_layer][:, 1:].float())
    return torch.cat(chunks)


def ridge_probe_accuracy(
    train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor, test_y: np.ndarray, ridge: float = 1e-2
) -> float:
    """Accuracy of a one-vs-rest ridge-regression classifier (closed form, standardised features).

    Args:
        train_x: (N, D) features; test_x: (M, D).
        train_y: (N,) int labels; test_y: (M,).
        ridge: L2 penalty (relative to the number of training rows).
    """
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    xtr = torch.cat([(train_x - mean) / std, torch.ones(len(train_x), 1)], 1).double()
    xte = torch.cat([(test_x - mean) / std, torch.ones(len(test_x), 1)], 1).double()
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    targets = torch.nn.functional.one_hot(torch.from_numpy(train_y), n_classes).double()
    # Solve in the smaller of the primal (D x D) and dual (N x N) forms.
    if xtr.shape[1] <= xtr.shape[0]:
        gram = xtr.T @ xtr + ridge * len(xtr) * torch.eye(xtr.shape[1], dtype=torch.float64)
        weights = torch.linalg.solve(gram, xtr.T @ targets)
    else:
        gram = xtr @ xtr.T + ridge * len(xtr) * torch.eye(len(xtr), dtype=torch.float64)
        weights = xtr.T @ torch.linalg.solve(gram, targets)
    predictions = (xte @ weights).argmax(1).numpy()
    return float((predictions == test_y).mean())


def probe(
    vision: CLIPVisionModel,
    train_images: torch.Tensor,
    train_scenes: Sequence[Scene],
    test_images: torch.Tensor,
    test_scenes: Sequence[Scene],
    select_layer: int = -2,
    pooling: str = "flatten",
) -> dict[str, float]:
    """Held-out accuracy of a linear probe per attribute.

    Args:
        vision: the frozen tower.
        train_images, test_images: uint8 (N, H, W, 3).
        train_scenes, test_scenes: the scenes drawn in those images.
        select_layer: hidden state to probe (LLaVA's ``mm_vision_select_layer``).
        pooling: ``"flatten"`` (all patch tokens side by side) or ``"mean"`` (average over patches).

    Returns:
        ``{category: accuracy}`` for ``color``, ``shape``, ``position``, ``count``.
    """
    train_tokens = patch_features(vision, train_images, select_layer)
    test_tokens = patch_features(vision, test_images, select_layer)
    return probe_patches(train_tokens, train_scenes, test_tokens, test_scenes, pooling)


def probe_patches(
    train_tokens: torch.Tensor,
    train_scenes: Sequence[Scene],
    test_tokens: torch.Tensor,
    test_scenes: Sequence[Scene],
    pooling: str = "flatten",
) -> dict[str, float]:
    """``probe`` on patch tokens already computed by ``patch_features`` ((N, P, D) each)."""
    if pooling not in ("flatten", "mean"):
        raise ValueError(f"Unknown probe pooling {pooling!r}; expected 'flatten' or 'mean'")
    features = [t.flatten(1) if pooling == "flatten" else t.mean(1) for t in (train_tokens, test_tokens)]
    train_codes, test_codes = attribute_codes(train_scenes), attribute_codes(test_scenes)
    return {
        category: ridge_probe_accuracy(features[0], train_codes[:, i], features[1], test_codes[:, i])
        for i, category in enumerate(CATEGORIES)
    }
