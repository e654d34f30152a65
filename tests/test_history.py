"""The SQLite run history: round trip, concurrent writers, bad files, the summary's trend and `emogate history`."""

from __future__ import annotations

import csv
import errno
import io
import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_emogate.cli import main
from pytest_emogate.evaluate.metrics import GateResult, compute_result, score_samples
from pytest_emogate.evaluate.verdict import judge
from pytest_emogate.formats import sparkline
from pytest_emogate.history import SCHEMA, git_commit, load_runs, record_run, run_of
from pytest_emogate.predictions import read_predictions
from tests.conftest import REPO, SEED, THRESHOLDS

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
PASSING = (
    THRESHOLDS.read_text(encoding="utf-8")
    .replace("max_invalid: 0", "max_invalid: 1")
    .replace("surprise: 0.35 ", "surprise: 0.40 ")
)
"""The seed passes; the slipped candidate (5/14 surprise) fails its surprise floor."""
SLIPPED = REPO / "fixtures" / "candidate_1_surprise_broken.csv"


@pytest.fixture(scope="module")
def seed() -> GateResult:
    """The published run."""
    return compute_result(score_samples(read_predictions(SEED, LABELS), LABELS), LABELS)


NONE = judge([], {})
"""The verdict of a gate that declares no check."""
PROVENANCE = {"checkpoint_sha256": None, "data_fingerprint": "fp", "predictions_sha256": "p", "thresholds_sha256": "t"}


def test_a_run_round_trips(tmp_path: Path, seed: GateResult) -> None:
    db = tmp_path / "deep" / "history.sqlite"
    verdict = judge(
        ["label_validity", "overall[accuracy]"], {"label_validity": "failed", "overall[accuracy]": "passed"}
    )
    run = run_of(seed, verdict, PROVENANCE, "abc123")
    assert record_run(db, run) == 1
    (stored,) = load_runs(db)
    assert stored.id == 1 and stored.git_commit == "abc123" and stored.data_fingerprint == "fp"
    assert (stored.passed, stored.failed_checks, stored.n) == (False, ("label_validity",), 834)
    assert (stored.verdict, stored.not_run) == ("failed", ())
    assert stored.metrics == dict(seed.metrics)
    assert stored.per_class["surprise"] == {"n": 14, "correct": 6, "recall": 6 / 14,
                                            "recall_low": seed.per_class["surprise"].recall_ci95[0],
                                            "recall_high": seed.per_class["surprise"].recall_ci95[1],
                                            "precision": 6 / 11, "f1": seed.per_class["surprise"].f1}  # fmt: skip
    assert list(stored.per_class) == list(LABELS)


def test_last_runs_of_one_data_set(tmp_path: Path, seed: GateResult) -> None:
    db = tmp_path / "history.sqlite"
    for fingerprint in ("a", "b", "a", "a"):
        record_run(db, run_of(seed, NONE, {**PROVENANCE, "data_fingerprint": fingerprint}, None))
    assert [run.id for run in load_runs(db, last=2, data_fingerprint="a")] == [3, 4]
    assert [run.id for run in load_runs(db)] == [1, 2, 3, 4]


def _write_runs(db: str) -> list[int]:
    result = compute_result(score_samples(read_predictions(SEED, LABELS), LABELS), LABELS)
    return [record_run(Path(db), run_of(result, NONE, PROVENANCE, None)) for _ in range(5)]


@pytest.mark.slow
def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        ids = sorted(run_id for batch in pool.map(_write_runs, [str(db)] * 4) for run_id in batch)
    assert ids == list(range(1, 21))
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("SELECT COUNT(*) FROM run_classes").fetchone() == (20 * 6,)
        assert connection.execute("SELECT COUNT(*) FROM run_metrics").fetchone() == (20 * 8,)


def test_bad_files_are_usage_errors(tmp_path: Path, seed: GateResult) -> None:
    with pytest.raises(pytest.UsageError, match=r"^history .*missing\.sqlite: no such file; run the gate"):
        load_runs(tmp_path / "missing.sqlite")
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database, just text" * 100)
    with pytest.raises(pytest.UsageError, match=r"garbage\.sqlite: expected an emogate SQLite history, found: file "
                       r"is not a database"):  # fmt: skip
        record_run(garbage, run_of(seed, NONE, PROVENANCE, None))
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as connection:
        connection.execute("PRAGMA user_version = 7")
    with pytest.raises(pytest.UsageError, match=r"schema version 7 is newer than this pytest-emogate's 2"):
        record_run(newer, run_of(seed, NONE, PROVENANCE, None))


def test_a_version_1_history_is_migrated(tmp_path: Path, seed: GateResult) -> None:
    db = tmp_path / "v1.sqlite"
    v1_schema = SCHEMA.replace(",\n    verdict TEXT,\n    not_run TEXT", "")
    assert "verdict" not in v1_schema
    with sqlite3.connect(db) as connection:
        connection.executescript(v1_schema + "PRAGMA user_version = 1;")
        connection.execute("INSERT INTO runs (time, thresholds_sha256, n, passed, failed_checks) "
                           "VALUES ('2026-01-01T00:00:00+00:00', 't', 834, 0, '[\"label_validity\"]')")  # fmt: skip
    (old,) = load_runs(db)
    assert (old.verdict, old.failed_checks, old.not_run) == ("failed", ("label_validity",), ())
    record_run(db, run_of(seed, judge(["label_validity"], {}), PROVENANCE, None))
    assert [(run.verdict, run.not_run) for run in load_runs(db)] == [
        ("failed", ()),
        ("incomplete", ("label_validity",)),
    ]


def test_sparkline() -> None:
    assert sparkline([]) == ""
    assert sparkline([0.5, 0.5, 0.5]) == "▄▄▄"
    assert sparkline([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([6 / 14, 5 / 14, 6 / 14]) == "█▁█"


@pytest.mark.slow
def test_git_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SHA", "feedbeef")
    assert git_commit(tmp_path) == "feedbeef"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)  # fmt: skip
    commit = git_commit(tmp_path)
    assert commit is not None and len(commit) == 40 and commit != "feedbeef"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with a passing gate on the seed, and the slipped candidate."""
    pytester.makefile(".yaml", thresholds=PASSING)
    (pytester.path / "preds.csv").write_bytes(SEED.read_bytes())
    (pytester.path / "slipped.csv").write_bytes(SLIPPED.read_bytes())
    return pytester


def test_history_across_runs_shows_the_trend(project: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    for answers in ("preds.csv", "slipped.csv", "preds.csv"):
        result = project.runpytest("--emogate-predictions", answers)
    result.stdout.fnmatch_lines(
        [
            "Per-class recall, last 3 runs on this data (.emogate/history.sqlite)",
            "class *trend *first *last",
            "neutral *▄▄▄ *80.7% *80.7%",
            "surprise *█▁█ *42.9% *42.9%",
            "emogate verdict: PASSED (15 checks)",
        ]
    )
    db = project.path / ".emogate" / "history.sqlite"
    assert [run.passed for run in load_runs(db)] == [True, False, True]
    capsys.readouterr()
    assert main(["history", "--db", str(db)]) == 0
    shown = capsys.readouterr().out
    assert "3 runs, oldest first" in shown and "FAIL 1" in shown and "surprise" in shown and "35.7%" in shown
    assert main(["history", "--db", str(db), "--csv", "-"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["id"] for row in rows] == ["1", "2", "3"]
    assert rows[1]["failed_checks"] == "class_floor[surprise]" and rows[1]["surprise_correct"] == "5"
    assert float(rows[0]["accuracy"]) == pytest.approx(756 / 834)
    exported = project.path / "runs.csv"
    assert main(["history", "--db", str(db), "--csv", str(exported), "--last", "2"]) == 0
    assert len(exported.read_text(encoding="utf-8").splitlines()) == 3


def test_no_history_and_other_paths(project: pytest.Pytester) -> None:
    project.runpytest("--emogate-predictions", "preds.csv", "--emogate-no-history")
    assert not (project.path / ".emogate").exists()
    project.runpytest("--emogate-predictions", "preds.csv", "--emogate-history", "ci/runs.sqlite")
    assert len(load_runs(project.path / "ci" / "runs.sqlite")) == 1
    project.makeini("[pytest]\nemogate_history = from_ini.sqlite\n")
    project.runpytest("--emogate-predictions", "preds.csv", "-v").stdout.fnmatch_lines(
        ["emogate: recorded run #1 in from_ini.sqlite"]
    )


def test_the_command_reports_a_missing_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "none.sqlite: no such file" in capsys.readouterr().err


def test_a_broken_history_stops_the_run_at_the_start(project: pytest.Pytester) -> None:
    (project.path / "broken.sqlite").write_bytes(b"not a database, just text" * 100)
    result = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-history", "broken.sqlite")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: history */broken.sqlite: expected an emogate SQLite history, found: file "
                                 "is not a database"])  # fmt: skip
    with sqlite3.connect(project.path / "foreign.sqlite") as connection:
        connection.execute("CREATE TABLE songs (title TEXT)")
    result = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-history", "foreign.sqlite")
    result.stderr.fnmatch_lines(["*Pass another --emogate-history or --emogate-no-history; the file was not changed"])


def test_collect_only_records_nothing(project: pytest.Pytester) -> None:
    project.runpytest("--emogate-predictions", "preds.csv", "--collect-only")
    assert not (project.path / ".emogate").exists()


# --- the history as a DataFrame (pandas) ----------------------------------------------------------------------


def test_the_frame_has_the_columns_and_values_the_csv_has(tmp_path: Path, seed: GateResult) -> None:
    import dataclasses

    from pytest_emogate.cli import csv_text
    from pytest_emogate.history import frame

    db = tmp_path / "history.sqlite"
    failed = judge(["label_validity", "overall[uar]"], {"label_validity": "failed"})
    record_run(db, run_of(seed, NONE, PROVENANCE, "abc123"))
    partial = run_of(seed, failed, {**PROVENANCE, "data_fingerprint": None}, None)
    record_run(db, dataclasses.replace(partial, per_class={"sad": partial.per_class["sad"]}, metrics={"uar": 0.5}))
    runs = frame(db)
    assert runs.to_csv(index=False, lineterminator="\n") == csv_text(load_runs(db))  # the same columns and values
    assert runs.id.tolist() == [1, 2] and runs.dtypes["id"] == "int64" and runs.dtypes["n"] == "int64"
    assert runs.passed.tolist() == [True, False] and runs.dtypes["passed"] == "bool"
    assert runs.failed_checks.tolist() == ["", "label_validity"] and runs.not_run.tolist() == ["", "overall[uar]"]
    assert runs.accuracy[0] == seed.metrics["accuracy"] and runs.accuracy.isna()[1] and runs.uar[1] == 0.5
    assert runs.dtypes["surprise_n"] == "Int64" and runs.surprise_correct.tolist()[0] == 6
    assert runs.surprise_correct.isna()[1] and runs.sad_n.tolist() == [257, 257]
    assert runs.dtypes["surprise_recall_low"] == "float64"
    assert runs.git_commit[0] == "abc123" and runs.git_commit.isna()[1] and runs.data_fingerprint.isna()[1]
    assert frame(db, last=1).id.tolist() == [2] and frame(db, data_fingerprint="fp").id.tolist() == [1]


def test_an_empty_history_is_an_empty_frame_with_the_run_columns(tmp_path: Path) -> None:
    from pytest_emogate.history import RUN_FIELDS, frame

    db = tmp_path / "empty.sqlite"
    sqlite3.connect(db).close()
    runs = frame(db)
    assert runs.empty and list(runs.columns[: len(RUN_FIELDS)]) == list(RUN_FIELDS)


def test_the_frame_of_a_missing_or_foreign_file_is_the_commands_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_emogate.history import frame

    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE songs (title TEXT)")
    for path in (tmp_path / "none.sqlite", foreign):
        with pytest.raises(pytest.UsageError) as raised:
            frame(path)
        assert main(["history", "--db", str(path), "--csv", "-"]) == 2
        assert capsys.readouterr().err == f"emogate: {raised.value}\n"
        assert "--emogate" not in str(raised.value)  # no pytest options outside pytest
    assert "Name another history file; the file was not changed" in str(raised.value)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ModuleNotFoundError, match=r"history.frame\(\) needs pandas.*pip install pandas"):
        frame(tmp_path / "none.sqlite")


def test_the_package_reaches_the_history_module_lazily() -> None:
    import pytest_emogate

    assert pytest_emogate.history.frame.__module__ == "pytest_emogate.history"


def test_an_empty_database_holds_no_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "empty.sqlite"
    db.touch()
    assert load_runs(db) == []
    assert main(["history", "--db", str(db)]) == 0
    assert capsys.readouterr().out == f"emogate history: {db} holds no runs yet\n"


# --- what a history holds is data: tampered rows, locked files, a full disk -------------------------------------

TAMPERED = [
    ("UPDATE runs SET failed_checks = 'not json' WHERE id = 2",
     "failed_checks: expected a JSON list of check ids, found text 'not json'"),
    ("UPDATE runs SET failed_checks = '{\"a\": 1}' WHERE id = 2", "failed_checks: expected a JSON list of check ids"),
    ("UPDATE runs SET not_run = '[1]' WHERE id = 2", "not_run: expected a JSON list of check ids, found text '[1]'"),
    ("UPDATE runs SET n = NULL WHERE id = 2", "n: expected a whole number from 0 to 1,000,000,000,000,000, found NULL"),
    ("UPDATE runs SET passed = 'yes' WHERE id = 2", "passed: expected 0 or 1, found text 'yes'"),
    ("UPDATE runs SET time = NULL WHERE id = 2", "time: expected text of at most 100,000 characters, found NULL"),
    ("UPDATE runs SET verdict = 'maybe' WHERE id = 2", "verdict: expected one of passed, failed, incomplete"),
    ("UPDATE runs SET git_commit = x'00ff' WHERE id = 2", "git_commit: expected text of at most 100,000 characters, "
                                                          "found a blob b'\\x00\\xff'"),
    ("UPDATE runs SET git_commit = hex(zeroblob(100000)) WHERE id = 2", "found text over 100,000 characters"),
    ("UPDATE run_metrics SET value = 'abc' WHERE run_id = 2 AND name = 'accuracy'",
     "metric 'accuracy': expected a number from 0 to 1, found text 'abc'"),
    ("UPDATE run_metrics SET value = 9e999 WHERE run_id = 2 AND name = 'uar'",
     "metric 'uar': expected a number from 0 to 1, found real inf"),
    ("UPDATE run_classes SET recall = NULL WHERE run_id = 2 AND label = 'sad'",
     "class 'sad' recall: expected a number from 0 to 1, found NULL"),
    ("UPDATE run_classes SET correct = 300 WHERE run_id = 2 AND label = 'sad'",
     "class 'sad': expected correct <= n, found 300 > 257"),
    ("UPDATE run_classes SET label = x'01' WHERE run_id = 2 AND label = 'sad'",
     "run_classes.label: expected text of at most 100,000 characters, found a blob b'\\x01'"),
]  # fmt: skip


def tampered(db: Path, seed: GateResult, statement: str) -> Path:
    """A history of three runs whose second was changed by `statement`, in tables without NOT NULL (a file
    written by another tool or by hand has only the column names checked)."""
    with sqlite3.connect(db) as connection:
        connection.executescript(SCHEMA.replace(" NOT NULL", "") + "PRAGMA user_version = 2;")
    for _ in range(3):
        record_run(db, run_of(seed, NONE, PROVENANCE, "abc123"))
    with sqlite3.connect(db) as connection:
        connection.execute(statement)
    return db


@pytest.mark.parametrize(("statement", "problem"), TAMPERED)
def test_a_tampered_run_is_skipped_and_named(
    tmp_path: Path, seed: GateResult, capsys: pytest.CaptureFixture[str], statement: str, problem: str
) -> None:
    from pytest_emogate.history import frame

    db = tampered(tmp_path / "history.sqlite", seed, statement)
    runs = load_runs(db)
    assert [run.id for run in runs] == [1, 3]
    assert len(runs.skipped) == 1 and runs.skipped[0].startswith("run #2: ") and problem in runs.skipped[0]
    with pytest.warns(UserWarning, match=r"skipped 1 stored run that could not be read: run #2: "):
        assert frame(db).id.tolist() == [1, 3]
    assert main(["history", "--db", str(db)]) == 0
    printed = capsys.readouterr()
    assert "2 runs, oldest first" in " ".join(printed.out.split())
    assert printed.err.startswith(f"emogate: history {db}: skipped 1 stored run") and problem in printed.err
    assert main(["history", "--db", str(db), "--csv", "-"]) == 0
    assert [row["id"] for row in csv.DictReader(io.StringIO(capsys.readouterr().out))] == ["1", "3"]


def test_a_tampered_run_never_stops_the_gate(project: pytest.Pytester) -> None:
    """The trend reads the history after every test has passed: a bad row there is a note, not a traceback."""
    assert project.runpytest("--emogate-predictions", "preds.csv").ret == pytest.ExitCode.OK
    with sqlite3.connect(project.path / ".emogate" / "history.sqlite") as connection:
        connection.execute("UPDATE runs SET failed_checks = 'oops' WHERE id = 1")
    result = project.runpytest("--emogate-predictions", "preds.csv")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "emogate verdict: PASSED (15 checks)",
            "emogate: history .emogate/history.sqlite: skipped 1 stored run that could not be read: run #1: "
            "failed_checks: expected a JSON list of check ids, found text 'oops'",
        ]
    )
    assert [run.id for run in load_runs(project.path / ".emogate" / "history.sqlite")] == [2]


def test_a_locked_history_is_said_to_be_locked(
    tmp_path: Path, seed: GateResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_emogate import history

    db = tmp_path / "history.sqlite"
    record_run(db, run_of(seed, NONE, PROVENANCE, None))
    monkeypatch.setattr(history, "BUSY_TIMEOUT_S", 0.1)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        for attempt in (lambda: record_run(db, run_of(seed, NONE, PROVENANCE, None)), lambda: load_runs(db)):
            with pytest.raises(pytest.UsageError, match=r"history .*history\.sqlite: locked by another process for "
                               r"0\.1 s \(database is locked\); let it finish, or pass another"):  # fmt: skip
                attempt()
    finally:
        blocker.close()
    assert len(load_runs(db)) == 1


def test_a_full_disk_is_called_a_full_disk(tmp_path: Path, seed: GateResult, monkeypatch: pytest.MonkeyPatch) -> None:
    connect = sqlite3.connect

    def one_page(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = connect(*args, **kwargs)
        connection.execute("PRAGMA max_page_count = 1")  # the schema does not fit: SQLITE_FULL
        return connection

    with monkeypatch.context() as patched:
        patched.setattr(sqlite3, "connect", one_page)
        with pytest.raises(pytest.UsageError, match=r"history .*full\.sqlite: the disk is full \(database or disk is "
                           r"full\); the run was not recorded: free some space on it, or pass another"):  # fmt: skip
            record_run(tmp_path / "full.sqlite", run_of(seed, NONE, PROVENANCE, None))

    def no_space(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "mkdir", no_space)
    with pytest.raises(pytest.UsageError, match=r"new\.sqlite: the disk is full \(No space left on device\)"):
        record_run(tmp_path / "folder" / "new.sqlite", run_of(seed, NONE, PROVENANCE, None))


@pytest.mark.parametrize("last", [0, -1, True, 2.5])
def test_a_count_of_runs_below_one_is_refused(tmp_path: Path, seed: GateResult, last: Any) -> None:
    from pytest_emogate.history import frame

    db = tmp_path / "history.sqlite"
    record_run(db, run_of(seed, NONE, PROVENANCE, None))
    for read in (load_runs, frame):
        with pytest.raises(ValueError, match=r"last: expected a whole number of runs, at least 1 \(or None for all\)"):
            read(db, last=last)


def test_an_empty_csv_path_is_refused(tmp_path: Path, seed: GateResult, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "history.sqlite"
    record_run(db, run_of(seed, NONE, PROVENANCE, None))
    with pytest.raises(SystemExit) as exited:
        main(["history", "--db", str(db), "--csv", ""])
    assert exited.value.code == 2
    printed = capsys.readouterr()
    assert printed.out == "" and "--csv: expected a file path, or '-' for stdout; found an empty string" in printed.err
