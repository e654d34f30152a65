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
_SPACE = re.compile(r"\s")
_TAIL = 256
"""The characters of an answer's end read first: the last word is looked for in the answer's tail, never in
a copy (or a list of every word) of a long answer."""
_LONGEST_TAIL = 1 << 16
"""The most characters a tail grows to when it holds no word (a word longer than a tail is always read whole)."""


def answer_word(text: str, aliases: Mapping[str, str] | None = None) -> str:
    """Return the normalised last word of a raw answer (after aliases); "" for an empty answer.

    >>> answer_word("The emotion is Sad.</s>")
    'sad'

    The answer is read from its end, a tail at a time, each tail cut at a whitespace character: special tokens,
    words and the case of a final sigma never span whitespace, so a tail's last word is the answer's.
    """
    word, end, size = "", len(text), _TAIL
    while end and not word:
        start = max(0, end - size)
        tail = text[start:end]
        if start:
            space = _SPACE.search(tail)
            if space is None:  # a word longer than the tail: read further back
                size *= 2
                continue
            tail, end = tail[space.end() :], start + space.start()
        else:
            end = 0
        word = _last_word(tail)
        size = min(2 * size, _LONGEST_TAIL)
    if word and aliases:
        word = aliases.get(word, word)
    return word


def _last_word(text: str) -> str:
    """The last word of text, lower-cased, that is not empty once special tokens and its edge punctuation are
    dropped; "" when none is."""
    for word in reversed(_SPECIAL_TOKENS.sub(" ", text).lower().split()):
        if stripped := _EDGE_PUNCTUATION.sub("", word):
            return stripped
    return ""


def answer_label(text: str, labels: tuple[str, ...], aliases: Mapping[str, str] | None = None) -> str | None:
    """Return the answer's label when it is in `labels`, else None (an invalid answer)."""
    word = answer_word(text, aliases)
    return word if word in labels else None
