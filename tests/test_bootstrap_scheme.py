"""The stratified paired bootstrap's seeded scheme (docs/statistics.md): the draws follow the documented recipe
exactly, so they are the same on every machine, Python and numpy version; a few numbers are pinned."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pytest_emogate.evaluate import compare as compare_module
from pytest_emogate.evaluate.compare import BOOTSTRAP_SEED, compare, metric_intervals, resample_counts
from pytest_emogate.evaluate.metrics import GateResult
from tests.conftest import SEED
from tests.test_compare import REGRESSED, SLIPPED, result_of


def recipe_counts(strata: list[list[int]], cells: int, reps: int, seed: int) -> list[list[list[int]]]:
    """docs/statistics.md's recipe, word by word in plain Python: class i draws from
    PCG64(SeedSequence(seed, spawn_key=(i,))); each raw 64-bit output is two 32-bit words, low first; resample r
    takes words r*n .. r*n+n-1 and word w picks position (w * n) >> 32."""
    counts = [[[0] * cells for _ in strata] for _ in range(reps)]
    for index, codes in enumerate(strata):
        n = len(codes)
        if not n:
            continue
        stream = np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(index,)))
        words = []
        for raw in stream.random_raw((reps * n + 1) // 2).tolist():
            words += [raw & 0xFFFFFFFF, raw >> 32]
        for rep in range(reps):
            for word in words[rep * n : (rep + 1) * n]:
                counts[rep][index][codes[(word * n) >> 32]] += 1
    return counts


def random_strata(rng: random.Random, cells: int) -> list[list[int]]:
    sizes = [rng.choice([0, 1, 2, 13, 14, 15, 57, 300]) for _ in range(5)]
    return [[rng.randrange(cells) for _ in range(size)] for size in sizes]


@pytest.mark.parametrize("case", range(6))
def test_the_draws_follow_the_documented_recipe(case: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every code path (small classes counted together, large ones row by row, the float and the integer
    multiply-shift, chunks of any size, odd class sizes) draws exactly the recipe's words."""
    rng = random.Random(case)
    cells, reps = rng.choice([4, 9, 49]), rng.choice([1, 7, 20])
    strata = random_strata(rng, cells)
    monkeypatch.setattr(compare_module, "CHUNK_WORDS", rng.choice([1, 64, 1000, 1 << 20]))
    monkeypatch.setattr(compare_module, "BINCOUNT_ROWS_FROM", rng.choice([1, 50, 1024]))
    monkeypatch.setattr(compare_module, "FLOAT_EXACT_SIZE", rng.choice([0, 1 << 21]))
    got = resample_counts([np.array(codes, dtype=np.intp) for codes in strata], cells, reps, 1000 + case)
    assert got.tolist() == recipe_counts(strata, cells, reps, 1000 + case)
    assert (got.sum(axis=2) == [len(codes) for codes in strata]).all()  # every class keeps its size


def test_a_class_draws_from_its_own_stream() -> None:
    """A class's resamples depend on its own answers only: adding samples to another class moves nothing."""
    strata = [np.array([0, 1, 1, 2] * 5, dtype=np.intp), np.array([3, 3, 0], dtype=np.intp)]
    grown = [strata[0], np.array([3, 3, 0, 1, 2, 2, 1], dtype=np.intp)]
    assert (resample_counts(strata, 4, 50, 9)[:, 0] == resample_counts(grown, 4, 50, 9)[:, 0]).all()


def test_positions_are_the_exact_multiply_shift_for_every_word() -> None:
    """The float path is exact: floor(w * (n / 2^32)) equals (w * n) >> 32 at the ends of the word range."""
    for n in (1, 3, 14, 25_700, (1 << 21) - 1, 1 << 21):
        words = np.array([0, 1, 2**31, 2**32 - 2, 2**32 - 1], dtype=np.uint32)
        got = np.multiply(words, n * 2.0**-32).astype(np.intp)
        assert got.tolist() == [(int(word) * n) >> 32 for word in words.tolist()]


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
    "regressed uar ci95": (-0.01612756916618722, 0.032137002029009404),
    "regressed uar p": 587 / 1001,
    "regressed macro_f1 ci95": (-0.014131460661543423, 0.0319404257510384),
    "regressed macro_f1 p": 640 / 1001,
    "regressed accuracy ci95": (-0.026378896882494063, -0.003597122302158251),
    "regressed sad ci95": (-0.03891050583657585, -0.0038910505836575737),
    "slipped surprise ci95": (-0.21428571428571436, 0.0),
    "slipped weighted_f1 p": 359 / 1001,
    "seed uar interval": (0.753651097157688, 0.8536524607787872),
    "seed weighted_f1 interval": (0.8837407259302716, 0.9235754095149495),
}
"""Interval ends and p-values (k / 1001: k of the 1000 resamples show no drop, plus the observed run)."""
