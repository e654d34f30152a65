"""pytest wiring of the emogate quality gate: options, configure, the gate tests, fixtures, summary and files.

Inert until asked: without `--emogate-predictions` or `--emogate-ckpt` (or their ini twins) this module adds a
marker and two fixtures and imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_emogate.options import VALUE_OPTIONS, add_options, path_option, value_option

if TYPE_CHECKING:  # the gate's modules load only when the gate is on: pytest imports this module in every run
    from pytest_emogate.gate import Gate
    from pytest_emogate.metrics import GateResult
    from pytest_emogate.sources import CheckpointInference

GATE_KEY = pytest.StashKey["Gate"]()
RANK_KEY = pytest.StashKey["CheckpointInference"]()
"""Under torchrun: the source every rank answers its shard with at session start (rank 0 gates it too)."""

def pytest_addoption(parser: pytest.Parser) -> None:
    """Register every `--emogate-*` option and its `emogate_*` ini twin (the command line wins)."""
    from pytest_emogate import ci

    group = parser.getgroup("emogate", "emotion-recognition quality gate")
    add_options(parser, group)
    ci.add_options(parser, group)


def pytest_configure(config: pytest.Config) -> None:
    """Validate the thresholds, read the answers or preflight the data once: bad input stops the run with exit 4."""
    config.addinivalue_line("markers", "emogate: a check of the emogate quality gate (thresholds.yaml)")
    on_command_line = [name for name in ("predictions", "ckpt") if config.getoption(f"emogate_{name}")]
    if len(on_command_line) == 2:
        raise pytest.UsageError("--emogate-predictions and --emogate-ckpt are exclusive: gate a file or a checkpoint")
    if on_command_line:  # a source given on the command line wins over the other one set in the ini file
        predictions = path_option(config, "predictions") if on_command_line == ["predictions"] else None
        ckpt = path_option(config, "ckpt") if on_command_line == ["ckpt"] else None
    else:
        predictions, ckpt = path_option(config, "predictions"), path_option(config, "ckpt")
        if predictions is not None and ckpt is not None:
            raise pytest.UsageError("ini settings emogate_predictions and emogate_ckpt are exclusive: keep one")
    if predictions is None and ckpt is None:
        return
    from pytest_emogate.gate import Gate
    from pytest_emogate.sources import PredictionsFile
    from pytest_emogate.thresholds import load_thresholds

    thresholds = load_thresholds(path_option(config, "thresholds") or config.rootpath / "thresholds.yaml")
    if predictions is not None:
        config.stash[GATE_KEY] = Gate(thresholds, PredictionsFile(predictions, thresholds.labels))
    else:
        from pytest_emogate.distributed import is_main_process, torchrun_rank

        source = _inference_source(config, thresholds.labels)
        if torchrun_rank() is not None:
            if source.devices:
                raise pytest.UsageError("--emogate-devices is refused under torchrun: each rank is one device already")
            config.stash[RANK_KEY] = source
            if not is_main_process():
                return  # a worker rank: it answers its shard at session start and gates nothing
        config.stash[GATE_KEY] = Gate(thresholds, source)
    from pytest_emogate import ci

    ci.configure(config, config.stash[GATE_KEY], lambda name: path_option(config, name))


def _inference_source(config: pytest.Config, labels: tuple[str, ...]) -> CheckpointInference:
    from pytest_emogate.inference import InferenceSettings
    from pytest_emogate.sources import CheckpointInference

    paths = {name: path_option(config, name) for name in ("ckpt", "data", "llama", "vit")}
    missing = [f"--emogate-{name} (or ini emogate_{name})" for name, path in paths.items() if path is None]
    if missing:
        raise pytest.UsageError(f"--emogate-ckpt also needs {', '.join(missing)}")
    settings = InferenceSettings(
        ckpt=paths["ckpt"], llama=paths["llama"], vit=paths["vit"], labels=labels,
        merge_lora=config.getoption("emogate_merge_lora"),
        **{name: value_option(config, name) for name in VALUE_OPTIONS},
    )  # fmt: skip
    cache = None
    if not config.getoption("emogate_no_cache"):
        cache = path_option(config, "cache") or config.rootpath / ".emogate" / "cache"
    return CheckpointInference(
        settings, paths["data"], labels, cache, devices=value_option(config, "devices"),
        quiet_terminal=lambda: _uncaptured(config),
        progress=config.get_verbosity() >= 0,
    )  # fmt: skip


@contextmanager
def _uncaptured(config: pytest.Config) -> Iterator[None]:
    """Let the progress bar reach the terminal, on a line of its own, while inference runs inside a test."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    with capture.global_and_fixture_disabled() if capture else nullcontext():
        if reporter is not None:
            reporter.ensure_newline()
        yield


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under torchrun every rank infers here, at the same point, whatever tests it will run (rank 0: all)."""
    source = session.config.stash.get(RANK_KEY, None)
    if source is not None and not session.config.option.collectonly:  # every rank sees the same flag
        from pytest_emogate.gate import AnswersUnavailable

        try:
            source.answer_as_rank()
        except AnswersUnavailable as error:
            pytest.exit(f"emogate: {error}", returncode=pytest.ExitCode.TESTS_FAILED)


def pytest_report_header(config: pytest.Config) -> str | None:
    """Name the thresholds file and the source of the answers in the session header."""
    gate = config.stash.get(GATE_KEY, None)
    return gate.header() if gate else None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With --emogate-only, skip the project's own test files (their imports may need other extras)."""
    gated = GATE_KEY in config.stash or RANK_KEY in config.stash
    return True if config.getoption("emogate_only") and gated else None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the gate tests first, before -k/-m selection and reordering plugins see the items."""
    if GATE_KEY in config.stash:
        items[:0] = list(_gate_items(session))
    elif RANK_KEY in config.stash:  # a torchrun worker rank: only rank 0 runs tests
        config.hook.pytest_deselected(items=list(items))
        items.clear()


class _GateModule(pytest.Module):
    """The gate tests' module, without the parametrized tests whose thresholds section declares no check."""

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        from pytest_emogate.gate_tests import PARAMETRIZED

        def declared(node: pytest.Item | pytest.Collector) -> bool:
            unparametrized = isinstance(node, pytest.Function) and not hasattr(node, "callspec")
            return not (unparametrized and node.originalname in PARAMETRIZED)

        return [node for node in super().collect() if declared(node)]


def _gate_items(session: pytest.Session) -> Iterator[pytest.Item]:
    from pytest_emogate import gate_tests

    yield from session.genitems(_GateModule.from_parent(session, path=Path(gate_tests.__file__), nodeid="emogate"))


@pytest.fixture(scope="session")
def emogate_gate(pytestconfig: pytest.Config) -> Gate:
    """The session's gate: thresholds, answer source and result (skips when the gate is off)."""
    from pytest_emogate.gate import AnswersUnavailable

    gate = pytestconfig.stash.get(GATE_KEY, None)
    if gate is None:
        pytest.skip("the emogate gate is off: pass --emogate-predictions or --emogate-ckpt")
    try:
        gate.result()
    except pytest.UsageError as error:  # a weight file found broken only when the model loads: still exit 4
        pytest.exit(f"ERROR: {error}", returncode=pytest.ExitCode.USAGE_ERROR)
    except AnswersUnavailable as error:  # e.g. non-finite logits: no answer can be gated, so no check can pass
        pytest.exit(f"emogate: {error}", returncode=pytest.ExitCode.TESTS_FAILED)
    return gate


@pytest.fixture(scope="session")
def emogate_result(emogate_gate: Gate) -> GateResult:
    """The gate's result, computed once per session; read its fields in your own tests.

    Example::

        def test_sad_precision(emogate_result):
            assert emogate_result.per_class["sad"].precision >= 0.9

    Fields: n, labels, metrics (accuracy, weighted_f1, uar, ...), per_class[label] (n, correct, recall,
    recall_ci95, precision, f1), confusion[gold][pred], invalid_count, invalid_answers, samples.
    """
    return emogate_gate.result()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the JSON report and the saved predictions (on the controlling process only)."""
    config = session.config
    if RANK_KEY in config.stash and GATE_KEY not in config.stash:
        if session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK  # a worker rank has nothing to test; torchrun must see 0
        return
    gate = config.stash.get(GATE_KEY, None)
    if gate is None or hasattr(config, "workerinput"):
        return
    from pytest_emogate.ci import report_sections
    from pytest_emogate.predictions import write_predictions_jsonl
    from pytest_emogate.report import report_dict, write_report

    report_path = path_option(config, "report")
    if report_path is not None:
        result = gate.result()
        report = report_dict(result, gate.outcomes(), gate.provenance(), gate.timings())
        write_report(report_path, {**report, **report_sections(gate)})
    save_path = path_option(config, "save_predictions")
    if save_path is not None:
        write_predictions_jsonl(save_path, gate.source.predictions())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print the per-class table, overall metrics, labelled confusion matrix, invalid answers and verdict."""
    gate = config.stash.get(GATE_KEY, None)
    if gate is None or not (gate.ready or gate.source.loaded):
        return
    from pytest_emogate.ci import summary_sections
    from pytest_emogate.report import render_summary

    quiet = config.get_verbosity() < 0
    text = render_summary(
        gate.result(),
        gate.thresholds,
        gate.outcomes(),
        gate.summary_header(),
        width=config.get_terminal_writer().fullwidth,
        color=terminalreporter.hasmarkup,
        quiet=quiet,
        sections=summary_sections(config),
    )
    terminalreporter.write_sep("=", "emogate summary")
    terminalreporter.write(text)
