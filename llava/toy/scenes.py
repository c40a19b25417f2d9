"""Scenes of the toy world: sampling (from a numpy Generator) and rendering (with Pillow).

Every image holds ``count`` copies of ONE shape in ONE colour, grouped in ONE region of the image, on a
light background, so each question about it (colour, shape, position, count) has exactly one answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
# Shapes are drawn at 4x and box-filtered down: anti-aliased edges keep small shapes recognisable.
SUPERSAMPLE = 4

COLORS = MappingProxyType(
    {
        "red": (215, 35, 35),
        "green": (40, 165, 55),
        "blue": (35, 80, 220),
        "yellow": (240, 205, 20),
        "purple": (145, 55, 190),
        "orange": (250, 130, 15),
    }
)
COLOR_NAMES = tuple(COLORS)
SHAPES = ("circle", "square", "triangle", "star", "cross")
POSITIONS = ("left", "right", "top", "bottom", "center")
COUNTS = (1, 2, 3, 4)
ATTRIBUTES = ("color", "shape", "position", "count")
# The values each attribute takes, in code order (attribute codes index these tuples).
ATTRIBUTE_VALUES = MappingProxyType(
    {"color": COLOR_NAMES, "shape": SHAPES, "position": POSITIONS, "count": COUNTS}
)

# Where the centre of a group goes (x, y in pixels of the final image).
PATCH = 8
_ANCHORS = MappingProxyType(
    {
        "left": (16.0, 32.0),
        "right": (48.0, 32.0),
        "top": (32.0, 16.0),
        "bottom": (32.0, 48.0),
        "center": (32.0, 32.0),
    }
)
_POINT_JITTER = 1.0
# Shape size (px) shrinks with the count so that four copies still fit in one region.
_SIZE_RANGE = MappingProxyType({1: (15, 19), 2: (11, 13), 3: (11, 13), 4: (10, 12)})
_COLOR_JITTER = 12

# Unit offsets (in multiples of the spacing) of each arrangement around the group centre.
_ARRANGEMENTS = MappingProxyType(
    {
        "single": ((0.0, 0.0),),
        "row2": ((-0.5, 0.0), (0.5, 0.0)),
        "column2": ((0.0, -0.5), (0.0, 0.5)),
        "diagonal2": ((-0.5, -0.5), (0.5, 0.5)),
        "row3": ((-1.0, 0.0), (0.0, 0.0), (1.0, 0.0)),
        "column3": ((0.0, -1.0), (0.0, 0.0), (0.0, 1.0)),
        "triangle3": ((0.0, -0.5), (-0.5, 0.5), (0.5, 0.5)),
        "grid4": ((-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)),
        "row4": ((-1.5, 0.0), (-0.5, 0.0), (0.5, 0.0), (1.5, 0.0)),
        "column4": ((0.0, -1.5), (0.0, -0.5), (0.0, 0.5), (0.0, 1.5)),
    }
)
# Long arrangements run along the border of their region (a column on the left, a row on top) so the
# group never reaches into a neighbouring region; the centre only gets compact ones.
_ALLOWED = MappingProxyType(
    {
        ("left", 2): ("column2",),
        ("left", 3): ("column3", "triangle3"),
        ("left", 4): ("column4", "grid4"),
        ("top", 2): ("row2",),
        ("top", 3): ("row3", "triangle3"),
        ("top", 4): ("row4", "grid4"),
        ("center", 2): ("row2", "column2", "diagonal2"),
        ("center", 3): ("triangle3",),
        ("center", 4): ("grid4",),
    }
)
_SAME_AXIS = MappingProxyType({"right": "left", "bottom": "top"})


@dataclass(frozen=True)
class Scene:
    """One toy image, fully described (everything needed to render it again).

    Attributes:
        color: colour name (a key of ``COLORS``).
        shape: one of ``SHAPES``.
        position: one of ``POSITIONS``.
        count: number of copies, one of ``COUNTS``.
        size: shape size in pixels of the final image.
        centers: centre (x, y) of every copy, in pixels of the final image.
        fill: RGB fill colour (the named colour with a little jitter).
        background: RGB colours at the top and at the bottom of the vertical background gradient.
    """

    color: str
    shape: str
    position: str
    count: int
    size: float
    centers: tuple[tuple[float, float], ...]
    fill: tuple[int, int, int]
    background: tuple[tuple[int, int, int], tuple[int, int, int]]

    def attributes(self) -> dict[str, str | int]:
        """The four question-able attributes, keyed by category name."""
        return {"color": self.color, "shape": self.shape, "position": self.position, "count": self.count}


def _allowed_arrangements(position: str, count: int) -> tuple[str, ...]:
    if count == 1:
        return ("single",)
    return _ALLOWED[(_SAME_AXIS.get(position, position), count)]


def _jittered_rgb(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int) -> tuple[int, int, int]:
    values = np.asarray(rgb) + rng.integers(-amount, amount + 1, size=3)
    return tuple(int(v) for v in np.clip(values, 0, 255))


def _layout(
    position: str, count: int, rng: np.random.Generator
) -> tuple[float, tuple[tuple[float, float], ...]]:
    low, high = _SIZE_RANGE[count]
    size = float(rng.uniform(low, high))
    names = _allowed_arrangements(position, count)
    offsets = np.asarray(_ARRANGEMENTS[names[int(rng.integers(len(names)))]])
    # Centres sit on patch corners (multiples of PATCH): every copy of a shape is cut into the same
    # four quarters by the vision tower's patch grid, whatever the arrangement.
    points = offsets * (2 * PATCH) + np.asarray(_ANCHORS[position])
    low_ok = PATCH - points.min(axis=0)
    high_ok = IMAGE_SIZE - PATCH - points.max(axis=0)
    points = points + np.maximum(low_ok, 0) + np.minimum(high_ok, 0)
    points = points + rng.uniform(-_POINT_JITTER, _POINT_JITTER, size=points.shape)
    return size, tuple((float(x), float(y)) for x, y in points)


def make_scene(color: str, shape: str, position: str, count: int, rng: np.random.Generator) -> Scene:
    """Place ``count`` copies of one shape in one region, with random size, spacing and colours.

    Args:
        color: colour name (a key of ``COLORS``).
        shape: one of ``SHAPES``.
        position: one of ``POSITIONS``.
        count: one of ``COUNTS``.
        rng: source of every random choice (the scene is a pure function of its state).

    Returns:
        The scene; ``render_scene`` draws it.
    """
    if color not in COLORS or shape not in SHAPES or position not in POSITIONS or count not in COUNTS:
        raise ValueError(
            f"Unknown scene attributes: color={color!r} shape={shape!r} position={position!r} count={count!r}"
        )
    size, centers = _layout(position, count, rng)
    fill = _jittered_rgb(COLORS[color], rng, _COLOR_JITTER)
    gray = int(rng.integers(212, 251))
    top = _jittered_rgb((gray, gray, gray), rng, 8)
    bottom = _jittered_rgb(top, rng, 14)
    return Scene(color, shape, position, count, size, centers, fill, (top, bottom))


def sample_scenes(rng: np.random.Generator, n: int) -> list[Scene]:
    """Sample ``n`` scenes whose colours, shapes, positions and counts are each balanced.

    Each attribute's values are repeated to length ``n`` and shuffled independently, so every value of an
    attribute occurs ``n / len(values)`` times (up to rounding) and the majority answer stays rare.

    Args:
        rng: numpy Generator (the scenes are a pure function of its state).
        n: number of scenes.

    Returns:
        The scenes, in sampling order.
    """
    columns = [
        rng.permutation(np.resize(np.arange(len(values)), n))
        for values in (COLOR_NAMES, SHAPES, POSITIONS, COUNTS)
    ]
    return [
        make_scene(COLOR_NAMES[c], SHAPES[s], POSITIONS[p], COUNTS[k], rng)
        for c, s, p, k in zip(*(col.tolist() for col in columns), strict=True)
    ]


def _star_points(cx: float, cy: float, radius: float) -> list[tuple[float, float]]:
    points = []
    for i in range(10):
        r = radius if i % 2 == 0 else radius * 0.45
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return points


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, size: float, fill: tuple
) -> None:
    half = size / 2
    if shape == "circle":
        draw.ellipse((cx - half, cy - half, cx + half, cy + half), fill=fill)
    elif shape == "square":
        side = 0.42 * size  # half side: a bit smaller than the circle so their areas are close
        draw.rectangle((cx - side, cy - side, cx + side, cy + side), fill=fill)
    elif shape == "triangle":
        draw.polygon(
            [(cx, cy - half), (cx - half, cy + 0.42 * size), (cx + half, cy + 0.42 * size)], fill=fill
        )
    elif shape == "star":
        draw.polygon(_star_points(cx, cy + 0.05 * size, half * 1.1), fill=fill)
    elif shape == "cross":
        bar = size / 6
        draw.rectangle((cx - half, cy - bar, cx + half, cy + bar), fill=fill)
        draw.rectangle((cx - bar, cy - half, cx + bar, cy + half), fill=fill)
    else:
        raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}")


def render_background(scene: Scene, size: int) -> np.ndarray:
    """The background gradient of ``scene`` as a (size, size, 3) uint8 array."""
    top, bottom = (np.asarray(c, dtype=np.float32) for c in scene.background)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]  # (H, 1, 1)
    rows = top * (1 - ramp) + bottom * ramp  # (H, 1, 3)
    return np.broadcast_to(np.rint(rows), (size, size, 3)).astype(np.uint8)


def render_scene(scene: Scene, blank: bool = False) -> Image.Image:
    """Draw a scene as a ``IMAGE_SIZE`` x ``IMAGE_SIZE`` RGB image.

    Args:
        scene: what to draw.
        blank: draw only the background (for "blank image" baselines).

    Returns:
        The RGB image.
    """
    big = IMAGE_SIZE * SUPERSAMPLE
    canvas = Image.fromarray(render_background(scene, big), mode="RGB")
    if not blank:
        draw = ImageDraw.Draw(canvas)
        for cx, cy in scene.centers:
            _draw_shape(
                draw, scene.shape, cx * SUPERSAMPLE, cy * SUPERSAMPLE, scene.size * SUPERSAMPLE, scene.fill
            )
    return canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
