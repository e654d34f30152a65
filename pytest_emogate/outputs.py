"""Every file the session writes: the JSON report, the saved answers, the run history, the baseline and the floors
(the explicit update steps), the Markdown and the GitHub step summary, the HTML page, the plot; and JUnit's suite
properties.

Paths are checked when the session starts (an output path that is a directory, an unusable history file, a
missing extra: exit 4 before any test runs); everything is written once, at the end, from the one verdict. The
update steps act only on a passing verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_emogate.evaluate.verdict import FAILED
from pytest_emogate.files import FileProblem, display_path, usage_error
from pytest_emogate.formats import LISTED_SAMPLES
from pytest_emogate.options import STEP_SUMMARY

if TYPE_CHECKING:
    from rich.console import RenderableType

    from pytest_emogate.evaluate.verdict import Verdict
    from pytest_emogate.gate import Gate
    from pytest_emogate.history import Run
    from pytest_emogate.predictions import Prediction
    from pytest_emogate.report.html import HtmlInput

ANSWER_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")
"""The suffixes an answers file may be written with: CSV, or JSON lines (what `--emogate-predictions` reads)."""
STEPS = ("--emogate-update-baseline", "--emogate-ratchet")
"""The explicit update steps: they act only on a passing verdict."""
REPLACES = {("--emogate-update-baseline", "--emogate-baseline"), ("--emogate-ratchet", "--emogate-thresholds")}
"""(output, input) pairs where the output replaces the input on purpose: the explicit update steps."""
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
    html: Path | None = None
    history: Path | None = None
    history_asked: bool = False
    """Whether the history's path was given (else it is the default, which a run with no answers skips quietly)."""
    update_baseline: Path | None = None
    ratchet: Path | None = None
    """The thresholds file, which `--emogate-ratchet` rewrites; None without the ratchet."""
    show: int = LISTED_SAMPLES
    """Samples listed per list (broken, fixed, changed) under the regression table."""
    runs: list[Run] = field(default_factory=list)
    """The history's recent runs on this data, once this run is recorded (for the trend)."""
    notes: list[tuple[str, int]] = field(default_factory=list)
    """Lines for the end of the summary, each with the least verbosity that shows it (-1: even under -q)."""
    unwritten: list[str] = field(default_factory=list)
    """The outputs that could not be written at the end of the session (their options)."""
    _report_data: dict[str, Any] | None = None
    """The JSON report of the run, built once for the report and the HTML page."""

    def check(self, inputs: Sequence[tuple[str, Path]] = ()) -> None:
        """Fail at the start of the session, not at its end: every output path that could not be written (a
        directory, a folder that is not writable or cannot be made, a read-only file, a socket, a thresholds file
        the ratchet could not rewrite), an output that is one of the `inputs` (option, path) or another output
        (an input overwritten, two outputs in one file), an answers file whose suffix names no predictions format,
        a missing optional library, a history file that is not an emogate history (opened read-only: a refused
        file is never changed)."""
        from pytest_emogate.extras import from_clone, require
        from pytest_emogate.files import output_problem

        answers = {"--emogate-save-predictions", "--emogate-update-baseline"}
        problems, usable = [], []
        for name, path in self.paths():
            problem = output_problem(path)
            if problem is None and name in answers and not _names_a_format(path):
                problem = ("expected a .csv or .jsonl file name (the format the suffix names), found "
                           f"{repr(path.suffix) if path.suffix else 'no suffix'}")  # fmt: skip
            if problem is not None:
                problems.append(f"{name} {path}: {problem}")
            else:
                usable.append((name, path))
        problems += collisions(usable, inputs)
        if problems:
            raise usage_error("emogate outputs", problems)
        if self.plot is not None:
            require(("matplotlib",), "--emogate-plot", f"pip install matplotlib (the plot extra: {from_clone('plot')})")
        if self.ratchet:
            require(("ruamel.yaml",), "--emogate-ratchet", 'pip install "ruamel.yaml>=0.17.21"')
        if self.history is not None:
            from pytest_emogate.history import check_history

            check_history(self.history)

    def paths(self) -> list[tuple[str, Path]]:
        """Every output of the session that has a path, with its option (the step summary: its variable)."""
        files = {"--emogate-report": self.report, "--emogate-save-predictions": self.save_predictions,
                 "--emogate-markdown": self.markdown, f"${STEP_SUMMARY}": self.step_summary,
                 "--emogate-plot": self.plot, "--emogate-html": self.html, "--emogate-history": self.history,
                 "--emogate-update-baseline": self.update_baseline, "--emogate-ratchet": self.ratchet}  # fmt: skip
        return [(name, path) for name, path in files.items() if path is not None]

    def write(self, gate: Gate, verdict: Verdict) -> None:
        """Write every output of the session from its verdict (the result only when it is at hand).

        An output that cannot be written after all (a full disk, a FIFO nobody reads, a history changed under
        the run) does not stop the others: it is named in the notes and kept in `unwritten`, and the session's
        exit status is then not 0. Without the answers at hand (no gate test asked for them, or they could not be
        made), only the JSON report (verdict, not-run checks, error) and the update steps' refusals are written:
        every other output is named as not written, and one asked for counts in `unwritten` too.
        """
        rendered: list[str] = []

        def markdown() -> str:  # rendered once, for the file and the step summary
            if not rendered:
                rendered.append(self._markdown_text(gate, verdict))
            return rendered[0]

        steps: list[tuple[str, Path | None, Callable[[], None]]] = [
            ("--emogate-report", self.report, lambda: self._report(gate, verdict)),
            ("--emogate-save-predictions", self.save_predictions,
             lambda: _write_answers(self.save_predictions, gate.source.predictions())),
            ("--emogate-history", self.history, lambda: self._record(gate, verdict)),
            ("--emogate-update-baseline", self.update_baseline, lambda: self._update_baseline(gate, verdict)),
            ("--emogate-ratchet", self.ratchet, lambda: self._ratchet(gate, verdict)),
            ("--emogate-markdown", self.markdown, lambda: self._markdown(markdown())),
            (f"${STEP_SUMMARY}", self.step_summary, lambda: self._step_summary(markdown())),
            ("--emogate-html", self.html, lambda: self._html(gate, verdict)),
            ("--emogate-plot", self.plot, lambda: self._plot(gate, verdict)),
        ]  # fmt: skip
        for option, path, step in steps:
            if path is None:
                continue
            if not gate.available and option != "--emogate-report" and (verdict.passed or option not in STEPS):
                self._no_answers(option, path)  # the update steps say why they did not act, needing no answers
                continue
            try:
                step()
            except (OSError, UnicodeError, FileProblem, pytest.UsageError) as error:
                found = error.found if isinstance(error, FileProblem) else getattr(error, "strerror", None) or error
                reason = " ".join(str(found).split())[:300]
                self.unwritten.append(option)
                self.notes.append((f"emogate: {option} {display_path(path)} was NOT written: {reason}", -1))

    def _no_answers(self, option: str, path: Path) -> None:
        """Name an output that needs the answers, which this process does not hold. The step summary and the
        default history are not asked for by the run: they leave the exit status alone and are named under -v."""
        asked = option != f"${STEP_SUMMARY}" and (option != "--emogate-history" or self.history_asked)
        if asked:
            self.unwritten.append(option)
        reason = "this process holds no answers (no gate test asked for them, or they could not be made)"
        self.notes.append((f"emogate: {option} {display_path(path)} was NOT written: {reason}", -1 if asked else 1))

    def _plot(self, gate: Gate, verdict: Verdict) -> None:
        from pytest_emogate.report.plot import write_plot

        assert self.plot is not None
        write_plot(self.plot, gate.result(), gate.thresholds, verdict, gate.comparison())
        self.notes.append((f"emogate: wrote plots to {display_path(self.plot)}", 0))

    def _html(self, gate: Gate, verdict: Verdict) -> None:
        from pytest_emogate.files import atomic_write_text
        from pytest_emogate.report.html import render_html

        assert self.html is not None
        atomic_write_text(self.html, render_html(self.html_input(gate, verdict)))
        self.notes.append((f"emogate: wrote the HTML report to {display_path(self.html)}", 0))

    def html_input(self, gate: Gate, verdict: Verdict, report: dict[str, Any] | None = None) -> HtmlInput:
        """What the HTML page (and pytest-html's summary) shows of a run whose result is at hand; `report` in
        place of the run's JSON report (the summary needs none)."""
        from pytest_emogate.report.html import HtmlInput

        return HtmlInput(
            gate.result(), gate.thresholds, list(gate.outcomes().values()), verdict, gate.summary_header(),
            self._report_of(gate, verdict) if report is None else report, gate.comparison(),
            gate.baseline.description if gate.baseline else "",
        )  # fmt: skip

    def _report_of(self, gate: Gate, verdict: Verdict) -> dict[str, Any]:
        """The JSON report of a run whose result is at hand (built once: the report and the page read it)."""
        if self._report_data is None:
            from pytest_emogate.report.json_report import report_dict

            report = report_dict(gate.result(), list(gate.outcomes().values()), verdict, gate.provenance(),
                                 gate.timings())  # fmt: skip
            comparison = gate.comparison()
            if comparison is not None and gate.baseline is not None:
                from pytest_emogate.report.json_report import baseline_report

                report["baseline"] = baseline_report(comparison, gate.baseline, gate.thresholds)
            if gate.probe is not None:
                report["probe"] = gate.probe_report()
            self._report_data = report
        return self._report_data

    def _report(self, gate: Gate, verdict: Verdict) -> None:
        from pytest_emogate.report.json_report import write_report

        assert self.report is not None
        if gate.available:
            report = self._report_of(gate, verdict)
        else:
            report = {
                "verdict": verdict.status,
                "passed": verdict.passed,
                "not_run": list(verdict.not_run),
                "checks": [],
                "error": verdict.error,
            }
        write_report(self.report, report)

    def _record(self, gate: Gate, verdict: Verdict) -> None:
        from pytest_emogate.history import TREND_RUNS, git_commit, load_runs, record_run, run_of, skipped_note

        assert self.history is not None
        provenance = gate.provenance()
        run = run_of(gate.result(), verdict, provenance, git_commit(self.root))
        run_id = record_run(self.history, run)
        runs = load_runs(self.history, last=TREND_RUNS, data_fingerprint=provenance.get("data_fingerprint"))
        self.runs = runs
        self.notes.append((f"emogate: recorded run #{run_id} in {display_path(self.history)}", 1))
        if runs.skipped:
            self.notes.append((f"emogate: {skipped_note(display_path(self.history), runs.skipped)}", 0))

    def _update_baseline(self, gate: Gate, verdict: Verdict) -> None:
        assert self.update_baseline is not None
        where = display_path(self.update_baseline)
        if not verdict.passed:
            self.notes.append((f"emogate: baseline {where} NOT updated: the gate {_did_not_pass(verdict)}", -1))
            return
        predictions = gate.source.predictions()
        _write_answers(self.update_baseline, predictions)
        self.notes.append((f"emogate: baseline {where} updated with this run's {len(predictions)} answers", -1))

    def _ratchet(self, gate: Gate, verdict: Verdict) -> None:
        from pytest_emogate.evaluate.bootstrap import metric_intervals
        from pytest_emogate.evaluate.ratchet import ratchet

        name = gate.thresholds.path.name
        if not verdict.passed:
            self.notes.append((f"emogate ratchet: {name} NOT changed: the gate {_did_not_pass(verdict)}", -1))
            return
        result = gate.result()
        self.notes.append((ratchet(gate.thresholds, result, metric_intervals(result)).rstrip("\n"), -1))

    def _markdown_text(self, gate: Gate, verdict: Verdict) -> str:
        from pytest_emogate.report.markdown import MarkdownInput, render_markdown

        policy = gate.thresholds.regression
        return render_markdown(
            MarkdownInput(
                gate.result(), gate.thresholds, list(gate.outcomes().values()), verdict, gate.header(),
                gate.comparison(), gate.baseline.description if gate.baseline else "",
                policy.alpha if policy else None, self.runs, gate.probe_line(),
            )
        )  # fmt: skip

    def _markdown(self, text: str) -> None:
        from pytest_emogate.files import atomic_write_text

        assert self.markdown is not None
        atomic_write_text(self.markdown, text)
        self.notes.append((f"emogate: wrote the Markdown summary to {display_path(self.markdown)}", 0))

    def _step_summary(self, text: str) -> None:
        from pytest_emogate.files import append_text

        assert self.step_summary is not None
        # GitHub's contract: each step appends, never truncates; a blank line keeps this summary's heading off
        # the last line of what an earlier step wrote
        append_text(self.step_summary, text + "\n", paragraph=True)

    def summary(self, gate: Gate, verdict: Verdict, *, width: int, color: bool, verbosity: int) -> str:
        """The terminal summary: the tables when the result is at hand (never inference for it), and the verdict."""
        if not gate.available:
            from pytest_emogate.report.terminal import render_verdict

            return render_verdict(verdict, color=color)
        from pytest_emogate.report.terminal import render_summary

        sections: list[RenderableType] = []
        comparison = gate.comparison()
        if comparison is not None:
            from rich.text import Text

            from pytest_emogate.report.samples import sample_lines
            from pytest_emogate.report.terminal import regression_table

            sections.append(regression_table(comparison, list(gate.outcomes().values()), verdict, gate.thresholds))
            listed = sample_lines(comparison, self.show, where="JSON report: baseline.samples" if self.report
                                  else "--emogate-report PATH lists them all", width=width)  # fmt: skip
            if listed:
                sections.append(Text("\n".join(listed)))
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


REPORT_LIMIT = 1 << 30
"""The largest file a stopped run reads to tell whether it is an earlier run's JSON report (83,400 samples with a
baseline make tens of MiB)."""


def report_usage_error(config: pytest.Config, error: str) -> None:
    """A run a usage error stops at its start leaves no earlier run's verdict behind: the JSON report it asks for
    is written with verdict "error" and the message, and a note on stderr says so. Only an emogate report (or an
    empty file, a device, a new path) is replaced: a path that is the problem itself (a directory, an input such
    as the predictions file) is never written, and the note says why. A pytest-xdist worker or torchrun rank
    other than 0 leaves the report to the process that gates."""
    import json
    import sys

    from pytest_emogate.files import is_stream, output_problem, read_checked
    from pytest_emogate.inference.distributed import is_main_process
    from pytest_emogate.options import path_option

    if hasattr(config, "workerinput") or not is_main_process():
        return
    path = path_option(config, "report")
    if path is None:
        return
    where = f"--emogate-report {display_path(path)}"
    try:
        problem = output_problem(path)
        if problem is None:
            problem = _names_another_file(config, path)
        if problem is None and path.exists() and not is_stream(path):
            raw = read_checked(path, REPORT_LIMIT)
            try:
                earlier = json.loads(raw) if raw.strip() else {"verdict": None}
            except ValueError:  # not JSON, or not UTF-8
                earlier = None
            if not (isinstance(earlier, dict) and "verdict" in earlier):
                problem = "it holds something other than an emogate JSON report, so it was left as it was"
        if problem is None:
            from pytest_emogate.report.json_report import error_report, write_report

            write_report(path, error_report(error))
    except (OSError, FileProblem, ImportError) as failure:  # a full disk, an unreadable file, a broken install
        problem = " ".join(
            str(getattr(failure, "found", None) or getattr(failure, "strerror", None) or failure).split()
        )
    if problem is None:
        sys.stderr.write(f'emogate: {where} records this usage error (verdict "error", passed false)\n')
    else:
        sys.stderr.write(f"emogate: {where} was NOT written with this usage error: {problem[:300]}\n")


def _names_another_file(config: pytest.Config, report: Path) -> str | None:
    """Why the report path of a run stopped by a usage error must not be written: it is the path of another file
    the session reads or writes (an input, another output, the default history or the answer cache), which may
    not exist yet; None when it is the report's alone."""
    from pytest_emogate.files import same_file
    from pytest_emogate.options import CACHE_DEFAULT, HISTORY_DEFAULT, PATH_OPTIONS, STEP_OPTIONS, path_option

    others = {f"--emogate-{name.replace('_', '-')}": path_option(config, name)
              for name in (*PATH_OPTIONS, *STEP_OPTIONS) if name != "report"}  # fmt: skip
    others |= {
        "the default history": config.rootpath / HISTORY_DEFAULT,
        "the answer cache": config.rootpath / CACHE_DEFAULT,
    }
    for option, other in others.items():
        if other is not None and same_file(report, other):
            return f"it is also the path of {option} ({display_path(other)})"
    return None


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


def collisions(outputs: Sequence[tuple[str, Path]], inputs: Sequence[tuple[str, Path]]) -> list[str]:
    """Each of the `outputs` (option, path) that names the same file as one of the `inputs` or an earlier output
    (symlinks, relative spellings and hard links seen through), with what it would overwrite. The update steps
    replace their input on purpose (`--emogate-update-baseline` the baseline, `--emogate-ratchet` the thresholds
    file), and a character device or FIFO (`/dev/null`, a pipe) is written to, never replaced, so any number of
    outputs may share one."""
    from pytest_emogate.files import is_stream, same_file

    taken = list(inputs)
    problems = []
    for name, path in outputs:
        if is_stream(path):
            continue
        clash = next(((other, where) for other, where in taken
                      if same_file(path, where) and (name, other) not in REPLACES), None)  # fmt: skip
        if clash is None:
            taken.append((name, path))
            continue
        what = "an input" if clash in inputs else "another output"
        problems.append(f"{name} {path}: names the same file as {clash[0]} {clash[1]}; expected a file of its "
                        f"own (an output never overwrites {what})")  # fmt: skip
    return problems


def _names_a_format(path: Path) -> bool:
    from pytest_emogate.files import is_stream

    return path.suffix.lower() in ANSWER_SUFFIXES or is_stream(path)


def _write_answers(path: Path | None, predictions: list[Prediction]) -> None:
    """Answers in the format the path's suffix names: CSV for .csv, JSON lines otherwise (the suffixes and
    streams `check` lets through)."""
    from pytest_emogate.predictions import write_predictions_csv, write_predictions_jsonl

    assert path is not None
    if path.suffix.lower() == ".csv":
        write_predictions_csv(path, predictions)
    else:
        write_predictions_jsonl(path, predictions)


def _did_not_pass(verdict: Verdict) -> str:
    return "failed" if verdict.status == FAILED else f"is incomplete ({len(verdict.not_run)} checks not run)"
