"""A source that cannot give answers is asked once: every gate test fails with its one message (a usage error
ends the session), and the verdict says FAILED with the reason, never INCOMPLETE: the exit status (1, or 4 for a
usage error) and the verdict agree."""

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
        self.asked = 0

    def predictions(self) -> list[Prediction]:
        self.asked += 1
        raise self.error

    def provenance(self) -> dict[str, Any]:
        return {}

    def signature(self) -> dict[str, str]:
        return {}

    def timings(self) -> dict[str, float | None]:
        return {}

    def notes(self) -> list[str]:
        return []


def test_a_usage_error_while_answering_ends_the_session_with_exit_4() -> None:
    error = pytest.UsageError("checkpoint c.pth: a tensor is missing")
    gate = Gate(load_thresholds(THRESHOLDS), Failing(error))
    with pytest.raises(pytest.exit.Exception) as stopped:
        gate_result(gate)
    assert stopped.value.returncode == pytest.ExitCode.USAGE_ERROR
    verdict = gate.verdict()
    assert (verdict.status, verdict.passed, verdict.error) == ("failed", False, str(error))
    assert verdict.line() == f"emogate verdict: FAILED (no answers could be made: {error})"
    assert verdict.headline() == "FAILED (no answers could be made; 15 checks: 15 not run)"
    assert len(verdict.not_run) == 15 and not gate.available


def test_answers_that_cannot_be_made_fail_every_gate_test_with_one_message_asked_once() -> None:
    error = AnswersUnavailable("rank 1 (cuda:1 on gpu7) failed: OSError: disk\nTraceback (most recent call last): ...")
    source = Failing(error)
    gate = Gate(load_thresholds(THRESHOLDS), source)
    said = []
    for _ in range(3):  # three gate tests
        with pytest.raises(pytest.fail.Exception) as failed:
            gate_result(gate)
        assert not failed.value.pytrace and failed.value.__context__ is None
        said.append(failed.value.msg)
    assert source.asked == 1  # answering is one event: never run again per gate test
    assert said[0] == f"no answers could be made: {error}"  # the first test has all of it (a rank's traceback)
    assert said[1:] == ["no answers could be made: rank 1 (cuda:1 on gpu7) failed: OSError: disk"] * 2
    verdict = gate.verdict()
    assert (verdict.status, verdict.passed, verdict.error) == ("failed", False, str(error))
    assert verdict.line() == f"emogate verdict: FAILED (no answers could be made: {said[1].split(': ', 1)[1]})"
    with pytest.raises(AnswersUnavailable, match="OSError: disk"):
        gate.result()
    assert source.asked == 1 and not gate.available
