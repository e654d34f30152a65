"""The EVA-ViT module and the multimodal block, against independent computations."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from pytest_emogate.model.checkpoint import read_vit  # noqa: E402
from pytest_emogate.model.emotion_llama import EmotionLlama  # noqa: E402
from pytest_emogate.model.eva import EvaAttention, build_vit, resize_pos_embed  # noqa: E402

VIT = Path(__file__).resolve().parent.parent / "fixtures" / "tiny" / "eva_vit_g.pth"


def test_attention_equals_scaled_dot_product_attention_with_q_and_v_biases() -> None:
    torch.manual_seed(0)
    attention = EvaAttention(32, heads=4)
    nn.init.normal_(attention.q_bias)
    nn.init.normal_(attention.v_bias)
    x = torch.randn(2, 9, 32)
    q, k, v = F.linear(x, attention.qkv.weight).chunk(3, dim=-1)
    q, v = q + attention.q_bias, v + attention.v_bias  # k has no bias

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(2, 9, 4, 8).transpose(1, 2)

    expected = F.scaled_dot_product_attention(heads(q), heads(k), heads(v)).transpose(1, 2).reshape(2, 9, 32)
    torch.testing.assert_close(attention(x), attention.proj(expected))


def test_pos_embed_is_bicubic_resized_keeping_cls() -> None:
    pos = torch.randn(1, 1 + 16, 6)
    resized = resize_pos_embed(pos.half(), 8)
    assert resized.dtype == torch.float32 and resized.shape == (1, 65, 6)
    assert torch.equal(resized[:, :1], pos[:, :1].half().float())
    grid = pos[:, 1:].half().float().reshape(1, 4, 4, 6).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    assert torch.equal(resized[:, 1:], expected.reshape(1, 64, 6))
    assert torch.equal(resize_pos_embed(pos, 4), pos)


@pytest.mark.slow
def test_the_tiny_vit_builds_fp32_on_cpu_at_the_requested_size() -> None:
    vit = build_vit(read_vit(VIT), 448, 88, torch.device("cpu"))
    assert len(vit.blocks) == 2 and vit.pos_embed.shape == (1, 1 + 8 * 8, 88)  # the file's 4x4 grid, resized
    assert {param.dtype for param in vit.parameters()} == {torch.float32}
    out = vit(torch.zeros(1, 3, 448, 448))
    assert out.shape == (1, 65, 88) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("image_size", "head_dim", "problem"),
    [(448, 64, "not a multiple of the ViT head dimension 64"), (450, 88, "not a multiple of the patch size 56")],
)
@pytest.mark.slow
def test_sizes_the_weights_cannot_serve_are_refused(image_size: int, head_dim: int, problem: str) -> None:
    with pytest.raises(pytest.UsageError, match=problem):
        build_vit(read_vit(VIT), image_size, head_dim, torch.device("cpu"))


@pytest.mark.slow
def test_head_dim_overrides_the_number_of_heads() -> None:
    vit = build_vit(read_vit(VIT), 224, 22, torch.device("cpu"))
    assert vit.blocks[0].attn.heads == 4 and vit.pos_embed.shape == (1, 1 + 4 * 4, 88)


class StubLlm:
    """Just enough of a peft model for EmotionLlama's constructor."""

    def __init__(self) -> None:
        self.causal = nn.Module()
        self.causal.model = nn.Module()
        self.causal.lm_head = nn.Linear(2, 2)

    def get_base_model(self) -> nn.Module:
        return self.causal


def test_the_multimodal_block_groups_four_patches_then_face_video_audio_cls() -> None:
    torch.manual_seed(0)
    width, hidden = 3, 5
    vit = nn.Module()
    vit.width = width  # type: ignore[assignment]
    projections = {"llama_proj": nn.Linear(4 * width, hidden), "cls_tk_llama_proj": nn.Linear(width, hidden)}
    projections |= {f"feats_llama_proj{i}": nn.Linear(d, hidden) for i, d in ((1, 7), (2, 6), (3, 4))}
    model = EmotionLlama(vit, StubLlm(), projections, nn.LayerNorm(width))  # type: ignore[arg-type]
    encoded = torch.randn(2, 1 + 16, width)
    features = [torch.randn(2, 7), torch.randn(2, 6), torch.randn(2, 4)]
    block = model.project(encoded, features)
    assert block.shape == (2, 4 + 4, hidden)
    for j in range(4):
        strip = torch.cat([encoded[:, 1 + 4 * j + i] for i in range(4)], dim=-1)  # patches 4j..4j+3
        torch.testing.assert_close(block[:, j], projections["llama_proj"](strip))
    for slot, feature in enumerate(features):
        torch.testing.assert_close(block[:, 4 + slot], projections[f"feats_llama_proj{slot + 1}"](feature))
    torch.testing.assert_close(block[:, 7], projections["cls_tk_llama_proj"](encoded[:, 0]))
