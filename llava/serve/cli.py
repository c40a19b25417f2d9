"""Chat about an image in the terminal, streaming the answers.

    python -m llava.serve.cli --model-path CKPT --image-file photo.png [--device cpu|cuda|mps]
        [--load-4bit|--load-8bit] [--conv-mode llava_v1] [--temperature 0.2] [--max-new-tokens 512]

The image (a path, or an http(s) URL when the network is reachable) goes with the first message;
later messages continue the same conversation. An empty line, `exit`, or end of input (Ctrl-D)
ends the chat.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from transformers import TextStreamer

from llava.constants import IMAGE_TOKEN_INDEX
from llava.conversation import SeparatorStyle, conv_templates
from llava.eval.inference import (
    LoadedModel,
    add_image_tokens,
    add_runtime_args,
    check_runtime_args,
    generate_texts,
    generation_kwargs,
    image_tensors,
    load_image,
    load_model_from_args,
    model_uses_im_start_end,
    pick_conv_mode,
    stop_string,
)
from llava.mm_utils import tokenizer_image_token

EXIT_WORDS = ("exit",)


def read_user_turn(prompt: str, input_fn: Callable[[str], str] = input) -> str | None:
    """One line of user input (the role as prompt), or None when the chat should end."""
    try:
        text = input_fn(prompt)
    except EOFError:
        return None
    if not text.strip() or text.strip().lower() in EXIT_WORDS:
        return None
    return text


def chat(
    loaded: LoadedModel,
    image_file: str,
    *,
    conv_mode: str,
    temperature: float = 0.2,
    max_new_tokens: int = 512,
    debug: bool = False,
    input_fn: Callable[[str], str] = input,
) -> list[tuple[str, str]]:
    """Run the chat loop; returns the (user, assistant) turns."""
    tokenizer, model = loaded.tokenizer, loaded.model
    conv = conv_templates[conv_mode].copy()
    # ChatML role strings carry markup; show plain names (upstream does this for mpt).
    shown_roles = ("user", "assistant") if conv.sep_style == SeparatorStyle.MPT else conv.roles
    image = load_image(image_file)
    image_size = image.size
    pixels = image_tensors(loaded, [image])
    gen_kwargs = generation_kwargs(temperature=temperature, max_new_tokens=max_new_tokens)
    stop = stop_string(conv)

    turns = []
    first = True
    while True:
        user = read_user_turn(f"{shown_roles[0]}: ", input_fn)
        if user is None:
            print("exit...")
            break
        message = add_image_tokens(user, 1, model_uses_im_start_end(model)) if first else user
        first = False
        conv.append_message(conv.roles[0], message)
        conv.append_message(conv.roles[1], None)
        prompt = conv.get_prompt()
        input_ids = tokenizer_image_token(prompt, tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt")

        print(f"{shown_roles[1]}: ", end="", flush=True)
        streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        (answer,) = generate_texts(
            model,
            tokenizer,
            [input_ids],
            images=pixels,
            image_sizes=[image_size],
            gen_kwargs=gen_kwargs,
            stop_str=stop,
            streamer=streamer,
        )
        # The history keeps the clean answer (upstream keeps `</s>`, which doubles it next turn).
        conv.messages[-1][-1] = answer
        turns.append((user, answer))
        if debug:
            print("\n", {"prompt": prompt, "outputs": answer}, "\n")
    return turns


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-path", type=str, required=True)
    parser.add_argument("--model-base", type=str, default=None)
    parser.add_argument("--image-file", type=str, required=True, help="image path or http(s) URL")
    parser.add_argument(
        "--conv-mode", type=str, default=None, help="template (default: picked from the model config/name)"
    )
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--debug", action="store_true", help="print each prompt and raw answer")
    add_runtime_args(parser)
    args = parser.parse_args(argv)
    check_runtime_args(parser, args)

    loaded = load_model_from_args(args)
    conv_mode = pick_conv_mode(args.conv_mode, loaded.model_name, loaded.model.config)
    chat(
        loaded,
        args.image_file,
        conv_mode=conv_mode,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        debug=args.debug,
    )


if __name__ == "__main__":
    main()
