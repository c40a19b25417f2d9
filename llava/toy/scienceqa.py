"""A ScienceQA-format split about the toy world, plus LLaVA's converted files.

``problems.json`` holds ScienceQA's fields; ``pid_splits.json`` its split lists; images live at
``images/<split>/<pid>/image.png``. ``llava_train_QCM-LEA.json`` and ``llava_test_CQM-A.json`` follow
upstream's ``scripts/convert_sqa_to_llava.py`` output byte for byte in their prompt layout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llava.toy.language import COUNT_WORDS, PLURALS, capitalize
from llava.toy.scenes import COLOR_NAMES, POSITIONS, SHAPES, Scene, make_scene

OPTION_LETTERS = ("A", "B", "C", "D", "E")
SPLIT_SIZES = (("train", 300), ("val", 60), ("test", 100))
_IMAGE_SHARE = 0.5
_IMAGE_HINTS = ("", "Look at the picture.", "The picture shows some shapes.")
_SUBJECT_OF = frozenset({"natural science", "social science", "language science"})

Problem = dict[str, Any]


@dataclass(frozen=True)
class _Item:
    """One generated problem before its split and id are known."""

    question: str
    correct: str
    distractors: tuple[str, ...]
    hint: str
    subject: str
    topic: str
    category: str
    skill: str
    lecture: str
    solution: str
    scene: Scene | None


def _distractors(rng: np.random.Generator, pool: Sequence[str], correct: str, k: int) -> tuple[str, ...]:
    others = [x for x in pool if x != correct]
    return tuple(others[i] for i in rng.permutation(len(others))[:k])


def _image_item(rng: np.random.Generator) -> _Item:
    scene = make_scene(
        COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))],
        SHAPES[int(rng.integers(len(SHAPES)))],
        POSITIONS[int(rng.integers(len(POSITIONS)))],
        int(rng.integers(1, 5)),
        rng,
    )
    hint = _IMAGE_HINTS[int(rng.integers(len(_IMAGE_HINTS)))]
    n_options = int(rng.integers(2, 5))
    kind = int(rng.integers(4))
    if kind == 0:
        return _Item(
            "What color are the shapes in the picture?",
            scene.color,
            _distractors(rng, COLOR_NAMES, scene.color, n_options - 1),
            hint,
            "natural science",
            "physics",
            "Identify colors",
            "Identify the color of objects",
            "Every object has a color. Red, green, blue, yellow, purple and orange are colors.",
            f"Look at the picture. The shapes are {scene.color}.",
            scene,
        )
    if kind == 1:
        return _Item(
            "Which shape is shown in the picture?",
            scene.shape,
            _distractors(rng, SHAPES, scene.shape, n_options - 1),
            hint,
            "natural science",
            "geometry",
            "Identify shapes",
            "Identify two-dimensional shapes",
            "A shape is the form of an object. Circles, squares, triangles, stars and crosses are shapes.",
            f"Look at the picture. The shapes are {PLURALS[scene.shape]}.",
            scene,
        )
    if kind == 2:
        words = tuple(COUNT_WORDS.values())
        correct = COUNT_WORDS[scene.count]
        return _Item(
            "How many shapes are in the picture?",
            correct,
            _distractors(rng, words, correct, n_options - 1),
            hint,
            "natural science",
            "units and measurement",
            "Count objects",
            "Count objects in a picture",
            "To count objects, point at each object once and say the next number.",
            f"Count the shapes in the picture. There are {correct}.",
            scene,
        )
    return _Item(
        "Where are the shapes in the picture?",
        scene.position,
        _distractors(rng, POSITIONS, scene.position, n_options - 1),
        hint,
        "social science",
        "geography",
        "Read a picture",
        "Use position words",
        "Position words tell where something is: left, right, top, bottom or center.",
        f"Look at the picture. The shapes are at the {scene.position}."
        if scene.position in ("top", "bottom")
        else f"Look at the picture. The shapes are in the {scene.position}."
        if scene.position == "center"
        else f"Look at the picture. The shapes are on the {scene.position}.",
        scene,
    )


def _sides_item(rng: np.random.Generator) -> _Item:
    shape, sides = (("triangle", 3), ("square", 4))[int(rng.integers(2))]
    correct = COUNT_WORDS[sides]
    return _Item(
        f"How many sides does a {shape} have?",
        correct,
        _distractors(rng, tuple(COUNT_WORDS.values()), correct, 2),
        "",
        "natural science",
        "geometry",
        "Identify shapes",
        "Count the sides of a shape",
        "A side is a straight line that makes part of a shape.",
        f"A {shape} has {correct} sides.",
        None,
    )


def _mix_item(rng: np.random.Generator) -> _Item:
    a, b, mixed = (("blue", "yellow", "green"), ("red", "yellow", "orange"), ("red", "blue", "purple"))[
        int(rng.integers(3))
    ]
    return _Item(
        f"What color do you get when you mix {a} and {b} paint?",
        mixed,
        _distractors(rng, COLOR_NAMES, mixed, int(rng.integers(1, 4))),
        "Mixing two colors of paint makes a new color.",
        "natural science",
        "chemistry",
        "Mixtures",
        "Identify the color of a mixture",
        "When two paints are mixed, the new paint has a color of its own.",
        f"Mixing {a} and {b} makes {mixed}.",
        None,
    )


def _opposite_item(rng: np.random.Generator) -> _Item:
    word, opposite = (("left", "right"), ("right", "left"), ("top", "bottom"), ("bottom", "top"))[
        int(rng.integers(4))
    ]
    return _Item(
        f"Which direction is the opposite of {word}?",
        opposite,
        _distractors(rng, tuple(p for p in POSITIONS if p != word), opposite, int(rng.integers(1, 3))),
        "",
        "social science",
        "geography",
        "Cardinal directions",
        "Use opposite directions",
        "Left and right are opposites. Top and bottom are opposites.",
        f"The opposite of {word} is {opposite}.",
        None,
    )


def _word_kind_item(rng: np.random.Generator) -> _Item:
    kinds = (("color", COLOR_NAMES), ("shape", SHAPES), ("position word", POSITIONS))
    target = int(rng.integers(3))
    name, pool = kinds[target]
    correct = pool[int(rng.integers(len(pool)))]
    others = tuple(k[1][int(rng.integers(len(k[1])))] for i, k in enumerate(kinds) if i != target)
    return _Item(
        f"Which word is a {name}?",
        correct,
        others,
        "",
        "language science",
        "vocabulary",
        "Categories",
        "Sort words into groups",
        "Words can be sorted into groups. Some words name colors, some name shapes and some tell where "
        "something is.",
        f"The word {correct} is a {name}.",
        None,
    )


def _plural_item(rng: np.random.Generator) -> _Item:
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    wrong = shape + "es" if PLURALS[shape] == shape + "s" else shape + "s"
    return _Item(
        f"What is the plural of {shape}?",
        PLURALS[shape],
        (wrong,),
        "",
        "language science",
        "grammar",
        "Plural nouns",
        "Form plural nouns",
        "A plural noun names more than one thing. Add s to most nouns; add es to nouns that end in s, x, ch "
        "or sh.",
        f"The plural of {shape} is {PLURALS[shape]}.",
        None,
    )


def _alphabet_item(rng: np.random.Generator) -> _Item:
    pool = (*COLOR_NAMES, *SHAPES)
    a, b = (pool[i] for i in rng.permutation(len(pool))[:2])
    first = min(a, b)
    return _Item(
        "Which word comes first in alphabetical order?",
        first,
        (max(a, b),),
        "",
        "language science",
        "reference skills",
        "Alphabetical order",
        "Put words in alphabetical order",
        "Alphabetical order is the order of letters in the alphabet. Compare the first letters of two words; "
        "if they are the same, compare the next letters.",
        f"{capitalize(first)} comes before {max(a, b)} in alphabetical order.",
        None,
    )


_TEXT_ITEMS: tuple[Callable[[np.random.Generator], _Item], ...] = (
    _sides_item,
    _mix_item,
    _opposite_item,
    _word_kind_item,
    _plural_item,
    _alphabet_item,
)


def _to_problem(item: _Item, split: str, rng: np.random.Generator) -> Problem:
    choices = [item.correct, *item.distractors]
    order = rng.permutation(len(choices))
    choices = [choices[i] for i in order]
    return {
        "question": item.question,
        "choices": choices,
        "answer": choices.index(item.correct),
        "hint": item.hint,
        "image": "image.png" if item.scene is not None else None,
        "task": "closed choice",
        "grade": f"grade{int(rng.integers(1, 13))}",
        "subject": item.subject,
        "topic": item.topic,
        "category": item.category,
        "skill": item.skill,
        "lecture": item.lecture,
        "solution": item.solution,
        "split": split,
    }


def build_problems(rng: np.random.Generator) -> tuple[dict[str, Problem], dict[str, Scene]]:
    """Sample every problem of every split.

    Args:
        rng: numpy Generator (the problems are a pure function of its state).

    Returns:
        ``(problems, scenes)``: problems keyed by pid (``"1"``, ``"2"``, …, in split order train, val, test),
        and the scene to render for each pid that has an image.
    """
    problems: dict[str, Problem] = {}
    scenes: dict[str, Scene] = {}
    pid = 0
    for split, size in SPLIT_SIZES:
        for _ in range(size):
            pid += 1
            if rng.random() < _IMAGE_SHARE:
                item = _image_item(rng)
            else:
                item = _TEXT_ITEMS[int(rng.integers(len(_TEXT_ITEMS)))](rng)
            if item.subject not in _SUBJECT_OF:
                raise ValueError(f"ScienceQA item {item.question!r} has unknown subject {item.subject!r}")
            problems[str(pid)] = _to_problem(item, split, rng)
            if item.scene is not None:
                scenes[str(pid)] = item.scene
    return problems, scenes


def pid_splits(problems: dict[str, Problem]) -> dict[str, list[str]]:
    """ScienceQA's ``pid_splits.json``: train/val/test plus the trainval and mini subsets."""
    by_split: dict[str, list[str]] = {name: [] for name, _ in SPLIT_SIZES}
    for pid, problem in problems.items():
        by_split[problem["split"]].append(pid)
    return {
        **by_split,
        "trainval": by_split["train"] + by_split["val"],
        "minitrain": by_split["train"][: len(by_split["train"]) // 4],
        "minival": by_split["val"][: len(by_split["val"]) // 2],
        "minitest": by_split["test"][: len(by_split["test"]) // 2],
    }


def _prompt_pair(problem: Problem, prompt_format: str) -> tuple[str, str]:
    """(human text, gpt text) of one problem, as upstream's ScienceQA → LLaVA conversion writes them."""
    input_format, output_format = prompt_format.split("-")
    context = problem["hint"].strip() or "N/A"
    options = " ".join(f"({OPTION_LETTERS[i]}) {c}" for i, c in enumerate(problem["choices"]))
    answer = OPTION_LETTERS[problem["answer"]]
    if input_format == "CQM":
        text = f"Context: {context}\nQuestion: {problem['question']}\nOptions: {options}\n"
    elif input_format == "QCM":
        text = f"Question: {problem['question']}\nContext: {context}\nOptions: {options}\n"
    else:
        raise ValueError(f"Unsupported ScienceQA input format {input_format!r} in {prompt_format!r}")
    if output_format == "A":
        reply = f"Answer: The answer is {answer}."
    elif output_format == "LEA":
        reply = f"Answer: {problem['lecture']} {problem['solution']} The answer is {answer}."
    else:
        raise ValueError(f"Unsupported ScienceQA output format {output_format!r} in {prompt_format!r}")
    text = text.replace("  ", " ").strip()
    reply = reply.replace("  ", " ").strip()
    # Upstream drops every "Question: " when the prompt starts with it, and the leading "Answer: ".
    if text.startswith("Question: "):
        text = text.replace("Question: ", "")
    if reply.startswith("Answer: "):
        reply = reply.replace("Answer: ", "")
    return text, reply


def llava_records(
    problems: dict[str, Problem], pids: Sequence[str], prompt_format: str
) -> list[dict[str, Any]]:
    """LLaVA conversation records for ``pids`` (``llava_<split>_<format>.json``).

    Args:
        problems: all problems keyed by pid.
        pids: the split's pids, in order.
        prompt_format: e.g. ``"QCM-LEA"`` (training) or ``"CQM-A"`` (evaluation).

    Returns:
        Records ``{"id", ["image": "<pid>/image.png"], "conversations"}``; the image token comes last.
    """
    records = []
    for pid in pids:
        problem = problems[pid]
        text, reply = _prompt_pair(problem, prompt_format)
        if problem["image"] is None:
            records.append(
                {
                    "id": pid,
                    "conversations": [{"from": "human", "value": text}, {"from": "gpt", "value": reply}],
                }
            )
        else:
            records.append(
                {
                    "id": pid,
                    "image": f"{pid}/{problem['image']}",
                    "conversations": [
                        {"from": "human", "value": f"{text}\n<image>"},
                        {"from": "gpt", "value": reply},
                    ],
                }
            )
    return records
