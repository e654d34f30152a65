"""A compact EVA-ViT-g, as MiniGPT-v2 builds it (spec §1.5), sized from its weight file.

Pre-norm blocks with LayerNorm eps 1e-6, attention with a q and a v bias (k has none), an exact-erf GELU MLP,
an absolute position embedding bicubic-interpolated in fp32 from the file's grid to the image's, and no final
norm: the output is every token of the last built block. In half precision (on CUDA by default: precision.py)
the Conv/Linear weights are in the half dtype and the rest fp32, and the caller runs it under autocast, so the
residual stream stays fp32 as in the original.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pytest_emogate.files import usage_error
from pytest_emogate.model.checkpoint import VitWeights
from pytest_emogate.model.precision import half_dtype

VIT_LN_EPS = 1e-6


class EvaAttention(nn.Module):
    """Multi-head self-attention with one qkv matmul whose bias is (q_bias, 0, v_bias)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (width // heads) ** -0.5
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over all tokens of `x` [B, N, W]."""
        batch, tokens, width = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(batch, tokens, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        # Scale q before the product and keep the explicit softmax: the original's op order, so fp16 rounds alike.
        weights = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(batch, tokens, width))


class EvaMlp(nn.Module):
    """fc1, exact GELU, fc2."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP token-wise."""
        return self.fc2(self.act(self.fc1(x)))


class EvaBlock(nn.Module):
    """x + attn(norm1(x)), then x + mlp(norm2(x)); no layer scale, no drop path."""

    def __init__(self, width: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=VIT_LN_EPS)
        self.attn = EvaAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=VIT_LN_EPS)
        self.mlp = EvaMlp(width, mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One pre-norm transformer block."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patches by a strided convolution, flattened in raster order."""

    def __init__(self, width: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch, stride=patch)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] -> [B, (S/patch)^2, W]."""
        return self.proj(images).flatten(2).transpose(1, 2)


class EvaVit(nn.Module):
    """EVA-ViT-g without a final norm: images [B, 3, S, S] -> tokens [B, 1 + (S/patch)^2, W], CLS first."""

    def __init__(self, width: int, patch: int, mlp: int, depth: int, heads: int, image_size: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.width = width
        grid = image_size // patch
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, width))
        self.patch_embed = PatchEmbed(width, patch)
        self.blocks = nn.ModuleList(EvaBlock(width, heads, mlp) for _ in range(depth))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Encode a batch of normalised images."""
        patches = self.patch_embed(images)
        # Under autocast the fp16 patches meet the fp32 CLS: cat promotes, so the residual stream is fp32.
        x = torch.cat((self.cls_token.expand(patches.shape[0], -1, -1), patches), dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x


def build_vit(weights: VitWeights, image_size: int, head_dim: int, device: torch.device, dtype: str = "auto") -> EvaVit:
    """The EVA module with the file's weights: all fp32, or in the half dtype of `dtype` on `device` (auto: fp16
    on CUDA) the Conv/Linear weights and biases in it and the rest fp32."""
    problems = vit_problems(weights, image_size, head_dim)
    if problems:
        raise usage_error(f"EVA-ViT weights {weights.path}", problems)
    heads = weights.width // head_dim
    with torch.device("meta"):
        vit = EvaVit(weights.width, weights.patch, weights.mlp, weights.depth, heads, image_size)
    state = dict(weights.state)
    try:
        state["pos_embed"] = resize_pos_embed(state["pos_embed"], image_size // weights.patch)
    except ValueError as error:
        raise usage_error(f"EVA-ViT weights {weights.path}", [str(error)]) from None
    precision = half_dtype(dtype, device) or torch.float32
    half = {f"{name}.{part}" for name, module in vit.named_modules() if isinstance(module, (nn.Linear, nn.Conv2d))
            for part in ("weight", "bias")}  # fmt: skip
    placed = {
        key: value.to(device=device, dtype=precision if key in half else torch.float32) for key, value in state.items()
    }
    try:
        vit.load_state_dict(placed, strict=True, assign=True)
    except RuntimeError as error:
        found = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        raise usage_error(f"EVA-ViT weights {weights.path}", found or [str(error)]) from None
    return vit.eval().requires_grad_(False)


def vit_problems(weights: VitWeights, image_size: int, head_dim: int) -> list[str]:
    """Why the file's sizes cannot make a ViT for `image_size` with heads of `head_dim` (the preflight asks too)."""
    problems = []
    if weights.width % head_dim:
        problems.append(f"width {weights.width} is not a multiple of the ViT head dimension {head_dim}")
    if image_size % weights.patch:
        problems.append(f"image size {image_size} is not a multiple of the patch size {weights.patch}")
    return problems


def resize_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Keep the CLS position and bicubic-resize the square patch grid to `grid` x `grid`, in fp32."""
    cls, patches = pos_embed[:, :1].float(), pos_embed[:, 1:].float()
    old = math.isqrt(patches.shape[1])
    if old * old != patches.shape[1]:
        raise ValueError(f"pos_embed: expected a square grid of patch positions, found {patches.shape[1]}")
    if old == grid:
        return torch.cat((cls, patches), dim=1)
    width = patches.shape[-1]
    square = patches.reshape(1, old, old, width).permute(0, 3, 1, 2)
    resized = F.interpolate(square, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat((cls, resized.permute(0, 2, 3, 1).flatten(1, 2)), dim=1)
