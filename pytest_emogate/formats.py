"""How numbers and answers are written for people, in one place: percentages, intervals, p-values, the invalid
answers, sparklines, and untrusted text (answers, sample names, values from user files and the run history)
shortened to one line. The check messages, the terminal, the Markdown, the plot and the error messages all use
these.

Untrusted text has one rule per medium it leaves the program in, applied by the renderer of that medium:
the terminal `one_line` (and `clip`, which also shortens it), rich markup `rich.text.Text` cells (never a
markup string), Markdown `markdown_text`, CSV `spreadsheet_cell`, matplotlib `plot_text`; the HTML page escapes
with `html.escape`.
"""

from __future__ import annotations

import re
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


def one_line(text: str) -> str:
    """Untrusted text with nothing in it that a terminal acts on, the terminal's rule: line breaks, tabs, ESC and
    every other C0 and C1 control character, bidi overrides and the other invisible format characters escaped as
    `repr` writes them (`\\x1b`, `\\r`, `\\u202e`), so no answer can move the cursor, recolour or overwrite a
    line, or reorder what follows it. Its length is kept (`clip` also shortens it)."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def clip(text: str, limit: int = CLIP_CHARS) -> str:
    """Untrusted text as one printed line of at most `limit` characters: `one_line`, and a longer text cut,
    ending in '…'."""
    flat = one_line(text[: limit + 1])
    if len(text) <= limit and len(flat) <= limit:
        return flat
    return flat[: limit - 1] + "…"


MARKDOWN_ESCAPED = re.compile(r"[\\`*\[\]!|~$#]|(?<![^\W_])_|_(?![^\W_])|://|www\.|@")
"""What Markdown would read as markup inside a line: the backslash, code spans, emphasis and strikethrough,
links and images, table cells, math, headings, and the starts of autolinks (URLs, `www.`, e-mail addresses).
An `_` between two letters or digits is no emphasis (`samplenew_00000002` stays as it is)."""
MARKDOWN_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def markdown_text(text: str) -> str:
    """Untrusted text as Markdown that renders as exactly that text, on one line, the Markdown rule: `one_line`,
    every character Markdown reads as markup backslash-escaped (a link or an image stays its text, a `|` never
    ends a table cell, `$` never starts math, a URL is no live link) and HTML's `&`, `<` and `>` as entities (no
    tag, comment or entity reaches the page). For text inside a line, a table cell or a list item."""
    escaped = MARKDOWN_ESCAPED.sub(lambda found: "www\\." if found[0] == "www." else "\\" + found[0], one_line(text))
    return "".join(MARKDOWN_ENTITIES.get(char, char) for char in escaped)


SPREADSHEET_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
"""The first characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection)."""


def spreadsheet_cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text and never evaluates, the CSV rule: a string that starts with
    `=`, `+`, `-`, `@`, a tab or a line break gets a leading `'` (OWASP's advice against CSV injection); numbers
    and other strings are written as they are."""
    if isinstance(value, str) and value.startswith(SPREADSHEET_TRIGGERS):
        return "'" + value
    return value


def csv_row(row: Sequence[object]) -> str:
    """One CSV row ending in a line feed. Python's csv module quotes a field that holds the delimiter, a quote or
    the line feed, but not a bare carriage return, which spreadsheets and other readers take for a line break (the
    row would split): a row holding one has every field quoted."""
    import csv
    import io

    buffer = io.StringIO()
    breaks = any(isinstance(value, str) and "\r" in value for value in row)
    csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL if breaks else csv.QUOTE_MINIMAL).writerow(row)
    return buffer.getvalue()


def plot_text(text: str) -> str:
    """Untrusted text for a matplotlib label or title, the plot's rule: `one_line`, with `$` escaped so that no
    part of it is read as mathtext (an unbalanced or bad formula would stop the figure from being drawn)."""
    return one_line(text).replace("$", "\\$")


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
