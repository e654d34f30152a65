"""The gate's checks: thresholds -> check ids, and (thresholds, result) -> one outcome per check.

Each outcome carries a one-line message that reads on its own in a CI log: value, limit, counts, interval and
where the limit comes from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from pytest_emogate.evaluate.metrics import ClassStats, GateResult, wilson_interval
from pytest_emogate.evaluate.thresholds import ClassFloor, Thresholds
from pytest_emogate.formats import clip, interval, invalid_answers, pct
from pytest_emogate.inference.probe import ProbeResult

EXAMPLE_SAMPLES = 3
NAMED_DISAGREEMENTS = 10
"""The differing samples the consistency message names (the JSON report's `probe.samples` has them all)."""


@dataclass(frozen=True)
class Outcome:
    """One check's verdict. `id` is the check id of design.md, e.g. `class_floor[surprise]`."""

    id: str
    passed: bool
    value: float
    limit: float
    message: str
    n: int


def inconclusive(stats: ClassStats, floor: float) -> bool:
    """Whether a class's 95% interval contains its floor: the verdict rests on too few samples to be sure."""
    low, high = stats.recall_ci95
    return stats.n > 0 and low < floor < high


TEST_NAMES = {
    "overall": "test_overall",
    "class_floor": "test_class_floor",
    "label_validity": "test_label_validity",
    "confusion": "test_confusion_limit",
    "regression": "test_no_regression",
    "consistency": "test_consistency",
}
"""Each kind of check -> the name of its gate test (design.md's ids)."""
SINGLE_CHECKS = ("label_validity", "consistency")
"""The kinds with one check each, whose id and test name carry no parameter."""


@dataclass(frozen=True)
class Check:
    """One declared check: its kind (a thresholds section) and parameter (a metric, class or pair)."""

    kind: str
    param: str

    @property
    def id(self) -> str:
        """The check id of the JSON report: `overall[accuracy]`, `label_validity`, `consistency`, ..."""
        return self.kind if self.kind in SINGLE_CHECKS else f"{self.kind}[{self.param}]"

    @property
    def test_name(self) -> str:
        """The gate test's name: `test_overall[accuracy]`, `test_label_validity`, `test_consistency`, ..."""
        name = TEST_NAMES[self.kind]
        return name if self.kind in SINGLE_CHECKS else f"{name}[{self.param}]"


def declared_checks(thresholds: Thresholds) -> list[Check]:
    """The checks the thresholds declare, in file order (the regression checks come with a baseline)."""
    params = {
        "overall": list(thresholds.overall),
        "class_floor": list(thresholds.per_class),
        "label_validity": [] if thresholds.max_invalid is None else ["label_validity"],
        "confusion": list(thresholds.confusion),
    }
    return [Check(kind, param) for kind, names in params.items() for param in names]


def no_checks(thresholds: Thresholds) -> pytest.UsageError:
    """The refusal of a run that would judge no check: its verdict would pass on any answers (and
    --emogate-update-baseline would write). A `regression:` or `consistency:` section declares checks only with its
    option, so the message names the one that was left out."""
    unused = []
    if thresholds.regression is not None:
        unused.append("its regression: section declares checks only with --emogate-baseline")
    if thresholds.max_disagree is not None:
        unused.append("its consistency: section only with --emogate-probe")
    return pytest.UsageError(
        f"thresholds file {thresholds.path}: declares no check this run can judge, so the gate would pass on any "
        f"answers{''.join(f'; {note}' for note in unused)}; expected at least one of overall, per_class, "
        "label_validity, confusion"
    )


def overall(thresholds: Thresholds, result: GateResult, metric: str) -> Outcome:
    """An aggregate metric against its floor."""
    value, floor = result.metrics[metric], thresholds.overall[metric]
    passed = value >= floor
    counts = ""
    if metric == "accuracy":
        counts = f" {sum(sample.correct for sample in result.samples)}/{result.n} ="
    relation = ">=" if passed else "<"
    message = f"{metric}{counts} {pct(value)} {relation} floor {pct(floor)} ({thresholds.source(f'overall.{metric}')})"
    return Outcome(f"overall[{metric}]", passed, value, floor, message, result.n)


def class_floor(thresholds: Thresholds, result: GateResult, label: str) -> Outcome:
    """A class's recall (or its Wilson lower bound) against its floor."""
    stats, rule = result.per_class[label], thresholds.per_class[label]
    judged = stats.recall_ci95[0] if rule.on == "lower_bound" else stats.recall
    passed = stats.n > 0 and judged >= rule.floor
    relation = ">=" if passed else "<"
    described = f"{label} recall {stats.correct}/{stats.n} = {pct(stats.recall)} ({interval(stats.recall_ci95)})"
    source = thresholds.source(f"per_class.{label}")
    if stats.n == 0:
        message = f"{label} has no samples in the answers, so its floor {pct(rule.floor)} cannot be met ({source})"
    elif rule.on == "lower_bound":
        message = (
            f"{described}: lower bound {pct(judged)} {relation} floor {pct(rule.floor)} ({source}, on: lower_bound)"
        )
    else:
        message = f"{described} {relation} floor {pct(rule.floor)} ({source})"
    return Outcome(f"class_floor[{label}]", passed, judged, rule.floor, message, stats.n)


def floor_slack(stats: ClassStats, rule: ClassFloor) -> int | None:
    """How many more of the class's answers may go wrong before its floor fails (negative: how many more must go
    right for it to pass); None when no count of right answers out of n could pass."""

    def passes(correct: int) -> bool:
        judged = wilson_interval(correct, stats.n)[0] if rule.on == "lower_bound" else correct / stats.n
        return judged >= rule.floor

    if stats.n == 0:
        return None
    if passes(stats.correct):
        least = stats.correct
        while least > 0 and passes(least - 1):
            least -= 1
        return stats.correct - least
    needed = next((c for c in range(stats.correct + 1, stats.n + 1) if passes(c)), None)
    return None if needed is None else stats.correct - needed


def label_validity(thresholds: Thresholds, result: GateResult, _: str = "label_validity") -> Outcome:
    """Answers outside the taxonomy against `label_validity.max_invalid`, naming them and a few samples."""
    limit = thresholds.max_invalid
    assert limit is not None, "label_validity is declared only by a label_validity: section"
    count = result.invalid_count
    passed = count <= limit
    source = thresholds.source("label_validity.max_invalid")
    if not count:
        message = f"0 invalid answers <= max {limit} ({source})"
    else:
        answers = invalid_answers(result.invalid_answers)
        examples = ", ".join(clip(sample.name) for sample in result.invalid_samples[:EXAMPLE_SAMPLES])
        relation = "<=" if passed else ">"
        plural = "s" if count != 1 else ""
        message = (
            f"{count} invalid answer{plural} {relation} max {limit} ({source}): {answers} "
            f"outside {list(result.labels)} (e.g. {examples})"
        )
    return Outcome("label_validity", passed, float(count), float(limit), message, result.n)


def confusion(thresholds: Thresholds, result: GateResult, pair: str) -> Outcome:
    """The share of a gold class answered as another class against its ceiling."""
    gold, _, pred = pair.partition("->")
    n = result.per_class[gold].n
    count = result.confusion[gold].get(pred, 0)
    share = count / n if n else 0.0
    ceiling = thresholds.confusion[pair]
    passed = share <= ceiling
    relation = "<=" if passed else ">"
    message = (
        f"{gold} answered {pred}: {count}/{n} = {pct(share)} {relation} ceiling {pct(ceiling)} "
        f"({thresholds.source(f'confusion.{pair}')})"
    )
    return Outcome(f"confusion[{pair}]", passed, share, ceiling, message, n)


def consistency(thresholds: Thresholds, probe: ProbeResult) -> Outcome:
    """The probe's differing answers against `consistency.max_disagree` (0 when the thresholds leave it out: the
    probe option declares the check), naming the samples."""
    limit = thresholds.max_disagree if thresholds.max_disagree is not None else 0
    if thresholds.max_disagree is not None:
        source = thresholds.source("consistency.max_disagree")
    else:
        source = f"--emogate-probe's default; set consistency.max_disagree in {thresholds.path.name} to allow some"
    passed = probe.disagree <= limit
    relation = "<=" if passed else ">"
    plural = "s" if probe.n != 1 else ""
    message = (
        f"{probe.disagree} of {probe.n} answer{plural} differ when answered again at batch size 1 (generation, "
        f"LoRA unmerged) {relation} max {limit} ({source})"
    )
    if probe.differ:
        names = ", ".join(clip(answer.name) for answer in probe.differ[:NAMED_DISAGREEMENTS])
        more = probe.disagree - NAMED_DISAGREEMENTS
        message += f": {names}" + (f" and {more} more (JSON report: probe.samples)" if more > 0 else "")
    return Outcome("consistency", passed, float(probe.disagree), float(limit), message, probe.n)


def unanswered_probe(thresholds: Thresholds, error: str) -> Outcome:
    """The consistency check of a probe that could make no answers (e.g. non-finite logits): failed, 0 compared."""
    limit = thresholds.max_disagree if thresholds.max_disagree is not None else 0
    return Outcome("consistency", False, 0.0, float(limit), error, 0)


CHECKS: dict[str, Callable[[Thresholds, GateResult, str], Outcome]] = {
    "overall": overall,
    "class_floor": class_floor,
    "label_validity": label_validity,
    "confusion": confusion,
}


def evaluate_all(thresholds: Thresholds, result: GateResult) -> list[Outcome]:
    """Every check the thresholds declare, in file order."""
    return [CHECKS[check.kind](thresholds, result, check.param) for check in declared_checks(thresholds)]
