"""Every save and resume path, in one place, correct under DeepSpeed ZeRO-3.

Layouts (byte-compatible in names and keys with upstream LLaVA):
- projector pretraining: `config.json` + `mm_projector.bin` ({`model.mm_projector.*`: tensor});
- LoRA / QLoRA: `config.json` + `adapter_config.json` + `adapter_model.safetensors` +
  `non_lora_trainables.bin` ({`base_model.model.model.mm_projector.*`: tensor});
- full fine-tune: HF shards (the Trainer's own save).
Unlike upstream, every `checkpoint-N` of every mode holds the same files as the final output, plus
the Trainer's optimizer/scheduler/RNG/state files, so it can be loaded and resumed.

Under ZeRO-3 a partitioned parameter reads as a `(0,)`-shaped tensor outside
`deepspeed.zero.GatheredParameters`; gathering is collective, so the state-dict functions here must
run on every rank, and only the main process writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from enum import Enum

import torch

from llava.constants import (
    MM_PROJECTOR_FILE,
    MM_PROJECTOR_KEY,
    NON_LORA_TRAINABLES_FILE,
    VISION_RESAMPLER_KEY,
)

logger = logging.getLogger(__name__)


class SaveMode(Enum):
    """What a training run saves, decided once from the arguments."""

    PROJECTOR = "projector"  # --tune_mm_mlp_adapter True
    LORA = "lora"  # --lora_enable True
    FULL = "full"


def projector_keys(use_im_start_end: bool) -> tuple[str, ...]:
    """Name fragments of what a projector-pretraining run saves (embeddings when start/end tokens train)."""
    keys = (MM_PROJECTOR_KEY, VISION_RESAMPLER_KEY)
    return keys + ("embed_tokens", "embed_in") if use_im_start_end else keys


def gather_state_dict(named_params: Iterable[tuple[str, torch.nn.Parameter]]) -> dict[str, torch.Tensor]:
    """Full CPU copies of the parameters, gathering ZeRO-3 partitions (collective: call on all ranks)."""
    named_params = list(named_params)
    partitioned = [p for _, p in named_params if hasattr(p, "ds_id")]
    with _gathered(partitioned):
        state = {name: p.detach().cpu().clone() for name, p in named_params}
    empty = [name for name, tensor in state.items() if tensor.numel() == 0]
    if empty:
        raise RuntimeError(f"Gathered empty tensors (a ZeRO-3 partition was not gathered): {empty[:5]}")
    return state


def _gathered(params: list[torch.nn.Parameter]):
    if not params:
        return contextlib.nullcontext()
    from deepspeed import zero

    return zero.GatheredParameters(params, modifier_rank=None)


def projector_state_dict(model: torch.nn.Module, keys: Iterable[str]) -> dict[str, torch.Tensor]:
    keys = tuple(keys)
    return gather_state_dict((n, p) for n, p in model.named_parameters() if any(k in n for k in keys))


def lora_state_dict(model: torch.nn.Module, bias: str) -> dict[str, torch.Tensor]:
    """LoRA weights (+ biases per `--lora_bias`), keyed as peft's `save_pretrained` expects."""
    named = dict(model.named_parameters())
    if bias == "none":
        selected = [n for n in named if "lora_" in n]
    elif bias == "all":
        selected = [n for n in named if "lora_" in n or "bias" in n]
    elif bias == "lora_only":
        # Biases of the layers that carry LoRA (upstream's version of this branch was broken).
        lora_layers = {n.split(".lora_")[0] for n in named if "lora_" in n}
        selected = [
            n for n in named if "lora_" in n or (n.endswith(".bias") and n[: -len(".bias")] in lora_layers)
        ]
    else:
        raise ValueError(f"Unknown --lora_bias {bias!r}: expected none, all or lora_only.")
    return gather_state_dict((n, named[n]) for n in selected)


def non_lora_trainables_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters outside LoRA (in practice the projector), keyed by their PeftModel names."""
    return gather_state_dict(
        (n, p) for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n
    )


def atomic_torch_save(obj, path: str) -> None:
    """Write `obj` to `path` so a reader never sees a half-written file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_config(model: torch.nn.Module, output_dir: str) -> None:
    """`config.json` of the (base) LLaVA model, as it will be used for inference."""
    config = _base_model(model).config
    use_cache = config.use_cache
    config.use_cache = True
    try:
        config.save_pretrained(output_dir)
    finally:
        config.use_cache = use_cache


def _base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The LLaVA model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def save_projector_checkpoint(
    model: torch.nn.Module, output_dir: str, *, use_im_start_end: bool, is_main_process: bool
) -> None:
    """Projector pretraining output: `config.json` + `mm_projector.bin`. Call on every rank."""
    state = projector_state_dict(model, projector_keys(use_im_start_end))
    if not state:
        raise RuntimeError("No projector parameters found to save: is the vision tower initialised?")
    if is_main_process:
        os.makedirs(output_dir, exist_ok=True)
        write_config(model, output_dir)
        atomic_torch_save(state, os.path.join(output_dir, MM_PROJECTOR_FILE))


def save_lora_checkpoint(
    model: torch.nn.Module, output_dir: str, *, bias: str, is_main_process: bool
) -> None:
    """LoRA output: config, adapter (peft's files) and `non_lora_trainables.bin`. Call on every rank."""
    lora_state = lora_state_dict(model, bias)
    non_lora_state = non_lora_trainables_state_dict(model)
    if is_main_process:
        os.makedirs(output_dir, exist_ok=True)
        write_config(model, output_dir)
        model.save_pretrained(output_dir, state_dict=lora_state)
        atomic_torch_save(non_lora_state, os.path.join(output_dir, NON_LORA_TRAINABLES_FILE))


def load_projector_into(model: torch.nn.Module, path: str) -> None:
    """Load an `mm_projector.bin` written by `save_projector_checkpoint` into a training model."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    _load_named_tensors(model, state, source=path)


def load_non_lora_trainables_into(model: torch.nn.Module, path: str) -> None:
    """Load `non_lora_trainables.bin` back into the PeftModel that wrote it (resume)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    _load_named_tensors(model, state, source=path)


def _load_named_tensors(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    params = dict(model.named_parameters())
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise KeyError(f"{source}: keys not in the model: {unknown[:5]}")
    targets = [params[name] for name in state]
    partitioned = [p for p in targets if hasattr(p, "ds_id")]
    with _gathered_for_write(partitioned):
        for name, tensor in state.items():
            param = params[name]
            if param.shape != tensor.shape:
                raise ValueError(
                    f"{source}: {name} has shape {tuple(tensor.shape)}, the model {tuple(param.shape)}"
                )
            with torch.no_grad():
                param.copy_(tensor.to(param.dtype))


def _gathered_for_write(params: list[torch.nn.Parameter]):
    if not params:
        return contextlib.nullcontext()
    from deepspeed import zero

    # modifier_rank=0: rank 0's values are broadcast and re-partitioned on exit.
    return zero.GatheredParameters(params, modifier_rank=0)
