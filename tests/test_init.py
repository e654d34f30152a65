"""`emogate init` writes the shipped thresholds.yaml (package data) into the current folder and never replaces
anything; the `emogate diff` messages name the command's own arguments, not pytest's options."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

import pytest

from pytest_emogate.cli import main
from tests.conftest import REPO, SEED, THRESHOLDS

PACKAGED = REPO / "pytest_emogate" / "thresholds.yaml"


def test_the_packaged_starter_is_the_repositorys_thresholds_byte_for_byte() -> None:
    assert PACKAGED.read_bytes() == THRESHOLDS.read_bytes(), "copy thresholds.yaml to pytest_emogate/ (init ships it)"
    assert files("pytest_emogate").joinpath("thresholds.yaml").read_bytes() == THRESHOLDS.read_bytes()


def test_init_writes_the_starter_and_the_gate_runs_on_it(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init"]) == 0
    written = pytester.path / "thresholds.yaml"
    assert written.read_bytes() == THRESHOLDS.read_bytes()  # the comments too
    out = capsys.readouterr().out
    assert out.startswith(f"emogate init: wrote {written}, the starter gate")
    assert "pytest --emogate-thresholds=thresholds.yaml --emogate-predictions=PATH" in out
    answers = SEED.read_text(encoding="utf-8").replace("0702,surprise,doubt", "0702,surprise,surprise")  # all pass
    (pytester.path / "preds.csv").write_text(answers, encoding="utf-8")
    result = pytester.runpytest("--emogate-thresholds=thresholds.yaml", "--emogate-predictions=preds.csv")
    result.stdout.fnmatch_lines(["emogate: thresholds thresholds.yaml *", "emogate verdict: PASSED (15 checks)"])
    assert result.ret == pytest.ExitCode.OK


def test_a_second_init_refuses_and_leaves_the_file_as_it_was(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = pytester.path / "thresholds.yaml"
    mine.write_text("labels: [mine]\n", encoding="utf-8")
    assert main(["init"]) == 2
    assert mine.read_text(encoding="utf-8") == "labels: [mine]\n"
    assert capsys.readouterr().err == (
        f"emogate init: {mine} already exists (a file); it was not changed. Edit it, or move it away and run "
        "emogate init again\n"
    )


def test_init_never_follows_or_replaces_a_symlink_or_a_folder(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    target = pytester.path / "thresholds.yaml"
    os.symlink(pytester.path / "elsewhere.yaml", target)  # dangling: O_CREAT alone would create elsewhere.yaml
    assert main(["init"]) == 2
    elsewhere = pytester.path / "elsewhere.yaml"
    assert f"{target} already exists (a symlink to {elsewhere}, which points nowhere)" in capsys.readouterr().err
    assert not elsewhere.exists() and target.is_symlink()
    target.unlink()
    target.mkdir()
    assert main(["init"]) == 2
    assert f"{target} already exists (a folder)" in capsys.readouterr().err
    assert list(target.iterdir()) == []


# --- emogate diff names its own arguments ---------------------------------------------------------------------


def test_emogate_diff_names_its_own_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.yaml"
    assert main(["diff", str(SEED), str(SEED), "--thresholds", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"emogate: --thresholds {missing}: no such file;") and "emogate init" in err
    assert "--emogate" not in err
    bare = tmp_path / "bare.yaml"
    bare.write_text(THRESHOLDS.read_text(encoding="utf-8").split("regression:")[0], encoding="utf-8")
    assert main(["diff", str(SEED), str(SEED), "--thresholds", str(bare)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"emogate: --thresholds {bare}: no 'regression:' section, so there are no margins to judge")
    assert f"CANDIDATE {SEED} against BASELINE {SEED}" in err and "--emogate" not in err


def test_emogate_diff_refuses_a_regression_section_that_declares_no_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.yaml"
    text = THRESHOLDS.read_text(encoding="utf-8")
    empty.write_text(text[: text.index("regression:")] + "regression:\n  alpha: 0.05\n", encoding="utf-8")
    assert main(["diff", str(SEED), str(SEED), "--thresholds", str(empty)]) == 2
    assert capsys.readouterr().err == (
        f"emogate: --thresholds {empty}: a 'regression:' section that declares no check (neither max_drop nor "
        f"per_class_max_drop), so there are no margins to judge CANDIDATE {SEED} against BASELINE {SEED} by; "
        "expected e.g. regression: {alpha: 0.05, max_drop: {accuracy: 0.01}, per_class_max_drop: 0.10}\n"
    )


@pytest.mark.parametrize(
    "argv", [["init"], ["diff", str(SEED), str(SEED), "--thresholds", str(THRESHOLDS)]], ids=["init", "diff"]
)
def test_a_deleted_working_directory_is_named_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"emogate {argv[0]}: the current working directory no longer exists (deleted or moved away); cd into an "
        "existing folder and run it again\n"
    )
