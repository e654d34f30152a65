"""The stratified paired bootstrap's seeded scheme (docs/statistics.md): the draws follow the documented recipe
exactly, so they are the same on every machine, Python and numpy version; a few numbers are pinned."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from pytest_emogate.evaluate.bootstrap import (
    BOOTSTRAP_SEED,
    bootstrap_p_value,
    metric_intervals,
    percentile_interval,
    resample_stratum,
)
from pytest_emogate.evaluate.compare import compare
from pytest_emogate.evaluate.metrics import GateResult, compute_result, confusion_metrics, score_samples
from pytest_emogate.predictions import Prediction
from tests.conftest import SEED
from tests.test_compare import REGRESSED, SLIPPED, result_of


def recipe_counts(strata: list[list[int]], cells: int, reps: int, seed: int) -> list[list[list[int]]]:
    """docs/statistics.md's recipe in plain Python, trial bits assembled as Python integers: class i draws from
    PCG64(SeedSequence(seed, spawn_key=(i,))); its cells, most frequent first (ties: lower code), are a chain of
    binomials, the last cell the rest; a binomial's digits come from long division, and at each digit resample r
    takes `width` raw outputs (width from the largest count of undecided trials), whose low bits are its
    undecided trials' bits, resample after resample."""
    counts = [[[0] * cells for _ in strata] for _ in range(reps)]
    for index, codes in enumerate(strata):
        if not codes:
            continue
        stream = np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(index,)))
        kinds = sorted(Counter(codes).items(), key=lambda kind: (-kind[1], kind[0]))
        remaining, rest = [len(codes)] * reps, len(codes)
        for cell, count in kinds[:-1]:
            successes, undecided, remainder = [0] * reps, remaining[:], count
            while max(undecided) > 0:
                remainder *= 2
                digit = remainder >= rest
                remainder -= rest if digit else 0
                width = (max(undecided) + 63) // 64
                raw = stream.random_raw(reps * width).tolist()
                for rep in range(reps):
                    bits = sum(word << (64 * j) for j, word in enumerate(raw[rep * width : (rep + 1) * width]))
                    ones = bin(bits & ((1 << undecided[rep]) - 1)).count("1")
                    if digit:
                        successes[rep] += undecided[rep] - ones
                        undecided[rep] = ones
                    else:
                        undecided[rep] -= ones
            for rep in range(reps):
                counts[rep][index][cell] = successes[rep]
                remaining[rep] -= successes[rep]
            rest -= count
        for rep in range(reps):
            counts[rep][index][kinds[-1][0]] = remaining[rep]
    return counts


def cell_counts(strata: list[list[int]], cells: int) -> np.ndarray:
    """The [class, cell] counts of the pairs' cell codes."""
    return np.array([np.bincount(np.array(codes, dtype=np.intp), minlength=cells) for codes in strata])


def resample_counts(present: np.ndarray, reps: int, seed: int) -> np.ndarray:
    """The [reps, class, cell] counts of every class's resamples, drawn by resample_stratum from its non-empty
    cells (in code order)."""
    counts = np.zeros((reps, *present.shape), dtype=np.int64)
    for index, row in enumerate(present):
        if row.any():
            cells = np.flatnonzero(row)
            counts[:, index, cells] = resample_stratum(row[cells], index, reps, seed)
    return counts


def random_strata(rng: random.Random, cells: int) -> list[list[int]]:
    sizes = [rng.choice([0, 1, 2, 13, 14, 15, 57, 300]) for _ in range(5)]
    skew = [rng.random() ** 3 for _ in range(cells)]  # a few frequent cells, many rare ones, as answers are
    return [rng.choices(range(cells), weights=skew, k=size) for size in sizes]


@pytest.mark.parametrize("case", range(6))
def test_the_draws_follow_the_documented_recipe(case: int) -> None:
    rng = random.Random(case)
    cells, reps = rng.choice([4, 9, 49]), rng.choice([1, 7, 20])
    strata = random_strata(rng, cells)
    got = resample_counts(cell_counts(strata, cells), reps, 1000 + case)
    assert got.tolist() == recipe_counts(strata, cells, reps, 1000 + case)
    assert (got.sum(axis=2) == [len(codes) for codes in strata]).all()  # every class keeps its size


def test_the_popcount_without_numpy_2_counts_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    present = cell_counts([[0, 1, 1, 2] * 40 + [3], [3, 3, 0]], 4)
    expected = resample_counts(present, 30, 9)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert (resample_counts(present, 30, 9) == expected).all()


def test_a_class_draws_from_its_own_stream() -> None:
    """A class's resamples depend on its own cell counts only: adding samples to another class moves nothing."""
    present = cell_counts([[0, 1, 1, 2] * 5, [3, 3, 0]], 4)
    grown = cell_counts([[0, 1, 1, 2] * 5, [3, 3, 0, 1, 2, 2, 1]], 4)
    assert (resample_counts(present, 50, 9)[:, 0] == resample_counts(grown, 50, 9)[:, 0]).all()
    assert (resample_counts(present, 50, 9)[:, 1] != resample_counts(grown, 50, 9)[:, 1]).any()


def test_the_resamples_are_multinomial() -> None:
    """Each cell's count over 20,000 resamples of a 14-pair class has the multinomial's mean n p and variance
    n p (1 - p) (deterministic: the seed is fixed; the bounds are about four standard errors)."""
    counts = resample_counts(np.array([[9, 3, 1, 1]]), 20_000, 834)[:, 0]
    for cell, share in enumerate([9 / 14, 3 / 14, 1 / 14, 1 / 14]):
        mean, variance = 14 * share, 14 * share * (1 - share)
        assert counts[:, cell].mean() == pytest.approx(mean, abs=4 * (variance / 20_000) ** 0.5)
        assert counts[:, cell].var() == pytest.approx(variance, rel=0.05)
    together = counts[:, 1] + counts[:, 2]  # cells merge as a multinomial's do: binomial with the summed share
    assert together.var() == pytest.approx(14 * (4 / 14) * (10 / 14), rel=0.05)


@pytest.fixture(scope="module")
def seed() -> GateResult:
    return result_of(SEED)


def test_pinned_numbers_of_the_regressed_candidate(seed: GateResult) -> None:
    """Computed once with the scheme above (numpy 2, x86_64) and written here: any change of the draws fails."""
    comparison = compare(seed, result_of(REGRESSED), "baseline")
    assert (comparison.reps, comparison.seed) == (1000, BOOTSTRAP_SEED)
    uar, macro_f1 = comparison.metrics["uar"], comparison.metrics["macro_f1"]
    assert uar.ci95 == pytest.approx(PINNED["regressed uar ci95"], abs=1e-12)
    assert uar.p_value == PINNED["regressed uar p"]
    assert macro_f1.ci95 == pytest.approx(PINNED["regressed macro_f1 ci95"], abs=1e-12)
    assert macro_f1.p_value == PINNED["regressed macro_f1 p"]
    assert comparison.metrics["accuracy"].ci95 == pytest.approx(PINNED["regressed accuracy ci95"], abs=1e-12)
    assert comparison.per_class["sad"].ci95 == pytest.approx(PINNED["regressed sad ci95"], abs=1e-12)


def test_pinned_numbers_of_the_surprise_slip(seed: GateResult) -> None:
    comparison = compare(seed, result_of(SLIPPED), "baseline")
    assert comparison.per_class["surprise"].ci95 == pytest.approx(PINNED["slipped surprise ci95"], abs=1e-12)
    assert comparison.metrics["weighted_f1"].p_value == PINNED["slipped weighted_f1 p"]


def test_pinned_intervals_of_one_run(seed: GateResult) -> None:
    intervals = metric_intervals(seed)
    assert intervals["uar"] == pytest.approx(PINNED["seed uar interval"], abs=1e-12)
    assert intervals["weighted_f1"] == pytest.approx(PINNED["seed weighted_f1 interval"], abs=1e-12)


PINNED: dict[str, object] = {
    "regressed uar ci95": (-0.015873786837328204, 0.031378500987878685),
    "regressed uar p": 601 / 1001,
    "regressed macro_f1 ci95": (-0.014405184416732279, 0.030819410189494332),
    "regressed macro_f1 p": 648 / 1001,
    "regressed accuracy ci95": (-0.02517985611510798, -0.003597122302158251),
    "regressed sad ci95": (-0.03891050583657585, -0.0038910505836575737),
    "slipped surprise ci95": (-0.2142857142857143, 0.0),
    "slipped weighted_f1 p": 342 / 1001,
    "seed uar interval": (0.7514339280644975, 0.8557000960803508),
    "seed weighted_f1 interval": (0.8848735935397009, 0.9221484880389166),
}
"""Interval ends and p-values (k / 1001: k of the 1000 resamples show no drop, plus the observed run)."""


@pytest.mark.parametrize("case", range(4))
def test_the_folded_counts_give_the_stacked_matrices_metrics(case: int) -> None:
    """compare() and metric_intervals() fold each class's drawn cells into per-class counts instead of stacking a
    confusion matrix per resample: every interval and p-value is bit for bit that of the stacked matrices of the
    same draws (random taxonomies, empty classes, invalid answers counted wrong or mapped to a label)."""
    rng = random.Random(case)
    labels = tuple(f"l{index}" for index in range(rng.choice([2, 5, 9])))
    invalid = rng.choice(["wrong", labels[-1]])
    golds = [rng.choice(labels[: max(1, len(labels) - 1)]) for _ in range(rng.choice([30, 200]))]

    def run() -> GateResult:
        answers = [gold if rng.random() < 0.6 else rng.choice([*labels, "blah"]) for gold in golds]
        predictions = [Prediction(f"s{index}", gold, answers[index]) for index, gold in enumerate(golds)]
        return compute_result(score_samples(predictions, labels, invalid=invalid), labels, invalid)

    baseline, candidate, reps = run(), run(), 60
    comparison = compare(baseline, candidate, "b", reps=reps, seed=case)
    width, column = len(candidate.columns), {label: index for index, label in enumerate(candidate.columns)}
    present = np.zeros((len(labels), width * width), dtype=np.int64)
    for pair in comparison.pairs:
        present[labels.index(pair.gold), column[pair.baseline] * width + column[pair.candidate]] += 1
    cells = resample_counts(present, reps, case).reshape(reps, len(labels), width, width)
    (before, before_classes), (after, after_classes) = (confusion_metrics(cells.sum(axis=axis)) for axis in (3, 2))
    for name, delta in comparison.metrics.items():
        assert delta.ci95 == percentile_interval(after[name] - before[name])
        assert delta.test == "mcnemar" or delta.p_value == bootstrap_p_value(after[name] - before[name])
    for index, label in enumerate(labels):
        recall_draws = after_classes["recall"][:, index] - before_classes["recall"][:, index]
        assert comparison.per_class[label].ci95 == percentile_interval(recall_draws)
    matrix = np.array([list(candidate.confusion[gold].values()) for gold in labels], dtype=np.int64)
    own, _ = confusion_metrics(resample_counts(matrix, reps, case))
    assert metric_intervals(candidate, reps, case) == {name: percentile_interval(own[name]) for name in own}
