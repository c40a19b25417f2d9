"""Toy-VQA scorer on fixed files (explicit numbers)."""

from __future__ import annotations

import json

import pytest

from llava.eval import eval_toy_vqa
from llava.eval.eval_toy_vqa import is_match, majority_answer, normalize

REFERENCES = [
    ("q1", "red", "color"),
    ("q2", "red", "color"),
    ("q3", "blue", "color"),
    ("q4", "circle", "shape"),
    ("q5", "square", "shape"),
    ("q6", "square", "shape"),
    ("q7", "2", "count"),
    ("q8", "3", "count"),
]
PREDICTIONS = [
    ("q1", "Red."),  # right (case, punctuation)
    ("q2", "blue"),  # wrong
    ("q3", " BLUE "),  # right
    ("q4", "It is a circle"),  # wrong: not the single word
    ("q5", "square!"),  # right
    ("q7", "2"),  # right
    ("q8", "three"),  # wrong
    ("q99", "red"),  # answers no reference question
]  # q6 has no prediction: wrong


def test_normalize_and_match():
    assert normalize("  Red.\n") == "red"
    assert normalize("It's  BLUE!") == "its blue"
    assert is_match("Circle.", "circle")
    assert not is_match("a circle", "circle")
    assert majority_answer(["b", "a", "B"]) == ("b", 2)
    assert majority_answer(["3", "2"]) == ("2", 1)  # tie: alphabetically first


def test_scores_match_hand_computed_numbers(tmp_path, capsys):
    answers, gt, out = tmp_path / "answers.jsonl", tmp_path / "gt.jsonl", tmp_path / "scores.json"
    answers.write_text("".join(json.dumps({"question_id": q, "text": t}) + "\n" for q, t in PREDICTIONS))
    gt.write_text(
        "".join(json.dumps({"question_id": q, "answer": a, "category": c}) + "\n" for q, a, c in REFERENCES)
    )
    eval_toy_vqa.main(["--answers-file", str(answers), "--gt-file", str(gt), "--output-file", str(out)])
    scores = json.loads(out.read_text())
    rows = {
        name: (row["correct"], row["count"], row["majority_answer"], row["majority_correct"])
        for name, row in scores["categories"].items()
    }
    assert rows == {
        "color": (2, 3, "red", 2),
        "count": (1, 2, "2", 1),
        "shape": (1, 3, "square", 2),
    }
    assert scores["overall"]["correct"] == 4 and scores["overall"]["count"] == 8
    assert scores["overall"]["acc"] == pytest.approx(50.0)
    assert scores["overall"]["majority_acc"] == pytest.approx(62.5)
    assert scores["categories"]["color"]["acc"] == pytest.approx(200 / 3)
    assert scores["missing"] == ["q6"] and scores["unexpected"] == ["q99"]
    printed = capsys.readouterr().out
    assert "color" in printed and "66.67" in printed and "62.50" in printed
    assert "1 question(s) have no prediction" in printed


def test_reference_without_category_fails_loudly(tmp_path):
    answers, gt = tmp_path / "answers.jsonl", tmp_path / "gt.jsonl"
    answers.write_text("")
    gt.write_text(json.dumps({"question_id": "q1", "answer": "red"}) + "\n")
    with pytest.raises(ValueError, match=r"record #0 lacks \['category'\]"):
        eval_toy_vqa.run(answers, gt)
