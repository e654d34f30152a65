"""How numbers and answers are written for people, in one place: percentages, intervals, p-values, the invalid
answers, sparklines, and untrusted text (answers, sample names, values from user files) shortened to one line.
The check messages, the terminal, the Markdown, the plot and the error messages all use these."""

from __future__ import annotations

import reprlib
from collections.abc import Mapping, Sequence

SPARKS = "▁▂▃▄▅▆▇█"
CLIP_CHARS = 80
"""The most characters a piece of untrusted text takes when printed: a model may answer with megabytes."""
LISTED_SAMPLES = 10
"""The samples a listing shows by default (broken, fixed, changed: --emogate-show N)."""
LISTED_ANSWERS = 10
"""The most distinct invalid answers one line lists; the rest are counted."""


def pct(value: float) -> str:
    """A fraction as a percentage with one decimal: 0.4286 -> '42.9%'."""
    return f"{100 * value:.1f}%"


def pct2(value: float) -> str:
    """A fraction as a percentage with two decimals: 0.90647 -> '90.65%'."""
    return f"{100 * value:.2f}%"


def ci_range(bounds: tuple[float, float]) -> str:
    """An interval as '16.3-61.2%'."""
    return f"{100 * bounds[0]:.1f}-{100 * bounds[1]:.1f}%"


def interval(bounds: tuple[float, float]) -> str:
    """A Wilson interval as '95% CI 16.3-61.2%'."""
    return f"95% CI {ci_range(bounds)}"


def p_text(p: float) -> str:
    """A p-value with four decimals, or in scientific notation below 0.0001."""
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def cut(text: str, limit: int) -> str:
    """`text` at most `limit` characters long, a longer one cut and ending in '…' (its characters as they are)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip(text: str, limit: int = CLIP_CHARS) -> str:
    """Untrusted text as one printed line of at most `limit` characters: line breaks, tabs and other unprintable
    characters escaped as `repr` writes them, and a longer text cut, ending in '…'."""
    flat = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text[: limit + 1])
    if len(text) <= limit and len(flat) <= limit:
        return flat
    return flat[: limit - 1] + "…"


def quoted(value: object, limit: int = CLIP_CHARS) -> str:
    """`repr` of an untrusted value, on one line and cut to about `limit` characters ('…' marks a cut): what an
    error message shows of a value it quotes."""
    if not isinstance(value, str):
        return clip(reprlib.repr(value), limit)
    text = repr(value[:limit])
    if len(value) <= limit and len(text) <= limit + 2:
        return text
    return text[0] + text[1:-1][: limit - 1] + "…" + text[-1]


def invalid_answers(answers: Mapping[str, int]) -> str:
    """The invalid answer words with their counts, each shortened, the first ten: "'doubt' x1, '(empty)' x2"."""
    shown = [f"{quoted(word) if word else repr('(empty)')} x{times}" for word, times in answers.items()]
    more = len(shown) - LISTED_ANSWERS
    return ", ".join(shown[:LISTED_ANSWERS]) + (f", and {more} more" if more > 0 else "")


def invalid_policy(policy: str) -> str:
    """What the thresholds do with invalid answers: 'counted as wrong' or "mapped to 'neutral'"."""
    return "counted as wrong" if policy == "wrong" else f"mapped to {policy!r}"


def sparkline(values: Sequence[float]) -> str:
    """One bar per value, scaled between the values' own min and max (flat when they are all equal)."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high - low < 1e-12:
        return SPARKS[3] * len(values)
    return "".join(SPARKS[round((value - low) / (high - low) * (len(SPARKS) - 1))] for value in values)
