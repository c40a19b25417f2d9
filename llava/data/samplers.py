"""Length- and modality-grouped sampling, upstream's `llava_trainer` algorithms.

A "megabatch" is `world_size * batch_size` indices, i.e. one global batch (upstream passes
`world_size * gradient_accumulation_steps` as world size, so one megabatch is one optimizer step).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def split_to_even_chunks(indices: Sequence[int], lengths: Sequence[int], num_chunks: int) -> list[list[int]]:
    """Split `indices` into `num_chunks` chunks of equal count and similar total length.

    Greedy: each index goes to the chunk with the smallest running length; a full chunk stops receiving.
    When the count does not divide evenly, chunks are strided (`indices[i::num_chunks]`).
    """
    if len(indices) % num_chunks != 0:
        return [list(indices[i::num_chunks]) for i in range(num_chunks)]
    per_chunk = len(indices) // num_chunks
    chunks: list[list[int]] = [[] for _ in range(num_chunks)]
    totals = [0.0] * num_chunks
    for index in indices:
        shortest = totals.index(min(totals))
        chunks[shortest].append(index)
        totals[shortest] += lengths[index]
        if len(chunks[shortest]) == per_chunk:
            totals[shortest] = float("inf")
    return chunks


def get_length_grouped_indices(
    lengths: Sequence[int], batch_size: int, world_size: int, generator: torch.Generator | None = None
) -> list[int]:
    """Shuffle, cut into megabatches, sort each by length (descending), balance it across ranks."""
    indices = torch.randperm(len(lengths), generator=generator).tolist()
    size = world_size * batch_size
    megabatches = [indices[i : i + size] for i in range(0, len(lengths), size)]
    megabatches = [sorted(mb, key=lambda i: lengths[i], reverse=True) for mb in megabatches]
    chunked = [split_to_even_chunks(mb, lengths, world_size) for mb in megabatches]
    return [i for mb in chunked for chunk in mb for i in chunk]


def get_modality_length_grouped_indices(
    lengths: Sequence[int], batch_size: int, world_size: int, generator: torch.Generator | None = None
) -> list[int]:
    """Indices whose full megabatches each hold one modality (lengths > 0: image, < 0: text-only).

    Each modality is length-grouped on its own (with the global torch RNG, as upstream), cut into megabatches;
    the full ones of both modalities are shuffled together (with `generator`) and the two last, possibly
    partial, megabatches are merged, sorted and put at the end. Data of a single modality falls back to plain
    length grouping (upstream's fix for #609).
    """
    if any(length == 0 for length in lengths):
        raise ValueError("Modality lengths must be non-zero (positive: image sample, negative: text-only).")
    if all(length > 0 for length in lengths) or all(length < 0 for length in lengths):
        return get_length_grouped_indices(lengths, batch_size, world_size, generator=generator)
    mm_indices = [i for i, length in enumerate(lengths) if length > 0]
    mm_lengths = [lengths[i] for i in mm_indices]
    lang_indices = [i for i, length in enumerate(lengths) if length < 0]
    lang_lengths = [-lengths[i] for i in lang_indices]
    mm_order = [mm_indices[i] for i in get_length_grouped_indices(mm_lengths, batch_size, world_size)]
    lang_order = [lang_indices[i] for i in get_length_grouped_indices(lang_lengths, batch_size, world_size)]
    size = world_size * batch_size
    mm_megabatches = [mm_order[i : i + size] for i in range(0, len(mm_order), size)]
    lang_megabatches = [lang_order[i : i + size] for i in range(0, len(lang_order), size)]
    leftover = mm_megabatches[-1] + lang_megabatches[-1]
    megabatches = mm_megabatches[:-1] + lang_megabatches[:-1]
    permutation = torch.randperm(len(megabatches), generator=generator).tolist()
    megabatches = [megabatches[i] for i in permutation]
    if leftover:
        megabatches.append(sorted(leftover))
    return [i for mb in megabatches for i in mb]


class LengthGroupedSampler(Sampler[int]):
    """Yields indices grouped by length (and by modality when `group_by_modality`), as upstream.

    Args:
        batch_size: Per-device batch size.
        world_size: Ranks × gradient-accumulation steps (so a megabatch is one optimizer step).
        lengths: Per-sample lengths (`dataset.modality_lengths` when grouping by modality).
        generator: RNG for the shuffles that upstream seeds (the per-modality grouping uses the global RNG).
        group_by_modality: Keep image and text-only samples in separate megabatches.
    """

    def __init__(
        self,
        batch_size: int,
        world_size: int,
        lengths: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        group_by_modality: bool = False,
    ) -> None:
        if lengths is None:
            raise ValueError("LengthGroupedSampler needs lengths.")
        self.batch_size = batch_size
        self.world_size = world_size
        self.lengths = list(lengths)
        self.generator = generator
        self.group_by_modality = group_by_modality

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        group = get_modality_length_grouped_indices if self.group_by_modality else get_length_grouped_indices
        return iter(group(self.lengths, self.batch_size, self.world_size, generator=self.generator))
