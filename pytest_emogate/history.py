"""The run history: one SQLite database (standard library) that every gated run appends to.

Each run stores when it ran, the git commit, the fingerprints of what produced the answers, every aggregate
metric, every class's numbers and the verdict. Writers take SQLite's write lock before touching anything
(`BEGIN IMMEDIATE`) and wait for each other (busy timeout), so concurrent runs, e.g. pytest-xdist controllers or
parallel CI jobs on one runner, queue instead of corrupting the file or losing a run.

What a history holds is data, never trusted: a row with a value of the wrong type, a NULL where a value belongs,
a check list that is not JSON, a value out of its range or over MAX_VALUE_CHARS is skipped with a note naming
the run and why (`Runs.skipped`); a file that is not a history, a locked one and a full disk are usage errors
naming the file.
"""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_emogate.evaluate.metrics import METRICS, GateResult
from pytest_emogate.evaluate.verdict import Verdict
from pytest_emogate.formats import cut, quoted

if TYPE_CHECKING:
    import sqlite3

    import pandas as pd


SCHEMA_VERSION = 2
"""2 added the verdict (passed, failed, incomplete) and the checks that did not run; version 1 files are migrated."""
BUSY_TIMEOUT_S = 60.0
TREND_RUNS = 10
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    git_commit TEXT,
    checkpoint_sha256 TEXT,
    data_fingerprint TEXT,
    predictions_sha256 TEXT,
    thresholds_sha256 TEXT NOT NULL,
    n INTEGER NOT NULL,
    passed INTEGER NOT NULL,
    failed_checks TEXT NOT NULL,
    verdict TEXT,
    not_run TEXT
);
CREATE TABLE IF NOT EXISTS run_metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS run_classes (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    label TEXT NOT NULL,
    n INTEGER NOT NULL,
    correct INTEGER NOT NULL,
    recall REAL NOT NULL,
    recall_low REAL NOT NULL,
    recall_high REAL NOT NULL,
    precision REAL NOT NULL,
    f1 REAL NOT NULL,
    PRIMARY KEY (run_id, label)
);
"""
CLASS_FIELDS = ("n", "correct", "recall", "recall_low", "recall_high", "precision", "f1")
RUN_FIELDS = ("id", "time", "git_commit", "checkpoint_sha256", "data_fingerprint", "predictions_sha256",
              "thresholds_sha256", "n", "passed", "failed_checks", "verdict", "not_run")  # fmt: skip
ADDED_IN_2 = ("verdict", "not_run")
WHOLE_CLASS_FIELDS = ("n", "correct")
IN_PYTEST = "pass another --emogate-history or --emogate-no-history"
"""What to do about an unusable history file in a gated session."""
OUTSIDE_PYTEST = "name another history file"
"""What to do about it in `emogate history` and `frame` (one message for both)."""
MAX_VALUE_CHARS = 100_000
"""The longest text a stored value may have (a commit, a fingerprint, the JSON list of failed checks); a longer
one is read no further, and its run is skipped."""
MAX_WHOLE = 10**15
"""The largest count (n, correct) a run may store."""
VERDICTS = ("passed", "failed", "incomplete")
SKIPPED_LISTED = 3
"""The unreadable runs a note names before it counts the rest."""


@dataclass(frozen=True)
class Run:
    """One gated run as the history stores it; `per_class[label]` maps CLASS_FIELDS to numbers."""

    time: str
    git_commit: str | None
    checkpoint_sha256: str | None
    data_fingerprint: str | None
    predictions_sha256: str | None
    thresholds_sha256: str
    n: int
    passed: bool
    failed_checks: tuple[str, ...]
    metrics: Mapping[str, float]
    per_class: Mapping[str, Mapping[str, float]]
    id: int | None = None
    verdict: str = ""
    """passed, failed or incomplete (a run recorded before version 2: passed or failed)."""
    not_run: tuple[str, ...] = ()


class Runs(list[Run]):
    """The runs read from a history, oldest first, and `skipped`: one line per stored run that could not be read
    (`run #7: failed_checks: expected a JSON list of check ids, found 'oops'`)."""

    def __init__(self, runs: Sequence[Run] = (), skipped: Sequence[str] = ()) -> None:
        super().__init__(runs)
        self.skipped = list(skipped)


class BadRow(ValueError):
    """A stored value that is not what the schema says: why, phrased to follow the column's name."""


def run_of(result: GateResult, verdict: Verdict, provenance: Mapping[str, Any], commit: str | None) -> Run:
    """The history row of this session's result."""
    return Run(
        time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        git_commit=commit,
        checkpoint_sha256=provenance.get("checkpoint_sha256"),
        data_fingerprint=provenance.get("data_fingerprint"),
        predictions_sha256=provenance.get("predictions_sha256"),
        thresholds_sha256=str(provenance.get("thresholds_sha256", "")),
        n=result.n,
        passed=verdict.passed,
        failed_checks=verdict.failed,
        verdict=verdict.status,
        not_run=verdict.not_run,
        metrics=dict(result.metrics),
        per_class={
            label: dict(zip(CLASS_FIELDS, (s.n, s.correct, s.recall, *s.recall_ci95, s.precision, s.f1), strict=True))
            for label, s in result.per_class.items()
        },
    )


def git_commit(root: Path) -> str | None:
    """The commit checked out at `root`, else $GITHUB_SHA, else None (not a repository, or no git)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        done = None
    if done is not None and done.returncode == 0:
        return done.stdout.strip()
    return os.environ.get("GITHUB_SHA") or None


@contextmanager
def _connect(path: Path, *, create: bool, advice: str = IN_PYTEST) -> Iterator[sqlite3.Connection]:
    """A connection with a busy timeout (read-only unless `create`); problems with the file become a UsageError
    naming it. The file must be a regular file (SQLite would block on a FIFO), and an emogate history or empty."""
    import sqlite3

    from pytest_emogate.files import FileProblem, check_regular

    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        if not create or path.exists() or path.is_symlink():
            try:
                check_regular(path)
            except FileProblem as problem:
                if not create and problem.found == "does not exist":
                    raise pytest.UsageError(
                        f"history {path}: no such file; run the gate with history on first"
                    ) from None
                raise problem.usage("history") from None
        uri = f"{Path(path).resolve().as_uri()}?mode={'rwc' if create else 'ro'}"
        with closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as db:
            _check_schema(db, path, advice)
            yield db
    except (sqlite3.DatabaseError, OSError) as error:
        raise _database_problem(path, error, advice) from None


def _database_problem(path: Path, error: sqlite3.DatabaseError | OSError, advice: str) -> pytest.UsageError:
    """The UsageError of a history that could not be read or written: a full disk and a lock said as such."""
    said = str(error) if not isinstance(error, OSError) else error.strerror or str(error)
    full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
    if full or "database or disk is full" in said:
        return pytest.UsageError(
            f"history {path}: the disk is full ({said}); the run was not recorded: free some space on it, or {advice}"
        )
    if "database is locked" in said or "database table is locked" in said:
        return pytest.UsageError(
            f"history {path}: locked by another process for {BUSY_TIMEOUT_S:g} s ({said}); let it finish, or {advice}"
        )
    if isinstance(error, OSError):
        return pytest.UsageError(f"history {path}: cannot be read or written: {said}")
    return pytest.UsageError(f"history {path}: expected an emogate SQLite history, found: {said}")


def _check_schema(db: sqlite3.Connection, path: Path, advice: str) -> None:
    """Refuse a database that holds anything but an emogate history (an empty one is fine: it becomes one)."""
    tables = {name: [column for _, column, *_ in db.execute(f"PRAGMA table_info({name})")]
              for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                        "AND name NOT LIKE 'sqlite_%'")}  # fmt: skip
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if not tables and version == 0:
        return
    if version > SCHEMA_VERSION:
        raise pytest.UsageError(
            f"history {path}: schema version {version} is newer than this pytest-emogate's {SCHEMA_VERSION}; "
            f"upgrade pytest-emogate or {advice}"
        )
    expected = {
        "runs": [name for name in RUN_FIELDS if version >= 2 or name not in ADDED_IN_2],
        "run_metrics": ["run_id", "name", "value"],
        "run_classes": ["run_id", "label", *CLASS_FIELDS],
    }
    if version in (1, 2) and tables == expected:
        return
    found = ", ".join(f"{name}({', '.join(columns)})" for name, columns in sorted(tables.items())) or "no tables"
    raise pytest.UsageError(
        f"history {path}: not an emogate history (schema version {version}; tables {cut(found, 300)}); expected an "
        f"empty file or one that pytest-emogate wrote. {advice[0].upper()}{advice[1:]}; the file was not changed"
    )


def _check_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def check_history(path: Path) -> None:
    """Fail at the start of a session, not at its end, when an existing history file cannot be used (it is
    opened read-only: nothing is written to a file that is refused)."""
    if path.exists() or path.is_symlink():
        with _connect(path, create=False):
            pass


def record_run(path: Path, run: Run) -> int:
    """Append one run (in one transaction) and return its id; creates the database on first use."""
    with _connect(path, create=True) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            if _check_version(db) == 1:
                for column in ADDED_IN_2:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")
            for statement in SCHEMA.split(";"):
                db.execute(statement)  # not executescript: it would commit first and drop the lock
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            row = (run.time, run.git_commit, run.checkpoint_sha256, run.data_fingerprint, run.predictions_sha256,
                   run.thresholds_sha256, run.n, int(run.passed), json.dumps(list(run.failed_checks)), run.verdict,
                   json.dumps(list(run.not_run)))  # fmt: skip
            fields = RUN_FIELDS[1:]
            cursor = db.execute(f"INSERT INTO runs ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})", row)
            run_id = int(cursor.lastrowid or 0)
            db.executemany("INSERT INTO run_metrics VALUES (?, ?, ?)", [(run_id, k, v) for k, v in run.metrics.items()])
            db.executemany(
                f"INSERT INTO run_classes VALUES (?, ?, {', '.join('?' * len(CLASS_FIELDS))})",
                [(run_id, label, *(stats[f] for f in CLASS_FIELDS)) for label, stats in run.per_class.items()],
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite has rolled back already after some errors (a full disk)
                db.execute("ROLLBACK")
            raise
    return run_id


def load_runs(
    path: Path, last: int | None = None, data_fingerprint: str | None = None, advice: str = IN_PYTEST
) -> Runs:
    """The stored runs, oldest first: the `last` ones (at least 1; None for all), of one evaluation set when
    `data_fingerprint` is given; `advice` says what to do when the file is not a history this version can read.
    A run whose stored values are not what the schema says is left out and named in `skipped`."""
    if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 1):
        raise ValueError(f"last: expected a whole number of runs, at least 1 (or None for all), found {last!r}")
    with _connect(path, create=False, advice=advice) as db:
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone() is None:
            return Runs()  # an empty database: the schema accepted it, and the first run will create the tables
        old = _check_version(db) == 1
        where, args = ("WHERE data_fingerprint = ?", [data_fingerprint]) if data_fingerprint else ("", [])
        limit = f"LIMIT {last}" if last else ""
        columns = ", ".join("NULL" if old and name in ADDED_IN_2 else _bounded(name) for name in RUN_FIELDS)
        rows = db.execute(f"SELECT {columns} FROM runs {where} ORDER BY id DESC {limit}", args).fetchall()
        runs = Runs()
        for row in reversed(rows):
            record = dict(zip(RUN_FIELDS, row, strict=True))
            metrics = db.execute(
                f"SELECT {_bounded('name')}, value FROM run_metrics WHERE run_id = ? ORDER BY rowid", (record["id"],)
            ).fetchall()
            classes = db.execute(
                f"SELECT {_bounded('label')}, {', '.join(CLASS_FIELDS)} FROM run_classes WHERE run_id = ? "
                "ORDER BY rowid",
                (record["id"],),
            ).fetchall()
            try:
                runs.append(_stored_run(record, metrics, classes))
            except BadRow as problem:
                runs.skipped.append(f"run #{record['id']}: {problem}")
    return runs


def skipped_note(path: Path | str, skipped: Sequence[str]) -> str:
    """One line naming the stored runs that were left out and why (the first SKIPPED_LISTED, then a count)."""
    more = f"; and {len(skipped) - SKIPPED_LISTED} more" if len(skipped) > SKIPPED_LISTED else ""
    plural = "s" if len(skipped) != 1 else ""
    return (
        f"history {path}: skipped {len(skipped)} stored run{plural} that could not be read: "
        f"{'; '.join(skipped[:SKIPPED_LISTED])}{more}"
    )


def _bounded(column: str) -> str:
    """A column read no further than MAX_VALUE_CHARS + 1 characters (or bytes): a longer value is refused
    without being loaded whole; other types come back as they are stored, to be checked."""
    return (
        f"CASE WHEN typeof({column}) IN ('text', 'blob') THEN substr({column}, 1, {MAX_VALUE_CHARS + 1}) "
        f"ELSE {column} END"
    )


def _stored_run(record: dict[str, Any], metrics: list[Any], classes: list[Any]) -> Run:
    """A run from its stored row, metric rows and class rows, each value checked; BadRow says what is wrong."""
    for name in ("time", "thresholds_sha256"):
        _text(name, record[name])
    for name in ("git_commit", "checkpoint_sha256", "data_fingerprint", "predictions_sha256"):
        if record[name] is not None:
            _text(name, record[name])
    _whole("n", record["n"])
    if record["passed"] not in (0, 1) or isinstance(record["passed"], float):
        raise BadRow(f"passed: expected 0 or 1, found {_found(record['passed'])}")
    passed = bool(record["passed"])
    if record["verdict"] not in (None, "", *VERDICTS):
        raise BadRow(f"verdict: expected one of {', '.join(VERDICTS)}, found {_found(record['verdict'])}")
    record.update(
        passed=passed, failed_checks=_ids("failed_checks", record["failed_checks"]),
        verdict=record["verdict"] or ("passed" if passed else "failed"),
        not_run=() if record["not_run"] is None else _ids("not_run", record["not_run"]),
    )  # fmt: skip
    stored_metrics = {
        _text("run_metrics.name", name): _share(f"metric {quoted(name)}", value) for name, value in metrics
    }
    per_class = {}
    for label, *values in classes:
        where = f"class {quoted(_text('run_classes.label', label))}"
        stats = dict(zip(CLASS_FIELDS, values, strict=True))
        for field_name, value in stats.items():
            check = _whole if field_name in WHOLE_CLASS_FIELDS else _share
            check(f"{where} {field_name}", value)
        if stats["correct"] > stats["n"]:
            raise BadRow(f"{where}: expected correct <= n, found {stats['correct']} > {stats['n']}")
        per_class[label] = stats
    return Run(**record, metrics=stored_metrics, per_class=per_class)


def _found(value: object) -> str:
    """A stored value as a problem quotes it: NULL, or its SQL type and its value, shortened."""
    kinds = {str: "text", bytes: "a blob", int: "integer", float: "real"}
    if value is None:
        return "NULL"
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return f"text over {MAX_VALUE_CHARS:,} characters"
    return f"{kinds.get(type(value), type(value).__name__)} {quoted(value)}"


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
        raise BadRow(f"{name}: expected text of at most {MAX_VALUE_CHARS:,} characters, found {_found(value)}")
    return value


def _whole(name: str, value: object) -> int:
    if not isinstance(value, int) or not 0 <= value <= MAX_WHOLE:
        raise BadRow(f"{name}: expected a whole number from 0 to {MAX_WHOLE:,}, found {_found(value)}")
    return value


def _share(name: str, value: object) -> float:
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, float) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise BadRow(f"{name}: expected a number from 0 to 1, found {_found(value)}")
    return value


def _ids(name: str, value: object) -> tuple[str, ...]:
    """A stored JSON list of check ids."""
    problem = f"{name}: expected a JSON list of check ids, found {_found(value)}"
    if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
        raise BadRow(problem)
    try:
        ids = json.loads(value)
    except ValueError:
        raise BadRow(problem) from None
    if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
        raise BadRow(problem)
    return tuple(ids)


def table(runs: Sequence[Run]) -> tuple[list[str], list[list[Any]]]:
    """The runs as one table, the source of both `emogate history --csv` and `frame`: one row per run, oldest
    first; columns the run's fields (RUN_FIELDS; the lists of checks joined by spaces), every metric of METRICS,
    then `{label}_{field}` for each class ever recorded (first seen first) and each of CLASS_FIELDS. None where a
    run lacks a value (a metric or class it did not record)."""
    labels = list(dict.fromkeys(label for run in runs for label in run.per_class))
    header = [*RUN_FIELDS, *METRICS, *(f"{label}_{name}" for label in labels for name in CLASS_FIELDS)]
    rows = []
    for run in runs:
        fields = [run.id, run.time, run.git_commit, run.checkpoint_sha256, run.data_fingerprint, run.predictions_sha256,
                  run.thresholds_sha256, run.n, run.passed, " ".join(run.failed_checks), run.verdict,
                  " ".join(run.not_run)]  # fmt: skip
        metrics = [run.metrics.get(metric) for metric in METRICS]
        classes = [run.per_class.get(label, {}).get(name) for label in labels for name in CLASS_FIELDS]
        rows.append([*fields, *metrics, *classes])
    return header, rows


def frame(path: str | os.PathLike[str], last: int | None = None, data_fingerprint: str | None = None) -> pd.DataFrame:
    """The run history at `path` as a pandas DataFrame, one row per run, oldest first (the `last` runs, of one
    evaluation set when `data_fingerprint` is given): the columns and values `emogate history --csv` writes (see
    `table`). id, n and each class's n and correct are integers (pandas' nullable Int64 for a class's, absent
    in runs that did not record the class), passed bool, metrics and the other class fields float (NaN where
    absent), the rest str (time is ISO 8601 UTC text: `pd.to_datetime(frame.time)`). A missing or foreign
    file is the UsageError the command prints; missing pandas says how to install it; a stored run that cannot be
    read is left out with a warning naming it."""
    from pytest_emogate.evaluate.frames import require_pandas

    require_pandas("pytest_emogate.history.frame()")
    import pandas as pd

    runs = load_runs(Path(path), last, data_fingerprint, advice=OUTSIDE_PYTEST)
    if runs.skipped:
        warnings.warn(skipped_note(Path(path), runs.skipped), stacklevel=2)
    header, rows = table(runs)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    run_types = {name: "str" for name in RUN_FIELDS} | {"id": "int64", "n": "int64", "passed": "bool"}
    class_types = ["Int64" if name in WHOLE_CLASS_FIELDS else "float64" for name in CLASS_FIELDS]
    classes = (len(header) - len(RUN_FIELDS) - len(METRICS)) // len(CLASS_FIELDS)
    dtypes = [*run_types.values(), *("float64" for _ in METRICS), *class_types * classes]
    typed = zip(header, columns, dtypes, strict=True)
    data = {name: pd.Series(list(values), dtype=dtype) for name, values, dtype in typed}
    runs_frame: pd.DataFrame = pd.DataFrame(data, columns=header)
    return runs_frame
