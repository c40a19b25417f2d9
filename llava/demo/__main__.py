"""`python -m llava.demo`: build (or reuse) the toy world, then projector pretraining → LoRA → QLoRA,
each through the real training entrypoint, each evaluated on held-out questions with real and with
blank images. Prints a table and writes `results.json` and `losses.png` under the output folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from PIL import Image

from llava.demo import report
from llava.demo.recipes import toy_recipe
from llava.demo.stages import folder_size_mb, run_module
from llava.eval.eval_toy_vqa import run as score_answers
from llava.toy import ensure_world

# Toy-sized schedules: long enough to learn the world, short enough for a laptop CPU.
_FINETUNE = {
    "max_steps": 450,
    "per_device_train_batch_size": 16,
    "learning_rate": 2e-3,
    "save_steps": 450,
    "lora_r": 64,
    "lora_alpha": 128,
    "mm_projector_lr": 1e-3,
}
FULL_SCHEDULE = {
    "pretrain": {
        "max_steps": 120,
        "per_device_train_batch_size": 32,
        "learning_rate": 2e-3,
        "save_steps": 120,
    },
    "lora": _FINETUNE,
    "qlora": _FINETUNE,
}
QUICK_SCHEDULE = {stage: {**flags, "max_steps": 3, "save_steps": 3} for stage, flags in FULL_SCHEDULE.items()}
STAGES = ("pretrain", "lora", "qlora")
# Which conversation template each stage's model answers with (pretraining learns captions only).
CONV_MODE = {"pretrain": "plain", "lora": "vicuna_v1", "qlora": "vicuna_v1"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="where every stage writes")
    parser.add_argument(
        "--world", type=Path, default=Path("playground/toy"), help="toy world folder (built if missing)"
    )
    parser.add_argument("--seed", type=int, default=0, help="toy world seed")
    parser.add_argument(
        "--quick", action="store_true", help="a few steps and questions per stage (smoke test)"
    )
    parser.add_argument(
        "--stages",
        nargs="+",
        choices=STAGES,
        default=list(STAGES),
        help="which stages to run, in order (each fine-tune needs the pretrain stage's projector)",
    )
    args = parser.parse_args(argv)
    projector = args.out / "pretrain" / "mm_projector.bin"
    if "pretrain" not in args.stages and not projector.is_file():
        parser.error(f"--stages {' '.join(args.stages)} needs {projector}: run the pretrain stage first")

    started = time.perf_counter()
    print(f"[demo] toy world: {args.world}", flush=True)
    world = ensure_world(args.world, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    questions, references = _question_files(world, args.out, per_category=2 if args.quick else None)
    blank_folder = _blank_images(world, questions, args.out / "blank_images")
    schedule = QUICK_SCHEDULE if args.quick else FULL_SCHEDULE

    rows, curves = [], {}
    for stage in args.stages:
        output_dir = args.out / stage
        extra = {} if stage == "pretrain" else {"pretrain_mm_mlp_adapter": projector}
        print(f"\n[demo] === {stage}: training ===", flush=True)
        run = run_module(
            "llava.train.train", toy_recipe(world, stage, output_dir, **schedule[stage], **extra)
        )
        row = {
            "stage": stage,
            "train_seconds": run.seconds,
            "peak_memory_mb": run.peak_rss_mb,
            "checkpoint_mb": folder_size_mb(output_dir),
        }
        print(f"[demo] === {stage}: evaluating on {questions.name} ===", flush=True)
        row.update(_evaluate(world, stage, output_dir, questions, references, blank_folder, args.out))
        rows.append(row)
        curves[stage] = report.loss_history(output_dir)

    report.write_results(rows, args.out / "results.json")
    report.plot_losses(curves, args.out / "losses.png")
    print("\n" + report.format_table(rows))
    print("\naccuracy % per question type\n" + report.format_per_type(rows))
    print(f"\n[demo] done in {time.perf_counter() - started:.0f} s; results in {args.out.resolve()}")


def _question_files(world, out: Path, per_category: int | None) -> tuple[Path, Path]:
    """The held-out questions and their answers, or the first `per_category` of each type (quick run)."""
    if per_category is None:
        return Path(world.eval_questions), Path(world.eval_answers)
    kept, seen = [], {}
    for record in _read_jsonl(Path(world.eval_questions)):
        seen[record["category"]] = seen.get(record["category"], 0) + 1
        if seen[record["category"]] <= per_category:
            kept.append(record)
    ids = {r["question_id"] for r in kept}
    answers = [r for r in _read_jsonl(Path(world.eval_answers)) if r["question_id"] in ids]
    questions_path, answers_path = out / "questions_quick.jsonl", out / "answers_quick.jsonl"
    questions_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    answers_path.write_text("".join(json.dumps(r) + "\n" for r in answers))
    return questions_path, answers_path


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _blank_images(world, questions: Path, folder: Path) -> Path:
    """A blank image in place of every question's image: answers must then fall to guessing."""
    for record in _read_jsonl(questions):
        name = record["image"]
        target = folder / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(Path(world.image_folder) / name) as image:
                Image.new("RGB", image.size, (255, 255, 255)).save(target)
    return folder


def _evaluate(
    world, stage: str, output_dir: Path, questions: Path, references: Path, blank_folder: Path, out: Path
) -> dict:
    result = {}
    for variant, image_folder in (("", world.image_folder), ("blank_", blank_folder)):
        answers = out / f"{stage}_{variant}answers.jsonl"
        run_module(
            "llava.eval.model_vqa",
            [
                *("--model-path", output_dir, "--model-base", world.llm_dir, "--conv-mode", CONV_MODE[stage]),
                *("--question-file", questions, "--image-folder", image_folder, "--answers-file", answers),
                *("--temperature", "0", "--max_new_tokens", "6", "--batch-size", "16", "--device", "cpu"),
                # The QLoRA adapter is evaluated on the 4-bit base it was trained against.
                *(["--load-4bit"] if stage == "qlora" else []),
            ],
        )
        scores = score_answers(answers, references, out / f"{stage}_{variant}scores.json")
        result[f"{variant}accuracy"] = scores["overall"]["acc"]
        if not variant:
            result["majority_baseline"] = scores["overall"]["majority_acc"]
            result["per_type"] = {name: row["acc"] for name, row in scores["categories"].items()}
    return result


if __name__ == "__main__":
    main()
