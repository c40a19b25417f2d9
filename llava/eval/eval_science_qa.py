"""Score ScienceQA answers (`model_vqa_science` output) as upstream LLaVA does, plus ScienceQA's table.

Answer parsing is upstream's (`eval_science_qa.py` at HEAD), in order:
1. the whole text is an option letter (`"B"`);
2. the text starts with a letter, a period and a space (`"B. sphere"`);
3. `The answer is ([A-Z]).` matches exactly once (the `.` is a regex wildcard, as upstream, so
   `"The answer is B"` at the very end does not match);
otherwise the answer is `FAILED`. A letter outside the problem's choices, a `FAILED` parse, or a
problem without a prediction (text `FAILED`, prompt `Unknown`) counts as wrong: upstream's
`get_pred_idx` returns -1 there (its random-guess line comes after the `return`, so it never runs).

Upstream prints `Total, Correct, Accuracy, IMG-Accuracy` (IMG = prompts that contain `<image>`). We
print that line unchanged, then ScienceQA's standard breakdown from `problems.json`: subject
(NAT/SOC/LAN), context modality (TXT = has a hint, IMG = has an image, NO = neither; TXT and IMG
overlap), grade (G1-6/G7-12) and the average.

    python -m llava.eval.eval_science_qa --base-dir DIR --result-file answers.jsonl \
        --output-file outputs.json --output-result result.json [--split test]
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llava.eval.records import index_by, read_json, read_jsonl

OPTIONS = ("A", "B", "C", "D", "E")
FAILED = "FAILED"
_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")

# (column, predicate on a problems.json record), in ScienceQA's table order.
CATEGORIES: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
    ("NAT", lambda p: p.get("subject") == "natural science"),
    ("SOC", lambda p: p.get("subject") == "social science"),
    ("LAN", lambda p: p.get("subject") == "language science"),
    ("TXT", lambda p: bool(p.get("hint"))),
    ("IMG", lambda p: bool(p.get("image"))),
    ("NO", lambda p: not p.get("hint") and not p.get("image")),
    ("G1-6", lambda p: p.get("grade") in {f"grade{g}" for g in range(1, 7)}),
    ("G7-12", lambda p: p.get("grade") in {f"grade{g}" for g in range(7, 13)}),
)


def parse_answer(text: str, options: Sequence[str] = OPTIONS) -> str:
    """The option letter a prediction gives, or `FAILED` (upstream's three rules, module docstring)."""
    if text in options:
        return text
    if len(text) >= 3 and text[0] in options and text[1:3] == ". ":
        return text[0]
    found = _ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else FAILED


def pred_index(answer: str, num_choices: int, options: Sequence[str] = OPTIONS) -> int:
    """Index of the parsed letter among the problem's choices, or -1 (FAILED / not a choice)."""
    if answer in options[:num_choices]:
        return list(options).index(answer)
    return -1


def _accuracy(correct: int, total: int) -> float | None:
    return None if total == 0 else correct / total * 100


def evaluate(
    problems: dict[str, dict[str, Any]],
    split_ids: Sequence[str],
    predictions: dict[str, dict[str, Any]],
    options: Sequence[str] = OPTIONS,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score the predictions of one split.

    Args:
        problems: `problems.json`: id → problem (`choices`, `answer`, `subject`, `hint`, `image`, `grade`).
        split_ids: Problem ids of the split (`pid_splits.json[split]`).
        predictions: question_id → answer record (`text`, `prompt`).
        options: Option letters.

    Returns:
        `(results, sqa_results)`: upstream's two output objects — `{"correct": [...], "incorrect": [...]}`
        analyses, and `{"acc", "correct", "count", "results", "outputs"}` — the latter extended with
        `img_acc` (upstream's IMG-Accuracy) and `scores` (ScienceQA's table: column → {correct,
        count, acc}, plus `Average`).

    Raises:
        KeyError: naming the id when a split id is not in `problems`.
    """
    results: dict[str, list[dict[str, Any]]] = {"correct": [], "incorrect": []}
    by_pid: dict[str, int] = {}
    outputs: dict[str, str] = {}
    table = {name: [0, 0] for name, _ in CATEGORIES}
    for pid in split_ids:
        if pid not in problems:
            raise KeyError(f"Split problem id {pid!r} is not in problems.json")
        problem = problems[pid]
        pred = predictions.get(pid, {"text": FAILED, "prompt": "Unknown"})
        text = pred["text"]
        answer = parse_answer(text, options)
        idx = pred_index(answer, len(problem["choices"]), options)
        is_correct = idx == problem["answer"]
        analysis = {
            "question_id": pid,
            "parsed_ans": answer,
            "ground_truth": options[problem["answer"]],
            "question": pred["prompt"],
            "pred": text,
            "is_multimodal": "<image>" in pred["prompt"],
        }
        results["correct" if is_correct else "incorrect"].append(analysis)
        by_pid[pid] = idx
        outputs[pid] = text
        for name, member in CATEGORIES:
            if member(problem):
                table[name][0] += int(is_correct)
                table[name][1] += 1

    correct, total = len(results["correct"]), len(results["correct"]) + len(results["incorrect"])
    img_correct = sum(a["is_multimodal"] for a in results["correct"])
    img_total = img_correct + sum(a["is_multimodal"] for a in results["incorrect"])
    scores = {name: {"correct": c, "count": n, "acc": _accuracy(c, n)} for name, (c, n) in table.items()}
    scores["Average"] = {"correct": correct, "count": total, "acc": _accuracy(correct, total)}
    sqa_results = {
        "acc": _accuracy(correct, total),
        "correct": correct,
        "count": total,
        "img_acc": _accuracy(img_correct, img_total),
        "img_correct": img_correct,
        "img_count": img_total,
        "results": by_pid,
        "outputs": outputs,
        "scores": scores,
    }
    return results, sqa_results


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def summary_line(sqa_results: dict[str, Any]) -> str:
    """Upstream's one-line summary."""
    return (
        f"Total: {sqa_results['count']}, Correct: {sqa_results['correct']}, "
        f"Accuracy: {_pct(sqa_results['acc'])}%, IMG-Accuracy: {_pct(sqa_results['img_acc'])}%"
    )


def format_table(scores: dict[str, dict[str, Any]]) -> str:
    """ScienceQA's accuracy table (percent; `-` for an empty category) with the counts under it."""
    names = [name for name, _ in CATEGORIES] + ["Average"]
    widths = [max(len(n), 6) for n in names]
    rows = [
        names,
        [_pct(scores[n]["acc"]) for n in names],
        [f"{scores[n]['correct']}/{scores[n]['count']}" for n in names],
    ]
    return "\n".join(" | ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def run(
    base_dir: str | Path,
    result_file: str | Path,
    *,
    split: str = "test",
    output_file: str | Path | None = None,
    output_result: str | Path | None = None,
    options: Sequence[str] = OPTIONS,
) -> dict[str, Any]:
    """Load the files, score, print upstream's line and the table, write the two outputs.

    Raises:
        KeyError: naming the split when `pid_splits.json` has no such split.
    """
    base_dir = Path(base_dir)
    splits = read_json(base_dir / "pid_splits.json")
    if split not in splits:
        raise KeyError(f"Split {split!r} not in {base_dir / 'pid_splits.json'} (has {sorted(splits)})")
    problems = read_json(base_dir / "problems.json")
    predictions = index_by(read_jsonl(result_file), "question_id", str(result_file))
    results, sqa_results = evaluate(problems, splits[split], predictions, options)
    print(summary_line(sqa_results))
    print(format_table(sqa_results["scores"]))
    for path, payload in ((output_file, results), (output_result, sqa_results)):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                json.dump(payload, f, indent=2)
    return sqa_results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base-dir", type=str, required=True, help="folder with problems.json, pid_splits.json"
    )
    parser.add_argument("--result-file", type=str, required=True, help="answers jsonl from model_vqa_science")
    parser.add_argument("--output-file", type=str, default=None, help="per-question analysis (json)")
    parser.add_argument("--output-result", type=str, default=None, help="scores and parsed indices (json)")
    parser.add_argument("--split", type=str, default="test")
    parser.add_argument(
        "--options", nargs="+", default=list(OPTIONS), help="option letters (default A B C D E)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run(
        args.base_dir,
        args.result_file,
        split=args.split,
        output_file=args.output_file,
        output_result=args.output_result,
        options=args.options,
    )


if __name__ == "__main__":
    main()
