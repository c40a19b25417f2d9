"""Merge a LoRA / QLoRA checkpoint into its base model and save the result as a full LLaVA checkpoint.

    python scripts/merge_lora_weights.py --model-path checkpoints/llava-v1.5-7b-lora \
        --model-base lmsys/vicuna-7b-v1.5 --save-model-path checkpoints/llava-v1.5-7b-merged

Same flags as upstream. The checkpoint is recognised by its files (`adapter_config.json`,
`non_lora_trainables.bin`, `config.json`), so, unlike upstream, neither folder needs `llava` or
`lora` in its name. The base is loaded on the CPU in float32, the projector from
`non_lora_trainables.bin` and the adapter are applied and merged, and the model (with its vision tower
and projector) plus the tokenizer are saved; the output reloads with `load_pretrained_model` with no
`model_base` and gives the same logits as adapter + base.

QLoRA: the base is loaded unquantized and the adapter merged into 16/32-bit weights, so merging a
QLoRA adapter produces a 16-bit model (by default in the base checkpoint's dtype), not a 4-bit one.
It is not bit-identical to what QLoRA trained (the 4-bit base + adapter): it carries the full-precision
base instead of its 4-bit rounding. Merging into 4-bit layers instead would round the adapter's
update onto the 4-bit grid (tiny test model with a large random adapter, max |logit error| vs. adapter
+ fp32 base: 0.71 merged into 4-bit, 0.05 unmerged), which is why `load_pretrained_model(load_4bit=True)`
keeps QLoRA adapters unmerged.

A projector-only checkpoint (`mm_projector.bin`) with its base can be merged the same way into a full
checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def saved_dtype(choice: str, model_base: str) -> torch.dtype:
    """The dtype to save in: `auto` = the base checkpoint's stored dtype (float16 when it names none)."""
    if choice != "auto":
        return _DTYPES[choice]
    config_path = os.path.join(model_base, "config.json")
    stored = None
    if os.path.isfile(config_path):
        with open(config_path) as f:
            config = json.load(f)
        stored = config.get("dtype") or config.get("torch_dtype")
    return _DTYPES.get(stored, torch.float16)


def merge_lora(model_path: str, model_base: str, save_model_path: str, *, save_dtype: str = "auto") -> None:
    """Load adapter (or projector) + base, merge, and save model and tokenizer to `save_model_path`.

    Raises:
        ValueError: when `model_path` already holds full weights (nothing to merge).
    """
    from llava.model.builder import CheckpointLayout, detect_layout, load_pretrained_model

    layout = detect_layout(model_path, model_base=model_base)
    if layout is CheckpointLayout.FULL:
        raise ValueError(f"{model_path} already holds full weights; there is no adapter to merge.")
    tokenizer, model, _, _ = load_pretrained_model(
        model_path,
        model_base,
        Path(model_path).name,
        device_map="cpu",
        device="cpu",
        torch_dtype=torch.float32,  # merge in full precision; cast once, at save time
    )
    model.to(saved_dtype(save_dtype, model_base))
    model.save_pretrained(save_model_path)
    tokenizer.save_pretrained(save_model_path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model-path", type=str, required=True, help="LoRA/QLoRA output (or checkpoint-N) folder."
    )
    parser.add_argument(
        "--model-base", type=str, required=True, help="The base LM the adapter was trained on."
    )
    parser.add_argument(
        "--save-model-path", type=str, required=True, help="Output folder for the merged model."
    )
    parser.add_argument(
        "--save-dtype",
        choices=["auto", *_DTYPES],
        default="auto",
        help="dtype of the saved weights; auto = the base checkpoint's dtype (float16 if it names none).",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    merge_lora(args.model_path, args.model_base, args.save_model_path, save_dtype=args.save_dtype)


if __name__ == "__main__":
    # Run as `python scripts/merge_lora_weights.py` from a checkout: make `llava` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
