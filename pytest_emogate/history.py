"""The run history: one SQLite database (standard library) that every gated run appends to.

Each run stores when it ran, the git commit, the fingerprints of what produced the answers, every aggregate
metric, every class's numbers and the verdict. Writers take SQLite's write lock before touching anything
(`BEGIN IMMEDIATE`) and wait for each other (busy timeout), so concurrent runs, e.g. pytest-xdist controllers or
parallel CI jobs on one runner, queue instead of corrupting the file or losing a run.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_emogate.evaluate.metrics import METRICS, GateResult
from pytest_emogate.evaluate.verdict import Verdict
from pytest_emogate.formats import cut

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

    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    if not create or path.exists() or path.is_symlink():
        try:
            check_regular(path)
        except FileProblem as problem:
            if not create and problem.found == "does not exist":
                raise pytest.UsageError(f"history {path}: no such file; run the gate with history on first") from None
            raise problem.usage("history") from None
    uri = f"{Path(path).resolve().as_uri()}?mode={'rwc' if create else 'ro'}"
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as db:
            _check_schema(db, path, advice)
            yield db
    except (sqlite3.DatabaseError, OSError) as error:
        raise pytest.UsageError(f"history {path}: expected an emogate SQLite history, found: {error}") from None


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
            db.execute("ROLLBACK")
            raise
    return run_id


def load_runs(
    path: Path, last: int | None = None, data_fingerprint: str | None = None, advice: str = IN_PYTEST
) -> list[Run]:
    """The stored runs, oldest first: the `last` ones, of one evaluation set when `data_fingerprint` is given;
    `advice` says what to do when the file is not a history this version can read."""
    with _connect(path, create=False, advice=advice) as db:
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone() is None:
            return []  # an empty database: the schema accepted it, and the first run will create the tables
        old = _check_version(db) == 1
        where, args = ("WHERE data_fingerprint = ?", [data_fingerprint]) if data_fingerprint else ("", [])
        limit = f"LIMIT {int(last)}" if last else ""
        columns = ", ".join("NULL" if old and name in ADDED_IN_2 else name for name in RUN_FIELDS)
        rows = db.execute(f"SELECT {columns} FROM runs {where} ORDER BY id DESC {limit}", args).fetchall()
        runs = []
        for row in reversed(rows):
            record = dict(zip(RUN_FIELDS, row, strict=True))
            metrics = dict(db.execute("SELECT name, value FROM run_metrics WHERE run_id = ?", (record["id"],)))
            per_class = {
                label: dict(zip(CLASS_FIELDS, values, strict=True))
                for label, *values in db.execute(
                    f"SELECT label, {', '.join(CLASS_FIELDS)} FROM run_classes WHERE run_id = ? ORDER BY rowid",
                    (record["id"],),
                )
            }
            passed = bool(record["passed"])
            record.update(
                passed=passed, failed_checks=tuple(json.loads(record["failed_checks"])),
                verdict=record["verdict"] or ("passed" if passed else "failed"),
                not_run=tuple(json.loads(record["not_run"] or "[]")),
            )  # fmt: skip
            runs.append(Run(**record, metrics=metrics, per_class=per_class))
    return runs


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
    file is the UsageError the command prints; missing pandas says how to install it."""
    from pytest_emogate.evaluate.frames import require_pandas

    require_pandas("pytest_emogate.history.frame()")
    import pandas as pd

    header, rows = table(load_runs(Path(path), last, data_fingerprint, advice=OUTSIDE_PYTEST))
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    run_types = {name: "str" for name in RUN_FIELDS} | {"id": "int64", "n": "int64", "passed": "bool"}
    class_types = ["Int64" if name in WHOLE_CLASS_FIELDS else "float64" for name in CLASS_FIELDS]
    classes = (len(header) - len(RUN_FIELDS) - len(METRICS)) // len(CLASS_FIELDS)
    dtypes = [*run_types.values(), *("float64" for _ in METRICS), *class_types * classes]
    typed = zip(header, columns, dtypes, strict=True)
    data = {name: pd.Series(list(values), dtype=dtype) for name, values, dtype in typed}
    runs: pd.DataFrame = pd.DataFrame(data, columns=header)
    return runs
