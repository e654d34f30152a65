"""Defects a hostile review found after the first round of fixes: each is a test that failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_emogate.files import FileProblem
from pytest_emogate.predictions import Prediction, read_predictions, write_predictions_csv, write_predictions_jsonl

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")


def test_a_csv_that_would_not_read_back_is_refused_and_the_old_file_kept(tmp_path: Path) -> None:
    path = tmp_path / "baseline.csv"
    path.write_text("the accepted baseline\n", encoding="utf-8")
    rows = [Prediction("a", "sad", "The answer format is:\nname,sad,happy\nSo: angry"), Prediction("b", "sad", "sad")]
    with pytest.raises(FileProblem, match=r"cannot be written as CSV that reads back .*; write \.jsonl"):
        write_predictions_csv(path, rows)
    assert path.read_text(encoding="utf-8") == "the accepted baseline\n"
    write_predictions_jsonl(tmp_path / "baseline.jsonl", rows)  # JSON lines hold any answer
    assert read_predictions(tmp_path / "baseline.jsonl", LABELS) == rows
    fine = [Prediction("a", "sad", 'two\nlines, "quoted"\r\nsad'), Prediction("b", "happy", "")]
    write_predictions_csv(path, fine)
    assert read_predictions(path, LABELS) == fine


@pytest.mark.parametrize("escape", ["\\udc80", "\\ud83d", "\\udfff"])
def test_a_lone_surrogate_escape_is_refused_when_read(tmp_path: Path, escape: str) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_text(
        '{"name": "a", "label": "sad", "output": "sad"}\n'
        f'{{"name": "b", "label": "worried", "output": "{escape} doubt worried"}}\n'
        f'{{"name": "c", "label": "sad", "output": "sad", "note": ["{escape}"]}}\n',
        encoding="utf-8",
    )
    with pytest.raises(pytest.UsageError) as error:
        read_predictions(path, LABELS)
    assert f"line 2: a {escape} escape with no pair, which is not text" in str(error.value)
    assert f"line 3: a {escape} escape with no pair" in str(error.value)
    pair = tmp_path / "pair.jsonl"  # an escaped pair is one character, and fine
    pair.write_text(json.dumps({"name": "a", "label": "sad", "output": "\U0001f600 sad"}) + "\n", encoding="utf-8")
    assert read_predictions(pair, LABELS)[0].output == "\U0001f600 sad"


@pytest.mark.parametrize(("suffix", "limit"), [(".jpg", "128.0 MiB"), (".npy", "64.0 MiB"), (".mp4", "4.0 GiB")])
def test_a_huge_data_file_is_refused_without_being_hashed(tmp_path: Path, suffix: str, limit: str) -> None:
    import shutil
    import time

    from pytest_emogate.data import load_test3
    from pytest_emogate.data.preflight import preflight_problems
    from pytest_emogate.model.checkpoint import feature_dims
    from tests.conftest import TINY

    root = tmp_path / "data"
    shutil.copytree(TINY / "data", root)
    sample = load_test3(root).samples[0]
    assert sample.frame is not None and sample.features[0] is not None
    target = sample.features[0] if suffix == ".npy" else sample.frame.with_suffix(suffix)
    if suffix == ".mp4":
        sample.frame.unlink()  # the tiny set's frames are jpgs: this sample's frame becomes a video
    with open(target, "wb") as handle:
        handle.truncate(30 << 30)  # 30 GiB, sparse: no disk used, but reading it takes a minute
    data = load_test3(root)
    started = time.perf_counter()
    data.fingerprint()
    assert time.perf_counter() - started < 5  # before the fix the 30 GiB were read and hashed first
    problems = preflight_problems(data, LABELS, feature_dims(TINY / "checkpoint_best.pth"))
    assert any(f"{target.name}: is 30.0 GiB; the limit is {limit}" in problem for problem in problems), problems


def test_a_place_root_cannot_write_is_found_at_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_emogate.files import output_problem

    # os.access says yes to root everywhere; a file is tried instead (/proc takes no new files, even from root)
    assert output_problem(Path("/proc/report.json")) == "its folder /proc is not writable"
    assert output_problem(Path("/proc/a/b/history.sqlite")) == (
        "its folder /proc is not writable, so the folders below cannot be made"
    )
    assert not list(Path("/tmp").glob(".emogate-probe.*"))  # the trial file is gone


def test_the_start_check_refuses_an_unwritable_report_before_any_test_runs(pytester: pytest.Pytester) -> None:
    from tests.conftest import SEED, THRESHOLDS

    pytester.makefile(".yaml", thresholds=THRESHOLDS.read_text(encoding="utf-8"))
    (pytester.path / "preds.csv").write_bytes(SEED.read_bytes())
    result = pytester.runpytest("--emogate-predictions", "preds.csv", "--emogate-report=/proc/r.json",
                                "--emogate-no-history")  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["  - --emogate-report /proc/r.json: its folder /proc is not writable"])
    assert "passed" not in result.stdout.str()


def test_yaml_1_2_floats_and_the_file_named_in_parse_errors(tmp_path: Path) -> None:
    from pytest_emogate.evaluate.thresholds import load_thresholds

    path = tmp_path / "gate.yaml"
    path.write_text("labels: [sad, happy]\noverall:\n  accuracy: 5e-1\n  uar: .5\n", encoding="utf-8")
    assert dict(load_thresholds(path).overall) == {"accuracy": 0.5, "uar": 0.5}
    path.write_text("labels: [sad, happy\n", encoding="utf-8")
    with pytest.raises(pytest.UsageError) as error:
        load_thresholds(path)
    assert f'in "{path}", line' in str(error.value) and "<unicode string>" not in str(error.value)


def test_a_large_document_without_aliases_is_not_called_an_alias_bomb(tmp_path: Path) -> None:
    from pytest_emogate.safe_yaml import load_yaml

    text = "".join(f"k{i}: {i}\n" for i in range(60_000))
    with pytest.raises(pytest.UsageError) as error:
        load_yaml(text, "thresholds file", tmp_path / "t.yaml")
    assert "holds more than 100,000 values (each alias counted as the values it repeats)" in str(error.value)
    assert "bomb" not in str(error.value)


@pytest.mark.slow
def test_a_prompt_longer_than_the_context_is_refused_before_any_answer(tmp_path: Path) -> None:
    import csv
    import dataclasses
    import shutil

    import torch

    from pytest_emogate.data import load_test3
    from pytest_emogate.inference.run import run_inference
    from pytest_emogate.model import ModelFiles, load_emotion_llama
    from tests.conftest import TINY, TINY_SETTINGS

    root = tmp_path / "data"
    shutil.copytree(TINY / "data", root)
    transcripts = root / "transcription_en_all.csv"
    with transcripts.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    column = rows[0].index("sentence")
    rows[2][column] = "word " * 5000  # about 5,000 tokens: past the tiny model's 4,096 positions
    with transcripts.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    data = load_test3(root)
    with pytest.raises(pytest.UsageError) as error:
        run_inference(dataclasses.replace(TINY_SETTINGS, device="cpu"), data, progress=False)
    message = str(error.value)
    assert message.startswith("Test3 transcripts: 1 problem\n")
    assert f"sample {rows[2][rows[0].index('name')]}: its prompt is " in message
    assert "does not fit the model's context of 4,096 (max_position_embeddings in " in message
    # the block length the check counts is the one the model makes
    model, _ = load_emotion_llama(
        ModelFiles(TINY_SETTINGS.ckpt, TINY_SETTINGS.llama, TINY_SETTINGS.vit), torch.device("cpu")
    )
    size = TINY_SETTINGS.image_size
    block = model.multimodal_block(torch.zeros(1, 3, size, size), [torch.zeros(1, d) for d in _dims()])
    patch = model.vit.patch_embed.proj.kernel_size[0]
    assert block.shape[1] == (size // patch) ** 2 // model.group + 4


def _dims() -> tuple[int, int, int]:
    from pytest_emogate.model.checkpoint import feature_dims
    from tests.conftest import TINY

    return feature_dims(TINY / "checkpoint_best.pth")


def test_a_cached_answer_with_a_lone_surrogate_is_a_cache_defect(tmp_path: Path) -> None:
    from pytest_emogate.inference.cache import AnswerCache

    cache = AnswerCache.open(tmp_path, {"key": 1})
    cache.answers_path.write_text('{"name": "a", "label": "sad", "output": "\\udc80 sad"}\n', encoding="utf-8")
    with pytest.raises(pytest.UsageError, match=r"line 1: a \\u escape of a lone surrogate"):
        cache.load()
