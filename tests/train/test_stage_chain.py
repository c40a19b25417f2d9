"""Projector pretraining → LoRA fine-tune, chained through the real entrypoint, lowers the held-out loss."""

from __future__ import annotations

import json

import torch

from llava.conversation import template_for_version
from llava.data import make_supervised_data_module
from llava.demo.recipes import toy_recipe
from llava.eval.records import read_jsonl
from llava.model.builder import load_pretrained_model
from llava.tokenization import configure_pad_token
from llava.train.train import build_model_and_tokenizer, parse_arguments, train


def held_out_file(world, path) -> str:
    """The held-out questions with their answers, as single-turn LLaVA conversations."""
    answers = {r["question_id"]: r["answer"] for r in read_jsonl(world.eval_answers)}
    records = [
        {
            "id": q["question_id"],
            "image": q["image"],
            "conversations": [
                {"from": "human", "value": "<image>\n" + q["text"]},
                {"from": "gpt", "value": answers[q["question_id"]]},
            ],
        }
        for q in read_jsonl(world.eval_questions)[::4]
    ]
    path.write_text(json.dumps(records))
    return str(path)


@torch.no_grad()
def held_out_loss(model, tokenizer, image_processor, world, data_path) -> float:
    configure_pad_token(tokenizer, "v1")  # inference loading leaves pad unset; training sets it so
    module = make_supervised_data_module(
        tokenizer, data_path=data_path, conversation=template_for_version("v1"),
        image_folder=str(world.image_folder), image_processor=image_processor, image_aspect_ratio="pad",
        is_multimodal=True, mm_use_im_start_end=False, model_max_length=256,
    )  # fmt: skip
    dataset, collate = module["train_dataset"], module["data_collator"]
    model.eval()
    losses = [model(**collate([dataset[i] for i in range(s, min(s + 10, len(dataset)))])).loss
              for s in range(0, len(dataset), 10)]  # fmt: skip
    return float(torch.stack(losses).mean())


def test_pretrain_then_lora_lowers_held_out_loss(toy_world, tmp_path):
    data_path = held_out_file(toy_world, tmp_path / "held_out.json")
    pretrain_dir, lora_dir = tmp_path / "pretrain", tmp_path / "lora"
    pretrain_args = toy_recipe(
        toy_world, "pretrain", pretrain_dir, max_steps=20, save_steps=20, learning_rate=2e-3
    )

    untrained, tokenizer, processor = build_model_and_tokenizer(*parse_arguments(pretrain_args))
    before = held_out_loss(untrained, tokenizer, processor, toy_world, data_path)

    train(args=pretrain_args)
    tokenizer, after_pretrain, processor, _ = load_pretrained_model(
        str(pretrain_dir), str(toy_world.llm_dir), "pretrain", device="cpu"
    )
    projector_only = held_out_loss(after_pretrain, tokenizer, processor, toy_world, data_path)

    train(
        args=toy_recipe(
            toy_world, "lora", lora_dir, max_steps=120, save_steps=120, learning_rate=2e-3,
            per_device_train_batch_size=16, lora_r=64, lora_alpha=128, mm_projector_lr=1e-3,
            pretrain_mm_mlp_adapter=pretrain_dir / "mm_projector.bin",
        )
    )  # fmt: skip
    tokenizer, after_lora, processor, _ = load_pretrained_model(
        str(lora_dir), str(toy_world.llm_dir), "lora", device="cpu"
    )
    chained = held_out_loss(after_lora, tokenizer, processor, toy_world, data_path)
    assert chained < projector_only and chained < before, (before, projector_only, chained)
