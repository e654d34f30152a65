"""Pure functions: predictions -> one frozen result (confusion, per-class, overall metrics, intervals).

No numpy or sklearn here: the numbers are sums over at most a few thousand samples, and the plugin must stay
cheap to import. sklearn is the oracle in the tests.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pytest_emogate.answers import INVALID, answer_word
from pytest_emogate.predictions import Prediction

if TYPE_CHECKING:
    import pandas as pd

Z95 = 1.959963984540054
"""The two-sided 95% normal quantile used by the Wilson interval."""


@dataclass(frozen=True)
class Metric:
    """An aggregate metric's name and what it means (every metric is a share: higher is better, so every limit on
    one is a floor)."""

    name: str
    description: str
    per_sample: bool = False
    """True when the metric is the mean of per-sample correctness, so paired runs can use an exact test."""


METRICS: Mapping[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("accuracy", "share of samples answered with the gold label", per_sample=True),
        Metric("weighted_precision", "precision averaged over gold classes, weighted by class size"),
        Metric("weighted_recall", "recall averaged over gold classes, weighted by class size", per_sample=True),
        Metric("weighted_f1", "F1 averaged over gold classes, weighted by class size"),
        Metric("macro_precision", "unweighted mean of per-class precision"),
        Metric("macro_recall", "unweighted mean of per-class recall"),
        Metric("macro_f1", "unweighted mean of per-class F1"),
        Metric("uar", "unweighted average recall (balanced accuracy) over the gold classes"),
    )
}


@dataclass(frozen=True)
class ScoredSample:
    """One sample after the answer contract: its answer word, the predicted label (or INVALID) and correctness."""

    name: str
    gold: str
    output: str
    word: str
    valid: bool
    predicted: str
    correct: bool


@dataclass(frozen=True)
class ClassStats:
    """Per-class numbers; `recall_ci95` is the Wilson 95% interval of the recall."""

    n: int
    correct: int
    predicted: int
    recall: float
    recall_ci95: tuple[float, float]
    precision: float
    f1: float


@dataclass(frozen=True)
class GateResult:
    """Everything the gate tests read: computed once per session from the answers.

    `confusion[gold][pred]` counts samples of gold class `gold` answered `pred`; `pred` runs over the labels
    and, when invalid answers count as wrong, the `<invalid>` column.
    """

    labels: tuple[str, ...]
    n: int
    metrics: Mapping[str, float]
    per_class: Mapping[str, ClassStats]
    confusion: Mapping[str, Mapping[str, int]]
    invalid_count: int
    invalid_answers: Mapping[str, int]
    samples: tuple[ScoredSample, ...]
    invalid_policy: str = "wrong"
    baseline: GateResult | None = field(default=None, compare=False, repr=False)
    """The accepted model's result on the same samples, when the session has a baseline (the `emogate_result`
    fixture attaches it); `frame()` then adds the baseline's answers and each sample's change."""

    @property
    def columns(self) -> tuple[str, ...]:
        """The confusion matrix's predicted columns, in taxonomy order."""
        return self.labels + ((INVALID,) if self.invalid_policy == "wrong" else ())

    @property
    def invalid_samples(self) -> tuple[ScoredSample, ...]:
        """The samples whose answer was outside the taxonomy."""
        return tuple(sample for sample in self.samples if not sample.valid)

    def frame(self) -> pd.DataFrame:
        """One row per sample, sorted by name: name, gold, output, word, predicted (a label or `<invalid>`),
        correct, valid; with a baseline also baseline_output, baseline_predicted and change (broken, fixed,
        changed, same). Label columns share one categorical dtype (`columns`, in taxonomy order). Needs pandas."""
        from pytest_emogate.evaluate.frames import sample_frame

        return sample_frame(self.samples, self.columns, self.baseline.samples if self.baseline else None)

    def confusion_frame(self) -> pd.DataFrame:
        """`confusion` as a DataFrame: index the gold labels ("gold"), columns `columns` ("predicted"), int64
        counts. Needs pandas."""
        from pytest_emogate.evaluate.frames import confusion_frame

        return confusion_frame(self.confusion, self.labels, self.columns)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0.0, 1.0) when n is 0."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def score_samples(
    predictions: Sequence[Prediction],
    labels: tuple[str, ...],
    aliases: Mapping[str, str] | None = None,
    invalid: str = "wrong",
) -> tuple[ScoredSample, ...]:
    """Apply the answer contract to every prediction; `invalid` is "wrong" or the label invalid answers map to."""
    scored = []
    for prediction in predictions:
        word = answer_word(prediction.output, aliases)
        valid = word in labels
        predicted = word if valid else (INVALID if invalid == "wrong" else invalid)
        scored.append(
            ScoredSample(
                name=prediction.name,
                gold=prediction.label,
                output=prediction.output,
                word=word,
                valid=valid,
                predicted=predicted,
                correct=predicted == prediction.label,
            )
        )
    return tuple(scored)


def compute_result(samples: Sequence[ScoredSample], labels: tuple[str, ...], invalid: str = "wrong") -> GateResult:
    """Compute every metric of the gate from scored samples."""
    columns = labels + ((INVALID,) if invalid == "wrong" else ())
    confusion = {gold: dict.fromkeys(columns, 0) for gold in labels}
    for sample in samples:
        confusion[sample.gold][sample.predicted] += 1
    per_class = {label: _class_stats(label, confusion, labels) for label in labels}
    invalid_answers = Counter(sample.word for sample in samples if not sample.valid)
    result_metrics = _overall(per_class, len(samples))
    return GateResult(
        labels=labels,
        n=len(samples),
        metrics=result_metrics,
        per_class=per_class,
        confusion=confusion,
        invalid_count=sum(invalid_answers.values()),
        invalid_answers=dict(invalid_answers.most_common()),
        samples=tuple(samples),
        invalid_policy=invalid,
    )


def overall_from_confusion(confusion: Mapping[str, Mapping[str, int]], labels: tuple[str, ...]) -> dict[str, float]:
    """The aggregate metrics of a confusion matrix (rows: every gold label): resampling needs no samples."""
    per_class = {label: _class_stats(label, confusion, labels) for label in labels}
    return _overall(per_class, sum(stats.n for stats in per_class.values()))


def _class_stats(label: str, confusion: Mapping[str, Mapping[str, int]], labels: tuple[str, ...]) -> ClassStats:
    n = sum(confusion[label].values())
    correct = confusion[label][label]
    predicted = sum(confusion[gold][label] for gold in labels)
    recall = correct / n if n else 0.0
    precision = correct / predicted if predicted else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ClassStats(
        n=n,
        correct=correct,
        predicted=predicted,
        recall=recall,
        recall_ci95=wilson_interval(correct, n),
        precision=precision,
        f1=f1,
    )


def _overall(per_class: Mapping[str, ClassStats], n: int) -> dict[str, float]:
    """Weighted averages weigh by gold support; macro averages run over the classes present in gold."""
    present = [stats for stats in per_class.values() if stats.n]
    total = sum(stats.n for stats in present)

    def weighted(field: str) -> float:
        return sum(getattr(stats, field) * stats.n for stats in present) / total if total else 0.0

    def macro(field: str) -> float:
        return sum(getattr(stats, field) for stats in present) / len(present) if present else 0.0

    correct = sum(stats.correct for stats in present)
    return {
        "accuracy": correct / n if n else 0.0,
        "weighted_precision": weighted("precision"),
        "weighted_recall": weighted("recall"),
        "weighted_f1": weighted("f1"),
        "macro_precision": macro("precision"),
        "macro_recall": macro("recall"),
        "macro_f1": macro("f1"),
        "uar": macro("recall"),
    }
