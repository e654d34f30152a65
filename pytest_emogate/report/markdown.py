"""Pure rendering of the Markdown summary (`--emogate-markdown`, `$GITHUB_STEP_SUMMARY`): verdict, failed checks,
per-class table with intervals, floors and baseline deltas, overall metrics, the paired counts, the labelled
confusion matrix and every check's message. No pytest in here.

Every text that is not the summary's own (answers, sample names, messages that quote them, paths, the baseline's
description) goes through `formats.markdown_text`: a name like `[x](https://...)` or `![x](...)` shows as that
text in the step summary, never as a live link or an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pytest_emogate.evaluate.checks import Outcome, floor_slack, inconclusive
from pytest_emogate.evaluate.compare import Comparison, Delta, Pair
from pytest_emogate.evaluate.metrics import METRICS, GateResult
from pytest_emogate.evaluate.regression import delta_of, detection_limit, family_p_values, holm_note, regression_ids
from pytest_emogate.evaluate.thresholds import Thresholds
from pytest_emogate.evaluate.verdict import FAILED, PASSED, Verdict
from pytest_emogate.formats import (
    ci_range,
    clip,
    invalid_answers,
    invalid_policy,
    markdown_text,
    p_text,
    pct,
    sparkline,
)
from pytest_emogate.history import Run

INCONCLUSIVE = "inconclusive"
MAX_BYTES = 1_000_000
"""The most bytes a summary takes: GitHub drops a step summary over 1 MiB (1,048,576 bytes)."""
NOTE_BYTES = 400
"""Room kept for the note that counts the samples left out."""
ANSWER_CHARS = 120
"""The most characters of an answer a sample row shows."""
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
    probe: str = ""
    """The consistency probe's line (`probe: 24/24 answers equal at batch size 1`), when it ran."""


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


def _slack(slack: int | None) -> str:
    return "never" if slack is None else f"{slack:+d}" if slack else "0"


def _can_fail_at(data: MarkdownInput, key: str) -> str:
    """The smallest drop (points) that could fail the key's regression check; '-' when none is declared or the
    test is the bootstrap, 'never' when no drop can fail it."""
    assert data.comparison is not None
    if key not in regression_ids(data.thresholds) or delta_of(data.comparison, key).test != "mcnemar":
        return "-"
    drop = detection_limit(data.thresholds, data.comparison, key)
    return "never" if drop is None else f"{100 * drop:.2f}"


def _holm(data: MarkdownInput) -> bool:
    policy = data.thresholds.regression
    return policy is not None and policy.correction == "holm"


def _holm_p(data: MarkdownInput, key: str) -> list[str]:
    """The 'p (holm)' cell of a row under Holm (the adjusted p of a declared check, else '-'); no cell without."""
    if not _holm(data):
        return []
    assert data.comparison is not None
    used = family_p_values(data.thresholds, data.comparison)
    return [p_text(used[key]) if key in used else "-"]


def _points(delta: Delta) -> str:
    return f"{100 * delta.delta:+.2f}"


def _ci_points(delta: Delta) -> str:
    return f"{100 * delta.ci95[0]:+.2f} to {100 * delta.ci95[1]:+.2f}"


def render_markdown(data: MarkdownInput) -> str:
    """The whole summary as GitHub-flavoured Markdown."""
    verdict = data.verdict
    by_id = {outcome.id: outcome for outcome in data.outcomes}
    mark = {PASSED: "✅", FAILED: "❌"}.get(verdict.status, "⚠️")
    lines = [
        f"## emogate: {mark} {verdict.headline()}",
        "",
        *(markdown_text(line) for line in data.header.splitlines()),
        "",
    ]
    if data.probe:
        lines += [markdown_text(data.probe), ""]
    if verdict.failed:
        failed = [f"- `{check}`: {markdown_text(by_id[check].message)}" for check in verdict.failed]
        lines += ["**Failed checks**", "", *failed, ""]
    if verdict.not_run:
        lines += [f"**Not run** ({len(verdict.not_run)}): " + ", ".join(f"`{c}`" for c in verdict.not_run), ""]
    lines += _class_section(data)
    lines += _overall_section(data)
    if data.comparison is not None:
        lines += _paired_section(data)
    lines += _confusion_section(data.result)
    lines += ["<details><summary>Every check</summary>", ""]
    rows = [[f"`{o.id}`", _status(verdict, o.id), markdown_text(o.message)] for o in data.outcomes]
    lines += [*_table(["check", "verdict", "message"], rows), "</details>", ""]
    text = "\n".join(lines)
    if data.comparison is None:
        return text
    budget = MAX_BYTES - len(text.encode("utf-8")) - 1
    return text + "\n" + "\n".join(_sample_sections(data.comparison, budget))


def _sample_sections(comparison: Comparison, budget: int) -> list[str]:
    """The broken, fixed and changed samples in `<details>` blocks, within `budget` bytes: the rest is counted
    in a note (GitHub drops a step summary over 1 MiB)."""
    changed = comparison.changed()
    lists = [("Broken", comparison.samples("broken")), ("Fixed", comparison.samples("fixed")),
             ("Changed answer, right in both", changed["answer_text"]),
             ("Changed label, wrong in both", changed["wrong_label"])]  # fmt: skip
    header = _table(["sample", "gold", "baseline answer", "candidate answer", "read as"], [])[:2]
    left = budget - NOTE_BYTES
    lines: list[str] = []
    left_out = 0
    for title, pairs in lists:
        if not pairs:
            continue
        block = [f"<details><summary>{title} ({len(pairs)})</summary>", "", *header]
        ending = ["", "</details>", ""]
        cost = _bytes(block) + _bytes(ending)
        rows = []
        for pair in pairs:
            row = _sample_row(pair)
            if cost + len(row.encode("utf-8")) + 1 > left:
                break
            rows.append(row)
            cost += len(row.encode("utf-8")) + 1
        left_out += len(pairs) - len(rows)
        if rows:
            lines += [*block, *rows, *ending]
            left -= cost
    if left_out:
        lines += [
            f"*{left_out} more samples are not listed here: the summary stays under {MAX_BYTES:,} bytes (GitHub "
            "drops a larger step summary); the JSON report's `baseline.samples` lists them all.*",
            "",
        ]
    return lines


def _sample_row(pair: Pair) -> str:
    answers = [clip(output, ANSWER_CHARS) for output in (pair.baseline_output, pair.candidate_output)]
    cells = [clip(pair.name), pair.gold, *answers, f"{pair.baseline} → {pair.candidate}"]
    return _row([markdown_text(cell) for cell in cells])


def _bytes(lines: Sequence[str]) -> int:
    return sum(len(line.encode("utf-8")) + 1 for line in lines)


def _class_section(data: MarkdownInput) -> list[str]:
    result, comparison = data.result, data.comparison
    header = ["class", "n", "correct", "recall", "95% CI", "floor", "slack", "floor check"]
    if comparison is not None:
        header += ["baseline", "Δ pts", "fixed", "broken", "p", *(["p (holm)"] if _holm(data) else []),
                   "can fail at", "regression"]  # fmt: skip
    if data.history:
        header += ["trend"]
    rows, unsure_any = [], False
    for label in result.labels:
        stats = result.per_class[label]
        rule = data.thresholds.per_class.get(label)
        unsure = rule is not None and inconclusive(stats, rule.floor)
        unsure_any |= unsure
        floor = "-" if rule is None else pct(rule.floor) + (" (lower bound)" if rule.on == "lower_bound" else "")
        slack = "-" if rule is None else _slack(floor_slack(stats, rule))
        row = [label, str(stats.n), str(stats.correct), pct(stats.recall), ci_range(stats.recall_ci95), floor, slack,
               _status(data.verdict, f"class_floor[{label}]", unsure)]  # fmt: skip
        if comparison is not None:
            delta = comparison.per_class[label]
            row += [pct(delta.baseline), _points(delta), str(delta.fixed), str(delta.broken), p_text(delta.p_value),
                    *_holm_p(data, label), _can_fail_at(data, label),
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
        header += ["baseline", "Δ pts", "95% CI of Δ", "p", *(["p (holm)"] if _holm(data) else []), "test",
                   "can fail at", "regression"]  # fmt: skip
    rows = []
    for metric in METRICS:
        floor = data.thresholds.overall.get(metric)
        row = [metric, f"{100 * data.result.metrics[metric]:.2f}%", "-" if floor is None else f"{100 * floor:.2f}%",
               _status(data.verdict, f"overall[{metric}]")]  # fmt: skip
        if comparison is not None:
            delta = comparison.metrics[metric]
            test = "exact McNemar" if delta.test == "mcnemar" else "paired bootstrap"
            row += [f"{100 * delta.baseline:.2f}%", _points(delta), _ci_points(delta), p_text(delta.p_value),
                    *_holm_p(data, metric), test, _can_fail_at(data, metric),
                    _status(data.verdict, f"regression[{metric}]")]  # fmt: skip
        rows.append(row)
    return ["### Overall", "", *_table(header, rows)]


def _paired_section(data: MarkdownInput) -> list[str]:
    comparison = data.comparison
    assert comparison is not None
    counts = comparison.counts()
    alpha = f" < alpha {data.alpha:g}" if data.alpha is not None else " < alpha"
    return [
        f"### Against {markdown_text(data.baseline)}",
        "",
        f"{len(comparison.pairs)} samples paired by name: **{counts['broken']} broken**, **{counts['fixed']} fixed**, "
        f"{counts['both_right']} both right, {counts['both_wrong']} both wrong. "
        f"A drop fails only when it exceeds its max drop and its one-sided p{alpha}; improvements never fail. "
        f"p-values are one-sided (small when the candidate is worse): exact McNemar on the fixed/broken pairs, "
        f"or a paired bootstrap ({comparison.reps} resamples stratified by gold label, seed {comparison.seed}), "
        "which also gives every 95% CI of Δ.",
        "",
        *([markdown_text(holm_note(data.thresholds, "p is the raw one-sided p")), ""] if _holm(data) else []),
    ]


def _confusion_section(result: GateResult) -> list[str]:
    header = ["gold \\ pred", *(markdown_text(column) for column in result.columns), "n"]
    rows = []
    for gold in result.labels:
        row = result.confusion[gold]
        cells = [f"**{row[column]}**" if column == gold else str(row[column]) for column in result.columns]
        rows.append([gold, *cells, str(result.per_class[gold].n)])
    lines = ["### Confusion matrix (rows: gold label, columns: predicted label)", "", *_table(header, rows)]
    if result.invalid_count:
        policy = invalid_policy(result.invalid_policy)
        answers = markdown_text(invalid_answers(result.invalid_answers))
        lines += [f"Invalid answers ({result.invalid_count}, {policy}): {answers}", ""]
    return lines
