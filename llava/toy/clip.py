"""The toy vision tower: a tiny ``CLIPModel`` trained contrastively on image–caption pairs.

Saved as a full ``CLIPModel`` (vision + text towers) with a ``CLIPImageProcessor`` (OpenAI CLIP mean/std,
resize + centre crop to the image size), so ``CLIPVisionModel.from_pretrained`` and
``CLIPImageProcessor.from_pretrained`` on the folder behave as on ``openai/clip-vit-*``.

Besides the contrastive loss, linear heads on every patch token of the layer LLaVA reads
(``mm_vision_select_layer`` -2) learn to predict the scene's colour, shape, position and count; the heads
are dropped after training. Contrastive training alone leaves "where" and "how many" spread across
patches (a probe on all 64 tokens side by side reads them, one on any single token or on their mean does
not), and a 2-layer toy LM cannot learn to gather them in a few hundred steps; with the dense objective
every token carries the whole scene, much as the patch tokens of a large CLIP carry global context.

The text tower reads the world's SentencePiece ids followed by one extra end-of-text id (the last id of its
vocabulary, as ``<|endoftext|>`` is in OpenAI's CLIP); its ``eos_token_id`` names that id so the pooled
text feature is read at the end-of-text position.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling

from llava.toy.scenes import ATTRIBUTE_VALUES
from llava.toy.schedule import warmup_cosine
from llava.toy.tokenizer import BOS_ID


@dataclass(frozen=True)
class ClipSpec:
    """Size and training schedule of the toy CLIP."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden_size: int = 64
    vision_layers: int = 4
    vision_heads: int = 4
    vision_intermediate_size: int = 256
    text_hidden_size: int = 64
    text_layers: int = 1
    text_heads: int = 2
    text_intermediate_size: int = 128
    text_max_length: int = 32
    projection_dim: int = 64
    batch_size: int = 128
    steps: int = 400
    learning_rate: float = 2e-3
    hard_fraction: float = 0.5
    # Dense attribute loss on the patch tokens of hidden_states[dense_layer] (LLaVA's select layer).
    dense_weight: float = 3.0
    dense_layer: int = -2


def build_config(text_vocab_size: int, spec: ClipSpec) -> CLIPConfig:
    """CLIP config at toy size; the text end-of-text id is the last id of the text vocabulary."""
    return CLIPConfig(
        text_config={
            "vocab_size": text_vocab_size,
            "hidden_size": spec.text_hidden_size,
            "intermediate_size": spec.text_intermediate_size,
            "num_hidden_layers": spec.text_layers,
            "num_attention_heads": spec.text_heads,
            "max_position_embeddings": spec.text_max_length,
            "bos_token_id": BOS_ID,
            "eos_token_id": text_vocab_size - 1,
            "pad_token_id": 0,
        },
        vision_config={
            "image_size": spec.image_size,
            "patch_size": spec.patch_size,
            "hidden_size": spec.vision_hidden_size,
            "intermediate_size": spec.vision_intermediate_size,
            "num_hidden_layers": spec.vision_layers,
            "num_attention_heads": spec.vision_heads,
        },
        projection_dim=spec.projection_dim,
    )


def build_image_processor(image_size: int) -> CLIPImageProcessor:
    """CLIP's standard preprocessing (bicubic resize of the short side, centre crop, OpenAI mean/std)."""
    return CLIPImageProcessor(
        do_resize=True,
        size={"shortest_edge": image_size},
        resample=PILImageResampling.BICUBIC,
        do_center_crop=True,
        crop_size={"height": image_size, "width": image_size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
        do_convert_rgb=True,
    )


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) images → normalised (N, 3, H, W) float, exactly as the image processor does."""
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    pixels = images.permute(0, 3, 1, 2).float() / 255.0
    return (pixels - mean) / std


def encode_captions(token_ids: Sequence[Sequence[int]], end_id: int, max_length: int) -> torch.Tensor:
    """``<s> ids <eot>`` rows right-padded with 0 to ``max_length`` → (N, max_length) int64."""
    rows = torch.zeros(len(token_ids), max_length, dtype=torch.long)
    for i, ids in enumerate(token_ids):
        row = [BOS_ID, *ids, end_id]
        if len(row) > max_length:
            raise ValueError(f"Caption {i} has {len(row)} tokens, more than the text tower's {max_length}")
        rows[i, : len(row)] = torch.tensor(row)
    return rows


class HardNegativeBatches:
    """Contrastive batches made of groups that differ in exactly one attribute.

    With random batches, colour, position and count already tell most captions apart, so the loss barely
    rewards recognising the shape. Each group here holds images that share three attributes and differ in
    the fourth (chosen with ``attribute_weights``), so every attribute must be seen to match the captions.
    The rest of the batch is uniformly random: with hard groups only, training sits on a plateau at the
    start (nothing is easy to match yet).
    """

    def __init__(
        self,
        keys: np.ndarray,
        group_size: int,
        attribute_weights: Sequence[float],
        hard_fraction: float,
        seed: int,
    ) -> None:
        self.keys = keys  # (N, n_attributes) int codes
        self.group_size = group_size
        self.hard_fraction = hard_fraction
        self.weights = np.asarray(attribute_weights, dtype=np.float64) / np.sum(attribute_weights)
        self.rng = np.random.default_rng(seed)
        # For each attribute a: (other attributes' values) -> value of a -> image indices.
        self.index: list[dict[tuple, dict[int, list[int]]]] = []
        for a in range(keys.shape[1]):
            table: dict[tuple, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
            for i, row in enumerate(keys.tolist()):
                table[tuple(row[:a] + row[a + 1 :])][row[a]].append(i)
            self.index.append(table)

    def sample(self, batch_size: int) -> np.ndarray:
        """Indices of one batch: ``hard_fraction`` of it in hard groups, the rest uniformly random."""
        n_hard = int(round(batch_size * self.hard_fraction))
        out: list[int] = self.rng.integers(len(self.keys), size=batch_size - n_hard).tolist()
        while len(out) < batch_size:
            anchor = self.keys[int(self.rng.integers(len(self.keys)))].tolist()
            a = int(self.rng.choice(len(self.weights), p=self.weights))
            by_value = self.index[a][tuple(anchor[:a] + anchor[a + 1 :])]
            values = sorted(by_value)
            for v in self.rng.permutation(values)[: self.group_size]:
                members = by_value[int(v)]
                out.append(members[int(self.rng.integers(len(members)))])
        return np.asarray(out[:batch_size])


def contrastive_loss(logits_per_image: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Symmetric CLIP loss where every caption of the same attribute combination counts as a positive."""
    same = (keys[:, None, :] == keys[None, :, :]).all(-1).float()  # (B, B)
    targets = same / same.sum(1, keepdim=True)
    image_loss = -(targets * logits_per_image.log_softmax(1)).sum(1).mean()
    text_loss = -(targets * logits_per_image.t().log_softmax(1)).sum(1).mean()
    return (image_loss + text_loss) / 2


class DenseAttributeHeads(torch.nn.Module):
    """One linear classifier per attribute, applied to every patch token."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.heads = torch.nn.ModuleList(
            torch.nn.Linear(hidden_size, len(values)) for values in ATTRIBUTE_VALUES.values()
        )

    def loss(self, patch_tokens: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of every token's prediction of every attribute of its image.

        Args:
            patch_tokens: (B, P, D) patch tokens (CLS dropped).
            keys: (B, n_attributes) attribute codes of each image.
        """
        n_patches = patch_tokens.shape[1]
        losses = [
            torch.nn.functional.cross_entropy(
                head(patch_tokens).flatten(0, 1), keys[:, a].repeat_interleave(n_patches)
            )
            for a, head in enumerate(self.heads)
        ]
        return torch.stack(losses).mean()


def train(
    model: CLIPModel,
    images: torch.Tensor,
    captions: torch.Tensor,
    keys: np.ndarray,
    spec: ClipSpec,
    seed: int,
    log: Callable[[str], None] = print,
) -> list[float]:
    """Contrastive training with hard-negative batches plus the dense attribute loss (AdamW, warmup + cosine).

    Args:
        model: the freshly initialised CLIP (trained in place).
        images: uint8 (N, H, W, 3).
        captions: int64 (N, L) text-tower ids, one caption per image.
        keys: int (N, 4) attribute codes per image (equal rows = same caption meaning).
        spec: batch size, steps and peak learning rate.
        seed: seed of the batch sampler.
        log: progress printer.

    Returns:
        The total loss of every step.
    """
    sampler = HardNegativeBatches(
        keys,
        group_size=4,
        attribute_weights=(1.0, 3.0, 1.0, 2.0),
        hard_fraction=spec.hard_fraction,
        seed=seed,
    )
    key_tensor = torch.from_numpy(keys)
    dense_heads = DenseAttributeHeads(spec.vision_hidden_size)
    optimizer = torch.optim.AdamW(
        [*model.parameters(), *dense_heads.parameters()], lr=spec.learning_rate, weight_decay=0.05
    )
    scheduler = warmup_cosine(optimizer, spec.steps, floor=0.05)
    model.train()
    losses = []
    for step in range(spec.steps):
        idx = torch.from_numpy(sampler.sample(spec.batch_size))
        out = model(input_ids=captions[idx], pixel_values=normalize(images[idx]), output_hidden_states=True)
        patch_tokens = out.vision_model_output.hidden_states[spec.dense_layer][:, 1:]
        contrastive = contrastive_loss(out.logits_per_image, key_tensor[idx])
        dense = dense_heads.loss(patch_tokens, key_tensor[idx])
        loss = contrastive + spec.dense_weight * dense
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == spec.steps - 1:
            log(
                f"    clip step {step:4d}/{spec.steps}  contrastive {contrastive.item():.3f}"
                f"  dense {dense.item():.3f}"
            )
    model.eval()
    return losses


def build_clip(
    images: torch.Tensor,
    caption_ids: Sequence[Sequence[int]],
    keys: np.ndarray,
    tokenizer_vocab_size: int,
    out_dir: Path,
    spec: ClipSpec,
    seed: int,
    log: Callable[[str], None] = print,
) -> dict[str, float | int]:
    """Initialise, train and save the toy CLIP and its image processor.

    Args:
        images: uint8 (N, H, W, 3) training images at ``spec.image_size``.
        caption_ids: SentencePiece ids (no BOS/EOS) of one caption per image.
        keys: int (N, 4) attribute codes per image.
        tokenizer_vocab_size: size of the world's SentencePiece vocabulary.
        out_dir: where ``CLIPModel`` + ``preprocessor_config.json`` go.
        spec: sizes and schedule.
        seed: torch seed for the initial weights; numpy seed of the batch sampler.
        log: progress printer.

    Returns:
        Stats for the manifest: parameter counts, first and last loss.
    """
    end_id = tokenizer_vocab_size  # one extra id past the SentencePiece vocabulary
    captions = encode_captions(caption_ids, end_id, spec.text_max_length)
    torch.manual_seed(seed)
    model = CLIPModel(build_config(tokenizer_vocab_size + 1, spec))
    losses = train(model, images, captions, keys, spec, seed, log)
    model.save_pretrained(out_dir)
    build_image_processor(spec.image_size).save_pretrained(out_dir)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "vision_params": sum(p.numel() for p in model.vision_model.parameters()),
        "first_loss": round(losses[0], 4),
        "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
    }
