"""End-to-end pytester runs of `--emogate-ckpt` on the tiny Emotion-LLaMA fixture (CPU, about 20 s each)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.slow  # the tiny model, inference and subprocesses


def model_args(data: Path = TINY / "data") -> list[str]:
    return [
        f"--emogate-ckpt={TINY / 'checkpoint_best.pth'}", f"--emogate-llama={TINY / 'llama'}",
        f"--emogate-vit={TINY / 'eva_vit_g.pth'}", f"--emogate-data={data}", "--emogate-device=cpu",
        f"--emogate-thresholds={TINY / 'thresholds.yaml'}", "--emogate-no-history", "-p", "no:cacheprovider",
    ]  # fmt: skip


def test_inference_gate_and_its_saved_answers_gate_identically(pytester: pytest.Pytester) -> None:
    inferred = pytester.runpytest_subprocess(
        *model_args(), "--emogate-save-predictions=preds.jsonl", "--emogate-report=a.json", timeout=300
    )
    inferred.assert_outcomes(passed=13)
    inferred.stdout.fnmatch_lines([
        "emogate: thresholds * answers from Emotion-LLaMA inference (checkpoint *checkpoint_best.pth, data *data)",
        "answers: 0 from the cache, 834 inferred; cache .emogate/cache/*",
        "inference: 834 samples on cpu in * s (load * s, batch size 16, mode generate, max 32 new tokens)",
        "0 answers hit the cap of 32 new tokens",
        "emogate verdict: PASSED (13 checks)",
    ])  # fmt: skip
    regated = pytester.runpytest_subprocess(
        "--emogate-predictions=preds.jsonl", f"--emogate-thresholds={TINY / 'thresholds.yaml'}",
        "--emogate-report=b.json", "--emogate-no-history",
    )  # fmt: skip
    regated.assert_outcomes(passed=13)
    a, b = (json.loads((pytester.path / name).read_text(encoding="utf-8")) for name in ("a.json", "b.json"))
    assert (a["metrics"], a["per_class"], a["confusion"], a["checks"]) == (
        b["metrics"],
        b["per_class"],
        b["confusion"],
        b["checks"],
    )
    assert a["metrics"]["accuracy"] == 686 / 834
    provenance = a["provenance"]
    assert len(provenance["checkpoint_sha256"]) == 64 and len(provenance["data_fingerprint"]) == 64
    assert provenance["device"] == "cpu" and provenance["inference"]["max_new_tokens"] == 32
    assert provenance["inference"]["lora_alpha"] == 32.0  # the alpha used: the checkpoint's saved config value
    assert a["timings_s"]["load"] > 0 and a["timings_s"]["inference"] > 0
    row = json.loads((pytester.path / "preds.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert set(row) == {"name", "label", "output", "n_new_tokens", "hit_cap"}


def test_the_preflight_stops_a_broken_data_set_before_any_model_loads(pytester: pytest.Pytester) -> None:
    data = pytester.path / "data"
    shutil.copytree(TINY / "data", data)
    (data / "HL-UTT" / "samplenew_00000007.npy").unlink()
    (data / "test3" / "samplenew_00000009.jpg").write_bytes(b"not an image")
    result = pytester.runpytest_subprocess(*model_args(data), timeout=300)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: *: 2 problems",
        "*samplenew_00000007*HL-UTT/samplenew_00000007.npy*",
        "*samplenew_00000009*test3/samplenew_00000009.jpg*",
    ])  # fmt: skip
    assert "transformers" not in result.stdout.str() + result.stderr.str()


def test_a_missing_model_path_is_named(pytester: pytest.Pytester) -> None:
    args = [arg if not arg.startswith("--emogate-llama=") else "--emogate-llama=nowhere" for arg in model_args()]
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: emogate inference: 1 problem", "  - --emogate-llama: *nowhere does not exist"])
