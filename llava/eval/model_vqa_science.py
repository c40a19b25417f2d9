"""Answer ScienceQA questions in LLaVA's format (`llava_test_CQM-A.json`) with a LLaVA model.

Each record is `{id, conversations: [{from: human, value}, ...], image?}`; the first human turn is
the question (its `<image>` tag is dropped and re-placed in front when the record has an image, as
upstream). Questions without an image are asked as text only. `--single-pred-prompt` appends
"\\nAnswer with the option's letter from the given choices directly." (LLaVA-1.5's ScienceQA
protocol). Answers are upstream's records; the `prompt` field starts with `<image>` for image
questions, which `eval_science_qa` uses for its IMG-Accuracy.

    python -m llava.eval.model_vqa_science --model-path CKPT --question-file llava_test_CQM-A.json \
        --image-folder IMGS --answers-file answers.jsonl --single-pred-prompt --temperature 0
"""

from __future__ import annotations

import argparse
import itertools
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from tqdm import tqdm

from llava.constants import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from llava.eval.inference import (
    SINGLE_PRED_PROMPT,
    EncodedPrompt,
    LoadedModel,
    add_image_tokens,
    add_question_answering_args,
    add_runtime_args,
    batched,
    check_runtime_args,
    encode_prompt,
    generate_texts,
    generation_kwargs_from_args,
    image_tensors,
    load_image,
    load_model_from_args,
    model_uses_im_start_end,
    pick_conv_mode,
)
from llava.eval.records import answer_record, get_chunk, open_answers_file, read_json, write_record
from llava.mm_utils import tokenizer_image_token

# Upstream's second pass for `--answer-prompter` (v0-era models that reason before answering).
ANSWER_PROMPTER_SUFFIX = " ###\nANSWER:"
ANSWER_PROMPTER_MAX_NEW_TOKENS = 64


def question_text(record: dict[str, Any]) -> str:
    """The first human turn without its `<image>` tag.

    Raises:
        ValueError: naming the record when it has no conversation.
    """
    turns = record.get("conversations") or []
    if not turns:
        raise ValueError(f"ScienceQA record {record.get('id')!r} has no conversations")
    return turns[0]["value"].replace(DEFAULT_IMAGE_TOKEN, "").strip()


def user_message(
    record: dict[str, Any], *, mm_use_im_start_end: bool, single_pred_prompt: bool
) -> tuple[str, str]:
    """(message for the model, prompt recorded in the answer) for one record (upstream's rules)."""
    question = question_text(record)
    has_image = "image" in record
    message = add_image_tokens(question, 1, mm_use_im_start_end) if has_image else question
    recorded = DEFAULT_IMAGE_TOKEN + "\n" + question if has_image else question
    if single_pred_prompt:
        message += "\n" + SINGLE_PRED_PROMPT
        recorded += "\n" + SINGLE_PRED_PROMPT
    return message, recorded


def _same_modality_batches(
    records: Sequence[dict[str, Any]], batch_size: int
) -> Iterator[list[dict[str, Any]]]:
    """Batches of consecutive records that all have, or all lack, an image (order preserved)."""
    for _has_image, run in itertools.groupby(records, key=lambda r: "image" in r):
        yield from batched(list(run), batch_size)


def iter_answers(
    loaded: LoadedModel,
    records: Sequence[dict[str, Any]],
    *,
    image_folder: str,
    conv_mode: str,
    gen_kwargs: dict[str, Any],
    single_pred_prompt: bool = False,
    answer_prompter: bool = False,
    batch_size: int = 1,
    progress: bool = True,
) -> Iterator[dict[str, Any]]:
    """Answer ScienceQA records; yields one upstream answer record per question, in order."""
    start_end = model_uses_im_start_end(loaded.model)
    bar = tqdm(total=len(records), disable=not progress)
    for batch in _same_modality_batches(records, batch_size):
        messages = [
            user_message(r, mm_use_im_start_end=start_end, single_pred_prompt=single_pred_prompt)
            for r in batch
        ]
        prompts = [encode_prompt(loaded.tokenizer, conv_mode, message) for message, _shown in messages]
        has_image = "image" in batch[0]
        images = [load_image(os.path.join(image_folder, r["image"])) for r in batch] if has_image else []
        pixels = image_tensors(loaded, images) if has_image else None
        sizes = [image.size for image in images] if has_image else None
        texts = generate_texts(
            loaded.model,
            loaded.tokenizer,
            [p.input_ids for p in prompts],
            images=pixels,
            image_sizes=sizes,
            gen_kwargs=gen_kwargs,
            stop_str=prompts[0].stop_str,
        )
        if answer_prompter:
            texts = [
                _prompt_for_answer(
                    loaded,
                    prompt,
                    text,
                    pixels[i : i + 1] if has_image else None,
                    sizes[i : i + 1] if has_image else None,
                    gen_kwargs,
                )
                for i, (prompt, text) in enumerate(zip(prompts, texts))
            ]
        bar.update(len(batch))
        for record, (_message, shown), text in zip(batch, messages, texts):
            yield answer_record(record["id"], shown, text, loaded.model_name)
    bar.close()


def _prompt_for_answer(
    loaded: LoadedModel,
    prompt: EncodedPrompt,
    reasoning: str,
    pixels: list[torch.Tensor] | None,
    sizes: list[tuple[int, int]] | None,
    gen_kwargs: dict[str, Any],
) -> str:
    """Upstream's `--answer-prompter`: ask again after the reasoning for the bare answer."""
    text = prompt.prompt + reasoning + ANSWER_PROMPTER_SUFFIX
    ids = tokenizer_image_token(text, loaded.tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt")
    kwargs = dict(gen_kwargs, max_new_tokens=ANSWER_PROMPTER_MAX_NEW_TOKENS)
    (answer,) = generate_texts(
        loaded.model,
        loaded.tokenizer,
        [ids],
        images=pixels,
        image_sizes=sizes,
        gen_kwargs=kwargs,
        stop_str=prompt.stop_str,
    )
    return reasoning + "\n The answer is " + answer


def eval_model(args: argparse.Namespace) -> None:
    """Load the model, answer this chunk of the question file, write the answers file."""
    loaded = load_model_from_args(args)
    conv_mode = pick_conv_mode(args.conv_mode, loaded.model_name, loaded.model.config)
    records = get_chunk(read_json(args.question_file), args.num_chunks, args.chunk_idx)
    gen_kwargs = generation_kwargs_from_args(args)
    answers = iter_answers(
        loaded,
        records,
        image_folder=args.image_folder,
        conv_mode=conv_mode,
        gen_kwargs=gen_kwargs,
        single_pred_prompt=args.single_pred_prompt,
        answer_prompter=args.answer_prompter,
        batch_size=args.batch_size,
    )
    with open_answers_file(args.answers_file) as f:
        for record in answers:
            write_record(f, record)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_question_answering_args(parser, default_question_file="tables/question.json")
    parser.add_argument("--answer-prompter", action="store_true")
    parser.add_argument("--single-pred-prompt", action="store_true")
    parser.add_argument("--batch-size", type=int, default=1, help="questions per generate call (left-padded)")
    add_runtime_args(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_runtime_args(parser, args)
    eval_model(args)


if __name__ == "__main__":
    main()
