"""Ask one question about one or more images and print the answer.

    python -m llava.eval.run_llava --model-path CKPT --image-file a.png,b.png \
        --query "Compare <image-placeholder> with <image-placeholder>." [--device cpu] [--temperature 0]

`--image-file` is split on `--sep` (default `,`); each `<image-placeholder>` in the query marks where
the next image goes, otherwise the images go in front of the query. `eval_model(args)` also accepts
an argument object built in Python (upstream's README style: `model_path`, `model_base`,
`model_name`, `query`, `conv_mode`, `image_file`, `sep`, `temperature`, `top_p`, `num_beams`,
`max_new_tokens`; optional `model`/`tokenizer`/`image_processor` to reuse a loaded model).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from llava.eval.inference import (
    LoadedModel,
    add_image_tokens,
    add_runtime_args,
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
from llava.mm_utils import get_model_name_from_path


def image_parser(args: argparse.Namespace) -> list[str]:
    """The image files: `args.image_file` split on `args.sep`, or the list given."""
    if isinstance(args.image_file, str):
        return args.image_file.split(getattr(args, "sep", ","))
    return list(args.image_file)


def _loaded_from_args(args: argparse.Namespace) -> LoadedModel:
    """Reuse a model passed on `args` (upstream's programmatic use), else load one."""
    model_name = getattr(args, "model_name", None) or get_model_name_from_path(args.model_path)
    model = getattr(args, "model", None)
    tokenizer = getattr(args, "tokenizer", None)
    image_processor = getattr(args, "image_processor", None)
    if model is None or tokenizer is None or image_processor is None:
        return load_model_from_args(args, model_name=model_name)
    # Images follow the given model's own device and dtype.
    context_len = getattr(model.config, "max_sequence_length", 2048)
    return LoadedModel(tokenizer, model, image_processor, context_len, model_name, model.device, model.dtype)


def eval_model(args: argparse.Namespace) -> str:
    """Answer `args.query` about `args.image_file`; prints and returns the answer."""
    loaded = _loaded_from_args(args)
    image_files = image_parser(args)
    query = add_image_tokens(args.query, len(image_files), model_uses_im_start_end(loaded.model))
    conv_mode = pick_conv_mode(getattr(args, "conv_mode", None), loaded.model_name, loaded.model.config)
    prompt = encode_prompt(loaded.tokenizer, conv_mode, query)
    images = [load_image(f) for f in image_files]
    gen_kwargs = generation_kwargs_from_args(args, default_max_new_tokens=512)
    (outputs,) = generate_texts(
        loaded.model,
        loaded.tokenizer,
        [prompt.input_ids],
        images=image_tensors(loaded, images),
        image_sizes=[image.size for image in images],
        gen_kwargs=gen_kwargs,
        stop_str=prompt.stop_str,
    )
    print(outputs)
    return outputs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-path", type=str, required=True)
    parser.add_argument("--model-base", type=str, default=None)
    parser.add_argument("--image-file", type=str, required=True, help="image path(s)/URL(s), split on --sep")
    parser.add_argument("--query", type=str, required=True)
    parser.add_argument(
        "--conv-mode", type=str, default=None, help="template (default: picked from the model config/name)"
    )
    parser.add_argument("--sep", type=str, default=",")
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--num_beams", type=int, default=1)
    parser.add_argument("--max_new_tokens", type=int, default=512)
    add_runtime_args(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> str:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_runtime_args(parser, args)
    return eval_model(args)


if __name__ == "__main__":
    main()
