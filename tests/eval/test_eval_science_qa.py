"""ScienceQA scoring: upstream's answer parsing and the standard category table, on fixed files."""

from __future__ import annotations

import json

import pytest

from llava.eval import eval_science_qa
from llava.eval.eval_science_qa import FAILED, evaluate, parse_answer, pred_index


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A", "A"),  # the whole text is a letter
        ("E", "E"),
        ("B. a sphere", "B"),  # letter, period, space
        ("C. ", "C"),
        ("B.", FAILED),  # no space after the period
        (" A", FAILED),  # upstream does not strip
        ("a", FAILED),  # lower case is not an option
        ("(A)", FAILED),
        ("The answer is D.", "D"),
        ("Because of X. The answer is B.", "B"),
        ("The answer is B, because", "B"),  # the `.` in upstream's regex matches any character
        ("The answer is C", FAILED),  # nothing after the letter: no match
        ("The answer is A. The answer is B.", FAILED),  # more than one match
        ("The answer is Z.", "Z"),  # parsed, but no problem has a choice Z (see pred_index)
        ("F", FAILED),  # not in the default options
        ("", FAILED),
    ],
)
def test_parse_answer(text, expected):
    assert parse_answer(text) == expected


def test_pred_index_only_within_the_problem_choices():
    assert pred_index("B", 2) == 1
    assert pred_index("C", 2) == -1
    assert pred_index("C", 3) == 2
    assert pred_index("Z", 5) == -1
    assert pred_index(FAILED, 5) == -1


def _problem(subject, hint, image, grade, n_choices, answer):
    return {
        "question": "q",
        "choices": [f"choice{i}" for i in range(n_choices)],
        "answer": answer,
        "hint": hint,
        "image": image,
        "subject": subject,
        "grade": grade,
        "split": "test",
    }


NAT, SOC, LAN = "natural science", "social science", "language science"
PROBLEMS = {
    "p1": _problem(NAT, "", "image.png", "grade3", 2, 0),
    "p2": _problem(NAT, "context", None, "grade8", 3, 2),
    "p3": _problem(SOC, "context", "image.png", "grade5", 4, 1),
    "p4": _problem(SOC, "", None, "grade10", 2, 1),
    "p5": _problem(LAN, "", None, "grade2", 2, 0),
    "p6": _problem(LAN, "context", None, "grade7", 2, 1),
    "p7": _problem(NAT, "", "image.png", "grade11", 3, 0),
    "p8": _problem(SOC, "", None, "grade1", 3, 2),
    "p9": _problem(NAT, "", None, "grade6", 2, 1),
    "p10": _problem(LAN, "", None, "grade9", 2, 0),
    "p11": _problem(NAT, "", None, "grade4", 2, 0),  # train split: ignored
    "p12": _problem(NAT, "", "image.png", "grade4", 2, 1),
}
SPLITS = {"test": ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10", "p12"], "train": ["p11"]}
IMG = "<image>\nq"
PREDICTIONS = [  # (question_id, prompt, text); p7 has no prediction
    ("p1", IMG, "A"),  # right
    ("p2", "q", "C. choice2"),  # right
    ("p3", IMG, "The answer is B."),  # right
    ("p4", "q", "The answer is A. The answer is B."),  # FAILED (two matches)
    ("p5", "q", "I think (A)"),  # FAILED
    ("p6", "q", "C"),  # letter outside the two choices: wrong
    ("p8", "q", "The answer is C"),  # FAILED (regex needs a character after the letter)
    ("p9", "q", "The answer is B, because"),  # right
    ("p10", "q", " A"),  # FAILED (no strip)
    ("p11", "q", "A"),  # not in the test split
    ("p12", IMG, "B."),  # FAILED
]


@pytest.fixture
def sqa_files(tmp_path):
    base = tmp_path / "scienceqa"
    base.mkdir()
    (base / "problems.json").write_text(json.dumps(PROBLEMS))
    (base / "pid_splits.json").write_text(json.dumps(SPLITS))
    result_file = tmp_path / "answers.jsonl"
    with result_file.open("w") as f:
        for qid, prompt, text in PREDICTIONS:
            record = {"question_id": qid, "prompt": prompt, "text": text, "answer_id": "x", "model_id": "m"}
            f.write(json.dumps(record) + "\n")
    return base, result_file


def test_table_matches_hand_computed_numbers(sqa_files, tmp_path, capsys):
    base, result_file = sqa_files
    output_file, output_result = tmp_path / "out" / "outputs.json", tmp_path / "out" / "result.json"
    eval_science_qa.main(
        [
            "--base-dir", str(base), "--result-file", str(result_file),
            "--output-file", str(output_file), "--output-result", str(output_result),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    # Right: p1, p2, p3, p9 of 11. IMG-Accuracy (prompts with <image>): p1, p3 right, p12 wrong;
    # p7 has no prediction, so its prompt is "Unknown" and it does not count there.
    assert printed.splitlines()[0] == "Total: 11, Correct: 4, Accuracy: 36.36%, IMG-Accuracy: 66.67%"

    result = json.loads(output_result.read_text())
    counts = {name: (row["correct"], row["count"]) for name, row in result["scores"].items()}
    assert counts == {
        "NAT": (3, 5),  # p1 p2 p9 right; p7 p12 wrong
        "SOC": (1, 3),  # p3 right; p4 p8 wrong
        "LAN": (0, 3),  # p5 p6 p10
        "TXT": (2, 3),  # hint: p2 p3 right, p6 wrong
        "IMG": (2, 4),  # image: p1 p3 right, p7 p12 wrong
        "NO": (1, 5),  # neither: p9 right; p4 p5 p8 p10 wrong
        "G1-6": (3, 6),  # p1 p3 p9 right; p5 p8 p12 wrong
        "G7-12": (1, 5),  # p2 right; p4 p6 p7 p10 wrong
        "Average": (4, 11),
    }
    accs = {name: round(row["acc"], 2) for name, row in result["scores"].items()}
    assert accs == {
        "NAT": 60.0, "SOC": 33.33, "LAN": 0.0, "TXT": 66.67, "IMG": 50.0, "NO": 20.0,
        "G1-6": 50.0, "G7-12": 20.0, "Average": 36.36,
    }  # fmt: skip
    assert "60.00" in printed and "33.33" in printed and "4/11" in printed

    assert result["count"] == 11 and result["correct"] == 4
    assert round(result["acc"], 2) == 36.36 and round(result["img_acc"], 2) == 66.67
    assert result["results"] == {
        "p1": 0, "p2": 2, "p3": 1, "p4": -1, "p5": -1, "p6": -1, "p7": -1, "p8": -1, "p9": 1,
        "p10": -1, "p12": -1,
    }  # fmt: skip
    assert result["outputs"]["p7"] == FAILED and "p11" not in result["outputs"]

    outputs = json.loads(output_file.read_text())
    assert [a["question_id"] for a in outputs["correct"]] == ["p1", "p2", "p3", "p9"]
    parsed = {a["question_id"]: a["parsed_ans"] for a in outputs["correct"] + outputs["incorrect"]}
    assert parsed == {
        "p1": "A", "p2": "C", "p3": "B", "p4": FAILED, "p5": FAILED, "p6": "C", "p7": FAILED,
        "p8": FAILED, "p9": "B", "p10": FAILED, "p12": FAILED,
    }  # fmt: skip
    missing = next(a for a in outputs["incorrect"] if a["question_id"] == "p7")
    assert missing == {
        "question_id": "p7", "parsed_ans": FAILED, "ground_truth": "A", "question": "Unknown",
        "pred": FAILED, "is_multimodal": False,
    }  # fmt: skip


def test_empty_categories_and_unknown_split(sqa_files):
    problems = {"p1": PROBLEMS["p1"]}
    _results, result = evaluate(problems, ["p1"], {"p1": {"text": "A", "prompt": "q"}})
    assert result["scores"]["SOC"] == {"correct": 0, "count": 0, "acc": None}
    assert result["img_acc"] is None  # no multimodal prompt: no division by zero
    assert "-" in eval_science_qa.format_table(result["scores"])
    base, result_file = sqa_files
    with pytest.raises(KeyError, match="'val'"):
        eval_science_qa.run(base, result_file, split="val")
    with pytest.raises(KeyError, match="p404"):
        evaluate(problems, ["p404"], {})
