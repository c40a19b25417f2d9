"""Splice image features into token embeddings and labels (upstream LLaVA's semantics, vectorised).

For every sample of a batch:
- padding (attention_mask False) is dropped;
- each `IMAGE_TOKEN_INDEX` placeholder is replaced by all feature vectors of the next image, and
  those positions are labelled `IGNORE_INDEX`;
- a sample without placeholders still consumes one image (the dummy zero image the data pipeline
  gives text-only samples in a multimodal run); its features are not placed, but they stay in the
  autograd graph so that the tower/projector get (zero) gradients on every rank (ZeRO/DDP);
- the result is cut to `max_length` (the tokenizer's model_max_length), re-padded to the batch
  maximum on `padding_side` with zero embeddings, IGNORE labels and a False mask, and position ids
  restart at 0 for every sample.

Instead of looping over samples, every token gets a width (1 for text, N_i for an image placeholder,
0 for padding); a cumulative sum of the widths gives each token's output offset, and the text
embeddings and image feature rows are written there with one `index_put_` each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX


class MultimodalInputs(NamedTuple):
    """Spliced batch. Fields are None where the corresponding input was None."""

    position_ids: torch.Tensor | None  # (B, L)
    attention_mask: torch.Tensor | None  # (B, L), the input mask's dtype
    inputs_embeds: torch.Tensor  # (B, L, D)
    labels: torch.Tensor | None  # (B, L)


def _feature_rows(image_features: Sequence[torch.Tensor] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten per-image features into rows. Returns ((R, D) rows, (num_images,) row counts)."""
    if isinstance(image_features, torch.Tensor):
        if image_features.ndim != 3:
            raise ValueError(
                f"image_features must be (num_images, N, D), got shape {tuple(image_features.shape)}"
            )
        num, tokens, dim = image_features.shape
        lengths = torch.full((num,), tokens, dtype=torch.long, device=image_features.device)
        return image_features.reshape(num * tokens, dim), lengths
    if len(image_features) == 0:
        raise ValueError("image_features is empty")
    for i, feature in enumerate(image_features):
        if feature.ndim != 2 or feature.shape[-1] != image_features[0].shape[-1]:
            raise ValueError(
                f"image_features[{i}] has shape {tuple(feature.shape)}; expected (N, "
                f"{image_features[0].shape[-1]}) like image_features[0]"
            )
    rows = torch.cat(list(image_features), dim=0)
    lengths = torch.tensor([f.shape[0] for f in image_features], dtype=torch.long, device=rows.device)
    return rows, lengths


def _check_image_count(tokens_per_sample: torch.Tensor, consumed: torch.Tensor, num_images: int) -> None:
    """One image per placeholder, one dummy per text-only sample: fail naming the sample otherwise."""
    required = int(consumed.sum())
    if required == num_images:
        return
    counts = tokens_per_sample.tolist()
    if num_images < required:
        sample = int(torch.nonzero(consumed.cumsum(0) > num_images)[0])
        needed = int(consumed[: sample + 1].sum())
        where = f"batch index {sample} (with {counts[sample]} image tokens) needs image #{needed}"
    else:
        extra = num_images - required
        where = f"{extra} image(s) left over after the last sample (batch index {len(counts) - 1})"
    raise ValueError(
        f"Image count mismatch: the batch has {sum(counts)} image tokens ({IMAGE_TOKEN_INDEX}) per sample "
        f"{counts}, which need {required} images (one per image token, plus one dummy image per text-only "
        f"sample), but {num_images} were provided: {where}."
    )


def prepare_inputs_labels_for_multimodal(
    input_ids: torch.Tensor,
    position_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor | None,
    image_features: Sequence[torch.Tensor] | torch.Tensor,
    embed_tokens: Callable[[torch.Tensor], torch.Tensor],
    *,
    max_length: int | None = None,
    padding_side: str = "right",
    image_token_index: int = IMAGE_TOKEN_INDEX,
) -> MultimodalInputs:
    """Replace image placeholders by image features; re-pad embeddings, labels, mask and positions.

    Args:
        input_ids: (B, T) ids with one `image_token_index` per image.
        position_ids: (B, T) or None; only its dtype is used (positions are recomputed).
        attention_mask: (B, T) or None (= no padding); False positions are dropped.
        labels: (B, T) or None.
        image_features: One (N_i, D) tensor per image, or a (num_images, N, D) tensor, in the order
            the placeholders appear in the batch (row-major); text-only samples consume one each.
        embed_tokens: The LM's token embedding (called once, on the text tokens only).
        max_length: Cut every spliced sample to this many tokens (None: no cut).
        padding_side: `right`, or `left` (content right-aligned).
        image_token_index: Placeholder id.

    Returns:
        `MultimodalInputs(position_ids, attention_mask, inputs_embeds, labels)`.

    Raises:
        ValueError: when the number of images does not match the placeholders.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    batch, seq = input_ids.shape
    device = input_ids.device
    keep = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    is_image = keep & (input_ids == image_token_index)  # (B, T)
    is_text = keep & ~is_image

    rows, row_counts = _feature_rows(image_features)
    rows, row_counts = rows.to(device), row_counts.to(device)
    num_images = row_counts.shape[0]
    tokens_per_sample = is_image.sum(1)  # (B,)
    consumed = tokens_per_sample.clamp(min=1)
    _check_image_count(tokens_per_sample, consumed, num_images)

    # Global image index of every placeholder: images are consumed sample by sample, left to right.
    first_image = consumed.cumsum(0) - consumed  # (B,)
    token_image = first_image[:, None] + is_image.long().cumsum(1) - 1  # (B, T), valid where is_image
    token_image = token_image.clamp(0, num_images - 1)

    # Output offset of every input token within its sample's spliced sequence.
    width = torch.where(is_image, row_counts[token_image], is_text.long())  # (B, T)
    start = width.cumsum(1) - width
    length = width.sum(1)  # (B,)
    if max_length is not None:
        length = length.clamp(max=max_length)
    out_len = int(length.max()) if batch > 0 else 0
    shift = out_len - length if padding_side == "left" else torch.zeros_like(length)

    # Text tokens: embed once and scatter.
    text_b, text_t = is_text.nonzero(as_tuple=True)
    text_dest = start[text_b, text_t]
    text_ok = text_dest < length[text_b]
    text_b, text_t, text_dest = text_b[text_ok], text_t[text_ok], text_dest[text_ok]
    text_embeds = embed_tokens(input_ids[text_b, text_t])  # (n_text, D)

    # Image rows: each placed image's rows go to consecutive positions after its placeholder offset.
    image_sample = torch.full((num_images,), -1, dtype=torch.long, device=device)
    image_start = torch.zeros(num_images, dtype=torch.long, device=device)
    ph_b, ph_t = is_image.nonzero(as_tuple=True)
    image_sample[token_image[ph_b, ph_t]] = ph_b
    image_start[token_image[ph_b, ph_t]] = start[ph_b, ph_t]
    row_image = torch.repeat_interleave(
        torch.arange(num_images, device=device), row_counts, output_size=rows.shape[0]
    )  # (R,)
    row_in_image = torch.arange(rows.shape[0], device=device) - (row_counts.cumsum(0) - row_counts)[row_image]
    row_b = image_sample[row_image]
    row_dest = image_start[row_image] + row_in_image
    row_ok = (row_b >= 0) & (row_dest < length[row_b.clamp(min=0)])

    dtype = torch.promote_types(text_embeds.dtype, rows.dtype)
    # In-place writes into a fresh buffer (autograd records them; no extra (B, L, D) copy).
    embeds = torch.zeros(batch, out_len, rows.shape[-1], dtype=dtype, device=device)
    embeds.index_put_((text_b, text_dest + shift[text_b]), text_embeds.to(dtype))
    # Dummy images (row_b == -1) and rows cut by max_length are not placed; selecting the placed rows
    # from `rows` still keeps every image's features (and the tower/projector) in the graph.
    placed = rows if bool(row_ok.all()) else rows[row_ok]
    row_b, row_dest = row_b[row_ok], row_dest[row_ok]
    embeds.index_put_((row_b, row_dest + shift[row_b]), placed.to(dtype))

    content_pos = torch.arange(out_len, device=device)[None, :] - shift[:, None]  # (B, L)
    inside = (content_pos >= 0) & (content_pos < length[:, None])

    new_labels = None
    if labels is not None:
        new_labels = torch.full((batch, out_len), IGNORE_INDEX, dtype=labels.dtype, device=device)
        new_labels[text_b, text_dest + shift[text_b]] = labels[text_b, text_t]
    new_mask = None if attention_mask is None else inside.to(attention_mask.dtype)
    new_positions = None
    if position_ids is not None:
        new_positions = torch.where(inside, content_pos, 0).to(position_ids.dtype)
    return MultimodalInputs(new_positions, new_mask, embeds, new_labels)
