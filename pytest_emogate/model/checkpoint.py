"""Weight files read safely, with every key accounted for.

The original loads both of its weight files with `strict=False` and discards the report, so a renamed LoRA key
silently runs the base model and a missing projection stays randomly initialised (spec §2.2). Here every key of
the stage-2 checkpoint and of the EVA file is either consumed or one of the known-unused ones (`attention.*`,
the EVA file's last block); anything else, and anything missing, is one UsageError naming the keys.

Files are read with `torch.load(weights_only=True)` only (or safetensors): a pickle that needs code is refused.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_emogate.files import usage_error

if TYPE_CHECKING:
    import torch

PROJECTIONS = ("llama_proj", "feats_llama_proj1", "feats_llama_proj2", "feats_llama_proj3", "cls_tk_llama_proj")
FEATURE_PROJECTIONS = PROJECTIONS[1:4]
LN_VISION_KEYS = ("ln_vision.weight", "ln_vision.bias")
UNUSED_PREFIXES = ("attention.",)  # the original's never-called Attention module (spec §1.8)
DEFAULT_LORA_ALPHA = 16.0
# peft 0.2 names LoRA weights `...q_proj.lora_A.weight`; peft >= 0.3 inserts the adapter name (`.default`).
LORA_KEY = re.compile(
    r"llama_model\.base_model\.model\.model\.layers\.(\d+)\.(\w+)\.(\w+)\.lora_([AB])(\.default)?\.weight"
)
VIT_TOP_KEYS = ("cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias")
VIT_BLOCK_KEYS = tuple(
    f"{part}.{name}"
    for part, names in (
        ("norm1", ("weight", "bias")),
        ("attn", ("q_bias", "v_bias", "qkv.weight", "proj.weight", "proj.bias")),
        ("norm2", ("weight", "bias")),
        ("mlp", ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")),
    )
    for name in names
)
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


@dataclass(frozen=True)
class VitWeights:
    """An EVA-ViT file's tensors for the blocks that are built, and the sizes the file carries."""

    path: Path
    state: dict[str, torch.Tensor]
    width: int
    patch: int
    mlp: int
    depth: int  # blocks built: all but the file's last, as the original


def read_weights(path: Path, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The top-level mapping of a `.pth` (weights_only) or `.safetensors` file, and its saved config (or {}).

    For safetensors the tensors are the mapping itself and the config is the JSON in the `config` metadata.
    """
    if not path.is_file():
        raise usage_error(f"{what} {path}", ["does not exist (every weight file is a local path)"])
    if path.suffix == ".safetensors":
        return _read_safetensors(path, what)
    import torch

    try:
        # mmap keeps a real checkpoint's optimizer state on disk: only the tensors we use are paged in.
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        problem = f"refused: a pickle that needs code to load; only weights_only=True loading is allowed ({reason})"
        raise usage_error(f"{what} {path}", [problem]) from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise usage_error(f"{what} {path}", [f"cannot be read as a torch file: {_one_line(error)}"]) from None
    if not isinstance(loaded, dict):
        raise usage_error(f"{what} {path}", [f"expected a dict at the top, found {type(loaded).__name__}"])
    config = loaded.get("config")
    return loaded, config if isinstance(config, dict) else {}


def read_stage_two(path: Path) -> StageTwo:
    """Read a stage-2 checkpoint (`{"model": {...}, "config": ...}` or safetensors) with full key accounting."""
    import torch

    state, saved = _checkpoint_state(path)
    problems = [f"{key}: expected a tensor, found {type(value).__name__}" for key, value in state.items()
                if not isinstance(value, torch.Tensor)]  # fmt: skip
    state = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    projections = _projections(state, problems)
    lora, rank = _lora(state, problems)
    ln_vision = {key.split(".")[-1]: state[key] for key in LN_VISION_KEYS if key in state}
    known = set(LN_VISION_KEYS) | {f"{name}.{part}" for name in PROJECTIONS for part in ("weight", "bias")}
    unknown = sorted(
        key for key in state if key not in known and not LORA_KEY.fullmatch(key) and not key.startswith(UNUSED_PREFIXES)
    )
    problems += [f"unexpected key {key} (not a projection, LoRA, ln_vision or attention.* tensor)" for key in unknown]
    if problems:
        raise usage_error(f"checkpoint {path}", problems)
    alpha = saved.get("model", {}).get("lora_alpha") if isinstance(saved.get("model"), dict) else None
    targets = tuple(sorted({target for _, _, target in lora}))
    return StageTwo(path, projections, lora, rank, targets, ln_vision, None if alpha is None else float(alpha))


def feature_dims(path: Path) -> tuple[int, int, int]:
    """The Face, Video and Audio feature widths the checkpoint's projections take, without loading any model."""
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                shapes = {key: handle.get_slice(key).get_shape() for key in handle.keys()}  # noqa: SIM118
        except (SafetensorError, OSError) as error:
            raise usage_error(f"checkpoint {path}", [f"cannot be read as safetensors: {_one_line(error)}"]) from None
    else:
        state, _ = _checkpoint_state(path)
        shapes = {key: list(value.shape) for key, value in state.items() if hasattr(value, "shape")}
    missing = [f"{name}.weight" for name in FEATURE_PROJECTIONS if f"{name}.weight" not in shapes]
    if missing:
        raise usage_error(f"checkpoint {path}", [f"missing key {key}" for key in missing])
    face, video, audio = (int(shapes[f"{name}.weight"][-1]) for name in FEATURE_PROJECTIONS)
    return face, video, audio


def read_vit(path: Path) -> VitWeights:
    """Read an `eva_vit_g.pth`-format file; every key must belong to a built block or be the last block's."""
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
    if problems:
        raise usage_error(f"EVA-ViT weights {path}", problems)
    kept = {key: state[key] for key in expected}
    width = int(kept["cls_token"].shape[-1])
    patch = int(kept["patch_embed.proj.weight"].shape[-1])
    mlp = int(kept["blocks.0.mlp.fc1.weight"].shape[0]) if depth else 0
    return VitWeights(path, kept, width, patch, mlp, depth)


def _checkpoint_state(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checkpoint's model state dict and its saved config."""
    loaded, config = read_weights(path, "checkpoint")
    if path.suffix == ".safetensors":
        return loaded, config
    model = loaded.get("model")
    if not isinstance(model, dict):
        found = ", ".join(sorted(map(str, loaded))[:10]) or "nothing"
        problem = f"expected the MiniGPT-v2 format {{'model': {{...}}, 'config': ...}}, found top-level keys {found}"
        raise usage_error(f"checkpoint {path}", [problem])
    return model, config


def _projections(state: dict[str, Any], problems: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    found = {}
    for name in PROJECTIONS:
        weight, bias = state.get(f"{name}.weight"), state.get(f"{name}.bias")
        problems += [
            f"missing key {name}.{part}" for part, value in (("weight", weight), ("bias", bias)) if value is None
        ]
        if weight is None or bias is None:
            continue
        if weight.dim() != 2 or bias.shape != weight.shape[:1]:
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
            ranks.add(int(a[1].shape[0]))
            pairs[(layer, parent, target)] = (a[1], b[1])
            continue
        present, absent = (a[0], "lora_B") if a is not None else (b[0], "lora_A")  # type: ignore[index]
        problems.append(f"missing key {re.sub(r'lora_[AB]', absent, present)}")
    if len(ranks) > 1:
        problems.append(f"LoRA ranks differ between tensors ({sorted(ranks)}): expected one rank")
    return pairs, min(ranks, default=0)


def _read_safetensors(path: Path, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise usage_error(f"{what} {path}", [f"cannot be read as safetensors: {_one_line(error)}"]) from None
    try:
        config = json.loads(metadata["config"]) if "config" in metadata else {}
    except json.JSONDecodeError as error:
        raise usage_error(f"{what} {path}", [f"metadata 'config' is not JSON: {error.msg}"]) from None
    return tensors, config if isinstance(config, dict) else {}


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__
