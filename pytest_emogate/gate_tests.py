"""The gate tests: one pytest test per check of thresholds.yaml, collected only when the gate is active.

The plugin parametrizes them from the thresholds (`pytest_generate_tests` below) and adds them to the session;
ids follow design.md: `test_overall[accuracy]`, `test_class_floor[worried]`, `test_label_validity`,
`test_confusion_limit[neutral->happy]`, and with a baseline `test_no_regression[accuracy]`.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_emogate.gate import Gate
from pytest_emogate.regression import junit_properties

PARAMETRIZED = {
    "test_overall": "overall",
    "test_class_floor": "class_floor",
    "test_confusion_limit": "confusion",
    "test_no_regression": "regression",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize each gate test with the checks its thresholds section declares."""
    kind = PARAMETRIZED.get(metafunc.function.__name__)
    if kind is not None:
        from pytest_emogate.plugin import GATE_KEY

        params = metafunc.config.stash[GATE_KEY].check_ids()[kind]
        if params:  # an empty set would add a skipped test; unparametrized, the plugin drops the test instead
            metafunc.parametrize("check", params, ids=params)


def _enforce(gate: Gate, kind: str, check: str, record_property: Any) -> None:
    __tracebackhide__ = True
    outcome = gate.evaluate(kind, check)
    record_property("emogate_check", outcome.id)
    record_property("emogate_value", outcome.value)
    record_property("emogate_limit", outcome.limit)
    record_property("emogate_n", outcome.n)
    if not outcome.passed:
        pytest.fail(outcome.message, pytrace=False)


@pytest.mark.emogate
def test_overall(emogate_gate: Gate, check: str, record_property: Any) -> None:
    """An aggregate metric clears its floor (thresholds.yaml: overall)."""
    _enforce(emogate_gate, "overall", check, record_property)


@pytest.mark.emogate
def test_class_floor(emogate_gate: Gate, check: str, record_property: Any) -> None:
    """A class's recall clears its floor (thresholds.yaml: per_class)."""
    _enforce(emogate_gate, "class_floor", check, record_property)


@pytest.mark.emogate
def test_label_validity(emogate_gate: Gate, record_property: Any) -> None:
    """Answers stay inside the taxonomy (thresholds.yaml: label_validity)."""
    _enforce(emogate_gate, "label_validity", "label_validity", record_property)


@pytest.mark.emogate
def test_confusion_limit(emogate_gate: Gate, check: str, record_property: Any) -> None:
    """A gold class is not answered as another class too often (thresholds.yaml: confusion)."""
    _enforce(emogate_gate, "confusion", check, record_property)


@pytest.mark.emogate
def test_no_regression(emogate_gate: Gate, check: str, record_property: Any) -> None:
    """A metric or a class's recall does not drop against the baseline (thresholds.yaml: regression)."""
    comparison = emogate_gate.comparison()
    if comparison is not None:
        for name, value in junit_properties(comparison, check):
            record_property(name, value)
    _enforce(emogate_gate, "regression", check, record_property)
