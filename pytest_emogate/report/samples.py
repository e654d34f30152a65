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
FEWEST_CELLS = 6
"""The fewest cells a quoted answer takes in a line fitted to a narrow terminal (`'abc…'`); a line that does not
fit even so is cut at the end."""
READABLE_CELLS = 16
"""The fewest cells an answer keeps in a one-line sample; below that the sample takes two lines."""
INDENT = "  "


def sample_line(pair: Pair, width: int | None = None) -> str:
    """One sample on one line: name, gold class, the baseline's answer -> the candidate's; with `width`, at most
    that many terminal cells (the answers shortened first, then the line cut)."""
    read_as = _read_as(pair)
    head = f"{clip(pair.name)} (gold {pair.gold}): "
    before, after = quoted(pair.baseline_output, ANSWER_CHARS), quoted(pair.candidate_output, ANSWER_CHARS)
    line = f"{head}{before} -> {after}{read_as}"
    if width is None:
        return line
    return _fitted(head, pair, read_as, width)


def sample_rows(pair: Pair, width: int | None = None) -> list[str]:
    """One sample as the summary prints it: one line when it fits `width` with both answers readable (at least
    READABLE_CELLS each, or whole), else two: the name with what the answers were read as, then the answers
    indented below, so that nothing wraps in a CI log and a short answer is never cut to a stub."""
    line = sample_line(pair, width)
    if width is None or not _cramped(pair, width):
        return [line]
    from rich.cells import cell_len, set_cell_size

    first = f"{clip(pair.name)} (gold {pair.gold}): read as {pair.baseline} -> {pair.candidate}"
    if cell_len(first) > width:
        first = set_cell_size(first, width - 1) + "…"
    return [first, INDENT + _fitted("", pair, "", width - len(INDENT))]


def _cramped(pair: Pair, width: int) -> bool:
    """Whether the one-line form would cut an answer shorter than READABLE_CELLS (or than itself, if shorter)."""
    from rich.cells import cell_len

    head = f"{clip(pair.name)} (gold {pair.gold}): "
    room = width - cell_len(f"{head} -> {_read_as(pair)}")
    before = cell_len(quoted(pair.baseline_output, ANSWER_CHARS))
    after = cell_len(quoted(pair.candidate_output, ANSWER_CHARS))
    if before + after <= room:
        return False
    need = min(before, READABLE_CELLS) + min(after, READABLE_CELLS)
    return room < need


def _fitted(head: str, pair: Pair, read_as: str, width: int) -> str:
    """`head`, both quoted answers and `read_as` within `width` cells: the answers shortened first (each keeps
    at least FEWEST_CELLS), then the line cut at its end."""
    from rich.cells import cell_len, set_cell_size

    before, after = quoted(pair.baseline_output, ANSWER_CHARS), quoted(pair.candidate_output, ANSWER_CHARS)
    line = f"{head}{before} -> {after}{read_as}"
    if cell_len(line) <= width:
        return line
    room = width - cell_len(f"{head} -> {read_as}")  # for both quoted answers
    wide_before, wide_after = cell_len(before), cell_len(after)
    keep_before = wide_before if wide_before <= room // 2 else max(room // 2, FEWEST_CELLS)
    keep_after = max(room - keep_before, FEWEST_CELLS)
    if keep_before < wide_before:
        before = _quoted_within(pair.baseline_output, keep_before)
    if keep_after < wide_after:
        after = _quoted_within(pair.candidate_output, keep_after)
    line = f"{head}{before} -> {after}{read_as}"
    return line if cell_len(line) <= width else set_cell_size(line, width - 1) + "…"


def _quoted_within(text: str, cells: int) -> str:
    """`quoted(text)` within `cells` terminal cells where it can be (a wide character takes two)."""
    from rich.cells import cell_len

    limit = max(cells - 2, 1)  # quoted() adds the two quotes
    shown = quoted(text, limit)
    while cell_len(shown) > cells and limit > 1:
        limit -= max(1, (cell_len(shown) - cells) // 2)
        shown = quoted(text, limit)
    return shown


def _read_as(pair: Pair) -> str:
    """What the answers were read as, when that is not plain from their text."""
    if (
        pair.baseline_output.strip().lower() == pair.baseline
        and pair.candidate_output.strip().lower() == pair.candidate
    ):
        return ""
    return f" (read as {pair.baseline} -> {pair.candidate})"


def listing(title: str, pairs: Sequence[Pair], show: int, where: str, width: int | None = None) -> list[str]:
    """A titled list of at most `show` samples (each line within `width` cells when given), then how many more
    there are and where to find them."""
    if not pairs:
        return []
    inner = None if width is None else max(width - len(INDENT), 1)
    lines = [f"{title} ({len(pairs)}):"]
    lines += [f"{INDENT}{row}" for pair in pairs[:show] for row in sample_rows(pair, inner)]
    if len(pairs) > show:
        lines.append(f"{INDENT}... and {len(pairs) - show} more ({where})")
    return lines


def sample_lines(
    comparison: Comparison,
    show: int = SHOW_DEFAULT,
    where: str = "JSON report: baseline.samples",
    width: int | None = None,
) -> list[str]:
    """Broken, fixed and changed samples, `show` of each list, each line within `width` terminal cells when
    given; with `show` 0 one line of the counts, saying the samples are not listed and where they are."""
    changed = comparison.changed()
    lists = [("Broken", comparison.samples("broken")), ("Fixed", comparison.samples("fixed")),
             ("Changed answer, right in both", changed["answer_text"]),
             ("Changed label, wrong in both", changed["wrong_label"])]  # fmt: skip
    if show == 0:
        counts = [f"{title} ({len(pairs)})" for title, pairs in lists if pairs]
        return [f"{'; '.join(counts)}: samples not listed (show is 0; {where})"] if counts else []
    return [line for title, pairs in lists for line in listing(title, pairs, show, where, width)]
