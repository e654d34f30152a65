"""Shared test helpers: pytester for end-to-end runs, and the repository's paths."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "fixtures" / "seed_test3_predictions.csv"
THRESHOLDS = REPO / "thresholds.yaml"


def literal(line: str) -> str:
    """An fnmatch pattern matching `line` literally except for its `*` (brackets are character classes)."""
    return line.replace("[", "[[]")


@pytest.fixture(autouse=True)
def no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs in GitHub Actions must not append these tests' summaries to the real step summary."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
