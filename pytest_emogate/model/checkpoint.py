"""Weight files read safely, with every key accounted for and every shape checked before a size is read from it.

The original loads both of its weight files with `strict=False` and discards the report, so a renamed LoRA key
silently runs the base model and a missing projection stays randomly initialised (spec §2.2). Here every key of
the stage-2 checkpoint and of the EVA file is either consumed or one of the known-unused ones (`attention.*`,
the EVA file's last block); anything else, anything missing and any tensor of the wrong rank or shape is one
UsageError naming the keys, as is a checkpoint tensor of no floating dtype (an integer LoRA would be cast to
float without a word). The LoRA alpha saved in the training config must be a finite positive number when it is
there, and a config that is there but malformed is named, never passed over. Files are opened through
weight_files.py: regular files only, read with `weights_only=True` or safetensors.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_emogate.files import usage_error
from pytest_emogate.model.weight_files import ABSENT, rank_problem, read_weights

if TYPE_CHECKING:
    import torch

PROJECTIONS = ("llama_proj", "feats_llama_proj1", "feats_llama_proj2", "feats_llama_proj3", "cls_tk_llama_proj")
FEATURE_PROJECTIONS = PROJECTIONS[1:4]
LN_VISION_KEYS = ("ln_vision.weight", "ln_vision.bias")
UNUSED_PREFIXES = ("attention.",)  # the original's never-called Attention module (spec §1.8)
DEFAULT_LORA_ALPHA = 16.0
ALPHA_EXPECTED = "expected a finite positive number"
# peft 0.2 names LoRA weights `...q_proj.lora_A.weight`; peft >= 0.3 inserts the adapter name (`.default`).
LORA_KEY = re.compile(
    r"llama_model\.base_model\.model\.model\.layers\.(\d+)\.(\w+)\.(\w+)\.lora_([AB])(\.default)?\.weight"
)
VIT_SIZING = {"cls_token": "[1, 1, width]", "patch_embed.proj.weight": "[width, 3, patch, patch]",
              "pos_embed": "[1, positions, width]", "blocks.0.mlp.fc1.weight": "[mlp, width]"}  # fmt: skip
"""The EVA tensors whose shapes give the model's sizes, and the shape each must have."""
VIT_TOP_KEYS = ("cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias")
VIT_BLOCK_SHAPES = {
    "norm1.weight": "w", "norm1.bias": "w", "attn.q_bias": "w", "attn.v_bias": "w", "attn.qkv.weight": "3w w",
    "attn.proj.weight": "w w", "attn.proj.bias": "w", "norm2.weight": "w", "norm2.bias": "w",
    "mlp.fc1.weight": "m w", "mlp.fc1.bias": "m", "mlp.fc2.weight": "w m", "mlp.fc2.bias": "w",
}  # fmt: skip
"""Each block tensor's shape in the ViT width (w) and MLP width (m)."""
VIT_BLOCK_KEYS = tuple(VIT_BLOCK_SHAPES)
_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")


@dataclass(frozen=True)
class StageTwo:
    """The trained part of Emotion-LLaMA: projections, LoRA pairs and (rarely) ln_vision, keys accounted for.

    `lora` maps (layer, parent module, target module) to its (A, B) pair, e.g. (0, "self_attn", "q_proj").
    """

    path: Path
    projections: dict[str, tuple[torch.Tensor, torch.Tensor]]
    lora: dict[tuple[int, str, str], tuple[torch.Tensor, torch.Tensor]]
    rank: int
    targets: tuple[str, ...]
    ln_vision: dict[str, torch.Tensor]
    saved_lora_alpha: float | None

    def lora_alpha(self, override: float | None) -> float:
        """The LoRA alpha to use: the override, else the checkpoint's saved config value, else 16."""
        if override is not None:
            return override
        return DEFAULT_LORA_ALPHA if self.saved_lora_alpha is None else self.saved_lora_alpha

    @property
    def feature_dims(self) -> tuple[int, int, int]:
        """The Face, Video and Audio feature widths the projections take."""
        face, video, audio = (int(self.projections[name][0].shape[1]) for name in FEATURE_PROJECTIONS)
        return face, video, audio


@dataclass(frozen=True)
class VitWeights:
    """An EVA-ViT file's tensors for the blocks that are built, and the sizes the file carries."""

    path: Path
    state: dict[str, torch.Tensor]
    width: int
    patch: int
    mlp: int
    depth: int  # blocks built: all but the file's last, as the original


def alpha_problem(value: Any) -> str | None:
    """Why `value` cannot be a LoRA alpha (`expected a finite positive number, found ...`), or None."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and math.isfinite(value) and value > 0:
        return None
    return f"{ALPHA_EXPECTED}, found {found_text(value)}"


def check_lora_alpha_setting(value: float | None) -> None:
    """A UsageError naming --emogate-lora-alpha unless it is unset or a finite positive number (checked before
    anything is loaded: a NaN alpha would only show as NaN logits after the whole inference)."""
    problem = None if value is None else alpha_problem(value)
    if problem is not None:
        raise pytest.UsageError(f"--emogate-lora-alpha: {problem}")


def found_text(value: Any) -> str:
    """A value found where another was expected, shortened for an error message: 'sixteen', nan, a list."""
    if isinstance(value, (str, int, float)) or value is None:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    name = type(value).__name__
    return f"an {name}" if name[0].lower() in "aeiou" else f"a {name}"


def read_stage_two(path: Path) -> StageTwo:
    """Read a stage-2 checkpoint (`{"model": {...}, "config": ...}` or safetensors) with full key accounting."""
    import torch

    state, saved = _checkpoint_state(path)
    problems = [f"{key}: expected a tensor, found {type(value).__name__}" for key, value in state.items()
                if not isinstance(value, torch.Tensor)]  # fmt: skip
    state = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    problems += [f"{key}: expected a floating dtype, found {str(value.dtype).removeprefix('torch.')}"
                 for key, value in state.items()
                 if not value.is_floating_point() and not key.startswith(UNUSED_PREFIXES)]  # fmt: skip
    projections = _projections(state, problems)
    lora, rank = _lora(state, problems)
    ln_vision = {key.split(".")[-1]: state[key] for key in LN_VISION_KEYS if key in state}
    problems += [problem for key in LN_VISION_KEYS if key in state
                 and (problem := rank_problem(key, state[key].shape, "[width]"))]  # fmt: skip
    known = set(LN_VISION_KEYS) | {f"{name}.{part}" for name in PROJECTIONS for part in ("weight", "bias")}
    unknown = sorted(
        key for key in state if key not in known and not LORA_KEY.fullmatch(key) and not key.startswith(UNUSED_PREFIXES)
    )
    problems += [f"unexpected key {key} (not a projection, LoRA, ln_vision or attention.* tensor)" for key in unknown]
    alpha = _saved_lora_alpha(saved, problems)
    if problems:
        raise usage_error(f"checkpoint {path}", problems)
    targets = tuple(sorted({target for _, _, target in lora}))
    return StageTwo(path, projections, lora, rank, targets, ln_vision, alpha)


def lora_alpha_used(path: Path, override: float | None) -> float:
    """The LoRA alpha a model load of the checkpoint `path` uses (StageTwo.lora_alpha): the override, else the
    checkpoint's saved config value, else 16; the checkpoint is read (in full, checked) only without an override."""
    return override if override is not None else read_stage_two(path).lora_alpha(None)


def feature_dims(path: Path) -> tuple[int, int, int]:
    """The Face, Video and Audio feature widths the checkpoint's projections take, the checkpoint read in full
    (every key and shape, the saved LoRA alpha) without loading any model."""
    return read_stage_two(path).feature_dims


def read_vit(path: Path) -> VitWeights:
    """Read an `eva_vit_g.pth`-format file; every key must belong to a built block or be the last block's, and
    every tensor must have the shape the file's own sizes give it."""
    state, _ = read_weights(path, "EVA-ViT weights")
    blocks = sorted({int(match.group(1)) for key in state if (match := _BLOCK_KEY.fullmatch(key))})
    problems: list[str] = []
    if not blocks:
        problems.append("no blocks.N.* keys: expected the eva_vit_g.pth key format")
    elif len(blocks) < 2:
        problems.append("one block only: expected at least two, as the original builds all but the file's last")
    depth = blocks[-1] if blocks else 0  # the original builds all but the file's last block
    expected = set(VIT_TOP_KEYS) | {f"blocks.{i}.{key}" for i in range(depth) for key in VIT_BLOCK_KEYS}
    unused = f"blocks.{depth}." if blocks else None
    problems += [f"missing key {key}" for key in sorted(expected - state.keys())]
    problems += [
        f"unexpected key {key}"
        for key in sorted(state.keys() - expected)
        if unused is None or not key.startswith(unused)
    ]
    problems += [f"{key}: expected a tensor, found {type(state[key]).__name__}"
                 for key in sorted(expected & state.keys()) if not hasattr(state[key], "shape")]  # fmt: skip
    if problems:
        raise usage_error(f"EVA-ViT weights {path}", problems)
    kept = {key: state[key] for key in expected}
    problems = [problem for key, dims in VIT_SIZING.items() if (problem := rank_problem(key, kept[key].shape, dims))]
    if problems:
        raise usage_error(f"EVA-ViT weights {path}", problems)
    width = int(kept["cls_token"].shape[-1])
    patch = int(kept["patch_embed.proj.weight"].shape[-1])
    mlp = int(kept["blocks.0.mlp.fc1.weight"].shape[0])
    problems = _vit_shape_problems(kept, width, patch, mlp, depth)
    if problems:
        raise usage_error(f"EVA-ViT weights {path}", problems)
    return VitWeights(path, kept, width, patch, mlp, depth)


def _vit_shape_problems(state: dict[str, Any], width: int, patch: int, mlp: int, depth: int) -> list[str]:
    """Every EVA tensor against the shape the file's width, patch and MLP sizes give it."""
    sizes = {"w": width, "3w": 3 * width, "m": mlp}
    expected = {"cls_token": [1, 1, width], "patch_embed.proj.weight": [width, 3, patch, patch],
                "patch_embed.proj.bias": [width]}  # fmt: skip
    expected |= {f"blocks.{i}.{key}": [sizes[dim] for dim in dims.split()] for i in range(depth)
                 for key, dims in VIT_BLOCK_SHAPES.items()}  # fmt: skip
    problems = [
        f"{key}: expected shape {shape}, found {list(state[key].shape)}"
        for key, shape in expected.items()
        if list(state[key].shape) != shape
    ]
    positions = list(state["pos_embed"].shape)
    grid = math.isqrt(max(positions[1] - 1, 0))
    if positions[0] != 1 or positions[2] != width:
        problems.append(f"pos_embed: expected shape [1, positions, {width}], found {positions}")
    elif grid < 1 or grid * grid != positions[1] - 1:
        problems.append(f"pos_embed: expected 1 + a square number of positions, found {positions[1]}")
    return problems


def _checkpoint_state(path: Path) -> tuple[dict[str, Any], Any]:
    """The checkpoint's model state dict and its saved config (ABSENT when it has none)."""
    loaded, config = read_weights(path, "checkpoint")
    if path.suffix == ".safetensors":
        return loaded, config
    model = loaded.get("model")
    if not isinstance(model, dict):
        found = ", ".join(sorted(map(str, loaded))[:10]) or "nothing"
        problem = f"expected the MiniGPT-v2 format {{'model': {{...}}, 'config': ...}}, found top-level keys {found}"
        raise usage_error(f"checkpoint {path}", [problem])
    return model, loaded.get("config", ABSENT)


def _saved_lora_alpha(config: Any, problems: list[str]) -> float | None:
    """`config.model.lora_alpha`, checked; None only when the config does not set it at all (the original's
    default, 16, then applies). A config or config.model that is there but not a mapping is a problem."""
    if config is ABSENT:
        return None
    if not isinstance(config, dict):
        problems.append(f"config: expected a mapping, found {found_text(config)}")
        return None
    if "model" not in config:
        return None
    model = config["model"]
    if not isinstance(model, dict):
        problems.append(f"config.model: expected a mapping, found {found_text(model)}")
        return None
    if "lora_alpha" not in model:
        return None
    problem = alpha_problem(model["lora_alpha"])
    if problem is not None:
        problems.append(f"config.model.lora_alpha: {problem}")
        return None
    return float(model["lora_alpha"])


def _projections(state: dict[str, Any], problems: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    found = {}
    for name in PROJECTIONS:
        weight, bias = state.get(f"{name}.weight"), state.get(f"{name}.bias")
        problems += [
            f"missing key {name}.{part}" for part, value in (("weight", weight), ("bias", bias)) if value is None
        ]
        if weight is None or bias is None:
            continue
        ranks = [rank_problem(f"{name}.weight", weight.shape, "[out, in]"),
                 rank_problem(f"{name}.bias", bias.shape, "[out]")]  # fmt: skip
        problems += [problem for problem in ranks if problem]
        if any(ranks):
            continue
        if bias.shape[0] != weight.shape[0]:
            shapes = f"{list(weight.shape)} and {list(bias.shape)}"
            problems.append(f"{name}: expected weight [out, in] and bias [out], found {shapes}")
        found[name] = (weight, bias)
    return found


def _lora(state: dict[str, Any], problems: list[str]) -> tuple[dict[tuple[int, str, str], tuple[Any, Any]], int]:
    halves: dict[tuple[int, str, str, str], tuple[str, Any]] = {}
    for key, value in state.items():
        match = LORA_KEY.fullmatch(key)
        if match:
            slot = (int(match.group(1)), match.group(2), match.group(3), match.group(4))
            if slot in halves:
                problems.append(f"key {key} duplicates {halves[slot][0]} (peft 0.2 and modern names for one tensor)")
            halves[slot] = (key, value)
    if not halves:
        problems.append("no LoRA tensors: expected llama_model.base_model.model.model.layers.N.*.lora_A.weight keys")
        return {}, 0
    pairs, ranks = {}, set()
    for layer, parent, target in sorted({slot[:3] for slot in halves}):
        a, b = halves.get((layer, parent, target, "A")), halves.get((layer, parent, target, "B"))
        if a is not None and b is not None:
            wrong = [rank_problem(a[0], a[1].shape, "[rank, in]"), rank_problem(b[0], b[1].shape, "[out, rank]")]
            problems += [problem for problem in wrong if problem]
            if any(wrong):
                continue
            if a[1].shape[0] != b[1].shape[1]:
                problems.append(
                    f"{b[0]}: expected [out, {a[1].shape[0]}] (the rank of its lora_A), found {list(b[1].shape)}"
                )
                continue
            ranks.add(int(a[1].shape[0]))
            pairs[(layer, parent, target)] = (a[1], b[1])
            continue
        present, absent = (a[0], "lora_B") if a is not None else (b[0], "lora_A")  # type: ignore[index]
        problems.append(f"missing key {re.sub(r'lora_[AB]', absent, present)}")
    if len(ranks) > 1:
        problems.append(f"LoRA ranks differ between tensors ({sorted(ranks)}): expected one rank")
    return pairs, min(ranks, default=0)
