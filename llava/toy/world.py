"""Build, cache and locate the tiny offline world.

``ensure_world`` returns a finished world, building it first when the folder holds none for this seed and
``WORLD_VERSION``. A build happens in a temporary sibling folder that is renamed into place at the end,
under an exclusive ``fcntl`` lock, so an interrupted build never looks complete and two processes never
build the same world at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import string
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPVisionModel

from llava.toy import clip, corpus, datasets, language, lm, probe, scienceqa
from llava.toy.scenes import Scene, render_scene, sample_scenes
from llava.toy.tokenizer import load_processor, save_llama_tokenizer, train_sentencepiece

# Bump whenever the world's content or layout changes: cached worlds of another version are rebuilt.
WORLD_VERSION = 4
MANIFEST_FILE = "manifest.json"
# Torch ops are run on this many threads during the build: results are reproducible for a fixed count.
BUILD_THREADS = 2
# Independent random streams, one per part of the world (adding a part never changes the others).
_STREAMS = (
    "train_scenes",
    "eval_scenes",
    "pretrain",
    "finetune",
    "eval",
    "corpus",
    "scienceqa",
    "clip_scenes",
    "lm_torch",
    "clip_torch",
    "probe_scenes",
)


@dataclass(frozen=True)
class WorldSpec:
    """How big each part of the world is."""

    n_train_images: int = 3000
    n_finetune_images: int = 2700
    n_finetune_text_only: int = 300
    n_eval_per_category: int = 50
    n_clip_extra_images: int = 3000
    n_probe_train: int = 2000
    n_probe_test: int = 1000
    n_corpus_captions: int = 1000
    n_corpus_dialogues: int = 1000
    n_corpus_reading: int = 3000
    vocab_size: int = 1024
    lm: lm.LMSpec = field(default_factory=lm.LMSpec)
    clip: clip.ClipSpec = field(default_factory=clip.ClipSpec)


@dataclass(frozen=True)
class ToyWorld:
    """Paths of a built world (see ``llava.toy`` for what each holds)."""

    root: Path
    llm_dir: Path
    clip_dir: Path
    image_folder: Path
    blank_image_folder: Path
    pretrain_json: Path
    finetune_json: Path
    eval_questions: Path
    eval_answers: Path
    scienceqa_dir: Path
    text_corpus: Path
    manifest: Path


def world_paths(root: str | Path) -> ToyWorld:
    """The layout of a world rooted at ``root`` (nothing is checked or created)."""
    root = Path(root)
    return ToyWorld(
        root=root,
        llm_dir=root / "llm",
        clip_dir=root / "clip",
        image_folder=root / "images",
        blank_image_folder=root / "images_blank",
        pretrain_json=root / "pretrain.json",
        finetune_json=root / "finetune.json",
        eval_questions=root / "eval" / "questions.jsonl",
        eval_answers=root / "eval" / "answers.jsonl",
        scienceqa_dir=root / "scienceqa",
        text_corpus=root / "text_corpus.txt",
        manifest=root / MANIFEST_FILE,
    )


def stream(seed: int, name: str) -> np.random.Generator:
    """The numpy Generator of one named part of the world."""
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAMS.index(name)]))


def torch_seed(seed: int, name: str) -> int:
    """A torch seed derived from the world seed for one named part."""
    return int(np.random.SeedSequence([seed, _STREAMS.index(name)]).generate_state(1)[0])


# --- the build, step by step ------------------------------------------------------------------------------


def _save_images(scenes: list[Scene], folder: Path, names: list[str], blank: bool = False) -> None:
    for scene, name in zip(scenes, names, strict=True):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        render_scene(scene, blank=blank).save(path, format="PNG")


def _image_array(scenes: list[Scene]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(render_scene(scene)) for scene in scenes]))  # (N, H, W, 3)


def _eval_scenes(seed: int, spec: WorldSpec) -> tuple[list[Scene], list[str]]:
    """Eval scenes, balanced within each category so each category's majority answer stays rare."""
    rng = stream(seed, "eval_scenes")
    scenes, categories = [], []
    for category in language.CATEGORIES:
        scenes += sample_scenes(rng, spec.n_eval_per_category)
        categories += [category] * spec.n_eval_per_category
    return scenes, categories


def _write_scienceqa(seed: int, out: Path) -> list[str]:
    """Write the ScienceQA split; return its text lines (for the tokenizer's training text)."""
    problems, scenes = scienceqa.build_problems(stream(seed, "scienceqa"))
    splits = scienceqa.pid_splits(problems)
    for pid, scene in scenes.items():
        path = out / "images" / problems[pid]["split"] / pid / "image.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        render_scene(scene).save(path, format="PNG")
    datasets.write_json(out / "problems.json", problems)
    datasets.write_json(out / "pid_splits.json", splits)
    datasets.write_json(
        out / "llava_train_QCM-LEA.json", scienceqa.llava_records(problems, splits["train"], "QCM-LEA")
    )
    datasets.write_json(
        out / "llava_test_CQM-A.json", scienceqa.llava_records(problems, splits["test"], "CQM-A")
    )
    lines = []
    for problem in problems.values():
        lines += [
            problem["question"],
            problem["hint"],
            problem["lecture"],
            problem["solution"],
            *problem["choices"],
        ]
    return [line for line in lines if line]


def _tokenizer_lines(documents: list[str], records: list[dict], extra: list[str]) -> list[str]:
    lines = [line for document in documents for line in document.split("\n")]
    for record in records:
        for turn in record["conversations"]:
            lines += turn["value"].replace("<image>", "").split("\n")
    lines += [line for text in extra for line in text.split("\n")]
    lines.append(" ".join(language.all_words()))
    # Every printable ASCII character gets a piece, as in LLaMA's vocabulary (digits included), so only
    # other characters fall back to bytes.
    lines.append(" ".join(string.ascii_letters + string.digits + string.punctuation))
    return [line for line in (x.strip() for x in lines) if line]


def _build(root: Path, seed: int, spec: WorldSpec, log: Callable[[str], None]) -> dict:
    """Build every file of the world under ``root`` (an empty folder); return the manifest's stats."""
    paths = world_paths(root)
    timings: dict[str, float] = {}
    stats: dict[str, object] = {}

    @contextlib.contextmanager
    def step(name: str) -> Iterator[None]:
        log(f"[toy] {name} ...")
        start = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - start, 2)
        log(f"[toy] {name} done in {timings[name]:.1f}s")

    with step("images"):
        train_scenes = sample_scenes(stream(seed, "train_scenes"), spec.n_train_images)
        train_names = [f"train/{i:06d}.png" for i in range(len(train_scenes))]
        eval_scenes, eval_categories = _eval_scenes(seed, spec)
        eval_names = [f"eval/{i:06d}.png" for i in range(len(eval_scenes))]
        _save_images(train_scenes, paths.image_folder, train_names)
        _save_images(eval_scenes, paths.image_folder, eval_names)
        _save_images(eval_scenes, paths.blank_image_folder, eval_names, blank=True)

    with step("datasets"):
        pretrain = datasets.pretrain_records(train_scenes, train_names, stream(seed, "pretrain"))
        finetune = datasets.finetune_records(
            train_scenes[: spec.n_finetune_images],
            train_names[: spec.n_finetune_images],
            spec.n_finetune_text_only,
            stream(seed, "finetune"),
        )
        questions, answers = datasets.eval_records(
            eval_scenes, eval_names, eval_categories, stream(seed, "eval")
        )
        datasets.write_json(paths.pretrain_json, pretrain)
        datasets.write_json(paths.finetune_json, finetune)
        paths.eval_questions.parent.mkdir(parents=True)
        datasets.write_jsonl(paths.eval_questions, questions)
        datasets.write_jsonl(paths.eval_answers, answers)
        sqa_lines = _write_scienceqa(seed, paths.scienceqa_dir)
        documents = corpus.build_documents(
            stream(seed, "corpus"), spec.n_corpus_captions, spec.n_corpus_dialogues, spec.n_corpus_reading
        )
        paths.text_corpus.write_text(corpus.DOCUMENT_SEPARATOR.join(documents) + "\n", encoding="utf-8")

    with step("tokenizer"):
        lines = _tokenizer_lines(documents, pretrain + finetune, sqa_lines + [q["text"] for q in questions])
        tokenizer_model = train_sentencepiece(lines, spec.vocab_size)
        paths.llm_dir.mkdir()
        save_llama_tokenizer(tokenizer_model, paths.llm_dir, spec.lm.max_position_embeddings)

    with step("lm"):
        stats["lm"] = lm.build_lm(
            documents, tokenizer_model, paths.llm_dir, spec.lm, torch_seed(seed, "lm_torch"), log
        )

    with step("clip"):
        clip_scenes = train_scenes + sample_scenes(stream(seed, "clip_scenes"), spec.n_clip_extra_images)
        clip_images = _image_array(clip_scenes)
        processor = load_processor(tokenizer_model)
        # One fixed caption per attribute combination: the text tower only has to tell combinations apart.
        caption_ids = [
            processor.encode(language.canonical_caption(s.color, s.shape, s.position, s.count))
            for s in clip_scenes
        ]
        stats["clip"] = clip.build_clip(
            clip_images,
            caption_ids,
            probe.attribute_codes(clip_scenes),
            processor.get_piece_size(),
            paths.clip_dir,
            spec.clip,
            torch_seed(seed, "clip_torch"),
            log,
        )

    with step("probe"):
        vision = CLIPVisionModel.from_pretrained(paths.clip_dir).eval()
        n = spec.n_probe_train
        held_out = sample_scenes(stream(seed, "probe_scenes"), spec.n_probe_test)
        # The tower runs once; both poolings probe the same tokens.
        train_tokens = probe.patch_features(vision, clip_images[:n])
        test_tokens = probe.patch_features(vision, _image_array(held_out))
        accuracy = {
            pooling: probe.probe_patches(train_tokens, clip_scenes[:n], test_tokens, held_out, pooling)
            for pooling in ("flatten", "mean")
        }
        stats["clip_probe"] = {
            "select_layer": -2,
            "n_train": n,
            "n_test": len(held_out),
            "accuracy": {
                pooling: {k: round(v, 4) for k, v in scores.items()} for pooling, scores in accuracy.items()
            },
        }
        log(f"[toy] CLIP probes on held-out images (layer -2, flattened / averaged patches): {accuracy}")

    stats["counts"] = {
        "train_images": len(train_scenes),
        "pretrain": len(pretrain),
        "finetune": len(finetune),
        "finetune_text_only": spec.n_finetune_text_only,
        "eval_questions": len(questions),
        "corpus_documents": len(documents),
        "vocab_size": load_processor(tokenizer_model).get_piece_size(),
        "image_tokens": (spec.clip.image_size // spec.clip.patch_size) ** 2,
    }
    stats["timings_s"] = timings
    return stats


# --- caching, locking, atomic publication ----------------------------------------------------------------


def _listed_files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_FILE
    )


def is_complete(root: str | Path, seed: int) -> bool:
    """Whether ``root`` holds a finished world of this seed and ``WORLD_VERSION`` with all its files."""
    manifest_path = Path(root) / MANIFEST_FILE
    if not manifest_path.is_file():
        return False
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("world_version") != WORLD_VERSION or manifest.get("seed") != seed:
        return False
    return all((Path(root) / name).is_file() for name in manifest.get("files", []))


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<parent>/.<name>.lock`` (released when the process dies, too)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def build_world(
    out_dir: str | Path = "playground/toy",
    seed: int = 0,
    force: bool = False,
    spec: WorldSpec | None = None,
    log: Callable[[str], None] = print,
) -> ToyWorld:
    """Build the world into ``out_dir`` unless an up-to-date one is there (or always, with ``force``).

    Args:
        out_dir: the world's root folder.
        seed: world seed; the same seed gives the same images, datasets and (on the same torch) weights.
        force: rebuild even if a complete world of this seed and version exists.
        spec: sizes (defaults to ``WorldSpec()``; tests use smaller ones).
        log: progress printer.

    Returns:
        The world's paths.
    """
    root = Path(out_dir).absolute()
    spec = spec or WorldSpec()
    with _locked(root):
        if not force and is_complete(root, seed):
            log(f"[toy] world at {root} is up to date (seed {seed}, version {WORLD_VERSION})")
            return world_paths(root)
        # Leftovers of interrupted builds: nobody else can be building, we hold the lock.
        for stale in root.parent.glob(f".{root.name}.tmp-*"):
            shutil.rmtree(stale)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
        try:
            start = time.perf_counter()
            with _torch_threads(BUILD_THREADS):
                stats = _build(tmp, seed, spec, log)
            manifest = {
                "world_version": WORLD_VERSION,
                "seed": seed,
                "spec": dataclasses.asdict(spec),
                **stats,
                "build_seconds": round(time.perf_counter() - start, 2),
                "files": _listed_files(tmp),
            }
            # The manifest is written last: its presence marks a complete world.
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            if root.exists():
                old = root.parent / f".{root.name}.tmp-old-{os.getpid()}"
                root.rename(old)
                shutil.rmtree(old)
            tmp.rename(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log(f"[toy] world built at {root} in {manifest['build_seconds']:.1f}s")
    return world_paths(root)


def ensure_world(out_dir: str | Path = "playground/toy", seed: int = 0) -> ToyWorld:
    """The world at ``out_dir`` for ``seed``, built first if missing or stale (safe across processes)."""
    root = Path(out_dir).absolute()
    if is_complete(root, seed):
        return world_paths(root)
    return build_world(root, seed)
