"""LLaVA-format datasets of the toy world: projector pretraining, instruction tuning, held-out questions.

Formats follow upstream's files: LCS-558K (``blip_laion_cc_sbu_558k.json``) for pretraining,
``llava_v1_5_mix665k.json`` for fine-tuning (multi-turn, some text-only samples without ``image``), and
the ``model_vqa`` question/answer jsonl files for evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llava.constants import DEFAULT_IMAGE_TOKEN
from llava.toy.language import (
    BRIEF_INSTRUCTIONS,
    CATEGORIES,
    answer_word,
    capitalize,
    caption,
    question,
    text_only_turns,
)
from llava.toy.scenes import Scene

Record = dict[str, Any]
# Turn counts of an image conversation and their probabilities (1 to 4 turns, as the brief asks).
_TURN_COUNTS = (1, 2, 3, 4)
_TURN_PROBS = (0.3, 0.3, 0.2, 0.2)
# Share of image conversations whose first turn puts `<image>` after the text (upstream moves it to the
# front).
_IMAGE_LAST_SHARE = 0.25
# Share of turns that ask for a caption instead of a single-word answer.
_DESCRIBE_SHARE = 0.1


def _turns_to_conversation(turns: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    conversation = []
    for user, assistant in turns:
        conversation.append({"from": "human", "value": user})
        conversation.append({"from": "gpt", "value": assistant})
    return conversation


def _with_image(text: str, image_last: bool) -> str:
    return f"{text}\n{DEFAULT_IMAGE_TOKEN}" if image_last else f"{DEFAULT_IMAGE_TOKEN}\n{text}"


def pretrain_records(
    scenes: Sequence[Scene], images: Sequence[str], rng: np.random.Generator
) -> list[Record]:
    """Caption pairs in LCS-558K's layout (``plain`` pretraining).

    Args:
        scenes: one scene per image.
        images: image paths relative to the image folder, aligned with ``scenes``.
        rng: numpy Generator for the instruction and caption phrasing.

    Returns:
        ``[{"id", "image", "conversations": [human "<image>\\n<instruction>", gpt caption]}]``.
    """
    records = []
    for scene, image in zip(scenes, images, strict=True):
        instruction = BRIEF_INSTRUCTIONS[int(rng.integers(len(BRIEF_INSTRUCTIONS)))]
        turns = [(_with_image(instruction, image_last=False), caption(scene, rng))]
        records.append(
            {"id": Path(image).stem, "image": image, "conversations": _turns_to_conversation(turns)}
        )
    return records


def _image_turns(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    n_turns = int(rng.choice(_TURN_COUNTS, p=_TURN_PROBS))
    categories = [CATEGORIES[i] for i in rng.permutation(len(CATEGORIES))[:n_turns]]
    turns = []
    for category in categories:
        if rng.random() < _DESCRIBE_SHARE:
            instruction = BRIEF_INSTRUCTIONS[int(rng.integers(len(BRIEF_INSTRUCTIONS)))]
            turns.append((instruction, capitalize(caption(scene, rng))))
        else:
            turns.append((question(category, rng), answer_word(scene, category)))
    return turns


def finetune_records(
    scenes: Sequence[Scene], images: Sequence[str], n_text_only: int, rng: np.random.Generator
) -> list[Record]:
    """Instruction-tuning conversations in ``llava_v1_5_mix665k.json``'s layout.

    Image samples have 1-4 turns, each asking about a different attribute (single-word answers, like
    LLaVA-1.5's short-answer VQA data) or for a brief caption; one ``<image>`` in the first human turn, put
    after the text in some samples. Text-only samples (no ``image`` key) are general dialogue.

    Args:
        scenes: one scene per image sample.
        images: image paths relative to the image folder, aligned with ``scenes``.
        n_text_only: number of text-only samples to mix in.
        rng: numpy Generator.

    Returns:
        The records, shuffled.
    """
    records = []
    for scene, image in zip(scenes, images, strict=True):
        turns = _image_turns(scene, rng)
        first_user, first_answer = turns[0]
        turns[0] = (_with_image(first_user, image_last=rng.random() < _IMAGE_LAST_SHARE), first_answer)
        records.append(
            {"id": Path(image).stem, "image": image, "conversations": _turns_to_conversation(turns)}
        )
    for i in range(n_text_only):
        turns = text_only_turns(rng, int(rng.integers(1, 4)))
        records.append({"id": f"text-{i:06d}", "conversations": _turns_to_conversation(turns)})
    order = rng.permutation(len(records))
    return [records[i] for i in order]


def eval_records(
    scenes: Sequence[Scene], images: Sequence[str], categories: Sequence[str], rng: np.random.Generator
) -> tuple[list[Record], list[Record]]:
    """Held-out questions (``model_vqa`` question-file rows) and their answers.

    Args:
        scenes: one scene per question.
        images: image paths relative to the image folder, aligned with ``scenes``.
        categories: question category per scene (``color``, ``shape``, ``position`` or ``count``).
        rng: numpy Generator for the question phrasing.

    Returns:
        ``(questions, answers)``: ``{question_id, image, text, category}`` and
        ``{question_id, answer, category}``; ``answer`` is the capitalised word the assistant is trained to
        say.
    """
    questions, answers = [], []
    for qid, (scene, image, category) in enumerate(zip(scenes, images, categories, strict=True)):
        questions.append(
            {"question_id": qid, "image": image, "text": question(category, rng), "category": category}
        )
        answers.append({"question_id": qid, "answer": answer_word(scene, category), "category": category})
    return questions, answers


def write_json(path: Path, obj: object) -> None:
    """Write JSON deterministically (sorted keys are NOT used: record key order is part of the format)."""
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_jsonl(path: Path, rows: Sequence[Record]) -> None:
    """Write one JSON object per line."""
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
