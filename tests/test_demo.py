"""A shortened `make demo` end to end, then every inference entrypoint on the LoRA model it trained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llava.eval.records import read_jsonl

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1")


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, **kwargs
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def demo(toy_world, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo")
    return out, run("-m", "llava.demo", "--quick", "--out", str(out), "--world", str(toy_world.root))


def test_demo_writes_table_results_and_loss_plot(demo):
    out, result = demo
    results = json.loads((out / "results.json").read_text())["stages"]
    assert [row["stage"] for row in results] == ["pretrain", "lora", "qlora"]
    for row in results:
        for key in ("accuracy", "blank_accuracy", "train_seconds", "peak_memory_mb", "checkpoint_mb"):
            assert isinstance(row[key], (int, float)), (row["stage"], key)
        assert set(row["per_type"]) == {"color", "shape", "position", "count"}
        assert row["peak_memory_mb"] > 100 and row["checkpoint_mb"] > 0
    assert (out / "losses.png").stat().st_size > 1000
    assert (out / "lora" / "adapter_model.safetensors").is_file()
    assert (out / "pretrain" / "mm_projector.bin").is_file()
    # The table and the output folder are shown to the user.
    assert "blank-image acc %" in result.stdout and str(out.resolve()) in result.stdout


def test_cli_answers_with_the_trained_lora(demo, toy_world):
    out, _ = demo
    question = read_jsonl(toy_world.eval_questions)[0]
    image = str(Path(toy_world.image_folder) / question["image"])
    result = run(
        "-m", "llava.serve.cli", "--model-path", str(out / "lora"), "--model-base", str(toy_world.llm_dir),
        "--image-file", image, "--device", "cpu", "--temperature", "0", "--max-new-tokens", "6",
        input=question["text"].replace("\n", " ") + "\nexit\n", timeout=300,
    )  # fmt: skip
    first_turn = result.stdout.split("USER: ")[1]
    answer = first_turn.removeprefix("ASSISTANT: ").strip()
    assert answer, result.stdout


def test_model_vqa_and_scorer_on_held_out_questions(demo, toy_world):
    out, _ = demo
    answers = out / "lora_answers.jsonl"
    records = read_jsonl(answers)
    fields = {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}
    assert records and fields <= set(records[0])
    scores = json.loads((out / "lora_scores.json").read_text())
    assert set(scores["categories"]) == {"color", "shape", "position", "count"}


def test_science_qa_report_on_the_toy_split(demo, toy_world, tmp_path):
    out, _ = demo
    sqa = Path(toy_world.scienceqa_dir)
    answers = tmp_path / "sqa_answers.jsonl"
    run(
        "-m", "llava.eval.model_vqa_science", "--model-path", str(out / "lora"),
        "--model-base", str(toy_world.llm_dir), "--question-file", str(sqa / "llava_test_CQM-A.json"),
        "--image-folder", str(sqa / "images" / "test"), "--answers-file", str(answers),
        "--single-pred-prompt", "--temperature", "0", "--max_new_tokens", "4", "--batch-size", "16",
        "--device", "cpu",
    )  # fmt: skip
    report = run(
        "-m", "llava.eval.eval_science_qa", "--base-dir", str(sqa), "--result-file", str(answers),
        "--output-file", str(tmp_path / "out.json"), "--output-result", str(tmp_path / "result.json"),
    )  # fmt: skip
    assert "Accuracy" in report.stdout and "IMG-Accuracy" in report.stdout
    for column in ("NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12"):
        assert column in report.stdout
    assert len(read_jsonl(answers)) == len(json.loads((sqa / "llava_test_CQM-A.json").read_text()))


def test_stages_reruns_one_fine_tune_on_the_saved_projector(demo, toy_world):
    out, _ = demo
    projector_before = (out / "pretrain" / "mm_projector.bin").read_bytes()
    run(
        "-m", "llava.demo", "--quick", "--out", str(out), "--world", str(toy_world.root),
        "--stages", "lora",
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())["stages"]
    assert [row["stage"] for row in results] == ["lora"]
    assert (out / "pretrain" / "mm_projector.bin").read_bytes() == projector_before


def test_fine_tune_stage_without_a_projector_is_refused_up_front(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "llava.demo", "--out", str(tmp_path), "--stages", "qlora"],
        cwd=REPO_ROOT, env=ENV, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert str(tmp_path / "pretrain" / "mm_projector.bin") in result.stderr
    assert not (tmp_path / "qlora").exists()
