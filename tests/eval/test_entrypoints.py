"""The eval entrypoints end to end on a tiny saved LLaVA and the toy world (CPU, greedy)."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from llava.eval import eval_science_qa, model_vqa, model_vqa_science, run_llava
from llava.eval.records import read_json, read_jsonl

NUM_QUESTIONS = 6
MAX_NEW_TOKENS = 8
ANSWER_FIELDS = {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}


@pytest.fixture(scope="module")
def question_file(toy_world, tmp_path_factory) -> Path:
    """The first toy eval questions, one per line as model_vqa reads them."""
    questions = read_jsonl(toy_world.eval_questions)[:NUM_QUESTIONS]
    path = tmp_path_factory.mktemp("vqa") / "questions.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in questions))
    return path


def _model_vqa(model_dir, world, question_file, answers_file, *extra: str) -> list[dict]:
    model_vqa.main(
        [
            "--model-path", str(model_dir), "--question-file", str(question_file),
            "--image-folder", str(world.image_folder), "--answers-file", str(answers_file),
            "--temperature", "0", "--max_new_tokens", str(MAX_NEW_TOKENS), "--device", "cpu", *extra,
        ]
    )  # fmt: skip
    return read_jsonl(answers_file)


@pytest.fixture(scope="module")
def one_by_one(tiny_llava_dir, toy_world, question_file, tmp_path_factory) -> list[dict]:
    answers_file = tmp_path_factory.mktemp("vqa") / "nested" / "answers.jsonl"
    return _model_vqa(tiny_llava_dir, toy_world, question_file, answers_file)


def test_model_vqa_writes_upstream_records(one_by_one, question_file):
    questions = read_jsonl(question_file)
    assert len(one_by_one) == NUM_QUESTIONS
    for question, answer in zip(questions, one_by_one):
        assert set(answer) == ANSWER_FIELDS
        assert answer["question_id"] == question["question_id"]
        assert answer["prompt"] == question["text"]
        assert answer["model_id"] == "llava-v1-toy"
        assert answer["metadata"] == {}
        assert isinstance(answer["text"], str) and answer["text"] == answer["text"].strip()
        assert len(answer["answer_id"]) == 22
    assert len({a["answer_id"] for a in one_by_one}) == NUM_QUESTIONS


def test_batched_answers_equal_one_by_one(one_by_one, tiny_llava_dir, toy_world, question_file, tmp_path):
    # 6 questions in batches of 4: one full, left-padded batch and one partial batch.
    batched = _model_vqa(tiny_llava_dir, toy_world, question_file, tmp_path / "b4.jsonl", "--batch-size", "4")
    assert [a["question_id"] for a in batched] == [a["question_id"] for a in one_by_one]
    assert [a["text"] for a in batched] == [a["text"] for a in one_by_one]


def test_batched_logits_equal_one_by_one(tiny_llava_dir, toy_world, question_file):
    """Stronger than comparing texts (a fresh projector gives similar answers for every image): each
    row of a left-padded batch gets the logits it gets alone, and those differ between images."""
    from llava.eval import inference
    from llava.mm_utils import tokenizer_image_token

    loaded = inference.load_model(str(tiny_llava_dir), device="cpu")
    tokenizer, model = loaded.tokenizer, loaded.model
    ids, pixels, sizes = [], [], []
    for q in read_jsonl(question_file)[:4]:
        prompt, _ = inference.build_prompt("llava_v1", inference.add_image_tokens(q["text"], 1, False))
        ids.append(tokenizer_image_token(prompt, tokenizer, return_tensors="pt"))
        image = inference.load_image(str(Path(toy_world.image_folder) / q["image"]))
        pixels += inference.image_tensors(loaded, [image])
        sizes.append(image.size)
    assert len({len(x) for x in ids}) > 1  # the batch really is padded

    def logits(rows: list[int]):
        padded, mask = inference.left_pad([ids[i] for i in rows], inference.pad_id(tokenizer))
        out = model.generate(
            padded, attention_mask=mask, images=inference.batch_images([pixels[i] for i in rows]),
            image_sizes=[sizes[i] for i in rows], do_sample=False, max_new_tokens=3, output_logits=True,
            return_dict_in_generate=True, pad_token_id=inference.pad_id(tokenizer),
        )  # fmt: skip
        return torch.stack(out.logits, dim=1)  # (B, steps, V)

    together = logits([0, 1, 2, 3])
    alone = torch.cat([logits([i]) for i in range(4)])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)
    assert (alone[0, 0] - alone[1, 0]).abs().max() > 1e-3  # rows see different inputs


def test_chunk_answers_equal_the_full_run(one_by_one, tiny_llava_dir, toy_world, question_file, tmp_path):
    chunk = _model_vqa(
        tiny_llava_dir,
        toy_world,
        question_file,
        tmp_path / "c.jsonl",
        "--num-chunks",
        "2",
        "--chunk-idx",
        "1",
    )
    assert [(a["question_id"], a["text"]) for a in chunk] == [
        (a["question_id"], a["text"]) for a in one_by_one[3:]
    ]


def test_run_llava_gives_the_model_vqa_answer(one_by_one, tiny_llava_dir, toy_world, question_file, capsys):
    question = read_jsonl(question_file)[0]
    image = str(Path(toy_world.image_folder) / question["image"])
    answer = run_llava.main(
        [
            "--model-path", str(tiny_llava_dir), "--image-file", image, "--query", question["text"],
            "--temperature", "0", "--max_new_tokens", str(MAX_NEW_TOKENS), "--device", "cpu",
        ]
    )  # fmt: skip
    assert answer == one_by_one[0]["text"]
    assert capsys.readouterr().out.splitlines()[-1] == answer

    # Upstream's programmatic style: an argument object, here reusing an already loaded model.
    from llava.eval.inference import load_model

    loaded = load_model(str(tiny_llava_dir), device="cpu")
    args = Namespace(
        model_path=str(tiny_llava_dir), model_base=None, model_name="llava-v1-toy", query=question["text"],
        conv_mode=None, image_file=image, sep=",", temperature=0, top_p=None, num_beams=1,
        max_new_tokens=MAX_NEW_TOKENS, model=loaded.model, tokenizer=loaded.tokenizer,
        image_processor=loaded.image_processor,
    )  # fmt: skip
    assert run_llava.eval_model(args) == answer


def test_science_qa_answers_and_report(tiny_llava_dir, toy_world, tmp_path, capsys):
    sqa = Path(toy_world.scienceqa_dir)
    # The first of 5 chunks (20 of the 100 test questions) keeps the test fast; the others are
    # missing from the answers, which eval_science_qa counts as FAILED.
    records = read_json(sqa / "llava_test_CQM-A.json")[:20]
    assert any("image" in r for r in records) and any("image" not in r for r in records)
    common = [
        "--model-path", str(tiny_llava_dir), "--question-file", str(sqa / "llava_test_CQM-A.json"),
        "--image-folder", str(sqa / "images" / "test"), "--single-pred-prompt", "--temperature", "0",
        "--max_new_tokens", "4", "--device", "cpu", "--conv-mode", "vicuna_v1",
        "--num-chunks", "5", "--chunk-idx", "0",
    ]  # fmt: skip
    model_vqa_science.main([*common, "--answers-file", str(tmp_path / "a1.jsonl")])
    model_vqa_science.main([*common, "--answers-file", str(tmp_path / "a3.jsonl"), "--batch-size", "3"])
    one, three = read_jsonl(tmp_path / "a1.jsonl"), read_jsonl(tmp_path / "a3.jsonl")
    assert [a["question_id"] for a in one] == [r["id"] for r in records]
    assert [a["text"] for a in three] == [a["text"] for a in one]
    suffix = "\nAnswer with the option's letter from the given choices directly."
    for record, answer in zip(records, one):
        assert set(answer) == ANSWER_FIELDS
        assert answer["prompt"].endswith(suffix)
        assert answer["prompt"].startswith("<image>\n") == ("image" in record)

    capsys.readouterr()
    eval_science_qa.main(
        [
            "--base-dir", str(sqa), "--result-file", str(tmp_path / "a1.jsonl"),
            "--output-file", str(tmp_path / "out.json"), "--output-result", str(tmp_path / "res.json"),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "res.json").read_text())
    test_ids = read_json(sqa / "pid_splits.json")["test"]
    assert result["count"] == len(test_ids)
    assert printed.startswith(f"Total: {len(test_ids)}, Correct: {result['correct']}, Accuracy: ")
    assert "IMG-Accuracy" in printed and "G7-12" in printed.splitlines()[1]
    assert set(result["scores"]) == {"NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "Average"}
    assert result["scores"]["Average"]["count"] == len(test_ids)
    assert sum(text == "FAILED" for text in result["outputs"].values()) >= len(test_ids) - len(records)
