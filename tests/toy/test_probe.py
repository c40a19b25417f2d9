"""The CLIP tower's patch features carry colour, shape, position and count (what LLaVA must read).

Averaged over patches too: the toy LM reads the scene from its image tokens as from a bag of words, so every
token must carry all four attributes, not only the grid of tokens as a whole.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import CLIPVisionModel

from llava.toy.probe import probe
from llava.toy.scenes import render_scene, sample_scenes

THRESHOLD = 0.93


def _images(scenes):
    return torch.from_numpy(np.stack([np.asarray(render_scene(s)) for s in scenes]))


@pytest.mark.parametrize("pooling", ["flatten", "mean"])
def test_linear_probe_on_select_layer_patches(toy_world, pooling):
    # Fresh scenes from a seed the world never uses: both probe sets are unseen by CLIP.
    rng = np.random.default_rng(12345)
    train, test = sample_scenes(rng, 1200), sample_scenes(rng, 400)
    vision = CLIPVisionModel.from_pretrained(toy_world.clip_dir).eval()
    accuracy = probe(vision, _images(train), train, _images(test), test, select_layer=-2, pooling=pooling)
    assert min(accuracy.values()) >= THRESHOLD, accuracy


def test_manifest_records_the_build_probe(toy_world):
    recorded = json.loads(toy_world.manifest.read_text())["clip_probe"]["accuracy"]
    assert set(recorded) == {"flatten", "mean"}
    for pooling, accuracy in recorded.items():
        assert set(accuracy) == {"color", "shape", "position", "count"}
        assert min(accuracy.values()) >= 0.95, (pooling, accuracy)
