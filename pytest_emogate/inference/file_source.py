"""Answers produced elsewhere: a predictions file (`--emogate-predictions`), read and validated once."""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_emogate.files import display_path
from pytest_emogate.predictions import Prediction, gc_paused, read_hashed_predictions


def gold_fingerprint(predictions: list[Prediction]) -> str:
    """sha256 over the sorted (name, gold label) pairs: the same evaluation set gives the same fingerprint."""
    with gc_paused():  # a pair per sample, acyclic
        pairs = sorted(zip([p.name for p in predictions], [p.label for p in predictions], strict=True))
    return hashlib.sha256("".join(f"{name}\t{label}\n" for name, label in pairs).encode()).hexdigest()


@dataclass(frozen=True)
class PredictionsFile:
    """Answers produced elsewhere: the rows of a predictions file, read and validated once."""

    path: Path
    rows: list[Prediction]
    sha256: str
    """The hash of the bytes that were gated (the file may change while the session runs)."""
    load_s: float = 0.0
    loaded: bool = True

    @classmethod
    def read(
        cls, path: Path, labels: tuple[str, ...], expect_samples: int | None = None,
        expect_source: str = "expect_samples",
    ) -> PredictionsFile:  # fmt: skip
        """Read and validate the file (one UsageError listing every problem; with `expect_samples`, another number
        of rows is one of them)."""
        start = time.perf_counter()
        rows, sha256 = read_hashed_predictions(path, labels, expect_samples=expect_samples, expect_source=expect_source)
        return cls(path, rows, sha256, time.perf_counter() - start)

    @property
    def description(self) -> str:
        """`predictions preds.csv (834 rows)`."""
        return f"predictions {display_path(self.path)} ({len(self.rows)} rows)"

    @functools.cached_property
    def data_fingerprint(self) -> str:
        """The gold set's fingerprint (gold_fingerprint), computed once: the header and the report both show it."""
        return gold_fingerprint(self.rows)

    def predictions(self) -> list[Prediction]:
        """The rows of the file, in file order."""
        return self.rows

    def provenance(self) -> dict[str, Any]:
        """The file's hash and the gold set's fingerprint; no checkpoint is known."""
        return {
            "predictions_sha256": self.sha256,
            "checkpoint_sha256": None,
            "data_fingerprint": self.data_fingerprint,
            "device": None,
        }

    def signature(self) -> dict[str, str]:
        """The predictions file's and the gold set's hashes."""
        return {"predictions": self.sha256[:12], "data": self.data_fingerprint[:12]}

    def timings(self) -> dict[str, float | None]:
        """Reading the file is the load; there was no inference."""
        return {"load": self.load_s, "inference": None}

    def notes(self) -> list[str]:
        """Nothing to add: the header names the file."""
        return []

    def work(self) -> dict[str, Any]:
        """Nothing to send: every process reads the file itself."""
        return {}

    def add_work(self, work: Mapping[str, Any]) -> None:
        """Nothing to note: no worker infers a predictions file."""

    def release(self) -> None:
        """Let go of the rows (Gate.release): the session has ended."""
        self.rows.clear()
