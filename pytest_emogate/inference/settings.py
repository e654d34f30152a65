"""How inference runs: where the weights are and the settings that shape the answers, with their defaults
(defined here once; the `--emogate-*` options take theirs from these fields)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Literal

MODES = ("generate", "score")
DTYPES = ("auto", "float32", "float16", "bfloat16")
"""auto: the original's fp16 autocast on CUDA, fp32 on the CPU; float16 and bfloat16 make the original's
mixed-precision choices in that half dtype on any device; float32: none of them."""
HALF_DTYPES = ("float16", "bfloat16")
MER2023_LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
AUTO = "auto"
"""`--emogate-batch-size auto`: start at the default batch size and halve it on out of memory, down to 1."""
DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True)
class InferenceSettings:
    """Where the weights are and how to run them; the defaults are the original's except the token cap."""

    ckpt: Path
    llama: Path
    vit: Path
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"
    batch_size: int | Literal["auto"] = DEFAULT_BATCH_SIZE  # or AUTO: the default, halved on out of memory
    max_new_tokens: int = 32  # the original allowed 500; a label takes 2 tokens, and capped rows are counted
    image_size: int = 448
    lora_alpha: float | None = None  # a finite positive number; None: the checkpoint's saved config value, else 16
    head_dim: int = 88
    mode: str = "generate"  # "generate": greedy decoding; "score": one forward pass, generation only as fallback
    merge_lora: bool = False  # fold the LoRA into the base weights after loading (agreement checked and noted)
    workers: int = 0  # DataLoader processes decoding frames and reading features; 0: in the main process
    labels: tuple[str, ...] = MER2023_LABELS  # what score mode scores (the thresholds' labels)
    dtype: str = "auto"  # one of DTYPES

    @property
    def batch_auto(self) -> bool:
        """Whether the batch size is found at run time (`auto`): halved on out of memory, down to 1."""
        return self.batch_size == AUTO

    @property
    def largest_batch_size(self) -> int:
        """The batch size inference starts at: the one given, or with `auto` the default (the largest the gate
        would use)."""
        return DEFAULT_BATCH_SIZE if self.batch_size == AUTO else int(self.batch_size)

    @property
    def may_round_by_batch(self) -> bool:
        """Whether the batch size can change an answer: in half precision the rounding of a batched product
        depends on the batch (auto counts as half on every device but the CPU). In fp32 the answers do not
        depend on it (834 of 834 equal, bench/RESULTS.md; --emogate-probe checks it on the user's machine)."""
        return self.dtype in HALF_DTYPES or (self.dtype == "auto" and self.device != "cpu")


def default_of(name: str) -> Any:
    """The default of one InferenceSettings field, e.g. default_of("batch_size") == 16."""
    (field,) = (field for field in fields(InferenceSettings) if field.name == name)
    assert field.default is not MISSING, f"{name} has no default"
    return field.default
