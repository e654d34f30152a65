"""The accepted model's answers (`--emogate-baseline`): read and validated when the session starts, scored with
the current answer contract, and compared with the candidate pair by pair."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_emogate.evaluate.compare import Comparison, check_same_samples, compare
from pytest_emogate.evaluate.metrics import GateResult, compute_result, score_samples
from pytest_emogate.evaluate.regression import REGRESSION_EXAMPLE, undeclared_regression
from pytest_emogate.evaluate.thresholds import Thresholds
from pytest_emogate.files import display_path
from pytest_emogate.predictions import Prediction, read_hashed_predictions


@dataclass
class Baseline:
    """The accepted model's answers, read and validated when the session starts."""

    path: Path
    predictions: list[Prediction]
    sha256: str
    _result: GateResult | None = field(default=None, repr=False)

    @property
    def description(self) -> str:
        """`baseline fixtures/seed.csv (834 rows)`."""
        return f"baseline {display_path(self.path)} ({len(self.predictions)} rows)"

    def result(self, thresholds: Thresholds) -> GateResult:
        """The baseline's answers scored with the current answer contract, once."""
        if self._result is None:
            if not self.predictions:
                raise RuntimeError("emogate: the baseline's answers were released when the session ended")
            t = thresholds
            samples = score_samples(self.predictions, t.labels, t.aliases, t.invalid)
            self._result = compute_result(samples, t.labels, t.invalid)
        return self._result

    def release(self) -> None:
        """Let go of the answers and their result (Gate.release): the session has ended."""
        self.predictions.clear()
        self._result = None

    def check_pairs(self, predictions: Sequence[Prediction], answers: str) -> None:
        """Raise a UsageError unless the answers cover the same samples with the same gold labels."""
        check_same_samples(
            {p.name: p.label for p in self.predictions},
            {p.name: p.label for p in predictions},
            f"{self.description} does not pair with the answers ({answers})",
        )

    def compare(self, thresholds: Thresholds, candidate: GateResult) -> Comparison:
        """The paired comparison of the candidate's result against this baseline."""
        return compare(self.result(thresholds), candidate, f"{self.description} does not pair with the answers")


def read_baseline(path: Path, thresholds: Thresholds) -> Baseline:
    """Read a baseline predictions file (CSV or JSONL); the thresholds must declare a regression check, and
    their `expect_samples`, when set, is the number of rows it must have."""
    if (undeclared := undeclared_regression(thresholds)) is not None:
        raise pytest.UsageError(
            f"--emogate-baseline {path}: {thresholds.path} has {undeclared}, so nothing would be compared; "
            f"expected e.g. {REGRESSION_EXAMPLE}"
        )
    predictions, sha256 = read_hashed_predictions(
        path, thresholds.labels, "baseline file", expect_samples=thresholds.expect_samples,
        expect_source=thresholds.source("expect_samples"),
    )  # fmt: skip
    return Baseline(path, predictions, sha256)
