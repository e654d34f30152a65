"""The SQLite run history: round trip, concurrent writers, bad files, the summary's trend and `emogate history`."""

from __future__ import annotations

import csv
import io
import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path

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
