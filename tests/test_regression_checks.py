"""The regression checks' verdicts and messages: margin AND significance, improvements never fail."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_emogate.evaluate.baseline import read_baseline
from pytest_emogate.evaluate.bootstrap import BOOTSTRAP_REPS
from pytest_emogate.evaluate.checks import Outcome
from pytest_emogate.evaluate.compare import compare
from pytest_emogate.evaluate.metrics import GateResult, ScoredSample, compute_result, score_samples
from pytest_emogate.evaluate.regression import holm_adjusted, junit_properties, regression_ids, regression_outcome
from pytest_emogate.evaluate.thresholds import Thresholds, load_thresholds
from pytest_emogate.predictions import read_predictions
from tests.conftest import REPO, SEED, THRESHOLDS

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")


@pytest.fixture(scope="module")
def thresholds() -> Thresholds:
    """The shipped thresholds: alpha 0.05, max drop 1 point of accuracy and 3 of UAR, 10 per class."""
    return load_thresholds(THRESHOLDS)


@pytest.fixture(scope="module")
def seed() -> GateResult:
    """The published run, the baseline."""
    return compute_result(score_samples(read_predictions(SEED, LABELS), LABELS), LABELS)


def edited(result: GateResult, gold: str, breaks: int, fixes: int = 0) -> GateResult:
    """The result with the first `breaks` right answers of a class made wrong and `fixes` wrong ones made right."""
    samples: list[ScoredSample] = []
    for sample in result.samples:
        if sample.gold == gold and sample.correct and breaks:
            samples.append(dataclasses.replace(sample, predicted="neutral", correct=False))
            breaks -= 1
        elif sample.gold == gold and not sample.correct and fixes:
            samples.append(dataclasses.replace(sample, predicted=gold, correct=True, valid=True))
            fixes -= 1
        else:
            samples.append(sample)
    return compute_result(samples, result.labels)


def outcome(thresholds: Thresholds, baseline: GateResult, candidate: GateResult, key: str) -> Outcome:
    """The regression check `key` of the candidate against the baseline."""
    return regression_outcome(thresholds, compare(baseline, candidate, "baseline", reps=300), key)


def test_ids_are_the_metrics_then_the_classes(thresholds: Thresholds) -> None:
    assert regression_ids(thresholds) == ["accuracy", "uar", *LABELS]


def test_a_significant_drop_beyond_the_margin_fails(thresholds: Thresholds, seed: GateResult) -> None:
    answers = read_predictions(REPO / "fixtures" / "candidate_17_broken_5_fixed.csv", LABELS)
    regressed = compute_result(score_samples(answers, LABELS), LABELS)
    result = outcome(thresholds, seed, regressed, "accuracy")
    assert (result.id, result.passed, result.n) == ("regression[accuracy]", False, 834)
    assert (result.value, result.limit) == (pytest.approx(-12 / 834), -0.01)
    assert result.message == (
        "accuracy 90.65% -> 89.21% (-1.44 pts, max drop 1.00 pts): 5 fixed, 17 broken, one-sided exact McNemar "
        "p=0.0085 < alpha 0.05 (thresholds.yaml: regression.max_drop.accuracy); broken: samplenew_00000002 (gold "
        "neutral), samplenew_00000010 (gold neutral), samplenew_00000012 (gold neutral) and 14 more"
    )


def test_one_broken_surprise_answer_is_within_the_margin(thresholds: Thresholds, seed: GateResult) -> None:
    result = outcome(thresholds, seed, edited(seed, "surprise", breaks=1), "surprise")
    assert result.passed
    assert result.message == (
        "surprise recall 6/14 = 42.86% -> 5/14 = 35.71% (-7.14 pts, max drop 10.00 pts): 0 fixed, 1 broken, "
        "one-sided exact McNemar p=0.5000; within the margin (thresholds.yaml: regression.per_class_max_drop.surprise)"
    )


def test_a_large_drop_on_few_samples_is_not_significant(thresholds: Thresholds, seed: GateResult) -> None:
    result = outcome(thresholds, seed, edited(seed, "worried", breaks=7, fixes=2), "worried")
    assert result.passed
    assert result.message == (
        "worried recall 33/45 = 73.33% -> 28/45 = 62.22% (-11.11 pts, max drop 10.00 pts): 2 fixed, 7 broken, "
        "one-sided exact McNemar p=0.0898 >= alpha 0.05, not significant "
        "(thresholds.yaml: regression.per_class_max_drop.worried)"
    )


def test_a_large_significant_class_drop_fails(thresholds: Thresholds, seed: GateResult) -> None:
    result = outcome(thresholds, seed, edited(seed, "worried", breaks=6), "worried")
    assert not result.passed
    assert result.message.endswith(
        "(-13.33 pts, max drop 10.00 pts): 0 fixed, 6 broken, one-sided exact McNemar p=0.0156 < alpha 0.05 "
        "(thresholds.yaml: regression.per_class_max_drop.worried); broken: samplenew_00000006 (gold worried), "
        "samplenew_00000045 (gold worried), samplenew_00000064 (gold worried) and 3 more"
    )


def test_an_improvement_never_fails(thresholds: Thresholds, seed: GateResult) -> None:
    better = edited(edited(seed, "neutral", breaks=0, fixes=20), "surprise", breaks=0, fixes=8)
    for key in ("accuracy", "uar", "neutral", "surprise"):
        result = outcome(thresholds, seed, better, key)
        assert result.passed and result.value > 0 and "; no drop (" in result.message, key


def test_a_bootstrap_metric_reports_its_interval(thresholds: Thresholds, seed: GateResult) -> None:
    worse = edited(edited(seed, "worried", breaks=33), "surprise", breaks=6)
    result = outcome(thresholds, seed, worse, "uar")
    assert not result.passed
    assert result.message == (  # deterministic: the same answers always give the same interval and p
        "uar 80.52% -> 61.16% (-19.37 pts, max drop 3.00 pts): paired bootstrap 95% CI of the difference -24.28 to "
        "-14.49 pts, one-sided p=0.0033 < alpha 0.05 (thresholds.yaml: regression.max_drop.uar); broken: "
        "samplenew_00000006 (gold worried), samplenew_00000045 (gold worried), samplenew_00000064 (gold worried) "
        "and 36 more"
    )


def test_a_drop_of_exactly_the_margin_passes(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("labels: [yes, no]\nregression: {alpha: 0.5, max_drop: {accuracy: 0.01}}\n", encoding="utf-8")
    small = load_thresholds(path)
    samples = [ScoredSample(f"s{i:03}", "yes", "yes", "yes", True, "yes", True) for i in range(100)]
    baseline = compute_result(samples, small.labels)
    candidate = compute_result([dataclasses.replace(samples[0], predicted="no", correct=False), *samples[1:]],
                               small.labels)  # fmt: skip
    result = regression_outcome(small, compare(baseline, candidate, "b", reps=10), "accuracy")
    assert result.passed and "within the margin" in result.message


def test_junit_properties(thresholds: Thresholds, seed: GateResult) -> None:
    comparison = compare(seed, edited(seed, "surprise", breaks=1), "b", reps=10)
    assert dict(junit_properties(comparison, "surprise")) == {
        "emogate_baseline": 6 / 14, "emogate_candidate": 5 / 14, "emogate_test": "mcnemar",
        "emogate_p_value": 0.5, "emogate_fixed": 0, "emogate_broken": 1,
    }  # fmt: skip
    assert "emogate_fixed" not in dict(junit_properties(comparison, "uar"))


def test_a_baseline_needs_a_regression_section(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("labels: [neutral, angry, happy, sad, worried, surprise]\n", encoding="utf-8")
    expected = (
        r"^--emogate-baseline base\.csv: .*thresholds\.yaml has no 'regression:' section, so nothing would be "
        r"compared; expected e\.g\. regression: "
    )
    with pytest.raises(pytest.UsageError, match=expected):
        read_baseline(Path("base.csv"), load_thresholds(path))


def test_the_least_alpha_a_file_may_set_is_one_a_bootstrap_check_can_fail_at(tmp_path: Path, seed: GateResult) -> None:
    """A drop every resample shows gets p = 1/1001: at alpha 0.001, just above it, the check fails; at 1/1001 it
    never could, and the file is refused. Under Holm, b bootstrap-tested checks at that p are each adjusted to
    b/1001 however small the exact tests' p, the least alpha the file may then set."""
    path = tmp_path / "thresholds.yaml"
    labels = ", ".join(LABELS)
    path.write_text(f"labels: [{labels}]\nregression: {{alpha: 0.001, max_drop: {{uar: 0.03}}}}\n", encoding="utf-8")
    comparison = compare(seed, edited(seed, "worried", breaks=30), "baseline")
    assert comparison.metrics["uar"].p_value == 1 / (BOOTSTRAP_REPS + 1)
    assert not regression_outcome(load_thresholds(path), comparison, "uar").passed
    path.write_text(path.read_text(encoding="utf-8").replace("0.001", str(1 / (BOOTSTRAP_REPS + 1))), encoding="utf-8")
    with pytest.raises(pytest.UsageError, match=r"can never be met by regression\.max_drop\.uar"):
        load_thresholds(path)
    least = 1 / (BOOTSTRAP_REPS + 1)
    adjusted = holm_adjusted({"accuracy": 0.0, "uar": least, "macro_f1": least})
    assert adjusted == {"accuracy": 0.0, "uar": 2 * least, "macro_f1": 2 * least}
