"""The vectorised splice against a naive per-sample implementation of upstream's loop."""

from __future__ import annotations

import random

import pytest
import torch

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.model.multimodal_inputs import prepare_inputs_labels_for_multimodal

DIM, VOCAB = 6, 40


def naive_splice(input_ids, position_ids, attention_mask, labels, features, embed, max_length, side):
    """Upstream's algorithm, sample by sample, written as plainly as possible."""
    keep = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    all_labels = torch.full_like(input_ids, IGNORE_INDEX) if labels is None else labels
    seqs, seq_labels = [], []
    image = 0
    for b in range(input_ids.shape[0]):
        ids, lab = input_ids[b][keep[b]], all_labels[b][keep[b]]
        placeholders = torch.where(ids == IMAGE_TOKEN_INDEX)[0].tolist()
        if not placeholders:
            seqs.append(torch.cat([embed(ids), features[image][0:0]]))
            seq_labels.append(lab)
            image += 1
            continue
        bounds = [-1, *placeholders, len(ids)]
        parts, part_labels = [], []
        for i in range(len(bounds) - 1):
            chunk = slice(bounds[i] + 1, bounds[i + 1])
            parts.append(embed(ids[chunk]))
            part_labels.append(lab[chunk])
            if i < len(placeholders):
                feat = features[image]
                image += 1
                parts.append(feat)
                part_labels.append(torch.full((feat.shape[0],), IGNORE_INDEX, dtype=lab.dtype))
        seqs.append(torch.cat(parts))
        seq_labels.append(torch.cat(part_labels))
    if max_length is not None:
        seqs = [s[:max_length] for s in seqs]
        seq_labels = [s[:max_length] for s in seq_labels]
    width = max(len(s) for s in seqs)
    batch = len(seqs)
    out = torch.zeros(batch, width, DIM, dtype=seqs[0].dtype)
    out_labels = torch.full((batch, width), IGNORE_INDEX, dtype=all_labels.dtype)
    out_mask = torch.zeros(batch, width, dtype=torch.bool)
    out_pos = torch.zeros(batch, width, dtype=torch.long)
    for b, (seq, lab) in enumerate(zip(seqs, seq_labels)):
        n = len(seq)
        span = slice(width - n, width) if side == "left" else slice(0, n)
        out[b, span], out_labels[b, span], out_mask[b, span] = seq, lab, True
        out_pos[b, span] = torch.arange(n)
    return (
        None if position_ids is None else out_pos.to(position_ids.dtype),
        None if attention_mask is None else out_mask.to(attention_mask.dtype),
        out,
        None if labels is None else out_labels,
    )


def random_batch(rng: random.Random, *, pad_side: str, with_padding: bool):
    batch = rng.randint(1, 5)
    samples = []
    for _ in range(batch):
        n_images = rng.choice([0, 0, 1, 1, 2, 3])
        text = [rng.randrange(1, VOCAB) for _ in range(rng.randint(0, 7))]
        for _ in range(n_images):
            text.insert(rng.randint(0, len(text)), IMAGE_TOKEN_INDEX)
        samples.append(text)
    width = max(len(s) for s in samples) + (rng.randint(0, 2) if with_padding else 0)
    if not with_padding:
        samples = [s + [rng.randrange(1, VOCAB)] * (width - len(s)) for s in samples]
    ids = torch.zeros(batch, width, dtype=torch.long)
    mask = torch.zeros(batch, width, dtype=torch.bool)
    for b, s in enumerate(samples):
        span = slice(width - len(s), width) if pad_side == "left" else slice(0, len(s))
        ids[b, span] = torch.tensor(s, dtype=torch.long)
        mask[b, span] = True
    labels = torch.where(
        torch.rand(batch, width) < 0.3, IGNORE_INDEX, torch.randint(1, VOCAB, (batch, width))
    )
    labels[ids == IMAGE_TOKEN_INDEX] = IGNORE_INDEX
    # Every text-only sample consumes one (dummy) image, as in a multimodal batch.
    n_feats = sum(max(1, s.count(IMAGE_TOKEN_INDEX)) for s in samples)
    return ids, mask, labels, n_feats


@pytest.mark.parametrize("seed", range(40))
def test_matches_naive_reference(seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    embed = torch.nn.Embedding(VOCAB, DIM)
    ids, mask, labels, n_feats = random_batch(
        rng, pad_side=rng.choice(["left", "right"]), with_padding=rng.random() < 0.8
    )
    if rng.random() < 0.5:
        features = [
            torch.randn(rng.randint(1, 5), DIM) for _ in range(n_feats)
        ]  # anyres-like varying lengths
    else:
        features = torch.randn(n_feats, rng.randint(1, 4), DIM)
    attention_mask = rng.choice([mask, mask.long(), None if bool(mask.all()) else mask])
    position_ids = rng.choice([None, torch.arange(ids.shape[1]).expand_as(ids).clone()])
    label_arg = rng.choice([labels, None])
    max_length = rng.choice([None, None, rng.randint(1, 12)])
    side = rng.choice(["left", "right"])

    got = prepare_inputs_labels_for_multimodal(
        ids,
        position_ids,
        attention_mask,
        label_arg,
        features,
        embed,
        max_length=max_length,
        padding_side=side,
    )
    want = naive_splice(ids, position_ids, attention_mask, label_arg, features, embed, max_length, side)
    for name, g, w in zip(("position_ids", "attention_mask", "inputs_embeds", "labels"), got, want):
        if w is None:
            assert g is None, name
        else:
            assert g.dtype == w.dtype, name
            assert torch.equal(g, w), name


def test_image_rows_land_after_text_with_ignore_labels():
    embed = torch.nn.Embedding(VOCAB, DIM)
    ids = torch.tensor([[1, 5, IMAGE_TOKEN_INDEX, 7]])
    feats = torch.randn(1, 3, DIM)
    out = prepare_inputs_labels_for_multimodal(ids, None, None, ids.clone(), feats, embed)
    assert out.inputs_embeds.shape == (1, 6, DIM)
    assert torch.equal(out.inputs_embeds[0, 2:5], feats[0])
    assert out.labels.tolist() == [[1, 5, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 7]]
    assert out.position_ids is None and out.attention_mask is None


def test_text_only_samples_keep_projector_in_graph():
    embed = torch.nn.Embedding(VOCAB, DIM)
    proj = torch.nn.Linear(4, DIM)
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])  # two text-only samples, two dummy images
    feats = proj(torch.randn(2, 3, 4))
    out = prepare_inputs_labels_for_multimodal(ids, None, torch.ones_like(ids), None, feats, embed)
    out.inputs_embeds.sum().backward()
    assert proj.weight.grad is not None and torch.count_nonzero(proj.weight.grad) == 0
    assert torch.equal(out.inputs_embeds, embed(ids))


@pytest.mark.parametrize(
    ("ids", "n_images", "needle"),
    [
        ([[1, IMAGE_TOKEN_INDEX, IMAGE_TOKEN_INDEX], [1, 2, 3]], 2, "batch index 1"),
        ([[1, IMAGE_TOKEN_INDEX, 2], [1, IMAGE_TOKEN_INDEX, 3]], 3, "left over"),
    ],
)
def test_image_count_mismatch_is_reported(ids, n_images, needle):
    embed = torch.nn.Embedding(VOCAB, DIM)
    with pytest.raises(ValueError, match="Image count mismatch") as err:
        prepare_inputs_labels_for_multimodal(
            torch.tensor(ids), None, None, None, torch.randn(n_images, 2, DIM), embed
        )
    message = str(err.value)
    assert needle in message and f"but {n_images} were provided" in message
