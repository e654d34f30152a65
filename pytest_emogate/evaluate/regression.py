"""Regression checks against an accepted baseline (`--emogate-baseline`): the check ids, one outcome per check,
and the evidence each message and JUnit property shows.

A drop fails only when it exceeds its declared margin (`regression.max_drop`, `regression.per_class_max_drop`)
AND the paired one-sided test gives p < `regression.alpha`: a drop within the margin is tolerated however
certain, a larger drop that rests on a handful of samples is noise until the pairs show otherwise, and an
improvement never fails.

Two numbers say what a check can detect. `smallest_failing_drop` is the smallest drop that could ever fail it:
k broken answers and none fixed, with k/n above the margin and the exact p (0.5^k) below alpha. On a 14-sample
class with a 0.10 margin at alpha 0.05 that is 5/14 (35.7 points): smaller drops always pass. With
`regression.correction: holm` the family of regression checks is tested with the Holm-Bonferroni step-down,
which keeps the chance of any false alarm across the family below alpha, at the price of power: each check's
drop is then judged at alpha/m when it is the family's only drop.
"""

from __future__ import annotations

from collections.abc import Mapping

from pytest_emogate.evaluate.checks import Outcome
from pytest_emogate.evaluate.compare import Comparison, Delta, Pair
from pytest_emogate.evaluate.thresholds import Thresholds
from pytest_emogate.formats import clip, p_text, pct2

EXAMPLE_SAMPLES = 3
"""Broken samples a failing check's message names (the JSON report lists them all)."""
TOLERANCE = 1e-12
"""Float slack so that a drop of exactly the margin (e.g. 1 of 100 against 0.01) counts as within it."""


def regression_ids(thresholds: Thresholds) -> list[str]:
    """The regression checks' parameters: each metric of `max_drop`, then each class of `per_class_max_drop`."""
    policy = thresholds.regression
    return [] if policy is None else [*policy.max_drop, *policy.per_class_max_drop]


REGRESSION_EXAMPLE = "regression: {alpha: 0.05, max_drop: {accuracy: 0.01}, per_class_max_drop: 0.10}"
"""What a `regression:` section that declares checks looks like, for the refusals of a file without one."""


def undeclared_regression(thresholds: Thresholds) -> str | None:
    """Why the thresholds declare no regression check, or None when they declare some: a baseline (or
    `emogate diff`) would then judge nothing, and a run of no checks would pass and could update the baseline."""
    if thresholds.regression is None:
        return "no 'regression:' section"
    if not regression_ids(thresholds):
        return "a 'regression:' section that declares no check (neither max_drop nor per_class_max_drop)"
    return None


def smallest_failing_drop(n: int, max_drop: float, alpha: float) -> float | None:
    """The smallest drop an exact-test regression check on n samples could fail at: the least k (k broken, none
    fixed) with k/n > max_drop and 0.5^k < alpha, as k/n; None when no k <= n qualifies (it can never fail)."""
    for k in range(1, n + 1):
        if k / n > max_drop + TOLERANCE and 0.5**k < alpha:
            return k / n
    return None


def holm_adjusted(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm-Bonferroni step-down adjusted p-values: sorted ascending, the i-th (from 0) of m is multiplied by m - i,
    capped at 1 and made monotone; a check is rejected at alpha when its adjusted p is below alpha."""
    ordered = sorted(p_values, key=lambda key: (p_values[key], key))
    m, running, adjusted = len(ordered), 0.0, {}
    for index, key in enumerate(ordered):
        running = max(running, min(1.0, (m - index) * p_values[key]))
        adjusted[key] = running
    return adjusted


def family_p_values(thresholds: Thresholds, comparison: Comparison) -> dict[str, float]:
    """Each regression check's p-value as its verdict uses it: raw, or Holm-adjusted over the family."""
    raw = {key: delta_of(comparison, key).p_value for key in regression_ids(thresholds)}
    policy = thresholds.regression
    return holm_adjusted(raw) if policy is not None and policy.correction == "holm" else raw


def holm_note(thresholds: Thresholds, raw: str) -> str:
    """What `regression.correction: holm` does to the p and 'can fail at' columns, in two sentences; `raw` says
    where the raw p-values are."""
    policy = thresholds.regression
    assert policy is not None, "a correction exists only with a regression: section"
    m = len(regression_ids(thresholds))
    return (
        f"p (holm): Holm-Bonferroni adjusted over the {m} regression checks ({raw}); a drop "
        f"beyond its margin fails when its adjusted p < alpha {policy.alpha:g}. can fail at: judged at alpha/{m} = "
        f"{policy.alpha / m:.4g}, the level a drop meets when it is the only one."
    )


def detection_limit(thresholds: Thresholds, comparison: Comparison, key: str) -> float | None:
    """`smallest_failing_drop` of one regression check (None for a bootstrap-tested metric, or when it cannot
    fail); under Holm at alpha/m, the level its drop meets when it is the only one."""
    policy = thresholds.regression
    assert policy is not None, "regression checks exist only with a regression: section"
    delta = delta_of(comparison, key)
    if delta.test != "mcnemar":
        return None
    max_drop = policy.max_drop[key] if key in policy.max_drop else policy.per_class_max_drop[key]
    level = policy.alpha / len(regression_ids(thresholds)) if policy.correction == "holm" else policy.alpha
    return smallest_failing_drop(delta.n, max_drop, level)


def broken_samples(comparison: Comparison, key: str) -> list[Pair]:
    """The samples a regression check's drop is made of: the class's broken answers, or every broken answer."""
    return comparison.samples("broken", None if key in comparison.metrics else key)


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
    p_value = family_p_values(thresholds, comparison)[check_id[len("regression[") : -1]]
    significant = p_value < policy.alpha
    failed = drop > max_drop + TOLERANCE and significant
    head = f"{key} {old} -> {new} ({100 * delta.delta:+.2f} pts, max drop {100 * max_drop:.2f} pts)"
    adjusted = f", Holm-adjusted p={p_text(p_value)}" if policy.correction == "holm" else ""
    if drop <= 0:
        judgement = "; no drop"
    elif drop <= max_drop + TOLERANCE:
        judgement = "; within the margin"
    else:
        judgement = f" < alpha {policy.alpha:g}" if significant else f" >= alpha {policy.alpha:g}, not significant"
    message = f"{head}: {evidence(delta)}{adjusted}{judgement} ({source})"
    if failed:
        message += _broken_examples(broken_samples(comparison, check_id[len("regression[") : -1]))
    return Outcome(check_id, not failed, delta.delta, -max_drop, message, delta.n)


def _broken_examples(pairs: list[Pair]) -> str:
    shown = ", ".join(f"{clip(pair.name)} (gold {pair.gold})" for pair in pairs[:EXAMPLE_SAMPLES])
    more = f" and {len(pairs) - EXAMPLE_SAMPLES} more" if len(pairs) > EXAMPLE_SAMPLES else ""
    return f"; broken: {shown}{more}" if pairs else ""


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
