"""Outputs under hostile paths: symlinks stay symlinks, devices and FIFOs are never replaced, every output path is
checked before any test runs, killed writes leave nothing behind, and a foreign SQLite file is never touched."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from pytest_emogate.cli import main
from pytest_emogate.files import (
    TEMPORARY_SUFFIX,
    FileProblem,
    atomic_write_bytes,
    atomic_write_text,
    output_problem,
    remove_stale_temporaries,
)
from pytest_emogate.history import check_history, load_runs
from pytest_emogate.predictions import read_predictions
from tests.conftest import SEED, THRESHOLDS, TINY, sliced_manifest

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
PASSING = THRESHOLDS.read_text(encoding="utf-8").replace("max_invalid: 0", "max_invalid: 1")
PASSING = PASSING.replace("surprise: 0.35 ", "surprise: 0.30 ")
"""The shipped thresholds with room for the seed's one 'doubt': the seed passes."""
RATCHETABLE = """\
labels: [neutral, angry, happy, sad, worried, surprise]
invalid: neutral
overall:
  accuracy: 0.80
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project whose gate passes on the seed (preds.csv)."""
    pytester.makefile(".yaml", thresholds=PASSING)
    (pytester.path / "preds.csv").write_bytes(SEED.read_bytes())
    return pytester


def finishes(target: object, *args: object, seconds: float = 10.0) -> None:
    """Run target(*args) in a thread; fail (instead of hanging the suite) when it does not return in time."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target(*args)  # type: ignore[operator]
        except BaseException as error:  # re-raised in the test's thread
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{target} did not return within {seconds} s"
    if errors:
        raise errors[0]


def device(folder: Path, name: str) -> Path:
    """A character device of our own in `folder`: 'null' (1, 3) or 'full' (1, 7), as /dev has them. The tests
    never write the real /dev nodes: on code with the defect, as root, that would replace them for the machine."""
    path = folder / name
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, {"null": 3, "full": 7}[name]))
    path.chmod(0o666)
    return path


# --- the atomic writer ----------------------------------------------------------------------------------------


def test_a_symlink_stays_a_symlink_and_its_target_gets_the_new_content(tmp_path: Path) -> None:
    target = tmp_path / "real" / "report.json"
    target.parent.mkdir()
    target.write_text("old", encoding="utf-8")
    link = tmp_path / "report.json"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text(encoding="utf-8") == "new"


def test_a_chain_of_symlinks_and_a_dangling_one_write_their_final_target(tmp_path: Path) -> None:
    final = tmp_path / "final.txt"
    (tmp_path / "middle").symlink_to(final)
    (tmp_path / "first").symlink_to(tmp_path / "middle")
    atomic_write_text(tmp_path / "first", "through two links")  # the final target does not exist yet
    assert (tmp_path / "first").is_symlink() and (tmp_path / "middle").is_symlink()
    assert final.read_text(encoding="utf-8") == "through two links"


def test_a_dangling_symlink_into_a_missing_folder_is_refused_at_start(tmp_path: Path) -> None:
    """The folders of a path the user wrote may be made; the folders a link points at never are (a link to
    /nonexistent/x.html made /nonexistent)."""
    from pytest_emogate.files import output_problem

    link = tmp_path / "page.html"
    link.symlink_to(tmp_path / "nowhere" / "deeper" / "page.html")
    problem = output_problem(link)
    assert problem is not None and "is a symlink to" in problem and "whose folder does not exist" in problem
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "there").mkdir()
    into_folder = tmp_path / "ok.html"
    into_folder.symlink_to(tmp_path / "there" / "ok.html")
    assert output_problem(into_folder) is None  # a dangling link into an existing folder is written through
    assert output_problem(tmp_path / "new" / "plain.html") is None  # the user's own missing folders are made


def test_a_replaced_file_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "kept.txt"
    path.write_text("old", encoding="utf-8")
    path.chmod(0o640)
    atomic_write_text(path, "new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text(encoding="utf-8") == "new"


def test_a_character_device_is_written_never_replaced(tmp_path: Path) -> None:
    null = device(tmp_path, "null")
    atomic_write_text(null, "into the void")
    assert stat.S_ISCHR(os.stat(null).st_mode)
    (tmp_path / "stdout").symlink_to(null)  # /dev/stdout is a symlink to a device
    atomic_write_text(tmp_path / "stdout", "through a link")
    assert (tmp_path / "stdout").is_symlink() and stat.S_ISCHR(os.stat(null).st_mode)


def test_a_full_device_is_an_error_and_stays_a_device(tmp_path: Path) -> None:
    full = device(tmp_path, "full")
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(full, b"x" * 100_000)
    assert stat.S_ISCHR(os.stat(full).st_mode)


def test_a_fifo_is_written_directly_when_read_and_refused_at_once_when_nobody_reads(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FileProblem, match="a FIFO that nobody reads"):
        finishes(atomic_write_text, fifo, "lost")
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    finishes(lambda: _write_when_read(fifo))
    reader.join(10)
    assert received == [b"piped"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def _write_when_read(fifo: Path) -> None:
    for _ in range(200):  # the reader thread opens the FIFO soon
        try:
            atomic_write_text(fifo, "piped")
            return
        except FileProblem:
            threading.Event().wait(0.02)
    raise AssertionError("the reader never opened the FIFO")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileProblem, match="is a directory"):
        atomic_write_text(tmp_path, "x")


def test_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    dead = tmp_path / f".report.json.{_dead_pid()}{TEMPORARY_SUFFIX}"
    alive = tmp_path / f".report.json.{os.getppid()}{TEMPORARY_SUFFIX}"  # a running process: maybe mid-write
    other = tmp_path / f".other.json.{_dead_pid()}{TEMPORARY_SUFFIX}"  # another file's: not ours to judge now
    for path in (dead, alive, other):
        path.write_text("half", encoding="utf-8")
    atomic_write_text(target, "{}")
    assert not dead.exists() and alive.exists() and other.exists()
    remove_stale_temporaries(tmp_path / "other.json")
    assert not other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "report.json"]


def _dead_pid() -> int:
    """A pid no process has now (a child that has exited and been reaped)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


# --- output paths checked at the start ----------------------------------------------------------------------


def test_output_problem_names_each_unusable_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a_file").write_text("x", encoding="utf-8")
    assert output_problem(tmp_path / "a_file" / "report.json") == f"{tmp_path / 'a_file'} is not a folder"
    assert output_problem(tmp_path) == "is a directory; expected the path of a file"
    assert output_problem(tmp_path / "new" / "deeper" / "report.json") is None  # folders are made when written
    assert output_problem(device(tmp_path, "null")) is None
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(tmp_path) and real_access(path, mode))
    assert output_problem(tmp_path / "report.json") == f"its folder {tmp_path} is not writable"
    assert output_problem(tmp_path / "sub" / "report.json") == (
        f"its folder {tmp_path} is not writable, so the folders below cannot be made"
    )


def test_every_unusable_output_path_is_exit_4_before_any_test_runs(project: pytest.Pytester) -> None:
    (project.path / "a_file").write_text("x", encoding="utf-8")
    (project.path / "a_dir").mkdir()
    result = project.runpytest(
        "--emogate-predictions", "preds.csv", "--emogate-report", "a_file/report.json",
        "--emogate-markdown", "a_dir", "--emogate-plot", "a_file/plot.png", "--emogate-history", "a_file/h.sqlite",
        "--emogate-save-predictions", "a_dir", "--emogate-update-baseline", "base.txt",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: emogate outputs: 6 problems",
        "  - --emogate-report */a_file/report.json: */a_file is not a folder",
        "  - --emogate-save-predictions */a_dir: is a directory; expected the path of a file",
        "  - --emogate-markdown */a_dir: is a directory; expected the path of a file",
        "  - --emogate-plot */a_file/plot.png: */a_file is not a folder",
        "  - --emogate-history */a_file/h.sqlite: */a_file is not a folder",
        "  - --emogate-update-baseline */base.txt: expected a .csv or .jsonl file name (the format the suffix names), "
        "found '.txt'",
    ])  # fmt: skip
    assert "passed" not in result.stdout.str() and not (project.path / ".emogate").exists()


def test_the_step_summary_path_is_checked_at_the_start(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project.path / "a_dir").mkdir()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(project.path / "a_dir"))
    result = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-no-history")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["  - $GITHUB_STEP_SUMMARY */a_dir: is a directory; expected the path of a file"])


def test_a_report_into_a_null_device_keeps_the_device(project: pytest.Pytester) -> None:
    null = device(project.path, "null")
    result = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-report", "null", "--emogate-no-history")
    assert result.ret == pytest.ExitCode.OK
    assert stat.S_ISCHR(os.stat(null).st_mode)


def test_a_report_that_cannot_be_written_at_the_end_is_named_and_never_exit_0(project: pytest.Pytester) -> None:
    full = device(project.path, "full")
    result = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-report", "full",
                               "--emogate-markdown", "summary.md", "--emogate-no-history")  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["emogate: --emogate-report full was NOT written: No space left on device"])
    assert (project.path / "summary.md").is_file()  # the other outputs are still written
    assert stat.S_ISCHR(os.stat(full).st_mode)


def test_a_symlinked_baseline_is_updated_through_the_link(project: pytest.Pytester) -> None:
    (project.path / "baselines").mkdir()
    real = project.path / "baselines" / "accepted.jsonl"
    real.write_text("stale\n", encoding="utf-8")
    (project.path / "baseline.jsonl").symlink_to(real)
    result = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-update-baseline", "baseline.jsonl",
                               "--emogate-no-history")  # fmt: skip
    assert result.ret == pytest.ExitCode.OK
    assert (project.path / "baseline.jsonl").is_symlink()
    assert read_predictions(real, LABELS) == read_predictions(SEED, LABELS)


def test_a_symlinked_thresholds_file_is_ratcheted_through_the_link(pytester: pytest.Pytester) -> None:
    (pytester.path / "config").mkdir()
    real = pytester.path / "config" / "gate.yaml"
    real.write_text(RATCHETABLE, encoding="utf-8")
    (pytester.path / "thresholds.yaml").symlink_to(real)
    (pytester.path / "preds.csv").write_bytes(SEED.read_bytes())
    result = pytester.runpytest("--emogate-predictions", "preds.csv", "--emogate-ratchet", "--emogate-no-history")
    assert result.ret == pytest.ExitCode.OK
    assert (pytester.path / "thresholds.yaml").is_symlink()
    assert "accuracy: 0.8\n" not in real.read_text(encoding="utf-8").replace("0.80", "0.8")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_update_baseline_writes_the_format_its_suffix_names(project: pytest.Pytester, suffix: str) -> None:
    result = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-update-baseline", f"new{suffix}",
                               "--emogate-save-predictions", f"saved{suffix}", "--emogate-no-history")  # fmt: skip
    assert result.ret == pytest.ExitCode.OK
    for name in ("new", "saved"):
        written = project.path / f"{name}{suffix}"
        assert written.read_bytes().startswith(b"name,label,output" if suffix == ".csv" else b'{"name": ')
        assert read_predictions(written, LABELS) == read_predictions(SEED, LABELS)
    again = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-baseline", f"new{suffix}",
                              "--emogate-no-history")  # fmt: skip
    assert again.ret == pytest.ExitCode.OK


# --- the run history ------------------------------------------------------------------------------------------


def _foreign_database(path: Path) -> bytes:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        db.execute("INSERT INTO users (email) VALUES ('someone@example.org')")
    db.close()
    return path.read_bytes()


def test_a_foreign_sqlite_file_is_refused_at_the_start_and_left_untouched(project: pytest.Pytester) -> None:
    before = _foreign_database(project.path / "app.sqlite")
    result = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-history", "app.sqlite")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: history */app.sqlite: not an emogate history (schema version 0; tables users(id, email)); expected "
        "an empty file or one that pytest-emogate wrote.*"
    ])  # fmt: skip
    assert (project.path / "app.sqlite").read_bytes() == before
    assert "passed" not in result.stdout.str()


def test_a_runs_table_with_other_columns_is_refused_at_the_start(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, started TEXT)")
        db.execute("PRAGMA user_version = 2")
    db.close()
    with pytest.raises(pytest.UsageError, match=r"not an emogate history \(schema version 2; tables runs\(id, started"):
        check_history(path)


def test_an_empty_file_becomes_a_history(project: pytest.Pytester) -> None:
    (project.path / "empty.sqlite").write_bytes(b"")
    result = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-history", "empty.sqlite")
    assert result.ret == pytest.ExitCode.OK
    assert len(load_runs(project.path / "empty.sqlite")) == 1


def test_a_fifo_as_history_is_refused_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "history.sqlite")
    with pytest.raises(
        pytest.UsageError, match=r"history .*history.sqlite: is a FIFO \(named pipe\); expected a regular"
    ):
        finishes(check_history, tmp_path / "history.sqlite")


# --- emogate history ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("last", ["0", "-1", "two", "99999999999999999999"])
def test_history_last_must_be_a_positive_count(last: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["history", "--last", last])
    assert stop.value.code == 2
    assert "--last: expected a whole number of runs from 1 to 1,000,000,000; found" in capsys.readouterr().err


def test_history_csv_into_a_missing_folder_is_written_and_into_a_file_is_an_error(
    project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    project.runpytest("--emogate-predictions", "preds.csv", "--emogate-history", "h.sqlite")
    db = str(project.path / "h.sqlite")
    assert main(["history", "--db", db, "--csv", str(project.path / "exports" / "runs.csv")]) == 0
    assert (project.path / "exports" / "runs.csv").read_text(encoding="utf-8").startswith("id,time,")
    capsys.readouterr()
    assert main(["history", "--db", db, "--csv", str(project.path / "preds.csv" / "runs.csv")]) == 2
    assert capsys.readouterr().err == (f"emogate: --csv {project.path / 'preds.csv' / 'runs.csv'}: "
                                       f"{project.path / 'preds.csv'} is not a folder\n")  # fmt: skip


def test_a_step_summary_fifo_nobody_reads_is_named_not_waited_for(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.mkfifo(project.path / "summary.fifo")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(project.path / "summary.fifo"))
    result = project.runpytest_subprocess("--emogate-predictions", "preds.csv", "--emogate-no-history", timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(
        ["emogate: $GITHUB_STEP_SUMMARY summary.fifo was NOT written: is a FIFO that nobody reads"]
    )


# --- inputs are never outputs ---------------------------------------------------------------------------------


def test_an_output_that_names_an_input_or_another_output_is_refused_before_anything_is_written(
    project: pytest.Pytester,
) -> None:
    (project.path / "base.csv").write_bytes(SEED.read_bytes())
    (project.path / "rules.yaml").symlink_to(project.path / "thresholds.yaml")
    os.link(project.path / "base.csv", project.path / "accepted.csv")
    (project.path / "sub").mkdir()
    inputs = {name: (project.path / name).read_bytes() for name in ("preds.csv", "thresholds.yaml", "base.csv")}
    result = project.runpytest(
        "--emogate-predictions=preds.csv", "--emogate-baseline=base.csv", "--emogate-report=./preds.csv",
        "--emogate-markdown=rules.yaml", "--emogate-save-predictions=accepted.csv", "--emogate-html=page.html",
        "--emogate-plot=sub/../page.html", f"--emogate-history={project.path / 'page.html'}",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: emogate outputs: 5 problems",
        "  - --emogate-report */preds.csv: names the same file as --emogate-predictions */preds.csv; expected a file "
        "of its own (an output never overwrites an input)",
        "  - --emogate-save-predictions */accepted.csv: names the same file as --emogate-baseline */base.csv; *",
        "  - --emogate-markdown */rules.yaml: names the same file as --emogate-thresholds */thresholds.yaml; *",
        "  - --emogate-html */page.html: names the same file as --emogate-plot */sub/../page.html; expected a file "
        "of its own (an output never overwrites another output)",
        "  - --emogate-history */page.html: names the same file as --emogate-plot */sub/../page.html; *",
    ])  # fmt: skip
    assert {name: (project.path / name).read_bytes() for name in inputs} == inputs
    assert not (project.path / "page.html").exists() and not (project.path / ".emogate").exists()


def test_the_update_steps_may_replace_their_own_input_and_devices_take_any_number_of_outputs(
    project: pytest.Pytester,
) -> None:
    (project.path / "base.csv").write_bytes(SEED.read_bytes())
    null = device(project.path, "null")
    result = project.runpytest(
        "--emogate-predictions=preds.csv", "--emogate-baseline=base.csv", "--emogate-update-baseline=./base.csv",
        "--emogate-ratchet", f"--emogate-report={null}", f"--emogate-markdown={null}", "--emogate-no-history",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    assert read_predictions(project.path / "base.csv", LABELS) == read_predictions(SEED, LABELS)
    assert stat.S_ISCHR(os.stat(null).st_mode)


def test_a_data_file_is_never_an_output(pytester: pytest.Pytester) -> None:
    pytest.importorskip("torch")
    manifest = sliced_manifest(pytester.path, 12)
    (pytester.path / "thresholds.yaml").write_text("labels: [neutral, angry, happy, sad, worried, surprise]\n"
                                                  "overall: {accuracy: 0.5}\n", encoding="utf-8")  # fmt: skip
    annotation = (pytester.path / "annotation.txt").read_bytes()
    result = pytester.runpytest(
        "--co", f"--emogate-ckpt={TINY / 'checkpoint_best.pth'}", f"--emogate-llama={TINY / 'llama'}",
        f"--emogate-vit={TINY / 'eva_vit_g.pth'}", f"--emogate-data={manifest}", "--emogate-no-cache",
        "--emogate-report=annotation.txt", "--emogate-markdown=manifest.yaml", "--emogate-no-history",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: emogate outputs: 2 problems",
        "  - --emogate-report */annotation.txt: names the same file as the annotation file of --emogate-data "
        "*/annotation.txt; *",
        "  - --emogate-markdown */manifest.yaml: names the same file as --emogate-data */manifest.yaml; *",
    ])  # fmt: skip
    assert (pytester.path / "annotation.txt").read_bytes() == annotation


# --- no stale verdicts ----------------------------------------------------------------------------------------


def _report(project: pytest.Pytester, name: str = "report.json") -> dict[str, object]:
    return json.loads((project.path / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--emogate-predictions=preds.csv", "--emogate-thresholds=broken.yaml"), "thresholds file */broken.yaml: *"),
        (("--emogate-predictions=preds.csv", "--emogate-markdown=preds.csv"), "emogate outputs: 1 problem"),
        (("--emogate-dtype=float16",), "*--emogate-dtype* given without an answer source: *"),
    ],
)
def test_a_usage_error_at_the_start_replaces_the_last_report_with_an_error_report(
    project: pytest.Pytester, args: tuple[str, ...], said: str
) -> None:
    (project.path / "broken.yaml").write_text("labels: [neutral\n", encoding="utf-8")
    passed = project.runpytest("--emogate-predictions=preds.csv", "--emogate-report=report.json")
    assert passed.ret == pytest.ExitCode.OK and _report(project)["passed"] is True
    result = project.runpytest(*args, "--emogate-report=report.json", "--emogate-no-history")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(['emogate: --emogate-report report.json records this usage error (verdict "error", '
                                 'passed false)', f"ERROR: {said}"])  # fmt: skip
    data = _report(project)
    assert (data["verdict"], data["passed"], data["checks"]) == ("error", False, [])
    assert str(data["error"]).splitlines()[0] == result.stderr.lines[1].removeprefix("ERROR: ")


def test_a_report_path_that_is_the_problem_or_holds_something_else_is_never_written(project: pytest.Pytester) -> None:
    before = (project.path / "preds.csv").read_bytes()
    result = project.runpytest("--emogate-predictions=preds.csv", "--emogate-report=preds.csv")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["emogate: --emogate-report preds.csv was NOT written with this usage error: it is "
                                 "also the path of --emogate-predictions (preds.csv)"])  # fmt: skip
    assert (project.path / "preds.csv").read_bytes() == before
    (project.path / "notes.txt").write_text("mine\n", encoding="utf-8")
    missing = "--emogate-thresholds=missing.yaml"
    result = project.runpytest("--emogate-predictions=preds.csv", "--emogate-report=notes.txt", missing)
    result.stderr.fnmatch_lines(["emogate: --emogate-report notes.txt was NOT written with this usage error: it holds "
                                 "something other than an emogate JSON report, so it was left as it was"])  # fmt: skip
    assert (project.path / "notes.txt").read_text(encoding="utf-8") == "mine\n"
    result = project.runpytest("--emogate-predictions=preds.csv", "--emogate-report=.emogate/history.sqlite", missing)
    result.stderr.fnmatch_lines(["emogate: --emogate-report .emogate/history.sqlite was NOT written with this usage "
                                 "error: it is also the path of the default history (*)"])  # fmt: skip
    assert not (project.path / ".emogate" / "history.sqlite").exists()  # a later run's history is not a report
    (project.path / "a_dir").mkdir()
    result = project.runpytest("--emogate-predictions=preds.csv", "--emogate-report=a_dir")
    result.stderr.fnmatch_lines(["emogate: --emogate-report a_dir was NOT written with this usage error: is a "
                                 "directory; expected the path of a file"])  # fmt: skip


def test_a_usage_error_found_after_the_start_replaces_the_last_report_too(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_emogate.inference.file_source import PredictionsFile

    assert project.runpytest("--emogate-predictions=preds.csv", "--emogate-report=report.json").ret == 0

    def broken(self: PredictionsFile) -> list[object]:
        raise pytest.UsageError("checkpoint c.pth: a tensor is missing")  # as a weight file found broken at load

    read = PredictionsFile.read.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        PredictionsFile, "read", classmethod(lambda *args: dataclasses.replace(read(*args), loaded=False))
    )
    monkeypatch.setattr(PredictionsFile, "predictions", broken)  # the answers are made in the first gate test
    result = project.runpytest("--emogate-predictions=preds.csv", "--emogate-report=report.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    data = _report(project)
    assert (data["verdict"], data["passed"], data["error"]) == (
        "failed",
        False,
        "checkpoint c.pth: a tensor is missing",
    )


def test_outputs_that_need_answers_no_process_made_are_named_and_never_exit_0(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_emogate.inference.file_source import PredictionsFile

    read = PredictionsFile.read.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        PredictionsFile, "read", classmethod(lambda *args: dataclasses.replace(read(*args), loaded=False))
    )
    project.makepyfile(test_mine="def test_mine():\n    pass\n")  # an inference source whose answers are not made
    result = project.runpytest("--emogate-predictions=preds.csv", "-m", "not emogate", "--emogate-report=report.json",
                               "--emogate-markdown=summary.md", "--emogate-update-baseline=base.jsonl")  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines([
        "emogate verdict: INCOMPLETE (0 of 15 checks ran; 15 not run: *",
        "emogate: baseline base.jsonl NOT updated: the gate is incomplete (15 checks not run)",
        "emogate: --emogate-markdown summary.md was NOT written: this process holds no answers (no gate test asked "
        "for them, or they could not be made)",
    ])  # fmt: skip
    assert "--emogate-history" not in result.stdout.str()  # the default history, not asked for: named under -v
    assert _report(project)["verdict"] == "incomplete" and not (project.path / "summary.md").exists()
    quiet = project.runpytest("--emogate-predictions=preds.csv", "-m", "not emogate", "--emogate-report=report.json")
    assert quiet.ret == pytest.ExitCode.OK
