"""Answers produced elsewhere: a predictions file (`--emogate-predictions`), read and validated once."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_emogate.files import display_path
from pytest_emogate.predictions import Prediction, read_hashed_predictions


def gold_fingerprint(predictions: list[Prediction]) -> str:
    """sha256 over the sorted (name, gold label) pairs: the same evaluation set gives the same fingerprint."""
    digest = hashlib.sha256()
    for name, label in sorted((p.name, p.label) for p in predictions):
        digest.update(f"{name}\t{label}\n".encode())
    return digest.hexdigest()


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

    def predictions(self) -> list[Prediction]:
        """The rows of the file, in file order."""
        return self.rows

    def provenance(self) -> dict[str, Any]:
        """The file's hash and the gold set's fingerprint; no checkpoint is known."""
        return {
            "predictions_sha256": self.sha256,
            "checkpoint_sha256": None,
            "data_fingerprint": gold_fingerprint(self.rows),
            "device": None,
        }

    def signature(self) -> dict[str, str]:
        """The predictions file's and the gold set's hashes."""
        return {"predictions": self.sha256[:12], "data": gold_fingerprint(self.rows)[:12]}

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
