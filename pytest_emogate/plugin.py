"""pytest hooks of the emogate quality gate: options, configure, the gate's items, two fixtures, the verdict and
the summary. The logic lives in the modules these hooks call.

Inert until asked: without `--emogate-predictions` or `--emogate-ckpt` (or their ini twins) this module adds a
marker and two fixtures and imports nothing heavy; any other gate option given alone is a usage error.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_emogate.options import add_options
from pytest_emogate.stash import GATE_KEY, OUTPUTS_KEY, RANK_KEY, SCRATCH_INPUT, SCRATCH_KEY

if TYPE_CHECKING:  # the gate's modules load only when the gate is on: pytest imports this module in every run
    from pytest_emogate.evaluate.metrics import GateResult
    from pytest_emogate.gate import Gate


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register every `--emogate-*` option and its `emogate_*` ini twin (the command line wins)."""
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Validate the thresholds, read the answers or preflight the data once: bad input stops the run with exit 4."""
    config.addinivalue_line("markers", "emogate: a check of the emogate quality gate (thresholds.yaml)")
    from pytest_emogate.configure import configure_gate

    try:
        configured = configure_gate(config)
    except pytest.UsageError as error:
        from pytest_emogate.outputs import report_usage_error

        report_usage_error(config, str(error))
        raise
    if configured is None:
        return
    from pytest_emogate.inference.distributed import torchrun_rank

    if isinstance(configured, tuple):
        from pytest_emogate.gate_tests import VerdictRecorder

        gate, outputs = configured
        config.stash[GATE_KEY], config.stash[OUTPUTS_KEY] = gate, outputs
        config.pluginmanager.register(VerdictRecorder(gate), "emogate-verdict")
        from pytest_emogate.html_hooks import register

        register(config, gate, outputs)
        if torchrun_rank() is not None:
            from pytest_emogate.inference.sources import CheckpointInference

            assert isinstance(gate.source, CheckpointInference), "torchrun mode is inference"
            config.stash[RANK_KEY] = gate.source
    else:
        config.stash[RANK_KEY] = configured  # a torchrun worker rank: it answers its shard and gates nothing


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under torchrun every rank infers here, at the same point, whatever tests it will run (rank 0: all)."""
    source = session.config.stash.get(RANK_KEY, None)
    if source is not None and not runs_no_test(session.config):  # every rank sees the same flags
        from pytest_emogate.inference.sources import AnswersUnavailable

        try:
            source.answer_as_rank()
        except AnswersUnavailable as error:
            if GATE_KEY not in session.config.stash:  # on rank 0 its gate tests fail with it, as in one process
                pytest.exit(f"emogate: {error}", returncode=pytest.ExitCode.TESTS_FAILED)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """The thresholds file, the source of the answers and the reproducibility signature."""
    gate = config.stash.get(GATE_KEY, None)
    return [gate.header(), gate.signature()] if gate else None


def pytest_ignore_collect(config: pytest.Config) -> bool | None:
    """With --emogate-only, skip the project's own test files (their imports may need other extras)."""
    gated = GATE_KEY in config.stash or RANK_KEY in config.stash
    return True if config.getoption("emogate_only") and gated else None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> Generator[None, None, None]:
    """Put the gate's items first, before any other plugin's hook runs: -k, -m, --deselect, --lf and reordering
    plugins (pytest-randomly) then treat them as any other test."""
    gate = config.stash.get(GATE_KEY, None)
    if gate is not None:
        from pytest_emogate.gate_tests import gate_items

        items[:0] = list(gate_items(session, gate))
    elif RANK_KEY in config.stash:  # a torchrun worker rank: only rank 0 runs tests
        config.hook.pytest_deselected(items=list(items))
        items.clear()
    return (yield)


@pytest.fixture(scope="session")
def emogate_gate(pytestconfig: pytest.Config) -> Gate:
    """The session's gate: thresholds, answer source and result (skips when the gate is off)."""
    gate = pytestconfig.stash.get(GATE_KEY, None)
    if gate is None:
        pytest.skip("the emogate gate is off: pass --emogate-predictions or --emogate-ckpt")
    from pytest_emogate.gate_tests import gate_result

    return gate_result(gate)


@pytest.fixture(scope="session")
def emogate_result(emogate_gate: Gate) -> GateResult:
    """The gate's result, computed once per session; read its fields in your own tests.

    Example::

        def test_sad_precision(emogate_result):
            assert emogate_result.per_class["sad"].precision >= 0.9

        def test_no_sad_sample_broken(emogate_result):  # with --emogate-baseline
            frame = emogate_result.frame()  # pandas: one row per sample
            assert frame[(frame.gold == "sad") & (frame.change == "broken")].empty

    Fields: n, labels, metrics (accuracy, weighted_f1, uar, ...), per_class[label] (n, correct, recall,
    recall_ci95, precision, f1), confusion[gold][pred], invalid_count, invalid_answers, samples, and with
    --emogate-baseline the baseline's result as `baseline`. With pandas: frame() (name, gold, output, word,
    predicted, correct, valid; with a baseline baseline_output, baseline_predicted, change) and confusion_frame().
    Every field is read-only (mappings are MappingProxyType, sequences tuples): the gate judges and reports these
    same numbers after your tests, so copy one to change it (`dict(emogate_result.metrics)`).
    """
    result = emogate_gate.result()
    if emogate_gate.baseline is None:
        return result
    from dataclasses import replace

    return replace(result, baseline=emogate_gate.baseline.result(emogate_gate.thresholds))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Every output is written: the gate lets go of its answers before pytest's last garbage collections, and the
    temporary answer folder of --emogate-no-cache is removed."""
    gate = config.stash.get(GATE_KEY, None)
    if gate is not None:
        gate.release()
    scratch = config.stash.get(SCRATCH_KEY, None)
    if scratch is not None:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """On the pytest-xdist controller, with --emogate-no-cache: its workers answer into its temporary folder."""
    scratch = node.config.stash.get(SCRATCH_KEY, None)
    if scratch is not None:
        node.workerinput[SCRATCH_INPUT] = str(scratch)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Judge the gate from what ran, then write every output from that one verdict (before JUnit writes its file)."""
    config = session.config
    gate = config.stash.get(GATE_KEY, None)
    if gate is None:
        if RANK_KEY in config.stash and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK  # a worker rank has nothing to test; torchrun must see 0
        return
    if hasattr(config, "workerinput") or runs_no_test(config):
        return  # an xdist worker (its controller judges), or nothing ran: no verdict
    verdict = gate.verdict()
    if verdict.status == "failed" and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # fail closed: a failed verdict never exits 0
    from pytest_emogate.outputs import junit_suite_properties

    junit_suite_properties(config, gate, verdict)
    outputs = config.stash[OUTPUTS_KEY]
    outputs.write(gate, verdict)
    if outputs.unwritten and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.USAGE_ERROR  # an output asked for and not written is not a green run


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The per-class table, overall metrics, labelled confusion matrix, invalid answers, the verdict and notes."""
    gate = config.stash.get(GATE_KEY, None)
    if gate is None or hasattr(config, "workerinput") or runs_no_test(config):
        return
    outputs = config.stash[OUTPUTS_KEY]
    terminalreporter.write_sep("=", "emogate summary")
    verbosity = config.get_verbosity()
    writer = config.get_terminal_writer()
    width, color = writer.fullwidth, terminalreporter.hasmarkup
    from pytest_emogate.report.terminal import encodable

    # the writer's stream (no public accessor): what its encoding cannot print, pytest escapes onto one line
    encoding = getattr(getattr(writer, "_file", None), "encoding", None) or "utf-8"
    summary = outputs.summary(gate, gate.verdict(), width=width, color=color, verbosity=verbosity)
    terminalreporter.write(encodable(summary, encoding))
    for note in outputs.terminal_notes(verbosity):
        terminalreporter.write_line(encodable(note, encoding))


SHOW_ONLY = ("collectonly", "showfixtures", "show_fixtures_per_test", "setuponly", "setupplan")
"""pytest's options that show the tests or their fixtures without running any test: --co, --fixtures,
--fixtures-per-test, --setup-only, --setup-plan."""


def runs_no_test(config: pytest.Config) -> bool:
    """Whether pytest only shows the tests or their fixtures: no gate test is judged, so there is no verdict to
    print, record or write."""
    return any(getattr(config.option, name, False) for name in SHOW_ONLY)
