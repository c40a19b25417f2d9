"""The toy world's language: captions, questions, answers and text-only dialogue.

Everything here is a pure function of a scene and/or a numpy Generator. Phrase tables are tuples and
read-only mappings (no module-level mutable state).
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from llava.toy.scenes import COLOR_NAMES, COUNTS, POSITIONS, SHAPES, Scene

SINGLE_WORD_SUFFIX = "Answer with a single word."
CATEGORIES = ("color", "shape", "position", "count")

COUNT_WORDS = MappingProxyType({1: "one", 2: "two", 3: "three", 4: "four"})
PLURALS = MappingProxyType(
    {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars", "cross": "crosses"}
)
_WHERE = MappingProxyType(
    {
        "left": ("on the left", "on the left side", "at the left of the image"),
        "right": ("on the right", "on the right side", "at the right of the image"),
        "top": ("at the top", "near the top", "at the top of the image"),
        "bottom": ("at the bottom", "near the bottom", "at the bottom of the image"),
        "center": ("in the center", "in the middle", "in the center of the image"),
    }
)
_CAPTION_TEMPLATES = (
    "{n} {color} {things} {where}.",
    "{n} {color} {things} {where}.",
    "a picture of {n} {color} {things} {where}.",
    "there {be} {n} {color} {things} {where}.",
    "an image with {n} {color} {things} {where}.",
    "{n} {color} {things} drawn {where} on a plain background.",
)
# Brief-description instructions in the style of LCS-558K (LLaVA's projector-pretraining data).
BRIEF_INSTRUCTIONS = (
    "Describe the image concisely.",
    "Provide a brief description of the given image.",
    "Offer a succinct explanation of the picture presented.",
    "Summarize the visual content of the image.",
    "Give a short and clear explanation of the subsequent image.",
    "Share a concise interpretation of the image provided.",
    "Present a compact description of the photo's key features.",
    "Relay a brief, clear account of the picture shown.",
    "Render a clear and concise summary of the photo.",
    "Write a terse but informative summary of the picture.",
    "Create a compact narrative representing the image presented.",
)
QUESTIONS = MappingProxyType(
    {
        "color": (
            "What color are the shapes?",
            "What is the color of the objects in the image?",
            "Which color do the shapes have?",
            "What color are the objects?",
        ),
        "shape": (
            "What shape are the objects?",
            "Which shape is shown in the image?",
            "What kind of shape can you see?",
            "What is the shape of the objects in the image?",
        ),
        "position": (
            "Where are the shapes?",
            "In which part of the image are the objects?",
            "Where in the image are the shapes located?",
            "Where are the objects placed?",
        ),
        "count": (
            "How many shapes are there?",
            "How many objects are in the image?",
            "How many shapes can you see?",
            "What is the number of objects in the image?",
        ),
    }
)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def capitalize(text: str) -> str:
    """Upper-case the first character only (``str.capitalize`` would lower-case the rest)."""
    return text[:1].upper() + text[1:]


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A short lower-case caption naming the count, colour, shape and position, e.g.
    ``"three red circles on the left."``."""
    template = _pick(rng, _CAPTION_TEMPLATES)
    things = scene.shape if scene.count == 1 else PLURALS[scene.shape]
    return template.format(
        n=COUNT_WORDS[scene.count],
        color=scene.color,
        things=things,
        where=_pick(rng, _WHERE[scene.position]),
        be="is" if scene.count == 1 else "are",
    )


def canonical_caption(color: str, shape: str, position: str, count: int) -> str:
    """The single fixed-template caption of an attribute combination (used to train CLIP's text tower)."""
    things = shape if count == 1 else PLURALS[shape]
    return f"{COUNT_WORDS[count]} {color} {things} {_WHERE[position][0]}."


def answer_word(scene: Scene, category: str) -> str:
    """The single-word answer (capitalised, as the assistant says it) to a ``category`` question."""
    if category == "count":
        return capitalize(COUNT_WORDS[scene.count])
    if category in ("color", "shape", "position"):
        return capitalize(str(scene.attributes()[category]))
    raise ValueError(f"Unknown question category {category!r}; expected one of {CATEGORIES}")


def question(category: str, rng: np.random.Generator, single_word: bool = True) -> str:
    """One phrasing of a question about ``category``, with LLaVA-1.5's short-answer suffix if asked."""
    text = _pick(rng, QUESTIONS[category])
    return f"{text}\n{SINGLE_WORD_SUFFIX}" if single_word else text


# --- Text-only knowledge of the world (no image needed, never about a particular image). ---------------

_SIDES = MappingProxyType({"triangle": 3, "square": 4})
_MIXES = (("blue", "yellow", "green"), ("red", "yellow", "orange"), ("red", "blue", "purple"))
_OPPOSITES = (("left", "right"), ("right", "left"), ("top", "bottom"), ("bottom", "top"))
_CHATTER = (
    ("Hello!", "Hello! I can answer questions about pictures of colored shapes."),
    (
        "What can you do?",
        "I can describe a picture and tell you the color, the shape, the position and the "
        "number of the shapes in it.",
    ),
    ("Thank you.", "You are welcome."),
    ("Who are you?", "I am a small assistant that looks at pictures of shapes."),
    ("What colors do you know?", "I know red, green, blue, yellow, purple and orange."),
    ("What shapes do you know?", "I know circles, squares, triangles, stars and crosses."),
    (
        "Where can shapes be in a picture?",
        "Shapes can be on the left, on the right, at the top, at the bottom or in the center.",
    ),
)


def fact(rng: np.random.Generator) -> tuple[str, str, str]:
    """One general question with a long answer and a single-word answer: (question, sentence, word)."""
    kind = int(rng.integers(8))
    if kind == 0:
        shape = _pick(rng, tuple(_SIDES))
        n = COUNT_WORDS[_SIDES[shape]]
        return f"How many sides does a {shape} have?", f"A {shape} has {n} sides.", capitalize(n)
    if kind == 1:
        a, b, mixed = _MIXES[int(rng.integers(len(_MIXES)))]
        if rng.random() < 0.5:
            a, b = b, a
        return (
            f"What color do you get when you mix {a} and {b}?",
            f"Mixing {a} and {b} gives {mixed}.",
            capitalize(mixed),
        )
    if kind == 2:
        word, opposite = _OPPOSITES[int(rng.integers(len(_OPPOSITES)))]
        return (
            f"What is the opposite of {word}?",
            f"The opposite of {word} is {opposite}.",
            capitalize(opposite),
        )
    if kind == 3:
        n = int(rng.integers(1, 4))
        return (
            f"What number comes after {COUNT_WORDS[n]}?",
            f"{capitalize(COUNT_WORDS[n + 1])} comes after {COUNT_WORDS[n]}.",
            capitalize(COUNT_WORDS[n + 1]),
        )
    if kind == 4:
        a = int(rng.integers(1, 4))
        b = int(rng.integers(1, 5 - a))
        return (
            f"What is {COUNT_WORDS[a]} plus {COUNT_WORDS[b]}?",
            f"{capitalize(COUNT_WORDS[a])} plus {COUNT_WORDS[b]} is {COUNT_WORDS[a + b]}.",
            capitalize(COUNT_WORDS[a + b]),
        )
    if kind == 5:
        shape = _pick(rng, SHAPES)
        return (
            f"What is the plural of {shape}?",
            f"The plural of {shape} is {PLURALS[shape]}.",
            capitalize(PLURALS[shape]),
        )
    if kind == 6:
        if rng.random() < 0.5:
            word, kind_name = _pick(rng, COLOR_NAMES), "color"
        else:
            word, kind_name = _pick(rng, SHAPES), "shape"
        return (
            f"Is {word} a color or a shape?",
            f"{capitalize(word)} is a {kind_name}.",
            capitalize(kind_name),
        )
    return "How many corners does a circle have?", "A circle has no corners.", "None"


def text_only_turns(rng: np.random.Generator, n_turns: int) -> list[tuple[str, str]]:
    """A text-only dialogue of ``n_turns`` (user, assistant) pairs about the world in general."""
    turns = []
    for _ in range(n_turns):
        if rng.random() < 0.2:
            turns.append(_CHATTER[int(rng.integers(len(_CHATTER)))])
            continue
        q, sentence, word = fact(rng)
        turns.append((f"{q}\n{SINGLE_WORD_SUFFIX}", word) if rng.random() < 0.5 else (q, sentence))
    return turns


def all_words() -> tuple[str, ...]:
    """Every attribute value of the world, as words (used to seed the tokenizer's training text)."""
    return (*COLOR_NAMES, *SHAPES, *PLURALS.values(), *POSITIONS, *(COUNT_WORDS[c] for c in COUNTS))
