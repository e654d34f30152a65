"""Reading and writing prediction files: CSV with a header, or JSONL; one row per sample.

Columns: `name` (sample id), `label` (gold label), `output` (the model's raw answer). Extra fields are kept.
Every problem is collected and reported at once, naming the file and line; nothing is guessed or dropped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_emogate.files import atomic_write_text, usage_error

REQUIRED_FIELDS = ("name", "label", "output")


@dataclass(frozen=True)
class Prediction:
    """One sample's gold label and the model's raw answer text."""

    name: str
    label: str
    output: str
    extra: Mapping[str, object] = field(default_factory=dict)


def read_predictions(path: Path, labels: tuple[str, ...], what: str = "predictions file") -> list[Prediction]:
    """Read a CSV or JSONL predictions file; raise one UsageError that lists every problem in it (the error
    starts `{what} {path}`)."""
    return read_hashed_predictions(path, labels, what)[0]


def read_hashed_predictions(
    path: Path, labels: tuple[str, ...], what: str = "predictions file"
) -> tuple[list[Prediction], str]:
    """The file's predictions and the sha256 of the very bytes they were read from (read once: the file may
    change while the session runs)."""
    where = f"{what} {path}"
    data = _read_bytes(path, where)
    text = _decode(data, where)
    problems: list[str] = []
    if not text.strip():
        raise usage_error(where, ["the file is empty: expected a header or JSON lines"])
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = _jsonl_rows(text, problems)
    else:
        rows = _csv_rows(text, problems)
    predictions = _validate_rows(rows, labels, problems)
    if not problems and not predictions:
        problems.append("no rows: expected one row per sample")
    if problems:
        raise usage_error(where, problems)
    return predictions, hashlib.sha256(data).hexdigest()


def write_predictions_jsonl(path: Path, predictions: Iterable[Prediction]) -> None:
    """Write predictions as JSONL that `read_predictions` accepts (atomically)."""
    lines = []
    for prediction in predictions:
        row: dict[str, object] = {"name": prediction.name, "label": prediction.label, "output": prediction.output}
        row.update({key: value for key, value in prediction.extra.items() if key not in row})
        lines.append(json.dumps(row, ensure_ascii=False))
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def _read_bytes(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise usage_error(where, ["the file does not exist"]) from None
    except OSError as error:
        raise usage_error(where, [f"cannot be read: {error.strerror}"]) from None


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        found = data[error.start : error.end].hex(" ")
        problem = f"line {line}: expected UTF-8 text, found undecodable bytes {found} at byte {error.start}"
        raise usage_error(where, [problem]) from None


def _csv_rows(text: str, problems: list[str]) -> list[tuple[int, dict[str, object]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if missing:
        problems.append(f"line 1: header is missing column(s) {', '.join(missing)}; found columns {header}")
        return []
    rows: list[tuple[int, dict[str, object]]] = []
    for record in reader:
        line = reader.line_num
        if not record:
            continue
        if len(record) != len(header):
            problems.append(f"line {line}: expected {len(header)} fields as in the header, found {len(record)}")
            continue
        rows.append((line, dict(zip(header, record, strict=True))))
    return rows


def _jsonl_rows(text: str, problems: list[str]) -> list[tuple[int, dict[str, object]]]:
    rows = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as error:
            problems.append(f"line {line}: malformed JSON ({error.msg} at column {error.colno})")
            continue
        if not isinstance(row, dict):
            problems.append(f"line {line}: expected a JSON object, found {type(row).__name__}")
            continue
        rows.append((line, row))
    return rows


def _validate_rows(
    rows: list[tuple[int, dict[str, object]]], labels: tuple[str, ...], problems: list[str]
) -> list[Prediction]:
    predictions = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        values = {}
        for key in REQUIRED_FIELDS:
            value = row.get(key)
            if value is None:
                problems.append(f"line {line}: missing field '{key}'")
            elif not isinstance(value, str):
                problems.append(f"line {line}: field '{key}' must be a string, found {value!r}")
            else:
                values[key] = value
        if len(values) != len(REQUIRED_FIELDS):
            continue
        name, label = values["name"], values["label"]
        if not name.strip():
            problems.append(f"line {line}: field 'name' is empty")
            continue
        if name in first_line:
            problems.append(f"line {line}: duplicate name {name!r} (first seen on line {first_line[name]})")
            continue
        first_line[name] = line
        if label not in labels:
            problems.append(f"line {line}: gold label {label!r} of {name!r} is not one of {list(labels)}")
            continue
        extra = {key: value for key, value in row.items() if key not in REQUIRED_FIELDS}
        predictions.append(Prediction(name=name, label=label, output=values["output"], extra=extra))
    return predictions


def write_predictions_csv(path: Path, predictions: Iterable[Prediction]) -> None:
    """Write predictions as CSV that `read_predictions` accepts (atomically): name, label, output, then the
    extra fields in order of first appearance (a row without one leaves it empty)."""
    rows = list(predictions)
    extra = list(dict.fromkeys(key for row in rows for key in row.extra if key not in REQUIRED_FIELDS))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*REQUIRED_FIELDS, *extra])
    for row in rows:
        values = [row.extra.get(key, "") for key in extra]
        writer.writerow([row.name, row.label, row.output, *map(_csv_value, values)])
    atomic_write_text(path, buffer.getvalue())


def _csv_value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
