"""A source that cannot give answers ends the session, and the verdict says FAILED with the reason, never
INCOMPLETE: the exit status (1, or 4 for a usage error) and the verdict agree."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_emogate.evaluate.thresholds import load_thresholds
from pytest_emogate.gate import Gate
from pytest_emogate.gate_tests import gate_result
from pytest_emogate.inference.sources import AnswersUnavailable
from pytest_emogate.predictions import Prediction
from tests.conftest import THRESHOLDS


class Failing:
    """An answer source whose inference fails."""

    description = "a failing source"
    loaded = False

    def __init__(self, error: Exception) -> None:
        self.error = error

    def predictions(self) -> list[Prediction]:
        raise self.error

    def provenance(self) -> dict[str, Any]:
        return {}

    def signature(self) -> dict[str, str]:
        return {}

    def timings(self) -> dict[str, float | None]:
        return {}

    def notes(self) -> list[str]:
        return []


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (AnswersUnavailable("non-finite logits (NaN or inf) for 2 samples: a, b"), pytest.ExitCode.TESTS_FAILED),
        (pytest.UsageError("checkpoint c.pth: a tensor is missing"), pytest.ExitCode.USAGE_ERROR),
    ],
)
def test_no_answers_is_a_failed_verdict(error: Exception, code: pytest.ExitCode) -> None:
    gate = Gate(load_thresholds(THRESHOLDS), Failing(error))
    with pytest.raises(pytest.exit.Exception) as stopped:
        gate_result(gate)
    assert stopped.value.returncode == code
    verdict = gate.verdict()
    assert (verdict.status, verdict.passed, verdict.error) == ("failed", False, str(error))
    assert verdict.line() == f"emogate verdict: FAILED (no answers to gate: {error})"
    assert verdict.headline() == "FAILED (no answers to gate, 15 checks not run)"
    assert len(verdict.not_run) == 15 and not gate.available
