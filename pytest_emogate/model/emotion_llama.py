"""Emotion-LLaMA assembled: EVA-ViT, ln_vision, the five projections and Llama with LoRA (spec §1, §4).

The multimodal block of one sample is [image tokens | Face | Video | Audio | CLS]: each image token is 4
consecutive patch tokens concatenated (1x4 horizontal strips in raster order) through `llama_proj`, each
feature vector goes through its own projection, and the CLS token through `cls_tk_llama_proj`. On CUDA the
encoder and the language model run under fp16 autocast with the original's per-parameter dtypes (spec §1.9);
`--emogate-dtype` makes the same choices in float16 or bfloat16 on any device, or none (float32).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pytest_emogate.extras import library_warnings
from pytest_emogate.files import usage_error
from pytest_emogate.model.checkpoint import (
    FEATURE_PROJECTIONS,
    LN_VISION_KEYS,
    StageTwo,
    VitWeights,
    check_lora_alpha_setting,
    read_stage_two,
    read_vit,
)
from pytest_emogate.model.eva import EvaVit, build_vit, vit_problems
from pytest_emogate.model.llama_files import LlamaSizes, check_llama_folder, lora_problems
from pytest_emogate.model.llm import attach_lora, lm_parts, load_llama, load_tokenizer
from pytest_emogate.model.precision import half_dtype

LN_VISION_EPS = 1e-5


@dataclass(frozen=True)
class ModelFiles:
    """The three local inputs of a model load, and the settings the weights cannot tell."""

    ckpt: Path
    llama: Path
    vit: Path
    image_size: int = 448
    head_dim: int = 88
    lora_alpha: float | None = None


class EmotionLlama(nn.Module):
    """The model at inference: `multimodal_block` encodes images and features, `logits` runs the LLM."""

    def __init__(
        self, vit: EvaVit, llm: Any, projections: dict[str, nn.Linear], ln_vision: nn.LayerNorm, dtype: str = "auto"
    ) -> None:
        super().__init__()
        self.precision = dtype
        """The `--emogate-dtype` setting the model was built for (precision.py)."""
        self.vit = vit
        self.ln_vision = ln_vision
        self.llama_proj = projections["llama_proj"]
        self.feature_projs = nn.ModuleList(projections[name] for name in FEATURE_PROJECTIONS)
        self.cls_tk_llama_proj = projections["cls_tk_llama_proj"]
        self.llm = llm
        self.decoder, self.lm_head = lm_parts(llm)
        self.cache_argument = cache_argument(self.decoder)
        self.group = self.llama_proj.in_features // vit.width

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self.lm_head.weight.device

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast in the model's half dtype on its device: by default fp16 on CUDA, as the original's
        `maybe_autocast`, and nothing on the CPU (fp32)."""
        half = half_dtype(self.precision, self.device)
        if half is not None:
            return torch.autocast(self.device.type, dtype=half)
        return contextlib.nullcontext()

    def multimodal_block(self, images: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """images [B, 3, S, S] and three feature batches [B, D_k] -> [B, patches/group + 4, hidden]."""
        with library_warnings():
            return self.project(self.ln_vision(self.vit(images)), features)

    def project(self, encoded: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """The projections part of `multimodal_block`, from ln_vision's output [B, 1 + patches, width]."""
        batch, tokens, width = encoded[:, 1:].shape
        grouped = encoded[:, 1:].reshape(batch, tokens // self.group, width * self.group)
        parts = [self.llama_proj(grouped)]
        parts += [
            proj(feature.to(encoded.dtype))[:, None] for proj, feature in zip(self.feature_projs, features, strict=True)
        ]
        parts.append(self.cls_tk_llama_proj(encoded[:, :1]))
        return torch.cat(parts, dim=1)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings [..., hidden] of the language model."""
        return self.decoder.embed_tokens(ids)

    def logits(
        self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any = None, last: int = 1
    ) -> torch.Tensor:
        """fp32 logits [B, last, vocab] of the last `last` positions only (the full vocabulary at every position
        would cost gigabytes per batch at 7B). `mask` is the 2-D padding mask or a ready 4-D additive one;
        `cache` (a transformers Cache) is extended, or None for a single pass."""
        with library_warnings():
            out = self.decoder(
                inputs_embeds=embeds,
                attention_mask=mask,
                position_ids=positions,
                use_cache=cache is not None,
                **{self.cache_argument: cache},
            )
            return self.lm_head(out.last_hidden_state[:, -last:]).float()

    def merge_lora(self) -> None:
        """Fold the LoRA into the base weights (W + scale * B @ A) and drop the adapter modules: faster steps,
        answers that may differ by rounding (the caller checks and reports the agreement)."""
        with library_warnings():
            self.llm = self.llm.merge_and_unload()
        self.decoder, self.lm_head = self.llm.model, self.llm.lm_head


def cache_argument(decoder: nn.Module) -> str:
    """The name the decoder's forward takes its KV cache by: `cache` in newer transformers 5 releases (which
    warn on the old name), `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def check_model_files(files: ModelFiles) -> tuple[StageTwo, VitWeights, LlamaSizes]:
    """Read the checkpoint and the EVA file and check the Llama folder, then check them against each other
    (projections against the ViT width and the Llama hidden size, each LoRA pair against the module it adapts),
    all without building a model: every problem of every file in one UsageError, at the preflight."""
    check_lora_alpha_setting(files.lora_alpha)
    errors: list[str] = []
    stage = vit = sizes = None
    try:
        stage = read_stage_two(files.ckpt)
    except pytest.UsageError as error:
        errors.append(str(error))
    try:
        vit = read_vit(files.vit)
    except pytest.UsageError as error:
        errors.append(str(error))
    try:
        sizes = check_llama_folder(files.llama)
    except pytest.UsageError as error:
        errors.append(str(error))
    if vit is not None and (problems := vit_problems(vit, files.image_size, files.head_dim)):
        errors.append(str(usage_error(f"EVA-ViT weights {vit.path}", problems)))
    elif stage is not None and vit is not None and sizes is not None:
        patches = (files.image_size // vit.patch) ** 2
        problems = projection_problems(stage, vit.width, patches, sizes.hidden) + lora_problems(stage.lora, sizes)
        if problems:
            errors.append(str(usage_error(f"checkpoint {stage.path}", problems)))
    if errors or stage is None or vit is None or sizes is None:
        raise pytest.UsageError("\n".join(errors))
    return stage, vit, sizes


def load_emotion_llama(files: ModelFiles, device: torch.device, dtype: str = "auto") -> tuple[EmotionLlama, Any]:
    """Load the model and its tokenizer from local files, every key accounted for; in the mixed precision of
    `dtype` (precision.py; auto: fp16 on CUDA, fp32 on CPU). Every file is checked first (check_model_files), so
    a bad one stops the load before anything is built."""
    half_dtype(dtype, device)  # an unknown name stops the load before anything is read
    stage, weights, _ = check_model_files(files)
    tokenizer = load_tokenizer(files.llama)
    vit = build_vit(weights, files.image_size, files.head_dim, device, dtype)
    llama = load_llama(files.llama, device, dtype)
    llm = attach_lora(llama, stage, stage.lora_alpha(files.lora_alpha))
    model = EmotionLlama(vit, llm, _projections(stage), _ln_vision(stage, vit.width), dtype).to(device)
    return model.eval().requires_grad_(False), tokenizer


def projection_problems(stage: StageTwo, width: int, patches: int, hidden: int) -> list[str]:
    """The projections' shapes against the ViT width, its patch count and the Llama hidden size (no tensor is
    read: the preflight calls this too)."""
    problems = [
        f"{name}.weight: expected {hidden} outputs (the Llama hidden size), found {weight.shape[0]}"
        for name, (weight, _) in stage.projections.items()
        if weight.shape[0] != hidden
    ]
    found = stage.projections["llama_proj"][0].shape[1]
    group, rest = divmod(found, width)
    if rest or group < 1 or patches % group:
        problems.append(
            f"llama_proj.weight: expected inputs a multiple of the ViT width {width} that groups the {patches} patch "
            f"tokens evenly, found {found}"
        )
    found = stage.projections["cls_tk_llama_proj"][0].shape[1]
    if found != width:
        problems.append(f"cls_tk_llama_proj.weight: expected {width} inputs (the ViT width), found {found}")
    for name in LN_VISION_KEYS:
        tensor = stage.ln_vision.get(name.split(".")[-1])
        if tensor is not None and tensor.shape != (width,):
            problems.append(f"{name}: expected shape [{width}], found {list(tensor.shape)}")
    return problems


def _projections(stage: StageTwo) -> dict[str, nn.Linear]:
    """nn.Linear layers (fp32, as the original's) holding the checkpoint's projections."""
    layers = {}
    for name, (weight, bias) in stage.projections.items():
        layer = nn.Linear(weight.shape[1], weight.shape[0], device="meta")
        layer.weight = nn.Parameter(weight.float(), requires_grad=False)
        layer.bias = nn.Parameter(bias.float(), requires_grad=False)
        layers[name] = layer
    return layers


def _ln_vision(stage: StageTwo, width: int) -> nn.LayerNorm:
    """The untrained LayerNorm after the ViT (weight 1, bias 0), unless the checkpoint carries its tensors (their
    shapes checked by projection_problems)."""
    norm = nn.LayerNorm(width, eps=LN_VISION_EPS)
    with torch.no_grad():
        for name, tensor in stage.ln_vision.items():
            getattr(norm, name).copy_(tensor.float())
    return norm.requires_grad_(False)
