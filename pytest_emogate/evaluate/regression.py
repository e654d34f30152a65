"""Regression checks against an accepted baseline (`--emogate-baseline`): the check ids, one outcome per check,
and the evidence each message and JUnit property shows.

A drop fails only when it exceeds its declared margin (`regression.max_drop`, `regression.per_class_max_drop`)
AND the paired one-sided test gives p < `regression.alpha`: a drop within the margin is tolerated however
certain, a larger drop that rests on a handful of samples is noise until the pairs show otherwise, and an
improvement never fails.
"""

from __future__ import annotations

from pytest_emogate.evaluate.checks import Outcome
from pytest_emogate.evaluate.compare import Comparison, Delta
from pytest_emogate.evaluate.thresholds import Thresholds
from pytest_emogate.formats import p_text, pct2

TOLERANCE = 1e-12
"""Float slack so that a drop of exactly the margin (e.g. 1 of 100 against 0.01) counts as within it."""


def regression_ids(thresholds: Thresholds) -> list[str]:
    """The regression checks' parameters: each metric of `max_drop`, then each class of `per_class_max_drop`."""
    policy = thresholds.regression
    return [] if policy is None else [*policy.max_drop, *policy.per_class_max_drop]


def delta_of(comparison: Comparison, key: str) -> Delta:
    """The delta a regression check judges: a metric's, else a class recall's."""
    return comparison.metrics[key] if key in comparison.metrics else comparison.per_class[key]


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
