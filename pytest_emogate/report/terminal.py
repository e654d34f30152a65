"""The terminal summary, rendered as text with rich: per-class table, overall metrics, labelled confusion matrix,
invalid answers, the regression table, the history trend and the verdict. No pytest in here.

rich is imported inside the functions: the plugin module must stay cheap when the gate is off. Untrusted text
(sample names, answers, the header's paths, an error in the verdict) is printed through `formats.clip` or
`formats.one_line`, and never as rich markup.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_emogate.evaluate.checks import Outcome, floor_slack, inconclusive
from pytest_emogate.evaluate.compare import Comparison
from pytest_emogate.evaluate.metrics import METRICS, ClassStats, GateResult
from pytest_emogate.evaluate.regression import delta_of, detection_limit, family_p_values, holm_note
from pytest_emogate.evaluate.thresholds import ClassFloor, Thresholds
from pytest_emogate.evaluate.verdict import FAILED, INCOMPLETE, PASSED, Verdict
from pytest_emogate.files import display_path
from pytest_emogate.formats import (
    SPARKS,
    ci_range,
    clip,
    invalid_answers,
    invalid_policy,
    one_line,
    p_text,
    pct,
    pct2,
    sparkline,
)
from pytest_emogate.history import Run

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.measure import Measurement
    from rich.segment import Segment
    from rich.table import Table

EXAMPLE_SAMPLES = 3


VERDICT_STYLES = {PASSED: "bold green", FAILED: "bold red", INCOMPLETE: "bold yellow"}


def _console(buffer: io.StringIO, width: int, color: bool) -> Console:
    from rich.console import Console

    return Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False,
                   soft_wrap=False)  # fmt: skip


def render_verdict(verdict: Verdict, *, color: bool, width: int = 80) -> str:
    """The verdict line alone (when no result is at hand: nothing ran, and the answers would need inference)."""
    buffer = io.StringIO()
    _console(buffer, width, color).print(one_line(verdict.line()), style=VERDICT_STYLES[verdict.status],
                                         markup=False, soft_wrap=True)  # fmt: skip
    return buffer.getvalue()


def render_summary(
    result: GateResult,
    thresholds: Thresholds,
    verdict: Verdict,
    header: str,
    *,
    width: int,
    color: bool,
    quiet: bool = False,
    sections: Sequence[RenderableType] = (),
) -> str:
    """The terminal summary as text: per-class table, overall metrics, confusion matrix, invalid answers, verdict.

    `sections` (the regression table, the history trend) go after the tables, before the verdict.
    """
    buffer = io.StringIO()
    console = _console(buffer, width, color)
    for line in header.splitlines():  # the header's lines (what made the answers), each kept to one line
        console.print(one_line(line), markup=False, soft_wrap=True)
    blocks: list[RenderableType] = [_fitting(console, lambda narrow: _class_table(result, thresholds, verdict, narrow))]
    if not quiet:
        blocks += [
            _overall_table(result, thresholds, verdict),
            _fitting(console, lambda narrow: _confusion_table(result, narrow)),
        ]
    for block in (*blocks, *sections):
        console.print(block)
    if result.invalid_count:
        console.print(_invalid_line(result), markup=False, soft_wrap=True)
    console.print(one_line(verdict.line()), style=VERDICT_STYLES[verdict.status], markup=False, soft_wrap=True)
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


STAND_INS = {
    "─": "-",
    "│": "|",
    "┼": "+",
    "…": "...",
    "→": "->",
    "Δ": "d",
    **dict(zip(SPARKS, "_.-~=+*#", strict=True)),
}
"""ASCII for the summary's own characters, on a terminal whose encoding lacks them."""


def encodable(text: str, encoding: str) -> str:
    """`text` as a terminal of `encoding` can print it (ASCII, Latin-1, ...), line by line: each character it
    cannot encode becomes its ASCII stand-in (a table rule '-', '...', '->') or a backslash escape. Else pytest
    would escape the whole summary onto one line, and the verdict would no longer start a line."""

    def fits(char: str) -> bool:
        try:
            char.encode(encoding)
        except UnicodeEncodeError:
            return False
        return True

    try:
        text.encode(encoding)
    except LookupError:  # an encoding Python does not know: the stream fails on its own terms
        return text
    except UnicodeEncodeError:
        return "".join(
            char if fits(char) else STAND_INS.get(char, char.encode("ascii", "backslashreplace").decode("ascii"))
            for char in text
        )
    return text


def _fitting(console: Console, build: Callable[[bool], Table]) -> Table:
    """The full table when it fits the terminal, else its narrow form (fewer or abbreviated columns)."""
    from rich.measure import Measurement

    table = build(False)
    natural = Measurement.get(console, console.options.update(max_width=10 * console.width), table).maximum
    return table if natural <= console.width else build(True)


def _table(title: str, columns: Sequence[str], left: Sequence[str]) -> Table:
    """A compact table that fits 80 columns: no outer edge, one space between columns, no truncation."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0, 0, 1)
    )
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right", no_wrap=True)
    return table


def status_cell(verdict: Verdict, check_id: str) -> str:
    """A check's status as a rich cell: pass, FAIL, "not run" for a declared check that did not run, else "-"."""
    status = verdict.statuses.get(check_id)
    if status is None:
        return "-"
    return {PASSED: "[green]pass[/]", FAILED: "[bold red]FAIL[/]"}.get(status, "[yellow]not run[/]")


def _class_table(result: GateResult, thresholds: Thresholds, verdict: Verdict, narrow: bool) -> Table:
    columns: tuple[str, ...] = (
        "class", "n", "correct", "recall", "95% CI", "precision", "F1", "floor", "slack", "?", "status",
    )  # fmt: skip
    if narrow:
        columns = tuple(column for column in columns if column not in ("precision", "F1"))
    title = (
        "Per-class recall ('lb': the floor applies to the 95% lower bound; 'slack': answers the class may still "
        "lose before its floor fails; '?': inconclusive, the 95% CI contains the floor)"
    )
    table = _table(title, columns, ("class", "?", "status"))
    for label in result.labels:
        stats = result.per_class[label]
        rule = thresholds.per_class.get(label)
        floor = "-" if rule is None else pct(rule.floor) + (" lb" if rule.on == "lower_bound" else "")
        unsure = "[yellow]?[/]" if rule is not None and inconclusive(stats, rule.floor) else ""
        cells = {
            "class": label, "n": str(stats.n), "correct": str(stats.correct), "recall": pct(stats.recall),
            "95% CI": ci_range(stats.recall_ci95), "precision": pct(stats.precision), "F1": pct(stats.f1),
            "floor": floor, "slack": _slack_cell(stats, rule), "?": unsure,
            "status": status_cell(verdict, f"class_floor[{label}]"),
        }  # fmt: skip
        table.add_row(*(cells[column] for column in columns))
    return table


def _slack_cell(stats: ClassStats, rule: ClassFloor | None) -> str:
    if rule is None:
        return "-"
    slack = floor_slack(stats, rule)
    return "never" if slack is None else f"{slack:+d}" if slack else "0"


def _overall_table(result: GateResult, thresholds: Thresholds, verdict: Verdict) -> Table:
    table = _table("Overall", ("metric", "value", "floor", "status"), left=("metric", "status"))
    for metric in METRICS:
        floor = thresholds.overall.get(metric)
        table.add_row(
            metric, f"{100 * result.metrics[metric]:.2f}%", "-" if floor is None else f"{100 * floor:.2f}%",
            status_cell(verdict, f"overall[{metric}]"),
        )  # fmt: skip
    return table


def _confusion_table(result: GateResult, narrow: bool) -> Table:
    headers = [column[:4] if narrow else column for column in result.columns]
    columns = ("gold \\ pred", *headers, "n")
    title = "Confusion matrix (rows: gold label, columns: predicted label" + (", first 4 letters)" if narrow else ")")
    table = _table(title, columns, left=(columns[0],))
    for gold in result.labels:
        row = result.confusion[gold]
        cells = [f"[bold]{row[c]}[/]" if c == gold else str(row[c]) if row[c] else "[dim]0[/]" for c in result.columns]
        table.add_row(gold, *cells, str(result.per_class[gold].n))
    return table


def _invalid_line(result: GateResult) -> str:
    examples = ", ".join(f"{clip(s.name)} (gold {s.gold})" for s in result.invalid_samples[:EXAMPLE_SAMPLES])
    return (
        f"Invalid answers ({result.invalid_count}, {invalid_policy(result.invalid_policy)}): "
        f"{invalid_answers(result.invalid_answers)}; e.g. {examples}"
    )


def regression_table(
    comparison: Comparison, outcomes: Sequence[Outcome], verdict: Verdict, thresholds: Thresholds
) -> RenderableType:
    """The terminal summary's regression block: one row per regression check (baseline, now, delta and margin, the
    max drop, in points), and the smallest drop each exact-test check can fail at ("can fail at": a smaller drop
    always passes)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from pytest_emogate.report.terminal import status_cell

    counts = comparison.counts()
    title = (
        f"Regression vs baseline: {counts['fixed']} fixed, {counts['broken']} broken, "
        f"{counts['both_right']} both right, {counts['both_wrong']} both wrong"
    )
    holm = thresholds.regression is not None and thresholds.regression.correction == "holm"
    used_p = family_p_values(thresholds, comparison)
    # one space between columns (the box's own), so ten columns fit 80 characters
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0, 0, 0))
    p_column = "p (holm)" if holm else "p"
    for column in ("check", "base", "now", "delta", "margin", "can fail at", "fixed", "broken", p_column, "status"):
        table.add_column(column, justify="left" if column in ("check", "status") else "right", no_wrap=True)
    for outcome in outcomes:
        if not outcome.id.startswith("regression["):
            continue
        key = outcome.id[len("regression[") : -1]
        delta = delta_of(comparison, key)
        table.add_row(
            key, pct2(delta.baseline), pct2(delta.candidate), f"{100 * delta.delta:+.2f}",
            f"{-100 * outcome.limit:.2f}", _can_fail_at(detection_limit(thresholds, comparison, key), delta.test),
            "-" if delta.fixed is None else str(delta.fixed), "-" if delta.broken is None else str(delta.broken),
            p_text(used_p[key]), status_cell(verdict, outcome.id),
        )  # fmt: skip
    # a table's own title would wrap to the table's width
    note = [Text(holm_note(thresholds, "the raw p is in the JSON report"))] if holm else []
    return Trimmed(Group(Text(title), table, *note))


class Trimmed:
    """A renderable printed without the trailing spaces of its lines (a table pads its last column to the
    column's width): `emogate diff` output stays clean in a log or a file."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        from rich.segment import Segment

        for line in console.render_lines(self.renderable, options, pad=False):
            while line and not line[-1].control and not line[-1].text.rstrip(" "):
                line.pop()
            if line and not line[-1].control:
                last = line.pop()
                line.append(Segment(last.text.rstrip(" "), last.style, last.control))
            yield from line
            yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        from rich.measure import Measurement

        return Measurement.get(console, options, self.renderable)


def _can_fail_at(drop: float | None, test: str) -> str:
    """A check's smallest failing drop in points: '-' for a bootstrap-tested metric, 'never' when none can fail it."""
    if test != "mcnemar":
        return "-"
    return "never" if drop is None else f"{100 * drop:.2f}"


def trend_table(runs: Sequence[Run], labels: Sequence[str], path: Path) -> RenderableType:
    """The summary's trend block: each class's recall over the given runs, as a sparkline, first and last."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    title = f"Per-class recall, last {len(runs)} runs on this data ({display_path(path)})"
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0, 0, 1))
    for column in ("class", "trend", "first", "last"):
        table.add_column(column, justify="right" if column in ("first", "last") else "left", no_wrap=True)
    for label in labels:
        values = [run.per_class[label]["recall"] for run in runs if label in run.per_class]
        if values:
            table.add_row(label, sparkline(values), pct(values[0]), pct(values[-1]))
    return Group(Text(title), table)  # a table's own title would wrap to the narrow table's width
