"""The gate of one pytest session: the thresholds, where the answers come from, an optional baseline, and the
result, every declared check's outcome and the verdict, each computed once.

The answers come from an `AnswerSource` (a predictions file, or inference from a checkpoint); everything after
that is the same for every source.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from pytest_emogate.evaluate.baseline import Baseline
from pytest_emogate.evaluate.checks import (
    Check,
    Outcome,
    consistency,
    declared_checks,
    evaluate_all,
    no_checks,
    unanswered_probe,
)
from pytest_emogate.evaluate.metrics import GateResult, compute_result, score_samples
from pytest_emogate.evaluate.regression import regression_ids, regression_outcome
from pytest_emogate.evaluate.thresholds import Thresholds
from pytest_emogate.evaluate.verdict import FAILED, PASSED, Verdict, judge
from pytest_emogate.files import display_path
from pytest_emogate.inference.sources import AnswersUnavailable
from pytest_emogate.predictions import Prediction

if TYPE_CHECKING:
    from pytest_emogate.evaluate.compare import Comparison
    from pytest_emogate.inference.probe import ConsistencyProbe, ProbeResult


class AnswerSource(Protocol):
    """Something that yields one Prediction per sample, with what determined them."""

    @property
    def description(self) -> str:
        """What the answers are, for the header: `predictions preds.csv (834 rows)`."""
        ...

    @property
    def loaded(self) -> bool:
        """True when the answers are at hand without inference (the summary may then compute the result)."""
        ...

    def predictions(self) -> list[Prediction]:
        """The answers, computed or read once."""
        ...

    def provenance(self) -> dict[str, Any]:
        """Fingerprints of what produced the answers (checkpoint, data, device)."""
        ...

    def signature(self) -> dict[str, str]:
        """What is known of the answers' origin before any inference, shortened for the session header."""
        ...

    def timings(self) -> dict[str, float | None]:
        """Seconds spent loading and inferring."""
        ...

    def notes(self) -> list[str]:
        """Lines for the summary about how the answers were made (empty when there is nothing to say)."""
        ...

    def work(self) -> dict[str, Any]:
        """What this process did to get the answers (a pytest-xdist worker sends it to the controller)."""
        ...

    def add_work(self, work: Mapping[str, Any]) -> None:
        """Note what a pytest-xdist worker did (its `work()`), so the controller's summary reports it."""
        ...

    def release(self) -> None:
        """Let go of answers held in bulk, once the session's outputs are written (Gate.release)."""
        ...


@dataclass
class Gate:
    """The thresholds, the answer source, the baseline and, once asked for, the result, the outcomes and what ran."""

    thresholds: Thresholds
    source: AnswerSource
    baseline: Baseline | None = None
    """The accepted model's answers (--emogate-baseline); with them, the regression checks run."""
    probe: ConsistencyProbe | None = None
    """The consistency probe (--emogate-probe N); with it, the consistency check runs."""
    checks: tuple[Check, ...] = field(init=False)
    """Every declared check, in thresholds order, then the regression checks (from the thresholds), then the
    consistency check (declared by the probe option)."""
    _result: GateResult | None = None
    _comparison: Comparison | None = None
    _outcomes: dict[str, Outcome] | None = None
    _ran: dict[str, str] = field(default_factory=dict)
    _error: str | None = None
    _probe_error: str | None = None
    _gate_s: float = 0.0
    _released: bool = False

    def __post_init__(self) -> None:
        regressions = regression_ids(self.thresholds) if self.baseline is not None else []
        probed = [Check("consistency", "consistency")] if self.probe is not None else []
        self.checks = (
            *declared_checks(self.thresholds), *(Check("regression", key) for key in regressions), *probed
        )  # fmt: skip
        if not self.checks:
            raise no_checks(self.thresholds)

    @property
    def ready(self) -> bool:
        """Whether the result has been computed (the summary never triggers inference by itself)."""
        return self._result is not None

    @property
    def available(self) -> bool:
        """Whether the result is at hand or can be computed without inference."""
        return self.ready or self.source.loaded

    @property
    def error(self) -> str | None:
        """Why no answers could be made, once that happened (the verdict then fails with it); else None."""
        return self._error

    def result(self) -> GateResult:
        """Score every answer and compute the metrics, once. When the answers could not be made, AnswersUnavailable
        with the same cause each time: answering is one event per session, never repeated per gate test."""
        if self._error is not None:
            raise AnswersUnavailable(self._error)
        if self._result is None:
            if self._released:
                raise RuntimeError("emogate: the gate's answers were released when the session ended (Gate.release)")
            try:
                predictions = self.source.predictions()
            except AnswersUnavailable as error:
                self._error = str(error)
                raise
            start = time.perf_counter()
            t = self.thresholds
            samples = score_samples(predictions, t.labels, t.aliases, t.invalid)
            self._result = compute_result(samples, t.labels, t.invalid)
            self._gate_s += time.perf_counter() - start
        return self._result

    def comparison(self) -> Comparison | None:
        """The paired comparison with the baseline, once; None without a baseline."""
        if self.baseline is not None and self._comparison is None:
            start = time.perf_counter()
            self._comparison = self.baseline.compare(self.thresholds, self.result())
            self._gate_s += time.perf_counter() - start
        return self._comparison

    def outcomes(self) -> dict[str, Outcome]:
        """Every declared check's outcome by check id, in declared order, computed once; the consistency check's
        once the probe's result is at hand without inference (`probe_result` runs it), or failed when the probe
        could make no answers."""
        if self._outcomes is None:
            outcomes = {outcome.id: outcome for outcome in evaluate_all(self.thresholds, self.result())}
            comparison = self.comparison()
            for check in self.checks:
                if check.kind == "regression":
                    assert comparison is not None, "regression checks are declared only with a baseline"
                    outcomes[check.id] = regression_outcome(self.thresholds, comparison, check.param)
            self._outcomes = outcomes
        if self.probe is not None and "consistency" not in self._outcomes:
            if self._probe_error is not None:
                self._outcomes["consistency"] = unanswered_probe(self.thresholds, self._probe_error)
            elif self.probe.ready:
                self._outcomes["consistency"] = consistency(self.thresholds, self.probe.result())
        return self._outcomes

    def probe_result(self) -> ProbeResult:
        """Run the consistency probe (after the main answers), once: its samples answered again at batch size 1.
        AnswersUnavailable when it could make no answers (the consistency check then fails saying why), the same
        each time: the probe is not run again."""
        assert self.probe is not None, "the consistency check is declared only with a probe"
        if self._probe_error is not None:
            raise AnswersUnavailable(self._probe_error)
        try:
            return self.probe.result()
        except AnswersUnavailable as error:
            self._probe_error = f"the consistency probe made no answers to compare: {error}"
            raise AnswersUnavailable(self._probe_error) from error

    def _probe_gated(self) -> bool:
        """Whether test_consistency ran and its probe's result is at hand (a deselected test leaves a cached
        result unreported: it gated nothing)."""
        return self.probe is not None and "consistency" in self._ran and self.probe.ready

    def probe_line(self) -> str:
        """`probe: 24/24 answers equal at batch size 1` once test_consistency ran on the probe's result; else
        empty."""
        if self.probe is None or not self._probe_gated():
            return ""
        return self.probe.result().line()

    def probe_report(self) -> dict[str, Any] | None:
        """The JSON report's `probe` section, or None when test_consistency did not run on the probe's result."""
        from pytest_emogate.report.json_report import probe_section

        if self.probe is None or not self._probe_gated():
            return None
        return probe_section(self.probe.result())

    def record(self, check_id: str, report: pytest.TestReport) -> None:
        """Note how one phase of a gate test ended: any failed phase fails the check, a passed call passes it.

        An xfail mark hides nothing: a call that ran and failed (reported as xfailed, a skip) fails the check, one
        that passed (xpassed, a failure under xfail_strict) passes it; only `xfail(run=False)` leaves it not run.
        """
        xfail = str(getattr(report, "wasxfail", ""))
        xfailed = bool(xfail) and report.when == "call" and report.skipped and not xfail.startswith("[NOTRUN]")
        strict_xpass = report.when == "call" and report.failed and str(report.longrepr).startswith("[XPASS(strict)]")
        if (report.failed and not strict_xpass) or xfailed:
            self._ran[check_id] = FAILED
        elif report.when == "call" and (report.passed or strict_xpass) and self._ran.get(check_id) != FAILED:
            self._ran[check_id] = PASSED

    def fail(self, error: str) -> None:
        """Note that no answers could be made: the verdict fails with this reason, and `result` raises it again
        instead of asking the source."""
        self._error = error

    def verdict(self) -> Verdict:
        """The verdict from what ran: passed, failed, or incomplete (some declared checks did not run)."""
        return judge([check.id for check in self.checks], self._ran, self._error)

    def release(self) -> None:
        """Drop the answers and everything computed from them, once every output is written (pytest_unconfigure).

        pytest's unraisableexception plugin runs two full garbage collections after the last hook; each walks
        every live object, and an 83,400-sample gate with a baseline holds about 330,000 records (both runs'
        Predictions and ScoredSamples, the pairs). Something may still hold the gate (a failed gate test's
        traceback, kept by pytest as sys.last_traceback), so the gate lets go of them itself."""
        self._result = self._comparison = None
        self._released = True
        self.source.release()
        if self.baseline is not None:
            self.baseline.release()

    def header(self) -> str:
        """What determines the numbers, in one line."""
        t = self.thresholds
        return (
            f"emogate: thresholds {display_path(t.path)} (sha256 {t.sha256[:12]}, invalid answers: {t.invalid}); "
            f"answers from {self.source.description}"
            + (f"; compared with {self.baseline.description}" if self.baseline else "")
        )

    def signature(self) -> str:
        """The reproducibility signature of the session header, like pytest-randomly's seed line."""
        known = {**self.source.signature(), "thresholds": self.thresholds.sha256[:12]}
        versions = versions_of(("pytest-emogate",))
        return "emogate signature: " + ", ".join(f"{name} {value}" for name, value in {**known, **versions}.items())

    def summary_header(self) -> str:
        """The header, what the source has to say about how the answers were made, and the probe's line."""
        lines = [self.header(), *self.source.notes()]
        probe = self._probe_error or self.probe_line()
        if probe:
            lines.append(probe)
        elif self.probe is None and self.thresholds.max_disagree is not None:
            name = self.thresholds.path.name
            lines.append(f"{name} sets consistency.max_disagree, but only --emogate-probe N declares test_consistency")
        return "\n".join(lines)

    def provenance(self) -> dict[str, Any]:
        """The reproducibility signature of the JSON report."""
        versions = versions_of(("pytest", "pytest-emogate", "torch", "transformers", "peft"))
        return {**self.source.provenance(), "thresholds_sha256": self.thresholds.sha256, "versions": versions}

    def timings(self) -> dict[str, float | None]:
        """Seconds per phase: load, inference, gate, and the probe's inference when it ran in this process."""
        probe = {"probe": self.probe.result().seconds} if self.probe is not None and self.probe.ready else {}
        return {**self.source.timings(), "gate": self._gate_s, **probe}


def versions_of(packages: tuple[str, ...]) -> dict[str, str]:
    """Python's version and each installed package's (packages that are not installed are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions
