"""Metrics against sklearn as the oracle, hand-computed golden tables, and the published seed run."""

from __future__ import annotations

import random

import pytest

from pytest_emogate.answers import INVALID
from pytest_emogate.evaluate.metrics import (
    compute_result,
    confusion_metrics,
    overall_from_confusion,
    score_samples,
    wilson_interval,
)
from pytest_emogate.predictions import Prediction, read_predictions
from tests.conftest import SEED

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")


def result_of(pairs: list[tuple[str, str]], labels: tuple[str, ...] = LABELS, invalid: str = "wrong"):
    predictions = [Prediction(f"s{i}", gold, output) for i, (gold, output) in enumerate(pairs)]
    return compute_result(score_samples(predictions, labels, invalid=invalid), labels, invalid)


@pytest.mark.parametrize("seed", range(8))
def test_against_sklearn_on_random_answers(seed: int) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(seed)
    answers = [*LABELS, "doubt", ""]
    golds = LABELS[: rng.randint(2, 6)]  # some taxonomy classes may be absent from gold
    pairs = [(rng.choice(golds), rng.choice(answers)) for _ in range(rng.randint(20, 400))]
    result = result_of(pairs)
    y_true = [gold for gold, _ in pairs]
    y_pred = [output if output in LABELS else INVALID for _, output in pairs]
    present = sorted(set(y_true))
    expected = {
        "accuracy": metrics.accuracy_score(y_true, y_pred),
        "uar": metrics.recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0),
    }
    for average in ("weighted", "macro"):
        p, r, f, _ = metrics.precision_recall_fscore_support(
            y_true, y_pred, labels=present, average=average, zero_division=0
        )
        expected |= {f"{average}_precision": p, f"{average}_recall": r, f"{average}_f1": f}
    assert result.metrics == pytest.approx(expected, abs=1e-12)
    p, r, f, support = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=list(LABELS), average=None, zero_division=0
    )
    for i, label in enumerate(LABELS):
        stats = result.per_class[label]
        assert (stats.precision, stats.recall, stats.f1, stats.n) == pytest.approx((p[i], r[i], f[i], support[i]))
    matrix = metrics.confusion_matrix(y_true, y_pred, labels=[*LABELS, INVALID])
    for i, gold in enumerate(LABELS):
        assert [result.confusion[gold][c] for c in result.columns] == list(matrix[i])


def test_weighted_metrics_with_the_default_labels_of_the_original_script() -> None:
    """The original passed no labels: sklearn took the union of gold and predicted, which weighs the same."""
    metrics = pytest.importorskip("sklearn.metrics")
    pairs = [("sad", "sad"), ("sad", "happy"), ("happy", "happy"), ("angry", "doubt"), ("angry", "angry")]
    y_true = [g for g, _ in pairs]
    y_pred = [o if o in LABELS else INVALID for _, o in pairs]
    result = result_of(pairs)
    assert result.metrics["weighted_f1"] == pytest.approx(
        metrics.f1_score(y_true, y_pred, average="weighted", zero_division=0)
    )


def test_golden_table() -> None:
    """Hand-computed: 3 classes, one invalid answer."""
    pairs = (
        [("sad", "sad")] * 3 + [("sad", "happy")] + [("happy", "happy")] * 2 + [("angry", "angry"), ("angry", "doubt")]
    )
    result = result_of(pairs, labels=("sad", "happy", "angry"))
    assert result.n == 8
    assert result.confusion == {
        "sad": {"sad": 3, "happy": 1, "angry": 0, INVALID: 0},
        "happy": {"sad": 0, "happy": 2, "angry": 0, INVALID: 0},
        "angry": {"sad": 0, "happy": 0, "angry": 1, INVALID: 1},
    }
    sad, happy, angry = (result.per_class[label] for label in ("sad", "happy", "angry"))
    assert (sad.recall, sad.precision, sad.f1) == (0.75, 1.0, pytest.approx(6 / 7))
    assert (happy.recall, happy.precision, happy.f1) == (1.0, pytest.approx(2 / 3), pytest.approx(0.8))
    assert (angry.recall, angry.precision, angry.f1) == (0.5, 1.0, pytest.approx(2 / 3))
    assert result.metrics["accuracy"] == 6 / 8
    assert result.metrics["uar"] == pytest.approx(0.75)  # recalls 3/4, 2/2, 1/2: 9/4 over 3 classes
    assert result.metrics["weighted_recall"] == pytest.approx(6 / 8)
    assert result.metrics["weighted_f1"] == pytest.approx(167 / 210)  # (24/7 + 8/5 + 4/3) / 8 = (668/105) / 8
    assert result.metrics["macro_precision"] == pytest.approx(8 / 9)  # precisions 1, 2/3, 1: 8/3 over 3 classes
    assert result.invalid_count == 1
    assert result.invalid_answers == {"doubt": 1}
    assert [s.name for s in result.invalid_samples] == ["s7"]


def test_invalid_answers_mapped_to_a_label_on_request() -> None:
    result = result_of([("angry", "doubt"), ("neutral", "i cannot tell.")], invalid="neutral")
    assert INVALID not in result.columns
    assert result.confusion["angry"]["neutral"] == 1
    assert result.per_class["neutral"].correct == 1
    assert result.invalid_count == 2  # still reported, never silently hidden
    assert result.invalid_answers == {"doubt": 1, "tell": 1}


@pytest.mark.parametrize(
    ("successes", "n", "bounds"),
    [
        (5, 14, (0.1634, 0.6124)),
        (6, 14, (0.2138, 0.6741)),
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (33, 45, (0.5896, 0.8404)),
        (0, 0, (0.0, 1.0)),
    ],
)
def test_wilson_interval(successes: int, n: int, bounds: tuple[float, float]) -> None:
    assert wilson_interval(successes, n) == pytest.approx(bounds, abs=1e-4)


def test_the_seed_run_reproduces_the_published_numbers_with_the_original_fallback() -> None:
    predictions = read_predictions(SEED, LABELS)
    result = compute_result(score_samples(predictions, LABELS, invalid="neutral"), LABELS, "neutral")
    published = {"accuracy": 0.9065, "weighted_precision": 0.9044, "weighted_recall": 0.9065, "weighted_f1": 0.9045}
    assert {name: round(result.metrics[name], 4) for name in published} == published
    counts = {label: (result.per_class[label].correct, result.per_class[label].n) for label in LABELS}
    assert counts == {
        "neutral": (134, 166),
        "angry": (179, 183),
        "happy": (154, 169),
        "sad": (250, 257),
        "worried": (33, 45),
        "surprise": (6, 14),
    }


def test_the_seed_run_by_default_counts_doubt_as_its_own_column() -> None:
    predictions = read_predictions(SEED, LABELS)
    result = compute_result(score_samples(predictions, LABELS), LABELS)
    assert result.confusion["surprise"] == {
        "neutral": 2,
        "angry": 1,
        "happy": 0,
        "sad": 1,
        "worried": 3,
        "surprise": 6,
        INVALID: 1,
    }
    assert result.invalid_answers == {"doubt": 1}
    assert result.metrics["accuracy"] == 756 / 834


def oracle_metrics(confusion: dict[str, dict[str, int]], labels: tuple[str, ...]) -> tuple[dict[str, float], dict]:
    """The pure-Python metrics the gate computed before they moved onto numpy arrays, kept as the oracle."""
    per_class = {}
    for label in labels:
        n = sum(confusion[label].values())
        correct = confusion[label][label]
        predicted = sum(confusion[gold][label] for gold in labels)
        recall = correct / n if n else 0.0
        precision = correct / predicted if predicted else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"n": n, "correct": correct, "predicted": predicted, "recall": recall,
                            "precision": precision, "f1": f1}  # fmt: skip
    present = [stats for stats in per_class.values() if stats["n"]]
    total = sum(stats["n"] for stats in present)

    def weighted(field: str) -> float:
        return sum(stats[field] * stats["n"] for stats in present) / total if total else 0.0

    def macro(field: str) -> float:
        return sum(stats[field] for stats in present) / len(present) if present else 0.0

    overall = {
        "accuracy": sum(stats["correct"] for stats in present) / total if total else 0.0,
        "weighted_precision": weighted("precision"),
        "weighted_recall": weighted("recall"),
        "weighted_f1": weighted("f1"),
        "macro_precision": macro("precision"),
        "macro_recall": macro("recall"),
        "macro_f1": macro("f1"),
        "uar": macro("recall"),
    }
    return overall, per_class


def random_pairs(rng: random.Random) -> list[tuple[str, str]]:
    """Answers of a random size over a random subset of gold classes (some taxonomy classes empty), with invalid
    answers and answers naming classes absent from gold."""
    golds = rng.sample(LABELS, rng.randint(1, 6))
    answers = [*LABELS, "doubt", "", "I cannot tell."]
    return [(rng.choice(golds), rng.choice(answers)) for _ in range(rng.randint(1, 300))]


@pytest.mark.parametrize("invalid", ["wrong", "neutral"])
@pytest.mark.parametrize("seed", range(12))
def test_array_metrics_equal_the_pure_python_ones(seed: int, invalid: str) -> None:
    result = result_of(random_pairs(random.Random(seed)), invalid=invalid)
    overall, per_class = oracle_metrics(result.confusion, LABELS)  # type: ignore[arg-type]
    assert result.metrics == pytest.approx(overall, rel=1e-12, abs=1e-12)
    for label in LABELS:
        stats = result.per_class[label]
        got = {name: getattr(stats, name) for name in per_class[label]}
        assert got == pytest.approx(per_class[label], rel=1e-12, abs=1e-12)
        assert stats.recall_ci95 == wilson_interval(stats.correct, stats.n)


def test_stacked_confusions_give_each_matrix_its_own_metrics() -> None:
    """The bootstrap computes a thousand resamples at once: each must equal its matrix computed alone."""
    import numpy as np

    rng = random.Random(5)
    results = [result_of(random_pairs(rng)) for _ in range(20)]
    stack = np.array([[list(r.confusion[g].values()) for g in LABELS] for r in results], dtype=np.int64)
    overall, classes = confusion_metrics(stack)
    for index, result in enumerate(results):
        assert {name: overall[name][index] for name in overall} == pytest.approx(result.metrics, rel=1e-12)
        assert list(classes["recall"][index]) == [result.per_class[label].recall for label in LABELS]
    assert overall_from_confusion(results[0].confusion, LABELS) == results[0].metrics


def test_no_samples_score_zero_everywhere() -> None:
    result = compute_result((), LABELS)
    assert result.n == 0 and set(result.metrics.values()) == {0.0}
    assert result.per_class["sad"].recall_ci95 == (0.0, 1.0)
