"""Fixtures of the serving tests: the same tiny LLaVA checkpoint as tests/eval."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def _tiny_llava_module():
    # Test folders are not packages: load the shared builder by path.
    path = Path(__file__).parents[1] / "eval" / "tiny_llava.py"
    spec = importlib.util.spec_from_file_location("_tests_tiny_llava", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_llava_dir(toy_world, tmp_path_factory) -> Path:
    """A full-weights LLaVA checkpoint (toy LLM + toy CLIP, fresh projector) named like a v1 model."""
    base = tmp_path_factory.getbasetemp()
    return _tiny_llava_module().shared_tiny_llava(base, toy_world.llm_dir, toy_world.clip_dir)
