"""Building, caching and reproducibility of the whole world (on a tiny spec, so it runs in seconds)."""

from __future__ import annotations

import json

import pytest

from llava.toy import WORLD_VERSION, WorldSpec, build_world, ensure_world
from llava.toy.clip import ClipSpec
from llava.toy.lm import LMSpec
from llava.toy.world import is_complete

TINY = WorldSpec(
    n_train_images=40,
    n_finetune_images=30,
    n_finetune_text_only=4,
    n_eval_per_category=3,
    n_clip_extra_images=24,
    n_probe_train=30,
    n_probe_test=10,
    n_corpus_captions=60,
    n_corpus_dialogues=60,
    n_corpus_reading=40,
    vocab_size=400,
    lm=LMSpec(steps=2, batch_size=2, block_size=64),
    clip=ClipSpec(steps=2, batch_size=16),
)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_worlds(tmp_path_factory):
    base = tmp_path_factory.mktemp("worlds")
    logs: list[str] = []
    first = build_world(base / "a", seed=5, spec=TINY, log=logs.append)
    second = build_world(base / "b", seed=5, spec=TINY, log=logs.append)
    other = build_world(base / "c", seed=6, spec=TINY, log=logs.append)
    return first, second, other, logs


def test_same_seed_gives_identical_files(tiny_worlds):
    first, second, other, _ = tiny_worlds
    a, b = _files(first.root), _files(second.root)
    manifest = first.manifest.relative_to(first.root)
    assert a.keys() == b.keys()
    different = [str(name) for name in a if name != manifest and a[name] != b[name]]
    assert not different, f"files differ between two builds with the same seed: {different}"
    c = _files(other.root)
    assert a[first.finetune_json.relative_to(first.root)] != c[other.finetune_json.relative_to(other.root)]


def test_manifest_and_layout(tiny_worlds):
    world, *_ = tiny_worlds
    manifest = json.loads(world.manifest.read_text())
    assert manifest["world_version"] == WORLD_VERSION and manifest["seed"] == 5
    assert set(manifest["timings_s"]) == {"images", "datasets", "tokenizer", "lm", "clip", "probe"}
    assert manifest["lm"]["params"] > 0 and manifest["clip"]["vision_params"] > 0
    for name in manifest["files"]:
        assert (world.root / name).is_file(), name
    for path in (
        world.llm_dir / "config.json",
        world.clip_dir / "preprocessor_config.json",
        world.pretrain_json,
        world.finetune_json,
        world.eval_questions,
        world.eval_answers,
        world.text_corpus,
        world.scienceqa_dir / "llava_test_CQM-A.json",
    ):
        assert path.is_file(), path
    # No temporary build folders are left beside the world.
    assert not [p.name for p in world.root.parent.iterdir() if ".tmp-" in p.name]


def test_cache_reuse_and_rebuild(tiny_worlds):
    world, _, _, logs = tiny_worlds
    assert is_complete(world.root, 5) and not is_complete(world.root, 6)
    messages: list[str] = []
    again = build_world(world.root, seed=5, spec=TINY, log=messages.append)
    assert again == world and any("up to date" in m for m in messages)
    assert ensure_world(world.root, seed=5) == world
    # A missing file makes the world incomplete (it would be rebuilt).
    victim = world.root / json.loads(world.manifest.read_text())["files"][0]
    content = victim.read_bytes()
    victim.unlink()
    assert not is_complete(world.root, 5)
    victim.write_bytes(content)
    assert is_complete(world.root, 5)
