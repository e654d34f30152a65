"""Loading the whole model from local files: LoRA names, alpha, ln_vision, refusals naming keys and paths."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from pytest_emogate.model.emotion_llama import EmotionLlama, ModelFiles, load_emotion_llama  # noqa: E402
from tests.conftest import TINY  # noqa: E402

FILES = ModelFiles(TINY / "checkpoint_best.pth", TINY / "llama", TINY / "eva_vit_g.pth")
CPU = torch.device("cpu")


def logits(model: EmotionLlama) -> torch.Tensor:
    """The next-token logits of a fixed synthetic input: image, features and a few prompt tokens."""
    from transformers import DynamicCache

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(1, 3, 448, 448, generator=generator)
    features = [torch.randn(1, 32, generator=generator) for _ in range(3)]
    with torch.inference_mode():
        block = model.multimodal_block(images, features)
        embeds = torch.cat((model.embed(torch.tensor([[1, 1, 5, 6]])), block, model.embed(torch.tensor([[7, 8]]))), 1)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long)
        return model.logits(embeds, mask, torch.arange(embeds.shape[1])[None], DynamicCache())[:, -1]


@pytest.fixture(scope="module")
def reference() -> torch.Tensor:
    """Logits of the model loaded from the fixture as committed (peft 0.2 names)."""
    return logits(load_emotion_llama(FILES, CPU)[0])


def edited(tmp_path: Path, edit: Any) -> ModelFiles:
    checkpoint = torch.load(FILES.ckpt, weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, tmp_path / "c.pth")
    return ModelFiles(tmp_path / "c.pth", FILES.llama, FILES.vit)


@pytest.mark.slow
def test_modern_peft_names_load_to_identical_outputs(tmp_path: Path, reference: torch.Tensor) -> None:
    def modern(checkpoint: dict[str, Any]) -> None:
        checkpoint["model"] = {re.sub(r"\.lora_([AB])\.", r".lora_\1.default.", key): value
                               for key, value in checkpoint["model"].items()}  # fmt: skip

    assert torch.equal(logits(load_emotion_llama(edited(tmp_path, modern), CPU)[0]), reference)


@pytest.mark.slow
def test_safetensors_loads_to_identical_outputs(tmp_path: Path, reference: torch.Tensor) -> None:
    import json

    from safetensors.torch import save_file

    checkpoint = torch.load(FILES.ckpt, weights_only=True)
    path = tmp_path / "c.safetensors"
    save_file(checkpoint["model"], str(path), metadata={"config": json.dumps(checkpoint["config"])})
    files = ModelFiles(path, FILES.llama, FILES.vit)
    assert torch.equal(logits(load_emotion_llama(files, CPU)[0]), reference)


@pytest.mark.slow
def test_the_lora_is_live_unmerged_with_alpha_from_the_config(reference: torch.Tensor) -> None:
    model, _ = load_emotion_llama(FILES, CPU)
    layer = model.llm.get_base_model().model.layers[0].self_attn.q_proj
    assert layer.scaling["default"] == 32.0 / 16 and not layer.merged
    assert not torch.equal(logits(load_emotion_llama(ModelFiles(**{**FILES.__dict__, "lora_alpha": 16.0}), CPU)[0]),
                           reference)  # fmt: skip


@pytest.mark.slow
def test_without_lora_the_answers_change(tmp_path: Path, reference: torch.Tensor) -> None:
    def zero_b(checkpoint: dict[str, Any]) -> None:
        for key, value in checkpoint["model"].items():
            if ".lora_B." in key:
                value.zero_()

    assert not torch.equal(logits(load_emotion_llama(edited(tmp_path, zero_b), CPU)[0]), reference)


@pytest.mark.slow
def test_a_missing_lora_pair_is_refused_with_its_keys_named(tmp_path: Path) -> None:
    def drop(checkpoint: dict[str, Any]) -> None:
        for half in "AB":
            del checkpoint["model"][f"llama_model.base_model.model.model.layers.1.self_attn.q_proj.lora_{half}.weight"]

    with pytest.raises(pytest.UsageError) as refused:
        load_emotion_llama(edited(tmp_path, drop), CPU)
    for half in "AB":
        assert f"missing key llama_model.base_model.model.model.layers.1.self_attn.q_proj.lora_{half}.weight" in str(
            refused.value
        )


@pytest.mark.slow
def test_lora_for_a_layer_the_model_lacks_is_refused(tmp_path: Path) -> None:
    def extra(checkpoint: dict[str, Any]) -> None:
        for half in "AB":
            old = f"llama_model.base_model.model.model.layers.1.self_attn.q_proj.lora_{half}.weight"
            checkpoint["model"][old.replace("layers.1.", "layers.7.")] = checkpoint["model"][old].clone()

    with pytest.raises(pytest.UsageError, match=r"unexpected key llama_model\..*layers\.7\.self_attn\.q_proj\.lora_A"):
        load_emotion_llama(edited(tmp_path, extra), CPU)


@pytest.mark.slow
def test_a_projection_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    def shrink(checkpoint: dict[str, Any]) -> None:
        checkpoint["model"]["cls_tk_llama_proj.weight"] = checkpoint["model"]["cls_tk_llama_proj.weight"][:, :10]

    with pytest.raises(pytest.UsageError, match=r"cls_tk_llama_proj\.weight: expected 88 inputs"):
        load_emotion_llama(edited(tmp_path, shrink), CPU)


@pytest.mark.slow
def test_ln_vision_is_identity_affine_unless_the_checkpoint_has_it(tmp_path: Path) -> None:
    model, _ = load_emotion_llama(FILES, CPU)
    assert model.ln_vision.eps == 1e-5
    assert torch.equal(model.ln_vision.weight, torch.ones(88)) and torch.equal(model.ln_vision.bias, torch.zeros(88))

    def add(checkpoint: dict[str, Any]) -> None:
        checkpoint["model"]["ln_vision.weight"] = torch.full((88,), 2.0)

    model, _ = load_emotion_llama(edited(tmp_path, add), CPU)
    assert torch.equal(model.ln_vision.weight, torch.full((88,), 2.0))


@pytest.mark.parametrize("part", ["ckpt", "llama", "vit"])
def test_a_missing_path_is_a_usage_error_naming_it(tmp_path: Path, part: str) -> None:
    files = ModelFiles(**{**FILES.__dict__, part: tmp_path / "nowhere"})
    with pytest.raises(pytest.UsageError, match=str(tmp_path / "nowhere")):
        load_emotion_llama(files, CPU)


def test_loads_run_offline_and_restore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_emogate.model.llm import offline

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    with offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"
