"""The options -> the session's gate (thresholds, answer source, baseline) and its outputs, once, at configure time.

Every bad input stops the run here with a UsageError (exit 4) before any test runs: the thresholds, the
predictions or the data, the baseline, a missing extra, an unusable history file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_emogate.options import (
    CACHE_DEFAULT,
    HISTORY_DEFAULT,
    STEP_SUMMARY,
    VALUE_OPTIONS,
    answer_source,
    path_option,
    refuse_options_without_source,
    value_option,
)
from pytest_emogate.stash import SCRATCH_INPUT, SCRATCH_KEY

if TYPE_CHECKING:
    from pytest_emogate.evaluate.thresholds import Thresholds
    from pytest_emogate.gate import AnswerSource, Gate
    from pytest_emogate.inference.sources import CheckpointInference
    from pytest_emogate.outputs import Outputs


def configure_gate(config: pytest.Config) -> tuple[Gate, Outputs] | CheckpointInference | None:
    """The gate and its outputs; under torchrun on a worker rank only the source it answers with; None when off."""
    source_option = answer_source(config)
    if source_option is None:
        refuse_options_without_source(config)
        return None
    from pytest_emogate.evaluate.thresholds import load_thresholds
    from pytest_emogate.gate import Gate

    kind, path = source_option
    thresholds = load_thresholds(path_option(config, "thresholds") or config.rootpath / "thresholds.yaml")
    source: AnswerSource
    inference = None
    inputs = [("--emogate-thresholds", thresholds.path), (f"--emogate-{kind}", path)]
    if kind == "predictions":
        from pytest_emogate.inference.file_source import PredictionsFile

        probe = config.getoption("emogate_probe")  # an ini emogate_probe stays inert, as every inference setting
        if probe:
            raise pytest.UsageError(
                f"--emogate-probe {probe}: the probe answers samples again with the model, so it needs "
                "--emogate-ckpt; a predictions file cannot be asked again"
            )
        refuse_inference_options(config)

        source = PredictionsFile.read(
            path, thresholds.labels, thresholds.expect_samples, thresholds.source("expect_samples")
        )
    else:
        from pytest_emogate.inference.distributed import is_main_process, torchrun_rank

        inference = _inference_source(config, path, thresholds.labels, value_option(config, "probe") or 0)
        _check_sample_count(len(inference.data.samples), thresholds, f"Test3 data {inference.data_path}")
        data = inference.data
        inputs += [("--emogate-vit", inference.settings.vit), ("--emogate-data", data.source),
                   ("the annotation file of --emogate-data", data.annotation),
                   ("the transcripts file of --emogate-data", data.transcripts)]  # fmt: skip
        if torchrun_rank() is not None:
            if inference.devices:
                raise pytest.UsageError("--emogate-devices is refused under torchrun: each rank is one device already")
            if not is_main_process():
                return inference  # a worker rank: it answers its shard at session start and gates nothing
        source = inference
    baseline = None
    baseline_path = path_option(config, "baseline")
    if baseline_path is not None:
        from pytest_emogate.evaluate.baseline import read_baseline

        baseline = read_baseline(baseline_path, thresholds)
        if source.loaded:
            baseline.check_pairs(source.predictions(), source.description)
        inputs.append(("--emogate-baseline", baseline_path))
    gate = Gate(thresholds, source, baseline, inference.probe if inference is not None else None)
    return gate, _outputs(config, thresholds.path, inputs)


INFERENCE_ONLY = ("data", "llama", "vit", "cache", *VALUE_OPTIONS, "devices", "no_cache", "merge_lora")
"""The options that shape only answers the plugin makes (--emogate-probe has its own message)."""


def refuse_inference_options(config: pytest.Config) -> None:
    """An inference option on the command line beside a predictions file is a usage error: it would change
    nothing, and a run that looks tuned (--emogate-dtype float16) must not pass on answers made otherwise. Ini
    settings stay inert, as without an answer source: a project can keep its inference settings configured."""
    given = [f"--emogate-{name.replace('_', '-')}" for name in INFERENCE_ONLY
             if config.getoption(f"emogate_{name}") not in (None, False)]  # fmt: skip
    if given:
        it = "they shape" if len(given) > 1 else "it shapes"
        raise pytest.UsageError(
            f"{', '.join(given)} given with a predictions file: {it} only the answers the plugin makes, so "
            f"{'they need' if len(given) > 1 else 'it needs'} --emogate-ckpt (the file's answers are made already)"
        )


def _check_sample_count(count: int, thresholds: Thresholds, what: str) -> None:
    """A UsageError naming both numbers unless the data holds the `expect_samples` the thresholds declare."""
    expected = thresholds.expect_samples
    if expected is not None and count != expected:
        source = thresholds.source("expect_samples")
        raise pytest.UsageError(f"{what}: the data set has {count} samples; expected {expected} ({source})")


def _outputs(config: pytest.Config, thresholds: Path, inputs: list[tuple[str, Path]]) -> Outputs:
    """The session's outputs, checked against each other and the `inputs` (option, path) the session reads."""
    from pytest_emogate.outputs import Outputs

    history = None
    if not config.getoption("emogate_no_history"):
        history = path_option(config, "history") or config.rootpath / HISTORY_DEFAULT
    step_summary = os.environ.get(STEP_SUMMARY)
    outputs = Outputs(
        root=config.rootpath,
        report=path_option(config, "report"),
        save_predictions=path_option(config, "save_predictions"),
        markdown=path_option(config, "markdown"),
        step_summary=Path(step_summary) if step_summary else None,
        plot=path_option(config, "plot"),
        html=path_option(config, "html"),
        history=history,
        history_asked=path_option(config, "history") is not None,
        update_baseline=path_option(config, "update_baseline"),
        ratchet=thresholds if config.getoption("emogate_ratchet") else None,
        show=value_option(config, "show"),
    )
    outputs.check(inputs)
    return outputs


def _inference_source(config: pytest.Config, ckpt: Path, labels: tuple[str, ...], probe: int) -> CheckpointInference:
    from pytest_emogate.extras import INFER, INFER_INSTALL, require

    require(INFER, "--emogate-ckpt", INFER_INSTALL)
    from pytest_emogate.inference.settings import InferenceSettings
    from pytest_emogate.inference.sources import CheckpointInference

    paths = {name: path_option(config, name) for name in ("data", "llama", "vit")}
    missing = [f"--emogate-{name} (or ini emogate_{name})" for name, path in paths.items() if path is None]
    data, llama, vit = paths["data"], paths["llama"], paths["vit"]
    if missing or data is None or llama is None or vit is None:
        raise pytest.UsageError(f"--emogate-ckpt also needs {', '.join(missing)}")
    settings = InferenceSettings(
        ckpt=ckpt, llama=llama, vit=vit, labels=labels, merge_lora=bool(config.getoption("emogate_merge_lora")),
        **{name: value_option(config, name) for name in VALUE_OPTIONS},
    )  # fmt: skip
    cache = scratch = None
    if not config.getoption("emogate_no_cache"):
        cache = path_option(config, "cache") or config.rootpath / CACHE_DEFAULT
    else:
        scratch = _scratch(config)
    return CheckpointInference.prepare(
        settings, data, labels, cache, devices=value_option(config, "devices"),
        quiet_terminal=lambda: uncaptured(config), progress=config.get_verbosity() >= 0, probe=probe, scratch=scratch,
    )  # fmt: skip


def _scratch(config: pytest.Config) -> Path:
    """With --emogate-no-cache, the temporary folder the answers pass through: on a pytest-xdist worker its
    controller's (the workers then infer once between them, and the controller holds every answer for the
    outputs, the baseline update and the ratchet), else a new one, removed when the session ends."""
    shared = getattr(config, "workerinput", {}).get(SCRATCH_INPUT)
    if shared:
        return Path(shared)
    folder = Path(tempfile.mkdtemp(prefix="emogate-"))
    config.stash[SCRATCH_KEY] = folder
    return folder


@contextmanager
def uncaptured(config: pytest.Config) -> Iterator[None]:
    """Let the progress bar reach the terminal, on a line of its own, while inference runs inside a test."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    with capture.global_and_fixture_disabled() if capture else nullcontext():
        if reporter is not None:
            reporter.ensure_newline()
        yield
