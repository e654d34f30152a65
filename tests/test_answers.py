"""The answer contract: raw text -> label or invalid."""

from __future__ import annotations

import random
import re
import sys
import tracemalloc

import pytest

from pytest_emogate import answers
from pytest_emogate.answers import answer_label, answer_word

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")


@pytest.mark.parametrize(
    ("text", "word", "label"),
    [
        ("sad", "sad", "sad"),
        ("Sad", "sad", "sad"),
        ("SAD.", "sad", "sad"),
        ("  happy  ", "happy", "happy"),
        ("happy</s>", "happy", "happy"),
        ("<s> angry </s>", "angry", "angry"),
        ("<unk>worried", "worried", "worried"),
        ("The emotion is surprise!", "surprise", "surprise"),
        ("I think it is 'neutral'.", "neutral", "neutral"),
        ("happy, or maybe sad", "sad", "sad"),
        ("sad happy", "happy", "happy"),
        ("doubt", "doubt", None),
        ("fear", "fear", None),
        ("contempt.", "contempt", None),
        ("", "", None),
        ("   ", "", None),
        ("</s>", "", None),
        ("...", "", None),
        ("i cannot tell.", "tell", None),
        ("sadness", "sadness", None),
        ("happy/sad", "happy/sad", None),
    ],
)
def test_answer_contract(text: str, word: str, label: str | None) -> None:
    assert answer_word(text) == word
    assert answer_label(text, LABELS) == label


@pytest.mark.parametrize(
    ("text", "label"),
    [("surprised", "surprise"), ("Surprised!", "surprise"), ("sadness", "sad"), ("joy", None)],
)
def test_aliases_apply_to_the_normalised_last_word(text: str, label: str | None) -> None:
    aliases = {"surprised": "surprise", "sadness": "sad"}
    assert answer_label(text, LABELS, aliases) == label


def first_answer_word(text: str, aliases: dict[str, str] | None = None) -> str:
    """The contract as first written, over the whole text at once: the oracle of the tail-first reading."""
    cleaned = re.sub(r"</?s>|<unk>", " ", text, flags=re.IGNORECASE).lower()
    words = [re.sub(r"^\W+|\W+$", "", word) for word in cleaned.split()]
    words = [word for word in words if word]
    if not words:
        return ""
    return aliases.get(words[-1], words[-1]) if aliases else words[-1]


PIECES = [
    *LABELS, "Sad", "SAD.", "</s>", "<S>", "</ſ>", "<UNK>", "<unK>", "<", "/", ">", "s", "unk", "'", "...", "_",
    " ", "  ", "\t", "\n", "\r\n", "\x1c", "\x85", "\xa0", "\u2028", "\u3000", "ΑΣ", "Σ", "σ", "İ", "\u0307", "é",
    "e\u0301", "ß", "ﬁ", "٣", "²", "x" * 40, "!" * 30, "a-b", "happy/sad", "🙂", "\ud800",
]  # fmt: skip


@pytest.mark.parametrize("tail", [3, 8, 256])
def test_the_last_word_read_from_the_end_is_the_whole_texts(monkeypatch: pytest.MonkeyPatch, tail: int) -> None:
    """answer_word reads tails of the answer cut at whitespace; on random texts of the pieces that make cutting
    hard (special tokens of any case, Unicode spaces, a final sigma, characters that lower-case to two, words
    longer than a tail) it gives what reading the whole text gives."""
    monkeypatch.setattr(answers, "_TAIL", tail)
    monkeypatch.setattr(answers, "_LONGEST_TAIL", 4 * tail)
    rng = random.Random(tail)
    aliases = {"sadness": "sad", "σ": "sad"}
    for _ in range(3000):
        text = "".join(rng.choices(PIECES, k=rng.randrange(0, 60)))
        assert answer_word(text) == first_answer_word(text), repr(text)
        assert answer_word(text, aliases) == first_answer_word(text, aliases), repr(text)


def test_the_tails_are_cut_where_the_whole_text_splits() -> None:
    """The tails are cut at regex whitespace (`\\s`), which must be exactly what str.split() splits at, and
    lower-casing must neither make nor unmake whitespace: over every code point."""
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    spaces = {character for character in every if character.isspace()}
    assert set(re.findall(r"\s", every)) == spaces
    assert all(("a" + space + "b").split() == ["a", "b"] for space in spaces)
    assert sum(map(str.isspace, "".join(map(str.lower, every)))) == len(spaces)
    assert all(space.lower() == space for space in spaces)


def test_a_long_answer_is_read_from_its_end_without_a_copy_of_every_word() -> None:
    """A 20 MB answer of words: its last word is found without a list of every word (several times the text)."""
    text = "well I think the person in this video looks rather " * 400_000 + "Sad.</s>"
    answer_word("warm up")
    tracemalloc.start()
    try:
        word = answer_word(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert word == "sad"
    assert peak < len(text) // 10
