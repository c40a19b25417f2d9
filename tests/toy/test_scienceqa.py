"""The ScienceQA-format split: upstream fields, splits, images and LLaVA's converted prompts."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

FIELDS = {
    "question",
    "choices",
    "answer",
    "hint",
    "image",
    "task",
    "grade",
    "subject",
    "topic",
    "category",
    "skill",
    "lecture",
    "solution",
    "split",
}


@pytest.fixture(scope="module")
def sqa(toy_world):
    root = toy_world.scienceqa_dir
    return (
        root,
        json.loads((root / "problems.json").read_text()),
        json.loads((root / "pid_splits.json").read_text()),
    )


def test_problems_have_scienceqa_fields(sqa):
    root, problems, splits = sqa
    assert Counter(p["subject"] for p in problems.values()).keys() == {
        "natural science",
        "social science",
        "language science",
    }
    assert {int(p["grade"].removeprefix("grade")) for p in problems.values()} == set(range(1, 13))
    for pid, problem in problems.items():
        assert set(problem) == FIELDS, pid
        assert 0 <= problem["answer"] < len(problem["choices"]) <= 5, pid
        assert len(set(problem["choices"])) == len(problem["choices"]), pid
        assert pid in splits[problem["split"]]
        if problem["image"] is not None:
            assert problem["image"] == "image.png"
            assert (root / "images" / problem["split"] / pid / "image.png").is_file(), pid
    assert {"train", "val", "test", "minival", "trainval", "minitest"} <= set(splits)
    assert set(splits["minival"]) <= set(splits["val"])
    assert 90 <= len(splits["test"]) <= 120


def test_llava_converted_files(sqa):
    root, problems, splits = sqa
    test = json.loads((root / "llava_test_CQM-A.json").read_text())
    assert [r["id"] for r in test] == splits["test"]
    for record in test:
        problem = problems[record["id"]]
        human, gpt = (turn["value"] for turn in record["conversations"])
        letters = "ABCDE"[: len(problem["choices"])]
        options = " ".join(
            f"({letter}) {choice}" for letter, choice in zip(letters, problem["choices"], strict=True)
        )
        prompt = f"Context: {problem['hint'] or 'N/A'}\nQuestion: {problem['question']}\nOptions: {options}"
        assert gpt == f"The answer is {'ABCDE'[problem['answer']]}."
        if problem["image"] is None:
            assert "image" not in record and human == prompt
        else:
            assert record["image"] == f"{record['id']}/image.png" and human == prompt + "\n<image>"
    train = json.loads((root / "llava_train_QCM-LEA.json").read_text())
    assert [r["id"] for r in train] == splits["train"]
    for record in train:
        human, gpt = (turn["value"] for turn in record["conversations"])
        assert not human.startswith("Question: ") and "\nContext: " in human and "\nOptions: (A) " in human
        assert re.search(r" The answer is [A-E]\.$", gpt)
