"""Answer a jsonl file of image questions (`{question_id, image, text}`) with a LLaVA model.

Writes upstream's answer records `{question_id, prompt, text, answer_id, model_id, metadata}`, one
per line, flushed as it goes. Runs on cpu/cuda/mps; `--batch-size` > 1 answers several questions per
`generate` call (left-padded; greedy answers are the same as one at a time).

    python -m llava.eval.model_vqa --model-path CKPT --question-file q.jsonl --image-folder IMGS \
        --answers-file answers.jsonl --temperature 0 [--batch-size 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from typing import Any

from tqdm import tqdm

from llava.eval.inference import (
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
from llava.eval.records import answer_record, get_chunk, open_answers_file, read_jsonl, write_record


def iter_answers(
    loaded: LoadedModel,
    questions: Sequence[dict[str, Any]],
    *,
    image_folder: str,
    conv_mode: str,
    gen_kwargs: dict[str, Any],
    batch_size: int = 1,
    progress: bool = True,
) -> Iterator[dict[str, Any]]:
    """Answer image questions; yields one upstream answer record per question, in order, batch by batch.

    Raises:
        KeyError: naming the question when it lacks `question_id`, `image` or `text`.
    """
    start_end = model_uses_im_start_end(loaded.model)
    bar = tqdm(total=len(questions), disable=not progress)
    for batch in batched(questions, batch_size):
        for q in batch:
            absent = {"question_id", "image", "text"} - q.keys()
            if absent:
                raise KeyError(f"Question {q.get('question_id', q)!r} lacks {sorted(absent)}")
        messages = [add_image_tokens(q["text"], 1, start_end) for q in batch]
        prompts = [encode_prompt(loaded.tokenizer, conv_mode, message) for message in messages]
        images = [load_image(os.path.join(image_folder, q["image"])) for q in batch]
        texts = generate_texts(
            loaded.model,
            loaded.tokenizer,
            [p.input_ids for p in prompts],
            images=image_tensors(loaded, images),
            image_sizes=[image.size for image in images],
            gen_kwargs=gen_kwargs,
            stop_str=prompts[0].stop_str,
        )
        bar.update(len(batch))
        for q, text in zip(batch, texts):
            yield answer_record(q["question_id"], q["text"], text, loaded.model_name)
    bar.close()


def eval_model(args: argparse.Namespace) -> None:
    """Load the model, answer this chunk of the question file, write the answers file."""
    loaded = load_model_from_args(args)
    conv_mode = pick_conv_mode(args.conv_mode, loaded.model_name, loaded.model.config)
    questions = get_chunk(read_jsonl(args.question_file), args.num_chunks, args.chunk_idx)
    gen_kwargs = generation_kwargs_from_args(args)
    answers = iter_answers(
        loaded,
        questions,
        image_folder=args.image_folder,
        conv_mode=conv_mode,
        gen_kwargs=gen_kwargs,
        batch_size=args.batch_size,
    )
    with open_answers_file(args.answers_file) as f:
        for record in answers:
            write_record(f, record)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_question_answering_args(parser, default_question_file="tables/question.jsonl")
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
