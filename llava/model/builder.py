"""Load any LLaVA checkpoint for inference: `load_pretrained_model`, upstream's entry point.

The layout is read from the files in `model_path` (see `detect_layout`), never from its name:

- LoRA / QLoRA output: `adapter_config.json` + adapter weights (+ `non_lora_trainables.bin`,
  `config.json`) → base LM + projector + adapter;
- projector only (pretraining output): `mm_projector.bin` and no LM weights → base LM + projector;
- full / merged: HF weights (`model.safetensors`, `model-*.safetensors` + index, `pytorch_model*.bin`).

Upstream's folder-name rules (`llava` / `lora` in `model_name`) survive only as a fallback for a
`model_path` that is not a local folder (a hub id), where no files can be inspected.

Unlike upstream, the default dtype follows the device (float32 on CPU, where fp16 matmuls fail:
haotian-liu/LLaVA#1177), every projector weight is checked to have been loaded (upstream left it
randomly initialised without a word when `non_lora_trainables.bin` did not match: #808, #1406),
embeddings are only ever grown, never shrunk, to fit the tokenizer, bitsandbytes really leaves the
projector / vision tower / lm_head unquantized under transformers 5's skip-name matching, and a
LoRA adapter on a 4/8-bit base stays unmerged (see `_load_lora`).
"""

from __future__ import annotations

import glob
import json
import logging
import os
from enum import Enum
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    BitsAndBytesConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from llava.constants import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_BIN_FILE,
    ADAPTER_WEIGHTS_FILE,
    CONFIG_FILE,
    DEFAULT_IM_END_TOKEN,
    DEFAULT_IM_START_TOKEN,
    DEFAULT_IMAGE_PATCH_TOKEN,
    MM_PROJECTOR_FILE,
    MM_PROJECTOR_KEY,
    NON_LORA_TRAINABLES_FILE,
    QUANTIZATION_SKIP_MODULES,
)

logger = logging.getLogger(__name__)

DEFAULT_CONTEXT_LEN = 2048

# Single-file and index names of full HF weights; sharded files match the globs.
FULL_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
FULL_WEIGHT_GLOBS = ("model-*-of-*.safetensors", "pytorch_model-*-of-*.bin")
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json")

# Modules bitsandbytes must leave in full precision. transformers 5 matches each pattern against the
# full module path from its start (or as a suffix), so a bare "mm_projector" would skip
# `model.mm_projector` itself but still quantize its children `model.mm_projector.0` / `.2` (the
# mlp2x_gelu linears); the leading `.*` makes every module under these names match.

_DTYPE_NAMES = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
}


class CheckpointLayout(Enum):
    """What a checkpoint folder holds, which decides how it is loaded."""

    LORA = "lora"  # adapter (+ non_lora_trainables.bin) on top of a base LM
    PROJECTOR = "projector"  # mm_projector.bin on top of a base LM
    FULL = "full"  # complete weights


# --------------------------------------------------------------------------------------------------
# Layout, dtype and loading arguments
# --------------------------------------------------------------------------------------------------


def has_full_weights(folder: str) -> bool:
    """True if `folder` holds complete HF model weights (single file, shards or an index)."""
    if any(os.path.isfile(os.path.join(folder, name)) for name in FULL_WEIGHT_FILES):
        return True
    return any(glob.glob(os.path.join(folder, pattern)) for pattern in FULL_WEIGHT_GLOBS)


def has_adapter(folder: str) -> bool:
    """True if `folder` holds a peft adapter; an adapter config without weights is an error."""
    if not os.path.isfile(os.path.join(folder, ADAPTER_CONFIG_FILE)):
        return False
    weights = (ADAPTER_WEIGHTS_FILE, ADAPTER_WEIGHTS_BIN_FILE)
    if not any(os.path.isfile(os.path.join(folder, name)) for name in weights):
        raise FileNotFoundError(f"{folder} has {ADAPTER_CONFIG_FILE} but neither {' nor '.join(weights)}.")
    return True


def detect_layout(
    model_path: str, *, model_base: str | None = None, model_name: str | None = None
) -> CheckpointLayout:
    """Decide how to load `model_path` from the files it holds.

    Rules, in order: adapter files → LoRA (if full weights are there too, the full weights win unless
    `model_base` is given); full weights → full; `mm_projector.bin` → projector only. A path that is
    not a local folder (hub id) falls back to upstream's name rules on `model_name`.

    Args:
        model_path: Checkpoint folder (or hub id).
        model_base: The base LM the caller passed, if any.
        model_name: Upstream's model name (usually `get_model_name_from_path`); only for the fallback.

    Raises:
        FileNotFoundError: for a local folder holding none of the known layouts.
    """
    if not os.path.isdir(model_path):
        return _layout_from_name(model_name or model_path, model_base)
    adapter, full = has_adapter(model_path), has_full_weights(model_path)
    if adapter and full:
        layout = CheckpointLayout.LORA if model_base is not None else CheckpointLayout.FULL
        logger.warning(
            "%s holds both an adapter and full weights; loading it as %s.", model_path, layout.value
        )
        return layout
    if adapter:
        return CheckpointLayout.LORA
    if full:
        return CheckpointLayout.FULL
    if os.path.isfile(os.path.join(model_path, MM_PROJECTOR_FILE)):
        return CheckpointLayout.PROJECTOR
    if os.path.isfile(os.path.join(model_path, "zero_to_fp32.py")):
        raise FileNotFoundError(
            f"{model_path} holds only DeepSpeed ZeRO shards; consolidate them in place first: "
            f"`cd {model_path} && python zero_to_fp32.py . . --safe_serialization`."
        )
    raise FileNotFoundError(
        f"{model_path} holds no checkpoint: expected an adapter "
        f"({ADAPTER_CONFIG_FILE} + {ADAPTER_WEIGHTS_FILE}), "
        f"full weights ({', '.join(FULL_WEIGHT_FILES)} or shards) or {MM_PROJECTOR_FILE}; "
        f"found {sorted(os.listdir(model_path))}."
    )


def _layout_from_name(model_name: str, model_base: str | None) -> CheckpointLayout:
    """Upstream's rules, for hub ids only: with a base, `lora` (or a non-LLaVA name) means an adapter."""
    name = model_name.lower()
    if model_base is None:
        return CheckpointLayout.FULL
    if "lora" in name or "llava" not in name:
        return CheckpointLayout.LORA
    return CheckpointLayout.PROJECTOR


def resolve_dtype(torch_dtype: torch.dtype | str | None, device: str) -> torch.dtype:
    """The dtype to load in: explicit `torch_dtype` wins, else fp16 on CUDA/MPS and float32 on CPU.

    Args:
        torch_dtype: A `torch.dtype`, a name (`float16`/`fp16`, `bfloat16`/`bf16`, `float32`/`fp32`) or None.
        device: The target device (`cuda`, `cuda:1`, `cpu`, `mps`).
    """
    if isinstance(torch_dtype, torch.dtype):
        return torch_dtype
    if isinstance(torch_dtype, str):
        if torch_dtype.lower() not in _DTYPE_NAMES:
            raise ValueError(f"Unknown torch_dtype {torch_dtype!r}; expected one of {sorted(_DTYPE_NAMES)}.")
        return _DTYPE_NAMES[torch_dtype.lower()]
    if torch_dtype is not None:
        raise TypeError(
            f"torch_dtype must be a torch.dtype, a string or None, not {type(torch_dtype).__name__}."
        )
    # CPU kernels for fp16 matmuls are missing or slow (upstream crashed: "addmm_impl_cpu_" not
    # implemented for 'Half'); CUDA and MPS run fp16 natively.
    return torch.float32 if torch.device(device).type == "cpu" else torch.float16


def bnb_config(*, load_8bit: bool, load_4bit: bool, compute_dtype: torch.dtype) -> BitsAndBytesConfig | None:
    """bitsandbytes settings for 8- or 4-bit (nf4, double quant) loading; None for neither.

    The projector, vision tower, resampler and lm_head stay unquantized (`QUANTIZATION_SKIP_MODULES`).
    """
    if load_8bit and load_4bit:
        raise ValueError("Pass at most one of load_8bit and load_4bit.")
    if not (load_8bit or load_4bit):
        return None
    return BitsAndBytesConfig(
        load_in_8bit=load_8bit,
        load_in_4bit=load_4bit,
        llm_int8_skip_modules=list(QUANTIZATION_SKIP_MODULES),
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_use_double_quant=True,
        bnb_4bit_quant_type="nf4",
    )


def _from_pretrained_kwargs(
    *,
    device_map: Any,
    device: str,
    dtype: torch.dtype,
    quantization: BitsAndBytesConfig | None,
    use_flash_attn: bool,
    extra: dict[str, Any],
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"device_map": device_map, "dtype": dtype}
    if device != "cuda":
        # Upstream's rule: anything but the default CUDA device pins the whole model to `device`.
        kwargs["device_map"] = {"": device}
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    if use_flash_attn:
        kwargs["attn_implementation"] = "flash_attention_2"
    kwargs.update(extra)
    return kwargs


# --------------------------------------------------------------------------------------------------
# Configs and model classes
# --------------------------------------------------------------------------------------------------


def _config_dict(path: str) -> dict[str, Any]:
    """The raw `config.json` of a folder (or cached hub id)."""
    return PretrainedConfig.get_config_dict(path)[0]


def _is_llava(config_dict: dict[str, Any]) -> bool:
    # A language model becomes a LLaVA model when a vision tower is attached (upstream's criterion
    # inside the model classes); the model_type alone is not enough ("llama" bases, "llava" v1.5).
    return bool(config_dict.get("mm_vision_tower"))


def _llava_class(model_type: str | None, model_name: str | None) -> type[PreTrainedModel]:
    """The LLaVA model class for a config's `model_type` (folder name only when the type says nothing)."""
    from llava.model import LlavaLlamaForCausalLM, LlavaMistralForCausalLM

    if model_type in ("llava_mistral", "mistral"):
        return LlavaMistralForCausalLM
    if model_type in ("llava", "llava_llama", "llama"):
        return LlavaLlamaForCausalLM
    if model_type is None and model_name is not None:
        return LlavaMistralForCausalLM if "mistral" in model_name.lower() else LlavaLlamaForCausalLM
    raise ValueError(
        f"model_type {model_type!r} is not supported for LLaVA loading "
        "(supported: llava, llava_llama, llama, llava_mistral, mistral)."
    )


def _llava_config(path: str, *, drop_quantization_config: bool) -> PretrainedConfig:
    """The LLaVA config of a checkpoint folder (or cached hub id).

    Args:
        path: Folder with `config.json`.
        drop_quantization_config: Remove the `quantization_config` a QLoRA run saved with its config.
            It describes how the run loaded its base, not the base's files: left in, transformers
            treats the 16-bit base weights as pre-quantized (and fails on them, 4-bit asked or not)
            or quantizes a base the caller wanted in 16-bit. True for adapter / projector
            checkpoints (k-bit loading passes this loader's own BitsAndBytesConfig); False for full
            weights, where it does describe the files.
    """
    from llava.model import load_llava_config

    if not os.path.isdir(path):  # a hub id: its cached (or downloadable) snapshot folder
        from transformers.utils import cached_file

        path = os.path.dirname(cached_file(path, CONFIG_FILE))
    config = load_llava_config(path)
    if drop_quantization_config and getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    return config


# --------------------------------------------------------------------------------------------------
# Weight files next to the adapter / projector
# --------------------------------------------------------------------------------------------------


def load_bin(path: str) -> dict[str, torch.Tensor]:
    """A `.bin` state dict, read safely (tensors only) onto the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)


def rename_non_lora_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map `non_lora_trainables.bin` keys (PeftModel names) to the plain model's names.

    Upstream's renames: strip a leading `base_model.`, then, when keys start with `model.model.`,
    one leading `model.`. A `.base_layer.` (a parameter of a layer peft wrapped) is removed too, so
    it lands in the unwrapped layer instead of being dropped.
    """
    renamed = {k.removeprefix("base_model."): v for k, v in state.items()}
    if any(k.startswith("model.model.") for k in renamed):
        renamed = {k.removeprefix("model."): v for k, v in renamed.items()}
    return {k.replace(".base_layer.", "."): v for k, v in renamed.items()}


def load_into(
    model: nn.Module, state: dict[str, torch.Tensor], *, source: str, must_cover: tuple[str, ...] = ()
) -> None:
    """Copy `state` into `model`'s parameters, checking that every tensor lands.

    Args:
        model: The model to fill.
        state: Tensors keyed by the model's parameter names.
        source: The file `state` came from (named in errors).
        must_cover: Name fragments; every model parameter containing one must be in `state`
            (e.g. `mm_projector`: a projector left at its random initialisation is an error).

    Raises:
        KeyError: for keys the model does not have, or covered parameters missing from `state`.
        ValueError: for shape mismatches.
    """
    params = dict(model.named_parameters())
    unused = sorted(set(state) - set(params))
    if unused:
        raise KeyError(f"{source}: {len(unused)} tensors match no model parameter, e.g. {unused[:5]}.")
    uncovered = sorted(n for n in params if any(f in n for f in must_cover) and n not in state)
    if uncovered:
        raise KeyError(f"{source} lacks {len(uncovered)} parameters the model needs, e.g. {uncovered[:5]}.")
    for name, tensor in state.items():
        param = params[name]
        if param.shape != tensor.shape:
            raise ValueError(
                f"{source}: {name} has shape {tuple(tensor.shape)}, the model {tuple(param.shape)}."
            )
        with torch.no_grad():
            param.copy_(tensor.to(device=param.device, dtype=param.dtype))


# --------------------------------------------------------------------------------------------------
# Layout loaders
# --------------------------------------------------------------------------------------------------


def _resolve_lora_base(model_path: str, model_base: str | None) -> str:
    """`model_base`, else the adapter's `base_model_name_or_path`; it must be readable."""
    with open(os.path.join(model_path, ADAPTER_CONFIG_FILE)) as f:
        adapter_base = json.load(f).get("base_model_name_or_path")
    base = model_base or adapter_base
    if base and (os.path.isdir(base) or _config_readable(base)):
        return base
    raise FileNotFoundError(
        f"LoRA checkpoint {model_path}: no base model found. model_base={model_base!r}, "
        f"{ADAPTER_CONFIG_FILE} base_model_name_or_path={adapter_base!r}; pass model_base=<base LM folder>."
    )


def _config_readable(path: str) -> bool:
    """True if a config can be read for `path` (a cached hub id); False if it cannot be found."""
    try:
        _config_dict(path)
    except OSError:
        return False
    return True


def _require_local(model_path: str, layout: str) -> None:
    if not os.path.isdir(model_path):
        raise FileNotFoundError(
            f"{model_path!r} is not a local folder; a {layout} checkpoint is read file by file, so download "
            f"it first (e.g. `huggingface-cli download {model_path} --local-dir <dir>`) and pass the folder."
        )


def _log_filled(state: dict[str, torch.Tensor], source: str) -> None:
    # transformers' load report lists these as MISSING ("newly initialized") while loading the base;
    # say that they were filled, so that report is not mistaken for upstream's #808/#1406 failure.
    logger.info(
        "Loaded %d tensors from %s (the base's MISSING projector report is expected).", len(state), source
    )


def _require_base(model_path: str, model_base: str | None, what: str) -> str:
    if model_base is None:
        raise ValueError(
            f"{model_path} holds {what} but no language-model weights: pass model_base=<base LM folder> "
            "(the model it was trained on)."
        )
    return model_base


def _load_base_llava(
    base: str, config: PretrainedConfig, model_name: str | None, kwargs: dict[str, Any]
) -> PreTrainedModel:
    """A LLaVA model from base LM weights and a LLaVA config (which may have a larger vocabulary).

    The vision tower stays delay-loaded and the projector freshly initialised; the caller fills it.
    A config whose `vocab_size` exceeds the base's (tokens added in training) is loaded at the base's
    size and grown, new rows set to the mean of the old ones as training initialised them.
    """
    target_vocab = config.vocab_size
    base_vocab = _config_dict(base).get("vocab_size", target_vocab)
    if target_vocab < base_vocab:
        raise ValueError(f"{base} has vocab_size {base_vocab} but the checkpoint config {target_vocab}.")
    config.vocab_size = base_vocab
    model = _llava_class(config.model_type, model_name).from_pretrained(base, config=config, **kwargs)
    grow_embeddings(model, target_vocab)
    return model


def _load_lora(
    model_path: str,
    model_base: str | None,
    model_name: str | None,
    kwargs: dict[str, Any],
    quantized: bool,
) -> tuple[PreTrainedModel, str]:
    """Base LM (+ projector from `non_lora_trainables.bin`) + the adapter. Returns (model, base path).

    In 16/32-bit the adapter is merged (`merge_and_unload`), as upstream. On a 4/8-bit base it is kept
    unmerged, active, inside the returned model: peft can merge into bitsandbytes layers only by
    dequantizing, adding and re-quantizing, which rounds the LoRA update back onto the quantization
    grid, so the merged model no longer computes what QLoRA trained (base_q + BA); unmerged, it does.
    """
    from peft import PeftModel

    _require_local(model_path, "LoRA")
    base = _resolve_lora_base(model_path, model_base)
    has_config = os.path.isfile(os.path.join(model_path, CONFIG_FILE))
    non_lora_path = os.path.join(model_path, NON_LORA_TRAINABLES_FILE)
    is_llava = _is_llava(_config_dict(model_path if has_config else base))
    if not is_llava and (os.path.isfile(non_lora_path) or "llava" in (model_name or "").lower()):
        raise FileNotFoundError(
            f"{model_path} looks like a LLaVA LoRA checkpoint but has no {CONFIG_FILE} with the vision "
            "settings (upstream's intermediate checkpoint-N folders lack it); use the run's final output."
        )
    if not has_config:
        logger.warning(
            "%s has no %s: loading it as an adapter of the plain language model %s.",
            model_path,
            CONFIG_FILE,
            base,
        )

    if is_llava:
        config = _llava_config(model_path if has_config else base, drop_quantization_config=True)
        model = _load_base_llava(base, config, model_name, kwargs)
        if not os.path.isfile(non_lora_path):
            raise FileNotFoundError(
                f"{model_path} is a LLaVA LoRA checkpoint without {NON_LORA_TRAINABLES_FILE}: the trained "
                "projector is missing, the model would run with a random one."
            )
        state = rename_non_lora_keys(load_bin(non_lora_path))
        load_into(model, state, source=non_lora_path, must_cover=(MM_PROJECTOR_KEY,))
        _log_filled(state, non_lora_path)
    else:
        model = AutoModelForCausalLM.from_pretrained(base, **kwargs)

    logger.info("Loading LoRA weights from %s", model_path)
    peft_model = PeftModel.from_pretrained(model, model_path)
    if quantized:
        model = peft_model.get_base_model()
    else:
        model = peft_model.merge_and_unload()
    return model, base


def _load_projector_only(
    model_path: str, model_base: str, model_name: str | None, kwargs: dict[str, Any]
) -> PreTrainedModel:
    """Base LM weights + the config and `mm_projector.bin` of a projector-pretraining output."""
    _require_local(model_path, "projector-only")
    config = _llava_config(model_path, drop_quantization_config=True)
    model = _load_base_llava(model_base, config, model_name, kwargs)
    projector_path = os.path.join(model_path, MM_PROJECTOR_FILE)
    state = load_bin(projector_path)
    load_into(model, state, source=projector_path, must_cover=(MM_PROJECTOR_KEY,))
    _log_filled(state, projector_path)
    return model


def _load_full(model_path: str, model_name: str | None, kwargs: dict[str, Any]) -> PreTrainedModel:
    """Complete weights: a LLaVA model (ours or upstream's) or a plain language model."""
    if not _is_llava(_config_dict(model_path)):
        return AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    config = _llava_config(model_path, drop_quantization_config=False)
    model_cls = _llava_class(config.model_type, model_name)
    model, info = model_cls.from_pretrained(model_path, config=config, output_loading_info=True, **kwargs)
    missing = [k for k in info["missing_keys"] if MM_PROJECTOR_KEY in k]
    if missing:
        raise KeyError(f"{model_path}: the weights lack the projector ({missing[:5]}); it would stay random.")
    return model


# --------------------------------------------------------------------------------------------------
# After loading: tokenizer, embeddings, vision tower
# --------------------------------------------------------------------------------------------------


def grow_embeddings(model: PreTrainedModel, vocab_size: int) -> None:
    """Grow input/output embeddings to `vocab_size` rows, new rows = mean of the old (never shrinks)."""
    old = model.get_input_embeddings().weight.shape[0]
    if vocab_size <= old:
        return
    model.resize_token_embeddings(vocab_size, mean_resizing=False)
    for embedding in (model.get_input_embeddings(), model.get_output_embeddings()):
        if embedding is not None:
            with torch.no_grad():
                embedding.weight[old:] = embedding.weight[:old].mean(dim=0, keepdim=True)


def _tokenizer_source(model_path: str, base: str | None) -> str:
    if os.path.isdir(model_path) and any(
        os.path.isfile(os.path.join(model_path, f)) for f in TOKENIZER_FILES
    ):
        return model_path
    if base is not None:
        return base
    if not os.path.isdir(model_path):
        return model_path  # a hub id: let the tokenizer loader resolve it
    raise FileNotFoundError(
        f"{model_path} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); "
        "pass model_base=<base LM folder>."
    )


def add_image_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Upstream's inference tokens: `<im_patch>` (default on), `<im_start>`/`<im_end>` when configured.

    Embeddings grow to fit the tokenizer; they never shrink (a checkpoint may reserve more rows than
    its tokenizer uses, and shrinking would cut trained rows).
    """
    config = model.config
    if getattr(config, "mm_use_im_patch_token", True):
        tokenizer.add_tokens([DEFAULT_IMAGE_PATCH_TOKEN], special_tokens=True)
    if getattr(config, "mm_use_im_start_end", False):
        tokenizer.add_tokens([DEFAULT_IM_START_TOKEN, DEFAULT_IM_END_TOKEN], special_tokens=True)
    grow_embeddings(model, len(tokenizer))


def _projector_placement(model: PreTrainedModel) -> torch.device:
    projector = model.get_model().mm_projector
    first = next(projector.parameters(), None)
    return first.device if first is not None else model.get_input_embeddings().weight.device


def load_vision_tower(model: PreTrainedModel, *, device_map: Any, dtype: torch.dtype) -> None:
    """Load the (delay-loaded) CLIP tower from `mm_vision_tower` and put it beside the projector.

    As upstream, the tower is re-read from `config.mm_vision_tower`; a copy of it inside full
    checkpoints is ignored (it is the same frozen weights).
    """
    vision_tower = model.get_vision_tower()
    if not vision_tower.is_loaded:
        vision_tower.load_model(device_map=device_map if isinstance(device_map, dict) else None)
    vision_tower.to(device=_projector_placement(model), dtype=dtype)


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def load_pretrained_model(
    model_path: str,
    model_base: str | None,
    model_name: str | None,
    load_8bit: bool = False,
    load_4bit: bool = False,
    device_map: Any = "auto",
    device: str = "cuda",
    use_flash_attn: bool = False,
    *,
    torch_dtype: torch.dtype | str | None = None,
    **kwargs: Any,
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel, Any, int]:
    """Load a LLaVA (or plain LM) checkpoint of any layout for inference.

    Args:
        model_path: Checkpoint folder: LoRA/QLoRA output, projector-pretraining output, full or merged
            weights (ours or upstream's), or any `checkpoint-N` of our runs.
        model_base: Base LM folder, needed for LoRA (unless the adapter config names a readable base)
            and projector-only checkpoints; ignored for full weights.
        model_name: Upstream's model name; only used when `model_path` is not a local folder.
        load_8bit: Quantize the language model to 8-bit (bitsandbytes).
        load_4bit: Quantize the language model to 4-bit nf4 with double quantization.
        device_map: Passed to `from_pretrained` when `device` is `cuda`.
        device: `cuda`, `cpu`, `mps` (or `cuda:N`); anything but `cuda` pins the model to it. When CUDA
            is asked for but absent, the CPU is used (with a warning).
        use_flash_attn: Use `attn_implementation="flash_attention_2"`.
        torch_dtype: Load dtype (a `torch.dtype` or name); default fp16 on CUDA/MPS, float32 on CPU.
            With 4/8-bit it is the compute dtype and the dtype of the unquantized modules.
        **kwargs: Extra `from_pretrained` arguments.

    Returns:
        `(tokenizer, model, image_processor, context_len)`; `image_processor` is None for a plain LM.
        A 4/8-bit LoRA model keeps its adapter unmerged (see `_load_lora`).

    Raises:
        FileNotFoundError: for an unrecognised folder, a missing base or missing projector weights.
        KeyError / ValueError: when projector weights do not fit the model.
    """
    from llava.tokenization import load_tokenizer

    if torch_dtype is None and "dtype" in kwargs:  # transformers 5's name for it
        torch_dtype = kwargs.pop("dtype")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        logger.warning("device=%r but CUDA is not available: loading on the CPU.", device)
        device = "cpu"
    dtype = resolve_dtype(torch_dtype, device)
    quantization = bnb_config(load_8bit=load_8bit, load_4bit=load_4bit, compute_dtype=dtype)
    from_kwargs = _from_pretrained_kwargs(
        device_map=device_map,
        device=device,
        dtype=dtype,
        quantization=quantization,
        use_flash_attn=use_flash_attn,
        extra=kwargs,
    )
    quantized = quantization is not None

    layout = detect_layout(model_path, model_base=model_base, model_name=model_name)
    logger.info("Loading %s as a %s checkpoint (%s)", model_path, layout.value, dtype)
    base = model_base
    if layout is CheckpointLayout.LORA:
        model, base = _load_lora(model_path, model_base, model_name, from_kwargs, quantized)
    elif layout is CheckpointLayout.PROJECTOR:
        base = _require_base(model_path, model_base, MM_PROJECTOR_FILE)
        model = _load_projector_only(model_path, base, model_name, from_kwargs)
    else:
        if model_base is not None:
            logger.info(
                "%s holds full weights; model_base=%s only serves as tokenizer fallback.",
                model_path,
                model_base,
            )
        model = _load_full(model_path, model_name, from_kwargs)

    tokenizer = load_tokenizer(_tokenizer_source(model_path, base))
    image_processor = None
    if getattr(model.config, "mm_vision_tower", None):
        add_image_tokens(model, tokenizer)
        load_vision_tower(model, device_map=from_kwargs["device_map"], dtype=dtype)
        image_processor = model.get_vision_tower().image_processor
    model.eval()

    context_len = getattr(model.config, "max_sequence_length", None) or DEFAULT_CONTEXT_LEN
    return tokenizer, model, image_processor, context_len
