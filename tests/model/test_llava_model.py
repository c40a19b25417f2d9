"""The tiny LLaVA model: forward/backward with images, generation, vision tokenizer, anyres merging."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

IMG = IMAGE_TOKEN_INDEX


def _batch():
    ids = torch.tensor([[1, 5, IMG, 7, 8, 9], [1, 9, 10, 11, 12, 0], [1, IMG, 4, IMG, 6, 0]])
    mask = ids != 0
    labels = torch.where(mask & (ids != IMG), ids, IGNORE_INDEX)
    images = torch.randn(4, 3, 28, 28)  # sample 0: 1 image, sample 1: dummy, sample 2: 2 images
    return ids, mask, labels, images


def test_forward_backward_trains_projector_not_tower(make_llava):
    model = make_llava()
    model.train()
    ids, mask, labels, images = _batch()
    out = model(input_ids=ids, attention_mask=mask, labels=labels, images=images)
    assert torch.isfinite(out.loss)
    # 6 tokens - 1 placeholder + 4 image tokens in sample 0; 2 placeholders -> 8 tokens in sample 2.
    assert out.logits.shape == (3, 11, 64)
    out.loss.backward()
    inner = model.get_model()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in inner.mm_projector.parameters())
    assert inner.mm_projector[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in inner.get_vision_tower().parameters())


def test_forward_without_images_is_the_plain_llm(llm_dir):
    from llava.model import LlavaLlamaForCausalLM

    llava = LlavaLlamaForCausalLM.from_pretrained(llm_dir).eval()
    plain = LlamaForCausalLM.from_pretrained(llm_dir).eval()
    assert llava.get_vision_tower() is None
    ids = torch.tensor([[1, 4, 5, 6]])
    assert torch.allclose(llava(input_ids=ids).logits, plain(input_ids=ids).logits)


def test_config_max_length_and_left_padding_are_honoured(make_llava):
    model = make_llava().eval()
    model.config.tokenizer_model_max_length = 5
    model.config.tokenizer_padding_side = "left"
    ids, mask, labels, images = _batch()
    _, pos, att, _, embeds, lab = model.prepare_inputs_labels_for_multimodal(
        ids, None, mask, None, labels, images
    )
    assert embeds.shape[:2] == (3, 5) and pos is None
    assert att.dtype == torch.bool and att.all()  # every sample is longer than 5 after splicing
    assert lab[0].tolist() == [1, 5, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]


def test_start_end_with_adapter_tuning_is_rejected(make_llava):
    model = make_llava()
    model.config.tune_mm_mlp_adapter = True
    model.config.mm_use_im_start_end = True
    ids, mask, labels, images = _batch()
    with pytest.raises(NotImplementedError):
        model(input_ids=ids, attention_mask=mask, labels=labels, images=images)


def _greedy_without_cache(model, prompt, images, steps):
    ids = prompt
    for _ in range(steps):
        logits = model(input_ids=ids, images=images, use_cache=False).logits
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids[:, prompt.shape[1] :]


def test_greedy_generation_with_images(make_llava):
    model = make_llava().eval()
    model.generation_config.eos_token_id = None  # always produce max_new_tokens
    prompt = torch.tensor([[1, 5, IMG, 7, 8]])
    images = torch.randn(1, 3, 28, 28)
    first = model.generate(prompt, images=images, max_new_tokens=6, do_sample=False)
    again = model.generate(prompt, images=images, max_new_tokens=6, do_sample=False)
    assert first.shape == (1, 6)  # only the new tokens, as upstream
    assert torch.equal(first, again)
    assert torch.equal(first, _greedy_without_cache(model, prompt, images, 6))


def test_batched_generation_left_pads_after_splicing(make_llava):
    model = make_llava().eval()
    model.generation_config.eos_token_id = None
    prompts = [torch.tensor([[1, 5, IMG, 7, 8, 9]]), torch.tensor([[1, IMG, 4]])]
    images = torch.randn(2, 3, 28, 28)
    single = [
        model.generate(p, images=images[i : i + 1], max_new_tokens=4, do_sample=False)
        for i, p in enumerate(prompts)
    ]
    batch = torch.zeros(2, 6, dtype=torch.long)
    mask = torch.zeros(2, 6, dtype=torch.long)
    for i, p in enumerate(prompts):  # left-padded, as a tokenizer with padding_side="left" would give
        batch[i, -p.shape[1] :], mask[i, -p.shape[1] :] = p[0], 1
    together = model.generate(batch, images=images, attention_mask=mask, max_new_tokens=4, do_sample=False)
    assert torch.equal(together, torch.cat(single))


def test_prepare_inputs_for_generation_passes_images_on_first_step_only(make_llava):
    model = make_llava().eval()
    images = torch.randn(1, 3, 28, 28)
    ids = torch.tensor([[1, 2, 3]])
    first = model.prepare_inputs_for_generation(ids, images=images, is_first_iteration=True)
    later = model.prepare_inputs_for_generation(ids, images=images, next_sequence_length=1)
    assert first["images"] is images and "images" not in later


def _tokenizer(vocab_size: int = 64) -> PreTrainedTokenizerFast:
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, vocab_size)}}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def test_vision_tokenizer_start_end_tokens(make_llava):
    model = make_llava()
    tokenizer = _tokenizer()
    old_in = model.get_input_embeddings().weight.detach().clone()
    model.initialize_vision_tokenizer(
        tokenizer, mm_use_im_start_end=True, mm_use_im_patch_token=True, tune_mm_mlp_adapter=True
    )
    assert len(tokenizer) == 67 and model.get_input_embeddings().weight.shape[0] == 67
    rows = model.get_input_embeddings().weight
    assert torch.allclose(rows[-1], rows[:-2].mean(0)) and torch.allclose(rows[-2], rows[:-2].mean(0))
    assert torch.equal(rows[:64], old_in)
    assert model.get_input_embeddings().weight.requires_grad
    assert not model.get_output_embeddings().weight.requires_grad


def test_vision_tokenizer_patch_token_only_freezes_embeddings_when_tuning_adapter(make_llava):
    model = make_llava()
    tokenizer = _tokenizer()
    model.initialize_vision_tokenizer(
        tokenizer, mm_use_im_start_end=False, mm_use_im_patch_token=True, tune_mm_mlp_adapter=True
    )
    assert len(tokenizer) == 65 and model.config.vocab_size == 65
    assert not model.get_input_embeddings().weight.requires_grad


def test_spatial_unpad_anyres_forward(make_llava):
    model = make_llava(mm_patch_merge_type="spatial_unpad").eval()
    assert model.get_model().image_newline.shape == (32,)
    model.config.image_aspect_ratio = "anyres"
    model.config.image_grid_pinpoints = [[28, 56], [56, 28], [56, 56]]
    # A 60x25 image -> a 2x1 grid of 28px crops (+ the base crop); 2x4 patch map, no rows to unpad.
    images = [torch.randn(3, 3, 28, 28)]
    ids = torch.tensor([[1, IMG, 5]])
    out = model(input_ids=ids, images=images, image_sizes=[(60, 25)])
    assert out.logits.shape[1] == 2 + 4 + 2 * (4 + 1)  # text + base + rows*(cols+newline)
