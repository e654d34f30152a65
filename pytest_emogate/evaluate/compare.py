"""Baseline vs candidate on the same samples: pairing by name, the exact one-sided McNemar test, and a
deterministic stratified paired bootstrap.

Both models answered the same samples, so their answers are compared sample by sample: only the discordant
pairs (fixed: baseline wrong, candidate right; broken: the reverse) carry evidence of a change. For a metric
that is a mean of per-sample correctness (accuracy, a class's recall) that evidence is tested exactly
(McNemar); for the others (weighted F1, macro F1, UAR, ...) the pairs are resampled within each gold class with
a fixed seed, so the same answers always give the same interval and p-value.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pytest_emogate.evaluate.metrics import METRICS, GateResult, overall_from_confusion
from pytest_emogate.files import usage_error

BOOTSTRAP_REPS = 1000
BOOTSTRAP_SEED = 834
"""Fixed so that a rerun on the same answers gives the same interval and p-value (any seed would do)."""
EXAMPLES = 3
OUTCOMES = ("fixed", "broken", "both_right", "both_wrong")


@dataclass(frozen=True)
class Pair:
    """One sample answered by both models: its gold label, each model's predicted label (or `<invalid>`) and each
    model's raw answer exactly as read."""

    name: str
    gold: str
    baseline: str
    candidate: str
    baseline_output: str = ""
    candidate_output: str = ""

    @property
    def outcome(self) -> str:
        """`fixed` (only the candidate is right), `broken` (only the baseline is), `both_right` or `both_wrong`."""
        before, after = self.baseline == self.gold, self.candidate == self.gold
        if before != after:
            return "fixed" if after else "broken"
        return "both_right" if after else "both_wrong"


@dataclass(frozen=True)
class Delta:
    """How one metric, or one class's recall, moved from the baseline to the candidate, with its paired test.

    `p_value` is one-sided (small when the candidate is worse); `ci95` is the bootstrap percentile interval of
    candidate - baseline. `fixed`/`broken` are the discordant pairs behind an exact test, None for bootstrap.
    """

    baseline: float
    candidate: float
    n: int
    test: str
    p_value: float
    ci95: tuple[float, float]
    fixed: int | None = None
    broken: int | None = None

    @property
    def delta(self) -> float:
        """candidate - baseline (negative is a drop)."""
        return self.candidate - self.baseline


@dataclass(frozen=True)
class Comparison:
    """Every metric's and every class's delta against the baseline, computed once."""

    pairs: tuple[Pair, ...]
    metrics: Mapping[str, Delta]
    per_class: Mapping[str, Delta]
    reps: int
    seed: int

    labels: tuple[str, ...] = ()
    """The taxonomy, in the thresholds' order: sample lists are sorted by gold class in this order, then name."""

    def counts(self, gold: str | None = None) -> dict[str, int]:
        """How many pairs were fixed, broken, both right, both wrong (of one gold class, or of all)."""
        counted = Counter(pair.outcome for pair in self.pairs if gold is None or pair.gold == gold)
        return {outcome: counted[outcome] for outcome in OUTCOMES}

    def samples(self, outcome: str, gold: str | None = None) -> list[Pair]:
        """The pairs of one outcome (`broken`, `fixed`, ...), of one gold class or all, by class then name."""
        return self._sorted(pair for pair in self.pairs if pair.outcome == outcome and gold in (None, pair.gold))

    def changed(self) -> dict[str, list[Pair]]:
        """Pairs whose answer changed without a change in correctness: `answer_text` (right in both runs, the
        answer's text differs) and `wrong_label` (wrong in both runs, the predicted label differs)."""
        return {
            "answer_text": self._sorted(
                pair for pair in self.pairs
                if pair.outcome == "both_right" and pair.baseline_output != pair.candidate_output
            ),
            "wrong_label": self._sorted(
                pair for pair in self.pairs if pair.outcome == "both_wrong" and pair.baseline != pair.candidate
            ),
        }  # fmt: skip

    def _sorted(self, pairs: Iterable[Pair]) -> list[Pair]:
        order = {label: index for index, label in enumerate(self.labels)}
        return sorted(pairs, key=lambda pair: (order.get(pair.gold, len(order)), pair.gold, pair.name))


def check_same_samples(baseline: Mapping[str, str], candidate: Mapping[str, str], what: str) -> None:
    """Raise one UsageError unless both map the same sample names to the same gold labels."""
    only_baseline = sorted(set(baseline) - set(candidate))
    only_candidate = sorted(set(candidate) - set(baseline))
    relabelled = sorted(name for name in set(baseline) & set(candidate) if baseline[name] != candidate[name])
    problems = []
    if only_baseline:
        problems.append(f"{_count(only_baseline, 'name')} only in the baseline: {_examples(only_baseline)}")
    if only_candidate:
        problems.append(f"{_count(only_candidate, 'name')} only in the answers: {_examples(only_candidate)}")
    if relabelled:
        shown = [f"{name} (baseline {baseline[name]!r}, answers {candidate[name]!r})" for name in relabelled]
        problems.append(f"{_count(relabelled, 'gold label')} differ: {_examples(shown)}")
    if problems:
        problems.append("expected the same samples with the same gold labels: regenerate the baseline on this data")
        raise usage_error(what, problems)


def _count(items: Sequence[str], noun: str) -> str:
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


def _examples(items: Sequence[str]) -> str:
    more = f", ... ({len(items) - EXAMPLES} more)" if len(items) > EXAMPLES else ""
    return ", ".join(items[:EXAMPLES]) + more


def pair_results(baseline: GateResult, candidate: GateResult, what: str) -> tuple[Pair, ...]:
    """Pair the two results' samples by name, sorted by name so that resampling ignores file order."""
    before = {sample.name: sample for sample in baseline.samples}
    after = {sample.name: sample for sample in candidate.samples}
    check_same_samples({n: s.gold for n, s in before.items()}, {n: s.gold for n, s in after.items()}, what)
    return tuple(
        Pair(name, before[name].gold, before[name].predicted, after[name].predicted, before[name].output,
             after[name].output)
        for name in sorted(before)
    )  # fmt: skip


def mcnemar_one_sided(broken: int, fixed: int) -> float:
    """Exact one-sided McNemar p-value that the candidate is worse: P(X >= broken), X ~ Binomial(broken + fixed, 1/2).

    Under "no change" each discordant pair is equally likely to be fixed or broken; exact integer arithmetic,
    so it holds for any count (1.0 when there are no discordant pairs).
    """
    n = broken + fixed
    return sum(math.comb(n, k) for k in range(broken, n + 1)) / (1 << n)


def compare(
    baseline: GateResult, candidate: GateResult, what: str, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED
) -> Comparison:
    """Pair the results and test every metric and class recall; `what` names the baseline in errors."""
    pairs = pair_results(baseline, candidate, what)
    labels = candidate.labels
    metric_draws: dict[str, list[float]] = {metric: [] for metric in METRICS}
    class_draws: dict[str, list[float]] = {label: [] for label in labels}
    for before, after in bootstrap(pairs, labels, candidate.columns, reps, seed):
        for name in METRICS:
            metric_draws[name].append(after.metrics[name] - before.metrics[name])
        for label in labels:
            class_draws[label].append(after.recall[label] - before.recall[label])
    metrics = {}
    totals = Counter(pair.outcome for pair in pairs)
    for name, metric in METRICS.items():
        values = baseline.metrics[name], candidate.metrics[name], len(pairs)
        if metric.per_sample:
            fixed, broken = totals["fixed"], totals["broken"]
            p = mcnemar_one_sided(broken, fixed)
            metrics[name] = Delta(*values, "mcnemar", p, percentile_interval(metric_draws[name]), fixed, broken)
        else:
            p = bootstrap_p_value(metric_draws[name])
            metrics[name] = Delta(*values, "bootstrap", p, percentile_interval(metric_draws[name]))
    per_class = {}
    for label in labels:
        counted = Counter(pair.outcome for pair in pairs if pair.gold == label)
        before_stats, after_stats = baseline.per_class[label], candidate.per_class[label]
        per_class[label] = Delta(
            before_stats.recall, after_stats.recall, after_stats.n, "mcnemar",
            mcnemar_one_sided(counted["broken"], counted["fixed"]), percentile_interval(class_draws[label]),
            counted["fixed"], counted["broken"],
        )  # fmt: skip
    return Comparison(pairs, metrics, per_class, reps, seed, labels)


@dataclass(frozen=True)
class Draw:
    """One resample's aggregate metrics and per-class recalls."""

    metrics: Mapping[str, float]
    recall: Mapping[str, float]


def bootstrap(
    pairs: Sequence[Pair], labels: tuple[str, ...], columns: tuple[str, ...], reps: int, seed: int
) -> Iterable[tuple[Draw, Draw]]:
    """`reps` stratified paired resamples: each gold class keeps its size, pairs are drawn with replacement.

    Stratifying keeps every class in every resample (a 14-sample class would otherwise vanish now and then and
    change what a macro average averages over). Yields (baseline, candidate) per resample.
    """
    rng = random.Random(seed)
    strata = []
    for gold in labels:
        answers = [(pair.baseline, pair.candidate) for pair in pairs if pair.gold == gold]
        kinds = sorted(set(answers))
        # small ints hash faster than tuples: resampling is the gate's hot loop
        strata.append((gold, kinds, [kinds.index(answer) for answer in answers]))
    for _ in range(reps):
        before = {gold: dict.fromkeys(columns, 0) for gold in labels}
        after = {gold: dict.fromkeys(columns, 0) for gold in labels}
        for gold, kinds, population in strata:
            for kind, times in Counter(rng.choices(population, k=len(population))).items():
                was, now = kinds[kind]
                before[gold][was] += times
                after[gold][now] += times
        yield _draw(before, labels), _draw(after, labels)


def _draw(confusion: Mapping[str, Mapping[str, int]], labels: tuple[str, ...]) -> Draw:
    recall = {gold: confusion[gold][gold] / n if (n := sum(confusion[gold].values())) else 0.0 for gold in labels}
    return Draw(overall_from_confusion(confusion, labels), recall)


def percentile_interval(draws: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The central percentile interval of the draws, interpolated between order statistics like numpy's default."""
    if not draws:
        return (0.0, 0.0)
    ordered = sorted(draws)
    tail = (1 - level) / 2
    return (_quantile(ordered, tail), _quantile(ordered, 1 - tail))


def _quantile(ordered: Sequence[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def bootstrap_p_value(draws: Sequence[float]) -> float:
    """One-sided bootstrap p-value that the candidate is worse: the share of resamples showing no drop.

    The +1s count the observed answers as one resample, so p is never 0 from a finite number of draws.
    """
    return (1 + sum(draw >= 0 for draw in draws)) / (1 + len(draws))


def metric_intervals(
    result: GateResult, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED
) -> dict[str, tuple[float, float]]:
    """Each aggregate metric's stratified bootstrap 95% interval on one run's answers."""
    ordered = sorted(result.samples, key=lambda sample: sample.name)
    pairs = [Pair(sample.name, sample.gold, sample.predicted, sample.predicted) for sample in ordered]
    draws: dict[str, list[float]] = {metric: [] for metric in METRICS}
    for _, draw in bootstrap(pairs, result.labels, result.columns, reps, seed):
        for metric in METRICS:
            draws[metric].append(draw.metrics[metric])
    return {metric: percentile_interval(values) for metric, values in draws.items()}
