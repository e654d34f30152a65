"""Hostile predictions files: a stray quote never swallows rows unseen, long answers are read and printed short,
JSON strings may hold any line-break character, a FIFO or /dev/zero is refused at once, and `expect_samples`
makes a short file (or data set) a usage error."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pytest_emogate.evaluate import checks
from pytest_emogate.evaluate.metrics import compute_result, score_samples
from pytest_emogate.evaluate.thresholds import load_thresholds
from pytest_emogate.evaluate.verdict import judge
from pytest_emogate.predictions import (
    Prediction,
    read_hashed_predictions,
    read_predictions,
    write_predictions_csv,
    write_predictions_jsonl,
)
from pytest_emogate.report.markdown import MarkdownInput, render_markdown
from pytest_emogate.report.terminal import render_summary
from tests.conftest import SEED, THRESHOLDS
from tests.hostile import deadline, in_child

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
SEED_LINES = SEED.read_text(encoding="utf-8").split("\n")[:-1]  # the header and 834 rows
HUGE = 5_000_000


def problems_of(path: Path, expect_samples: int | None = None) -> list[str]:
    with deadline(20), pytest.raises(pytest.UsageError) as error:
        if expect_samples is None:
            read_hashed_predictions(path, LABELS)
        else:
            read_hashed_predictions(path, LABELS, expect_samples=expect_samples)
    lines = str(error.value).split("\n")
    assert lines[0].startswith(f"predictions file {path}: ")
    return [line.removeprefix("  - ") for line in lines[1:]]


def seed_with(tmp_path: Path, changes: dict[int, str], name: str = "preds.csv") -> Path:
    """The seed file with some lines (1-based, the header is line 1) replaced."""
    lines = list(SEED_LINES)
    for number, text in changes.items():
        lines[number - 1] = text
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def row(number: int) -> str:
    return SEED_LINES[number - 1]


# Stray quotes -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("line", [701, 11, 835])
def test_an_unclosed_quote_names_the_line_where_it_opened(tmp_path: Path, line: int) -> None:
    name, gold, _ = row(line).split(",")
    path = seed_with(tmp_path, {line: f'{name},{gold},"{gold}'})
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"line {line}: a quoted field opens here and is never closed")
    assert f"lines {line}-835" in problems[0] or line == 835


def test_a_stray_quote_closed_later_with_the_wrong_field_count(tmp_path: Path) -> None:
    name, gold, _ = row(701).split(",")
    later, later_gold, _ = row(750).split(",")
    path = seed_with(tmp_path, {701: f'{name},{gold},"{gold}', 750: f'{later},{later_gold}",x'})
    problems = problems_of(path)
    assert problems[0].startswith("line 701: expected 3 fields as in the header, found 4")
    assert "the quoted field opened on line 701 runs to line 750" in problems[0]


def test_a_stray_quote_closed_later_with_the_right_field_count(tmp_path: Path) -> None:
    """Two stray quotes (`"sad` and `sad"`) make one record of three fields out of fifty rows."""
    name, gold, _ = row(701).split(",")
    path = seed_with(tmp_path, {701: f'{name},{gold},"{gold}', 750: row(750) + '"'})
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(
        f"line 701: the quoted field opened here runs to line 750 and swallows line 702, which reads as a row "
        f"of its own ({row(702)!r})"
    )


def test_a_stray_quote_closed_by_a_later_one_inside_a_field(tmp_path: Path) -> None:
    name, gold, _ = row(701).split(",")
    later, later_gold, _ = row(750).split(",")
    path = seed_with(tmp_path, {701: f'{name},{gold},"{gold}', 750: f'{later},{later_gold},"oops" he said'})
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(
        "line 701: the quoted field opened here closes on line 750 followed by 'o', where a comma or the end "
        "of the line must follow"
    )


def test_text_after_a_closing_quote_on_the_same_line(tmp_path: Path) -> None:
    path = seed_with(tmp_path, {3: 'samplenew_00000002,neutral,"neutral" I think'})
    assert problems_of(path)[0].startswith(
        "line 3: the quoted field opened here closes followed by ' ', where a comma or the end of the line must follow"
    )


def test_quotes_that_merge_nothing_are_read(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "name,label,output\r\n"
        'a,sad,"Sad, ""really"" sad"\r\n'
        'b,happy,I said "happy"\r\n'
        'c,sad,"line one\nline two, and three\nsad"\r\n'
        'd,sad,""\r\n'
        "e,sad,\r\n",
        encoding="utf-8",
    )
    assert [(p.name, p.output) for p in read_predictions(path, LABELS)] == [
        ("a", 'Sad, "really" sad'),
        ("b", 'I said "happy"'),
        ("c", "line one\nline two, and three\nsad"),
        ("d", ""),
        ("e", ""),
    ]


def test_the_lines_after_a_merged_record_keep_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text('name,label,output\na,sad,"one\ntwo"\nb,fear,sad\n', encoding="utf-8")
    assert problems_of(path) == ["line 4: gold label 'fear' of 'b' is not one of " + str(list(LABELS))]


# expect_samples -----------------------------------------------------------------------------------------------


def test_a_short_file_is_refused_when_the_count_is_expected(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("\n".join(SEED_LINES[:701]) + "\n", encoding="utf-8")
    assert problems_of(path, expect_samples=834) == ["expected 834 rows (expect_samples), found 700"]
    assert len(read_hashed_predictions(SEED, LABELS, expect_samples=834)[0]) == 834


def gate_file(tmp_path: Path, expect: int) -> str:
    text = THRESHOLDS.read_text(encoding="utf-8").replace("max_invalid: 0", "max_invalid: 1")
    return f"expect_samples: {expect}\n{text}"


def test_expect_samples_is_checked_before_any_test_runs(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", thresholds=gate_file(pytester.path, 834))
    (pytester.path / "short.csv").write_text("\n".join(SEED_LINES[:701]) + "\n", encoding="utf-8")
    (pytester.path / "seed.csv").write_bytes(SEED.read_bytes())
    result = pytester.runpytest("--emogate-predictions", "short.csv")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*predictions file*short.csv*", "*expected 834 rows (thresholds.yaml: expect_samples), found 700"]
    )
    result = pytester.runpytest("--emogate-predictions", "seed.csv", "--emogate-baseline", "short.csv")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*baseline file*short.csv*", "*expected 834 rows (thresholds.yaml: expect_samples), found 700"]
    )
    assert pytester.runpytest("--emogate-predictions", "seed.csv").ret == pytest.ExitCode.OK


def test_expect_samples_against_the_data_set(pytester: pytest.Pytester) -> None:
    pytest.importorskip("torch")
    from tests.conftest import TINY

    pytester.makefile(".yaml", thresholds=gate_file(pytester.path, 800))
    result = pytester.runpytest(  # `--option=path`: a bare path would make fixtures/tiny the rootdir
        f"--emogate-ckpt={TINY / 'checkpoint_best.pth'}", f"--emogate-llama={TINY / 'llama'}",
        f"--emogate-vit={TINY / 'eva_vit_g.pth'}", f"--emogate-data={TINY / 'data'}",
        "--emogate-device", "cpu", "--emogate-no-cache",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*: the data set has 834 samples; expected 800 (thresholds.yaml: expect_samples)"])


# Long answers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_an_answer_of_five_megabytes_is_read(tmp_path: Path, suffix: str) -> None:
    answer = "well " * (HUGE // 5) + "sad"
    rows = [Prediction("a", "sad", answer), Prediction("b", "happy", "x" * HUGE)]
    path = tmp_path / f"p{suffix}"
    (write_predictions_csv if suffix == ".csv" else write_predictions_jsonl)(path, rows)
    with deadline(30):
        assert read_predictions(path, LABELS) == rows


def test_a_huge_answer_is_printed_short(tmp_path: Path) -> None:
    thresholds = load_thresholds(THRESHOLDS)
    word = "x" * HUGE
    predictions = [Prediction(f"s{i}" * (HUGE // 2 if i == 0 else 1), "sad", word + str(i)) for i in range(30)]
    result = compute_result(score_samples(predictions, LABELS), LABELS)
    outcome = checks.label_validity(thresholds, result)
    assert len(outcome.message) < 2_000
    assert "\n" not in outcome.message
    assert "and 20 more" in outcome.message
    verdict = judge([outcome.id], {outcome.id: "failed"})
    summary = render_summary(result, thresholds, verdict, "header", width=100, color=False)
    assert len(summary) < 20_000
    markdown = render_markdown(MarkdownInput(result, thresholds, [outcome], verdict, "header"))
    assert len(markdown) < 20_000


def test_error_messages_quote_values_short(tmp_path: Path) -> None:
    long = "y" * HUGE
    path = tmp_path / "p.jsonl"
    lines = [
        {"name": long, "label": "fear", "output": "sad"},
        {"name": [long] * 3, "label": "sad", "output": "sad"},
        {"name": "a\u2028b", "label": long, "output": "sad"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    problems = problems_of(path)
    assert len(problems) == 3
    assert all(len(problem) < 400 for problem in problems)
    assert problems[2].startswith("line 3: gold label 'yyy")
    assert problems[2].endswith(f"…' of 'a\\u2028b' is not one of {list(LABELS)}")
    header = tmp_path / "h.csv"
    header.write_text(",".join(["col" + "z" * 1000] * 50) + "\n", encoding="utf-8")
    assert len(problems_of(header)[0]) < 400


# Line breaks inside JSON strings ------------------------------------------------------------------------------

BREAKS = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\rh\ni"


def test_line_break_characters_in_json_strings_round_trip(tmp_path: Path) -> None:
    rows = [
        Prediction("s\u2028one", "sad", f"The emotion is{BREAKS} sad", {"note": BREAKS}),
        Prediction("two", "happy", 'she said "happy"\n', {"n_new_tokens": 3}),
        Prediction("three", "worried", "x" * 200_000),
    ]
    path = tmp_path / "p.jsonl"
    write_predictions_jsonl(path, rows)
    assert read_predictions(path, LABELS) == rows


def test_csv_written_answers_round_trip(tmp_path: Path) -> None:
    rows = [
        Prediction("one", "sad", f"The emotion is{BREAKS} sad", {"note": BREAKS}),
        Prediction("two", "happy", '"happy', {"note": 'x"'}),
        Prediction("three", "worried", 'she said "worried"\r\n\n', {"note": ""}),
        Prediction("four", "sad", "x" * 200_000 + ",sad,", {"note": "a,b"}),
    ]
    path = tmp_path / "p.csv"
    write_predictions_csv(path, rows)
    assert read_predictions(path, LABELS) == rows


def test_line_numbers_do_not_drift_after_a_line_break_character(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"name": "a", "label": "sad", "output": "x\u2028y\u0085z"}\n{"name": "b", "label": "fear", "output": "sad"}\n',
        encoding="utf-8",
    )
    assert problems_of(path) == [f"line 2: gold label 'fear' of 'b' is not one of {list(LABELS)}"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"name": "a", "name": "b", "label": "sad", "output": "sad"}\n', "line 1: duplicate key 'name'"),
        ("[" * 100_000 + "]" * 100_000 + "\n", "line 1: nested too deeply"),
        ('{"name": "a", "label": "sad", "output": "sad", "n": ' + "9" * 5000 + "}\n", "line 1: malformed JSON"),
    ],
)
def test_hostile_json_lines_are_problems(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(content, encoding="utf-8")
    assert problems_of(path)[0].startswith(problem)


# Files that are not regular files -----------------------------------------------------------------------------


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "preds.csv"
    os.mkfifo(fifo)
    start = time.monotonic()
    assert problems_of(fifo) == ["the file is a FIFO (named pipe); expected a regular file"]
    assert time.monotonic() - start < 5


def test_a_symlink_to_dev_zero_is_refused_at_once(tmp_path: Path) -> None:
    link = tmp_path / "preds.jsonl"
    link.symlink_to("/dev/zero")

    def refused() -> None:
        assert problems_of(link) == ["the file is a character device; expected a regular file"]

    start = time.monotonic()
    assert in_child(refused) == 0
    assert time.monotonic() - start < 5


def test_a_file_over_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_emogate import predictions

    monkeypatch.setattr(predictions, "MAX_BYTES", 1000)
    path = tmp_path / "p.csv"
    path.write_text("name,label,output\n" + "a,sad,sad\n" * 200, encoding="utf-8")
    assert problems_of(path) == ["the file is 2018 bytes; the limit is 1000 bytes"]


def test_a_missing_file_and_a_directory(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope.csv") == ["the file does not exist"]
    assert problems_of(tmp_path) == ["the file is a directory; expected a regular file"]


def test_a_column_named_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("name,label,output,output\na,sad,sad,happy\n", encoding="utf-8")
    assert problems_of(path) == ["line 1: column(s) ['output'] appear more than once in the header"]
