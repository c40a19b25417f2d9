"""The toy base LM: a tiny ``LlamaForCausalLM`` briefly pre-trained on the world's text corpus."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llava.toy.corpus import EOS_TEXT
from llava.toy.schedule import warmup_cosine
from llava.toy.tokenizer import BOS_ID, EOS_ID, load_processor


@dataclass(frozen=True)
class LMSpec:
    """Size and pre-training schedule of the toy LM."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    # A multiple of 64: bitsandbytes' CPU 4-bit inference kernel needs it (real LLaMA sizes all are).
    intermediate_size: int = 384
    max_position_embeddings: int = 1024
    block_size: int = 256
    batch_size: int = 8
    steps: int = 400
    learning_rate: float = 3e-3


def build_config(vocab_size: int, spec: LMSpec) -> LlamaConfig:
    """A LLaMA-2-shaped config (RMSNorm eps 1e-5, untied embeddings, no pad id) at toy size."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_position_embeddings,
        rms_norm_eps=1e-5,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=None,
        tie_word_embeddings=False,
        architectures=["LlamaForCausalLM"],
    )


def encode_documents(documents: Sequence[str], tokenizer_model: bytes) -> list[int]:
    """Concatenate documents as ``<s> text </s>`` id runs; a literal ``"</s>"`` in a text becomes EOS.

    Vicuna-framed dialogues end every assistant turn with ``"</s>"`` in their text, exactly like LLaVA's
    ``v1`` prompts; mapping it to the EOS id is what a LLaMA tokenizer does with that special token.
    """
    processor = load_processor(tokenizer_model)
    ids: list[int] = []
    for document in documents:
        ids.append(BOS_ID)
        pieces = document.split(EOS_TEXT)
        for i, piece in enumerate(pieces):
            if piece:
                ids.extend(processor.encode(piece))
            if i < len(pieces) - 1:
                ids.append(EOS_ID)
        if not document.endswith(EOS_TEXT):
            ids.append(EOS_ID)
    return ids


def pretrain(
    model: LlamaForCausalLM,
    token_ids: Sequence[int],
    spec: LMSpec,
    seed: int,
    log: Callable[[str], None] = print,
) -> list[float]:
    """Next-token pre-training on fixed-length blocks of the token stream (AdamW, warmup + cosine).

    Args:
        model: the freshly initialised LM (trained in place).
        token_ids: the whole corpus as one id stream.
        spec: block size, batch size, steps and peak learning rate.
        seed: seed of the batch order.
        log: progress printer.

    Returns:
        The training loss of every step.
    """
    n_blocks = len(token_ids) // spec.block_size
    if n_blocks < spec.batch_size:
        raise ValueError(
            f"LM corpus has {len(token_ids)} tokens: {n_blocks} blocks of {spec.block_size}, fewer "
            f"than one batch of {spec.batch_size}"
        )
    blocks = torch.tensor(token_ids[: n_blocks * spec.block_size]).view(n_blocks, spec.block_size)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=spec.learning_rate, weight_decay=0.01, betas=(0.9, 0.95)
    )
    scheduler = warmup_cosine(optimizer, spec.steps, floor=0.1)
    model.train()
    losses = []
    for step in range(spec.steps):
        batch = blocks[torch.randint(0, n_blocks, (spec.batch_size,), generator=generator)]  # (B, T)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == spec.steps - 1:
            log(f"    lm step {step:4d}/{spec.steps}  loss {loss.item():.3f}")
    model.eval()
    return losses


def build_lm(
    documents: Sequence[str],
    tokenizer_model: bytes,
    out_dir: Path,
    spec: LMSpec,
    seed: int,
    log: Callable[[str], None] = print,
) -> dict[str, float | int]:
    """Initialise, pre-train and save the toy LM (``save_pretrained``, float32 safetensors).

    Args:
        documents: the text corpus documents.
        tokenizer_model: the serialized SentencePiece model (defines the vocabulary).
        out_dir: where the checkpoint goes (the tokenizer files are written beside it by the caller).
        spec: model size and training schedule.
        seed: torch seed for the initial weights and batch order.
        log: progress printer.

    Returns:
        Stats for the manifest: parameter count, corpus tokens, first and last loss.
    """
    vocab_size = load_processor(tokenizer_model).get_piece_size()
    token_ids = encode_documents(documents, tokenizer_model)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(build_config(vocab_size, spec))
    losses = pretrain(model, token_ids, spec, seed, log)
    model.generation_config.pad_token_id = None
    model.save_pretrained(out_dir)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "corpus_tokens": len(token_ids),
        "first_loss": round(losses[0], 4),
        "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
    }
