"""Upstream's `LazySupervisedDataset`: a JSON list of conversations, tokenized and imaged on access."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from llava.conversation import Conversation
from llava.data.preprocess import PreprocessError, preprocess, preprocess_multimodal
from llava.mm_utils import process_image

logger = logging.getLogger(__name__)

# Upstream counts an image as 128 "words" when grouping by length.
IMAGE_LENGTH_BONUS = 128
_ASPECT_RATIOS = ("square", "pad")


class SampleError(RuntimeError):
    """A sample whose image cannot be used; the message names the sample and the file."""


def _validate_record(record: Any, index: int) -> None:
    """Fail on a record that is not `{id?, image?, conversations: [{from, value}, ...]}`, naming the index."""
    where = f"Record {index}"
    if isinstance(record, dict) and "id" in record:
        where += f" (id {record['id']!r})"
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object, got {type(record).__name__}.")
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"{where}: 'conversations' must be a non-empty list.")
    for j, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str) or "from" not in turn:
            raise ValueError(f"{where}: turn {j} must be an object with 'from' and a string 'value'.")
    if "image" in record and not isinstance(record["image"], str):
        raise ValueError(f"{where}: 'image' must be a string path relative to the image folder.")


def _word_count(record: dict) -> int:
    return sum(len(turn["value"].split()) for turn in record["conversations"])


def _crop_size(image_processor: Any) -> tuple[int, int]:
    crop = image_processor.crop_size
    return int(crop["height"]), int(crop["width"])


class LazySupervisedDataset(Dataset):
    """Supervised fine-tuning data in upstream's JSON format, preprocessed lazily per sample.

    Args:
        data_path: JSON file holding a list of `{"id", "image"?, "conversations": [{"from", "value"}]}`.
        tokenizer: Training tokenizer; text-only samples are truncated to its `model_max_length`.
        conversation: Template (`conv_templates[version]`).
        image_folder: Folder the `image` paths are relative to.
        image_processor: CLIP-style processor (required when `is_multimodal`).
        image_aspect_ratio: "pad" squares images on the processor's mean colour; "square" (or any other
            value, as upstream training did) uses the processor's resize + centre crop.
        is_multimodal: The model has a vision tower: every sample yields an `image` (zeros when text-only).
        mm_use_im_start_end: Wrap `<image>` as `<im_start><image><im_end>`.
        skip_invalid: A sample whose image is missing/unreadable or whose conversation is malformed is
            logged, counted in `num_skipped` and replaced by the next valid index (deterministic); otherwise
            it raises. Counts are per process (each DataLoader worker has its own copy).
    """

    def __init__(
        self,
        data_path: str | os.PathLike,
        tokenizer: PreTrainedTokenizerBase,
        *,
        conversation: Conversation,
        image_folder: str | os.PathLike | None = None,
        image_processor: Any = None,
        image_aspect_ratio: str = "square",
        is_multimodal: bool = False,
        mm_use_im_start_end: bool = False,
        skip_invalid: bool = False,
    ) -> None:
        super().__init__()
        with open(data_path, encoding="utf-8") as f:
            records = json.load(f)
        if not isinstance(records, list):
            raise ValueError(f"{data_path}: expected a JSON list of samples, got {type(records).__name__}.")
        for index, record in enumerate(records):
            _validate_record(record, index)
        with_image = [i for i, record in enumerate(records) if "image" in record]
        if with_image and not is_multimodal:
            first = records[with_image[0]]
            raise ValueError(
                f"{data_path}: {len(with_image)} samples have an image (first: id {first.get('id')!r}) "
                "but the run is not multimodal (no vision tower)."
            )
        if is_multimodal and image_processor is None:
            raise ValueError("A multimodal dataset needs an image_processor.")
        if image_aspect_ratio not in _ASPECT_RATIOS:
            logger.warning(
                "image_aspect_ratio=%r is processed like 'square', as upstream training did.",
                image_aspect_ratio,
            )
        self.records = records
        self.tokenizer = tokenizer
        self.conversation = conversation
        self.image_folder = Path(image_folder) if image_folder is not None else None
        self.image_processor = image_processor
        self.image_aspect_ratio = image_aspect_ratio
        self.is_multimodal = is_multimodal
        self.mm_use_im_start_end = mm_use_im_start_end
        self.skip_invalid = skip_invalid
        self._skipped: set[int] = set()
        words = [_word_count(record) for record in records]
        self._lengths = [n + (IMAGE_LENGTH_BONUS if "image" in r else 0) for n, r in zip(words, records)]
        self._modality_lengths = [n if "image" in r else -n for n, r in zip(words, records)]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def lengths(self) -> list[int]:
        """Word count of all turns, +128 for samples with an image (upstream)."""
        return self._lengths

    @property
    def modality_lengths(self) -> list[int]:
        """Word count, positive for image samples and negative for text-only ones (upstream)."""
        return self._modality_lengths

    @property
    def num_skipped(self) -> int:
        """Distinct samples skipped so far in this process (`skip_invalid=True`)."""
        return len(self._skipped)

    def sample_id(self, index: int) -> Any:
        return self.records[index].get("id", index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not self.skip_invalid:
            return self._load(index)
        for offset in range(len(self.records)):
            candidate = (index + offset) % len(self.records)
            try:
                return self._load(candidate)
            except (SampleError, PreprocessError) as err:
                if candidate not in self._skipped:
                    self._skipped.add(candidate)
                    logger.warning(
                        "Skipping sample %r (index %d): %s", self.sample_id(candidate), candidate, err
                    )
        raise RuntimeError(f"No valid sample in the dataset ({len(self.records)} records, all invalid).")

    def _load(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        sample_id = self.sample_id(index)
        has_image = "image" in record
        sources = [record["conversations"]]
        image = None
        if has_image:
            image = self._load_image(record["image"], sample_id)
            sources = preprocess_multimodal(
                sources,
                is_multimodal=self.is_multimodal,
                mm_use_im_start_end=self.mm_use_im_start_end,
                version=self.conversation.version,
            )
        data = preprocess(
            sources, self.tokenizer, conversation=self.conversation, has_image=has_image, sample_id=sample_id
        )
        item = {"input_ids": data["input_ids"][0], "labels": data["labels"][0]}
        if image is not None:
            item["image"] = image
        elif self.is_multimodal:
            # Text-only sample in a multimodal run: a zero image keeps batches uniform (upstream).
            item["image"] = torch.zeros(3, *_crop_size(self.image_processor))
        return item

    def _load_image(self, relative_path: str, sample_id: Any) -> torch.Tensor:
        path = self.image_folder / relative_path if self.image_folder is not None else Path(relative_path)
        if not path.is_file():
            raise SampleError(f"Sample {sample_id!r}: image file not found: {path}")
        try:
            with Image.open(path) as raw:
                image = raw.convert("RGB")
        except OSError as err:
            raise SampleError(f"Sample {sample_id!r}: cannot read image {path}: {err}") from err
        aspect = "pad" if self.image_aspect_ratio == "pad" else "square"
        return process_image(image, self.image_processor, aspect)
