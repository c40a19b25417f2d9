"""Upstream's length/modality grouping (llava_trainer), checked against a direct transcription."""

from __future__ import annotations

import random

import pytest
import torch

from llava.data.samplers import (
    LengthGroupedSampler,
    get_length_grouped_indices,
    get_modality_length_grouped_indices,
    split_to_even_chunks,
)


# ----- a straightforward reference of upstream's algorithm -----
def ref_chunks(indices, lengths, n):
    if len(indices) % n:
        return [indices[k::n] for k in range(n)]
    cap = len(indices) // n
    chunks, sums = [[] for _ in range(n)], [0] * n
    for idx in indices:
        k = min(range(n), key=lambda c: (sums[c], c))  # first chunk with the smallest running length
        chunks[k].append(idx)
        sums[k] += lengths[idx]
        if len(chunks[k]) == cap:
            sums[k] = float("inf")
    return chunks


def ref_length_grouped(lengths, bs, ws, generator=None):
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    out = []
    for start in range(0, len(lengths), bs * ws):
        mega = sorted(perm[start : start + bs * ws], key=lambda i: -lengths[i])
        for chunk in ref_chunks(mega, lengths, ws):
            out.extend(chunk)
    return out


def ref_modality_grouped(lengths, bs, ws, generator=None):
    if all(x > 0 for x in lengths) or all(x < 0 for x in lengths):
        return ref_length_grouped(lengths, bs, ws, generator)
    mm = [i for i, x in enumerate(lengths) if x > 0]
    lang = [i for i, x in enumerate(lengths) if x < 0]
    mm_order = [mm[j] for j in ref_length_grouped([lengths[i] for i in mm], bs, ws)]
    lang_order = [lang[j] for j in ref_length_grouped([-lengths[i] for i in lang], bs, ws)]
    size = bs * ws
    mm_mb = [mm_order[s : s + size] for s in range(0, len(mm_order), size)]
    lang_mb = [lang_order[s : s + size] for s in range(0, len(lang_order), size)]
    tail = mm_mb.pop() + lang_mb.pop()
    pool = mm_mb + lang_mb
    pool = [pool[k] for k in torch.randperm(len(pool), generator=generator).tolist()]
    if tail:
        pool.append(sorted(tail))
    return [i for mb in pool for i in mb]


def _lengths(n_mm, n_lang, seed):
    rng = random.Random(seed)
    values = [rng.randint(1, 300) for _ in range(n_mm)] + [-rng.randint(1, 300) for _ in range(n_lang)]
    rng.shuffle(values)
    return values


def test_split_to_even_chunks_by_hand():
    lengths = [10, 9, 1, 1, 5, 5]
    # 0→A(10) 1→B(9) 2→B(10) 3→A(11, tie goes to A) 4→B(15, full) 5→A
    assert split_to_even_chunks([0, 1, 2, 3, 4, 5], lengths, 2) == [[0, 3, 5], [1, 2, 4]]
    assert split_to_even_chunks([0, 1, 2, 3, 4], lengths, 2) == [[0, 2, 4], [1, 3]]  # uneven: strided


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bs,ws", [(4, 1), (2, 3), (3, 2)])
def test_modality_grouping_matches_reference(seed, bs, ws):
    lengths = _lengths(37, 23, seed)
    torch.manual_seed(seed)
    ours = get_modality_length_grouped_indices(lengths, bs, ws, generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    ref = ref_modality_grouped(lengths, bs, ws, generator=torch.Generator().manual_seed(seed))
    assert ours == ref
    assert sorted(ours) == list(range(len(lengths)))  # a permutation
    size = bs * ws
    full = len(ours) // size
    n_full_mm, n_full_lang = (37 // size), (23 // size)
    # Every megabatch except the merged leftover at the end holds one modality.
    for k in range(n_full_mm + n_full_lang):
        signs = {lengths[i] > 0 for i in ours[k * size : (k + 1) * size]}
        assert len(signs) == 1, f"megabatch {k} mixes modalities"
    assert full >= n_full_mm + n_full_lang


@pytest.mark.parametrize("sign", [1, -1])
def test_single_modality_does_not_crash(sign):
    # Upstream issue #609: unpacking an empty modality crashed before the fix.
    lengths = [sign * x for x in range(1, 30)]
    torch.manual_seed(0)
    ours = get_modality_length_grouped_indices(lengths, 4, 2, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    ref = ref_modality_grouped(lengths, 4, 2, generator=torch.Generator().manual_seed(1))
    assert ours == ref and sorted(ours) == list(range(29))


def test_zero_length_is_rejected():
    with pytest.raises(ValueError, match="non-zero"):
        get_modality_length_grouped_indices([3, 0, -2], 1, 1)


@pytest.mark.parametrize("seed", range(3))
def test_length_grouping_matches_reference_and_sorts_megabatches(seed):
    lengths = [abs(x) for x in _lengths(50, 0, seed)]
    ours = get_length_grouped_indices(lengths, 4, 2, generator=torch.Generator().manual_seed(seed))
    ref = ref_length_grouped(lengths, 4, 2, generator=torch.Generator().manual_seed(seed))
    assert ours == ref
    assert sorted(ours) == list(range(50))
    mega = ours[:8]
    assert max(lengths[i] for i in mega) == lengths[mega[0]]  # the longest sample opens the megabatch


def test_sampler_is_deterministic_given_seeds():
    lengths = _lengths(20, 12, 7)
    sampler = LengthGroupedSampler(2, 2, lengths=lengths, generator=torch.Generator().manual_seed(3),
                                   group_by_modality=True)  # fmt: skip
    assert len(sampler) == 32
    torch.manual_seed(5)
    first = list(sampler)
    sampler.generator = torch.Generator().manual_seed(3)
    torch.manual_seed(5)
    assert list(sampler) == first
    with pytest.raises(ValueError, match="lengths"):
        LengthGroupedSampler(2, 2)
