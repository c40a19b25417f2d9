"""Training data: template preprocessing, the lazy dataset, the collator and the samplers."""

from __future__ import annotations

import os
from typing import Any

from transformers import PreTrainedTokenizerBase

from llava.conversation import Conversation
from llava.data.collator import DataCollatorForSupervisedDataset
from llava.data.dataset import LazySupervisedDataset, SampleError

# The `preprocess` function is not re-exported: it would shadow the `llava.data.preprocess` module.
from llava.data.preprocess import PreprocessError
from llava.data.samplers import (
    LengthGroupedSampler,
    get_length_grouped_indices,
    get_modality_length_grouped_indices,
    split_to_even_chunks,
)

__all__ = [
    "DataCollatorForSupervisedDataset",
    "LazySupervisedDataset",
    "LengthGroupedSampler",
    "PreprocessError",
    "SampleError",
    "get_length_grouped_indices",
    "get_modality_length_grouped_indices",
    "make_supervised_data_module",
    "split_to_even_chunks",
]


def make_supervised_data_module(
    tokenizer: PreTrainedTokenizerBase,
    *,
    data_path: str | os.PathLike,
    conversation: Conversation,
    image_folder: str | os.PathLike | None,
    image_processor: Any,
    image_aspect_ratio: str,
    is_multimodal: bool,
    mm_use_im_start_end: bool,
    model_max_length: int,
    skip_invalid: bool = False,
) -> dict[str, Any]:
    """Dataset + collator for `Trainer`, as upstream's function of the same name.

    Args:
        tokenizer: Training tokenizer with a pad token; text-only samples are truncated to its
            `model_max_length`, which should equal `model_max_length`.
        data_path: JSON list of samples.
        conversation: Template for `--version`.
        image_folder: Folder of the `image` paths.
        image_processor: Vision tower's processor (multimodal runs).
        image_aspect_ratio: "square" or "pad".
        is_multimodal: Whether the model has a vision tower.
        mm_use_im_start_end: Wrap images in `<im_start>`/`<im_end>`.
        model_max_length: Batches are truncated to this many tokens.
        skip_invalid: See `LazySupervisedDataset`.

    Returns:
        `{"train_dataset", "eval_dataset": None, "data_collator"}`.
    """
    train_dataset = LazySupervisedDataset(
        data_path,
        tokenizer,
        conversation=conversation,
        image_folder=image_folder,
        image_processor=image_processor,
        image_aspect_ratio=image_aspect_ratio,
        is_multimodal=is_multimodal,
        mm_use_im_start_end=mm_use_im_start_end,
        skip_invalid=skip_invalid,
    )
    collator = DataCollatorForSupervisedDataset(tokenizer=tokenizer, model_max_length=model_max_length)
    return {"train_dataset": train_dataset, "eval_dataset": None, "data_collator": collator}
