"""Answering is one event per session: whatever ends it (out of memory, a full disk under the cache, a short
write, any exception) is met once, named with its remedy, and every gate test reports that one cause; with
`--emogate-batch-size auto` out of memory halves the batch and the answers are those of a fixed batch size."""

from __future__ import annotations

import errno
import gc
import json
import os
import weakref
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from pytest_emogate.inference.cache import AnswerCache, CacheWriteError
from pytest_emogate.predictions import Prediction
from tests.conftest import TINY, TINY_SETTINGS, sliced_manifest

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
NO_INFER = pytest.mark.skipif(find_spec("transformers") is None, reason="needs the infer extra")
"""For the pytester runs: importing torch inside one would import it twice (pytester restores sys.modules)."""
ANSWERS = [Prediction(f"s{i}", "happy", "happy", {"n_new_tokens": 2, "hit_cap": False}) for i in range(6)]


# --- the cache: a failed write is cut back off and names the folder; a short write is continued ---


def test_a_full_disk_under_the_cache_names_its_folder_and_leaves_no_half_written_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = AnswerCache.open(tmp_path, {"k": 1})
    cache.append(ANSWERS[:2])
    before = cache.answers_path.read_bytes()
    real_write = os.write

    def full(fd: int, data: Any) -> int:  # the disk fills half-way through the batch
        if len(data) > 40:
            return real_write(fd, bytes(data[:40]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(CacheWriteError) as failed:
        cache.append(ANSWERS[2:])
    monkeypatch.undo()
    said = str(failed.value)
    assert said.startswith(f"answer cache {cache.folder}: the answers of 4 samples could not be written")
    assert "the disk is full" in said and "--emogate-cache" in said
    assert cache.answers_path.read_bytes() == before  # cut back: nothing of the failed batch is left
    assert set(cache.load()) == {"s0", "s1"}
    cache.append(ANSWERS[2:])  # once there is room, the next append lands whole
    assert set(cache.load()) == {answer.name for answer in ANSWERS}


def test_a_short_write_is_continued_until_every_answer_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = AnswerCache.open(tmp_path, {"k": 1})
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))  # 7 bytes at a time
    cache.append(ANSWERS)
    monkeypatch.undo()
    assert cache.load() == {answer.name: answer for answer in ANSWERS}


def test_a_write_that_writes_nothing_is_an_error_and_is_cut_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = AnswerCache.open(tmp_path, {"k": 1})
    real_write = os.write
    calls: list[int] = []

    def stalls(fd: int, data: Any) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data[:10])) if len(calls) == 1 else 0

    monkeypatch.setattr(os, "write", stalls)
    with pytest.raises(CacheWriteError, match="a write wrote nothing"):
        cache.append(ANSWERS)
    monkeypatch.undo()
    assert cache.answers_path.read_bytes() == b"" and cache.load() == {}


# --- the source: any failure while answering is met once, with its cause ---


@pytest.fixture
def source_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A CheckpointInference over 12 samples of the tiny data whose run_inference answers the first batch of 4,
    then raises the given error; `.calls` counts the runs."""
    pytest.importorskip("torch")
    from pytest_emogate.inference import run
    from pytest_emogate.inference.sources import CheckpointInference

    calls: list[int] = []

    def make(error: BaseException) -> Any:
        def failing(settings: Any, data: Any, *, indices: list[int], on_batch: Any, **_: Any) -> Any:
            calls.append(len(indices))
            on_batch([Prediction(data.samples[i].name, data.samples[i].label, "happy") for i in indices[:4]])
            raise error

        monkeypatch.setattr(run, "run_inference", failing)
        source = CheckpointInference.prepare(TINY_SETTINGS, sliced_manifest(tmp_path, 12), LABELS, tmp_path / "c")
        source.calls = calls
        return source

    return make


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (ValueError("piece id is out of range."), "inference failed: ValueError: piece id is out of range."),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "inference failed: UnicodeDecodeError: "),
        (FutureWarning("`x` is deprecated"), "FutureWarning: `x` is deprecated (a warning turned into an error by -W"),
        (OSError(errno.ENOSPC, "No space left on device", "/tmp/t"), "the disk is full writing /tmp/t (No space left"),
    ],
    ids=["decode", "unicode", "warning", "enospc"],
)
def test_any_error_while_answering_is_met_once_with_its_cause(source_of: Any, error: Exception, said: str) -> None:
    from pytest_emogate.inference.sources import AnswersUnavailable

    source = source_of(error)
    for _ in range(3):  # every gate test asks; the inference runs once
        with pytest.raises(AnswersUnavailable) as failed:
            source.predictions()
        assert str(failed.value).startswith(said) and failed.value.__context__ is None
    assert source.calls == [12]
    if isinstance(error, OSError):
        assert f"the answer cache is {source.cache.folder}" in str(failed.value)
    assert not source.loaded and len(source.cache.load()) == 4  # the finished batch stays cached for a rerun


def test_a_full_disk_under_the_cache_while_answering_names_the_cache_folder(
    tmp_path: Path, source_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_emogate.inference.sources import AnswersUnavailable

    source = source_of(AssertionError("not reached"))

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(AnswersUnavailable) as failed:
        source.predictions()
    monkeypatch.undo()
    assert str(failed.value).startswith(f"answer cache {source.cache.folder}: the answers of 4 samples could not be")
    assert "the disk is full" in str(failed.value)
    assert source.cache.load() == {}  # nothing half-written is read back as an answer


def test_ctrl_c_while_answering_is_not_taken_for_a_failure(source_of: Any) -> None:
    source = source_of(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        source.predictions()
    assert source._failure is None


# --- the tiny model with an out-of-memory error injected above a batch size ---

OOM_CONFTEST = """
import os

import torch

import pytest_emogate.model
from pytest_emogate.model.emotion_llama import EmotionLlama

LIMIT = int(os.environ["EMOGATE_TEST_OOM_ABOVE"])
logits, load = EmotionLlama.logits, pytest_emogate.model.load_emotion_llama


def too_big(self, embeds, *args, **kwargs):
    if embeds.shape[0] > LIMIT:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
    return logits(self, embeds, *args, **kwargs)


def counted(*args, **kwargs):
    with open("loads.txt", "a") as log:
        log.write("load\\n")
    return load(*args, **kwargs)


EmotionLlama.logits = too_big
pytest_emogate.model.load_emotion_llama = counted
"""
"""A conftest for the runs below: the model's forward runs out of memory above EMOGATE_TEST_OOM_ABOVE samples,
and every model load is written to loads.txt."""


def tiny_args(pytester: pytest.Pytester, *extra: str) -> list[str]:
    manifest = sliced_manifest(pytester.path, 40)
    return [
        f"--emogate-ckpt={TINY / 'checkpoint_best.pth'}", f"--emogate-llama={TINY / 'llama'}",
        f"--emogate-vit={TINY / 'eva_vit_g.pth'}", f"--emogate-data={manifest}", "--emogate-device=cpu",
        f"--emogate-thresholds={TINY / 'thresholds.yaml'}", "--emogate-no-history", "--emogate-no-cache",
        "-p", "no:cacheprovider", *extra,
    ]  # fmt: skip


@pytest.mark.slow
@NO_INFER
def test_out_of_memory_loads_the_model_once_and_every_gate_test_says_why_in_one_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMOGATE_TEST_OOM_ABOVE", "4")
    pytester.makeconftest(OOM_CONFTEST)
    result = pytester.runpytest_subprocess(*tiny_args(pytester, "--emogate-report=r.json"), timeout=300)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert (pytester.path / "loads.txt").read_text() == "load\n"  # not once per gate test
    said = (
        "no answers could be made: out of memory at batch size 16 on cpu (CUDA out of memory. Tried to allocate "
        "20.00 GiB (injected)): lower --emogate-batch-size (e.g. 8), or pass --emogate-batch-size auto to halve it "
        "until it fits"
    )
    result.assert_outcomes(failed=13)
    output = result.stdout.str()
    assert output.splitlines().count(said) == 13  # each gate test's failure is that one line
    assert "Traceback" not in output + result.stderr.str() and "OutOfMemoryError" not in output
    result.stdout.fnmatch_lines(
        ["emogate verdict: FAILED (no answers could be made: out of memory at batch size 16 on cpu*"]
    )
    report = json.loads((pytester.path / "r.json").read_text(encoding="utf-8"))
    assert (report["passed"], report["error"]) == (False, said.split(": ", 1)[1])


@pytest.mark.slow
@NO_INFER
def test_batch_size_auto_halves_on_out_of_memory_and_answers_as_a_fixed_batch_size(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMOGATE_TEST_OOM_ABOVE", "5")
    pytester.makeconftest(OOM_CONFTEST)
    auto = pytester.runpytest_subprocess(
        *tiny_args(pytester, "--emogate-batch-size=auto", "--emogate-save-predictions=auto.jsonl",
                   "--emogate-report=auto.json", "--emogate-probe=6"), timeout=300,
    )  # fmt: skip
    auto.stdout.fnmatch_lines([
        "inference: 40 samples on cpu in * s (load * s, batch size 4 (auto), mode generate, max 32 new tokens)",
        "batch size auto: answered at 4 (out of memory at 16, 8: memory freed, batch halved and answered again)",
        "probe: 6/6 answers equal at batch size 1*",
    ])  # fmt: skip
    assert (pytester.path / "loads.txt").read_text() == "load\nload\n"  # the main run and the probe, once each
    inference = json.loads((pytester.path / "auto.json").read_text(encoding="utf-8"))["provenance"]["inference"]
    assert (inference["batch_size"], inference["batch_size_auto"]) == (4, True)
    fixed = pytester.runpytest_subprocess(
        *tiny_args(pytester, "--emogate-batch-size=4", "--emogate-save-predictions=fixed.jsonl"), timeout=300
    )
    assert "batch size auto" not in fixed.stdout.str()
    answers = [(pytester.path / name).read_text(encoding="utf-8") for name in ("auto.jsonl", "fixed.jsonl")]
    assert answers[0] == answers[1] and answers[0].count("\n") == 40


@pytest.mark.slow
@NO_INFER
def test_batch_size_auto_out_of_memory_at_batch_size_1_fails_as_any_out_of_memory(tmp_path: Path) -> None:
    import dataclasses

    import torch

    import pytest_emogate.model
    from pytest_emogate.inference.sources import AnswersUnavailable, CheckpointInference
    from pytest_emogate.model.emotion_llama import EmotionLlama

    models: list[weakref.ref[Any]] = []
    load = pytest_emogate.model.load_emotion_llama

    def kept(*args: Any, **kwargs: Any) -> Any:
        model, tokenizer = load(*args, **kwargs)
        models.append(weakref.ref(model))
        return model, tokenizer

    def never_fits(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    settings = dataclasses.replace(TINY_SETTINGS, batch_size="auto", device="cpu")
    source = CheckpointInference.prepare(settings, sliced_manifest(tmp_path, 6), LABELS, None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pytest_emogate.model, "load_emotion_llama", kept)
        patch.setattr(EmotionLlama, "logits", never_fits)
        with pytest.raises(AnswersUnavailable) as failed:
            source.predictions()
    assert str(failed.value).startswith(
        "out of memory at batch size 1 on cpu (CUDA out of memory. Tried to allocate 1.00 GiB): "
        "--emogate-batch-size auto halved it from the largest size down to 1; the model does not fit"
    )
    del failed
    gc.collect()
    assert len(models) == 1 and models[0]() is None  # the model is let go: no frame of the failure holds it


@pytest.mark.slow
@NO_INFER
@pytest.mark.parametrize("mode", ["generate", "score"])
def test_auto_answers_as_a_fixed_batch_size_in_either_mode(tmp_path: Path, mode: str) -> None:
    import dataclasses

    import torch

    from pytest_emogate.data import load_test3
    from pytest_emogate.inference.run import run_inference
    from pytest_emogate.model.emotion_llama import EmotionLlama

    logits = EmotionLlama.logits

    def too_big(self: Any, embeds: Any, *args: Any, **kwargs: Any) -> Any:
        if embeds.shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return logits(self, embeds, *args, **kwargs)

    data = load_test3(sliced_manifest(tmp_path, 30))
    settings = dataclasses.replace(TINY_SETTINGS, device="cpu", mode=mode)
    batches: list[list[str]] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EmotionLlama, "logits", too_big)
        auto = run_inference(dataclasses.replace(settings, batch_size="auto"), data, progress=False,
                             on_batch=lambda done: batches.append([answer.name for answer in done]))  # fmt: skip
        fixed = run_inference(dataclasses.replace(settings, batch_size=2), data, progress=False)
    assert auto.predictions == fixed.predictions
    assert (auto.batch_size, fixed.batch_size) == (2, 2)
    assert auto.notes[0] == (
        "batch size auto: answered at 2 (out of memory at 16, 8, 4: memory freed, batch halved and answered again)"
    )
    assert sorted(name for batch in batches for name in batch) == sorted(sample.name for sample in data.samples)
    if mode == "score":
        assert auto.notes[1:] == fixed.notes  # the fallbacks are counted once
