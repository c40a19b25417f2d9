"""Question/answer files of the eval entrypoints: jsonl I/O, chunking for parallel runs, answer ids."""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

# shortuuid's default alphabet: upstream's answer_ids are 22 characters of it.
_SHORTUUID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_SHORTUUID_LENGTH = 22


def new_answer_id() -> str:
    """A random 22-character id in the format of upstream's `shortuuid.uuid()`."""
    value = uuid.uuid4().int
    base = len(_SHORTUUID_ALPHABET)
    digits = []
    for _ in range(_SHORTUUID_LENGTH):
        value, digit = divmod(value, base)
        digits.append(_SHORTUUID_ALPHABET[digit])
    return "".join(reversed(digits))


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a jsonl file (blank lines skipped).

    Raises:
        ValueError: naming the file and line of a malformed record.
    """
    path = Path(path).expanduser()
    records = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({err})") from err
    return records


def read_json(path: str | os.PathLike) -> Any:
    with Path(path).expanduser().open(encoding="utf-8") as f:
        return json.load(f)


def open_answers_file(path: str | os.PathLike) -> TextIO:
    """Open an answers file for writing, creating its folder (upstream fails on a bare file name)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8")


def write_record(f: TextIO, record: dict[str, Any]) -> None:
    """Append one jsonl record and flush, so a killed run keeps what it answered."""
    f.write(json.dumps(record) + "\n")
    f.flush()


def answer_record(question_id: Any, prompt: str, text: str, model_id: str) -> dict[str, Any]:
    """An answer in upstream's format."""
    return {
        "question_id": question_id,
        "prompt": prompt,
        "text": text,
        "answer_id": new_answer_id(),
        "model_id": model_id,
        "metadata": {},
    }


def get_chunk(items: Sequence[Any], num_chunks: int, chunk_idx: int) -> list[Any]:
    """The `chunk_idx`-th of `num_chunks` contiguous chunks of `ceil(len / num_chunks)` items (upstream).

    A chunk index past the last non-empty chunk gives an empty list (upstream raises IndexError when
    there are fewer items than chunks).

    Raises:
        ValueError: when `chunk_idx` is not in [0, num_chunks).
    """
    if num_chunks < 1 or not 0 <= chunk_idx < num_chunks:
        raise ValueError(f"--chunk-idx must be in [0, --num-chunks={num_chunks}), got {chunk_idx}")
    size = math.ceil(len(items) / num_chunks)
    return list(items[chunk_idx * size : (chunk_idx + 1) * size])


def index_by(records: Iterable[dict[str, Any]], key: str, source: str) -> dict[Any, dict[str, Any]]:
    """Records by `key`; a later duplicate replaces an earlier one (as upstream's dict building does).

    Raises:
        ValueError: naming `source` when a record lacks `key`.
    """
    out = {}
    for i, record in enumerate(records):
        if key not in record:
            raise ValueError(f"{source}: record #{i} has no {key!r} field: {record}")
        out[record[key]] = record
    return out
