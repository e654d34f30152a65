"""Shared test helpers: pytester for end-to-end runs, and the repository's paths."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "fixtures" / "seed_test3_predictions.csv"
THRESHOLDS = REPO / "thresholds.yaml"
