"""The answer cache against hostile files: answers holding line separators come back intact, and every defect
of the cache (a non-string answer, a repeated sample, a tampered gold label, a folder that is a file or read-only,
a FIFO or a directory where an answers file belongs) is a usage error naming the file and line before any
inference starts. A complete cache still has its labels checked against the thresholds."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from pytest_emogate.inference import cache as cache_module
from pytest_emogate.inference.cache import AnswerCache
from pytest_emogate.predictions import Prediction
from tests.conftest import TINY, TINY_SETTINGS

KEY = {"checkpoint_sha256": "ab" * 32, "data_fingerprint": "cd" * 32, "max_new_tokens": 32, "version": "0.1.0"}
LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
HINT = "fix or delete the folder, or run with --emogate-no-cache"
ODD_OUTPUTS = [
    "sad\u2028really",  # LINE SEPARATOR
    "happy\u2029then",  # PARAGRAPH SEPARATOR
    "angry\x85next",  # NEXT LINE
    "worried\x0b\x0c\x1c\x1d\x1e",  # the other characters str.splitlines breaks at
    "it is\nneutral\r\n",
    'she said "surprise" \\ twice',
    "",
    "long " * 20_000,
]


def cache_error(cache: AnswerCache, *problems: str) -> str:
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return "\n".join([f"answer cache {cache.folder}: {count}", *(f"  - {p}" for p in problems), f"  {HINT}"])


def test_answers_with_line_separators_quotes_and_length_round_trip(tmp_path: Path) -> None:
    cache = AnswerCache.open(tmp_path, KEY)
    written = [Prediction(f"s{i}", "sad", output, {"n_new_tokens": i, "hit_cap": False}) for i, output in
               enumerate(ODD_OUTPUTS)]  # fmt: skip
    cache.append(written[:3])
    cache.append(written[3:])
    assert AnswerCache.open(tmp_path, KEY).load() == {p.name: p for p in written}
    assert cache.answers_path.read_bytes().count(b"\n") == len(written)


def test_line_numbers_are_the_editors_after_answers_with_line_separators(tmp_path: Path) -> None:
    cache = AnswerCache.open(tmp_path, KEY)
    cache.append([Prediction("a", "sad", "sad\u2028sad"), Prediction("b", "sad", "x\x85y\u2029z")])
    with cache.answers_path.open("a", encoding="utf-8") as handle:
        handle.write("hello\n")
    with pytest.raises(pytest.UsageError) as error:
        cache.load()
    assert str(error.value) == cache_error(
        cache, "answers.jsonl line 3: not an answer written by pytest-emogate: 'hello'"
    )


def write_lines(cache: AnswerCache, *rows: object, name: str = "answers.jsonl") -> None:
    text = "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)
    (cache.folder / name).write_text(text, encoding="utf-8")


def test_a_non_string_output_and_other_malformed_rows_are_named_by_line(tmp_path: Path) -> None:
    cache = AnswerCache.open(tmp_path, KEY)
    write_lines(
        cache,
        {"name": "a", "label": "sad", "output": "sad"},
        {"name": "b", "label": "sad", "output": 5},
        {"name": "c", "label": "sad", "output": None, "hit_cap": False},
        {"name": 7, "label": "sad", "output": "sad"},
        {"name": "e", "label": ["sad"], "output": "sad"},
        {"name": "f", "label": "sad", "output": "sad", "hit_cap": "no"},
        {"name": "g", "label": "sad", "output": "sad", "n_new_tokens": -1},
        ["name", "h"],
    )
    with pytest.raises(pytest.UsageError) as error:
        cache.load()
    assert str(error.value) == cache_error(
        cache,
        'answers.jsonl line 2: expected "output" to be a string, found 5',
        'answers.jsonl line 3: expected "output" to be a string, found None',
        'answers.jsonl line 4: expected "name" to be a non-empty string, found 7',
        "answers.jsonl line 5: expected \"label\" to be a string, found ['sad']",
        "answers.jsonl line 6: expected \"hit_cap\" to be true or false, found 'no'",
        'answers.jsonl line 7: expected "n_new_tokens" to be a whole number of at least 0, found -1',
        'answers.jsonl line 8: not an answer written by pytest-emogate: \'["name", "h"]\'',
    )


def test_a_sample_answered_twice_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    cache = AnswerCache.open(tmp_path, KEY)
    write_lines(cache, {"name": "a", "label": "sad", "output": "sad"}, {"name": "b", "label": "sad", "output": "x"},
                {"name": "a", "label": "sad", "output": "happy"})  # fmt: skip
    write_lines(cache, {"name": "b", "label": "sad", "output": "x"}, name="answers-rank1.jsonl")
    with pytest.raises(pytest.UsageError) as error:
        cache.load()
    assert str(error.value) == cache_error(
        cache,
        "answers.jsonl line 2: sample 'b' answered again (first in answers-rank1.jsonl line 1)",
        "answers.jsonl line 3: sample 'a' answered again (first in answers.jsonl line 1)",
    )


def test_an_answers_file_that_is_a_directory_or_a_fifo_is_named_without_blocking(tmp_path: Path) -> None:
    cache = AnswerCache.open(tmp_path, KEY)
    (cache.folder / "answers.jsonl").mkdir()
    os.mkfifo(cache.folder / "answers-rank1.jsonl")
    with pytest.raises(pytest.UsageError) as error:
        cache.load()
    assert str(error.value) == cache_error(
        cache,
        "answers-rank1.jsonl: is a FIFO (named pipe); expected a regular file",
        "answers.jsonl: is a directory; expected a regular file",
    )


def test_a_cache_file_over_the_limit_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = AnswerCache.open(tmp_path, KEY)
    cache.append([Prediction("a", "sad", "x" * 200)])
    monkeypatch.setattr(cache_module, "ANSWERS_LIMIT", 100)
    with pytest.raises(pytest.UsageError) as error:
        cache.load()
    assert "answers.jsonl: is 2" in str(error.value) and "the limit is 100 bytes" in str(error.value)


def test_undecodable_bytes_are_named_by_line(tmp_path: Path) -> None:
    cache = AnswerCache.open(tmp_path, KEY)
    cache.append([Prediction("a", "sad", "sad")])
    with cache.answers_path.open("ab") as handle:
        handle.write(b'{"name": "b", "label": "sad", "output": "\xff"}\n')
    with pytest.raises(pytest.UsageError) as error:
        cache.load()
    assert "line 2: expected UTF-8 text, found undecodable bytes ff" in str(error.value)


def test_a_cache_root_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.write_text("not a folder", encoding="utf-8")
    with pytest.raises(pytest.UsageError) as error:
        AnswerCache.open(root, KEY)
    assert str(error.value) == f"answer cache {root}: is a regular file; expected a folder"
    with pytest.raises(pytest.UsageError) as error:
        AnswerCache.open(root / "below", KEY)
    assert str(error.value).startswith(f"answer cache {root / 'below'}: cannot be created: ")


def test_a_key_folder_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    folder = AnswerCache.open(tmp_path, KEY).folder
    shutil.rmtree(folder)
    folder.write_text("", encoding="utf-8")
    with pytest.raises(pytest.UsageError) as error:
        AnswerCache.open(tmp_path, KEY)
    assert str(error.value) == (
        f"answer cache {folder}: is a regular file; expected the folder of one cache key (delete it)"
    )


def test_a_read_only_cache_folder_is_refused_when_it_is_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = AnswerCache.open(tmp_path, KEY).folder
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != folder and real_access(path, mode))
    with pytest.raises(pytest.UsageError) as error:
        AnswerCache.open(tmp_path, KEY)
    assert str(error.value) == (
        f"answer cache {folder}: is not writable: answers are appended there and its lock file is made there "
        "(make it writable, move the cache with --emogate-cache, or run with --emogate-no-cache)"
    )


def test_a_read_only_answers_file_is_refused_when_the_cache_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = AnswerCache.open(tmp_path, KEY)
    cache.append([Prediction("a", "sad", "sad")])
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != cache.answers_path and real_access(path, mode))
    with pytest.raises(pytest.UsageError) as error:
        AnswerCache.open(tmp_path, KEY)
    assert str(error.value) == f"answer cache {cache.answers_path}: is not writable (make it writable or delete it)"


def test_gold_labels_come_from_the_data_and_a_tampered_one_is_named(tmp_path: Path) -> None:
    cache = AnswerCache.open(tmp_path, KEY)
    write_lines(cache, {"name": "a", "label": "sad", "output": "happy"}, {"name": "b", "label": "happy",
                "output": "happy"}, {"name": "z", "label": "sad", "output": "sad"})  # fmt: skip
    gold = {"a": "sad", "b": "sad", "c": "angry"}
    with pytest.raises(pytest.UsageError) as error:
        cache.load(gold)
    assert str(error.value) == cache_error(
        cache,
        "answers.jsonl line 2: sample 'b': gold label 'happy', but the data says 'sad' (the data supplies gold labels)",
        "answers.jsonl line 3: sample 'z' is not in the data",
    )
    write_lines(cache, {"name": "a", "label": "sad", "output": "happy"})
    assert cache.load(gold) == {"a": Prediction("a", "sad", "happy")}


def fill(source_cache: AnswerCache, data_labels: dict[str, str], *, tamper: str | None = None) -> None:
    source_cache.append(
        Prediction(name, "happy" if name == tamper else label, label) for name, label in data_labels.items()
    )


@pytest.fixture
def complete_cache(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A cache root whose folder holds an answer for every sample of the tiny data set."""
    pytest.importorskip("torch")
    from pytest_emogate.inference.sources import CheckpointInference

    source = CheckpointInference.prepare(TINY_SETTINGS, TINY / "data", LABELS, tmp_path / "cache")
    gold = {sample.name: sample.label for sample in source.data.samples}
    fill(source.cache, gold)
    return tmp_path / "cache", gold


def test_a_complete_cache_still_has_its_labels_checked_against_the_thresholds(
    complete_cache: tuple[Path, dict[str, str]],
) -> None:
    from pytest_emogate.inference.sources import CheckpointInference

    root, gold = complete_cache
    assert CheckpointInference.prepare(TINY_SETTINGS, TINY / "data", LABELS, root).loaded
    without_surprise = tuple(label for label in LABELS if label != "surprise")
    with pytest.raises(pytest.UsageError) as error:
        CheckpointInference.prepare(TINY_SETTINGS, TINY / "data", without_surprise, root)
    text = str(error.value)
    surprised = sum(label == "surprise" for label in gold.values())
    assert text.startswith(f"emogate inference (Test3 data {TINY / 'data'}): {surprised} problems\n")
    assert "expected a label in neutral, angry, happy, sad, worried, found 'surprise'" in text


def test_a_tampered_gold_label_in_a_complete_cache_stops_the_run_before_inference(
    complete_cache: tuple[Path, dict[str, str]],
) -> None:
    from pytest_emogate.inference.sources import CheckpointInference

    root, gold = complete_cache
    name = next(name for name, label in gold.items() if label != "happy")
    folder = next(root.iterdir())
    answers = folder / "answers.jsonl"
    lines = answers.read_text(encoding="utf-8").split("\n")
    line = next(i for i, text in enumerate(lines) if json.loads(text)["name"] == name)
    lines[line] = json.dumps({"name": name, "label": "happy", "output": "happy"})
    answers.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(pytest.UsageError) as error:
        CheckpointInference.prepare(TINY_SETTINGS, TINY / "data", LABELS, root)
    assert f"answers.jsonl line {line + 1}: sample {name!r}: gold label 'happy', but the data says " in str(error.value)


def non_string_output(folder: Path) -> str:
    (folder / "answers.jsonl").write_text('{"name": "samplenew_00000001", "label": "sad", "output": 1}\n')
    return 'answers.jsonl line 1: expected "output" to be a string, found 1'


def answers_directory(folder: Path) -> str:
    (folder / "answers.jsonl").mkdir()
    return f"answer cache {folder / 'answers.jsonl'}: is a directory; expected a regular file (delete it)"


def key_folder_file(folder: Path) -> str:
    shutil.rmtree(folder)
    folder.write_text("")
    return f"answer cache {folder}: is a regular file; expected the folder of one cache key (delete it)"


def root_file(folder: Path) -> str:
    shutil.rmtree(folder.parent)
    folder.parent.write_text("")
    return f"answer cache {folder.parent}: is a regular file; expected a folder"


def repeated_sample(folder: Path) -> str:
    line = '{"name": "samplenew_00000001", "label": "happy", "output": "happy"}\n'
    (folder / "answers-rank0.jsonl").write_text(line + line)
    return (
        "answers-rank0.jsonl line 2: sample 'samplenew_00000001' answered again (first in answers-rank0.jsonl line 1)"
    )


@pytest.mark.parametrize("defect", [non_string_output, answers_directory, key_folder_file, root_file, repeated_sample])
def test_every_cache_defect_stops_the_preparation_before_any_inference(tmp_path: Path, defect: Any) -> None:
    pytest.importorskip("torch")
    from pytest_emogate.inference.sources import CheckpointInference

    folder = CheckpointInference.prepare(TINY_SETTINGS, TINY / "data", LABELS, tmp_path / "cache").cache.folder
    expected = defect(folder)
    with pytest.raises(pytest.UsageError) as error:
        CheckpointInference.prepare(TINY_SETTINGS, TINY / "data", LABELS, tmp_path / "cache")
    assert expected in str(error.value)
