"""CI outputs: Markdown and the GitHub step summary, JUnit properties, plots, the JSON baseline section and
`--emogate-update-baseline`."""

from __future__ import annotations

import json
import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_emogate.evaluate.checks import evaluate_all
from pytest_emogate.evaluate.metrics import compute_result, score_samples
from pytest_emogate.evaluate.thresholds import load_thresholds
from pytest_emogate.evaluate.verdict import judge
from pytest_emogate.formats import markdown_text
from pytest_emogate.predictions import read_predictions
from pytest_emogate.report.markdown import MarkdownInput, render_markdown
from tests.conftest import LENIENT, SEED, SLIPPED, THRESHOLDS


def gate(project: pytest.Pytester, answers: str, *args: str) -> pytest.RunResult:
    """Gate `answers` against the seed, without history."""
    return project.runpytest("--emogate-predictions", answers, "--emogate-baseline", "base.csv",
                             "--emogate-no-history", *args)  # fmt: skip


def test_the_markdown_shows_the_regression_and_the_inconclusive_slip(project: pytest.Pytester) -> None:
    (project.path / "out").mkdir()
    gate(project, "regressed.csv", "--emogate-markdown", "out/regressed.md")
    gate(project, "slipped.csv", "--emogate-markdown", "out/slipped.md")
    regressed = (project.path / "out" / "regressed.md").read_text(encoding="utf-8")
    assert regressed.startswith("## emogate: ❌ FAILED (1 of 23 checks)\n")
    assert (
        "- `regression[accuracy]`: accuracy 90.65% -&gt; 89.21% (-1.44 pts, max drop 1.00 pts): 5 fixed, 17 broken, "
        "one-sided exact McNemar p=0.0085 &lt; alpha 0.05 (thresholds.yaml: regression.max_drop.accuracy); broken: "
        "samplenew_00000002 (gold neutral), samplenew_00000010 (gold neutral), samplenew_00000012 (gold neutral) and "
        "14 more\n"
    ) in regressed
    assert ("| accuracy | 89.21% | 89.00% | pass | 90.65% | -1.44 | -2.52 to -0.36 | 0.0085 | exact McNemar "
            "| 1.08 | **FAIL** |") in regressed  # fmt: skip
    assert (
        "<details><summary>Broken (17)</summary>" in regressed and "<details><summary>Fixed (5)</summary>" in regressed
    )
    assert "| samplenew_00000002 | neutral | neutral | sad | neutral → sad |" in regressed
    assert "834 samples paired by name: **17 broken**, **5 fixed**, 739 both right, 73 both wrong." in regressed
    slipped = (project.path / "out" / "slipped.md").read_text(encoding="utf-8")
    assert slipped.startswith("## emogate: ❌ FAILED (1 of 23 checks)\n")
    assert ("| surprise | 14 | 5 | 35.7% | 16.3-61.2% | 35.0% | 0 | pass · inconclusive | 42.9% | -7.14 | 0 | 1 "
            "| 0.5000 | 35.71 | pass |") in slipped  # fmt: skip
    assert "*inconclusive*: the 95% CI contains the floor" in slipped
    assert "| gold \\ pred | neutral | angry | happy | sad | worried | surprise | &lt;invalid&gt; | n |" in slipped
    assert "| surprise | 3 | 1 | 0 | 1 | 3 | **5** | 1 | 14 |" in slipped


def test_markdown_without_a_baseline_has_no_baseline_columns() -> None:
    thresholds = load_thresholds(THRESHOLDS)
    labels = thresholds.labels
    result = compute_result(score_samples(read_predictions(SEED, labels), labels), labels)
    outcomes = evaluate_all(thresholds, result)
    verdict = judge([o.id for o in outcomes], {o.id: "passed" if o.passed else "failed" for o in outcomes})
    text = render_markdown(MarkdownInput(result, thresholds, outcomes, verdict, "header <x>"))
    assert "header &lt;x&gt;" in text and "baseline" not in text and "Δ" not in text
    assert "| class | n | correct | recall | 95% CI | floor | slack | floor check |\n| :-- | --: |" in text
    assert "<details><summary>Broken" not in text
    assert markdown_text("a|b <c>") == "a\\|b &lt;c&gt;"


@pytest.mark.parametrize(
    ("before", "after"),
    [("", "## gate\n"), ("# earlier", "# earlier\n\n## gate\n"), ("# earlier\n", "# earlier\n\n## gate\n"),
     ("# earlier\n\n", "# earlier\n\n## gate\n")],
)  # fmt: skip
def test_a_paragraph_is_appended_after_one_blank_line_whatever_the_file_ended_with(
    tmp_path: Path, before: str, after: str
) -> None:
    from pytest_emogate.files import append_text

    summary = tmp_path / "step_summary.md"
    summary.write_bytes(before.encode("utf-8"))
    append_text(summary, "## gate\n", paragraph=True)
    assert summary.read_bytes().decode("utf-8") == after


def test_the_step_summary_is_appended(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = project.path / "step_summary.md"
    summary.write_text("# earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    gate(project, "regressed.csv")
    gate(project, "slipped.csv", "--emogate-markdown", "slipped.md")
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("# earlier step\n\n## emogate: ❌ FAILED (1 of 23 checks)\n")  # a blank line between steps
    assert text.count("## emogate: ") == 2
    assert text.endswith((project.path / "slipped.md").read_text(encoding="utf-8") + "\n")


def test_junit_carries_value_limit_n_and_the_paired_counts(project: pytest.Pytester) -> None:
    gate(project, "regressed.csv", "--junitxml", "junit.xml", "-o", "junit_family=xunit1")
    root = ET.parse(project.path / "junit.xml").getroot()
    cases = {case.get("name"): case for case in root.iter("testcase")}
    properties = {p.get("name"): p.get("value") for p in cases["test_no_regression[accuracy]"].iter("property")}
    assert properties == {
        "emogate_baseline": str(756 / 834), "emogate_candidate": str(744 / 834), "emogate_test": "mcnemar",
        "emogate_p_value": str(35443 / 2**22), "emogate_fixed": "5", "emogate_broken": "17",
        "emogate_check": "regression[accuracy]", "emogate_value": str(744 / 834 - 756 / 834),
        "emogate_limit": "-0.01", "emogate_n": "834",
    }  # fmt: skip
    floor = {p.get("name"): p.get("value") for p in cases["test_class_floor[surprise]"].iter("property")}
    assert floor == {"emogate_check": "class_floor[surprise]", "emogate_value": "0.5", "emogate_limit": "0.35",
                     "emogate_n": "14"}  # fmt: skip


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_the_plot_is_written_at_its_size(project: pytest.Pytester) -> None:
    result = gate(project, "slipped.csv", "--emogate-plot", "plots/gate.png")
    result.stdout.fnmatch_lines(["emogate: wrote plots to plots/gate.png"])
    assert png_size(project.path / "plots" / "gate.png") == (1400, 600)
    assert [path.name for path in (project.path / "plots").iterdir()] == ["gate.png"]


def test_without_matplotlib_the_plot_is_a_one_line_usage_error(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = gate(project, "slipped.csv", "--emogate-plot", "gate.png")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0] == (
        "ERROR: --emogate-plot needs matplotlib, which is not installed: pip install matplotlib "
        '(the plot extra: pip install ".[plot]" in a pytest-emogate clone)'
    )
    assert not (project.path / "gate.png").exists()


def test_the_json_report_has_the_baseline_section(project: pytest.Pytester) -> None:
    gate(project, "regressed.csv", "--emogate-report", "report.json")
    report = json.loads((project.path / "report.json").read_text(encoding="utf-8"))
    check = next(check for check in report["checks"] if check["id"] == "regression[accuracy]")
    assert (check["passed"], check["limit"], check["n"]) == (False, -0.01, 834)
    baseline = report["baseline"]
    assert baseline["paired"] == {"fixed": 5, "broken": 17, "both_right": 739, "both_wrong": 73}
    assert baseline["bootstrap"] == {"reps": 1000, "seed": 834, "stratified_by": "gold label"}
    accuracy = baseline["metrics"]["accuracy"]
    assert (accuracy["test"], accuracy["fixed"], accuracy["broken"], accuracy["max_drop"]) == ("mcnemar", 5, 17, 0.01)
    assert baseline["metrics"]["uar"]["test"] == "bootstrap" and baseline["metrics"]["macro_f1"]["max_drop"] is None
    assert baseline["per_class"]["sad"]["p_value"] == 1 / 32 and report["passed"] is False


def test_the_baseline_is_updated_only_when_the_gate_passes(project: pytest.Pytester) -> None:
    failed = gate(project, "regressed.csv", "--emogate-update-baseline", "accepted.jsonl", "-q")
    failed.stdout.fnmatch_lines(["emogate: baseline accepted.jsonl NOT updated: the gate failed"])
    assert not (project.path / "accepted.jsonl").exists()
    project.makefile(".yaml", thresholds=LENIENT)
    passed = gate(project, "slipped.csv", "--emogate-update-baseline", "accepted.jsonl", "-q")
    passed.stdout.fnmatch_lines(["emogate: baseline accepted.jsonl updated with this run's 834 answers"])
    labels = load_thresholds(project.path / "thresholds.yaml").labels
    written = read_predictions(project.path / "accepted.jsonl", labels)
    assert [(p.name, p.label, p.output) for p in written] == [
        (p.name, p.label, p.output) for p in read_predictions(SLIPPED, labels)
    ]
    assert sorted(path.name for path in project.path.glob(".accepted*")) == []  # no temporary file left behind
    # the accepted answers are the next run's baseline
    gate_again = project.runpytest("--emogate-predictions", "slipped.csv", "--emogate-baseline", "accepted.jsonl")
    gate_again.stdout.fnmatch_lines(["Regression vs baseline: 0 fixed, 0 broken, 755 both right, 79 both wrong"])


def test_ini_twins_and_the_command_line_wins(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nemogate_baseline = base.csv\nemogate_markdown = ini.md\n")
    gate_result = project.runpytest("--emogate-predictions", "regressed.csv", "--emogate-markdown", "cli.md")
    gate_result.assert_outcomes(passed=22, failed=1)
    assert (project.path / "cli.md").exists() and not (project.path / "ini.md").exists()
