"""The answer contract: a model's raw answer text -> a label of the taxonomy, or invalid.

The original evaluation took the last space-separated word of the answer as its label. We keep that rule and
make it robust to case, punctuation and special-token markers, but never guess: a word outside the taxonomy
(after aliases) is invalid, and what happens to invalid answers is the thresholds file's explicit choice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

INVALID = "<invalid>"
"""The confusion-matrix column (and predicted value) of answers outside the taxonomy."""

_SPECIAL_TOKENS = re.compile(r"</?s>|<unk>", re.IGNORECASE)
_EDGE_PUNCTUATION = re.compile(r"^\W+|\W+$")


def answer_word(text: str, aliases: Mapping[str, str] | None = None) -> str:
    """Return the normalised last word of a raw answer (after aliases); "" for an empty answer.

    >>> answer_word("The emotion is Sad.</s>")
    'sad'
    """
    cleaned = _SPECIAL_TOKENS.sub(" ", text).lower()
    words = [_EDGE_PUNCTUATION.sub("", word) for word in cleaned.split()]
    words = [word for word in words if word]
    if not words:
        return ""
    word = words[-1]
    if aliases:
        word = aliases.get(word, word)
    return word


def answer_label(text: str, labels: tuple[str, ...], aliases: Mapping[str, str] | None = None) -> str | None:
    """Return the answer's label when it is in `labels`, else None (an invalid answer)."""
    word = answer_word(text, aliases)
    return word if word in labels else None
