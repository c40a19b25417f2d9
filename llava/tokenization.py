"""Tokenizer loading with the exact ids LLaVA-1.5 was trained on.

Upstream trained with transformers 4.37's slow, SentencePiece-backed `LlamaTokenizer` (`use_fast=False`,
`legacy=False` in Vicuna-v1.5's config). transformers 5 maps `LlamaTokenizer` to a `tokenizers`-backed class
whose ids differ (`"hi  there"`: `[1, 7251, 259, 12711]` instead of `[1, 7251, 29871, 727]`), so labels and
prompts would silently drift from the released checkpoints. `LlamaSentencePieceTokenizer` restores the slow
semantics on top of transformers 5's `SentencePieceBackend`:

- `legacy=False`: one "▁" is put in front of the whole text (never after a special token), the SentencePiece
  model runs with its dummy prefix switched off, so plain text gets SentencePiece's own ids and the text right
  after a special token (`</s>USER`) is encoded without a leading "▁";
- `legacy=True` (4.37's default when the config does not say): every piece of text between special tokens is
  encoded by SentencePiece as is, dummy prefix included;
- special and added tokens (`<s>`, `</s>`, `<im_start>`, `[PAD]` …) are split out of the text;
- `add_bos_token` / `add_eos_token`, and 4.37's decoding.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.tokenization_utils_base import AddedToken
from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

logger = logging.getLogger(__name__)

SPIECE_UNDERLINE = "▁"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SP_MODEL_FILE = "tokenizer.model"
# `tokenizer_class` values whose `tokenizer.model` we load with the SentencePiece-exact class.
_LLAMA_TOKENIZER_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast", "LlamaSentencePieceTokenizer")
# Config keys of 4.37's slow LlamaTokenizer that we write back so upstream reloads the same behaviour.
_SLOW_CONFIG_KEYS = ("add_bos_token", "add_eos_token", "legacy", "clean_up_tokenization_spaces")
# Reserved tokens that Llama-3-style vocabularies ship for padding (see `configure_pad_token`).
_RESERVED_PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|reserved_special_token_0|>", "<|pad|>", "<pad>")
ADDED_PAD_TOKEN = "<pad>"


def _special(token: str | AddedToken | None) -> AddedToken | None:
    """Special tokens are matched verbatim (never normalised), as in 4.37's LlamaTokenizer."""
    if isinstance(token, str):
        return AddedToken(token, normalized=False, special=True)
    return token


class LlamaSentencePieceTokenizer(SentencePieceBackend):
    """SentencePiece LLaMA tokenizer with transformers 4.37 slow `LlamaTokenizer` semantics.

    Args:
        vocab_file: Path to the SentencePiece `tokenizer.model`.
        unk_token: Unknown token.
        bos_token: Begin-of-sequence token, prepended when `add_bos_token`.
        eos_token: End-of-sequence token, appended when `add_eos_token`.
        pad_token: Padding token (LLaMA ships none; see `configure_pad_token`).
        add_bos_token: Prepend BOS when encoding with special tokens.
        add_eos_token: Append EOS when encoding with special tokens.
        clean_up_tokenization_spaces: Passed to the base class (4.37's LLaMA default: False).
        spaces_between_special_tokens: Kept for config round-trips (4.37 ignored it when decoding).
        legacy: False for the LLaMA-2/Vicuna-v1.5 behaviour; None means True, as in 4.37.
        sp_model_kwargs: Passed to `sentencepiece.SentencePieceProcessor`.
        **kwargs: Passed to the base class (model_max_length, padding_side, added_tokens_decoder …).
    """

    vocab_files_names = {"vocab_file": SP_MODEL_FILE}
    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "left"

    def __init__(
        self,
        vocab_file: str,
        unk_token: str | AddedToken | None = "<unk>",
        bos_token: str | AddedToken | None = "<s>",
        eos_token: str | AddedToken | None = "</s>",
        pad_token: str | AddedToken | None = None,
        add_bos_token: bool = True,
        add_eos_token: bool = False,
        clean_up_tokenization_spaces: bool = False,
        spaces_between_special_tokens: bool = False,
        legacy: bool | None = None,
        sp_model_kwargs: dict | None = None,
        **kwargs,
    ) -> None:
        if legacy is None:
            logger.warning(
                "%s: the tokenizer config does not set `legacy`; using legacy=True as transformers 4.37 did. "
                "LLaMA-2/Vicuna-v1.5 configs set legacy=false.",
                vocab_file,
            )
            legacy = True
        self.add_bos_token = add_bos_token
        self.add_eos_token = add_eos_token
        # transformers 5 may store these as strings; keep the original kwargs out of the way.
        kwargs.pop("tokenizer_class", None)
        kwargs.pop("backend", None)
        super().__init__(
            vocab_file=vocab_file,
            unk_token=_special(unk_token),
            bos_token=_special(bos_token),
            eos_token=_special(eos_token),
            pad_token=_special(pad_token),
            add_bos_token=add_bos_token,
            add_eos_token=add_eos_token,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            spaces_between_special_tokens=spaces_between_special_tokens,
            legacy=legacy,
            sp_model_kwargs=sp_model_kwargs or {},
            **kwargs,
        )
        self.legacy = legacy

    # ----- encoding -----

    def tokenize(self, text: str, **kwargs) -> list[str]:
        """Split `text` into pieces, special/added tokens kept whole.

        Non-legacy: the whole text gets one leading "▁" (user "▁" characters count as spaces), except that a
        lone "▁" before a leading special token is dropped, exactly as 4.37 did.
        """
        if self.legacy or not text:
            return super().tokenize(text, **kwargs)
        tokens = super().tokenize(SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " "), **kwargs)
        if len(tokens) > 1 and tokens[0] == SPIECE_UNDERLINE and tokens[1] in self.all_special_tokens:
            tokens = tokens[1:]
        return tokens

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        """Encode one piece of text that contains no added token.

        Non-legacy: the SentencePiece model runs without its dummy prefix, so a piece is encoded exactly as
        written; a leading "▁"/space is kept as a real "▁" by encoding `unk_token + text` and cutting the
        pieces of `unk_token` off (SentencePiece splits words at "▁", so the cut is clean).
        """
        if self.legacy or not text.startswith((SPIECE_UNDERLINE, " ")):
            return self.sp_model.encode(text, out_type=str)
        unk = str(self.unk_token)
        pieces = self.sp_model.encode(unk + text, out_type=str)
        n_unk = len(self.sp_model.encode(unk, out_type=str))
        return pieces[n_unk:] if len(pieces) >= n_unk else pieces

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """`[BOS] ids [EOS]` (each only when enabled); a pair repeats the pattern."""
        bos = [self.bos_token_id] if self.add_bos_token else []
        eos = [self.eos_token_id] if self.add_eos_token else []
        out = bos + token_ids_0 + eos
        if token_ids_1 is not None:
            out += bos + token_ids_1 + eos
        return out

    def get_special_tokens_mask(
        self,
        token_ids_0: list[int],
        token_ids_1: list[int] | None = None,
        already_has_special_tokens: bool = False,
    ) -> list[int]:
        """1 where `build_inputs_with_special_tokens` put BOS/EOS, 0 elsewhere."""
        if already_has_special_tokens:
            return super().get_special_tokens_mask(token_ids_0, token_ids_1, already_has_special_tokens=True)
        bos = [1] if self.add_bos_token else []
        eos = [1] if self.add_eos_token else []
        out = bos + [0] * len(token_ids_0) + eos
        if token_ids_1 is not None:
            out += bos + [0] * len(token_ids_1) + eos
        return out

    def create_token_type_ids_from_sequences(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """Zeros for the first sequence (with its BOS/EOS), ones for the second."""
        n_special = int(self.add_bos_token) + int(self.add_eos_token)
        out = [0] * (len(token_ids_0) + n_special)
        if token_ids_1 is not None:
            out += [1] * (len(token_ids_1) + n_special)
        return out

    # ----- decoding -----

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Join pieces: the "▁" we added in front is dropped; special tokens are written verbatim."""
        if not tokens:
            return ""
        tokens = list(tokens)
        if tokens[0].startswith(SPIECE_UNDERLINE):
            tokens[0] = tokens[0][1:]
        specials = set(self.all_special_tokens)
        out, run, prev_special = "", [], False
        for i, token in enumerate(tokens):
            if token in specials:
                # Legacy decoding put a space before a special token that follows text.
                if self.legacy and not prev_special and i != 0:
                    out += " "
                out += self.sp_model.decode(run) + token
                run, prev_special = [], True
            else:
                run.append(token)
                prev_special = False
        return out + self.sp_model.decode(run)

    def _decode(
        self,
        token_ids: int | list[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        spaces_between_special_tokens: bool = True,
        **kwargs,
    ) -> str:
        """4.37's slow decoding: added tokens beyond the SentencePiece vocabulary are separate words.

        Runs of SentencePiece pieces are decoded together; non-special added tokens and extra special
        tokens added beyond the vocabulary (`<im_patch>`, `<im_start>` …) are emitted verbatim and, by
        default, joined to their neighbours with one space.
        """
        ids = [token_ids] if isinstance(token_ids, int) else list(token_ids)
        tokens = self.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens)
        specials = set(self.all_special_tokens)
        standalone = {tok for tok, idx in self._added_tokens_encoder.items() if tok not in specials}
        extra = {str(tok) for tok in self._extra_special_tokens}
        standalone |= {tok for tok in extra if self.convert_tokens_to_ids(tok) >= self.vocab_size}
        texts, run = [], []
        for token in tokens:
            if token in standalone:
                if run:
                    text = self.convert_tokens_to_string(run)
                    if text:
                        texts.append(text)
                    run = []
                texts.append(token)
            else:
                run.append(token)
        if run:
            texts.append(self.convert_tokens_to_string(run))
        text = (" " if spaces_between_special_tokens else "").join(texts)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        return self.clean_up_tokenization(text) if clean_up_tokenization_spaces else text

    # ----- saving -----

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> tuple[str, ...]:
        """Save `tokenizer.model` + a `tokenizer_config.json` that names `LlamaTokenizer`.

        The config carries what 4.37's slow `LlamaTokenizer` reads (add_bos/eos_token, legacy, special
        tokens, `added_tokens_decoder`, `additional_special_tokens`), so upstream LLaVA and `load_tokenizer`
        both reload the same ids.
        """
        files = super().save_pretrained(save_directory, *args, **kwargs)
        config_path = Path(save_directory) / TOKENIZER_CONFIG_FILE
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["tokenizer_class"] = "LlamaTokenizer"
        config["add_bos_token"] = self.add_bos_token
        config["add_eos_token"] = self.add_eos_token
        config["legacy"] = self.legacy
        for key in ("backend", "is_local", "local_files_only"):
            config.pop(key, None)
        extra = [str(tok) for tok in self._extra_special_tokens]
        if extra:
            config["additional_special_tokens"] = extra
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return files


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def is_llama_sentencepiece_dir(path: str | os.PathLike) -> bool:
    """True for a folder holding a SentencePiece `tokenizer.model` configured as a LLaMA tokenizer.

    The config decides (`tokenizer_class` LlamaTokenizer[Fast]); a folder without `tokenizer_config.json`
    counts when its model `config.json` is of the LLaMA/LLaVA-LLaMA family.
    """
    folder = Path(path)
    if not (folder / SP_MODEL_FILE).is_file():
        return False
    tok_config = _read_json(folder / TOKENIZER_CONFIG_FILE)
    if "tokenizer_class" in tok_config:
        return tok_config["tokenizer_class"] in _LLAMA_TOKENIZER_CLASSES
    return _read_json(folder / "config.json").get("model_type") in ("llama", "llava", "llava_llama")


def load_tokenizer(
    path: str | os.PathLike,
    *,
    model_max_length: int | None = None,
    padding_side: str = "right",
) -> PreTrainedTokenizerBase:
    """Load the tokenizer of a model folder the way upstream LLaVA training did.

    A SentencePiece LLaMA tokenizer (see `is_llama_sentencepiece_dir`) is loaded as
    `LlamaSentencePieceTokenizer`, reproducing 4.37's slow `LlamaTokenizer` ids; anything else goes through
    `AutoTokenizer`.

    Args:
        path: Local folder with the tokenizer files.
        model_max_length: Overrides the saved maximum length when given.
        padding_side: "right" for training (upstream), "left" for batched generation.

    Returns:
        The tokenizer.
    """
    kwargs: dict = {"padding_side": padding_side}
    if model_max_length is not None:
        kwargs["model_max_length"] = model_max_length
    if is_llama_sentencepiece_dir(path):
        return LlamaSentencePieceTokenizer.from_pretrained(str(path), **kwargs)
    return AutoTokenizer.from_pretrained(str(path), **kwargs)


def configure_pad_token(tokenizer: PreTrainedTokenizerBase, version: str) -> int:
    """Give `tokenizer` a pad token following upstream's policy; return how many tokens were added.

    - `version == "v0"`: a tokenizer without pad gets a new `[PAD]` special token (upstream's
      `smart_tokenizer_and_embedding_resize`; the caller resizes the embeddings and initialises the new rows
      with the mean of the old ones).
    - any other version: `pad = unk`, as upstream (Vicuna's design; note the collator's attention mask then
      also hides genuine `<unk>` tokens, exactly as upstream).
    - no `unk_token` (Llama-3, Qwen …), where upstream left pad None and crashed in the collator: keep an
      existing pad token that differs from EOS; else reuse a reserved padding token the vocabulary already
      has (`<|finetune_right_pad_id|>`, `<|reserved_special_token_0|>`, `<|pad|>`, `<pad>`; no resize);
      else add `<pad>` as a new special token (returns 1: the caller must resize). EOS is never reused as
      pad, because `attention_mask = input_ids != pad_id` would hide the real end-of-turn tokens the model
      must learn to emit. A warning names the choice.

    Args:
        tokenizer: Tokenizer to configure in place.
        version: Upstream `--version` value (`v0`, `v1`, `plain`, `llava_llama_2`, `mpt` …).

    Returns:
        Number of tokens added to the vocabulary (0 or 1); non-zero means "resize the embeddings".
    """
    if version == "v0":
        if tokenizer.pad_token is None:
            return tokenizer.add_special_tokens({"pad_token": "[PAD]"})
        return 0
    if tokenizer.unk_token is not None:
        tokenizer.pad_token = tokenizer.unk_token
        return 0
    if tokenizer.pad_token is not None and tokenizer.pad_token != tokenizer.eos_token:
        logger.warning("Tokenizer has no unk token: keeping its pad token %r.", tokenizer.pad_token)
        return 0
    vocab = tokenizer.get_vocab()
    for candidate in _RESERVED_PAD_CANDIDATES:
        if candidate in vocab and candidate != tokenizer.eos_token:
            tokenizer.pad_token = candidate
            logger.warning("Tokenizer has no unk token: padding with its reserved token %r.", candidate)
            return 0
    added = tokenizer.add_special_tokens({"pad_token": ADDED_PAD_TOKEN})
    logger.warning(
        "Tokenizer has no unk or reserved pad token: added %r (id %d); resize the embeddings.",
        ADDED_PAD_TOKEN,
        tokenizer.pad_token_id,
    )
    return added
