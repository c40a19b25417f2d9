"""The world's plain-text corpus: what the base LM is pre-trained on (and QSLAW warms up on).

It holds captions (several per scene, so the LM learns how the world is described and that a description
repeats what came before it), general facts, text-only dialogues framed like Vicuna's
``USER: … ASSISTANT: …</s>`` prompts, and reading-comprehension dialogues: a caption in the user turn,
then LLaVA's short-answer questions about it. These teach the LM to look an attribute up in its context
and answer in one word, which it must later do with image tokens in place of the caption. An answer is
always stated in its context: nothing in the corpus lets a model answer a question about an image it
does not see.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from llava.conversation import conv_templates
from llava.toy.language import (
    BRIEF_INSTRUCTIONS,
    CATEGORIES,
    COUNT_WORDS,
    answer_word,
    capitalize,
    caption,
    fact,
    question,
    text_only_turns,
)
from llava.toy.scenes import Scene, sample_scenes

# Documents are separated by one empty line in the corpus file (a document may span several lines).
DOCUMENT_SEPARATOR = "\n\n"
EOS_TEXT = "</s>"


def vicuna_dialogue(turns: Iterable[tuple[str, str]]) -> str:
    """Render (user, assistant) turns with the ``vicuna_v1`` template, as LLaVA's ``v1`` training does."""
    conv = conv_templates["vicuna_v1"].copy()
    for user, assistant in turns:
        conv.append_message(conv.roles[0], user)
        conv.append_message(conv.roles[1], assistant)
    return conv.get_prompt()


def keyword_soup(scene: Scene, rng: np.random.Generator) -> str:
    """The scene's attribute words, each 1-3 times, in random order (``"red left circle red three"``).

    A description with no word order: the LM learns to pick attributes out of a bag of context tokens
    wherever they are, which is what reading a bag of image tokens needs (text-order copying does not
    transfer to image patches).
    """
    words = [scene.color, scene.shape, scene.position, COUNT_WORDS[scene.count]]
    bag = [word for word in words for _ in range(int(rng.integers(1, 4)))]
    return " ".join(bag[i] for i in rng.permutation(len(bag)))


def _description(scene: Scene, rng: np.random.Generator) -> str:
    return keyword_soup(scene, rng) if rng.random() < 0.5 else capitalize(caption(scene, rng))


def reading_turns(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    """A caption of ``scene`` in the first user turn, then 1-4 questions about it (one per attribute)."""
    n_questions = int(rng.integers(1, len(CATEGORIES) + 1))
    turns = []
    for category in (CATEGORIES[i] for i in rng.permutation(len(CATEGORIES))[:n_questions]):
        if rng.random() < 0.1:
            instruction = BRIEF_INSTRUCTIONS[int(rng.integers(len(BRIEF_INSTRUCTIONS)))]
            turns.append((instruction, capitalize(caption(scene, rng))))
        else:
            turns.append((question(category, rng), answer_word(scene, category)))
    first_user, first_answer = turns[0]
    turns[0] = (f"{_description(scene, rng)}\n{first_user}", first_answer)
    return turns


def build_documents(rng: np.random.Generator, n_captions: int, n_dialogues: int, n_reading: int) -> list[str]:
    """Sample the corpus documents.

    Args:
        rng: numpy Generator (the corpus is a pure function of its state).
        n_captions: number of caption documents (each 2-4 captions of one random scene).
        n_dialogues: number of general text-only documents (Vicuna-framed dialogues or prose facts).
        n_reading: number of Vicuna-framed reading-comprehension dialogues.

    Returns:
        The documents, shuffled.
    """
    documents = []
    scenes = sample_scenes(rng, n_captions + n_reading)
    for scene in scenes[:n_captions]:
        # Several captions of one scene, like COCO's five per image: the LM learns that a description
        # repeats what came before it, the skill LLaVA's projector pretraining relies on (the image
        # tokens take the place of the first caption). Both cases: LCS-style captions are lower-case.
        texts = [caption(scene, rng) for _ in range(int(rng.integers(1, 4)))]
        texts = [text if rng.random() < 0.5 else capitalize(text) for text in texts]
        documents.append(
            keyword_soup(scene, rng) + "\n" + " ".join(texts) if rng.random() < 0.5 else " ".join(texts)
        )
    for _ in range(n_dialogues):
        n_turns = int(rng.integers(1, 4))
        if rng.random() < 0.5:
            documents.append(vicuna_dialogue(text_only_turns(rng, n_turns)))
        else:
            # Facts as plain prose too, so the LM sees the world's words outside the chat frame.
            documents.append(" ".join(fact(rng)[1] for _ in range(n_turns)))
    for scene in scenes[n_captions:]:
        documents.append(vicuna_dialogue(reading_turns(scene, rng)))
    order = rng.permutation(len(documents))
    return [documents[i] for i in order]
