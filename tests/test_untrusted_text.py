"""Untrusted text stays text in every medium: hostile sample names, answers and recorded commit strings go through
the gate's terminal summary, its failure messages, JUnit, the Markdown and the step summary, `emogate history`
(rich tables and CSV), the plot and the error messages, and come out as the text they are: no terminal escape,
no live link or image, no rich markup, no spreadsheet formula, no mathtext, no megabyte line."""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_emogate.cli import main
from pytest_emogate.evaluate.baseline import read_baseline
from pytest_emogate.evaluate.metrics import compute_result, score_samples
from pytest_emogate.evaluate.thresholds import load_thresholds
from pytest_emogate.evaluate.verdict import judge
from pytest_emogate.formats import markdown_text, one_line, plot_text, spreadsheet_cell
from pytest_emogate.history import record_run, run_of
from pytest_emogate.predictions import read_predictions
from tests.conftest import LENIENT, REGRESSED, REPO, SEED, THRESHOLDS

HOSTILE_NAMES = (
    "\x1b[2K\r15 passed in 0.1s\x1b[0m",  # ESC and CR: a forged pytest line over the real one
    "\x9b31mred",  # a C1 control sequence introducer
    "[evil](https://evil.example)",  # a Markdown link
    "![pixel](https://evil.example/x.png)",  # a Markdown image
    "<img src=x onerror=alert(1)>",  # HTML
    "\u202eevil",  # a bidi override
    "[/] [bold]loud",  # rich markup
    '=HYPERLINK("https://evil.example")',  # a spreadsheet formula
    "$\\frac{1}{0}$",  # mathtext
)
HOSTILE_ANSWER = "I feel [/] \x1b[31m![x](https://evil.example/a.png) <b>sad</b>"
RAW_CONTROLS = ("\x1b", "\r", "\x9b", "\u202e")
LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")


def hostile_copy(source: Path, target: Path, *, answer: bool) -> Path:
    """`source` with every sample renamed to one of HOSTILE_NAMES (plus its number, to stay unique) and, with
    `answer`, every wrong answer replaced by HOSTILE_ANSWER (still read as 'sad': wrong stays wrong)."""
    rows = list(csv.DictReader(source.open(encoding="utf-8")))
    for number, row in enumerate(rows):
        row["name"] = f"{HOSTILE_NAMES[number % len(HOSTILE_NAMES)]}{number}"
        if answer and row["output"] != row["label"] and row["label"] != "sad":
            row["output"] = HOSTILE_ANSWER
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["name", "label", "output"])
        writer.writeheader()
        writer.writerows(rows)
    return target


def test_the_rule_of_each_medium() -> None:
    assert one_line("a\x1b[2K\rb\x9b\u202e\n\t") == "a\\x1b[2K\\rb\\x9b\\u202e\\n\\t"
    assert markdown_text("[a](https://b) ![c](d) <i>&`*_x_*`|$m$~s~ www.e.com f@g.h \\") == (
        "\\[a\\](https\\://b) \\!\\[c\\](d) &lt;i&gt;&amp;\\`\\*\\_x\\_\\*\\`\\|\\$m\\$\\~s\\~ www\\.e.com f\\@g.h \\\\"
    )
    assert markdown_text("samplenew_00000002") == "samplenew_00000002"  # no emphasis inside a word
    assert [spreadsheet_cell(cell) for cell in ("=1+2", "+1", "-1", "@A1", "\tx", "\rx", "abc", -1.5, None)] == [
        "'=1+2", "'+1", "'-1", "'@A1", "'\tx", "'\rx", "abc", -1.5, None,
    ]  # fmt: skip
    assert plot_text("$\\frac{1}{0}$ \x1b") == "\\$\\frac{1}{0}\\$ \\x1b"


def hostile_run(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.RunResult:
    """The gate on hostile names and answers against a hostile baseline, with every text output asked for."""
    hostile_copy(SEED, project.path / "base.csv", answer=False)
    hostile_copy(REGRESSED, project.path / "hostile.csv", answer=True)
    (project.path / "thresholds.yaml").write_text(LENIENT, encoding="utf-8")
    (project.path / "step_summary.md").write_text("", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(project.path / "step_summary.md"))
    result = project.runpytest(
        "--emogate-predictions=hostile.csv", "--emogate-baseline=base.csv", "--emogate-markdown=summary.md",
        "--junitxml=junit.xml", "--emogate-html=page.html", "--emogate-show=20", "--emogate-no-history",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # regression[accuracy] fails, naming broken samples
    return result


def test_hostile_names_and_answers_in_the_terminal_and_junit(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = hostile_run(project, monkeypatch)
    shown = result.stdout.str()
    assert "broken: " in shown and "\\x1b[2K\\r15 passed" in shown
    assert not [control for control in RAW_CONTROLS if control in shown]
    assert [line for line in result.outlines if line.startswith("emogate verdict: FAILED")]
    junit = ET.parse(project.path / "junit.xml")  # parses: nothing XML cannot hold
    assert "\\x1b" in ET.tostring(junit.getroot(), encoding="unicode")


def test_hostile_names_and_answers_in_the_markdown_and_the_step_summary(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from markdown_it import MarkdownIt

    hostile_run(project, monkeypatch)
    markdown = (project.path / "summary.md").read_text(encoding="utf-8")
    assert (project.path / "step_summary.md").read_text(encoding="utf-8").strip() == markdown.strip()
    page = MarkdownIt("commonmark").enable("table").render(markdown)
    assert [element for element in ("<a ", "<img", "<b>") if element in page] == []
    assert "[evil](https://evil.example)" in page and "![x](https://evil.example/a.png)" in page  # as text
    assert not [control for control in RAW_CONTROLS if control in markdown]


def test_hostile_names_and_answers_in_the_html_page(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_html import parse

    hostile_run(project, monkeypatch)
    text = (project.path / "page.html").read_text(encoding="utf-8")
    page = parse(text)
    assert page.tags("img") == [] and page.tags("b") == []
    assert not [control for control in RAW_CONTROLS if control in text]
    shown = "".join(page.text)
    assert "\\x1b[2K\\r15 passed in 0.1s\\x1b[0m9" in shown and "<img src=x onerror=alert(1)>13" in shown


def test_hostile_commits_and_labels_through_emogate_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """rich markup in the tables, formulas in the CSV."""
    seed = compute_result(score_samples(read_predictions(SEED, LABELS), LABELS), LABELS)
    db = tmp_path / "history.sqlite"
    verdict = judge(["label_validity"], {"label_validity": "passed"})
    provenance = {"data_fingerprint": "=1+2", "thresholds_sha256": "t"}
    record_run(db, run_of(seed, verdict, provenance, "[/]\x1b[2K\rforged, 15 passed"))
    record_run(db, run_of(seed, verdict, provenance, '=HYPERLINK("https://evil.example")'))
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE run_classes SET label = '[/][bold]x' WHERE label = 'sad'")
    assert main(["history", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "[/]\\x1b" in out and "[/][bold]x" in out and "\x1b" not in out
    assert main(["history", "--db", str(db), "--csv", "-"]) == 0
    header, *rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    commits = [row[header.index("git_commit")] for row in rows]
    assert commits == ["[/]\x1b[2K\rforged, 15 passed", '\'=HYPERLINK("https://evil.example")']
    assert {len(row) for row in rows} == {len(header)}  # a carriage return splits no row
    assert {row[header.index("data_fingerprint")] for row in rows} == {"'=1+2"}


def test_a_carriage_return_in_a_saved_answer_splits_no_csv_row(tmp_path: Path) -> None:
    """Python's csv writer leaves a bare CR unquoted; other readers (and spreadsheets) take it for a line break."""
    from pytest_emogate.predictions import Prediction, write_predictions_csv

    rows = [Prediction("a\rb", "sad", "it is\rsad", {"n": 1}), Prediction("c", "happy", "happy", {"n": 2})]
    write_predictions_csv(tmp_path / "saved.csv", rows)
    text = (tmp_path / "saved.csv").read_bytes().decode("utf-8")
    read = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [(row["name"], row["output"]) for row in read] == [("a\rb", "it is\rsad"), ("c", "happy")]
    assert text.splitlines(keepends=True)[-1] == "c,happy,happy,2\n"  # rows without a CR keep minimal quoting


def test_a_dollar_in_the_plot_is_text_not_mathtext(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from pytest_emogate.report.plot import write_plot

    thresholds = load_thresholds(THRESHOLDS)
    seed = compute_result(score_samples(read_predictions(SEED, LABELS), LABELS), LABELS)
    verdict = judge(["check[$\\frac{$]"], {"check[$\\frac{$]": "failed"})
    write_plot(tmp_path / "plot.png", seed, thresholds, verdict)
    assert (tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG")


def test_a_long_name_is_shortened_in_an_error_message(tmp_path: Path) -> None:
    thresholds = load_thresholds(THRESHOLDS)
    rows = SEED.read_text(encoding="utf-8").splitlines()
    huge = "x" * 2_000_000 + "\x1b[2K"
    rows[1] = huge + rows[1][rows[1].index(",") :]
    candidate = tmp_path / "candidate.csv"
    candidate.write_text("\n".join(rows) + "\n", encoding="utf-8")
    answers = read_predictions(candidate, thresholds.labels)
    with pytest.raises(pytest.UsageError) as raised:
        read_baseline(SEED, thresholds).check_pairs(answers, "candidate")
    message = str(raised.value)
    assert "1 name only in the answers: xxx" in message and len(message) < 2_000
    assert "\x1b" not in message


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_summary_on_a_stdout_that_is_not_utf8_keeps_its_lines(encoding: str) -> None:
    """pytest escapes a write its stream cannot encode onto one line; the summary is made encodable line by line."""
    env = {**os.environ, "PYTHONIOENCODING": encoding, "PYTEST_ADDOPTS": "-p no:randomly -p no:cacheprovider"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", f"--emogate-predictions={SEED}", "--emogate-only", "--emogate-no-history"],
        cwd=REPO, env=env, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    lines = done.stdout.decode(encoding).splitlines()
    assert done.returncode == 1
    assert "emogate verdict: FAILED (1 of 15 checks): label_validity" in lines
    assert "neutral   166      134   80.7%  74.1-86.0%  78.0%     +4  ?  pass" in lines
    assert [line for line in lines if line.startswith("---") and set(line) == {"-"}]  # the table rules, in ASCII
