"""Conversation → `input_ids` + `labels`, one function per template family, as upstream LLaVA.

Upstream computed the label mask by tokenizing each round separately and patching the counts with ±1
corrections that depend on the tokenizer version; when they were off, the whole sample was silently masked
("tokenization mismatch ... (ignored)"). Here every template is rendered as a list of segments
`(text, supervised)` whose concatenation is the prompt. The prompt is tokenized once, as a whole, and each
segment's tokens are found by tokenizing growing prefixes (restarting after special-token separators such as
`</s>`, where every HF tokenizer restarts too). The concatenated segment tokens must equal the whole-prompt
tokens, otherwise `PreprocessError` names the sample and both lengths; a sample left with no supervised token
is an error too. The net rules are upstream's:

- plain (pretraining): `<image>` + caption + "\\n"; the caption and the newline are supervised.
- v1 / llama_2 / mpt: every assistant answer and its end marker (`</s>`, ` </s>`, `<|im_end|>`) are
  supervised; BOS, system, user turns and the assistant role prefix are masked.
- legacy v0 (`###`): the header and each ` Human: …\\n` are masked; each `###` marker, each whole
  `### Assistant: …\\n` and the final `### ` are supervised.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from llava.constants import (
    DEFAULT_IM_END_TOKEN,
    DEFAULT_IM_START_TOKEN,
    DEFAULT_IMAGE_TOKEN,
    IGNORE_INDEX,
)
from llava.conversation import Conversation, SeparatorStyle
from llava.mm_utils import tokenizer_image_token

HUMAN, GPT = "human", "gpt"
Segment = tuple[str, bool]  # (text, supervised)
Turn = dict[str, Any]  # {"from": "human" | "gpt", "value": str}


class PreprocessError(ValueError):
    """A sample that cannot be turned into input_ids/labels; the message names the sample."""


def template_kind(conversation: Conversation) -> str:
    """Which preprocessor a template uses, in upstream's dispatch order.

    Returns:
        One of "plain", "llama_2", "v1", "mpt", "v0".
    """
    if conversation.sep_style == SeparatorStyle.PLAIN:
        return "plain"
    if conversation.sep_style == SeparatorStyle.LLAMA_2:
        return "llama_2"
    if conversation.version.startswith("v1"):
        kind, style = "v1", SeparatorStyle.TWO
    elif conversation.version == "mpt":
        kind, style = "mpt", SeparatorStyle.MPT
    else:
        return "v0"
    if conversation.sep_style != style:
        raise ValueError(
            f"Template version {conversation.version!r} needs {style}, got {conversation.sep_style}."
        )
    return kind


# ----- multimodal rewrite -----


def preprocess_multimodal(
    sources: Sequence[Sequence[Turn]],
    *,
    is_multimodal: bool,
    mm_use_im_start_end: bool,
    version: str,
) -> list[list[Turn]]:
    """Move `<image>` to the front of its turn (`"<image>\\n" + text`), as upstream; returns new turns.

    Args:
        sources: Conversations (each a list of `{"from", "value"}` turns); not modified.
        is_multimodal: False returns an unchanged copy.
        mm_use_im_start_end: Wrap the image token as `<im_start><image><im_end>`.
        version: The template's `version` field; one containing "mmtag" writes `<Image><image></Image>`.

    Returns:
        The rewritten conversations.
    """
    sources = copy.deepcopy([list(source) for source in sources])
    if not is_multimodal:
        return sources
    image_token = DEFAULT_IMAGE_TOKEN
    if mm_use_im_start_end:
        image_token = DEFAULT_IM_START_TOKEN + DEFAULT_IMAGE_TOKEN + DEFAULT_IM_END_TOKEN
    for source in sources:
        for turn in source:
            value = turn["value"]
            if DEFAULT_IMAGE_TOKEN in value:
                value = value.replace(DEFAULT_IMAGE_TOKEN, "").strip()
                value = (DEFAULT_IMAGE_TOKEN + "\n" + value).strip()
                if "mmtag" in version:
                    value = value.replace(DEFAULT_IMAGE_TOKEN, "<Image>" + DEFAULT_IMAGE_TOKEN + "</Image>")
            turn["value"] = value.replace(DEFAULT_IMAGE_TOKEN, image_token)
    return sources


# ----- validation -----


def _validate_turns(source: Sequence[Turn], sample_id: Any) -> list[Turn]:
    """Check the turn records; drop a leading non-human turn (upstream); require human/gpt alternation."""
    if not isinstance(source, (list, tuple)) or not source:
        raise PreprocessError(f"Sample {sample_id!r}: 'conversations' must be a non-empty list.")
    for j, turn in enumerate(source):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise PreprocessError(f"Sample {sample_id!r}: turn {j} must be a dict with a string 'value'.")
        if turn.get("from") not in (HUMAN, GPT):
            raise PreprocessError(
                f"Sample {sample_id!r}: turn {j} has 'from'={turn.get('from')!r}; expected 'human' or 'gpt'."
            )
    turns = list(source[1:] if source[0]["from"] != HUMAN else source)
    if not turns:
        raise PreprocessError(f"Sample {sample_id!r}: no turn left after dropping the leading 'gpt' turn.")
    for j, turn in enumerate(turns):
        expected = HUMAN if j % 2 == 0 else GPT
        if turn["from"] != expected:
            raise PreprocessError(
                f"Sample {sample_id!r}: roles must alternate human/gpt; turn {j} is {turn['from']!r}."
            )
        if turn["value"] == "":
            raise PreprocessError(f"Sample {sample_id!r}: turn {j} ({turn['from']}) is empty.")
    return turns


# ----- templates as segments -----


def _segments_two(conv: Conversation, turns: list[Turn]) -> list[Segment]:
    segments, pending = [], conv.system + conv.sep
    for turn in turns:
        if turn["from"] == HUMAN:
            pending += f"{conv.roles[0]}: {turn['value']}{conv.sep}"
        else:
            segments += [(pending + f"{conv.roles[1]}:", False), (f" {turn['value']}{conv.sep2}", True)]
            pending = ""
    return segments + [(pending, False)] if pending else segments


def _segments_llama_2(conv: Conversation, turns: list[Turn]) -> list[Segment]:
    segments, pending = [], ""
    for j, turn in enumerate(turns):
        value = turn["value"]
        if j == 0 and conv.system:
            value = f"<<SYS>>\n{conv.system}\n<</SYS>>\n\n{value}"
        if turn["from"] == HUMAN:
            pending += f"{conv.sep}[INST] {value} [/INST]"
        else:
            segments += [(pending, False), (f" {value} {conv.sep2}", True)]
            pending = ""
    if pending:
        segments.append((pending, False))
    # Upstream strips the leading separator characters from the prompt (str.lstrip).
    first_text, first_supervised = segments[0]
    segments[0] = (first_text.lstrip(conv.sep), first_supervised)
    return segments


def _segments_mpt(conv: Conversation, turns: list[Turn]) -> list[Segment]:
    segments, pending = [], conv.system + conv.sep
    for turn in turns:
        if turn["from"] == HUMAN:
            pending += conv.roles[0] + turn["value"] + conv.sep
        else:
            segments += [(pending + conv.roles[1], False), (turn["value"] + conv.sep, True)]
            pending = ""
    return segments + [(pending, False)] if pending else segments


def _segments_v0(conv: Conversation, turns: list[Turn]) -> list[Segment]:
    # Upstream's legacy format: "{system}\n\n", then "### {role}: {value}\n" per turn, then "### ".
    # The "###" markers are supervised so the model learns to emit its stop string.
    segments = [(f"{conv.system}\n\n", False)]
    for turn in turns:
        if turn["from"] == HUMAN:
            segments += [("###", True), (f" {conv.roles[0]}: {turn['value']}\n", False)]
        else:
            segments.append((f"### {conv.roles[1]}: {turn['value']}\n", True))
    return segments + [("### ", True)]


def _segments_plain(conv: Conversation, source: Sequence[Turn], sample_id: Any) -> list[Segment]:
    # Pretraining: the instruction is discarded; only "<image>" + caption + sep remains (upstream).
    if len(source) != 2:
        raise PreprocessError(
            f"Sample {sample_id!r}: the 'plain' template needs exactly 2 turns, got {len(source)}."
        )
    if DEFAULT_IMAGE_TOKEN not in source[0]["value"]:
        raise PreprocessError(f"Sample {sample_id!r}: the 'plain' template needs <image> in the first turn.")
    return [(DEFAULT_IMAGE_TOKEN, False), (source[1]["value"] + conv.sep, True)]


def _rendered_prompt(conv: Conversation, turns: list[Turn]) -> str:
    filled = conv.copy()
    filled.messages = []
    for turn in turns:
        filled.append_message(conv.roles[0] if turn["from"] == HUMAN else conv.roles[1], turn["value"])
    return filled.get_prompt()


def conversation_segments(
    source: Sequence[Turn], conversation: Conversation, sample_id: Any = None
) -> list[Segment]:
    """The prompt of one conversation as `(text, supervised)` segments (see the module docstring).

    For v1/llama_2/mpt the joined text is checked against `Conversation.get_prompt()`.
    """
    kind = template_kind(conversation)
    if kind == "plain":
        for j, turn in enumerate(source):
            if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
                raise PreprocessError(f"Sample {sample_id!r}: turn {j} must be a dict with a string 'value'.")
        return _segments_plain(conversation, source, sample_id)
    turns = _validate_turns(source, sample_id)
    if kind == "v0":
        return _segments_v0(conversation, turns)
    build = {"v1": _segments_two, "llama_2": _segments_llama_2, "mpt": _segments_mpt}[kind]
    segments = build(conversation, turns)
    joined, prompt = "".join(text for text, _ in segments), _rendered_prompt(conversation, turns)
    if joined != prompt:
        raise PreprocessError(
            f"Sample {sample_id!r}: segments ({len(joined)} chars) differ from the template prompt "
            f"({len(prompt)} chars)."
        )
    return segments


# ----- tokenization -----


_Boundary = tuple[int, int, int]  # (segment index, tokens before it, tokens through it)


def _segment_token_ids(
    texts: Sequence[str], encode: Callable[[str], list[int]], anchors: Sequence[str]
) -> tuple[list[list[int]], _Boundary | None]:
    """Tokens of each text as they appear in `encode("".join(texts))`.

    The tokens of a prefix are `encode(prefix)`. To stay linear, after a text that ends with an anchor (a
    separator that is an added/special token, e.g. `</s>`) the rest is encoded as `encode(anchor + rest)`
    with the leading tokens (BOS) and the anchor's own tokens cut off.

    Returns:
        The per-text ids, and None; or what was computed so far and the first boundary that falls inside
        a token (the tokens of a prefix are not a prefix of the next prefix's tokens).
    """
    lead = encode("")
    out: list[list[int]] = []
    full_text, prefix_ids = "", []
    base_ids: list[int] | None = None  # ids before the last anchor; None: encode full prefixes
    block, block_anchor_ids = "", []
    for k, text in enumerate(texts):
        full_text += text
        block += text
        ids = None
        if base_ids is not None:
            cont = encode(block)
            head = len(lead) + len(block_anchor_ids)
            if cont[: len(lead)] == lead and cont[len(lead) : head] == block_anchor_ids:
                ids = base_ids + block_anchor_ids + cont[head:]
        if ids is None:
            ids = encode(full_text)
        if ids[: len(prefix_ids)] != prefix_ids:
            return out, (k, len(prefix_ids), len(ids))
        out.append(ids[len(prefix_ids) :])
        prefix_ids = ids
        anchor = next((a for a in anchors if a and full_text.endswith(a)), None)
        if anchor is not None:
            anchor_ids = encode(anchor)[len(lead) :]
            if anchor_ids and ids[-len(anchor_ids) :] == anchor_ids:
                base_ids, block_anchor_ids, block = ids[: -len(anchor_ids)], anchor_ids, anchor
    return out, None


def _flatten(lists: list[list[int]]) -> list[int]:
    return [x for ids in lists for x in ids]


def _anchor_tokens(conv: Conversation, kind: str, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    candidates = {"v1": [conv.sep2], "llama_2": [conv.sep2], "mpt": [conv.sep]}.get(kind, [])
    added = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    return [c for c in candidates if c and c in added]


def _tokenize_sample(
    segments: list[Segment],
    encode: Callable[[str], list[int]],
    anchors: list[str],
    sample_id: Any,
) -> tuple[list[int], list[int]]:
    """Whole-prompt ids and labels (supervised segments keep their ids, the rest IGNORE_INDEX)."""
    texts = [text for text, _ in segments]
    whole = encode("".join(texts))
    per_segment, boundary = _segment_token_ids(texts, encode, anchors)
    if anchors and (boundary is not None or _flatten(per_segment) != whole):
        # The restart-after-separator shortcut does not hold for this tokenizer: use plain prefixes.
        per_segment, boundary = _segment_token_ids(texts, encode, [])
    if boundary is not None:
        k, n_before, n_through = boundary
        raise PreprocessError(
            f"Sample {sample_id!r}: tokenization mismatch: turn boundary {k} falls inside a token (the "
            f"{n_before} tokens before it are not a prefix of the {n_through} tokens through it; whole "
            f"prompt: {len(whole)} tokens)."
        )
    joined = _flatten(per_segment)
    if joined != whole:
        raise PreprocessError(
            f"Sample {sample_id!r}: tokenization mismatch: per-turn {len(joined)} vs whole "
            f"{len(whole)} tokens."
        )
    labels: list[int] = []
    for ids, (_text, supervised) in zip(per_segment, segments):
        labels += ids if supervised else [IGNORE_INDEX] * len(ids)
    return whole, labels


def preprocess(
    sources: Sequence[Sequence[Turn]],
    tokenizer: PreTrainedTokenizerBase,
    *,
    conversation: Conversation,
    has_image: bool,
    sample_id: Any = None,
) -> dict[str, list[torch.Tensor]]:
    """Tokenize conversations and mask everything but the supervised spans, per `conversation`'s template.

    Tokenization follows upstream: with an image (and always for plain/mpt) `tokenizer_image_token`, one
    -200 per `<image>` and no truncation; text-only v1/llama_2/v0 samples use the tokenizer directly and are
    truncated to `tokenizer.model_max_length`.

    Args:
        sources: Conversations, each a list of `{"from": "human"|"gpt", "value": str}` turns (already passed
            through `preprocess_multimodal` when the sample has an image).
        tokenizer: The training tokenizer (`load_tokenizer`).
        conversation: The template (`conv_templates[name]`); it is not modified.
        has_image: Whether the sample has an image.
        sample_id: Named in error messages.

    Returns:
        `{"input_ids": [LongTensor (T,)], "labels": [LongTensor (T,)]}`, one entry per conversation.

    Raises:
        PreprocessError: Malformed conversation, a per-turn/whole tokenization mismatch, or a sample with no
            supervised token.
    """
    kind = template_kind(conversation)
    split_images = has_image or kind in ("plain", "mpt")
    truncate = not split_images

    def encode(text: str) -> list[int]:
        if split_images:
            return tokenizer_image_token(text, tokenizer)
        return tokenizer(text).input_ids

    anchors = _anchor_tokens(conversation, kind, tokenizer)
    all_ids, all_labels = [], []
    for source in sources:
        segments = conversation_segments(source, conversation, sample_id)
        ids, labels = _tokenize_sample(segments, encode, anchors, sample_id)
        if truncate and len(ids) > tokenizer.model_max_length:
            ids, labels = ids[: tokenizer.model_max_length], labels[: tokenizer.model_max_length]
        n_supervised = sum(label != IGNORE_INDEX for label in labels)
        if n_supervised == 0:
            raise PreprocessError(
                f"Sample {sample_id!r}: no supervised token left ({len(ids)} tokens, "
                f"model_max_length {tokenizer.model_max_length})."
            )
        all_ids.append(torch.tensor(ids, dtype=torch.long))
        all_labels.append(torch.tensor(labels, dtype=torch.long))
    return {"input_ids": all_ids, "labels": all_labels}
