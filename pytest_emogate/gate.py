"""The gate of one pytest session: where the answers come from, the thresholds, and the result computed once.

The answers come from an `AnswerSource` (a predictions file, or inference from a checkpoint); everything after
that is the same for every source.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_emogate.checks import CHECKS, Outcome, check_ids, evaluate_all
from pytest_emogate.compare import Comparison
from pytest_emogate.files import display_path
from pytest_emogate.metrics import GateResult, compute_result, score_samples
from pytest_emogate.predictions import Prediction
from pytest_emogate.regression import Baseline, regression_ids, regression_outcome
from pytest_emogate.thresholds import Thresholds


class AnswersUnavailable(RuntimeError):
    """The source could not produce answers worth gating (e.g. non-finite logits); the message says why."""


class AnswerSource(Protocol):
    """Something that yields one Prediction per sample, with what determined them."""

    description: str
    loaded: bool
    """True when the answers are at hand without inference (the summary may then compute the result)."""

    def predictions(self) -> list[Prediction]:
        """The answers, computed or read once."""
        ...

    def provenance(self) -> dict[str, Any]:
        """Fingerprints of what produced the answers (checkpoint, data, device)."""
        ...

    def timings(self) -> dict[str, float | None]:
        """Seconds spent loading and inferring."""
        ...

    def notes(self) -> list[str]:
        """Lines for the summary about how the answers were made (empty when there is nothing to say)."""
        ...


@dataclass
class Gate:
    """The thresholds, the answer source and, once asked for, the result and every check's outcome."""

    thresholds: Thresholds
    source: AnswerSource
    baseline: Baseline | None = None
    """The accepted model's answers (--emogate-baseline); with them, the regression checks run."""
    _result: GateResult | None = None
    _comparison: Comparison | None = None
    _gate_s: float = 0.0

    @property
    def ready(self) -> bool:
        """Whether the result has been computed (the summary never triggers inference by itself)."""
        return self._result is not None

    def result(self) -> GateResult:
        """Score every answer and compute the metrics, once."""
        if self._result is None:
            predictions = self.source.predictions()
            start = time.perf_counter()
            t = self.thresholds
            samples = score_samples(predictions, t.labels, t.aliases, t.invalid)
            self._result = compute_result(samples, t.labels, t.invalid)
            self._gate_s = time.perf_counter() - start
        return self._result

    def comparison(self) -> Comparison | None:
        """The paired comparison with the baseline, once; None without a baseline."""
        if self.baseline is not None and self._comparison is None:
            start = time.perf_counter()
            self._comparison = self.baseline.compare(self.thresholds, self.result())
            self._gate_s += time.perf_counter() - start
        return self._comparison

    def check_ids(self) -> dict[str, list[str]]:
        """Each gate test's parameters; the regression checks exist only with a baseline."""
        return {**check_ids(self.thresholds), "regression": regression_ids(self.thresholds) if self.baseline else []}

    def evaluate(self, kind: str, param: str) -> Outcome:
        """One check's outcome, e.g. evaluate("class_floor", "surprise") or evaluate("regression", "accuracy")."""
        if kind == "regression":
            comparison = self.comparison()
            assert comparison is not None, "regression checks are collected only with a baseline"
            return regression_outcome(self.thresholds, comparison, param)
        return CHECKS[kind](self.thresholds, self.result(), param)

    def outcomes(self) -> list[Outcome]:
        """Every declared check's outcome, in thresholds order, then the regression checks."""
        regressions = [self.evaluate("regression", key) for key in self.check_ids()["regression"]]
        return evaluate_all(self.thresholds, self.result()) + regressions

    def header(self) -> str:
        """What determines the numbers, in one line."""
        t = self.thresholds
        return (
            f"emogate: thresholds {display_path(t.path)} (sha256 {t.sha256[:12]}, invalid answers: {t.invalid}); "
            f"answers from {self.source.description}"
            + (f"; compared with {self.baseline.description}" if self.baseline else "")
        )

    def summary_header(self) -> str:
        """The header and what the source has to say about how the answers were made."""
        return "\n".join([self.header(), *self.source.notes()])

    def provenance(self) -> dict[str, Any]:
        """The reproducibility signature of the JSON report."""
        from importlib.metadata import PackageNotFoundError, version

        versions = {"python": platform.python_version()}
        for package in ("pytest", "pytest-emogate", "torch", "transformers", "peft"):
            try:
                versions[package] = version(package)
            except PackageNotFoundError:
                continue
        return {**self.source.provenance(), "thresholds_sha256": self.thresholds.sha256, "versions": versions}

    def timings(self) -> dict[str, float | None]:
        """Seconds per phase: load, inference, gate."""
        return {**self.source.timings(), "gate": self._gate_s}
