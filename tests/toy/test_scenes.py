"""Scene sampling and rendering: deterministic, balanced, unambiguous."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np

from llava.toy.scenes import COLOR_NAMES, COUNTS, IMAGE_SIZE, POSITIONS, SHAPES, render_scene, sample_scenes


def _png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_same_seed_same_scenes_and_pixels():
    first = sample_scenes(np.random.default_rng(7), 40)
    second = sample_scenes(np.random.default_rng(7), 40)
    assert first == second
    assert [_png_bytes(render_scene(s)) for s in first] == [_png_bytes(render_scene(s)) for s in second]


def test_different_seed_different_scenes():
    assert sample_scenes(np.random.default_rng(1), 20) != sample_scenes(np.random.default_rng(2), 20)


def test_attributes_are_balanced():
    n = 600
    scenes = sample_scenes(np.random.default_rng(0), n)
    for name, values in (
        ("color", COLOR_NAMES),
        ("shape", SHAPES),
        ("position", POSITIONS),
        ("count", COUNTS),
    ):
        counts = Counter(s.attributes()[name] for s in scenes)
        assert set(counts) == set(values), name
        assert max(counts.values()) - min(counts.values()) <= 1, (name, counts)


def test_scene_geometry_matches_its_attributes():
    for scene in sample_scenes(np.random.default_rng(3), 300):
        assert len(scene.centers) == scene.count
        xs, ys = (np.array(v) for v in zip(*scene.centers, strict=True))
        half = scene.size / 2
        assert xs.min() - half >= 0 and xs.max() + half <= IMAGE_SIZE, scene
        assert ys.min() - half >= 0 and ys.max() + half <= IMAGE_SIZE, scene
        cx, cy = xs.mean(), ys.mean()
        # The group's centre decides the position answer without ambiguity.
        expected = {
            "left": cx < 24 and abs(cy - 32) < 4,
            "right": cx > 40 and abs(cy - 32) < 4,
            "top": cy < 24 and abs(cx - 32) < 4,
            "bottom": cy > 40 and abs(cx - 32) < 4,
            "center": abs(cx - 32) < 4 and abs(cy - 32) < 4,
        }
        assert expected[scene.position], scene
        # Copies never overlap.
        for i in range(scene.count):
            for j in range(i + 1, scene.count):
                assert np.hypot(xs[i] - xs[j], ys[i] - ys[j]) > scene.size, scene


def test_render_size_and_blank():
    scene = sample_scenes(np.random.default_rng(0), 1)[0]
    image = render_scene(scene)
    assert image.size == (IMAGE_SIZE, IMAGE_SIZE) and image.mode == "RGB"
    fill = np.array(scene.fill)
    pixels = np.asarray(image).reshape(-1, 3).astype(int)
    assert (np.abs(pixels - fill).sum(1) < 30).sum() > 20  # the shapes are drawn in their colour
    blank = np.asarray(render_scene(scene, blank=True)).reshape(-1, 3).astype(int)
    assert (np.abs(blank - fill).sum(1) < 30).sum() == 0
