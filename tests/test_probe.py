"""`--emogate-dtype`: the option, the cache key, and the tiny model in the half dtypes on CPU (on a 60-sample
slice of its data)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.conftest import SEED, THRESHOLDS, TINY, TINY_SETTINGS

SLICE = 60
"""Samples of the tiny data set the model tests answer (every class is among the first 60)."""
LABELS = "labels: [neutral, angry, happy, sad, worried, surprise]\n"
CPU = dataclasses.replace(TINY_SETTINGS, device="cpu")


# --- the stratified pick -----------------------------------------------------------------------------------------


# --- the cache keys ----------------------------------------------------------------------------------------------


def test_the_dtype_is_part_of_the_cache_key_and_the_batch_size_in_half_precision() -> None:
    from pytest_emogate.inference.cache import answer_key, key_digest

    keys = {
        dtype: answer_key(dataclasses.replace(CPU, dtype=dtype), "data") for dtype in ("auto", "float32", "float16")
    }
    assert len({key_digest(key) for key in keys.values()}) == 3
    assert "batch_size" not in keys["float32"]["decoding"] and "batch_size" not in keys["auto"]["decoding"]
    assert keys["float16"]["decoding"]["batch_size"] == 16
    half = answer_key(dataclasses.replace(CPU, dtype="bfloat16", batch_size=4), "data")
    assert half["decoding"]["batch_size"] == 4 and half["model"]["dtype"] == "bfloat16"
    on_gpu = answer_key(dataclasses.replace(TINY_SETTINGS, device="cuda"), "data")
    assert on_gpu["decoding"]["batch_size"] == 16  # auto is fp16 autocast on CUDA
    fp32 = answer_key(dataclasses.replace(CPU, batch_size=4), "data")
    assert key_digest(fp32) == key_digest(keys["auto"])  # in fp32 the batch size changes no answer


# --- options -----------------------------------------------------------------------------------------------------


@pytest.fixture
def gated(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.path / "thresholds.yaml").write_bytes(THRESHOLDS.read_bytes())
    (pytester.path / "base.csv").write_bytes(SEED.read_bytes())
    return pytester


GATED = ("--emogate-predictions=base.csv", "--emogate-no-history", "-p", "no:cacheprovider")


def test_the_dtype_option_is_validated(gated: pytest.Pytester) -> None:
    from pytest_emogate.options import value_option

    result = gated.runpytest(*GATED, "--emogate-dtype=half")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--emogate-dtype: expected one of auto, float32, float16, bfloat16, found 'half'"])
    assert value_option(gated.parseconfigure(*GATED, "--emogate-dtype=bfloat16"), "dtype") == "bfloat16"
    assert value_option(gated.parseconfigure(*GATED), "dtype") == "auto"
    gated.makeini("[pytest]\nemogate_dtype = fp16\n")
    with pytest.raises(pytest.UsageError) as error:
        value_option(gated.parseconfig(), "dtype")
    assert str(error.value) == (
        "ini setting emogate_dtype: expected one of auto, float32, float16, bfloat16, found 'fp16'"
    )


# --- the tiny model ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sliced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest over the first 60 samples of the tiny data set, and thresholds the tiny model passes."""
    root = tmp_path_factory.mktemp("sliced")
    lines = (TINY / "data" / "relative_test3_NCEV.txt").read_text(encoding="utf-8").splitlines()
    (root / "annotation.txt").write_text("\n".join(lines[:SLICE]) + "\n", encoding="utf-8")
    data = TINY / "data"
    manifest = {
        "annotation": str(root / "annotation.txt"), "transcripts": str(data / "transcription_en_all.csv"),
        "features": {"face": str(data / "mae_340_UTT"), "video": str(data / "maeV_399_UTT"),
                     "audio": str(data / "HL-UTT")},
        "frames": str(data / "test3"),
    }  # fmt: skip
    (root / "manifest.yaml").write_text(json.dumps(manifest), encoding="utf-8")
    (root / "thresholds.yaml").write_text(LABELS + "overall: {accuracy: 0.5}\n", encoding="utf-8")
    return root


# --- half precision on the CPU -----------------------------------------------------------------------------------


def test_half_dtype_resolution() -> None:
    torch = pytest.importorskip("torch")
    from pytest_emogate.model.precision import half_dtype, precision_name

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert half_dtype("auto", cpu) is None and half_dtype("auto", cuda) is torch.float16
    assert half_dtype("float32", cuda) is None
    assert half_dtype("float16", cpu) is torch.float16 and half_dtype("bfloat16", cpu) is torch.bfloat16
    assert precision_name("auto", cuda) == "float16 autocast" and precision_name("auto", cpu) == "float32"
    with pytest.raises(ValueError, match="found 'half'"):
        half_dtype("half", cpu)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_half_dtype_makes_the_originals_choices_on_the_cpu(dtype: str, sliced: Path) -> None:
    torch = pytest.importorskip("torch")
    from pytest_emogate.data import load_test3
    from pytest_emogate.inference.run import run_inference
    from pytest_emogate.model import ModelFiles, load_emotion_llama

    half = getattr(torch, dtype)
    model, _ = load_emotion_llama(ModelFiles(CPU.ckpt, CPU.llama, CPU.vit), torch.device("cpu"), dtype)
    dtypes = {name: param.dtype for name, param in model.named_parameters()}
    assert dtypes["vit.blocks.0.attn.qkv.weight"] == dtypes["vit.patch_embed.proj.bias"] == half
    assert dtypes["vit.blocks.0.norm1.weight"] == dtypes["vit.pos_embed"] == dtypes["vit.blocks.0.attn.q_bias"]
    assert dtypes["vit.pos_embed"] == dtypes["llama_proj.weight"] == torch.float32
    llm = {name: kind for name, kind in dtypes.items() if name.startswith("llm.")}
    assert {kind for name, kind in llm.items() if ".lora_" not in name} == {half}
    assert {kind for name, kind in llm.items() if ".lora_" in name} == {torch.float32}
    with model.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == half
    run = run_inference(dataclasses.replace(CPU, dtype=dtype), load_test3(sliced / "manifest.yaml"), progress=False,
                        indices=range(8))  # fmt: skip
    assert len(run.predictions) == 8 and all(answer.output for answer in run.predictions)


@pytest.mark.slow
def test_float32_and_auto_on_the_cpu_are_fp32_everywhere() -> None:
    torch = pytest.importorskip("torch")
    from pytest_emogate.model import ModelFiles, load_emotion_llama

    model, _ = load_emotion_llama(ModelFiles(CPU.ckpt, CPU.llama, CPU.vit), torch.device("cpu"), "float32")
    assert {param.dtype for param in model.parameters()} == {torch.float32}
    with model.autocast():
        assert not torch.is_autocast_enabled("cpu")
