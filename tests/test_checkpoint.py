"""Weight files: every key accounted for, every refusal naming the key, no pickle that runs code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from pytest_emogate.model.checkpoint import (  # noqa: E402
    feature_dims,
    read_stage_two,
    read_vit,
)
from tests.conftest import TINY  # noqa: E402

CKPT = TINY / "checkpoint_best.pth"
VIT = TINY / "eva_vit_g.pth"
LORA = "llama_model.base_model.model.model.layers.{}.self_attn.{}.lora_{}.weight"


def original() -> dict[str, Any]:
    """The tiny checkpoint as a fresh dict (tests edit it)."""
    return torch.load(CKPT, weights_only=True)


def save(path: Path, checkpoint: dict[str, Any]) -> Path:
    torch.save(checkpoint, path)
    return path


def test_the_tiny_checkpoint_is_read_with_every_part() -> None:
    stage = read_stage_two(CKPT)
    assert sorted(stage.projections) == sorted(
        ["llama_proj", "feats_llama_proj1", "feats_llama_proj2", "feats_llama_proj3", "cls_tk_llama_proj"]
    )
    assert stage.targets == ("q_proj", "v_proj")
    assert sorted(stage.lora) == [(layer, "self_attn", t) for layer in (0, 1) for t in ("q_proj", "v_proj")]
    assert stage.rank == 16
    assert stage.saved_lora_alpha == 32.0
    assert stage.lora_alpha(None) == 32.0 and stage.lora_alpha(4.0) == 4.0
    assert stage.ln_vision == {}


def test_alpha_defaults_to_the_original_16_without_a_saved_config(tmp_path: Path) -> None:
    checkpoint = original()
    del checkpoint["config"]
    assert read_stage_two(save(tmp_path / "c.pth", checkpoint)).lora_alpha(None) == 16.0


def test_a_missing_lora_tensor_is_refused_with_its_key_named(tmp_path: Path) -> None:
    checkpoint = original()
    key = LORA.format(1, "v_proj", "B")
    del checkpoint["model"][key]
    with pytest.raises(pytest.UsageError) as refused:
        read_stage_two(save(tmp_path / "c.pth", checkpoint))
    assert f"missing key {key}" in str(refused.value)


def test_a_missing_projection_is_refused_with_its_key_named(tmp_path: Path) -> None:
    checkpoint = original()
    del checkpoint["model"]["feats_llama_proj2.bias"]
    with pytest.raises(pytest.UsageError, match=r"missing key feats_llama_proj2\.bias"):
        read_stage_two(save(tmp_path / "c.pth", checkpoint))


@pytest.mark.parametrize("key", ["visual_encoder.blocks.0.norm1.weight", "llama_proj.scale", "lm_head.0.weight"])
def test_an_unknown_key_is_refused_with_its_key_named(tmp_path: Path, key: str) -> None:
    checkpoint = original()
    checkpoint["model"][key] = torch.zeros(2)
    with pytest.raises(pytest.UsageError) as refused:
        read_stage_two(save(tmp_path / "c.pth", checkpoint))
    assert f"unexpected key {key} " in str(refused.value)
    assert "1 problem" in str(refused.value)


def test_the_unused_attention_module_is_skipped(tmp_path: Path) -> None:
    checkpoint = original()
    assert any(key.startswith("attention.") for key in checkpoint["model"])
    checkpoint["model"]["attention.feats_prep.0.0.weight"] = torch.zeros(3, 3)
    read_stage_two(save(tmp_path / "c.pth", checkpoint))


def test_modern_peft_names_read_to_the_same_tensors(tmp_path: Path) -> None:
    checkpoint = original()
    checkpoint["model"] = {key.replace(".weight", ".default.weight") if ".lora_" in key else key: value
                           for key, value in checkpoint["model"].items()}  # fmt: skip
    modern, old = read_stage_two(save(tmp_path / "c.pth", checkpoint)), read_stage_two(CKPT)
    assert modern.lora.keys() == old.lora.keys()
    for slot, (a, b) in old.lora.items():
        assert torch.equal(modern.lora[slot][0], a) and torch.equal(modern.lora[slot][1], b)


def test_both_names_for_one_tensor_are_refused(tmp_path: Path) -> None:
    checkpoint = original()
    key = LORA.format(0, "q_proj", "A")
    checkpoint["model"][key.replace(".weight", ".default.weight")] = checkpoint["model"][key]
    with pytest.raises(pytest.UsageError, match="duplicates"):
        read_stage_two(save(tmp_path / "c.pth", checkpoint))


def test_a_checkpoint_without_lora_is_refused(tmp_path: Path) -> None:
    checkpoint = original()
    checkpoint["model"] = {key: value for key, value in checkpoint["model"].items() if ".lora_" not in key}
    with pytest.raises(pytest.UsageError, match="no LoRA tensors"):
        read_stage_two(save(tmp_path / "c.pth", checkpoint))


class RunsCode:
    """Unpickling this calls a function: what a malicious checkpoint does."""

    def __init__(self, flag: Path) -> None:
        self.flag = flag

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.flag),))


def test_a_pickle_carrying_code_is_refused_and_the_code_never_runs(tmp_path: Path) -> None:
    flag = tmp_path / "code-ran"
    checkpoint = original()
    checkpoint["config"] = RunsCode(flag)
    with pytest.raises(pytest.UsageError) as refused:
        read_stage_two(save(tmp_path / "evil.pth", checkpoint))
    assert "refused: a pickle that needs code to load" in str(refused.value)
    assert "evil.pth" in str(refused.value)
    assert not flag.exists()


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(pytest.UsageError, match="is a truncated or damaged zip archive"):
        read_stage_two(path)
    with pytest.raises(pytest.UsageError, match="does not exist"):
        read_stage_two(tmp_path / "absent.pth")


def test_a_checkpoint_in_another_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(pytest.UsageError, match=r"expected the MiniGPT-v2 format .* found top-level keys state_dict"):
        read_stage_two(save(tmp_path / "c.pth", {"state_dict": original()["model"]}))


def test_safetensors_checkpoints_read_like_pth(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    checkpoint = original()
    path = tmp_path / "c.safetensors"
    save_file(checkpoint["model"], str(path), metadata={"config": json.dumps(checkpoint["config"])})
    stage, old = read_stage_two(path), read_stage_two(CKPT)
    assert stage.saved_lora_alpha == old.saved_lora_alpha and stage.rank == old.rank
    assert all(torch.equal(stage.projections[n][0], old.projections[n][0]) for n in old.projections)
    assert feature_dims(path) == feature_dims(CKPT) == (32, 32, 32)


@pytest.mark.slow
def test_feature_dims_load_no_language_model() -> None:
    code = (
        "import sys; from pathlib import Path; from pytest_emogate.inference.run import checkpoint_feature_dims; "
        f"print(checkpoint_feature_dims(Path({str(CKPT)!r}))); "
        "print(sorted(m for m in ('transformers', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["(32, 32, 32)", "[]"]


def test_the_eva_file_gives_its_sizes_and_drops_its_last_block() -> None:
    weights = read_vit(VIT)
    assert (weights.width, weights.patch, weights.mlp, weights.depth) == (88, 56, 384, 2)
    assert not any(key.startswith("blocks.2.") for key in weights.state)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda s: s.pop("blocks.0.attn.q_bias"), "missing key blocks.0.attn.q_bias"),
        (lambda s: s.pop("pos_embed"), "missing key pos_embed"),
        (lambda s: s.__setitem__("norm.weight", torch.ones(88)), "unexpected key norm.weight"),
        (lambda s: s.__setitem__("blocks.1.attn.relative_position_bias_table", torch.ones(3)),
         "unexpected key blocks.1.attn.relative_position_bias_table"),
    ],
)  # fmt: skip
def test_the_eva_file_is_read_strictly(tmp_path: Path, edit: Any, problem: str) -> None:
    state = torch.load(VIT, weights_only=True)
    state["blocks.2.anything.goes"] = torch.zeros(1)  # the unused last block is never checked
    edit(state)
    with pytest.raises(pytest.UsageError) as refused:
        read_vit(save(tmp_path / "eva.pth", state))
    assert problem in str(refused.value)


def test_an_eva_file_without_a_spare_block_is_refused(tmp_path: Path) -> None:
    state = {key: value for key, value in torch.load(VIT, weights_only=True).items() if not key.startswith("blocks.")}
    with pytest.raises(pytest.UsageError, match="no blocks"):
        read_vit(save(tmp_path / "eva.pth", state))


@pytest.mark.parametrize(
    ("key", "dtype"),
    [(LORA.format(0, "q_proj", "A"), "int64"), (LORA.format(1, "v_proj", "B"), "int32"), ("llama_proj.bias", "bool")],
)
def test_a_tensor_of_no_floating_dtype_is_refused_with_its_key_named(tmp_path: Path, key: str, dtype: str) -> None:
    checkpoint = original()
    checkpoint["model"][key] = checkpoint["model"][key].round().to(getattr(torch, dtype))
    with pytest.raises(pytest.UsageError) as refused:
        read_stage_two(save(tmp_path / "c.pth", checkpoint))
    assert f"{key}: expected a floating dtype, found {dtype}" in str(refused.value)
