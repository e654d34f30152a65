"""The samples behind a comparison, as text: which answers broke, which were fixed, which changed without a change
in correctness. The terminal summary and `emogate diff` print these lines; the JSON report has every sample.

A line reads `samplenew_00012345 (gold sad): 'sad' -> 'The person is worried.'`: both raw answers, each shortened to
one line (a model may answer with megabytes), then what each was read as when the label is not the answer's text.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_emogate.evaluate.compare import Comparison, Pair
from pytest_emogate.formats import LISTED_SAMPLES, clip, quoted

SHOW_DEFAULT = LISTED_SAMPLES
"""Samples listed per list unless --emogate-show says otherwise."""
ANSWER_CHARS = 60


def sample_line(pair: Pair) -> str:
    """One sample: name, gold class, the baseline's answer -> the candidate's."""
    before = quoted(pair.baseline_output, ANSWER_CHARS)
    after = quoted(pair.candidate_output, ANSWER_CHARS)
    return f"{clip(pair.name)} (gold {pair.gold}): {before} -> {after}{_read_as(pair)}"


def _read_as(pair: Pair) -> str:
    """What the answers were read as, when that is not plain from their text."""
    if (
        pair.baseline_output.strip().lower() == pair.baseline
        and pair.candidate_output.strip().lower() == pair.candidate
    ):
        return ""
    return f" (read as {pair.baseline} -> {pair.candidate})"


def listing(title: str, pairs: Sequence[Pair], show: int, where: str) -> list[str]:
    """A titled list of at most `show` samples, then how many more there are and where to find them."""
    if not pairs:
        return []
    lines = [f"{title} ({len(pairs)}):"]
    lines += [f"  {sample_line(pair)}" for pair in pairs[:show]]
    if len(pairs) > show:
        lines.append(f"  ... and {len(pairs) - show} more ({where})")
    return lines


def sample_lines(
    comparison: Comparison, show: int = SHOW_DEFAULT, where: str = "JSON report: baseline.samples"
) -> list[str]:
    """Broken, fixed and changed samples, `show` of each list (0: none listed, only the counts)."""
    changed = comparison.changed()
    lines = [
        *listing("Broken", comparison.samples("broken"), show, where),
        *listing("Fixed", comparison.samples("fixed"), show, where),
        *listing("Changed answer, right in both", changed["answer_text"], show, where),
        *listing("Changed label, wrong in both", changed["wrong_label"], show, where),
    ]
    return lines
