"""The CI side of the gate, wired into pytest: baseline and regression options, the explicit update steps
(`--emogate-update-baseline`, `--emogate-ratchet`), run history, Markdown (and the GitHub step summary), plots,
and the summary's extra sections.

plugin.py calls `add_options` and `configure`; `configure` registers a `CiOutputs` object as a plugin only when
the gate is on (like --junitxml's reporter), and that object writes everything at the end of the session.
History is on by default while the gate runs (`.emogate/history.sqlite` at the rootdir, beside the answer cache);
`--emogate-history PATH` moves it and `--emogate-no-history` turns it off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_emogate.files import display_path

if TYPE_CHECKING:  # plugin.py imports this module in every run: the gate's modules load only when it is on
    from rich.console import RenderableType

    from pytest_emogate.gate import Gate
    from pytest_emogate.history import Run

HISTORY_DEFAULT = Path(".emogate") / "history.sqlite"
STEP_SUMMARY = "GITHUB_STEP_SUMMARY"
PATH_OPTIONS = {
    "baseline": "compare with an accepted model's predictions (CSV or JSONL): adds the test_no_regression checks",
    "markdown": f"write a Markdown summary to this path (it is also appended to ${STEP_SUMMARY} when set)",
    "plot": "write a PNG: labelled confusion heatmap and per-class recall with intervals (pytest-emogate[plot])",
    "history": f"the SQLite run history every gated run appends to (default {HISTORY_DEFAULT} at the rootdir)",
}


def add_options(parser: pytest.Parser, group: pytest.OptionGroup) -> None:
    """Register the CI options; the explicit update steps have no ini twin, so they never run by accident."""
    for name, help_text in PATH_OPTIONS.items():
        group.addoption(f"--emogate-{name}", dest=f"emogate_{name}", metavar="PATH", help=help_text)
        parser.addini(f"emogate_{name}", help_text + " (relative to the ini file)")
    group.addoption("--emogate-no-history", action="store_true", dest="emogate_no_history",
                    help="do not record this run in the history")  # fmt: skip
    group.addoption("--emogate-update-baseline", dest="emogate_update_baseline", metavar="PATH",
                    help="write this run's answers (JSONL) as the new baseline, only when the gate passes")  # fmt: skip
    group.addoption("--emogate-ratchet", action="store_true", dest="emogate_ratchet",
                    help="raise the floors this run clears with margin (only when the gate passes)")  # fmt: skip


OUTPUTS_KEY = pytest.StashKey["CiOutputs"]()


@dataclass
class CiOutputs:
    """What this session writes at its end, and what it has to say afterwards."""

    gate: Gate
    root: Path
    markdown: Path | None = None
    step_summary: Path | None = None
    plot: Path | None = None
    history: Path | None = None
    update_baseline: Path | None = None
    ratchet: bool = False
    runs: list[Run] = field(default_factory=list)
    notes: list[tuple[str, int]] = field(default_factory=list)
    """Lines for the end of the summary, each with the least verbosity that shows it (-1: even under -q)."""

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Record the run, take the explicit update steps, then write the Markdown and the plot."""
        gate, config = self.gate, session.config
        if hasattr(config, "workerinput") or config.option.collectonly or not (gate.ready or gate.source.loaded):
            return
        result, outcomes = gate.result(), gate.outcomes()
        passed = all(outcome.passed for outcome in outcomes)
        if self.history is not None:
            self._record()
        if self.update_baseline is not None:
            self._update_baseline(passed)
        if self.ratchet:
            self._ratchet(passed)
        if self.markdown is not None or self.step_summary is not None:
            self._markdown()
        if self.plot is not None:
            from pytest_emogate.plot import write_plot

            write_plot(self.plot, result, gate.thresholds, outcomes, gate.comparison())
            self.notes.append((f"emogate: wrote plots to {display_path(self.plot)}", 0))

    def _record(self) -> None:
        from pytest_emogate.history import TREND_RUNS, git_commit, load_runs, record_run, run_of

        assert self.history is not None
        gate = self.gate
        provenance = gate.provenance()
        run_id = record_run(self.history, run_of(gate.result(), gate.outcomes(), provenance, git_commit(self.root)))
        self.runs = load_runs(self.history, last=TREND_RUNS, data_fingerprint=provenance.get("data_fingerprint"))
        self.notes.append((f"emogate: recorded run #{run_id} in {display_path(self.history)}", 1))

    def _update_baseline(self, passed: bool) -> None:
        from pytest_emogate.predictions import write_predictions_jsonl

        assert self.update_baseline is not None
        where = display_path(self.update_baseline)
        if not passed:
            self.notes.append((f"emogate: baseline {where} NOT updated: the gate failed", -1))
            return
        predictions = self.gate.source.predictions()
        write_predictions_jsonl(self.update_baseline, predictions)
        self.notes.append((f"emogate: baseline {where} updated with this run's {len(predictions)} answers", -1))

    def _ratchet(self, passed: bool) -> None:
        from pytest_emogate.compare import metric_intervals
        from pytest_emogate.ratchet import ratchet

        if not passed:
            self.notes.append((f"emogate ratchet: {self.gate.thresholds.path.name} NOT changed: the gate failed", -1))
            return
        result = self.gate.result()
        self.notes.append((ratchet(self.gate.thresholds, result, metric_intervals(result)).rstrip("\n"), -1))

    def _markdown(self) -> None:
        from pytest_emogate.markdown import MarkdownInput, render_markdown

        gate = self.gate
        policy = gate.thresholds.regression
        text = render_markdown(
            MarkdownInput(
                gate.result(), gate.thresholds, gate.outcomes(), gate.header(), gate.comparison(),
                gate.baseline.description if gate.baseline else "", policy.alpha if policy else None, self.runs,
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

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """After the emogate summary: what was written or refused, and the ratchet's diff."""
        verbosity = terminalreporter.config.get_verbosity()
        for note, least in self.notes:
            if verbosity >= least:
                terminalreporter.write_line(note)


def configure(config: pytest.Config, gate: Gate, path_option: Callable[[str], Path | None]) -> None:
    """Read the baseline, check the optional libraries, and register the outputs object (exit 4 on bad input)."""
    from pytest_emogate.regression import read_baseline

    baseline = path_option("baseline")
    if baseline is not None:
        gate.baseline = read_baseline(baseline, gate.thresholds)
        if gate.source.loaded:
            gate.baseline.check_pairs(gate.source.predictions(), gate.source.description)
    outputs = CiOutputs(gate, config.rootpath, markdown=path_option("markdown"), plot=path_option("plot"))
    if outputs.plot is not None:
        from pytest_emogate.plot import require_matplotlib

        require_matplotlib()
    if config.getoption("emogate_ratchet"):
        from pytest_emogate.ratchet import require_ruamel

        require_ruamel()
        outputs.ratchet = True
    if not config.getoption("emogate_no_history"):
        from pytest_emogate.history import check_history

        outputs.history = path_option("history") or config.rootpath / HISTORY_DEFAULT
        check_history(outputs.history)
    update = config.getoption("emogate_update_baseline")
    if update:
        outputs.update_baseline = config.invocation_params.dir / update
    if os.environ.get(STEP_SUMMARY):
        outputs.step_summary = Path(os.environ[STEP_SUMMARY])
    config.stash[OUTPUTS_KEY] = outputs
    config.pluginmanager.register(outputs, "emogate-outputs")


def report_sections(gate: Gate) -> dict[str, Any]:
    """The JSON report's extra sections: `baseline` (every delta, test, p-value and interval) with a baseline."""
    comparison = gate.comparison()
    if comparison is None or gate.baseline is None:
        return {}
    from pytest_emogate.regression import baseline_report

    return {"baseline": baseline_report(comparison, gate.baseline, gate.thresholds)}


def summary_sections(config: pytest.Config) -> list[RenderableType]:
    """The emogate summary's extra blocks: the regression table, and the history trend unless -q."""
    outputs = config.stash.get(OUTPUTS_KEY, None)
    if outputs is None:
        return []
    sections: list[RenderableType] = []
    gate = outputs.gate
    comparison = gate.comparison()
    if comparison is not None:
        from pytest_emogate.regression import regression_table

        sections.append(regression_table(comparison, gate.outcomes()))
    if len(outputs.runs) > 1 and outputs.history is not None and config.get_verbosity() >= 0:
        from pytest_emogate.history import trend_table

        sections.append(trend_table(outputs.runs, gate.result().labels, outputs.history))
    return sections
