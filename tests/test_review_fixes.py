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
