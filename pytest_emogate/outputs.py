"""Every file the session writes: the JSON report, the saved answers, the run history, the baseline and the floors
(the explicit update steps), the Markdown and the GitHub step summary, the plot; and JUnit's suite properties.

Paths are checked when the session starts (an output path that is a directory, an unusable history file, a
missing extra: exit 4 before any test runs); everything is written once, at the end, from the one verdict. The
update steps act only on a passing verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_emogate.evaluate.verdict import FAILED
from pytest_emogate.files import display_path, usage_error

if TYPE_CHECKING:
    from rich.console import RenderableType

    from pytest_emogate.evaluate.verdict import Verdict
    from pytest_emogate.gate import Gate
    from pytest_emogate.history import Run

HEADLINE_METRICS = ("accuracy", "weighted_f1", "uar", "macro_f1")
"""The metrics JUnit's suite properties carry beside the verdict."""


@dataclass
class Outputs:
    """What this session writes at its end, and what it has to say afterwards."""

    root: Path
    report: Path | None = None
    save_predictions: Path | None = None
    markdown: Path | None = None
    step_summary: Path | None = None
    plot: Path | None = None
    history: Path | None = None
    update_baseline: Path | None = None
    ratchet: bool = False
    runs: list[Run] = field(default_factory=list)
    """The history's recent runs on this data, once this run is recorded (for the trend)."""
    notes: list[tuple[str, int]] = field(default_factory=list)
    """Lines for the end of the summary, each with the least verbosity that shows it (-1: even under -q)."""

    def check(self) -> None:
        """Fail at the start of the session, not at its end: an output path that is a directory, a missing
        optional library, an unusable history file."""
        from pytest_emogate.extras import require

        files = {"report": self.report, "save-predictions": self.save_predictions, "markdown": self.markdown,
                 "plot": self.plot, "history": self.history, "update-baseline": self.update_baseline}  # fmt: skip
        directories = [f"--emogate-{name} {path}: is a directory; expected the path of a file"
                       for name, path in files.items() if path is not None and path.is_dir()]  # fmt: skip
        if directories:
            raise usage_error("emogate outputs", directories)
        if self.plot is not None:
            require(("matplotlib",), "--emogate-plot", 'pip install "pytest-emogate[plot]"')
        if self.ratchet:
            require(("ruamel.yaml",), "--emogate-ratchet", 'pip install "ruamel.yaml>=0.17.21"')
        if self.history is not None:
            from pytest_emogate.history import check_history

            check_history(self.history)

    def write(self, gate: Gate, verdict: Verdict) -> None:
        """Write every output of the session from its verdict (the result only when it is at hand)."""
        if self.report is not None:
            self._report(gate, verdict)
        if not gate.available:  # no gate test ran and the answers would need inference: nothing else to write
            return
        if self.save_predictions is not None:
            from pytest_emogate.predictions import write_predictions_jsonl

            write_predictions_jsonl(self.save_predictions, gate.source.predictions())
        if self.history is not None:
            self._record(gate, verdict)
        if self.update_baseline is not None:
            self._update_baseline(gate, verdict)
        if self.ratchet:
            self._ratchet(gate, verdict)
        if self.markdown is not None or self.step_summary is not None:
            self._markdown(gate, verdict)
        if self.plot is not None:
            from pytest_emogate.report.plot import write_plot

            write_plot(self.plot, gate.result(), gate.thresholds, verdict, gate.comparison())
            self.notes.append((f"emogate: wrote plots to {display_path(self.plot)}", 0))

    def _report(self, gate: Gate, verdict: Verdict) -> None:
        from pytest_emogate.report.json_report import report_dict, write_report

        assert self.report is not None
        if gate.available:
            report = report_dict(gate.result(), list(gate.outcomes().values()), verdict, gate.provenance(),
                                 gate.timings())  # fmt: skip
            comparison = gate.comparison()
            if comparison is not None and gate.baseline is not None:
                from pytest_emogate.report.json_report import baseline_report

                report["baseline"] = baseline_report(comparison, gate.baseline, gate.thresholds)
        else:
            report = {
                "verdict": verdict.status,
                "passed": False,
                "not_run": list(verdict.not_run),
                "checks": [],
                "error": verdict.error,
            }
        write_report(self.report, report)

    def _record(self, gate: Gate, verdict: Verdict) -> None:
        from pytest_emogate.history import TREND_RUNS, git_commit, load_runs, record_run, run_of

        assert self.history is not None
        provenance = gate.provenance()
        run = run_of(gate.result(), verdict, provenance, git_commit(self.root))
        run_id = record_run(self.history, run)
        self.runs = load_runs(self.history, last=TREND_RUNS, data_fingerprint=provenance.get("data_fingerprint"))
        self.notes.append((f"emogate: recorded run #{run_id} in {display_path(self.history)}", 1))

    def _update_baseline(self, gate: Gate, verdict: Verdict) -> None:
        from pytest_emogate.predictions import write_predictions_jsonl

        assert self.update_baseline is not None
        where = display_path(self.update_baseline)
        if not verdict.passed:
            self.notes.append((f"emogate: baseline {where} NOT updated: the gate {_did_not_pass(verdict)}", -1))
            return
        predictions = gate.source.predictions()
        write_predictions_jsonl(self.update_baseline, predictions)
        self.notes.append((f"emogate: baseline {where} updated with this run's {len(predictions)} answers", -1))

    def _ratchet(self, gate: Gate, verdict: Verdict) -> None:
        from pytest_emogate.evaluate.compare import metric_intervals
        from pytest_emogate.evaluate.ratchet import ratchet

        name = gate.thresholds.path.name
        if not verdict.passed:
            self.notes.append((f"emogate ratchet: {name} NOT changed: the gate {_did_not_pass(verdict)}", -1))
            return
        result = gate.result()
        self.notes.append((ratchet(gate.thresholds, result, metric_intervals(result)).rstrip("\n"), -1))

    def _markdown(self, gate: Gate, verdict: Verdict) -> None:
        from pytest_emogate.report.markdown import MarkdownInput, render_markdown

        policy = gate.thresholds.regression
        text = render_markdown(
            MarkdownInput(
                gate.result(), gate.thresholds, list(gate.outcomes().values()), verdict, gate.header(),
                gate.comparison(), gate.baseline.description if gate.baseline else "",
                policy.alpha if policy else None, self.runs,
            )
        )  # fmt: skip
        if self.markdown is not None:
            from pytest_emogate.files import atomic_write_text

            atomic_write_text(self.markdown, text)
            self.notes.append((f"emogate: wrote the Markdown summary to {display_path(self.markdown)}", 0))
        if self.step_summary is not None:
            # GitHub's contract: each step appends to the file it is given; never truncate the others' parts
            with self.step_summary.open("a", encoding="utf-8") as handle:
                handle.write(text + "\n")

    def summary(self, gate: Gate, verdict: Verdict, *, width: int, color: bool, verbosity: int) -> str:
        """The terminal summary: the tables when the result is at hand (never inference for it), and the verdict."""
        if not gate.available:
            from pytest_emogate.report.terminal import render_verdict

            return render_verdict(verdict, color=color)
        from pytest_emogate.report.terminal import render_summary

        sections: list[RenderableType] = []
        comparison = gate.comparison()
        if comparison is not None:
            from pytest_emogate.report.terminal import regression_table

            sections.append(regression_table(comparison, list(gate.outcomes().values()), verdict))
        if len(self.runs) > 1 and self.history is not None and verbosity >= 0:
            from pytest_emogate.report.terminal import trend_table

            sections.append(trend_table(self.runs, gate.result().labels, self.history))
        return render_summary(
            gate.result(),
            gate.thresholds,
            verdict,
            gate.summary_header(),
            width=width,
            color=color,
            quiet=verbosity < 0,
            sections=sections,
        )

    def terminal_notes(self, verbosity: int) -> list[str]:
        """What was written or refused, and the ratchet's diff, for the given verbosity."""
        return [note for note, least in self.notes if verbosity >= least]


def junit_suite_properties(config: pytest.Config, gate: Gate, verdict: Verdict) -> None:
    """The verdict and headline numbers as JUnit testsuite properties (valid in every family, xunit2 included)."""
    try:
        from _pytest.junitxml import xml_key  # the object behind pytest's own record_testsuite_property fixture
    except ImportError:
        return
    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    xml.add_global_property("emogate_verdict", verdict.status)
    xml.add_global_property("emogate_checks", len(verdict.declared))
    xml.add_global_property("emogate_failed", " ".join(verdict.failed))
    xml.add_global_property("emogate_not_run", " ".join(verdict.not_run))
    if gate.available:
        result = gate.result()
        xml.add_global_property("emogate_n", result.n)
        for metric in HEADLINE_METRICS:
            xml.add_global_property(f"emogate_{metric}", result.metrics[metric])


def _did_not_pass(verdict: Verdict) -> str:
    return "failed" if verdict.status == FAILED else f"is incomplete ({len(verdict.not_run)} checks not run)"
