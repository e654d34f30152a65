"""Regression checks against an accepted baseline (`--emogate-baseline`): the baseline file, the check ids, one
outcome per check, and what the JSON report, JUnit and the terminal summary show of the comparison.

A drop fails only when it exceeds its declared margin (`regression.max_drop`, `regression.per_class_max_drop`)
AND the paired one-sided test gives p < `regression.alpha`: a drop within the margin is tolerated however
certain, a larger drop that rests on a handful of samples is noise until the pairs show otherwise, and an
improvement never fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_emogate.checks import Outcome
from pytest_emogate.compare import Comparison, Delta, check_same_samples, compare
from pytest_emogate.files import display_path
from pytest_emogate.metrics import GateResult, compute_result, score_samples
from pytest_emogate.predictions import Prediction, read_predictions
from pytest_emogate.thresholds import Thresholds

if TYPE_CHECKING:
    from rich.console import RenderableType

    from pytest_emogate.evaluate.verdict import Verdict

TOLERANCE = 1e-12
"""Float slack so that a drop of exactly the margin (e.g. 1 of 100 against 0.01) counts as within it."""


@dataclass
class Baseline:
    """The accepted model's answers, read and validated when the session starts."""

    path: Path
    predictions: list[Prediction]
    sha256: str
    _result: GateResult | None = field(default=None, repr=False)

    @property
    def description(self) -> str:
        """`baseline fixtures/seed.csv (834 rows)`."""
        return f"baseline {display_path(self.path)} ({len(self.predictions)} rows)"

    def result(self, thresholds: Thresholds) -> GateResult:
        """The baseline's answers scored with the current answer contract, once."""
        if self._result is None:
            t = thresholds
            samples = score_samples(self.predictions, t.labels, t.aliases, t.invalid)
            self._result = compute_result(samples, t.labels, t.invalid)
        return self._result

    def check_pairs(self, predictions: Sequence[Prediction], answers: str) -> None:
        """Raise a UsageError unless the answers cover the same samples with the same gold labels."""
        check_same_samples(
            {p.name: p.label for p in self.predictions},
            {p.name: p.label for p in predictions},
            f"{self.description} does not pair with the answers ({answers})",
        )

    def compare(self, thresholds: Thresholds, candidate: GateResult) -> Comparison:
        """The paired comparison of the candidate's result against this baseline."""
        return compare(self.result(thresholds), candidate, f"{self.description} does not pair with the answers")


def read_baseline(path: Path, thresholds: Thresholds) -> Baseline:
    """Read a baseline predictions file (CSV or JSONL); the thresholds must declare a `regression:` section."""
    if thresholds.regression is None:
        raise pytest.UsageError(
            f"--emogate-baseline {path}: {thresholds.path} has no 'regression:' section, so nothing would be "
            "compared; expected e.g. regression: {alpha: 0.05, max_drop: {accuracy: 0.01}, per_class_max_drop: 0.10}"
        )
    predictions = read_predictions(path, thresholds.labels)
    return Baseline(path, predictions, hashlib.sha256(path.read_bytes()).hexdigest())


def regression_ids(thresholds: Thresholds) -> list[str]:
    """The regression checks' parameters: each metric of `max_drop`, then each class of `per_class_max_drop`."""
    policy = thresholds.regression
    return [] if policy is None else [*policy.max_drop, *policy.per_class_max_drop]


def delta_of(comparison: Comparison, key: str) -> Delta:
    """The delta a regression check judges: a metric's, else a class recall's."""
    return comparison.metrics[key] if key in comparison.metrics else comparison.per_class[key]


def pct2(value: float) -> str:
    """A fraction as a percentage with two decimals: 0.90647 -> '90.65%'."""
    return f"{100 * value:.2f}%"


def p_text(p: float) -> str:
    """A p-value with four decimals, or in scientific notation below 0.0001."""
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def evidence(delta: Delta) -> str:
    """What the paired test saw: discordant counts and the exact p, or the bootstrap interval and p."""
    if delta.test == "mcnemar":
        return f"{delta.fixed} fixed, {delta.broken} broken, one-sided exact McNemar p={p_text(delta.p_value)}"
    low, high = (100 * bound for bound in delta.ci95)
    interval = f"95% CI of the difference {low:+.2f} to {high:+.2f} pts"
    return f"paired bootstrap {interval}, one-sided p={p_text(delta.p_value)}"


def regression_outcome(thresholds: Thresholds, comparison: Comparison, key: str) -> Outcome:
    """One regression check: fails when the drop exceeds the margin and p < alpha."""
    policy = thresholds.regression
    assert policy is not None, "regression checks exist only with a regression: section"
    is_metric = key in policy.max_drop
    max_drop = policy.max_drop[key] if is_metric else policy.per_class_max_drop[key]
    source = thresholds.source(f"regression.{'max_drop' if is_metric else 'per_class_max_drop'}.{key}")
    delta = delta_of(comparison, key)
    check_id = f"regression[{key}]"
    if delta.n == 0:
        return Outcome(check_id, True, 0.0, -max_drop, f"{key} has no samples: nothing to compare ({source})", 0)
    if is_metric:
        old, new = pct2(delta.baseline), pct2(delta.candidate)
    else:
        counts = comparison.counts(key)
        before, after = counts["both_right"] + counts["broken"], counts["both_right"] + counts["fixed"]
        old = f"{before}/{delta.n} = {pct2(delta.baseline)}"
        new = f"{after}/{delta.n} = {pct2(delta.candidate)}"
        key = f"{key} recall"
    drop = -delta.delta
    significant = delta.p_value < policy.alpha
    failed = drop > max_drop + TOLERANCE and significant
    head = f"{key} {old} -> {new} ({100 * delta.delta:+.2f} pts, max drop {100 * max_drop:.2f} pts)"
    if drop <= 0:
        judgement = "; no drop"
    elif drop <= max_drop + TOLERANCE:
        judgement = "; within the margin"
    else:
        judgement = f" < alpha {policy.alpha:g}" if significant else f" >= alpha {policy.alpha:g}, not significant"
    message = f"{head}: {evidence(delta)}{judgement} ({source})"
    return Outcome(check_id, not failed, delta.delta, -max_drop, message, delta.n)


def junit_properties(comparison: Comparison, key: str) -> list[tuple[str, object]]:
    """Extra JUnit properties of a regression test, beside value (the delta), limit and n."""
    delta = delta_of(comparison, key)
    properties: list[tuple[str, object]] = [
        ("emogate_baseline", delta.baseline), ("emogate_candidate", delta.candidate),
        ("emogate_test", delta.test), ("emogate_p_value", delta.p_value),
    ]  # fmt: skip
    if delta.fixed is not None:
        properties += [("emogate_fixed", delta.fixed), ("emogate_broken", delta.broken)]
    return properties


def baseline_report(comparison: Comparison, baseline: Baseline, thresholds: Thresholds) -> dict[str, Any]:
    """The JSON report's `baseline` section: every metric's and class's delta, test, p-value and interval."""
    policy = thresholds.regression
    max_drop = {**(policy.max_drop if policy else {})}
    class_drop = {**(policy.per_class_max_drop if policy else {})}

    def entry(delta: Delta, limit: float | None) -> dict[str, Any]:
        return {
            "baseline": delta.baseline, "candidate": delta.candidate, "delta": delta.delta, "n": delta.n,
            "test": delta.test, "p_value": delta.p_value, "ci95": list(delta.ci95), "fixed": delta.fixed,
            "broken": delta.broken, "max_drop": limit,
        }  # fmt: skip

    return {
        "path": str(baseline.path),
        "predictions_sha256": baseline.sha256,
        "n": len(comparison.pairs),
        "paired": comparison.counts(),
        "alpha": policy.alpha if policy else None,
        "bootstrap": {"reps": comparison.reps, "seed": comparison.seed, "stratified_by": "gold label"},
        "metrics": {name: entry(delta, max_drop.get(name)) for name, delta in comparison.metrics.items()},
        "per_class": {label: entry(delta, class_drop.get(label)) for label, delta in comparison.per_class.items()},
    }


def regression_table(comparison: Comparison, outcomes: Sequence[Outcome], verdict: Verdict) -> RenderableType:
    """The terminal summary's regression block: one row per regression check (delta and max drop in points)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from pytest_emogate.report import status_cell

    counts = comparison.counts()
    title = (
        f"Regression vs baseline: {counts['fixed']} fixed, {counts['broken']} broken, "
        f"{counts['both_right']} both right, {counts['both_wrong']} both wrong"
    )
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0, 0, 1))
    for column in ("check", "baseline", "now", "delta", "max drop", "fixed", "broken", "p", "status"):
        table.add_column(column, justify="left" if column in ("check", "status") else "right", no_wrap=True)
    for outcome in outcomes:
        if not outcome.id.startswith("regression["):
            continue
        key = outcome.id[len("regression[") : -1]
        delta = delta_of(comparison, key)
        table.add_row(
            key, pct2(delta.baseline), pct2(delta.candidate), f"{100 * delta.delta:+.2f}",
            f"{-100 * outcome.limit:.2f}",
            "-" if delta.fixed is None else str(delta.fixed), "-" if delta.broken is None else str(delta.broken),
            p_text(delta.p_value), status_cell(verdict, outcome.id),
        )  # fmt: skip
    return Group(Text(title), table)  # a table's own title would wrap to the table's width
