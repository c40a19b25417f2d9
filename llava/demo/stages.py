"""Running one pipeline stage as its own process, measuring wall time and peak memory."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

SAMPLE_SECONDS = 0.1


@dataclass(frozen=True)
class StageRun:
    seconds: float
    peak_rss_mb: float


def run_module(module: str, args: list[str], *, cwd: str | Path | None = None) -> StageRun:
    """`python -m module args…` with its output passed through; raises if it fails.

    Peak memory is the largest resident set of the process and its children, sampled every 0.1 s.
    """
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=cwd)
    peak = _PeakMemory(process.pid)
    peak.start()
    returncode = process.wait()
    peak.stop()
    seconds = time.perf_counter() - start
    if returncode != 0:
        raise RuntimeError(f"`python -m {module}` failed with exit code {returncode}")
    return StageRun(seconds=seconds, peak_rss_mb=peak.peak_bytes / 2**20)


class _PeakMemory(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self._process = psutil.Process(pid)
        self._done = threading.Event()
        self.peak_bytes = 0

    def run(self) -> None:
        while not self._done.is_set():
            self.peak_bytes = max(self.peak_bytes, self._tree_rss())
            self._done.wait(SAMPLE_SECONDS)

    def _tree_rss(self) -> int:
        try:
            processes = [self._process, *self._process.children(recursive=True)]
            return sum(proc.memory_info().rss for proc in processes)
        except psutil.Error:
            return 0  # a process ended between listing and reading: this sample does not count

    def stop(self) -> None:
        self._done.set()
        self.join()


def folder_size_mb(path: Path, *, skip_checkpoints: bool = True) -> float:
    """Size of a run's output (the final save, not its intermediate `checkpoint-N` folders)."""
    files = [
        p
        for p in path.rglob("*")
        if p.is_file()
        and not (
            skip_checkpoints and any(part.startswith("checkpoint-") for part in p.relative_to(path).parts)
        )
    ]
    return sum(p.stat().st_size for p in files) / 2**20
