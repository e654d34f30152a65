"""pytest-emogate: a pytest plugin that gates an emotion-recognition model's answers in CI."""

from __future__ import annotations

from pytest_emogate.answers import INVALID
from pytest_emogate.metrics import ClassStats, GateResult, ScoredSample
from pytest_emogate.predictions import Prediction

__all__ = ["INVALID", "ClassStats", "GateResult", "Prediction", "ScoredSample"]
__version__ = "0.1.0"
