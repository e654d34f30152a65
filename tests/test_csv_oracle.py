"""The CSV reader splits a line without '"' at its commas at once and reads the others field by field: for any
text it gives the same records, rows, predictions and problems, in the same order, as the reader that read every
line field by field (tests/csv_oracle.py, kept word for word)."""

from __future__ import annotations

import random
from pathlib import Path

import csv_oracle
import pytest

from pytest_emogate import predictions as reader
from pytest_emogate.predictions import Prediction, read_hashed_predictions

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
HEADERS = ("name,label,output\n", "name,label,output\r\n", "label,output,name,score\n", "name,label\n", "")
TOKENS = ("a", "b", "sad", "happy", "Sad ", "x", " ", ",", ",", '"', '""', "\n", "\n", "\r\n", "\r", "s1,sad,a\n")
"""Pieces of CSV text: every character the reader treats apart (comma, quote, CR, LF), labels, a whole row."""


def _texts(count: int) -> list[str]:
    draw = random.Random(12)
    texts = []
    for _ in range(count):
        body = "".join(draw.choice(TOKENS) for _ in range(draw.randint(0, 40)))
        texts.append(draw.choice(HEADERS) + body)
    return texts


def _records(module: object, text: str) -> tuple[list[tuple[int, list[str], list[tuple[int, int, str]]]], str]:
    """The records (line, fields, spans) read before the end or a broken field, and the broken field's message."""
    records: list[tuple[int, list[str], list[tuple[int, int, str]]]] = []
    try:
        for record in module._csv_records(text):  # type: ignore[attr-defined]
            line, fields, spans = (record.line, record.fields, record.spans) if module is csv_oracle else record
            records.append((line, list(fields), list(spans)))
    except reader._BrokenCsv as broken:
        return records, str(broken)
    return records, ""


def _predictions(text: str) -> tuple[list[Prediction], int, list[str]]:
    problems: list[str] = []
    found, rows = reader._csv_predictions(text, LABELS, problems)
    return found, rows, problems


def _oracle_predictions(text: str) -> tuple[list[Prediction], int, list[str]]:
    problems: list[str] = []
    rows = csv_oracle._csv_rows(text, LABELS, problems)
    return csv_oracle._validate_rows(rows, LABELS, problems), len(rows), problems


def test_the_reader_reads_every_text_as_the_field_by_field_reader_did() -> None:
    texts = _texts(4000)
    assert sum('"' in text for text in texts) > 1000 and sum('"' not in text for text in texts) > 500
    for text in texts:
        assert _records(reader, text) == _records(csv_oracle, text), repr(text)
        if text.strip():
            assert _predictions(text) == _oracle_predictions(text), repr(text)


@pytest.mark.parametrize(
    "text",
    [
        "name,label,output\ns1,sad,a\r",  # a CR at the end of the file, no LF
        "name,label,output\r\n\r\ns1,sad,a\r\n\r",  # a blank CRLF line, a lone CR as the last line
        "name,label,output\ns1,sad,a\r\r\n",  # two CRs before the LF: one is the line end
        "name,label,output\ns1,sad,a,\n",  # a trailing comma: a fourth, empty field
        'name,label,output\ns1,sad,a"b\n',  # a quote inside a plain field
        'name,label,output\ns1,sad,"a\ns2,sad,b"\n',  # a quoted field that swallows a row
        "name,label,output\n,sad,a\ns1,Sad,b\ns1,sad,c\n",  # empty name, bad label (its name noted), duplicate
    ],
)
def test_edge_cases_read_as_the_field_by_field_reader_did(text: str) -> None:
    assert _records(reader, text) == _records(csv_oracle, text)
    assert _predictions(text) == _oracle_predictions(text)


def test_plain_and_quoted_rows_mixed_read_with_their_lines_and_extra_fields(tmp_path: Path) -> None:
    lines = ["name,label,output,score"]
    for index in range(3000):
        answer = f'"answer {index}, with a comma"' if index % 3 == 0 else f"answer {index}"
        lines.append(f"s{index},{LABELS[index % 6]},{answer},{index}")
    path = tmp_path / "answers.csv"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    found, _ = read_hashed_predictions(path, LABELS)
    assert len(found) == 3000
    assert found[3] == Prediction("s3", "sad", "answer 3, with a comma", {"score": "3"})
    assert found[2999] == Prediction("s2999", "surprise", "answer 2999", {"score": "2999"})
    path.write_text("\n".join([*lines[:2001], "s0,sad,again,0", *lines[2001:]]), encoding="utf-8")
    with pytest.raises(pytest.UsageError, match="line 2002: duplicate name 's0' \\(first seen on line 2\\)"):
        read_hashed_predictions(path, LABELS)
