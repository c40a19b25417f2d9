"""Fixtures shared by every test area: the toy world, a tiny LLaVA checkpoint built from it, and the real
LLaMA-2 tokenizer."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real LLaMA-2 / Vicuna-v1.5 tokenizer lives beside the checkout (shared data, never copied in).
LLAMA2_TOKENIZER_DIR = REPO_ROOT.parent / "shared" / "data" / "llama2-tokenizer"
TOY_WORLD_DIR = Path(os.environ.get("LLAVA_TOY_WORLD", REPO_ROOT / "playground" / "toy"))


@pytest.fixture(scope="session")
def toy_world():
    """The tiny offline world, built once and reused across runs (cached by its manifest)."""
    from llava.toy import ensure_world

    return ensure_world(TOY_WORLD_DIR, seed=0)


@pytest.fixture(scope="session")
def tiny_llava_dir(toy_world, tmp_path_factory) -> Path:
    """A full-weights LLaVA checkpoint (toy LLM + toy CLIP, fresh projector) named like a v1 model."""
    # tests/eval is not a package: load its builder by path.
    spec = importlib.util.spec_from_file_location(
        "_tests_tiny_llava", Path(__file__).parent / "eval" / "tiny_llava.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.shared_tiny_llava(tmp_path_factory.getbasetemp(), toy_world.llm_dir, toy_world.clip_dir)


@pytest.fixture(scope="session")
def llama2_tokenizer_dir() -> Path:
    if not (LLAMA2_TOKENIZER_DIR / "tokenizer.model").is_file():
        pytest.fail(f"The real LLaMA-2 tokenizer is missing at {LLAMA2_TOKENIZER_DIR}")
    return LLAMA2_TOKENIZER_DIR
