"""Extract the projector from a checkpoint into an `mm_projector.bin` usable as `--pretrain_mm_mlp_adapter`.

    python scripts/extract_mm_projector.py --model-path checkpoints/llava-v1.5-7b --output mm_projector.bin

A full fine-tune keeps the projector inside its weight files (haotian-liu/LLaVA#852); this collects the
`mm_projector` (and `vision_resampler`) tensors, keys unchanged (`model.mm_projector.0.weight`, …, as
projector pretraining writes them), from:
- safetensors: `model.safetensors`, or shards listed in `model.safetensors.index.json`;
- PyTorch: `pytorch_model.bin`, or shards listed in `pytorch_model.bin.index.json`;
- a LoRA output's `non_lora_trainables.bin` (PeftModel names mapped back to the model's).

Only the shards holding projector tensors are read. Upstream always added the embedding matrix
(`embed_tokens` / `transformer.wte`) too; here it is added only when the checkpoint's config has
`mm_use_im_start_end` (the only case where `--pretrain_mm_mlp_adapter` reads it, as projector
pretraining saves it), or with `--include-embeddings`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import torch

PROJECTOR_KEYS = ("mm_projector", "vision_resampler")
EMBEDDING_KEYS = ("embed_tokens", "embed_in", "transformer.wte")
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
NON_LORA_TRAINABLES = "non_lora_trainables.bin"


def _read_tensors(path: str, keys: list[str]) -> dict[str, torch.Tensor]:
    """The named tensors of one weight file (safetensors read lazily, .bin loaded safely on the CPU)."""
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="pt", device="cpu") as f:
            return {key: f.get_tensor(key) for key in keys}
    state = torch.load(path, map_location="cpu", weights_only=True)
    # clone: a tensor sharing storage with others would otherwise drag the whole storage into the output
    return {key: state[key].clone() for key in keys}


def _weight_files(model_path: str) -> dict[str, list[str]]:
    """Weight file → all its keys, from an index (no shard is read) or from the single file."""
    for index_name in (SAFETENSORS_INDEX, BIN_INDEX):
        index_path = os.path.join(model_path, index_name)
        if os.path.isfile(index_path):
            with open(index_path) as f:
                weight_map = json.load(f)["weight_map"]
            files: dict[str, list[str]] = defaultdict(list)
            for key, file in weight_map.items():
                files[os.path.join(model_path, file)].append(key)
            return dict(files)
    single = os.path.join(model_path, "model.safetensors")
    if os.path.isfile(single):
        from safetensors import safe_open

        with safe_open(single, framework="pt", device="cpu") as f:
            return {single: list(f.keys())}
    single = os.path.join(model_path, "pytorch_model.bin")
    if os.path.isfile(single):
        return {single: list(torch.load(single, map_location="cpu", weights_only=True))}
    raise FileNotFoundError(
        f"{model_path} has no weights to extract from: expected {SAFETENSORS_INDEX}, {BIN_INDEX}, "
        f"model.safetensors, pytorch_model.bin or {NON_LORA_TRAINABLES}."
    )


def _uses_start_end_tokens(model_path: str) -> bool:
    config_path = os.path.join(model_path, "config.json")
    if not os.path.isfile(config_path):
        return False
    with open(config_path) as f:
        return bool(json.load(f).get("mm_use_im_start_end", False))


def extract_projector(model_path: str, *, include_embeddings: bool | None = None) -> dict[str, torch.Tensor]:
    """The projector tensors of a checkpoint, keyed as `mm_projector.bin` expects.

    Args:
        model_path: Full checkpoint folder (ours or upstream's) or LoRA output folder.
        include_embeddings: Also take the input embeddings; None = when the config has `mm_use_im_start_end`.

    Raises:
        FileNotFoundError: when the folder has no weights, or no projector tensors in them.
    """
    if include_embeddings is None:
        include_embeddings = _uses_start_end_tokens(model_path)
    wanted = PROJECTOR_KEYS + (EMBEDDING_KEYS if include_embeddings else ())

    non_lora = os.path.join(model_path, NON_LORA_TRAINABLES)
    if os.path.isfile(non_lora):
        from llava.model.builder import load_bin, rename_non_lora_keys

        state = rename_non_lora_keys(load_bin(non_lora))
        extracted = {k: v for k, v in state.items() if any(w in k for w in wanted)}
        source = non_lora
    else:
        extracted = {}
        for file, keys in _weight_files(model_path).items():
            selected = [k for k in keys if any(w in k for w in wanted)]
            if selected:
                extracted.update(_read_tensors(file, selected))
        source = model_path
    if not any(any(p in k for p in PROJECTOR_KEYS) for k in extracted):
        raise FileNotFoundError(f"No {' / '.join(PROJECTOR_KEYS)} tensors found in {source}.")
    return extracted


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model-path",
        "--model_name_or_path",  # upstream's spelling
        dest="model_path",
        type=str,
        required=True,
        help="Checkpoint folder (full fine-tune, merged, upstream release, or LoRA output).",
    )
    parser.add_argument("--output", type=str, required=True, help="Where to write the mm_projector.bin.")
    parser.add_argument(
        "--include-embeddings",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Also save the input embeddings (default: when the config has mm_use_im_start_end).",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    state = extract_projector(args.model_path, include_embeddings=args.include_embeddings)
    output_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(output_dir, exist_ok=True)
    torch.save(state, args.output)
    print(f"Saved {len(state)} tensors ({', '.join(sorted(state))}) to {args.output}")


if __name__ == "__main__":
    # Run as `python scripts/extract_mm_projector.py` from a checkout: make `llava` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
