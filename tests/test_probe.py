"""The consistency probe (`--emogate-probe N`, the `consistency` check) and `--emogate-dtype`.

Unit tests for the stratified pick, the thresholds section, the check's message, the cache keys and the options;
the tiny model (on a 60-sample slice of its data) for the probe itself, in fp32 and in the half dtypes on CPU;
a stub for a probe answer that differs.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pytest_emogate.evaluate.checks import consistency
from pytest_emogate.evaluate.thresholds import load_thresholds
from pytest_emogate.inference.probe import ProbeAnswer, ProbeResult, probe_settings, stratified_pick
from pytest_emogate.inference.settings import MER2023_LABELS, InferenceSettings
from tests.conftest import SEED, THRESHOLDS, TINY, TINY_SETTINGS, sliced_manifest

SLICE = 60
"""Samples of the tiny data set the model tests answer (every class is among the first 60)."""
PROBE = 12
LABELS = "labels: [neutral, angry, happy, sad, worried, surprise]\n"
CPU = dataclasses.replace(TINY_SETTINGS, device="cpu")


# --- the stratified pick -----------------------------------------------------------------------------------------


def test_the_pick_has_every_class_in_proportion_and_is_deterministic() -> None:
    labels = ["sad"] * 257 + ["angry"] * 183 + ["happy"] * 169 + ["neutral"] * 166 + ["worried"] * 45
    labels += ["surprise"] * 14
    picked = stratified_pick(labels, PROBE)
    assert picked == stratified_pick(list(labels), PROBE) == sorted(set(picked))
    assert Counter(labels[i] for i in picked) == {
        "sad": 4, "angry": 2, "happy": 2, "neutral": 2, "worried": 1, "surprise": 1,
    }  # fmt: skip


def test_the_pick_spreads_through_a_class_and_the_rarest_come_first() -> None:
    labels = ["a"] * 10 + ["b"] * 3 + ["c"] * 1
    assert stratified_pick(labels, 2) == [11, 13]  # c and b, the two rarest, each its middle sample
    assert stratified_pick(labels, 3) == [5, 11, 13]
    assert stratified_pick(labels, 6) == [1, 3, 6, 8, 11, 13]  # a's share: 4 of 6, spread through it


def test_the_pick_never_exceeds_the_samples() -> None:
    labels = ["a", "b", "a", "c"]
    assert stratified_pick(labels, 4) == stratified_pick(labels, 99) == [0, 1, 2, 3]
    assert stratified_pick(["a"] * 5, 5) == [0, 1, 2, 3, 4]


# --- thresholds: the consistency section -------------------------------------------------------------------------


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "thresholds.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(pytest.UsageError) as error:
        load_thresholds(path)
    return [line.removeprefix("  - ") for line in str(error.value).splitlines()[1:]]


def test_the_consistency_section_sets_max_disagree(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(LABELS + "consistency: {max_disagree: 2}\n", encoding="utf-8")
    assert load_thresholds(path).max_disagree == 2
    path.write_text(LABELS, encoding="utf-8")
    assert load_thresholds(path).max_disagree is None


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("consistency: {max_disagree: -1}", "consistency.max_disagree: expected a whole number >= 0, found int -1"),
        ("consistency: {max_disagree: 0.5}", "consistency.max_disagree: expected a whole number >= 0, found float 0.5"),
        (
            "consistency: {max_disagree: true}",
            "consistency.max_disagree: expected a whole number >= 0, found bool True",
        ),
        ("consistency: {max_disagree: '1'}", "consistency.max_disagree: expected a whole number >= 0, found str '1'"),
        ("consistency: {max_disagree: 0, max_flips: 1}", "consistency.max_flips: unknown key; expected max_disagree"),
        ("consistency: {}", "consistency: expected a mapping with the key max_disagree, found dict {}"),
        ("consistency:", "consistency: expected a mapping with the key max_disagree, found nothing"),
        ("consistency: 3", "consistency: expected a mapping with the key max_disagree, found int 3"),
        ("consistency: {n: 3}", "consistency.n: unknown key; expected max_disagree"),
    ],
)
def test_a_bad_consistency_section_is_named(tmp_path: Path, section: str, problem: str) -> None:
    assert problem in problems_of(tmp_path, LABELS + section + "\n")


# --- the check ---------------------------------------------------------------------------------------------------


def probe_result(differ: int, n: int = PROBE) -> ProbeResult:
    answers = tuple(ProbeAnswer(f"sample{i}", "happy</s>", "sad</s>") for i in range(differ))
    return ProbeResult(n, answers, {"batch_size": 1})


def test_the_check_defaults_to_no_difference_and_names_the_samples(tmp_path: Path) -> None:
    thresholds = load_thresholds(THRESHOLDS)
    passed = consistency(thresholds, probe_result(0))
    assert passed.passed and (passed.id, passed.value, passed.limit, passed.n) == ("consistency", 0.0, 0.0, PROBE)
    failed = consistency(thresholds, probe_result(2))
    assert not failed.passed
    assert failed.message == (
        "2 of 12 answers differ when answered again at batch size 1 (generation, LoRA unmerged) > max 0 "
        "(--emogate-probe's default; set consistency.max_disagree in thresholds.yaml to allow some): sample0, sample1"
    )
    many = consistency(thresholds, probe_result(12))
    assert many.message.endswith("sample9 and 2 more (JSON report: probe.samples)")


def test_max_disagree_allows_that_many(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(LABELS + "consistency: {max_disagree: 2}\n", encoding="utf-8")
    outcome = consistency(load_thresholds(path), probe_result(2))
    assert outcome.passed
    assert "2 of 12 answers differ" in outcome.message
    assert outcome.message.endswith("<= max 2 (thresholds.yaml: consistency.max_disagree): sample0, sample1")


def test_the_summary_line() -> None:
    assert probe_result(0, 24).line() == "probe: 24/24 answers equal at batch size 1"
    assert (
        probe_result(5).line()
        == "probe: 7/12 answers equal at batch size 1; differ: sample0, sample1, sample2 and 2 more"
    )
    inferred = dataclasses.replace(probe_result(0), inferred=12, seconds=0.42)
    assert inferred.line() == "probe: 12/12 answers equal at batch size 1 (12 inferred in 0.4 s)"


def test_consistency_without_the_probe_declares_nothing(tmp_path: Path) -> None:
    from pytest_emogate.gate import Gate
    from pytest_emogate.inference.file_source import PredictionsFile

    path = tmp_path / "thresholds.yaml"
    path.write_text(THRESHOLDS.read_text(encoding="utf-8") + "consistency: {max_disagree: 1}\n", encoding="utf-8")
    thresholds = load_thresholds(path)
    gate = Gate(thresholds, PredictionsFile.read(SEED, thresholds.labels))
    assert "consistency" not in [check.id for check in gate.checks]
    assert "consistency" not in gate.outcomes()
    assert gate.summary_header().splitlines()[-1] == (
        "thresholds.yaml sets consistency.max_disagree, but only --emogate-probe N declares test_consistency"
    )


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


def test_the_probe_answers_the_original_way() -> None:
    merged = dataclasses.replace(CPU, batch_size=16, mode="score", merge_lora=True, dtype="bfloat16")
    assert probe_settings(merged) == dataclasses.replace(merged, batch_size=1, mode="generate", merge_lora=False)


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
    assert value_option(gated.parseconfig(*GATED, "--emogate-dtype=bfloat16"), "dtype") == "bfloat16"
    assert value_option(gated.parseconfigure(*GATED), "dtype") == "auto"
    gated.makeini("[pytest]\nemogate_dtype = fp16\n")
    with pytest.raises(pytest.UsageError) as error:
        value_option(gated.parseconfig(), "dtype")
    assert str(error.value) == (
        "ini setting emogate_dtype: expected one of auto, float32, float16, bfloat16, found 'fp16'"
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--emogate-probe=0",), "*--emogate-probe: expected a positive int, found '0'"),
        (("--emogate-probe=all",), "*--emogate-probe: expected a positive int, found 'all'"),
        (("--emogate-probe=12",), "ERROR: --emogate-probe 12: the probe answers samples again with the model, so it "
                                  "needs --emogate-ckpt; a predictions file cannot be asked again"),
    ],
)  # fmt: skip
def test_the_probe_option_is_validated(gated: pytest.Pytester, args: tuple[str, ...], said: str) -> None:
    result = gated.runpytest(*GATED, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([said])


def test_the_probe_option_needs_an_answer_source(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--emogate-probe=12", "--emogate-dtype=float16")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--emogate-dtype, --emogate-probe given without an answer source*"])


# --- the tiny model ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sliced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest over the first 60 samples of the tiny data set, and thresholds the tiny model passes."""
    root = tmp_path_factory.mktemp("sliced")
    sliced_manifest(root, SLICE)
    (root / "thresholds.yaml").write_text(LABELS + "overall: {accuracy: 0.5}\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def probed(sliced: Path) -> tuple[Path, ProbeResult, list[Any]]:
    """The main answers (batch 16) and a 12-sample probe of the tiny model in fp32, once, in a cache; the probe's
    result and its main answers."""
    from pytest_emogate.inference.sources import CheckpointInference

    source = CheckpointInference.prepare(
        CPU, sliced / "manifest.yaml", MER2023_LABELS, sliced / "cache", progress=False, probe=PROBE
    )
    assert source.probe is not None
    return sliced / "cache", source.probe.result(), source.predictions()


@pytest.mark.slow
def test_the_tiny_models_batched_answers_equal_its_batch_one_answers_in_fp32(
    probed: tuple[Path, ProbeResult, list[Any]],
) -> None:
    _, result, answers = probed
    assert (result.n, result.disagree, result.inferred) == (PROBE, 0, PROBE)
    assert result.settings == {"batch_size": 1, "mode": "generate", "merge_lora": False, "dtype": "auto",
                               "max_new_tokens": 32, "device": "cpu"}  # fmt: skip
    picked = {answers[i].label for i in stratified_pick([answer.label for answer in answers], PROBE)}
    assert picked == set(MER2023_LABELS)


def refusing_inference(*_: Any, **__: Any) -> Any:
    raise AssertionError("inference ran although every answer is cached")


@pytest.mark.slow
def test_a_rerun_reads_the_probe_answers_from_their_own_cache_key(
    probed: tuple[Path, ProbeResult, list[Any]], sliced: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_emogate.inference import run
    from pytest_emogate.inference.sources import CheckpointInference

    cache, result, _ = probed
    monkeypatch.setattr(run, "run_inference", refusing_inference)
    again = CheckpointInference.prepare(
        CPU, sliced / "manifest.yaml", MER2023_LABELS, cache, progress=False, probe=PROBE
    )
    assert again.probe is not None and again.probe.ready
    assert again.probe.cache.folder != again.cache.folder and again.probe.cache.folder.parent == cache
    rerun = again.probe.result()
    assert (rerun.n, rerun.differ, rerun.inferred) == (PROBE, result.differ, 0)


def differing_stub(sample: str) -> Any:
    """run_inference for the probe: the main answer of every sample (read from the main cache), but another for
    `sample`."""

    def run_stub(settings: InferenceSettings, data: Any, *, indices: list[int], on_batch: Any, **_: Any) -> Any:
        from pytest_emogate.inference.run import InferenceRun
        from pytest_emogate.predictions import Prediction

        assert settings.batch_size == 1 and settings.mode == "generate" and not settings.merge_lora
        answers = [
            Prediction(data.samples[i].name, data.samples[i].label,
                       "surprise</s>" if data.samples[i].name == sample else MAIN[data.samples[i].name])
            for i in indices
        ]  # fmt: skip
        on_batch(answers)
        return InferenceRun(answers, 0, "cpu", {"load": 0.0, "inference": 0.0})

    return run_stub


MAIN: dict[str, str] = {}


@pytest.fixture
def main_answered(probed: tuple[Path, ProbeResult, list[Any]], sliced: Path, pytester: pytest.Pytester) -> list[str]:
    """A project whose cache holds the main answers of the 60 samples but no probe answers; its command line."""
    from pytest_emogate.inference.cache import ANSWERS

    cache, _, answers = probed
    MAIN.update({answer.name: answer.output for answer in answers})
    keys = {folder: json.loads((folder / "key.json").read_text(encoding="utf-8")) for folder in cache.iterdir()}
    main_folder = next(folder for folder, key in keys.items() if "probe" not in key)
    own_cache = pytester.path / "cache" / main_folder.name
    own_cache.mkdir(parents=True)
    for name in ("key.json", ANSWERS):
        (own_cache / name).write_bytes((main_folder / name).read_bytes())
    (pytester.path / "thresholds.yaml").write_bytes((sliced / "thresholds.yaml").read_bytes())
    return [
        f"--emogate-ckpt={TINY / 'checkpoint_best.pth'}", f"--emogate-llama={TINY / 'llama'}",
        f"--emogate-vit={TINY / 'eva_vit_g.pth'}", f"--emogate-data={sliced / 'manifest.yaml'}",
        "--emogate-device=cpu", f"--emogate-cache={pytester.path / 'cache'}", f"--emogate-probe={PROBE}",
        "--emogate-report=report.json", "--emogate-markdown=summary.md", "--emogate-no-history", "--emogate-only",
        f"--emogate-thresholds={pytester.path / 'thresholds.yaml'}", "-p", "no:cacheprovider", "-p", "no:randomly",
    ]  # fmt: skip


@pytest.mark.slow
def test_a_differing_probe_answer_fails_test_consistency_naming_it(
    probed: tuple[Path, ProbeResult, list[Any]], main_answered: list[str], pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from pytest_emogate.inference import run

    answers = probed[2]
    changed = answers[stratified_pick([answer.label for answer in answers], PROBE)[3]].name
    monkeypatch.setattr(run, "run_inference", differing_stub(changed))
    failed = pytester.runpytest(*main_answered)
    failed.assert_outcomes(passed=1, failed=1)
    failed.stdout.fnmatch_lines([
        f"1 of 12 answers differ when answered again at batch size 1 (generation, LoRA unmerged) > max 0 "
        f"(--emogate-probe's default; *): {changed}",
        "answers: 60 from the cache, 0 inferred; cache *",
        f"probe: 11/12 answers equal at batch size 1; differ: {changed} (12 inferred in * s)",
    ])  # fmt: skip
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    assert report["probe"] == {
        "n": PROBE, "disagree": 1,
        "settings": {"batch_size": 1, "mode": "generate", "merge_lora": False, "dtype": "auto",
                     "max_new_tokens": 32, "device": "cpu"},
        "samples": [{"name": changed, "answer": MAIN[changed], "probe_answer": "surprise</s>"}],
    }  # fmt: skip
    assert [check["id"] for check in report["checks"]] == ["overall[accuracy]", "consistency"]
    markdown = (pytester.path / "summary.md").read_text(encoding="utf-8")
    assert f"probe: 11/12 answers equal at batch size 1; differ: {changed}" in markdown
    monkeypatch.setattr(run, "run_inference", refusing_inference)
    (pytester.path / "thresholds.yaml").write_text(
        LABELS + "overall: {accuracy: 0.5}\nconsistency: {max_disagree: 1}\n", encoding="utf-8"
    )
    allowed = pytester.runpytest(*main_answered)
    allowed.assert_outcomes(passed=2)
    allowed.stdout.fnmatch_lines([f"probe: 11/12 answers equal at batch size 1; differ: {changed}"])


def non_finite(settings: InferenceSettings, data: Any, *, indices: list[int], **_: Any) -> Any:
    from pytest_emogate.inference.run import NonFiniteLogitsError

    raise NonFiniteLogitsError([data.samples[i].name for i in indices[:2]])


@pytest.mark.slow
def test_a_probe_that_makes_no_answers_fails_test_consistency_saying_why(
    main_answered: list[str], pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_emogate.inference import run

    monkeypatch.setattr(run, "run_inference", non_finite)
    failed = pytester.runpytest(*main_answered)
    failed.assert_outcomes(passed=1, failed=1)
    said = "the consistency probe made no answers to compare: non-finite logits (NaN or inf) for 2 samples: *"
    failed.stdout.fnmatch_lines([said, said, "emogate verdict: FAILED (1 of 2 checks): consistency"])
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    assert report["probe"] is None and report["verdict"] == "failed"
    assert report["checks"][-1]["id"] == "consistency" and report["checks"][-1]["status"] == "failed"
    markdown = (pytester.path / "summary.md").read_text(encoding="utf-8")
    assert "- `consistency`: the consistency probe made no answers to compare: non-finite logits" in markdown


@pytest.mark.slow
def test_any_error_in_the_probe_fails_test_consistency_once_with_its_cause(
    main_answered: list[str], pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_emogate.inference import run

    calls: list[int] = []

    def undecodable(settings: InferenceSettings, data: Any, *, indices: list[int], **_: Any) -> Any:
        calls.append(len(indices))
        raise ValueError("piece id is out of range.")

    monkeypatch.setattr(run, "run_inference", undecodable)
    failed = pytester.runpytest(*main_answered)
    failed.assert_outcomes(passed=1, failed=1)
    failed.stdout.fnmatch_lines([
        "the consistency probe made no answers to compare: inference failed: ValueError: piece id is out of range.",
        "emogate verdict: FAILED (1 of 2 checks): consistency",
    ])  # fmt: skip
    assert calls == [PROBE] and "Traceback" not in failed.stdout.str()


@pytest.mark.slow
def test_the_test_consistency_id_and_no_probe_when_it_is_deselected(
    probed: tuple[Path, ProbeResult, list[Any]], sliced: Path, pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from pytest_emogate.inference import run

    cache, _, _ = probed
    monkeypatch.setattr(run, "run_inference", refusing_inference)
    args = [
        f"--emogate-ckpt={TINY / 'checkpoint_best.pth'}", f"--emogate-llama={TINY / 'llama'}",
        f"--emogate-vit={TINY / 'eva_vit_g.pth'}", f"--emogate-data={sliced / 'manifest.yaml'}",
        "--emogate-device=cpu", f"--emogate-cache={cache}", f"--emogate-thresholds={sliced / 'thresholds.yaml'}",
        "--emogate-no-history", "--emogate-only", "-p", "no:cacheprovider", "--collect-only", "-q",
    ]  # fmt: skip
    collected = pytester.runpytest(*args, f"--emogate-probe={PROBE}")
    collected.stdout.fnmatch_lines(["*emogate::test_overall[[]accuracy]", "*emogate::test_consistency"])
    deselected = pytester.runpytest(*args[:-2], "--emogate-probe=13", "-k", "not consistency")
    deselected.assert_outcomes(passed=1, deselected=1)
    assert "probe:" not in deselected.stdout.str()
    # every probe answer cached: the result is at hand, but a check that did not run reports nothing
    cached = pytester.runpytest(
        *args[:-2], f"--emogate-probe={PROBE}", "-k", "not consistency", "--emogate-report=r.json"
    )
    cached.assert_outcomes(passed=1, deselected=1)
    assert "probe:" not in cached.stdout.str()
    assert json.loads((pytester.path / "r.json").read_text(encoding="utf-8"))["probe"] is None


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
