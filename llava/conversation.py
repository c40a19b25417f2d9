"""Conversation templates, one per upstream `--version` / `--conv-mode` name.

Templates are immutable module data: callers take `conv_templates[name].copy()` and fill the copy.
The prompt strings each style renders are byte-identical to upstream LLaVA's, because checkpoints
were trained on exactly those strings.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence
from enum import Enum, auto
from io import BytesIO
from typing import Any

from llava.constants import DEFAULT_IMAGE_TOKEN


class SeparatorStyle(Enum):
    """How turns are joined into one prompt string."""

    SINGLE = auto()
    TWO = auto()
    MPT = auto()
    PLAIN = auto()
    LLAMA_2 = auto()


# A message body is text, or (text, PIL image, image_process_mode) when serving an uploaded image.
Message = Any


@dataclasses.dataclass
class Conversation:
    """A conversation template plus the messages added to a copy of it."""

    system: str
    roles: tuple[str, str]
    # Templates hold a tuple so they cannot be filled in place; `copy()` returns a fillable list.
    messages: Sequence[Sequence[Message]]
    offset: int
    sep_style: SeparatorStyle = SeparatorStyle.SINGLE
    sep: str = "###"
    sep2: str | None = None
    version: str = "Unknown"
    skip_next: bool = False

    def _messages_for_prompt(self) -> list[tuple[str, Message]]:
        """Messages as rendered: a served image turn gets its `<image>` moved to the front."""
        messages = [tuple(m) for m in self.messages]
        if not messages or not isinstance(messages[0][1], tuple):
            return messages
        role, (text, *_rest) = messages[0]
        text = text.replace(DEFAULT_IMAGE_TOKEN, "").strip()
        if "mmtag" in self.version:
            return [
                (self.roles[0], "<Image><image></Image>"),
                (self.roles[1], "Received."),
                (role, text),
                *messages[1:],
            ]
        return [(role, DEFAULT_IMAGE_TOKEN + "\n" + text), *messages[1:]]

    def get_prompt(self) -> str:
        """Render the messages in this template's style (an empty message opens a reply)."""
        messages = [(role, _text_of(msg)) for role, msg in self._messages_for_prompt()]
        if self.sep_style == SeparatorStyle.SINGLE:
            out = self.system + self.sep
            for role, msg in messages:
                out += f"{role}: {msg}{self.sep}" if msg else f"{role}:"
            return out
        if self.sep_style == SeparatorStyle.TWO:
            seps = (self.sep, self.sep2)
            out = self.system + seps[0]
            for i, (role, msg) in enumerate(messages):
                out += f"{role}: {msg}{seps[i % 2]}" if msg else f"{role}:"
            return out
        if self.sep_style == SeparatorStyle.MPT:
            out = self.system + self.sep
            for role, msg in messages:
                out += f"{role}{msg}{self.sep}" if msg else role
            return out
        if self.sep_style == SeparatorStyle.LLAMA_2:
            return self._llama_2_prompt(messages)
        if self.sep_style == SeparatorStyle.PLAIN:
            seps = (self.sep, self.sep2)
            out = self.system
            for i, (_role, msg) in enumerate(messages):
                if msg:
                    out += msg + seps[i % 2]
            return out
        raise ValueError(f"Invalid separator style: {self.sep_style}")

    def _llama_2_prompt(self, messages: list[tuple[str, str]]) -> str:
        if not messages or not messages[0][1] or messages[0][0] != self.roles[0]:
            raise ValueError("A LLaMA-2 conversation must open with a non-empty user message.")
        out = ""
        for i, (_role, msg) in enumerate(messages):
            if not msg:
                continue
            if i == 0 and self.system:
                msg = f"<<SYS>>\n{self.system}\n<</SYS>>\n\n{msg}"
            if i % 2 == 0:
                out += f"{self.sep}[INST] {msg} [/INST]"
            else:
                out += f" {msg} {self.sep2}"
        # Upstream strips the leading separator characters (str.lstrip semantics).
        return out.lstrip(self.sep)

    def append_message(self, role: str, message: Message) -> None:
        self.messages.append([role, message])

    def get_images(self, return_pil: bool = False) -> list[Any]:
        """Images attached to user turns (serving), resized as upstream's web UI does."""
        images = []
        for i, (_role, msg) in enumerate(self.messages[self.offset :]):
            if i % 2 or not isinstance(msg, tuple):
                continue
            _text, image, mode = msg
            image = _prepare_served_image(image, mode)
            if return_pil:
                images.append(image)
            else:
                buffer = BytesIO()
                image.save(buffer, format="PNG")
                images.append(base64.b64encode(buffer.getvalue()).decode())
        return images

    def copy(self) -> Conversation:
        return dataclasses.replace(self, messages=[list(m) for m in self.messages])

    def dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "roles": self.roles,
            "messages": [[role, _text_of(msg)] for role, msg in self.messages],
            "offset": self.offset,
            "sep": self.sep,
            "sep2": self.sep2,
        }


def _text_of(message: Message) -> str:
    return message[0] if isinstance(message, tuple) else message


def _prepare_served_image(image, mode: str):
    from llava.mm_utils import expand2square

    if mode == "Pad":
        image = expand2square(image, (122, 116, 104))
    elif mode == "Resize":
        image = image.resize((336, 336))
    elif mode not in ("Crop", "Default"):
        raise ValueError(f"Invalid image_process_mode: {mode}")
    # Large uploads are scaled down to at most 1344 px on the long side and 672 px on the short one.
    width, height = image.size
    if max(width, height) <= 1344:
        return image
    aspect = max(width, height) / min(width, height)
    shortest = int(min(1344 / aspect, 672, min(width, height)))
    longest = int(shortest * aspect)
    return image.resize((shortest, longest) if height > width else (longest, shortest))


_VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
_HUMAN_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
_MMTAG_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant is able to understand the visual content that the user provides, "
    "and assist the user with a variety of tasks using natural language."
    "The visual content will be provided with the following format: <Image>visual content</Image>."
)
_LLAMA_2_SYSTEM = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, "
    "while being safe.  Your answers should not include any harmful, unethical, racist, sexist, "
    "toxic, dangerous, or illegal content. Please ensure that your responses are socially "
    "unbiased and positive in nature.\n\nIf a question does not make any sense, or is not "
    "factually coherent, explain why instead of answering something not correct. If you don't "
    "know the answer to a question, please don't share false information."
)
_LLAVA_LLAMA_2_SYSTEM = (
    "You are a helpful language and vision assistant. "
    "You are able to understand the visual content that the user provides, "
    "and assist the user with a variety of tasks using natural language."
)
_V0_EXAMPLE_ANSWER = (
    "Renewable energy sources are those that can be replenished naturally in a relatively "
    "short amount of time, such as solar, wind, hydro, geothermal, and biomass. "
    "Non-renewable energy sources, on the other hand, are finite and will eventually be "
    "depleted, such as coal, oil, and natural gas. Here are some key differences between "
    "renewable and non-renewable energy sources:\n"
    "1. Availability: Renewable energy sources are virtually inexhaustible, while non-renewable "
    "energy sources are finite and will eventually run out.\n"
    "2. Environmental impact: Renewable energy sources have a much lower environmental impact "
    "than non-renewable sources, which can lead to air and water pollution, greenhouse gas "
    "emissions, and other negative effects.\n"
    "3. Cost: Renewable energy sources can be more expensive to initially set up, but they "
    "typically have lower operational costs than non-renewable sources.\n"
    "4. Reliability: Renewable energy sources are often more reliable and can be used in more "
    "remote locations than non-renewable sources.\n"
    "5. Flexibility: Renewable energy sources are often more flexible and can be adapted to "
    "different situations and needs, while non-renewable sources are more rigid and inflexible.\n"
    "6. Sustainability: Renewable energy sources are more sustainable over the long term, while "
    "non-renewable sources are not, and their depletion can lead to economic and social "
    "instability.\n"
)
_CHATML_ROLES = ("<|im_start|>user\n", "<|im_start|>assistant\n")

conv_vicuna_v0 = Conversation(
    system=_HUMAN_SYSTEM,
    roles=("Human", "Assistant"),
    messages=(
        ("Human", "What are the key differences between renewable and non-renewable energy sources?"),
        ("Assistant", _V0_EXAMPLE_ANSWER),
    ),
    offset=2,
    sep_style=SeparatorStyle.SINGLE,
    sep="###",
)
conv_vicuna_v1 = Conversation(
    system=_VICUNA_SYSTEM,
    roles=("USER", "ASSISTANT"),
    messages=(),
    offset=0,
    sep_style=SeparatorStyle.TWO,
    sep=" ",
    sep2="</s>",
    version="v1",
)
conv_llama_2 = Conversation(
    system=_LLAMA_2_SYSTEM,
    roles=("USER", "ASSISTANT"),
    messages=(),
    offset=0,
    sep_style=SeparatorStyle.LLAMA_2,
    sep="<s>",
    sep2="</s>",
    version="llama_v2",
)
conv_llava_llama_2 = dataclasses.replace(conv_llama_2, system=_LLAVA_LLAMA_2_SYSTEM)
conv_mistral_instruct = dataclasses.replace(conv_llama_2, system="", sep="")
conv_chatml_direct = Conversation(
    system="<|im_start|>system\nAnswer the questions.",
    roles=_CHATML_ROLES,
    messages=(),
    offset=0,
    sep_style=SeparatorStyle.MPT,
    sep="<|im_end|>",
    version="mpt",
)
conv_mpt = dataclasses.replace(
    conv_chatml_direct,
    system=(
        "<|im_start|>system\nA conversation between a user and an LLM-based AI assistant. "
        "The assistant gives helpful and honest answers."
    ),
)
conv_llava_plain = Conversation(
    system="", roles=("", ""), messages=(), offset=0, sep_style=SeparatorStyle.PLAIN, sep="\n"
)
conv_llava_v0 = Conversation(
    system=_HUMAN_SYSTEM,
    roles=("Human", "Assistant"),
    messages=(),
    offset=0,
    sep_style=SeparatorStyle.SINGLE,
    sep="###",
)
conv_llava_v0_mmtag = dataclasses.replace(conv_llava_v0, system=_MMTAG_SYSTEM, version="v0_mmtag")
conv_llava_v1 = dataclasses.replace(conv_vicuna_v1, system=_HUMAN_SYSTEM)
conv_llava_v1_mmtag = dataclasses.replace(conv_vicuna_v1, system=_MMTAG_SYSTEM, version="v1_mmtag")

default_conversation = conv_vicuna_v1
conv_templates: dict[str, Conversation] = {
    "default": conv_vicuna_v0,
    "v0": conv_vicuna_v0,
    "v1": conv_vicuna_v1,
    "vicuna_v1": conv_vicuna_v1,
    "llama_2": conv_llama_2,
    "mistral_instruct": conv_mistral_instruct,
    "chatml_direct": conv_chatml_direct,
    "mistral_direct": conv_chatml_direct,
    "plain": conv_llava_plain,
    "v0_plain": conv_llava_plain,
    "llava_v0": conv_llava_v0,
    "v0_mmtag": conv_llava_v0_mmtag,
    "llava_v1": conv_llava_v1,
    "v1_mmtag": conv_llava_v1_mmtag,
    "llava_llama_2": conv_llava_llama_2,
    "mpt": conv_mpt,
}


def template_key_for_version(version: str) -> str:
    """The `conv_templates` key that `--version` trains with (see `template_for_version`)."""
    if version in ("v0", "v0.5") or version not in conv_templates:
        return "vicuna_v1"
    return version


def template_for_version(version: str) -> Conversation:
    """The template `--version` trains with, following upstream's quirks.

    `v0` and `v0.5` only change the pad policy and keep the module default (vicuna_v1); unknown
    names also fall back to vicuna_v1, as upstream does.
    """
    return conv_templates[template_key_for_version(version)]
