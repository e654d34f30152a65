"""Which half dtype a model runs in: the original's mixed precision (spec §1.9), or none.

With a half dtype, the Llama weights and the EVA-ViT Conv/Linear weights are stored in it; everything else (the
ViT's LayerNorms, q/v biases, CLS token and positions, the projections, the LoRA adapters) stays fp32, and the
encoder and the language model run under autocast in that dtype. `auto` is the original's choice: fp16 on CUDA,
fp32 on the CPU. float16 and bfloat16 make the same choices on any device, so half precision can be tried on a
CPU too.
"""

from __future__ import annotations

import torch

HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def half_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """The half dtype of the mixed precision for the `--emogate-dtype` value `dtype` on `device`; None: fp32 and
    no autocast. Raise ValueError for a name that is not one of auto, float32, float16, bfloat16."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else None
    if dtype == "float32":
        return None
    if dtype in HALF:
        return HALF[dtype]
    raise ValueError(f"expected auto, float32, float16 or bfloat16, found {dtype!r}")


def precision_name(dtype: str, device: torch.device) -> str:
    """What `dtype` means on `device`, for notes and reports: `float32`, or `float16 autocast`."""
    half = half_dtype(dtype, device)
    return "float32" if half is None else f"{str(half).removeprefix('torch.')} autocast"
