"""Pure functions: predictions -> one frozen result (confusion, per-class, overall metrics, intervals).

The metrics are computed from the confusion matrix as numpy arrays (`confusion_metrics`), for one matrix or for a
stack of them: the gate's own numbers and each of the bootstrap's thousand resamples (evaluate/bootstrap.py) go
through the same formulas, so a resample of unchanged answers reproduces the point estimate exactly. numpy is
imported inside the functions (the plugin is imported by every pytest run).

Where libraries serve and where not: sklearn's `precision_recall_fscore_support` with explicit `labels=` gives
the same numbers (it is the oracle in tests/test_metrics.py, to 1e-12), but it takes label arrays, not counts, so
a resample would have to be expanded back into n labels; it validates its input on every call (1.2 ms, measured
on 834 labels: 20 s for a thousand resamples of eight metrics and two runs), and importing it takes 0.8 s. For
sums over a 6 x 7 matrix, numpy is the tool (docs/statistics.md).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pytest_emogate.answers import INVALID, answer_word
from pytest_emogate.predictions import Prediction, gc_paused

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from numpy.typing import NDArray

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

    Read-only all the way down (`compute_result` makes every mapping a MappingProxyType, the sequences are
    tuples, the records frozen): the `emogate_result` fixture hands this very object to users' tests, and the
    gate's checks and every report read it after them, so a test that changed a number in place would change
    the verdict. `dict(result.metrics)` is a copy to change.
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
    """Apply the answer contract to every prediction; `invalid` is "wrong" or the label invalid answers map to.

    Each distinct answer text is read once: a model answers a few phrasings many times over."""
    fallback = INVALID if invalid == "wrong" else invalid
    read: dict[str, tuple[str, bool, str]] = {}
    scored = []
    with gc_paused():  # acyclic records, as in the reader
        for prediction in predictions:
            output = prediction.output
            if (contract := read.get(output)) is None:
                word = answer_word(output, aliases)
                valid = word in labels
                contract = read[output] = (word, valid, word if valid else fallback)
            word, valid, predicted = contract
            scored.append(
                ScoredSample(
                    prediction.name, prediction.label, output, word, valid, predicted, predicted == prediction.label
                )
            )
    return tuple(scored)


def compute_result(samples: Sequence[ScoredSample], labels: tuple[str, ...], invalid: str = "wrong") -> GateResult:
    """Compute every metric of the gate from scored samples."""
    import numpy as np

    columns = labels + ((INVALID,) if invalid == "wrong" else ())
    row = {label: index * len(columns) for index, label in enumerate(labels)}
    column = {label: index for index, label in enumerate(columns)}
    cells = np.fromiter((row[s.gold] + column[s.predicted] for s in samples), dtype=np.intp, count=len(samples))
    matrix = np.bincount(cells, minlength=len(labels) * len(columns)).reshape(len(labels), len(columns))
    confusion = {
        gold: MappingProxyType(dict(zip(columns, map(int, matrix[index]), strict=True)))
        for index, gold in enumerate(labels)
    }
    invalid_answers = Counter(sample.word for sample in samples if not sample.valid)
    result_metrics, per_class = _from_matrix(matrix, labels)
    return GateResult(
        labels=labels,
        n=len(samples),
        metrics=MappingProxyType(result_metrics),
        per_class=MappingProxyType(per_class),
        confusion=MappingProxyType(confusion),
        invalid_count=sum(invalid_answers.values()),
        invalid_answers=MappingProxyType(dict(invalid_answers.most_common())),
        samples=tuple(samples),
        invalid_policy=invalid,
    )


def overall_from_confusion(confusion: Mapping[str, Mapping[str, int]], labels: tuple[str, ...]) -> dict[str, float]:
    """The aggregate metrics of a confusion matrix (rows: every gold label; the first columns the labels, in
    order, then any others): resampling needs no samples."""
    import numpy as np

    matrix = np.array([list(confusion[gold].values()) for gold in labels], dtype=np.int64).reshape(len(labels), -1)
    return _from_matrix(matrix, labels)[0]


def _from_matrix(matrix: NDArray[np.int64], labels: tuple[str, ...]) -> tuple[dict[str, float], dict[str, ClassStats]]:
    overall, classes = confusion_metrics(matrix)
    n, correct, predicted = (matrix.sum(axis=1), matrix.diagonal(), matrix[:, : len(labels)].sum(axis=0))
    per_class = {
        label: ClassStats(
            n=int(n[index]),
            correct=int(correct[index]),
            predicted=int(predicted[index]),
            recall=float(classes["recall"][index]),
            recall_ci95=wilson_interval(int(correct[index]), int(n[index])),
            precision=float(classes["precision"][index]),
            f1=float(classes["f1"][index]),
        )
        for index, label in enumerate(labels)
    }
    return {name: float(value) for name, value in overall.items()}, per_class


def confusion_metrics(
    matrix: NDArray[np.int64],
) -> tuple[dict[str, NDArray[np.float64]], dict[str, NDArray[np.float64]]]:
    """Every aggregate metric and each class's recall, precision and F1 of confusion matrices `[..., gold, pred]`.

    The leading axes are any stack of matrices (one run: none; the bootstrap: one per resample). Column i is
    label i's for every gold label i; further columns (`<invalid>`) count as wrong. A class absent from gold
    scores 0 and is left out of every average; weighted averages weigh by gold support; a share with a zero
    denominator is 0: sklearn's `precision_recall_fscore_support(labels=..., zero_division=0)` numbers (its
    oracle in tests/test_metrics.py).
    """
    labels = matrix.shape[-2]
    return count_metrics(matrix.sum(axis=-1), matrix.diagonal(axis1=-2, axis2=-1), matrix[..., :labels].sum(axis=-2))


def count_metrics(
    n: NDArray[np.int64], correct: NDArray[np.int64], predicted: NDArray[np.int64]
) -> tuple[dict[str, NDArray[np.float64]], dict[str, NDArray[np.float64]]]:
    """`confusion_metrics` from the three counts it reads of each class, `[..., class]`: its gold samples, those
    answered right and those answered with its label. The bootstrap counts them without stacking a matrix per
    resample (a thousand 1,000-label matrices are 8 GB)."""
    import numpy as np

    recall = _share(correct, n)
    precision = _share(correct, predicted)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
    total = n.sum(axis=-1)
    classes = (n > 0).sum(axis=-1)  # a class absent from gold scores 0 everywhere: it only must not be counted

    def weighted(values: NDArray[np.float64]) -> NDArray[np.float64]:
        return _share((values * n).sum(axis=-1), total)

    def macro(values: NDArray[np.float64]) -> NDArray[np.float64]:
        return _share(values.sum(axis=-1), classes)

    overall = {
        "accuracy": _share(correct.sum(axis=-1), total),
        "weighted_precision": weighted(precision),
        "weighted_recall": weighted(recall),
        "weighted_f1": weighted(f1),
        "macro_precision": macro(precision),
        "macro_recall": macro(recall),
        "macro_f1": macro(f1),
        "uar": macro(recall),
    }
    return overall, {"recall": recall, "precision": precision, "f1": f1}


def _share(part: NDArray[Any], whole: NDArray[Any]) -> NDArray[np.float64]:
    """part / whole, 0 where whole is 0."""
    import numpy as np

    out = np.zeros(np.broadcast(part, whole).shape)
    np.divide(part, whole, out=out, where=whole > 0)
    return out
