"""Reading and writing prediction files: every problem names the file and line."""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_emogate.evaluate.metrics import score_samples
from pytest_emogate.predictions import Prediction, read_predictions, write_predictions_jsonl

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(pytest.UsageError) as error:
        read_predictions(path, LABELS)
    lines = str(error.value).splitlines()
    assert lines[0].startswith(f"predictions file {path}: ")
    return [line.removeprefix("  - ") for line in lines[1:]]


def test_csv_rows_keep_extra_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", 'name,label,output,score\na,sad,Sad.,0.9\nb,happy,"well, happy",0.5\n')
    assert read_predictions(path, LABELS) == [
        Prediction("a", "sad", "Sad.", {"score": "0.9"}),
        Prediction("b", "happy", "well, happy", {"score": "0.5"}),
    ]


def test_jsonl_rows_and_a_round_trip(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.jsonl",
        '{"name": "a", "label": "sad", "output": "sad", "n_new_tokens": 2}\n\n'
        '{"name": "b", "label": "worried", "output": ""}\n',
    )
    rows = read_predictions(path, LABELS)
    assert rows == [Prediction("a", "sad", "sad", {"n_new_tokens": 2}), Prediction("b", "worried", "")]
    copy = tmp_path / "out" / "copy.jsonl"
    write_predictions_jsonl(copy, rows)
    assert read_predictions(copy, LABELS) == rows


def test_a_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", "\ufeffname,label,output\na,sad,sad\n")
    assert read_predictions(path, LABELS) == [Prediction("a", "sad", "sad")]


@pytest.mark.parametrize(
    ("name", "content", "problems"),
    [
        ("p.csv", "", ["the file is empty: expected a header or JSON lines"]),
        ("p.csv", "name,label,output\n", ["no rows: expected one row per sample"]),
        (
            "p.csv",
            "name,gold,answer\na,sad,sad\n",
            ["line 1: header is missing column(s) label, output; found columns ['name', 'gold', 'answer']"],
        ),
        ("p.csv", "name,label,output\na,sad,sad\nb,sad\n", ["line 3: expected 3 fields as in the header, found 2"]),
        (
            "p.csv",
            "name,label,output\na,sad,sad\na,happy,happy\n",
            ["line 3: duplicate name 'a' (first seen on line 2)"],
        ),
        (
            "p.csv",
            "name,label,output\na,doubt,sad\n",
            [
                "line 2: gold label 'doubt' of 'a' is not one of "
                "['neutral', 'angry', 'happy', 'sad', 'worried', 'surprise']"
            ],
        ),
        ("p.csv", "name,label,output\n,sad,sad\n", ["line 2: field 'name' is empty"]),
        (
            "p.csv",
            b"name,label,output\na,sad,sad\nb,sad,caf\xe9\n",
            ["line 3: expected UTF-8 text, found undecodable bytes e9 at byte 37"],
        ),
        (
            "p.jsonl",
            '{"name": "a", "label": "sad", "output": "sad"}\n{"name": "b", \n',
            ["line 2: malformed JSON (Expecting property name enclosed in double quotes at column 15)"],
        ),
        ("p.jsonl", '["a", "sad", "sad"]\n', ["line 1: expected a JSON object, found list"]),
        ("p.jsonl", '{"name": "a", "label": "sad"}\n', ["line 1: missing field 'output'"]),
        (
            "p.jsonl",
            '{"name": 7, "label": "sad", "output": "sad"}\n',
            ["line 1: field 'name' must be a string, found 7"],
        ),
        ("p.jsonl", '{"name": "a", "label": "sad", "output": null}\n', ["line 1: missing field 'output'"]),
    ],
)
def test_each_problem_names_the_line(tmp_path: Path, name: str, content: str | bytes, problems: list[str]) -> None:
    assert problems_of(write(tmp_path, name, content)) == problems


def test_every_problem_is_listed_and_nothing_is_dropped(tmp_path: Path) -> None:
    lines = ["name,label,output"] + [f"s{i},fear,sad" for i in range(25)]
    problems = problems_of(write(tmp_path, "p.csv", "\n".join(lines) + "\n"))
    assert len(problems) == 21
    assert problems[-1] == "  ... and 5 more"


def test_a_missing_file(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope.csv") == ["the file does not exist"]


def test_written_files_get_the_usual_mode(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_predictions_jsonl(path, [Prediction("a", "sad", "sad")])
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_hash_is_of_the_bytes_that_were_read(tmp_path: Path) -> None:
    from pytest_emogate.inference.file_source import PredictionsFile

    path = tmp_path / "preds.csv"
    original = b"name,label,output\na,sad,sad\n"
    path.write_bytes(original)
    source = PredictionsFile.read(path, ("sad", "happy"))
    path.write_bytes(b"name,label,output\na,sad,happy\n")  # changed after the gate read it
    assert source.provenance()["predictions_sha256"] == hashlib.sha256(original).hexdigest()
    assert [row.output for row in source.predictions()] == ["sad"]


@pytest.mark.parametrize(
    ("name", "file"),
    [
        ("big.jsonl", lambda output: json.dumps({"name": "s0", "label": "sad", "output": output}) + "\n"),
        ("big.csv", lambda output: 'name,label,output\r\ns0,sad,"' + output.replace('"', '""') + '"\r\n'),
    ],
    ids=["jsonl", "csv"],
)
def test_a_big_answer_costs_a_few_times_its_size(tmp_path: Path, name: str, file: Callable[[str], str]) -> None:
    """A 20 MB answer (words, quotes, line breaks) is read holding the text, the field being read and the answer,
    never the file's bytes, a copy of its line or a regex's record of every doubled quote beside them; its answer
    word is read from its end, never from a list of every word."""
    output = ('I think the person looks "sad", or' + " not" * 120 + " ") * 40_000 + "and\n" * 1000 + "Sad.</s>"
    path, size = write(tmp_path, name, file(output)), len(file(output))
    score_samples(read_predictions(write(tmp_path, f"warm{name}", file("sad")), LABELS), LABELS)  # warm up
    tracemalloc.start()
    try:
        predictions = read_predictions(path, LABELS)
        reading, held = tracemalloc.get_traced_memory()[1], tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        scored = score_samples(predictions, LABELS)
        scoring = tracemalloc.get_traced_memory()[1] - held
    finally:
        tracemalloc.stop()
    assert scored[0].output == output and scored[0].predicted == "sad"
    assert reading < 3.5 * size
    assert scoring < size // 10
