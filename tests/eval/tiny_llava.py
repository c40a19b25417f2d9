"""Build and save a tiny LLaVA (toy LLM + toy CLIP, fresh projector) for the inference tests.

Imported by path from `tests/eval/conftest.py` and `tests/serve/conftest.py` (test folders are not
packages), so it depends on nothing but the library.
"""

from __future__ import annotations

from pathlib import Path

import torch


def build_tiny_llava(
    out_dir: str | Path,
    llm_dir: str | Path,
    clip_dir: str | Path,
    *,
    image_aspect_ratio: str = "pad",
    seed: int = 0,
) -> Path:
    """Save a LLaVA-1.5-style checkpoint (full weights, mlp2x_gelu projector) built from a base LLM and CLIP.

    The projector is freshly initialised (seeded), so answers are deterministic but not meaningful; the
    inference tests compare entrypoints and batch sizes with each other, not with references.
    """
    from llava.model import LlavaLlamaForCausalLM
    from llava.tokenization import configure_pad_token, load_tokenizer

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(str(llm_dir), model_max_length=512)
    model = LlavaLlamaForCausalLM.from_pretrained(str(llm_dir), dtype=torch.float32)
    added = configure_pad_token(tokenizer, "v1")
    if added:
        model.resize_token_embeddings(len(tokenizer))
    model.get_model().initialize_vision_modules(
        vision_tower=str(clip_dir), mm_vision_select_layer=-2, mm_projector_type="mlp2x_gelu"
    )
    model.initialize_vision_tokenizer(tokenizer, mm_use_im_start_end=False, mm_use_im_patch_token=False)
    config = model.config
    config.image_aspect_ratio = image_aspect_ratio
    config.tokenizer_padding_side = "right"
    config.tokenizer_model_max_length = 512
    config.mm_use_im_start_end = False
    config.mm_use_im_patch_token = False
    config.tune_mm_mlp_adapter = False
    config.use_cache = True
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def shared_tiny_llava(base_temp: str | Path, llm_dir: str | Path, clip_dir: str | Path) -> Path:
    """The tiny checkpoint under pytest's session temp folder, built once for tests/eval and tests/serve."""
    out = Path(base_temp) / "inference" / "llava-v1-toy"
    if not (out / "config.json").is_file():
        build_tiny_llava(out, llm_dir, clip_dir)
    return out
