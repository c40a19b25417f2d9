"""`python -m llava.serve.cli` driven through its real interface (a subprocess reading stdin)."""

from __future__ import annotations

import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from llava.eval.inference import load_image
from llava.eval.records import read_jsonl
from llava.serve.cli import read_user_turn

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_NEW_TOKENS = 8


def _run_cli(model_dir: Path, image: str, stdin: str, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1")
    command = [
        sys.executable, "-m", "llava.serve.cli", "--model-path", str(model_dir), "--image-file", image,
        "--device", "cpu", "--temperature", "0", "--max-new-tokens", str(MAX_NEW_TOKENS), *extra,
    ]  # fmt: skip
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300
    )


def test_cli_answers_about_an_image_and_exits(tiny_llava_dir, toy_world):
    from llava.eval import run_llava

    question = read_jsonl(toy_world.eval_questions)[0]
    text = question["text"].replace("\n", " ")  # the chat reads one line per turn
    image = str(Path(toy_world.image_folder) / question["image"])
    done = _run_cli(tiny_llava_dir, image, f"{text}\nAnd what else?\nexit\n", "--debug")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout

    # Same greedy answer as run_llava gives for the same image and question (same template).
    expected = run_llava.eval_model(
        Namespace(
            model_path=str(tiny_llava_dir), model_base=None, query=text, conv_mode=None,
            image_file=image, sep=",", temperature=0, top_p=None, num_beams=1, max_new_tokens=MAX_NEW_TOKENS,
            device="cpu",
        )
    )  # fmt: skip
    # The role prompt is printed before each read, the streamed answer after it; the third read got "exit".
    assert out.startswith("USER: ASSISTANT: " + expected + "\n")
    assert out.count("'outputs': ") == 2 and out.rstrip().endswith("USER: exit...")
    # Multi-turn: the second prompt holds the first exchange, image token only once.
    second_prompt = out.split("'prompt': ")[2]
    assert second_prompt.count("<image>") == 1 and expected in second_prompt
    assert "And what else?" in second_prompt


def test_cli_ends_at_end_of_input(tiny_llava_dir, toy_world):
    question = read_jsonl(toy_world.eval_questions)[0]
    image = str(Path(toy_world.image_folder) / question["image"])
    done = _run_cli(tiny_llava_dir, image, "What is it?\n")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("ASSISTANT: ") == 1 and done.stdout.rstrip().endswith("exit...")


def test_read_user_turn_stops_on_exit_empty_and_eof():
    def eof(_prompt):
        raise EOFError

    assert read_user_turn("USER: ", lambda _p: "What colour?") == "What colour?"
    assert read_user_turn("USER: ", lambda _p: "exit") is None
    assert read_user_turn("USER: ", lambda _p: "  ") is None
    assert read_user_turn("USER: ", eof) is None


def test_unreachable_url_fails_with_its_name():
    with pytest.raises(OSError, match="127.0.0.1:9"):
        load_image("http://127.0.0.1:9/cat.png", timeout=2)
