"""The answer contract: raw text -> label or invalid."""

from __future__ import annotations

import pytest

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
