"""The small things in the reports: the plot's title, the regression table under Holm, `--emogate-show 0`,
sample lines within the terminal width, inference options with a predictions file, the probe line of a check
that did not run."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from pytest_emogate.evaluate.checks import evaluate_all
from pytest_emogate.evaluate.compare import Comparison, compare
from pytest_emogate.evaluate.metrics import GateResult, compute_result, score_samples
from pytest_emogate.evaluate.regression import regression_ids, regression_outcome
from pytest_emogate.evaluate.thresholds import Thresholds, load_thresholds
from pytest_emogate.evaluate.verdict import Verdict, judge
from pytest_emogate.predictions import read_predictions
from tests.conftest import REGRESSED, SEED, THRESHOLDS


@pytest.fixture(scope="module")
def thresholds() -> Thresholds:
    return load_thresholds(THRESHOLDS)


@pytest.fixture(scope="module")
def seed(thresholds: Thresholds) -> GateResult:
    return result_of(thresholds, SEED)


def result_of(thresholds: Thresholds, path: Path) -> GateResult:
    answers = read_predictions(path, thresholds.labels)
    scored = score_samples(answers, thresholds.labels, thresholds.aliases, thresholds.invalid)
    return compute_result(scored, thresholds.labels, thresholds.invalid)


def verdict_of(thresholds: Thresholds, result: GateResult) -> Verdict:
    """The verdict with every floor check run as computed."""
    outcomes = evaluate_all(thresholds, result)
    return judge([o.id for o in outcomes], {o.id: "passed" if o.passed else "failed" for o in outcomes})


# --- the plot's title -----------------------------------------------------------------------------------------


def test_the_plot_title_names_the_failed_checks(thresholds: Thresholds, seed: GateResult) -> None:
    from pytest_emogate.report.plot import plot_title

    verdict = verdict_of(thresholds, seed)
    assert verdict.failed == ("label_validity",)  # the seed's one "doubt"
    assert plot_title(seed, verdict) == "emogate: FAILED: label_validity; accuracy 90.65% on 834 samples"
    many = judge([f"class_floor[c{i}]" for i in range(7)], {f"class_floor[c{i}]": "failed" for i in range(7)})
    assert plot_title(seed, many) == (
        "emogate: FAILED: class_floor[c0], class_floor[c1], class_floor[c2], class_floor[c3] and 3 more; "
        "accuracy 90.65% on 834 samples"
    )
    passed = judge(["overall[accuracy]"], {"overall[accuracy]": "passed"})
    assert plot_title(seed, passed) == "emogate: PASSED (1 check); accuracy 90.65% on 834 samples"


def test_the_drawn_figure_carries_the_title(thresholds: Thresholds, seed: GateResult) -> None:
    pytest.importorskip("matplotlib")
    from pytest_emogate.report.plot import draw, plot_title

    verdict = verdict_of(thresholds, seed)
    assert draw(seed, thresholds, verdict).get_suptitle() == plot_title(seed, verdict)


# --- the regression table under Holm ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def holm(thresholds: Thresholds) -> Thresholds:
    assert thresholds.regression is not None
    return dataclasses.replace(thresholds, regression=dataclasses.replace(thresholds.regression, correction="holm"))


@pytest.fixture(scope="module")
def regressed(seed: GateResult, thresholds: Thresholds) -> Comparison:
    return compare(seed, result_of(thresholds, REGRESSED), "baseline", reps=200)


def rendered(renderable: object, width: int = 80) -> str:
    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def regression_rows(thresholds: Thresholds, comparison: Comparison) -> tuple[list[str], Verdict]:
    from pytest_emogate.report.terminal import regression_table

    outcomes = [regression_outcome(thresholds, comparison, key) for key in regression_ids(thresholds)]
    verdict = judge([o.id for o in outcomes], {o.id: "passed" if o.passed else "failed" for o in outcomes})
    return rendered(regression_table(comparison, outcomes, verdict, thresholds)).splitlines(), verdict


def test_under_holm_the_terminal_table_shows_the_adjusted_p_and_says_so(
    thresholds: Thresholds, holm: Thresholds, regressed: Comparison
) -> None:
    plain, _ = regression_rows(thresholds, regressed)
    assert plain[1].split()[-2:] == ["p", "status"]
    assert plain[3].split()[0] == "accuracy" and plain[3].split()[-2:] == ["0.0085", "FAIL"]
    assert not any("holm" in line.lower() for line in plain)
    lines, verdict = regression_rows(holm, regressed)
    assert verdict.passed and lines[1].split()[-3:] == ["p", "(holm)", "status"]
    assert lines[3].split()[0] == "accuracy" and lines[3].split()[-2:] == ["0.0676", "pass"]  # 0.0085 x 8
    assert all(len(line) <= 80 for line in lines)
    note = " ".join(line.strip() for line in lines[11:])  # after the title, the header, the rule and 8 rows
    assert "p (holm): Holm-Bonferroni adjusted over the 8 regression checks (the raw p is in the JSON report)" in note
    assert "can fail at: judged at alpha/8 = 0.00625" in note


def test_under_holm_the_markdown_tables_show_both_p_values(holm: Thresholds, regressed: Comparison) -> None:
    from pytest_emogate.report.markdown import MarkdownInput, render_markdown

    outcomes = [regression_outcome(holm, regressed, key) for key in regression_ids(holm)]
    verdict = judge([o.id for o in outcomes], {o.id: "passed" if o.passed else "failed" for o in outcomes})
    text = render_markdown(MarkdownInput(result_of(holm, REGRESSED), holm,
                                         outcomes, verdict, "header", regressed, "baseline", 0.05))  # fmt: skip
    lines = text.splitlines()
    overall = next(line for line in lines if line.startswith("| metric |"))
    assert "| p | p (holm) | test |" in overall
    accuracy = next(line for line in lines if line.startswith("| accuracy |"))
    assert "| 0.0085 | 0.0676 | exact McNemar |" in accuracy
    macro = next(line for line in lines if line.startswith("| macro_f1 |"))  # not a regression check
    assert "| - | paired bootstrap |" in macro
    assert "| p | p (holm) | can fail at |" in next(line for line in lines if line.startswith("| class |"))
    assert "p (holm): Holm-Bonferroni adjusted over the 8 regression checks (p is the raw one-sided p)" in text
    assert "can fail at: judged at alpha/8 = 0.00625" in text


# --- --emogate-show 0 -------------------------------------------------------------------------------------------


def test_show_zero_lists_only_the_counts(regressed: Comparison) -> None:
    from pytest_emogate.report.samples import sample_lines

    assert sample_lines(regressed, show=0) == [
        "Broken (17); Fixed (5): samples not listed (show is 0; JSON report: baseline.samples)"
    ]
    assert sample_lines(compare(regressed_result(), regressed_result(), "b", reps=10), 0) == []


def regressed_result() -> GateResult:
    return result_of(load_thresholds(THRESHOLDS), REGRESSED)


def test_show_zero_in_the_terminal_and_the_markdown(project: pytest.Pytester) -> None:
    result = project.runpytest("--emogate-predictions", "regressed.csv", "--emogate-baseline", "base.csv",
                               "--emogate-show", "0", "--emogate-markdown", "summary.md",
                               "--emogate-no-history")  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "... and" not in out and "samplenew_" not in out.split("emogate summary")[-1].split("emogate verdict")[0]
    result.stdout.fnmatch_lines(["Broken (17); Fixed (5): samples not listed (show is 0; *"])
    markdown = (project.path / "summary.md").read_text(encoding="utf-8")
    assert "... and" not in markdown and "<summary>Broken (17)</summary>" in markdown


# --- sample lines within the terminal width, and no trailing spaces -------------------------------------------


def pairs_with_long_answers() -> Comparison:
    from pytest_emogate.predictions import Prediction

    labels = ("neutral", "angry", "happy", "sad", "worried", "surprise")
    baseline = [Prediction(f"s{i}", "sad", "sad") for i in range(4)]
    candidate = [
        Prediction("s0", "sad", "The person looks " + "rather " * 40 + "worried."),
        Prediction("s1", "sad", "悲伤" * 50),  # two terminal cells a character
        Prediction("s2", "sad", "happy"),
        Prediction("s3", "sad", "a\\nb\x00" * 30),
    ]
    result = [compute_result(score_samples(answers, labels), labels) for answers in (baseline, candidate)]
    return compare(result[0], result[1], "baseline", reps=10)


@pytest.mark.parametrize("width", [40, 60, 80, 200])
def test_sample_lines_fit_the_terminal_width(width: int) -> None:
    from rich.cells import cell_len

    from pytest_emogate.report.samples import sample_lines

    lines = sample_lines(pairs_with_long_answers(), show=10, width=width)
    assert lines[0] == "Broken (4):"
    assert all(cell_len(line) <= width for line in lines)
    assert "  s2 (gold sad): 'sad' -> 'happy'" in lines  # a short line is left as it is
    if width >= 80:  # room for readable answers: one line a sample
        assert len(lines) == 5
        assert lines[1].startswith("  s0 (gold sad): 'sad' -> 'The person looks rather")
        assert lines[1].endswith("…' (read as sad -> worried)")
    else:  # too narrow for both answers on the line: what they were read as, then the answers below
        assert lines[1:3] == ["  s0 (gold sad): read as sad -> worried", lines[2]]
        assert lines[2].startswith("    'sad' -> 'The person looks rather")


def test_a_short_answer_is_never_cut_to_a_stub() -> None:
    """80 columns (a CI log), a long sample name: 'doubt' -> 'surprise' stays whole on a line of its own."""
    from pytest_emogate.evaluate.compare import Pair
    from pytest_emogate.report.samples import listing

    pair = Pair("samplenew_00000702", "surprise", "<invalid>", "surprise", "doubt", "surprise")
    assert listing("Fixed", [pair], 10, "JSON report", width=60) == [
        "Fixed (1):",
        "  samplenew_00000702 (gold surprise): read as <invalid> -> …",
        "    'doubt' -> 'surprise'",
    ]
    assert listing("Fixed", [pair], 10, "JSON report", width=120)[1] == (
        "  samplenew_00000702 (gold surprise): 'doubt' -> 'surprise' (read as <invalid> -> surprise)"
    )


def test_the_summary_keeps_sample_lines_within_the_terminal(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = (project.path / "base.csv").read_text(encoding="utf-8").splitlines()
    long = "The person in the video looks rather upset to me, though it is hard to be sure: sad."
    edited = [base[0]] + [line if i > 3 else ",".join([*line.split(",")[:2], f'"{long}"']) for i, line in
                          enumerate(base[1:], 1)]  # fmt: skip
    (project.path / "long.csv").write_text("\n".join(edited) + "\n", encoding="utf-8")
    monkeypatch.setenv("COLUMNS", "80")
    result = project.runpytest("--emogate-predictions", "long.csv", "--emogate-baseline", "base.csv",
                               "--emogate-no-history")  # fmt: skip
    lines = result.stdout.lines
    start = lines.index("Broken (2):")
    listed = lines[start : start + 8]  # nothing wrapped by the terminal: a cramped sample takes two lines
    assert [line[:16] for line in listed] == [
        "Broken (2):",
        "  samplenew_0000",
        "    'neutral' ->",
        "  samplenew_0000",
        "    'happy' -> '",
        "Changed answer, ",
        "  samplenew_0000",  # 16 cells of the answer fit beside 'sad': one line
        "Invalid answers ",
    ]
    assert all(len(line) <= 80 for line in listed[:7])
    assert all("'The person in the video looks" in line for line in listed if line.startswith("    "))
    assert "'sad' -> 'The person in …' (read as sad -> sad)" in listed[6]


def test_emogate_diff_prints_no_trailing_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_emogate.cli import main

    main(["diff", str(SEED), str(REGRESSED), "--show", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("accuracy ") and line.endswith("FAIL") for line in lines)
    assert [line for line in lines if line != line.rstrip()] == []


# --- inference options beside a predictions file ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--emogate-dtype=float16",), "--emogate-dtype given with a predictions file: it shapes only the answers "
                                       "the plugin makes, so it needs --emogate-ckpt (the file's answers are made "
                                       "already)"),
        (("--emogate-batch-size=4", "--emogate-device=cpu", "--emogate-merge-lora"),
         "--emogate-device, --emogate-batch-size, --emogate-merge-lora given with a predictions file: they shape only "
         "the answers the plugin makes, so they need --emogate-ckpt (the file's answers are made already)"),
        (("--emogate-data=d", "--emogate-no-cache"), "--emogate-data, --emogate-no-cache given with a predictions *"),
        (("--emogate-mode=score", "--emogate-max-new-tokens=500"),
         "--emogate-max-new-tokens, --emogate-mode given with a predictions file*"),
    ],
)  # fmt: skip
def test_an_inference_option_beside_a_predictions_file_is_a_usage_error(
    project: pytest.Pytester, args: tuple[str, ...], said: str
) -> None:
    result = project.runpytest("--emogate-predictions=base.csv", "--emogate-no-history", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {said}"])
    assert "Traceback" not in result.stderr.str()


def test_inference_settings_in_the_ini_stay_inert_beside_a_predictions_file(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nemogate_dtype = float16\nemogate_batch_size = 4\n")
    result = project.runpytest("--emogate-predictions=base.csv", "--emogate-no-history", "-k", "accuracy")
    result.assert_outcomes(passed=1, deselected=14)


# --- the probe line of a consistency check that did not run -----------------------------------------------------


class CachedProbe:
    """A probe whose result is at hand without inference (every answer cached), as a rerun finds it."""

    ready = True

    def result(self) -> object:
        from pytest_emogate.inference.probe import ProbeResult

        return ProbeResult(12, (), {"batch_size": 1})


class Ended:
    """How a test phase ended, as the verdict recorder reads a pytest report."""

    def __init__(self, when: str, passed: bool) -> None:
        self.when, self.passed, self.failed = when, passed, not passed


def test_the_probe_line_only_when_test_consistency_ran(thresholds: Thresholds) -> None:
    from pytest_emogate.gate import Gate
    from pytest_emogate.inference.file_source import PredictionsFile

    source = PredictionsFile.read(SEED, thresholds.labels)
    gate = Gate(thresholds, source, probe=CachedProbe())  # type: ignore[arg-type]
    gate.result()
    assert "consistency" in gate.outcomes()  # computed from the cache ...
    assert gate.probe_line() == "" and "probe:" not in gate.summary_header()  # ... but not run: not reported
    assert gate.probe_report() is None and gate.verdict().not_run[-1:] == ("consistency",)
    gate.record("consistency", Ended("call", True))  # type: ignore[arg-type]
    assert gate.probe_line() == "probe: 12/12 answers equal at batch size 1"
    assert gate.summary_header().endswith("\nprobe: 12/12 answers equal at batch size 1")
    assert gate.probe_report() == {"n": 12, "disagree": 0, "settings": {"batch_size": 1}, "samples": []}
