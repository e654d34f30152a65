"""The gate's own pytest items: one per declared check, under one collector node `emogate`.

They are built from thresholds.yaml (and the baseline), not collected from Python files, so a project's own
`python_files` / `python_functions` / `python_classes` cannot hide them. Ids follow design.md:
`emogate::test_overall[accuracy]`, `emogate::test_class_floor[worried]`, `emogate::test_label_validity`,
`emogate::test_confusion_limit[neutral->happy]`, with a baseline `emogate::test_no_regression[accuracy]`, and
with `--emogate-probe N` `emogate::test_consistency` (it runs the probe: deselected, the probe does not run).
Every item carries the `emogate` marker, so `-k`, `-m`, `--deselect`, `--lf` and `-x` select them as usual.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_emogate.evaluate.checks import Check
from pytest_emogate.evaluate.regression import junit_properties
from pytest_emogate.gate import Gate
from pytest_emogate.inference.sources import AnswersUnavailable
from pytest_emogate.stash import GATE_KEY

NODE = "emogate"
"""The collector's node id: the gate tests' ids start with `emogate::`."""
NO_ANSWERS = "no answers could be made"
"""How a gate test that has no answers to judge starts its message."""
WORK_KEY = "emogate_work"
"""Under xdist, the key of a worker's `workeroutput` that says what it did to get the answers."""


def gate_items(session: pytest.Session, gate: Gate) -> Iterator[pytest.Item]:
    """The gate's items, collected through pytest (so collection hooks and reports see them)."""
    collector = GateCollector.from_parent(session, name=NODE, nodeid=NODE, path=gate.thresholds.path)
    yield from session.genitems(collector)


class VerdictRecorder:
    """A plugin object that notes how each gate test ended, for the verdict; it reads test reports, so on the
    xdist controller (which never collects the items) the workers' reports count too. Under xdist it also carries
    what each worker did to get the answers to the controller, whose summary reports it."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.check_ids = {f"{NODE}::{check.test_name}": check.id for check in gate.checks}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Record one phase of a gate test."""
        check_id = self.check_ids.get(report.nodeid)
        if check_id is not None:
            self.gate.record(check_id, report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """On an xdist worker: send what it did to get the answers (inferred or read) to the controller."""
        output = getattr(session.config, "workeroutput", None)
        if output is not None:
            output[WORK_KEY] = self.gate.source.work()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """On the xdist controller: note what a worker that finished did, so the summary counts its answers."""
        work = getattr(node, "workeroutput", {}).get(WORK_KEY)
        if work:
            self.gate.source.add_work(work)


def gate_result(gate: Gate) -> Gate:
    """The gate with its result computed. A weight file found broken only when the model loads ends the session
    (exit 4). Answers that could not be made fail every gate test (and every test using the result) with one
    message naming the cause, the first one to meet it with the whole of it (a rank's traceback), the others with
    its first line: the answering ran once, and no check can pass without answers (exit 1)."""
    __tracebackhide__ = True
    first = gate.error is None
    try:
        gate.result()
        return gate
    except pytest.UsageError as error:
        gate.fail(str(error))
        pytest.exit(f"ERROR: {error}", returncode=pytest.ExitCode.USAGE_ERROR)
    except AnswersUnavailable as error:
        gate.fail(str(error))
        said = str(error) if first else str(error).splitlines()[0]
    pytest.fail(f"{NO_ANSWERS}: {said}", pytrace=False)  # outside the handler: one message, nothing chained


def probed(gate: Gate) -> None:
    """Run the consistency probe; when its answers cannot be made, the consistency test fails saying why (a
    weight file found broken only now ends the session with exit 4, as for the main answers)."""
    __tracebackhide__ = True
    try:
        gate.probe_result()
    except pytest.UsageError as error:
        pytest.exit(f"ERROR: {error}", returncode=pytest.ExitCode.USAGE_ERROR)
    except AnswersUnavailable as error:
        pytest.fail(str(error), pytrace=False)


class GateCollector(pytest.Collector):
    """The `emogate` node: one GateItem per declared check, in thresholds order."""

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        """The items of the gate's declared checks."""
        gate = self.config.stash[GATE_KEY]
        return [GateItem.from_parent(self, name=check.test_name, check=check) for check in gate.checks]


class GateItem(pytest.Item):
    """One check of the gate: it passes or fails with the check's one-line message."""

    def __init__(self, *, check: Check, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.add_marker(pytest.mark.emogate)

    def runtest(self) -> None:
        """Compute the session's result (once), then judge this check."""
        __tracebackhide__ = True
        gate = gate_result(self.config.stash[GATE_KEY])
        if self.check.kind == "consistency":
            probed(gate)
        outcome = gate.outcomes()[self.check.id]
        if not _junit_forbids_case_properties(self.config):
            self.user_properties += [
                ("emogate_check", outcome.id), ("emogate_value", outcome.value), ("emogate_limit", outcome.limit),
                ("emogate_n", outcome.n),
            ]  # fmt: skip
            comparison = gate.comparison()
            if self.check.kind == "regression" and comparison is not None:
                self.user_properties += junit_properties(comparison, self.check.param)
        if not outcome.passed:
            pytest.fail(outcome.message, pytrace=False)

    def reportinfo(self) -> tuple[os.PathLike[str] | str, int | None, str]:
        """The thresholds file (where the check is declared), its first line, and the test name (pytest needs a
        line number to report a skip mark)."""
        return self.path, 0, self.name


def _junit_forbids_case_properties(config: pytest.Config) -> bool:
    """The xunit2 schema (pytest's default JUnit family) allows no properties inside a testcase."""
    return bool(config.getoption("xmlpath", None)) and config.getini("junit_family") == "xunit2"
