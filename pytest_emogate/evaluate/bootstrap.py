"""The stratified paired bootstrap: a seeded draw of resampled cell counts, its percentile interval and p-value.

A comparison (compare.py) resamples its pairs within each gold class; one run's own intervals (metric_intervals,
for --emogate-ratchet) resample its confusion matrix the same way. Either way what is drawn is each class's cell
counts (only the cells that hold pairs: a class of n pairs has at most n, however many labels), and every
metric of every resample is computed at once from what the metrics read of each class's row and column
(metrics.count_metrics): the draws' memory grows with the resamples times the labels, never with a confusion
matrix per resample (a thousand of 1,000 labels are 8 GB) or with every cell a class could have (labels cubed).

The scheme (docs/statistics.md says it for users), fixed so that it never depends on the platform, the Python
version or numpy's choice of sampling algorithms: integers and a bit generator's raw output only.

- A resample of a gold class draws as many pairs as the class has, with replacement: its counts of each
  (baseline, candidate) cell are a multinomial of the class's size over the class's cell counts. That is what
  is drawn, for all resamples at once, never the pairs one by one (83.4 million draws for 83,400 samples).
- Class i (its index in the taxonomy, empty classes included) draws from its own stream,
  `PCG64(SeedSequence(seed, spawn_key=(i,)))`, consumed through `random_raw` (raw 64-bit outputs, which
  numpy's stream-compatibility policy keeps fixed, as it keeps SeedSequence).
- The multinomial is a chain of binomials: the class's cells by count, most frequent first (ties: the lower
  code); cell j's count is Binomial(the pairs not yet drawn, c_j / (c_j + ... + c_m)), the last cell the rest.
- A binomial compares each trial's uniform number with the probability one binary digit at a time (`_binomial`):
  exact for the rational probability; a digit costs one popcount of raw bits per resample, about two random
  bits a trial in all.

Where libraries serve and where not: numpy's Generator.binomial or .multinomial draw the same distribution,
but their algorithms may change between numpy versions (NEP 19) and rest on floating-point libm calls, which
may differ between platforms. Drawing every pair's position from a 32-bit word and counting them with bincount
was exact too, but ten times slower (0.40 s against 0.04 s for 83,400 pairs, bench/RESULTS.md).
sklearn's metrics take label arrays, not counts, and validate on every call (metrics.py's docstring measures
it).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_emogate.evaluate.metrics import METRICS, GateResult, count_metrics

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Draws = tuple[dict[str, NDArray[np.float64]], dict[str, NDArray[np.float64]]]
    """One run's metrics on every resample: each aggregate metric [reps], each per-class statistic [reps, class]."""
    Stratum = tuple[NDArray[np.int64], NDArray[np.intp]]
    """One gold class's pairs: its non-empty cells' pair counts, in the order of the cells' codes, and the
    predicted column of each cell in each run [run, cell]."""

BOOTSTRAP_REPS = 1000
BOOTSTRAP_SEED = 834
"""Fixed so that a rerun on the same answers gives the same interval and p-value (any seed would do)."""


def resampled_metrics(strata: Sequence[Stratum], runs: int, columns: int, reps: int, seed: int) -> list[Draws]:
    """The stratified bootstrap of `runs` runs' confusion matrices (`columns` predicted columns; the gold labels
    are the strata), drawn from the same resampled pairs: each run's metrics on each of `reps` resamples.

    Class by class, its cell counts are drawn (`resample_stratum`) and folded into what the metrics read of each
    resample (each class's size, right answers and answers with its label), so memory grows with the resamples
    times the columns, never with a matrix, let alone a class's cells, per resample.
    """
    import numpy as np

    labels = len(strata)
    sizes = np.zeros(labels, dtype=np.int64)
    correct = np.zeros((runs, reps, labels), dtype=np.int64)
    predicted = np.zeros((runs, reps, columns), dtype=np.int64)
    for index, (counts, cell_columns) in enumerate(strata):
        if not len(counts):
            continue
        drawn = resample_stratum(counts, index, reps, seed)
        sizes[index] = counts.sum()
        for run, cell_column in enumerate(cell_columns):
            correct[run, :, index] = drawn[:, cell_column == index].sum(axis=1)
            _add_by_column(predicted[run], cell_column, drawn)
    n = np.broadcast_to(sizes, (reps, labels))  # stratified: every resample keeps each class's size
    return [count_metrics(n, correct[run], predicted[run, :, :labels]) for run in range(runs)]


def _add_by_column(totals: NDArray[np.int64], cell_column: NDArray[np.intp], drawn: NDArray[np.int64]) -> None:
    """totals[:, c] += the drawn counts of every cell in column c (cells may share one), every resample at once."""
    import numpy as np

    order = np.argsort(cell_column, kind="stable")
    ordered = cell_column[order]
    starts = np.flatnonzero(np.diff(ordered, prepend=-1))
    totals[:, ordered[starts]] += np.add.reduceat(drawn[:, order], starts, axis=1)


def resample_stratum(counts: NDArray[np.int64], index: int, reps: int, seed: int) -> NDArray[np.int64]:
    """Class `index`'s [reps, cell] counts in `reps` resamples with replacement of its pairs, from its non-empty
    cells' pair counts in the order of their codes, drawn by the module's documented scheme from the class's own
    stream (a class's resamples depend on its own cell counts only).

    Stratifying keeps every class in every resample (a 14-sample class would otherwise vanish now and then and
    change what a macro average averages over). A multinomial of the class's size over its cells, every resample
    at once, as conditional binomials, the most frequent cell first (ties: the lower code), the last cell the rest.
    """
    import numpy as np

    stream = np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(index,)))
    order = sorted(enumerate(counts.tolist()), key=lambda cc: -cc[1])
    out = np.zeros((reps, len(counts)), dtype=np.int64)
    rest = int(counts.sum())  # the pairs of the cells not drawn yet
    remaining = np.full(reps, rest, dtype=np.int64)
    for cell, count in order[:-1]:
        drawn = _binomial(stream, remaining, count, rest)
        out[:, cell] = drawn
        remaining -= drawn
        rest -= count
    out[:, order[-1][0]] = remaining
    return out


def _binomial(stream: np.random.PCG64, trials: NDArray[np.int64], num: int, den: int) -> NDArray[np.int64]:
    """Binomial(trials[r], num / den) for every r, exactly: each trial compares a uniform number with num / den
    one binary digit at a time (the digits by long division); at each digit every undecided trial takes one
    random bit, and a bit below the digit decides it a success, above it a failure. A resample's undecided
    trials are the low bits of its `width` raw outputs, so a digit costs one popcount per resample."""
    import numpy as np

    successes = np.zeros_like(trials)
    undecided = trials.copy()
    remainder = num
    masks = _low_bit_masks()
    while (most := int(undecided.max())) > 0:
        remainder *= 2
        digit = remainder >= den
        remainder -= den if digit else 0
        width = (most + 63) >> 6
        words = stream.random_raw(len(trials) * width).reshape(len(trials), width)
        bits = undecided[:, None] - np.arange(0, 64 * width, 64)
        np.clip(bits, 0, 64, out=bits)
        words &= masks[bits]
        ones = _popcount_rows(words)
        if digit:  # a 0 bit is below the digit: decided, a success; a 1 bit stays level
            successes += undecided - ones
            undecided = ones
        else:  # a 1 bit is above the digit: decided, a failure
            undecided -= ones
    return successes


@functools.cache
def _low_bit_masks() -> NDArray[np.uint64]:
    """masks[b]: the 64-bit word whose b lowest bits are set, for b in 0..64."""
    import numpy as np

    return np.array([(1 << bits) - 1 for bits in range(65)], dtype=np.uint64)


def _popcount_rows(words: NDArray[np.uint64]) -> NDArray[np.int64]:
    """The number of set bits in each row (numpy 2's bitwise_count; a byte table on numpy 1)."""
    import numpy as np

    if hasattr(np, "bitwise_count"):
        counted: NDArray[np.int64] = np.bitwise_count(words).sum(axis=1, dtype=np.int64)
        return counted
    table = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.int64)
    return table[words.view(np.uint8)].reshape(len(words), -1).sum(axis=1)  # type: ignore[no-any-return]


def percentile_interval(draws: Sequence[float] | NDArray[np.float64], level: float = 0.95) -> tuple[float, float]:
    """The central percentile interval of the draws, interpolated between order statistics (numpy's linear)."""
    import numpy as np

    if not len(draws):
        return (0.0, 0.0)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(np.asarray(draws, dtype=np.float64), [tail, 100 - tail])
    return (float(low), float(high))


def bootstrap_p_value(draws: Sequence[float] | NDArray[np.float64]) -> float:
    """One-sided bootstrap p-value that the candidate is worse: the share of resamples showing no drop.

    The +1s count the observed answers as one resample, so p is never 0 from a finite number of draws.
    """
    import numpy as np

    return (1 + int(np.count_nonzero(np.asarray(draws, dtype=np.float64) >= 0))) / (1 + len(draws))


def metric_intervals(
    result: GateResult, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED
) -> dict[str, tuple[float, float]]:
    """Each aggregate metric's stratified bootstrap 95% interval on one run's answers (the same scheme as a
    comparison's, over the run's confusion matrix: its cells are the predicted columns)."""
    import numpy as np

    strata = []
    for gold in result.labels:
        row = np.fromiter(result.confusion[gold].values(), dtype=np.int64)
        cells = np.flatnonzero(row)
        strata.append((row[cells], cells[None, :]))
    draws, _ = resampled_metrics(strata, 1, len(result.columns), reps, seed)[0]
    return {metric: percentile_interval(draws[metric]) for metric in METRICS}
