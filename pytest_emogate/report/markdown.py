"""Pure rendering of the Markdown summary (`--emogate-markdown`, `$GITHUB_STEP_SUMMARY`): verdict, failed checks,
per-class table with intervals, floors and baseline deltas, overall metrics, the paired counts, the labelled
confusion matrix and every check's message. No pytest in here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pytest_emogate.evaluate.checks import Outcome, inconclusive
from pytest_emogate.evaluate.compare import Comparison, Delta
from pytest_emogate.evaluate.metrics import METRICS, GateResult
from pytest_emogate.evaluate.thresholds import Thresholds
from pytest_emogate.evaluate.verdict import FAILED, PASSED, Verdict
from pytest_emogate.formats import ci_range, invalid_answers, invalid_policy, p_text, pct, sparkline
from pytest_emogate.history import Run

INCONCLUSIVE = "inconclusive"
TEXT_COLUMNS = ("class", "metric", "floor check", "regression", "test", "trend", "check", "verdict", "message")
"""Left-aligned in every table (with each table's first column); numbers are right-aligned."""


@dataclass(frozen=True)
class MarkdownInput:
    """What the summary shows: the run, its checks, and optionally a baseline comparison and history runs."""

    result: GateResult
    thresholds: Thresholds
    outcomes: Sequence[Outcome]
    verdict: Verdict
    header: str
    comparison: Comparison | None = None
    baseline: str = ""
    alpha: float | None = None
    history: Sequence[Run] = ()


def escape(text: str) -> str:
    """Text safe inside a Markdown table cell: no HTML tags, no cell breaks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A GitHub table: the first column and TEXT_COLUMNS left-aligned, numbers right-aligned."""
    align = [":--" if i == 0 or column in TEXT_COLUMNS else "--:" for i, column in enumerate(header)]
    return [_row(header), _row(align), *(_row(row) for row in rows), ""]


def _status(verdict: Verdict, check_id: str, unsure: bool = False) -> str:
    status = verdict.statuses.get(check_id)
    if status is None:
        return "-"
    text = {PASSED: "pass", FAILED: "**FAIL**"}.get(status, "not run")
    return f"{text} · {INCONCLUSIVE}" if unsure else text


def _points(delta: Delta) -> str:
    return f"{100 * delta.delta:+.2f}"


def _ci_points(delta: Delta) -> str:
    return f"{100 * delta.ci95[0]:+.2f} to {100 * delta.ci95[1]:+.2f}"


def render_markdown(data: MarkdownInput) -> str:
    """The whole summary as GitHub-flavoured Markdown."""
    verdict = data.verdict
    by_id = {outcome.id: outcome for outcome in data.outcomes}
    mark = {PASSED: "✅", FAILED: "❌"}.get(verdict.status, "⚠️")
    lines = [f"## emogate: {mark} {verdict.headline()}", "", escape(data.header), ""]
    if verdict.failed:
        lines += ["**Failed checks**", ""] + [f"- `{c}`: {escape(by_id[c].message)}" for c in verdict.failed] + [""]
    if verdict.not_run:
        lines += [f"**Not run** ({len(verdict.not_run)}): " + ", ".join(f"`{c}`" for c in verdict.not_run), ""]
    lines += _class_section(data)
    lines += _overall_section(data)
    if data.comparison is not None:
        lines += _paired_section(data)
    lines += _confusion_section(data.result)
    lines += ["<details><summary>Every check</summary>", ""]
    rows = [[f"`{o.id}`", _status(verdict, o.id), escape(o.message)] for o in data.outcomes]
    lines += [*_table(["check", "verdict", "message"], rows), "</details>", ""]
    return "\n".join(lines)


def _class_section(data: MarkdownInput) -> list[str]:
    result, comparison = data.result, data.comparison
    header = ["class", "n", "correct", "recall", "95% CI", "floor", "floor check"]
    if comparison is not None:
        header += ["baseline", "Δ pts", "fixed", "broken", "p", "regression"]
    if data.history:
        header += ["trend"]
    rows, unsure_any = [], False
    for label in result.labels:
        stats = result.per_class[label]
        rule = data.thresholds.per_class.get(label)
        unsure = rule is not None and inconclusive(stats, rule.floor)
        unsure_any |= unsure
        floor = "-" if rule is None else pct(rule.floor) + (" (lower bound)" if rule.on == "lower_bound" else "")
        row = [label, str(stats.n), str(stats.correct), pct(stats.recall), ci_range(stats.recall_ci95), floor,
               _status(data.verdict, f"class_floor[{label}]", unsure)]  # fmt: skip
        if comparison is not None:
            delta = comparison.per_class[label]
            row += [pct(delta.baseline), _points(delta), str(delta.fixed), str(delta.broken), p_text(delta.p_value),
                    _status(data.verdict, f"regression[{label}]")]  # fmt: skip
        if data.history:
            row += [sparkline([run.per_class[label]["recall"] for run in data.history if label in run.per_class])]
        rows.append(row)
    lines = ["### Per-class recall", "", *_table(header, rows)]
    if unsure_any:
        lines += [f"*{INCONCLUSIVE}*: the 95% CI contains the floor, so the floor verdict rests on too few samples "
                  "to be sure either way.", ""]  # fmt: skip
    if data.history:
        lines += [f"*trend*: recall over the last {len(data.history)} runs on this data, oldest first.", ""]
    return lines


def _overall_section(data: MarkdownInput) -> list[str]:
    comparison = data.comparison
    header = ["metric", "value", "floor", "floor check"]
    if comparison is not None:
        header += ["baseline", "Δ pts", "95% CI of Δ", "p", "test", "regression"]
    rows = []
    for metric in METRICS:
        floor = data.thresholds.overall.get(metric)
        row = [metric, f"{100 * data.result.metrics[metric]:.2f}%", "-" if floor is None else f"{100 * floor:.2f}%",
               _status(data.verdict, f"overall[{metric}]")]  # fmt: skip
        if comparison is not None:
            delta = comparison.metrics[metric]
            test = "exact McNemar" if delta.test == "mcnemar" else "paired bootstrap"
            row += [f"{100 * delta.baseline:.2f}%", _points(delta), _ci_points(delta), p_text(delta.p_value), test,
                    _status(data.verdict, f"regression[{metric}]")]  # fmt: skip
        rows.append(row)
    return ["### Overall", "", *_table(header, rows)]


def _paired_section(data: MarkdownInput) -> list[str]:
    comparison = data.comparison
    assert comparison is not None
    counts = comparison.counts()
    alpha = f" < alpha {data.alpha:g}" if data.alpha is not None else " < alpha"
    return [
        f"### Against {escape(data.baseline)}",
        "",
        f"{len(comparison.pairs)} samples paired by name: **{counts['broken']} broken**, **{counts['fixed']} fixed**, "
        f"{counts['both_right']} both right, {counts['both_wrong']} both wrong. "
        f"A drop fails only when it exceeds its max drop and its one-sided p{alpha}; improvements never fail. "
        f"p-values are one-sided (small when the candidate is worse): exact McNemar on the fixed/broken pairs, "
        f"or a paired bootstrap ({comparison.reps} resamples stratified by gold label, seed {comparison.seed}), "
        "which also gives every 95% CI of Δ.",
        "",
    ]


def _confusion_section(result: GateResult) -> list[str]:
    header = ["gold \\ pred", *(escape(column) for column in result.columns), "n"]
    rows = []
    for gold in result.labels:
        row = result.confusion[gold]
        cells = [f"**{row[column]}**" if column == gold else str(row[column]) for column in result.columns]
        rows.append([gold, *cells, str(result.per_class[gold].n)])
    lines = ["### Confusion matrix (rows: gold label, columns: predicted label)", "", *_table(header, rows)]
    if result.invalid_count:
        policy = invalid_policy(result.invalid_policy)
        lines += [
            f"Invalid answers ({result.invalid_count}, {policy}): {escape(invalid_answers(result.invalid_answers))}",
            "",
        ]
    return lines
