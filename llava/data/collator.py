"""Batching for supervised fine-tuning (upstream's `DataCollatorForSupervisedDataset`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import PreTrainedTokenizerBase

from llava.constants import IGNORE_INDEX


@dataclasses.dataclass
class DataCollatorForSupervisedDataset:
    """Right-pad `input_ids` (pad id) and `labels` (IGNORE_INDEX), truncate, stack images.

    `attention_mask = input_ids != pad_token_id`, as upstream: with pad = unk, genuine `<unk>` tokens are
    masked too.

    Args:
        tokenizer: Provides `pad_token_id` (set it with `configure_pad_token`).
        model_max_length: Batches are cut to this many tokens; None uses `tokenizer.model_max_length`.
    """

    tokenizer: PreTrainedTokenizerBase
    model_max_length: int | None = None

    def __call__(self, instances: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor | list]:
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            raise ValueError("The tokenizer has no pad token; call llava.tokenization.configure_pad_token.")
        max_len = self.model_max_length or self.tokenizer.model_max_length
        input_ids = pad_sequence([x["input_ids"] for x in instances], batch_first=True, padding_value=pad_id)
        labels = pad_sequence([x["labels"] for x in instances], batch_first=True, padding_value=IGNORE_INDEX)
        input_ids, labels = input_ids[:, :max_len], labels[:, :max_len]  # (B, T)
        batch: dict[str, torch.Tensor | list] = {
            "input_ids": input_ids,
            "labels": labels,
            "attention_mask": input_ids.ne(pad_id),
        }
        if "image" in instances[0]:
            images = [x["image"] for x in instances]
            same_shape = all(img is not None and img.shape == images[0].shape for img in images)
            batch["images"] = torch.stack(images) if same_shape else images  # (B, 3, H, W) or list
        return batch
