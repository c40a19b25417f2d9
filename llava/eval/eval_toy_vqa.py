"""Score `model_vqa` answers on the toy world's held-out questions.

A prediction is right when, lower-cased and stripped of punctuation and surrounding whitespace, it
equals the (single-word) reference answer: `"Red."` matches `red`, `"It is red"` does not. A question
without a prediction counts as wrong. Next to each category's accuracy we report the majority-answer
baseline: the accuracy of always answering that category's most frequent reference answer (ties go
to the alphabetically first answer), i.e. what a model that ignores the image can reach.

    python -m llava.eval.eval_toy_vqa --answers-file answers.jsonl --gt-file eval_answers.jsonl \
        [--output-file scores.json]
"""

from __future__ import annotations

import argparse
import json
import string
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llava.eval.records import index_by, read_jsonl

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Lower-case, drop punctuation, collapse whitespace."""
    return " ".join(str(text).lower().translate(_PUNCTUATION).split())


def is_match(prediction: str, answer: str) -> bool:
    """Case/punctuation-insensitive exact match of a single-word answer."""
    return normalize(prediction) == normalize(answer)


def majority_answer(answers: Sequence[str]) -> tuple[str, int]:
    """The most frequent normalized answer (ties: alphabetically first) and its count."""
    counts = Counter(normalize(a) for a in answers)
    best = min(counts.items(), key=lambda item: (-item[1], item[0]))
    return best


def _pct(correct: int, total: int) -> float | None:
    return None if total == 0 else correct / total * 100


def score(predictions: dict[Any, dict[str, Any]], references: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy overall and per category, with the majority-answer baseline.

    Args:
        predictions: question_id → answer record (`text`).
        references: `eval_answers` records (`question_id`, `answer`, `category`).

    Returns:
        `{"overall": row, "categories": {category: row}, "missing": [question_id, ...],
        "unexpected": [question_id, ...]}` where a row is `{count, correct, acc, majority_answer,
        majority_correct, majority_acc}` (overall: the sum of the per-category baselines).
    """
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ref in references:
        by_category[ref["category"]].append(ref)
    reference_ids = {ref["question_id"] for ref in references}
    missing = [ref["question_id"] for ref in references if ref["question_id"] not in predictions]
    unexpected = sorted((qid for qid in predictions if qid not in reference_ids), key=str)

    categories = {}
    for category in sorted(by_category):
        refs = by_category[category]
        correct = sum(
            ref["question_id"] in predictions
            and is_match(predictions[ref["question_id"]]["text"], ref["answer"])
            for ref in refs
        )
        majority, majority_correct = majority_answer([ref["answer"] for ref in refs])
        categories[category] = {
            "count": len(refs),
            "correct": correct,
            "acc": _pct(correct, len(refs)),
            "majority_answer": majority,
            "majority_correct": majority_correct,
            "majority_acc": _pct(majority_correct, len(refs)),
        }
    count = sum(row["count"] for row in categories.values())
    correct = sum(row["correct"] for row in categories.values())
    majority_correct = sum(row["majority_correct"] for row in categories.values())
    overall = {
        "count": count,
        "correct": correct,
        "acc": _pct(correct, count),
        "majority_answer": None,
        "majority_correct": majority_correct,
        "majority_acc": _pct(majority_correct, count),
    }
    return {"overall": overall, "categories": categories, "missing": missing, "unexpected": unexpected}


def format_report(scores: dict[str, Any]) -> str:
    """A plain-text table: category, count, accuracy, majority answer and its accuracy."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:6.2f}"

    lines = [f"{'category':<10} {'n':>5} {'acc%':>7} {'correct':>8}   {'majority':<10} {'base%':>7}"]
    rows = [*scores["categories"].items(), ("overall", scores["overall"])]
    for name, row in rows:
        majority = row["majority_answer"] or "(per cat.)"
        lines.append(
            f"{name:<10} {row['count']:>5} {pct(row['acc']):>7} {row['correct']:>8}   "
            f"{majority:<10} {pct(row['majority_acc']):>7}"
        )
    if scores["missing"]:
        lines.append(f"{len(scores['missing'])} question(s) have no prediction (counted wrong)")
    if scores["unexpected"]:
        lines.append(f"{len(scores['unexpected'])} prediction(s) answer no reference question (ignored)")
    return "\n".join(lines)


def run(
    answers_file: str | Path, gt_file: str | Path, output_file: str | Path | None = None
) -> dict[str, Any]:
    """Load, score, print the report and optionally write the scores as json."""
    predictions = index_by(read_jsonl(answers_file), "question_id", str(answers_file))
    references = read_jsonl(gt_file)
    for i, ref in enumerate(references):
        absent = {"question_id", "answer", "category"} - ref.keys()
        if absent:
            raise ValueError(f"{gt_file}: record #{i} lacks {sorted(absent)}: {ref}")
    scores = score(predictions, references)
    print(format_report(scores))
    if output_file is not None:
        Path(output_file).parent.mkdir(parents=True, exist_ok=True)
        with open(output_file, "w", encoding="utf-8") as f:
            json.dump(scores, f, indent=2)
    return scores


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--answers-file", type=str, required=True, help="model_vqa output (jsonl)")
    parser.add_argument("--gt-file", type=str, required=True, help="toy eval_answers (jsonl)")
    parser.add_argument("--output-file", type=str, default=None, help="write the scores here (json)")
    args = parser.parse_args(argv)
    run(args.answers_file, args.gt_file, args.output_file)


if __name__ == "__main__":
    main()
