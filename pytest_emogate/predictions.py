"""Reading and writing prediction files: CSV with a header, or JSONL; one row per sample.

Columns: `name` (sample id), `label` (gold label), `output` (the model's raw answer). Extra fields are kept.
Every problem is collected and reported at once, naming the file and line; nothing is guessed or dropped.

The CSV reader is strict where a stray quote could merge rows unseen: a field that opens with `"` must close
before a comma or the end of the line, the file must not end inside it, and a quoted field that spans lines must
not swallow a line that reads as a row of its own (an answer may span lines; a row's worth of another sample in
it is far likelier a stray quote). Fields have no length limit (answers may be megabytes); the file has one.
JSON lines split on "\n" only: a JSON string may hold U+2028 and the other characters `str.splitlines` breaks at.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_emogate.files import FileProblem, atomic_write_text, decode_utf8, read_checked, text_lines, usage_error
from pytest_emogate.formats import clip, quoted

REQUIRED_FIELDS = ("name", "label", "output")
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_BYTES = 1 << 30
"""The largest predictions file read (1 GiB): 834 answers of a megabyte each fit; /dev/zero does not."""
QUOTE_HINT = (
    "a stray '\"'? A field that starts with '\"' ends at the next lone '\"', and a '\"' inside it is written '\"\"'"
)
_QUOTED_BODY = re.compile(r'[^"]*(?:""[^"]*)*')
_PLAIN_FIELD = re.compile(r"[^,\n]*")


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
    path: Path,
    labels: tuple[str, ...],
    what: str = "predictions file",
    *,
    expect_samples: int | None = None,
    expect_source: str = "expect_samples",
) -> tuple[list[Prediction], str]:
    """The file's predictions and the sha256 of the very bytes they were read from (read once: the file may
    change while the session runs). With `expect_samples`, a file of another number of rows is a problem too
    (`expect_source` says where the number comes from)."""
    where = f"{what} {path}"
    try:
        data = read_checked(path, MAX_BYTES)
    except FileProblem as problem:
        raise usage_error(where, [f"the file {problem.found}"]) from None
    text = decode_utf8(data, what, path)
    problems: list[str] = []
    if not text.strip():
        raise usage_error(where, ["the file is empty: expected a header or JSON lines"])
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = _jsonl_rows(text, problems)
    else:
        rows = _csv_rows(text, labels, problems)
    predictions = _validate_rows(rows, labels, problems)
    if expect_samples is not None and len(rows) != expect_samples:
        problems.append(f"expected {expect_samples} rows ({expect_source}), found {len(rows)}")
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


class _BrokenCsv(ValueError):
    """A quoted field that does not end where CSV says it must; the message is the problem, line included."""


@dataclass
class _Record:
    """One CSV record: the line it starts on, its fields, and each quoted field that spans lines as (the line it
    opens on, the line it closes on, its text as written)."""

    line: int
    fields: list[str] = field(default_factory=list)
    spans: list[tuple[int, int, str]] = field(default_factory=list)


def _csv_records(text: str) -> Iterator[_Record]:
    """The records of CSV text (comma, '"' quotes doubled inside, lines ending in "\n" or "\r\n"; blank lines
    skipped); _BrokenCsv, naming the line where the field opened, when a quoted field does not close cleanly."""
    pos, line, end = 0, 1, len(text)
    while pos < end:
        if text[pos] == "\n" or text.startswith("\r\n", pos):
            pos, line = text.index("\n", pos) + 1, line + 1
            continue
        record = _Record(line)
        while True:
            if text.startswith('"', pos):
                body = _QUOTED_BODY.match(text, pos + 1)
                assert body is not None  # the pattern matches the empty string
                raw, opened = body.group(), line
                if body.end() >= end:
                    last = opened + raw.rstrip("\r\n").count("\n")
                    swallowed = f", so lines {opened}-{last} would be one field" if last > opened else ""
                    raise _BrokenCsv(
                        f"line {opened}: a quoted field opens here and is never closed: the file ends inside "
                        f"it{swallowed}; {QUOTE_HINT}"
                    )
                line += raw.count("\n")
                if line > opened:
                    record.spans.append((opened, line, raw))
                record.fields.append(raw.replace('""', '"'))
                pos = body.end() + 1
                pos += text.startswith("\r\n", pos) or (pos == end - 1 and text[pos] == "\r")
                if pos < end and text[pos] not in ",\n":
                    closes = f"closes on line {line}" if line > opened else "closes"
                    raise _BrokenCsv(
                        f"line {opened}: the quoted field opened here {closes} followed by {quoted(text[pos])}, "
                        f"where a comma or the end of the line must follow; {QUOTE_HINT} (the lines after it "
                        "were not read)"
                    )
            else:
                plain = _PLAIN_FIELD.match(text, pos)
                assert plain is not None
                value, pos = plain.group(), plain.end()
                at_line_end = pos == end or text[pos] == "\n"
                record.fields.append(value[:-1] if at_line_end and value.endswith("\r") else value)
            if pos >= end:
                yield record
                return
            pos += 1
            if text[pos - 1] == "\n":
                yield record
                line += 1
                break


def _csv_rows(text: str, labels: tuple[str, ...], problems: list[str]) -> list[tuple[int, dict[str, object]]]:
    records = _csv_records(text)
    rows: list[tuple[int, dict[str, object]]] = []
    try:
        first = next(records)
        header = first.fields
        missing = [name for name in REQUIRED_FIELDS if name not in header]
        doubled = sorted({name for name in header if header.count(name) > 1})
        if missing:
            found = clip(repr(header), 200)
            problems.append(
                f"line {first.line}: header is missing column(s) {', '.join(missing)}; found columns {found}"
            )
        if doubled:
            problems.append(f"line {first.line}: column(s) {quoted(doubled)} appear more than once in the header")
        if missing or doubled:
            return []
        for record in records:
            problem = _record_problem(record, header, labels)
            if problem:
                problems.append(problem)
            else:
                rows.append((record.line, dict(zip(header, record.fields, strict=True))))
    except _BrokenCsv as broken:
        problems.append(str(broken))
    return rows


def _record_problem(record: _Record, header: list[str], labels: tuple[str, ...]) -> str | None:
    """Why a record is not a row: the wrong number of fields, or a quoted field that swallowed a row."""
    spanned = ""
    if record.spans:
        opened, closed, _ = record.spans[0]
        spanned = f": the quoted field opened on line {opened} runs to line {closed} ({QUOTE_HINT})"
    if len(record.fields) != len(header):
        found = len(record.fields)
        return f"line {record.line}: expected {len(header)} fields as in the header, found {found}{spanned}"
    for opened, closed, raw in record.spans:
        for offset, segment in enumerate(raw.split("\n")[1:], start=1):
            if _reads_as_row(segment.removesuffix("\r"), header, labels):
                return (
                    f"line {opened}: the quoted field opened here runs to line {closed} and swallows line "
                    f"{opened + offset}, which reads as a row of its own ({quoted(segment)}); {QUOTE_HINT}. If "
                    "that line belongs to the answer, write the file as JSON lines"
                )
    return None


def _reads_as_row(line: str, header: list[str], labels: tuple[str, ...]) -> bool:
    """Whether one line inside a quoted field parses as a whole row with a gold label (case aside)."""
    try:
        fields = next(_csv_records(line), _Record(0)).fields
    except _BrokenCsv:
        return False
    gold = header.index("label")
    return len(fields) == len(header) and fields[gold].strip().lower() in labels


class _DuplicateKey(ValueError):
    """A JSON object that names a key twice (json keeps the last without a word)."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    row: dict[str, object] = {}
    for key, value in pairs:
        if key in row:
            raise _DuplicateKey(key)
        row[key] = value
    return row


def _jsonl_rows(text: str, problems: list[str]) -> list[tuple[int, dict[str, object]]]:
    rows = []
    for line, raw in enumerate(text_lines(text), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as error:
            problems.append(f"line {line}: malformed JSON ({error.msg} at column {error.colno})")
            continue
        except _DuplicateKey as error:
            problems.append(f"line {line}: duplicate key {quoted(error.args[0])} in the JSON object; keep one")
            continue
        except ValueError as error:  # e.g. an integer of more digits than Python converts
            problems.append(f"line {line}: malformed JSON ({clip(str(error), 200)})")
            continue
        except RecursionError:
            problems.append(f"line {line}: nested too deeply to read as JSON")
            continue
        if not isinstance(row, dict):
            problems.append(f"line {line}: expected a JSON object, found {type(row).__name__}")
            continue
        if (surrogate := lone_surrogate(row)) is not None:
            problems.append(f"line {line}: a \\u{ord(surrogate):04x} escape with no pair, which is not text (lone "
                            "surrogates cannot be written as UTF-8); expected valid Unicode")  # fmt: skip
            continue
        rows.append((line, row))
    return rows


def lone_surrogate(value: object) -> str | None:
    """The first lone surrogate (a JSON \\udc80 escape without its pair) anywhere in a parsed JSON value."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found:
                return found.group()
        elif isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            pending += item
    return None


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
                problems.append(f"line {line}: field '{key}' must be a string, found {quoted(value)}")
            else:
                values[key] = value
        if len(values) != len(REQUIRED_FIELDS):
            continue
        name, label = values["name"], values["label"]
        if not name.strip():
            problems.append(f"line {line}: field 'name' is empty")
            continue
        if name in first_line:
            problems.append(f"line {line}: duplicate name {quoted(name)} (first seen on line {first_line[name]})")
            continue
        first_line[name] = line
        if label not in labels:
            problems.append(f"line {line}: gold label {quoted(label)} of {quoted(name)} is not one of {list(labels)}")
            continue
        extra = {key: value for key, value in row.items() if key not in REQUIRED_FIELDS}
        predictions.append(Prediction(name=name, label=label, output=values["output"], extra=extra))
    return predictions


def write_predictions_csv(path: Path, predictions: Iterable[Prediction]) -> None:
    """Write predictions as CSV that `read_predictions` accepts (atomically): name, label, output, then the
    extra fields in order of first appearance (a row without one leaves it empty). The text is read back before
    it replaces anything: answers the strict reader would refuse (a line of an answer that reads as a row of its
    own) raise FileProblem, and the file at `path` is left as it was."""
    rows = list(predictions)
    extra = list(dict.fromkeys(key for row in rows for key in row.extra if key not in REQUIRED_FIELDS))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*REQUIRED_FIELDS, *extra])
    for row in rows:
        values = [row.extra.get(key, "") for key in extra]
        writer.writerow([row.name, row.label, row.output, *map(_csv_value, values)])
    text = buffer.getvalue()
    labels = tuple(dict.fromkeys(row.label for row in rows))
    problems: list[str] = []
    back = _validate_rows(_csv_rows(text, labels, problems), labels, problems)
    if problems or [(p.name, p.label, p.output) for p in back] != [(p.name, p.label, p.output) for p in rows]:
        found = problems[0] if problems else "the answers would not read back as they are"
        raise FileProblem(path, f"these answers cannot be written as CSV that reads back ({found}); write .jsonl")
    atomic_write_text(path, text)


def _csv_value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
