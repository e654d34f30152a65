"""The paired statistics: exact McNemar against hand-computed cases and scipy, pairing errors, the bootstrap."""

from __future__ import annotations

import math
import random
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from pytest_emogate.evaluate.bootstrap import bootstrap_p_value, metric_intervals, percentile_interval
from pytest_emogate.evaluate.compare import Pair, check_same_samples, compare, mcnemar_one_sided
from pytest_emogate.evaluate.metrics import GateResult, compute_result, score_samples
from pytest_emogate.predictions import Prediction, read_predictions
from tests.conftest import REPO, SEED

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
REGRESSED = REPO / "fixtures" / "candidate_17_broken_5_fixed.csv"
SLIPPED = REPO / "fixtures" / "candidate_1_surprise_broken.csv"


def result_of(path: Path) -> GateResult:
    """The gate result of a predictions file under the shipped taxonomy (invalid answers count as wrong)."""
    return compute_result(score_samples(read_predictions(path, LABELS), LABELS), LABELS)


@pytest.fixture(scope="module")
def seed() -> GateResult:
    """The published run: the baseline of every comparison here."""
    return result_of(SEED)


@pytest.mark.parametrize(
    ("broken", "fixed", "exact"),
    [
        (17, 5, 35443 / 2**22),  # C(22,17) + ... + C(22,22) = 26334 + 7315 + 1540 + 231 + 22 + 1
        (1, 0, 1 / 2),
        (0, 0, 1.0),
        (0, 3, 1.0),
        (3, 0, 1 / 8),
        (6, 0, 1 / 64),
        (5, 5, 638 / 1024),  # C(10,5..10) = 252 + 210 + 120 + 45 + 10 + 1
    ],
)
def test_mcnemar_exact_cases(broken: int, fixed: int, exact: float) -> None:
    assert mcnemar_one_sided(broken, fixed) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize(("broken", "fixed"), [(17, 5), (5, 17), (1, 0), (12, 11), (40, 20), (600, 540), (3, 9)])
def test_mcnemar_matches_scipy_binomtest(broken: int, fixed: int) -> None:
    expected = binomtest(broken, broken + fixed, 0.5, alternative="greater").pvalue
    assert mcnemar_one_sided(broken, fixed) == pytest.approx(expected, rel=1e-9)


def test_seventeen_broken_against_five_fixed_is_significant_and_one_broken_is_not() -> None:
    assert mcnemar_one_sided(17, 5) < 0.05
    assert mcnemar_one_sided(1, 0) >= 0.05


def test_pair_outcomes() -> None:
    assert Pair("a", "sad", "happy", "sad").outcome == "fixed"
    assert Pair("a", "sad", "sad", "happy").outcome == "broken"
    assert Pair("a", "sad", "sad", "sad").outcome == "both_right"
    assert Pair("a", "sad", "happy", "angry").outcome == "both_wrong"


def test_mismatched_samples_name_every_difference() -> None:
    baseline = {"a": "sad", "b": "sad", "c": "happy", "d": "angry", "e": "sad", "f": "sad", "g": "sad"}
    candidate = {"a": "sad", "b": "happy", "x": "sad"}
    with pytest.raises(pytest.UsageError) as caught:
        check_same_samples(baseline, candidate, "baseline base.csv does not pair with the answers")
    assert str(caught.value) == (
        "baseline base.csv does not pair with the answers: 3 problems\n"
        "  - 5 names only in the baseline: c, d, e, ... (2 more)\n"
        "  - 1 name only in the answers: x\n"
        "  - 1 gold label differ: b (baseline 'sad', answers 'happy')\n"
        "  expected the same samples with the same gold labels: regenerate the baseline on this data"
    )


def test_the_regressed_candidate(seed: GateResult) -> None:
    comparison = compare(seed, result_of(REGRESSED), "baseline", reps=200)
    assert comparison.counts() == {"fixed": 5, "broken": 17, "both_right": 739, "both_wrong": 73}
    accuracy = comparison.metrics["accuracy"]
    assert (accuracy.fixed, accuracy.broken, accuracy.test) == (5, 17, "mcnemar")
    assert accuracy.delta == pytest.approx(-12 / 834)
    assert accuracy.p_value == pytest.approx(35443 / 2**22)
    assert accuracy.ci95[0] < accuracy.delta < accuracy.ci95[1] < 0
    sad = comparison.per_class["sad"]
    assert (sad.n, sad.fixed, sad.broken, sad.baseline, sad.candidate) == (257, 0, 5, 250 / 257, 245 / 257)
    assert sad.p_value == pytest.approx(1 / 32)
    assert comparison.metrics["uar"].test == "bootstrap"


def test_the_surprise_slip(seed: GateResult) -> None:
    comparison = compare(seed, result_of(SLIPPED), "baseline", reps=200)
    surprise = comparison.per_class["surprise"]
    assert (surprise.n, surprise.fixed, surprise.broken, surprise.p_value) == (14, 0, 1, 0.5)
    assert surprise.delta == pytest.approx(-1 / 14)
    assert comparison.counts("surprise") == {"fixed": 0, "broken": 1, "both_right": 5, "both_wrong": 8}


def test_the_bootstrap_is_deterministic_and_ignores_file_order(seed: GateResult) -> None:
    candidate = result_of(REGRESSED)
    shuffled = list(candidate.samples)
    random.Random(3).shuffle(shuffled)
    reordered = compute_result(shuffled, LABELS)
    first, second = compare(seed, candidate, "b", reps=200), compare(seed, reordered, "b", reps=200)
    assert first.metrics == second.metrics and first.per_class == second.per_class
    assert first.pairs == second.pairs and [pair.name for pair in first.pairs] == sorted(s.name for s in shuffled)
    other_seed = compare(seed, candidate, "b", reps=200, seed=1)
    assert other_seed.metrics["uar"].ci95 != first.metrics["uar"].ci95


@pytest.mark.parametrize("shuffle", [False, True])
def test_results_that_do_not_pair_are_a_usage_error_in_any_order(seed: GateResult, shuffle: bool) -> None:
    samples = list(result_of(REGRESSED).samples)
    samples[3] = samples[3].__class__(**{**samples[3].__dict__, "name": "renamed"})
    samples[5] = samples[5].__class__(
        **{**samples[5].__dict__, "gold": "angry" if samples[5].gold != "angry" else "sad"}
    )
    if shuffle:
        random.Random(4).shuffle(samples)
    with pytest.raises(pytest.UsageError) as caught:
        compare(seed, compute_result(samples, LABELS), "baseline b.csv does not pair with the answers", reps=10)
    message = str(caught.value)
    assert "1 name only in the baseline: samplenew_00000004" in message
    assert "1 name only in the answers: renamed" in message and "1 gold label differ: samplenew_00000006" in message


def test_identical_answers_show_no_change(seed: GateResult) -> None:
    comparison = compare(seed, seed, "b", reps=200)
    for delta in (*comparison.metrics.values(), *comparison.per_class.values()):
        assert (delta.delta, delta.p_value, delta.ci95) == (0.0, 1.0, (0.0, 0.0))


def test_a_clear_macro_drop_is_significant_under_the_bootstrap(seed: GateResult) -> None:
    worse = [
        sample.__class__(**{**sample.__dict__, "predicted": "neutral", "correct": False})
        if sample.gold in ("worried", "surprise") and sample.correct
        else sample
        for sample in seed.samples
    ]
    comparison = compare(seed, compute_result(worse, LABELS), "b", reps=300)
    uar = comparison.metrics["uar"]
    assert uar.test == "bootstrap" and uar.delta < -0.1
    assert uar.p_value == pytest.approx(1 / 301) and uar.ci95[1] < 0


def test_percentile_interval_matches_numpy() -> None:
    values = [random.Random(7).gauss(0, 1) for _ in range(999)]
    low, high = percentile_interval(values)
    assert (low, high) == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])))


def test_bootstrap_p_value_counts_the_resamples_without_a_drop() -> None:
    assert bootstrap_p_value([-0.1] * 99) == pytest.approx(1 / 100)
    assert bootstrap_p_value([-0.1] * 50 + [0.0] * 49) == pytest.approx(50 / 100)
    assert bootstrap_p_value([]) == 1.0


def test_metric_intervals_contain_the_run(seed: GateResult) -> None:
    intervals = metric_intervals(seed, reps=300)
    for metric, (low, high) in intervals.items():
        assert low <= seed.metrics[metric] <= high, metric
    assert not math.isclose(*intervals["uar"])


@pytest.mark.parametrize("path", [REGRESSED, SLIPPED, SEED])
def test_outcome_counts_from_the_cells_are_the_pairs_outcomes(seed: GateResult, path: Path) -> None:
    """compare() counts fixed/broken/both right/both wrong from the pairs' cell counts: they must be what each
    pair's own outcome says, per class and overall."""
    comparison = compare(seed, result_of(path), "b", reps=10)
    for gold in (None, *LABELS):
        expected = {outcome: 0 for outcome in ("fixed", "broken", "both_right", "both_wrong")}
        for pair in comparison.pairs:
            if gold in (None, pair.gold):
                expected[pair.outcome] += 1
        assert comparison.counts(gold) == expected


def test_a_comparison_of_many_labels_never_holds_every_cell_of_every_resample() -> None:
    """The bootstrap draws each class's non-empty cells and folds them into each resample's per-class counts: its
    memory grows with the resamples times the labels. A [resample, class, cell] array (labels cubed: 8 GB at 100
    labels, a MemoryError at 150) or even a confusion matrix per resample exceeds the bound here."""
    labels = tuple(f"label{index}" for index in range(60))
    golds = [labels[index % len(labels)] for index in range(5 * len(labels))]

    def run(step: int) -> GateResult:
        answers = [labels[index * step % len(labels)] if index % 3 else gold for index, gold in enumerate(golds)]
        predictions = [Prediction(f"s{index}", gold, answers[index]) for index, gold in enumerate(golds)]
        return compute_result(score_samples(predictions, labels), labels)

    baseline, candidate = run(7), run(11)
    compare(baseline, candidate, "b", reps=1)  # imports and caches outside the measure
    reps, columns = 100, len(candidate.columns)
    tracemalloc.start()
    try:
        compare(baseline, candidate, "b", reps=reps)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < reps * len(labels) * columns * 8  # one stack of int64 confusion matrices, 2.9 MB
