"""LLaVA-format datasets: deterministic generation and upstream-valid records in the built world."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from llava.toy.datasets import eval_records, finetune_records, pretrain_records
from llava.toy.language import CATEGORIES, QUESTIONS, SINGLE_WORD_SUFFIX
from llava.toy.scenes import sample_scenes


def _small(seed: int):
    rng = np.random.default_rng(seed)
    scenes = sample_scenes(rng, 30)
    names = [f"train/{i:06d}.png" for i in range(30)]
    return (
        pretrain_records(scenes, names, rng),
        finetune_records(scenes, names, 5, rng),
        eval_records(scenes[:8], names[:8], list(CATEGORIES) * 2, rng),
    )


def test_generation_is_deterministic():
    assert json.dumps(_small(3)) == json.dumps(_small(3))
    assert json.dumps(_small(3)) != json.dumps(_small(4))


def _check_conversation(record: dict) -> None:
    turns = record["conversations"]
    assert turns and len(turns) % 2 == 0, record["id"]
    for i, turn in enumerate(turns):
        assert set(turn) == {"from", "value"}, record["id"]
        assert turn["from"] == ("human" if i % 2 == 0 else "gpt"), record["id"]
        assert turn["value"].strip(), record["id"]
    n_images = sum(turn["value"].count("<image>") for turn in turns)
    if "image" in record:
        assert n_images == 1 and "<image>" in turns[0]["value"], record["id"]
        first = turns[0]["value"]
        assert first.startswith("<image>\n") or first.endswith("\n<image>"), record["id"]
    else:
        assert n_images == 0, record["id"]


def test_finetune_records_are_valid(toy_world):
    records = json.loads(toy_world.finetune_json.read_text())
    assert len({r["id"] for r in records}) == len(records)
    text_only = [r for r in records if "image" not in r]
    assert 0.05 <= len(text_only) / len(records) <= 0.15
    image_last = 0
    n_turns = Counter()
    for record in records:
        _check_conversation(record)
        if "image" in record:
            assert (toy_world.image_folder / record["image"]).is_file(), record["id"]
            image_last += record["conversations"][0]["value"].endswith("<image>")
            n_turns[len(record["conversations"]) // 2] += 1
    assert image_last > 0, "no sample exercises upstream's move-<image>-to-front"
    assert set(n_turns) == {1, 2, 3, 4}


def test_pretrain_records_are_plain_caption_pairs(toy_world):
    records = json.loads(toy_world.pretrain_json.read_text())
    for record in records:
        _check_conversation(record)
        human, gpt = record["conversations"]
        assert len(record["conversations"]) == 2
        assert human["value"].startswith("<image>\n"), record["id"]
        assert "<image>" not in gpt["value"] and "\n" not in gpt["value"], record["id"]
        assert (toy_world.image_folder / record["image"]).is_file(), record["id"]


def test_eval_files_are_held_out_and_balanced(toy_world):
    questions = [json.loads(line) for line in toy_world.eval_questions.read_text().splitlines()]
    answers = {a["question_id"]: a for a in map(json.loads, toy_world.eval_answers.read_text().splitlines())}
    assert len(questions) == len(answers) == 200
    train_images = {r["image"] for r in json.loads(toy_world.finetune_json.read_text()) if "image" in r}
    train_images |= {r["image"] for r in json.loads(toy_world.pretrain_json.read_text())}
    assert not train_images & {q["image"] for q in questions}
    assert Counter(q["category"] for q in questions) == {c: 50 for c in CATEGORIES}
    for q in questions:
        assert set(q) == {"question_id", "image", "text", "category"}
        assert q["text"].endswith("\n" + SINGLE_WORD_SUFFIX) and "<image>" not in q["text"]
        assert (toy_world.image_folder / q["image"]).is_file()
        assert (toy_world.blank_image_folder / q["image"]).is_file()
        answer = answers[q["question_id"]]
        assert answer["category"] == q["category"] and len(answer["answer"].split()) == 1
    for category in CATEGORIES:
        counts = Counter(a["answer"] for a in answers.values() if a["category"] == category)
        assert max(counts.values()) / sum(counts.values()) <= 0.26, (category, counts)


def test_text_corpus_answers_only_what_its_context_states(toy_world):
    documents = toy_world.text_corpus.read_text().strip().split("\n\n")
    assert any("USER:" in d and "ASSISTANT:" in d and "</s>" in d for d in documents)
    image_questions = {q for phrasings in QUESTIONS.values() for q in phrasings}
    n_reading = 0
    for document in documents:
        if not any(q in document for q in image_questions):
            continue
        n_reading += 1
        # Every answer of a reading-comprehension dialogue is stated in its first user turn (a caption).
        context = document.split(" ASSISTANT: ")[0].lower()
        for reply in (part.split("</s>")[0] for part in document.split(" ASSISTANT: ")[1:]):
            word = reply.strip().lower()
            if len(word.split()) == 1:
                assert word in context or (word == "center" and "middle" in context), document
    assert n_reading > 0
