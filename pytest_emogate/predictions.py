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

import gc
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pytest_emogate.files import FileProblem, atomic_write_text, decode_utf8, read_checked, text_lines, usage_error
from pytest_emogate.formats import clip, csv_row, quoted

REQUIRED_FIELDS = ("name", "label", "output")
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_BYTES = 1 << 30
"""The largest predictions file read (1 GiB): 834 answers of a megabyte each fit; /dev/zero does not."""
QUOTE_HINT = (
    "a stray '\"'? A field that starts with '\"' ends at the next lone '\"', and a '\"' inside it is written '\"\"'"
)
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
    digest = hashlib.sha256(data).hexdigest()
    del data  # the text is what is read from here on: the bytes would be one more copy of every answer
    problems: list[str] = []
    if not text or text.isspace():  # not text.strip(), which would copy the text
        raise usage_error(where, ["the file is empty: expected a header or JSON lines"])
    with gc_paused():  # a Prediction per row, acyclic: the collections their making triggers would walk them all
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            rows = _jsonl_rows(text, problems)
            predictions, count = _validate_rows(rows, labels, problems), len(rows)
        else:
            predictions, count = _csv_predictions(text, labels, problems)
    if expect_samples is not None and count != expect_samples:
        problems.append(f"expected {expect_samples} rows ({expect_source}), found {count}")
    if not problems and not predictions:
        problems.append("no rows: expected one row per sample")
    if problems:
        raise usage_error(where, problems)
    return predictions, digest


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while many acyclic records are built (an 83,400-row file makes 83,400
    Predictions, and each full collection their making triggers walks every live object); reference counting
    still frees everything, and the collector runs again after, as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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


_Record = tuple[int, list[str], Sequence[tuple[int, int, str]]]
"""One CSV record: the line it starts on, its fields, and each quoted field that spans lines as (the line it
opens on, the line it closes on, its text as written). A plain tuple: a file makes one per row."""
_NO_SPANS: tuple[tuple[int, int, str], ...] = ()


def _csv_records(text: str) -> Iterator[_Record]:
    """The records of CSV text (comma, '"' quotes doubled inside, lines ending in "\n" or "\r\n"; blank lines
    skipped); _BrokenCsv, naming the line where the field opened, when a quoted field does not close cleanly.

    A line without '"' is one record whose fields its commas separate (a '\r' before its end dropped): split
    at once. A line with one is read field by field (`_quoted_record`), which may run on over further lines."""
    pos, line, end = 0, 1, len(text)
    find = text.find
    while pos < end:
        stop = find("\n", pos)
        if stop < 0:
            stop = end
        if find('"', pos, stop) >= 0:  # looked for in place: the line may be an answer of hundreds of megabytes
            record, pos, line = _quoted_record(text, pos, line)
            yield record
            continue
        raw = text[pos:stop]
        if raw.endswith("\r"):
            if raw == "\r" and stop < end:  # a blank line, written "\r\n"
                pos, line = stop + 1, line + 1
                continue
            raw = raw[:-1]
        elif not raw:  # a blank line
            pos, line = stop + 1, line + 1
            continue
        yield line, raw.split(","), _NO_SPANS
        pos, line = stop + 1, line + 1


def _quoted_body_end(text: str, start: int) -> int:
    """Where the body of a quoted field that starts at `start` ends: at its first '"' that is not doubled, or at
    the end of the text. Found a doubled quote at a time: a regex repeating `""[^"]*` keeps a backtracking record
    for each (five times the text, measured, for an answer full of them)."""
    while (quote := text.find('"', start)) >= 0 and text.startswith('""', quote):
        start = quote + 2
    return len(text) if quote < 0 else quote


def _quoted_record(text: str, pos: int, line: int) -> tuple[_Record, int, int]:
    """The record that starts at `pos` on `line`, read field by field, and where and on which line the next one
    starts; _BrokenCsv when a quoted field does not close cleanly."""
    end, first = len(text), line
    fields: list[str] = []
    spans: list[tuple[int, int, str]] = []
    while True:
        if text.startswith('"', pos):
            close = _quoted_body_end(text, pos + 1)
            raw, opened = text[pos + 1 : close], line
            if close >= end:
                last = opened + raw.rstrip("\r\n").count("\n")
                swallowed = f", so lines {opened}-{last} would be one field" if last > opened else ""
                raise _BrokenCsv(
                    f"line {opened}: a quoted field opens here and is never closed: the file ends inside "
                    f"it{swallowed}; {QUOTE_HINT}"
                )
            line += raw.count("\n")
            if line > opened:
                spans.append((opened, line, raw))
            fields.append(raw.replace('""', '"'))
            pos = close + 1
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
            fields.append(value[:-1] if at_line_end and value.endswith("\r") else value)
        if pos >= end:
            return (first, fields, spans), pos, line
        pos += 1
        if text[pos - 1] == "\n":
            return (first, fields, spans), pos, line + 1


def _csv_predictions(text: str, labels: tuple[str, ...], problems: list[str]) -> tuple[list[Prediction], int]:
    """The predictions of CSV text and how many of its records are rows; `problems` gains first every record
    that is not a row, in file order, then every row that is not a prediction (as `_validate_rows` says)."""
    records = _csv_records(text)
    predictions: list[Prediction] = []
    rows = 0
    invalid: list[str] = []
    try:
        first = next(records)
        first_at, header, _ = first
        missing = [name for name in REQUIRED_FIELDS if name not in header]
        doubled = sorted({name for name in header if header.count(name) > 1})
        if missing:
            found = clip(repr(header), 200)
            problems.append(f"line {first_at}: header is missing column(s) {', '.join(missing)}; found columns {found}")
        if doubled:
            problems.append(f"line {first_at}: column(s) {quoted(doubled)} appear more than once in the header")
        if missing or doubled:
            return [], 0
        width = len(header)
        at_name, at_label, at_output = (header.index(key) for key in REQUIRED_FIELDS)
        extra_at = [(index, key) for index, key in enumerate(header) if key not in REQUIRED_FIELDS]
        first_line: dict[str, int] = {}
        for line, fields, spans in records:
            if spans or len(fields) != width:
                problem = _record_problem(line, fields, spans, header, labels)
                if problem:
                    problems.append(problem)
                    continue
            rows += 1
            name, label = fields[at_name], fields[at_label]
            if name.strip() and name not in first_line and label in labels:
                first_line[name] = line
                extra = {key: fields[index] for index, key in extra_at} if extra_at else {}
                predictions.append(Prediction(name, label, fields[at_output], extra))
            else:
                invalid.append(_value_problem(line, name, label, labels, first_line))
    except _BrokenCsv as broken:
        problems.append(str(broken))
    problems += invalid
    return predictions, rows


def _record_problem(
    line: int, fields: list[str], spans: Sequence[tuple[int, int, str]], header: list[str], labels: tuple[str, ...]
) -> str | None:
    """Why a record is not a row: the wrong number of fields, or a quoted field that swallowed a row."""
    spanned = ""
    if spans:
        opened, closed, _ = spans[0]
        spanned = f": the quoted field opened on line {opened} runs to line {closed} ({QUOTE_HINT})"
    if len(fields) != len(header):
        found = len(fields)
        return f"line {line}: expected {len(header)} fields as in the header, found {found}{spanned}"
    for opened, closed, raw in spans:
        for offset, segment in enumerate(text_lines(raw, raw.index("\n") + 1), start=1):
            if _reads_as_row(segment, header, labels):
                return (
                    f"line {opened}: the quoted field opened here runs to line {closed} and swallows line "
                    f"{opened + offset}, which reads as a row of its own ({quoted(segment)}); {QUOTE_HINT}. If "
                    "that line belongs to the answer, write the file as JSON lines"
                )
    return None


def _reads_as_row(line: str, header: list[str], labels: tuple[str, ...]) -> bool:
    """Whether one line inside a quoted field parses as a whole row with a gold label (case aside)."""
    if line.count(",") < len(header) - 1:  # too few commas to separate a row's fields: no need to parse it
        return False
    try:
        fields = next(_csv_records(line), (0, [], _NO_SPANS))[1]
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
        if name.strip() and name not in first_line and label in labels:
            first_line[name] = line
            extra = {key: value for key, value in row.items() if key not in REQUIRED_FIELDS}
            predictions.append(Prediction(name, label, values["output"], extra))
        else:
            problems.append(_value_problem(line, name, label, labels, first_line))
    return predictions


def _value_problem(line: int, name: str, label: str, labels: tuple[str, ...], first_line: dict[str, int]) -> str:
    """Why a row with a name, a label and an output is not a prediction: an empty or repeated name (a new name is
    noted in `first_line`, whatever its label), or a gold label that is not one of `labels`."""
    if not name.strip():
        return f"line {line}: field 'name' is empty"
    if name in first_line:
        return f"line {line}: duplicate name {quoted(name)} (first seen on line {first_line[name]})"
    first_line[name] = line
    return f"line {line}: gold label {quoted(label)} of {quoted(name)} is not one of {list(labels)}"


def write_predictions_csv(path: Path, predictions: Iterable[Prediction]) -> None:
    """Write predictions as CSV that `read_predictions` accepts (atomically): name, label, output, then the
    extra fields in order of first appearance (a row without one leaves it empty). The text is read back before
    it replaces anything: answers the strict reader would refuse (a line of an answer that reads as a row of its
    own) raise FileProblem, and the file at `path` is left as it was."""
    rows = list(predictions)
    extra = list(dict.fromkeys(key for row in rows for key in row.extra if key not in REQUIRED_FIELDS))
    lines = [csv_row([*REQUIRED_FIELDS, *extra])]
    for row in rows:
        values = [row.extra.get(key, "") for key in extra]
        lines.append(csv_row([row.name, row.label, row.output, *map(_csv_value, values)]))
    text = "".join(lines)
    labels = tuple(dict.fromkeys(row.label for row in rows))
    problems: list[str] = []
    back, _ = _csv_predictions(text, labels, problems)
    if problems or [(p.name, p.label, p.output) for p in back] != [(p.name, p.label, p.output) for p in rows]:
        found = problems[0] if problems else "the answers would not read back as they are"
        raise FileProblem(path, f"these answers cannot be written as CSV that reads back ({found}); write .jsonl")
    atomic_write_text(path, text)


def _csv_value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
