"""The demo's results: a table on the terminal, `results.json` and a PNG of the loss curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = (
    ("stage", "stage", "{}"),
    ("accuracy", "acc %", "{:.1f}"),
    ("blank_accuracy", "blank-image acc %", "{:.1f}"),
    ("majority_baseline", "majority %", "{:.1f}"),
    ("train_seconds", "train s", "{:.0f}"),
    ("peak_memory_mb", "peak MB", "{:.0f}"),
    ("checkpoint_mb", "checkpoint MB", "{:.2f}"),
)


def loss_history(output_dir: Path) -> list[tuple[int, float]]:
    """(step, loss) pairs the Trainer logged in `trainer_state.json`."""
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [(entry["step"], entry["loss"]) for entry in state["log_history"] if "loss" in entry]


def format_table(rows: list[dict[str, Any]]) -> str:
    cells = [[header for _, header, _ in COLUMNS]]
    for row in rows:
        cells.append([fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_per_type(rows: list[dict[str, Any]]) -> str:
    """Accuracy per question type for the stages that were evaluated."""
    evaluated = [r for r in rows if r.get("per_type")]
    if not evaluated:
        return ""
    types = sorted({t for r in evaluated for t in r["per_type"]})
    lines = ["stage".ljust(8) + "".join(t.rjust(10) for t in types)]
    for r in evaluated:
        lines.append(r["stage"].ljust(8) + "".join(f"{r['per_type'][t]:10.1f}" for t in types))
    return "\n".join(lines)


def plot_losses(curves: dict[str, list[tuple[int, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.5), squeeze=False)
    for ax, (stage, points) in zip(axes[0], curves.items()):
        ax.plot([s for s, _ in points], [loss for _, loss in points])
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results(rows: list[dict[str, Any]], path: Path) -> None:
    path.write_text(json.dumps({"stages": rows}, indent=2) + "\n")
