"""pytest-emogate: a pytest plugin that gates an emotion-recognition model's answers in CI.

The public names load on first use (PEP 562): pytest imports this package in every run, gate or not.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_emogate.answers import INVALID
    from pytest_emogate.evaluate.metrics import ClassStats, GateResult, ScoredSample
    from pytest_emogate.predictions import Prediction

    from . import history

__all__ = ["INVALID", "ClassStats", "GateResult", "Prediction", "ScoredSample", "history"]
__version__ = "0.1.0"

_HOMES = {
    "INVALID": "pytest_emogate.answers",
    "ClassStats": "pytest_emogate.evaluate.metrics",
    "GateResult": "pytest_emogate.evaluate.metrics",
    "ScoredSample": "pytest_emogate.evaluate.metrics",
    "Prediction": "pytest_emogate.predictions",
}
_MODULES = ("history",)
"""Submodules reachable as attributes: `pytest_emogate.history.frame(path)` after `import pytest_emogate`."""


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    if name in _MODULES:
        return import_module(f"pytest_emogate.{name}")
    raise AttributeError(f"module 'pytest_emogate' has no attribute {name!r}")
