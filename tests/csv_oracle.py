"""The CSV reader as it was before it split plain lines at once (commit 922d7c2, pytest_emogate/predictions.py),
kept word for word as the oracle that tests/test_csv_oracle.py compares the reader with: the same records, rows,
predictions and problems, in the same order, for any text."""

# ruff: noqa
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from pytest_emogate.formats import clip, quoted
from pytest_emogate.predictions import _PLAIN_FIELD, QUOTE_HINT, REQUIRED_FIELDS, Prediction, _BrokenCsv

_QUOTED_BODY = re.compile(r'[^"]*(?:""[^"]*)*')
"""The reader's pattern of a quoted field's body, before it found the body's end with str.find."""


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
