"""Inference plumbing shared by `llava.serve.cli` and the `llava.eval` entrypoints.

Upstream hard-codes `.cuda()` and float16 in every entrypoint, so none of them run on a CPU (its
issue #1177). Here the device and dtype are resolved once from flags, the model is loaded only
through `llava.model.builder.load_pretrained_model`, and every tensor follows `model.device`.

Conversation template choice (`pick_conv_mode`):
1. an explicit `--conv-mode` always wins (with upstream's warning when it differs from the auto pick);
2. else the config's `conv_mode` field, when it names a template: the explicit record of the
   template a checkpoint was trained with;
3. else the config's `model_type` where it identifies the LLM family (`llava_mistral` →
   `mistral_instruct`, `llava_mpt` → `mpt`);
4. else upstream's rules on the model name: `llama-2` → `llava_llama_2`, `mistral` →
   `mistral_instruct`, `v1.6-34b` → `chatml_direct`, `v1` → `llava_v1`, `mpt` → `mpt`, else `llava_v0`.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import torch
from PIL import Image

from llava.constants import (
    DEFAULT_IM_END_TOKEN,
    DEFAULT_IM_START_TOKEN,
    DEFAULT_IMAGE_TOKEN,
    IMAGE_PLACEHOLDER,
    IMAGE_TOKEN_INDEX,
)
from llava.conversation import Conversation, SeparatorStyle, conv_templates
from llava.mm_utils import get_model_name_from_path, process_images, tokenizer_image_token
from llava.model.builder import load_pretrained_model

logger = logging.getLogger(__name__)

DEVICE_TYPES = ("cpu", "cuda", "mps")
DTYPE_NAMES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
# Config attribute that records the conversation template a checkpoint was trained with.
CONV_MODE_CONFIG_KEY = "conv_mode"
# LLM families that `model_type` identifies on its own (llava_llama covers Vicuna, LLaMA-2 and more).
_CONV_MODE_BY_MODEL_TYPE = {"llava_mistral": "mistral_instruct", "llava_mpt": "mpt"}
SINGLE_PRED_PROMPT = "Answer with the option's letter from the given choices directly."


# --------------------------------------------------------------------------- device and dtype


def resolve_device(device: str | None = None) -> torch.device:
    """The device to run on: `cpu`, `cuda[:N]` or `mps`; None → cuda if available, else cpu.

    Raises:
        ValueError: for another device type, or one this machine does not have.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type not in DEVICE_TYPES:
        raise ValueError(f"--device must be one of {DEVICE_TYPES} (cuda may carry an index), got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but torch sees no CUDA device; use --device cpu")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps was requested but the MPS backend is not available; use --device cpu")
    return resolved


def resolve_dtype(device: torch.device, dtype: str | None = "auto") -> torch.dtype:
    """The compute dtype: `auto` → float16 on cuda and mps, float32 on cpu; or an explicit name.

    CPU runs float32 by default (upstream's float16 is what broke CPU inference); bfloat16 is a fine
    choice on recent CPUs. float16 on a CPU works with current torch but is slow, so it only warns.

    Raises:
        ValueError: for an unknown dtype name.
    """
    if dtype is None or dtype == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"--dtype must be 'auto' or one of {sorted(DTYPE_NAMES)}, got {dtype!r}")
    resolved = DTYPE_NAMES[dtype]
    if device.type == "cpu" and resolved == torch.float16:
        logger.warning(
            "float16 on CPU is slow and less accurate than float32/bfloat16; consider --dtype auto"
        )
    return resolved


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    """Add our device/dtype/quantisation flags (upstream's names where upstream has them)."""
    parser.add_argument(
        "--device", type=str, default=None, help="cpu, cuda[:N] or mps (default: cuda if available, else cpu)"
    )
    parser.add_argument(
        "--dtype",
        type=str,
        default="auto",
        help="auto (float16 on cuda/mps, float32 on cpu), float32, bfloat16 or float16",
    )
    parser.add_argument("--load-8bit", action="store_true", help="bitsandbytes 8-bit weights (CUDA)")
    parser.add_argument("--load-4bit", action="store_true", help="bitsandbytes 4-bit NF4 weights (CUDA)")
    parser.add_argument("--use-flash-attn", action="store_true", help="attn_implementation=flash_attention_2")


def add_question_answering_args(parser: argparse.ArgumentParser, *, default_question_file: str) -> None:
    """The flags every batch-answering entrypoint shares (upstream's names and defaults)."""
    parser.add_argument("--model-path", type=str, required=True)
    parser.add_argument("--model-base", type=str, default=None)
    parser.add_argument("--image-folder", type=str, default="")
    parser.add_argument("--question-file", type=str, default=default_question_file)
    parser.add_argument("--answers-file", type=str, default="answer.jsonl")
    parser.add_argument(
        "--conv-mode", type=str, default=None, help="template (default: picked from the model config/name)"
    )
    parser.add_argument("--num-chunks", type=int, default=1)
    parser.add_argument("--chunk-idx", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--num_beams", type=int, default=1)
    parser.add_argument("--max_new_tokens", type=int, default=1024)


def check_runtime_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Report a bad `--device`/`--dtype`/k-bit combination as a usage error before anything loads."""
    try:
        device = resolve_device(args.device)
        resolve_dtype(device, args.dtype)
        _check_kbit(device, load_8bit=args.load_8bit, load_4bit=args.load_4bit)
    except ValueError as err:
        parser.error(str(err))


def _check_kbit(device: torch.device, *, load_8bit: bool, load_4bit: bool) -> None:
    if load_8bit and load_4bit:
        raise ValueError("Pass at most one of --load-8bit and --load-4bit")
    if (load_8bit or load_4bit) and device.type == "mps":
        raise ValueError("bitsandbytes --load-4bit/--load-8bit does not run on MPS; drop the flag")


# --------------------------------------------------------------------------- loading


class LoadedModel(NamedTuple):
    """What the entrypoints need after loading: the builder's 4-tuple plus name, device and dtype."""

    tokenizer: Any
    model: Any
    image_processor: Any
    context_len: int
    model_name: str
    device: torch.device
    dtype: torch.dtype


def load_model(
    model_path: str,
    model_base: str | None = None,
    *,
    model_name: str | None = None,
    device: str | None = None,
    dtype: str | None = "auto",
    load_8bit: bool = False,
    load_4bit: bool = False,
    use_flash_attn: bool = False,
) -> LoadedModel:
    """Load a LLaVA checkpoint for inference through `llava.model.builder.load_pretrained_model`.

    Args:
        model_path: Checkpoint folder (full, LoRA or projector-only; the builder detects the layout).
        model_base: Base LLM folder for LoRA / projector-only checkpoints.
        model_name: Defaults to `get_model_name_from_path(model_path)`.
        device: See `resolve_device`.
        dtype: See `resolve_dtype`.
        load_8bit: bitsandbytes 8-bit.
        load_4bit: bitsandbytes 4-bit.
        use_flash_attn: Use flash_attention_2.

    Raises:
        ValueError: for k-bit loading on MPS (bitsandbytes has no MPS backend) or both k-bit flags.
    """
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(resolved_device, dtype)
    _check_kbit(resolved_device, load_8bit=load_8bit, load_4bit=load_4bit)
    model_name = model_name or get_model_name_from_path(model_path)
    # A bare "cuda" lets accelerate spread the model over the visible GPUs, as upstream does.
    auto_map = resolved_device.type == "cuda" and resolved_device.index is None
    device_map: str | dict[str, str] = "auto" if auto_map else {"": str(resolved_device)}
    tokenizer, model, image_processor, context_len = load_pretrained_model(
        model_path,
        model_base,
        model_name,
        load_8bit=load_8bit,
        load_4bit=load_4bit,
        device_map=device_map,
        device=str(resolved_device),
        use_flash_attn=use_flash_attn,
        torch_dtype=resolved_dtype,
    )
    model.eval()
    return LoadedModel(
        tokenizer, model, image_processor, context_len, model_name, resolved_device, resolved_dtype
    )


# --------------------------------------------------------------------------- conversation templates


def load_model_from_args(args: argparse.Namespace, *, model_name: str | None = None) -> LoadedModel:
    """`load_model` from an entrypoint's parsed flags (missing runtime flags take their defaults)."""
    return load_model(
        os.path.expanduser(args.model_path),
        getattr(args, "model_base", None),
        model_name=model_name,
        device=getattr(args, "device", None),
        dtype=getattr(args, "dtype", "auto"),
        load_8bit=getattr(args, "load_8bit", False),
        load_4bit=getattr(args, "load_4bit", False),
        use_flash_attn=getattr(args, "use_flash_attn", False),
    )


def conv_mode_from_name(model_name: str) -> str:
    """Upstream's template rules on the model name (`run_llava.py`/`cli.py`)."""
    name = model_name.lower()
    if "llama-2" in name:
        return "llava_llama_2"
    if "mistral" in name:
        return "mistral_instruct"
    if "v1.6-34b" in name:
        return "chatml_direct"
    if "v1" in name:
        return "llava_v1"
    if "mpt" in name:
        return "mpt"
    return "llava_v0"


def auto_conv_mode(model_name: str, config: Any = None) -> str:
    """The template to use when `--conv-mode` is not given (order in the module docstring).

    Raises:
        ValueError: when the config's `conv_mode` names no known template.
    """
    explicit = getattr(config, CONV_MODE_CONFIG_KEY, None) if config is not None else None
    if explicit is not None:
        if explicit not in conv_templates:
            raise ValueError(
                f"The model config's {CONV_MODE_CONFIG_KEY}={explicit!r} is not a conversation template; "
                f"known: {sorted(conv_templates)}"
            )
        return explicit
    model_type = getattr(config, "model_type", None) if config is not None else None
    if model_type in _CONV_MODE_BY_MODEL_TYPE:
        return _CONV_MODE_BY_MODEL_TYPE[model_type]
    return conv_mode_from_name(model_name)


def pick_conv_mode(requested: str | None, model_name: str, config: Any = None) -> str:
    """`requested` if given (warning, as upstream, when it differs from the auto pick), else the auto pick.

    Two names of one template (`v1` and `vicuna_v1`) do not differ: only a different prompt is warned about.

    Raises:
        ValueError: when `requested` names no template.
    """
    auto = auto_conv_mode(model_name, config)
    if requested is None:
        return auto
    if requested not in conv_templates:
        raise ValueError(
            f"--conv-mode {requested!r} is not a conversation template; known: {sorted(conv_templates)}"
        )
    if conv_templates[requested] != conv_templates[auto]:
        logger.warning(
            "[WARNING] the auto inferred conversation mode is %s, while `--conv-mode` is %s, using %s",
            auto,
            requested,
            requested,
        )
    return requested


def stop_string(conv: Conversation) -> str:
    """The text that ends an assistant turn in this template (upstream's rule)."""
    return conv.sep2 if conv.sep_style == SeparatorStyle.TWO else conv.sep


# --------------------------------------------------------------------------- prompts


def image_token_text(mm_use_im_start_end: bool) -> str:
    """What stands for one image in a prompt: `<image>`, or `<im_start><image><im_end>`."""
    if mm_use_im_start_end:
        return DEFAULT_IM_START_TOKEN + DEFAULT_IMAGE_TOKEN + DEFAULT_IM_END_TOKEN
    return DEFAULT_IMAGE_TOKEN


def add_image_tokens(query: str, num_images: int, mm_use_im_start_end: bool) -> str:
    """Place image tokens in a user query.

    Each `<image-placeholder>` is replaced by one image's tokens (run_llava's convention); without
    placeholders, one image token per image is put in front, each followed by a newline (upstream
    puts a single one, which silently drops extra images).

    Raises:
        ValueError: when the number of placeholders differs from the number of images.
    """
    token = image_token_text(mm_use_im_start_end)
    placeholders = query.count(IMAGE_PLACEHOLDER)
    if placeholders == 0:
        return "".join(token + "\n" for _ in range(num_images)) + query
    if placeholders != num_images:
        raise ValueError(
            f"The query has {placeholders} {IMAGE_PLACEHOLDER} but {num_images} image(s) were given"
        )
    return query.replace(IMAGE_PLACEHOLDER, token)


def build_prompt(conv_mode: str, user_message: str) -> tuple[str, Conversation]:
    """A single-turn generation prompt (the user message, then an open assistant turn)."""
    conv = conv_templates[conv_mode].copy()
    conv.append_message(conv.roles[0], user_message)
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt(), conv


class EncodedPrompt(NamedTuple):
    """A rendered single-turn prompt, its ids and the template's stop string."""

    prompt: str
    input_ids: torch.Tensor  # (T,), IMAGE_TOKEN_INDEX at each image
    stop_str: str


def encode_prompt(tokenizer: Any, conv_mode: str, user_message: str) -> EncodedPrompt:
    """Render `user_message` in the template and tokenize it (`<image>` → IMAGE_TOKEN_INDEX)."""
    prompt, conv = build_prompt(conv_mode, user_message)
    input_ids = tokenizer_image_token(prompt, tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt")
    return EncodedPrompt(prompt, input_ids, stop_string(conv))


def model_uses_im_start_end(model: Any) -> bool:
    return bool(getattr(model.config, "mm_use_im_start_end", False))


# --------------------------------------------------------------------------- images


def load_image(image_file: str, *, timeout: float = 10.0) -> Image.Image:
    """Open a local image or fetch an http(s) URL, as RGB.

    Raises:
        FileNotFoundError: for a missing local file.
        OSError: naming the URL when it cannot be fetched (e.g. offline).
    """
    if image_file.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(image_file, timeout=timeout) as response:
                data = response.read()
        except (urllib.error.URLError, TimeoutError) as err:
            raise OSError(f"Could not fetch image {image_file!r}: {err}") from err
        return Image.open(io.BytesIO(data)).convert("RGB")
    with Image.open(image_file) as image:
        return image.convert("RGB")


def image_tensors(loaded: LoadedModel, images: Sequence[Image.Image]) -> list[torch.Tensor]:
    """One preprocessed tensor per image ((3, H, W), or (crops, 3, H, W) for anyres), on the
    model's device in the inference dtype (`model.config.image_aspect_ratio` decides padding)."""
    processed = process_images(list(images), loaded.image_processor, loaded.model.config)
    return [x.to(device=loaded.device, dtype=loaded.dtype) for x in processed]


def batch_images(per_sample: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    """A (N, 3, H, W) batch when every image is one (3, H, W) crop, else the list (anyres)."""
    if all(x.ndim == 3 and x.shape == per_sample[0].shape for x in per_sample):
        return torch.stack(list(per_sample))
    return list(per_sample)


# --------------------------------------------------------------------------- generation


def generation_kwargs(
    *, temperature: float, top_p: float | None = None, num_beams: int = 1, max_new_tokens: int = 512
) -> dict[str, Any]:
    """Keyword arguments for `model.generate`: greedy and deterministic at temperature 0.

    Sampling parameters are passed as None when not sampling, so a checkpoint's
    generation_config (e.g. LLaMA-2's temperature 0.6) neither applies nor triggers warnings.
    """
    sample = temperature > 0
    return {
        "do_sample": sample,
        "temperature": temperature if sample else None,
        "top_p": top_p if sample else None,
        "top_k": None,
        "num_beams": num_beams,
        "max_new_tokens": max_new_tokens,
        "use_cache": True,
    }


def generation_kwargs_from_args(args: argparse.Namespace, *, default_max_new_tokens: int = 1024) -> dict:
    """`generation_kwargs` from an entrypoint's parsed decoding flags."""
    return generation_kwargs(
        temperature=args.temperature,
        top_p=getattr(args, "top_p", None),
        num_beams=getattr(args, "num_beams", 1),
        max_new_tokens=getattr(args, "max_new_tokens", default_max_new_tokens),
    )


def pad_id(tokenizer: Any) -> int:
    """The id used for left padding: pad, else eos (attention_mask hides it either way)."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is None:
        raise ValueError("The tokenizer has neither a pad nor an eos token; cannot pad a batch")
    return tokenizer.eos_token_id


def left_pad(sequences: Sequence[torch.Tensor], padding_value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad 1-D id tensors. Returns ((B, T) ids, (B, T) attention mask)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), padding_value, dtype=sequences[0].dtype)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq):
            ids[row, width - len(seq) :] = seq
            mask[row, width - len(seq) :] = 1
    return ids, mask


def clean_output(text: str, stop_str: str | None) -> str:
    """Strip whitespace and cut the text at the template's stop string (upstream trims a trailing one)."""
    text = text.strip()
    if stop_str and stop_str in text:
        text = text[: text.index(stop_str)]
    return text.strip()


def decode_new_tokens(tokenizer: Any, output_ids: torch.Tensor, stop_str: str | None) -> list[str]:
    """Decode generated rows, cutting each at its first eos (later positions are batch padding)."""
    eos = tokenizer.eos_token_id
    texts = []
    for row in output_ids.tolist():
        if eos is not None and eos in row:
            row = row[: row.index(eos)]
        texts.append(clean_output(tokenizer.decode(row, skip_special_tokens=True), stop_str))
    return texts


def generate_texts(
    model: Any,
    tokenizer: Any,
    input_ids: Sequence[torch.Tensor],
    *,
    images: Sequence[torch.Tensor] | None,
    image_sizes: Sequence[tuple[int, int]] | None,
    gen_kwargs: dict[str, Any],
    stop_str: str | None = None,
    streamer: Any = None,
) -> list[str]:
    """Generate one answer per prompt, all in one (left-padded) `model.generate` call.

    Args:
        model: A LLaVA model; its `generate` returns only the new tokens.
        tokenizer: Its tokenizer.
        input_ids: One 1-D prompt id tensor per sample (with IMAGE_TOKEN_INDEX placeholders).
        images: One preprocessed image tensor per image (in placeholder order), or None for
            text-only prompts. A batch is either all-image or all-text.
        image_sizes: (width, height) per image, or None.
        gen_kwargs: From `generation_kwargs`.
        stop_str: Template stop string: generation stops there, and the text is cut there.
        streamer: Optional HF streamer (batch of one).
    """
    device = model.device
    ids, mask = left_pad(input_ids, pad_id(tokenizer))
    kwargs = dict(gen_kwargs, pad_token_id=pad_id(tokenizer))
    # A stop string that is the eos token stops generation anyway; others need HF's string criterion.
    if stop_str and stop_str != tokenizer.eos_token:
        kwargs.update(stop_strings=[stop_str], tokenizer=tokenizer)
    with torch.inference_mode():
        output_ids = model.generate(
            ids.to(device),
            attention_mask=mask.to(device),
            images=None if images is None else batch_images(images),
            image_sizes=None if image_sizes is None else list(image_sizes),
            streamer=streamer,
            **kwargs,
        )
    return decode_new_tokens(tokenizer, output_ids, stop_str)


def batched(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of `items` of at most `size` elements."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
