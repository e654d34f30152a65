"""The `--emogate-*` options and their `emogate_*` ini twins: definitions, and reading them (the CLI wins).

Light on purpose: pytest imports it with the plugin in every run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PATH_OPTIONS = {
    "predictions": "gate a predictions file (CSV or JSONL with name, label, output); activates the gate",
    "ckpt": "run Emotion-LLaMA inference from this stage-2 checkpoint (.pth or .safetensors); activates the gate",
    "data": "the Test3 data: a directory in the release layout, or a YAML manifest naming each path",
    "llama": "the base Llama-2-7b-chat-hf directory (HF format, local only)",
    "vit": "the EVA-ViT-g weights (eva_vit_g.pth format)",
    "thresholds": "the gate file (default: thresholds.yaml at the rootdir)",
    "report": "write the JSON report to this path",
    "save_predictions": "write the answers as JSONL that --emogate-predictions accepts",
    "cache": "the per-sample answer cache with resume (default .emogate/cache at the rootdir)",
}


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


def _devices(text: str) -> tuple[str, ...]:
    from pytest_emogate.distributed import parse_devices  # imports torch: only when the option is given

    return tuple(parse_devices(text))


_devices.__name__ = "device list"


VALUE_OPTIONS: dict[str, tuple[Callable[[str], Any], Any, str]] = {
    "device": (str, "auto", "inference device: auto (CUDA when available), cpu, cuda or cuda:N"),
    "batch_size": (_positive(int), 16, "samples per batch in inference (the original used 1)"),
    "max_new_tokens": (_positive(int), 32, "cap on generated tokens per answer (the original's 500 reproduces it)"),
    "image_size": (_positive(int), 448, "the ViT input size (the original's 448; the weights cannot tell it)"),
    "lora_alpha": (_positive(float), None, "LoRA alpha (default: the checkpoint's saved config, else 16)"),
    "head_dim": (_positive(int), 88, "EVA-ViT head dimension (the original's 88: 16 heads at width 1408)"),
    "mode": (_choice("generate", "score"), "generate",
             "generate: free greedy generation (the original's); score: label scoring with generation fallback"),
    "workers": (_at_least_zero, 0,
                "DataLoader processes preparing frames and features during inference (0: a thread reads ahead)"),
}
RUN_OPTIONS: dict[str, tuple[Callable[[str], Any], Any, str]] = {
    "devices": (_devices, (), "one inference process per device through torch.distributed: cuda:0,cuda:1, all, "
                              "or cpu,cpu"),
}
"""Options of the run rather than of the answers: they are not InferenceSettings fields."""
FLAG_OPTIONS = {
    "only": "collect only the gate tests, not the project's own tests (a gate-only CI job)",
    "no_cache": "neither read nor write the per-sample answer cache",
    "merge_lora": "merge the LoRA into the base weights for speed (agreement with the unmerged model is reported)",
}


def add_options(parser: pytest.Parser, group: pytest.OptionGroup) -> None:
    """Register the gate's and the inference's options, each with its `emogate_*` ini twin where it makes sense."""
    for name, help_text in PATH_OPTIONS.items():
        group.addoption(f"--emogate-{name.replace('_', '-')}", dest=f"emogate_{name}", metavar="PATH", help=help_text)
        parser.addini(f"emogate_{name}", help_text + " (relative to the ini file)")
    for name, (kind, default, help_text) in {**VALUE_OPTIONS, **RUN_OPTIONS}.items():
        flag = f"--emogate-{name.replace('_', '-')}"
        group.addoption(flag, dest=f"emogate_{name}", type=kind, help=f"{help_text}; default {default}")
        parser.addini(f"emogate_{name}", f"{help_text}; default {default}")
    for name, help_text in FLAG_OPTIONS.items():
        group.addoption(f"--emogate-{name.replace('_', '-')}", action="store_true", dest=f"emogate_{name}", help=help_text)


def path_option(config: pytest.Config, name: str) -> Path | None:
    """CLI paths are relative to the invocation directory, ini paths to the ini file's directory."""
    value = config.getoption(f"emogate_{name}")
    if value:
        return config.invocation_params.dir / value
    value = config.getini(f"emogate_{name}")
    if value:
        base = config.inipath.parent if config.inipath else config.rootpath
        return base / str(value)
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
