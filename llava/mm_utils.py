"""Image and token helpers shared by training and inference (upstream `llava.mm_utils`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from transformers import PreTrainedTokenizerBase, StoppingCriteria

from llava.constants import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX


def tokenizer_image_token(
    prompt: str,
    tokenizer: PreTrainedTokenizerBase,
    image_token_index: int = IMAGE_TOKEN_INDEX,
    return_tensors: str | None = None,
) -> list[int] | torch.Tensor:
    """Tokenize `prompt` with one `image_token_index` id in place of each `<image>`.

    As upstream: the text between `<image>` markers is tokenized chunk by chunk (each chunk as a fresh text,
    so a chunk after an image starts with the tokenizer's prefix space, e.g. `▁` `\\n` for LLaMA); the BOS
    that every chunk gets is kept once, at the front.

    Args:
        prompt: Text with zero or more `<image>` markers.
        tokenizer: Any HF tokenizer.
        image_token_index: Placeholder id (-200).
        return_tensors: None for a list, "pt" for a 1-D LongTensor.

    Returns:
        The ids.
    """
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split(DEFAULT_IMAGE_TOKEN)]
    bos = tokenizer.bos_token_id
    keep_bos = bos is not None and bool(chunks[0]) and chunks[0][0] == bos
    ids: list[int] = [bos] if keep_bos else []
    for i, chunk in enumerate(chunks):
        if i > 0:
            ids.append(image_token_index)
        # Every chunk was tokenized with its own BOS; drop it (only the first is kept, above).
        ids.extend(chunk[1:] if keep_bos and chunk[:1] == [bos] else chunk)
    if return_tensors is None:
        return ids
    if return_tensors == "pt":
        return torch.tensor(ids, dtype=torch.long)
    raise ValueError(f"Unsupported return_tensors: {return_tensors!r} (use None or 'pt').")


def expand2square(pil_img: Image.Image, background_color: tuple[int, ...]) -> Image.Image:
    """Pad `pil_img` to a square of side max(w, h), the image centred on `background_color`."""
    width, height = pil_img.size
    if width == height:
        return pil_img
    side = max(width, height)
    result = Image.new(pil_img.mode, (side, side), background_color)
    result.paste(pil_img, ((side - width) // 2, (side - height) // 2))
    return result


def image_mean_color(image_processor: Any) -> tuple[int, ...]:
    """The processor's mean as 0-255 ints (upstream's padding colour, (122, 116, 104) for CLIP)."""
    return tuple(int(x * 255) for x in image_processor.image_mean)


def process_image(image: Image.Image, image_processor: Any, image_aspect_ratio: str | None) -> torch.Tensor:
    """One RGB image → `(3, H, W)` pixel values; `pad` squares it first, other values use the processor."""
    if image_aspect_ratio == "pad":
        image = expand2square(image, image_mean_color(image_processor))
    elif image_aspect_ratio == "anyres":
        raise NotImplementedError(
            "image_aspect_ratio='anyres' (LLaVA-1.6 tiling) is not implemented; use 'pad' or 'square'."
        )
    return image_processor.preprocess(image, return_tensors="pt")["pixel_values"][0]


def process_images(
    images: Sequence[Image.Image], image_processor: Any, model_cfg: Any
) -> torch.Tensor | list[torch.Tensor]:
    """Pixel values for a list of images, following `model_cfg.image_aspect_ratio` as upstream.

    `pad`: each image is squared with `expand2square` on the processor's mean colour, then processed; a
    stacked `(N, 3, H, W)` tensor when all shapes agree, else a list. `anyres` raises NotImplementedError.
    Anything else: the processor's own resize + centre crop on the whole batch.

    Args:
        images: PIL images (RGB).
        image_processor: A CLIP-style image processor.
        model_cfg: Object with an optional `image_aspect_ratio` attribute (a model config).

    Returns:
        Pixel values.
    """
    aspect = getattr(model_cfg, "image_aspect_ratio", None)
    if aspect in ("pad", "anyres"):
        processed = [process_image(image, image_processor, aspect) for image in images]
        if all(p.shape == processed[0].shape for p in processed):
            return torch.stack(processed, dim=0)
        return processed
    return image_processor(images, return_tensors="pt")["pixel_values"]


def get_model_name_from_path(model_path: str) -> str:
    """Last path component, or `parent_checkpoint-N` for a `checkpoint-N` folder (upstream's rule)."""
    parts = model_path.strip("/").split("/")
    if parts[-1].startswith("checkpoint-") and len(parts) > 1:
        return f"{parts[-2]}_{parts[-1]}"
    return parts[-1]


class KeywordsStoppingCriteria(StoppingCriteria):
    """Stop each sequence once its generated text ends with (or contains, in the last tokens) a keyword.

    Works for a batch: returns one flag per sequence (transformers' `StoppingCriteria` contract), so finished
    rows stop while the others go on. `input_ids` at construction is the prompt; when `generate` passes the
    prompt back (decoder-only from ids) it is skipped, when it passes only new tokens (LLaVA generates from
    `inputs_embeds`) everything is generated text.

    Args:
        keywords: Stop strings (e.g. the template's separator).
        tokenizer: Tokenizer used to encode the keywords and decode the tail of each sequence.
        input_ids: The prompt ids, `(B, T)`.
    """

    def __init__(self, keywords: Sequence[str], tokenizer: PreTrainedTokenizerBase, input_ids: torch.Tensor):
        self.keywords = list(keywords)
        self.tokenizer = tokenizer
        self.start_len = int(input_ids.shape[1])
        self.keyword_ids = []
        for keyword in self.keywords:
            ids = tokenizer(keyword).input_ids
            if len(ids) > 1 and ids[0] == tokenizer.bos_token_id:
                ids = ids[1:]
            self.keyword_ids.append(torch.tensor(ids, dtype=torch.long))
        self.max_keyword_len = max((len(ids) for ids in self.keyword_ids), default=0)

    def _generated_len(self, cur_len: int) -> int:
        return cur_len - self.start_len if cur_len > self.start_len else cur_len

    def _row_done(self, row: torch.Tensor, n_new: int) -> bool:
        for ids in self.keyword_ids:
            if 0 < len(ids) <= n_new and torch.equal(row[-len(ids) :], ids.to(row.device)):
                return True
        window = min(n_new, self.max_keyword_len)
        if window <= 0:
            return False
        text = self.tokenizer.decode(row[-window:], skip_special_tokens=True)
        return any(keyword in text for keyword in self.keywords)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """`(B,)` bool: True for rows whose generated tail holds a keyword."""
        n_new = self._generated_len(int(input_ids.shape[1]))
        done = [self._row_done(row, n_new) for row in input_ids]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
