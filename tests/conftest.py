"""Fixtures shared by every test area: the toy world and the real LLaMA-2 tokenizer."""

from __future__ import annotations

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
def llama2_tokenizer_dir() -> Path:
    if not (LLAMA2_TOKENIZER_DIR / "tokenizer.model").is_file():
        pytest.fail(f"The real LLaMA-2 tokenizer is missing at {LLAMA2_TOKENIZER_DIR}")
    return LLAMA2_TOKENIZER_DIR
