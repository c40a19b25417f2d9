"""What every benchmark writes into `RESULTS.md`: its own section, replaced in place, and the machine."""

from __future__ import annotations

import os
import platform
from pathlib import Path

RESULTS_TITLE = "# Benchmark results"


def update_results(path: Path, title: str, section: str) -> None:
    """Replace the section headed `title` in `path` (appending it when absent); other sections stay."""
    text = path.read_text() if path.exists() else f"{RESULTS_TITLE}\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == title), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        text = "".join(lines[:start]) + section + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    path.write_text(text.rstrip("\n") + "\n")


def machine_line() -> str:
    """CPU count and model, bf16 support and library versions (imported here: callers need not)."""
    import bitsandbytes
    import peft
    import torch
    import transformers

    cpu = platform.processor() or "unknown CPU"
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        f.seek(0)
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    if names:
        cpu = names[0]
    bf16 = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]
    cpu += f", bf16 in hardware: {'/'.join(bf16)}" if bf16 else ", no bf16 instructions"
    return (
        f"{len(os.sched_getaffinity(0))} CPU cores ({cpu}), no GPU; Python {platform.python_version()}, "
        f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
        f"bitsandbytes {bitsandbytes.__version__}"
    )
