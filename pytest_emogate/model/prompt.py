"""The original evaluation's prompt, its split around the multimodal block, and the answer text (spec §5, §6.2).

Reproduced quirks, all of which change the model's answers: two BOS tokens (the tokenizer's and the literal
`<s>`), every multimodal token at `<VideoHere>` while `<FeatureHere>` stays as literal text, the double spaces
before `[emotion]` and `[/INST]`, and the 9-label instruction of a 6-class test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

INSTRUCTION = (
    "Please determine which emotion label in the video represents: "
    "happy, sad, neutral, angry, worried, surprise, fear, contempt, doubt."
)
IMAGE_PLACE = "<VideoHere>"
USER_ROLE = "<s>[INST] "
ASSISTANT_ROLE = " [/INST]"
PAD_TOKEN = "$$"  # the original's pad string; a vocabulary piece that decoding then skips
BOS_ID = 1
EOS_ID = 2


@dataclass(frozen=True)
class PromptIds:
    """Token ids before (BOS included) and after the multimodal block."""

    before: tuple[int, ...]
    after: tuple[int, ...]


def prompt_text(sentence: str) -> str:
    """The exact prompt for one transcript sentence.

    >>> prompt_text("Hi")[:62]
    '<s>[INST] <video><VideoHere></video> <feature><FeatureHere></f'
    """
    character_line = f"The person in video says: {sentence}. "
    instruction = f"<video>{IMAGE_PLACE}</video> <feature><FeatureHere></feature> {character_line} [emotion] "
    return f"{USER_ROLE}{instruction}{INSTRUCTION} {ASSISTANT_ROLE}"


def tokenize_prompt(tokenizer: Any, sentence: str) -> PromptIds:
    """Split the prompt at `<VideoHere>` only; the part before gets BOS, the part after no special tokens.

    A transcript that itself contains `<VideoHere>` made the original fail an assertion; here the first
    occurrence (the template's) is the split point.
    """
    before, after = prompt_text(sentence).split(IMAGE_PLACE, 1)
    return PromptIds(
        before=tuple(tokenizer(before, add_special_tokens=True)["input_ids"]),
        after=tuple(tokenizer(after, add_special_tokens=False)["input_ids"]),
    )


def tokenize_prompts(tokenizer: Any, sentences: Sequence[str]) -> list[PromptIds]:
    """`tokenize_prompt` for many sentences; the part before the block is the same text for all, so it is
    tokenized once."""
    before: dict[str, tuple[int, ...]] = {}
    prompts = []
    for sentence in sentences:
        head, tail = prompt_text(sentence).split(IMAGE_PLACE, 1)
        if head not in before:
            before[head] = tuple(tokenizer(head, add_special_tokens=True)["input_ids"])
        prompts.append(PromptIds(before[head], tuple(tokenizer(tail, add_special_tokens=False)["input_ids"])))
    return prompts


def answer_text(tokenizer: Any, generated: list[int]) -> str:
    """The answer as the original decodes it: skip special tokens (BOS, EOS, UNK and the "$$" pad), keep the
    text before the first `</s>`, drop `<s>`, keep what follows the last `[/INST]`, strip."""
    # The original decodes [BOS, *answer] (generate's dummy first id); skipping drops it, but keeping it keeps
    # sentencepiece's leading-space handling identical. The other special ids are dropped here: transformers 5's
    # decode no longer skips a pad set after loading ("$$", a piece of the vocabulary), as 4.x's did.
    special = set(tokenizer.all_special_ids) - {BOS_ID}
    text = tokenizer.decode([BOS_ID, *(i for i in generated if i not in special)], skip_special_tokens=True)
    text = text.split("</s>")[0].replace("<s>", "")
    return text.split("[/INST]")[-1].strip()
