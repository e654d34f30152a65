"""Every `--emogate-*` option and its `emogate_*` ini twin: definitions, defaults, and reading them (the CLI wins).

Light on purpose: pytest imports it with the plugin in every run. The gate fails closed: a gate option given
without an answer source, or an answer source given an empty value, is a usage error, never a green run of the
project's own tests.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_emogate.formats import LISTED_SAMPLES
from pytest_emogate.inference.settings import AUTO, DTYPES, MODES, default_of

SOURCES = ("predictions", "ckpt")
"""The two answer sources: a predictions file made elsewhere, or inference from a checkpoint."""
SOURCE_NOUNS = {
    "predictions": "a predictions file (CSV or JSONL)",
    "ckpt": "a stage-2 checkpoint (.pth or .safetensors)",
}
HISTORY_DEFAULT = Path(".emogate") / "history.sqlite"
CACHE_DEFAULT = Path(".emogate") / "cache"
STEP_SUMMARY = "GITHUB_STEP_SUMMARY"

PATH_OPTIONS = {
    "predictions": "gate a predictions file (CSV or JSONL with name, label, output); activates the gate",
    "ckpt": "run Emotion-LLaMA inference from this stage-2 checkpoint (.pth or .safetensors); activates the gate",
    "data": "the Test3 data: a directory in the release layout, or a YAML manifest naming each path",
    "llama": "the base Llama-2-7b-chat-hf directory (HF format, local only)",
    "vit": "the EVA-ViT-g weights (eva_vit_g.pth format)",
    "thresholds": "the gate file (default: thresholds.yaml at the rootdir)",
    "report": "write the JSON report to this path",
    "save_predictions": "write the answers as JSONL that --emogate-predictions accepts",
    "cache": f"the per-sample answer cache with resume (default {CACHE_DEFAULT} at the rootdir)",
    "baseline": "compare with an accepted model's predictions (CSV or JSONL): adds the test_no_regression checks",
    "markdown": f"write a Markdown summary to this path (it is also appended to ${STEP_SUMMARY} when set)",
    "html": "write one self-contained HTML page: verdict, per-class bars, confusion heatmap, every sample with "
    "filters, the regression table, provenance (opens offline: it loads nothing)",
    "plot": "write a PNG: labelled confusion heatmap and per-class recall with intervals (needs matplotlib: the "
    "plot extra)",
    "history": f"the SQLite run history every gated run appends to (default {HISTORY_DEFAULT} at the rootdir)",
}
"""Path options, each with an ini twin whose relative paths start at the ini file's folder."""


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, found {text!r}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _finite_positive(text: str) -> float:
    """A LoRA alpha: a finite positive number (a NaN or infinite alpha would only show as NaN logits after the
    whole inference)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, found {text!r}")
    return value


_finite_positive.__name__ = "finite positive number"


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, found {text!r}")
        return text

    parse.__name__ = "choice"
    return parse


def _at_least_zero(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, found {text!r}")
    return value


def _batch_size(text: str) -> int | str:
    """A batch size: a positive whole number, or `auto` (the default, halved on out of memory)."""
    if text == AUTO:
        return AUTO
    try:
        return int(_positive(int)(text))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive int or {AUTO}, found {text!r}") from None


_batch_size.__name__ = "batch size"


def _devices(text: str) -> tuple[str, ...]:
    from pytest_emogate.inference.distributed import parse_devices  # imports torch: only when the option is given

    return tuple(parse_devices(text))


_devices.__name__ = "device list"


VALUE_OPTIONS: dict[str, tuple[Callable[[str], Any], Any, str]] = {
    name: (kind, default_of(name), help_text)
    for name, kind, help_text in (
        ("device", str, "inference device: auto (CUDA when available), cpu, cuda or cuda:N"),
        ("batch_size", _batch_size, f"samples per batch in inference (the original used 1), or {AUTO}: start at "
                                    f"{default_of('batch_size')} and halve it on out of memory, down to 1"),
        ("max_new_tokens", _positive(int), "cap on generated tokens per answer (the original's 500 reproduces it)"),
        ("image_size", _positive(int), "the ViT input size (the original's 448; the weights cannot tell it)"),
        ("lora_alpha", _finite_positive, "LoRA alpha (default: the checkpoint's saved config, else 16)"),
        ("head_dim", _positive(int), "EVA-ViT head dimension (the original's 88: 16 heads at width 1408)"),
        ("mode", _choice(*MODES), "generate: free greedy generation (the original's); score: label scoring with "
                                  "generation fallback"),
        ("workers", _at_least_zero, "DataLoader processes preparing frames and features during inference (0: a "
                                    "thread reads ahead)"),
        ("dtype", _choice(*DTYPES), "precision: auto (the original's fp16 autocast on CUDA, fp32 on CPU), float32, "
                                    "or float16 / bfloat16 (the original's mixed precision in that dtype, any device)"),
    )
}  # fmt: skip
"""Inference settings: their defaults are the InferenceSettings fields'."""
RUN_OPTIONS: dict[str, tuple[Callable[[str], Any], Any, str]] = {
    "devices": (_devices, (), "one inference process per device through torch.distributed: cuda:0,cuda:1, all, "
                              "or cpu,cpu"),
    "show": (_at_least_zero, LISTED_SAMPLES, "broken, fixed and changed samples the summary lists per list (with "
                                             "--emogate-baseline; the JSON report has them all)"),
    "probe": (_positive(int), None, "after inference, answer N samples (stratified by gold class) again at batch "
                                    "size 1, generation, LoRA unmerged, same dtype: adds test_consistency (max "
                                    "differing answers: consistency.max_disagree in thresholds.yaml, default 0)"),
}  # fmt: skip
"""Options of the run rather than of the answers: they are not InferenceSettings fields."""
FLAG_OPTIONS = {
    "only": "collect only the gate tests, not the project's own tests (a gate-only CI job)",
    "no_cache": "neither read nor write the per-sample answer cache",
    "merge_lora": "merge the LoRA into the base weights for speed (agreement with the unmerged model is reported)",
    "no_history": "do not record this run in the history",
    "ratchet": "raise the floors this run clears with margin (only when the gate passes)",
}
"""Switches; none has an ini twin, so the explicit update step never runs by accident."""
STEP_OPTIONS = {
    "update_baseline": "write this run's answers (JSONL) as the new baseline, only when the gate passes",
}
"""Paths of explicit update steps: no ini twin."""


METAVARS = {"device": "DEVICE", "batch_size": f"N|{AUTO}", "image_size": "PIXELS", "lora_alpha": "ALPHA",
            "mode": "|".join(MODES), "dtype": "|".join(DTYPES), "devices": "LIST"}  # fmt: skip
"""What `--help` shows for a value option's argument; a count is N."""
DEFAULT_TEXT = {"devices": "one process on --emogate-device"}
"""How `--help` words a default that is not a value to type."""


def add_options(parser: pytest.Parser) -> None:
    """Register every option in one `emogate` group, each with its `emogate_*` ini twin where it makes sense."""
    group = parser.getgroup("emogate", "emotion-recognition quality gate")
    for name, help_text in PATH_OPTIONS.items():
        group.addoption(_flag(name), dest=f"emogate_{name}", metavar="PATH", help=help_text)
        parser.addini(f"emogate_{name}", help_text + " (relative to the ini file)", default=None)
    for name, (kind, default, help_text) in {**VALUE_OPTIONS, **RUN_OPTIONS}.items():
        metavar = METAVARS.get(name, "N")
        # a None default is described in the help itself (e.g. lora_alpha: the checkpoint's saved value)
        described = help_text if default is None else f"{help_text}; default {DEFAULT_TEXT.get(name, default)}"
        group.addoption(_flag(name), dest=f"emogate_{name}", type=kind, metavar=metavar, help=described)
        parser.addini(f"emogate_{name}", described, default=None)
    for name, help_text in FLAG_OPTIONS.items():
        group.addoption(_flag(name), action="store_true", dest=f"emogate_{name}", help=help_text)
    for name, help_text in STEP_OPTIONS.items():
        group.addoption(_flag(name), dest=f"emogate_{name}", metavar="PATH", help=help_text)


def _flag(name: str) -> str:
    return f"--emogate-{name.replace('_', '-')}"


def answer_source(config: pytest.Config) -> tuple[str, Path] | None:
    """The session's answer source, ("predictions" or "ckpt", path), or None when the gate is off.

    A source on the command line wins over the other one set in the ini file; an empty value is an error.
    """
    empty = [(_flag(name), name) for name in SOURCES if config.getoption(f"emogate_{name}") == ""]
    empty += [(f"ini setting emogate_{name}", name) for name in SOURCES if config.getini(f"emogate_{name}") == ""]
    if empty:
        said = "; ".join(f"{where} is empty: expected the path of {SOURCE_NOUNS[name]}" for where, name in empty)
        raise pytest.UsageError(f"{said} (an unset CI variable?); the gate never runs without its answers")
    on_command_line = [name for name in SOURCES if config.getoption(f"emogate_{name}")]
    in_ini = [name for name in SOURCES if config.getini(f"emogate_{name}")]
    if len(on_command_line) == 2:
        raise pytest.UsageError("--emogate-predictions and --emogate-ckpt are exclusive: gate a file or a checkpoint")
    if not on_command_line and len(in_ini) == 2:
        raise pytest.UsageError("ini settings emogate_predictions and emogate_ckpt are exclusive: keep one")
    chosen = on_command_line or in_ini
    if not chosen:
        return None
    path = path_option(config, chosen[0])
    assert path is not None, "a chosen source has a value"
    return chosen[0], path


def refuse_options_without_source(config: pytest.Config) -> None:
    """A gate option on the command line without an answer source is a usage error: the gate must not fail open.

    Ini settings stay inert, so a project can keep its output paths configured while running its own tests.
    """
    names = [*PATH_OPTIONS, *VALUE_OPTIONS, *RUN_OPTIONS, *FLAG_OPTIONS, *STEP_OPTIONS]
    given = [_flag(name) for name in names if config.getoption(f"emogate_{name}") not in (None, False)]
    if given:
        raise pytest.UsageError(
            f"{', '.join(given)} given without an answer source: pass --emogate-predictions PATH (answers made "
            "elsewhere) or --emogate-ckpt PATH (inference), or set emogate_predictions / emogate_ckpt in the ini file"
        )


def path_option(config: pytest.Config, name: str) -> Path | None:
    """CLI paths are relative to the invocation directory, ini paths to the ini file's directory."""
    value = config.getoption(f"emogate_{name}", None)
    if value:
        return config.invocation_params.dir / str(value)
    if name in STEP_OPTIONS:
        return None
    text = config.getini(f"emogate_{name}")
    if text:
        base = config.inipath.parent if config.inipath else config.rootpath
        return base / str(text)
    return None


def value_option(config: pytest.Config, name: str) -> Any:
    """The command line, else the ini value parsed like the command line, else the default."""
    kind, default, _ = {**VALUE_OPTIONS, **RUN_OPTIONS}[name]
    value = config.getoption(f"emogate_{name}")
    if value is not None:
        return value
    text = config.getini(f"emogate_{name}")
    if not text:
        return default
    try:
        return kind(str(text))
    except argparse.ArgumentTypeError as error:
        raise pytest.UsageError(f"ini setting emogate_{name}: {error}") from None
