"""`make demo`'s targets, measured: wall time from a missing world to the final table, and accuracy.

    python benchmarks/demo_targets.py [--seed 0] [--out benchmarks/RESULTS.md] [--keep DIR]

Runs `python -m llava.demo` in a fresh process on a world folder that does not exist yet, so the world
build is part of the timed run (the virtual environment is not: it is set up before). Then checks:

- the whole run, world build included, takes under 10 minutes;
- LoRA reaches >= 90% on the held-out questions overall and >= 80% on every question type;
- QLoRA is within 5 points of LoRA;
- with blank images, both fall to the majority-answer level (at most 5 points above it).

Prints the results, updates its section of the results file with `--out`, and exits with 1 when a
target is missed. The load average before the run is recorded: the timings assume an idle machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from results_file import machine_line, update_results

REPO_ROOT = Path(__file__).resolve().parents[1]
SECTION_TITLE = "## `make demo`: time and accuracy (world seed {seed})"
TIME_LIMIT_S = 600
LORA_OVERALL_MIN = 90.0
LORA_PER_TYPE_MIN = 80.0
QLORA_MAX_GAP = 5.0
BLANK_MAX_ABOVE_MAJORITY = 5.0


class Target(NamedTuple):
    name: str
    measured: str
    met: bool


def run_demo(work: Path, seed: int) -> tuple[float, dict, dict]:
    """Run the demo on a world that does not exist yet; return wall seconds, its results and manifest."""
    world, out = work / "world", work / "demo"
    command = [
        sys.executable,
        "-m",
        "llava.demo",
        "--world",
        str(world),
        "--out",
        str(out),
        "--seed",
        str(seed),
    ]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)), check=True)
    seconds = time.perf_counter() - started
    stages = {row["stage"]: row for row in json.loads((out / "results.json").read_text())["stages"]}
    return seconds, stages, json.loads((world / "manifest.json").read_text())


def check_targets(seconds: float, stages: dict) -> list[Target]:
    lora, qlora = stages["lora"], stages["qlora"]
    worst_type, worst = min(lora["per_type"].items(), key=lambda item: item[1])
    targets = [
        Target(f"whole demo under {TIME_LIMIT_S} s", f"{seconds:.0f} s", seconds < TIME_LIMIT_S),
        Target(
            f"LoRA overall >= {LORA_OVERALL_MIN:.0f}%",
            f"{lora['accuracy']:.1f}%",
            lora["accuracy"] >= LORA_OVERALL_MIN,
        ),
        Target(
            f"LoRA every type >= {LORA_PER_TYPE_MIN:.0f}%",
            f"lowest: {worst_type} {worst:.1f}%",
            worst >= LORA_PER_TYPE_MIN,
        ),
        Target(
            f"QLoRA within {QLORA_MAX_GAP:.0f} points of LoRA",
            f"{qlora['accuracy']:.1f}% vs {lora['accuracy']:.1f}%",
            qlora["accuracy"] >= lora["accuracy"] - QLORA_MAX_GAP,
        ),
    ]
    for row in (lora, qlora):
        targets.append(
            Target(
                f"{row['stage']} with blank images at most {BLANK_MAX_ABOVE_MAJORITY:.0f} points above "
                "the majority answer",
                f"{row['blank_accuracy']:.1f}% vs {row['majority_baseline']:.1f}%",
                row["blank_accuracy"] <= row["majority_baseline"] + BLANK_MAX_ABOVE_MAJORITY,
            )
        )
    return targets


def render_section(seconds: float, stages: dict, manifest: dict, targets: list[Target], load: str) -> str:
    types = sorted(next(iter(stages.values()))["per_type"])
    seed = manifest["seed"]
    lines = [
        SECTION_TITLE.format(seed=seed),
        "",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Machine: {machine_line()}; load average before the run: {load}",
        f"- Command: `python benchmarks/demo_targets.py --seed {seed} --out benchmarks/RESULTS.md` (runs "
        f"`python -m llava.demo --seed {seed}` on a world folder that does not exist yet)",
        f"- Wall time: **{seconds:.0f} s**, of which the world build {manifest['build_seconds']:.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in manifest['timings_s'].items())})",
        "",
        "| stage | " + " | ".join(types) + " | overall % | blank images % | majority % | train s | "
        "peak RSS MB | checkpoint MB |",
        "|---|" + "---:|" * (len(types) + 6),
    ]
    for row in stages.values():
        per_type = " | ".join(f"{row['per_type'][t]:.0f}" for t in types)
        lines.append(
            f"| {row['stage']} | {per_type} | {row['accuracy']:.1f} | {row['blank_accuracy']:.1f} | "
            f"{row['majority_baseline']:.1f} | {row['train_seconds']:.0f} | {row['peak_memory_mb']:.0f} | "
            f"{row['checkpoint_mb']:.2f} |"
        )
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t.name} | {t.measured} | {'yes' if t.met else '**no**'} |" for t in targets]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="Toy world seed (the demo's default is 0).")
    parser.add_argument("--out", type=Path, default=None, help="Results file to update (e.g. RESULTS.md).")
    parser.add_argument("--keep", type=Path, default=None, help="Run in this new folder and keep it.")
    args = parser.parse_args(argv)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.keep is not None:
        args.keep.mkdir(parents=True)  # must be new: an existing world would skip the build
        seconds, stages, manifest = run_demo(args.keep, args.seed)
    else:
        with tempfile.TemporaryDirectory(prefix="demo-bench-") as work:
            seconds, stages, manifest = run_demo(Path(work), args.seed)
    targets = check_targets(seconds, stages)
    section = render_section(seconds, stages, manifest, targets, load)
    print("\n" + section)
    if args.out is not None:
        update_results(args.out, SECTION_TITLE.format(seed=args.seed), section)
    return 0 if all(t.met for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
