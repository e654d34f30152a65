"""End-to-end pytester runs of the regression gate: fail, pass, improvement, ids, mismatched baselines."""

from __future__ import annotations

import json

import pytest

from pytest_emogate.gate import Gate
from pytest_emogate.stash import GATE_KEY
from tests.conftest import LENIENT, SEED, THRESHOLDS, literal


def test_the_regressed_candidate_fails_on_accuracy_only(project: pytest.Pytester) -> None:
    result = project.runpytest("--emogate-predictions", "regressed.csv", "--emogate-baseline", "base.csv")
    result.assert_outcomes(passed=22, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([literal(line) for line in [
        "emogate: thresholds thresholds.yaml (sha256 *); answers from predictions regressed.csv (834 rows); "
        "compared with baseline base.csv (834 rows)",
        "*_ test_no_regression[accuracy] _*",
        "accuracy 90.65% -> 89.21% (-1.44 pts, max drop 1.00 pts): 5 fixed, 17 broken, one-sided exact McNemar "
        "p=0.0085 < alpha 0.05 (thresholds.yaml: regression.max_drop.accuracy); broken: samplenew_00000002 (gold "
        "neutral), samplenew_00000010 (gold neutral), samplenew_00000012 (gold neutral) and 14 more",
        "*= emogate summary =*",
        "Regression vs baseline: 5 fixed, 17 broken, 739 both right, 73 both wrong",
        "check *base *now *delta *margin *can fail at *fixed *broken *p *status",
        "accuracy *90.65% *89.21% *-1.44 *1.00 *1.08 *5 *17 *0.0085 *FAIL",
        "uar *80.52% *80.90% *+0.38 *3.00 *- *- *- *0.6004 *pass",
        "sad *97.28% *95.33% *-1.95 *10.00 *10.12 *0 *5 *0.0312 *pass",
        "surprise *42.86% *50.00% *+7.14 *10.00 *35.71 *1 *0 *1.0000 *pass",
        "Broken (17):",
        "  samplenew_00000002 (gold neutral): 'neutral' -> 'sad'",
        "  ... and 7 more (--emogate-report PATH lists them all)",
        "Fixed (5):",
        "emogate verdict: FAILED (1 of 23 checks): regression[accuracy]",
        "FAILED emogate::test_no_regression[accuracy] - Failed: accuracy 90.65% -> *",
    ]])  # fmt: skip


def test_one_broken_surprise_answer_passes_the_regression_gate(project: pytest.Pytester) -> None:
    result = project.runpytest("--emogate-predictions", "slipped.csv", "--emogate-baseline", "base.csv",
                               "-k", "no_regression")  # fmt: skip
    result.assert_outcomes(passed=8, deselected=15)
    result.stdout.fnmatch_lines([literal(line) for line in [
        "surprise *14 *5 *35.7% *16.3-61.2% *35.0% *0 *? *not run",
        "surprise *42.86% *35.71% *-7.14 *10.00 *35.71 *0 *1 *0.5000 *pass",
    ]])  # fmt: skip


def test_with_a_floor_it_can_clear_the_slip_passes_and_is_inconclusive(project: pytest.Pytester) -> None:
    project.makefile(".yaml", thresholds=LENIENT)
    result = project.runpytest("--emogate-predictions", "slipped.csv", "--emogate-baseline", "base.csv")
    result.assert_outcomes(passed=23)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "Per-class recall ('lb': the floor applies to the 95% lower bound;",
            "'slack': answers the class may still lose before its floor fails;",
            "'?': inconclusive, the 95% CI contains the floor)",
            "surprise *14 *5 *35.7% *16.3-61.2% *30.0% *0 *? *pass",
            "emogate verdict: PASSED (23 checks)",
        ]
    )


def test_an_improvement_never_fails(project: pytest.Pytester) -> None:
    project.makefile(".yaml", thresholds=LENIENT)
    result = project.runpytest("--emogate-predictions", "base.csv", "--emogate-baseline", "regressed.csv")
    result.assert_outcomes(passed=23)
    result.stdout.fnmatch_lines(["accuracy *89.21% *90.65% *+1.44 *1.00 *1.08 *17 *5 *0.9978 *pass"])


def test_regression_tests_exist_only_with_a_baseline(project: pytest.Pytester) -> None:
    without = project.runpytest("--emogate-predictions", "base.csv", "--collect-only", "-q")
    assert "test_no_regression" not in without.stdout.str()
    with_baseline = project.runpytest("--emogate-predictions", "base.csv", "--emogate-baseline", "base.csv",
                                      "--collect-only", "-q", "-k", "no_regression")  # fmt: skip
    with_baseline.stdout.fnmatch_lines(
        [
            literal(f"emogate::test_no_regression[{key}]")
            for key in ("accuracy", "uar", "neutral", "angry", "happy", "sad", "worried", "surprise")
        ]
    )


def test_a_mismatched_baseline_is_a_usage_error(project: pytest.Pytester) -> None:
    rows = SEED.read_text(encoding="utf-8").splitlines()
    other = [rows[0], *rows[4:], "extra_1,sad,sad"]
    other[10] = other[10].replace(",sad,", ",happy,", 1) if ",sad," in other[10] else other[10]
    (project.path / "other.csv").write_text("\n".join(other) + "\n", encoding="utf-8")
    result = project.runpytest("--emogate-predictions", "base.csv", "--emogate-baseline", "other.csv")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([literal(line) for line in [
        "ERROR: baseline other.csv (832 rows) does not pair with the answers (predictions base.csv (834 rows)): "
        "2 problems",
        "  - 1 name only in the baseline: extra_1",
        "  - 3 names only in the answers: samplenew_00000001, samplenew_00000002, samplenew_00000003",
        "  expected the same samples with the same gold labels: regenerate the baseline on this data",
    ]])  # fmt: skip
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_a_relabelled_sample_is_named(project: pytest.Pytester) -> None:
    text = SEED.read_text(encoding="utf-8").replace("samplenew_00000003,sad,sad", "samplenew_00000003,happy,sad")
    (project.path / "other.csv").write_text(text, encoding="utf-8")
    result = project.runpytest("--emogate-predictions", "base.csv", "--emogate-baseline", "other.csv")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["  - 1 gold label differ: samplenew_00000003 (baseline 'happy', answers 'sad')"])


def test_a_baseline_without_a_regression_section_is_a_usage_error(project: pytest.Pytester) -> None:
    text = THRESHOLDS.read_text(encoding="utf-8")
    project.makefile(".yaml", thresholds=text[: text.index("regression:")])
    result = project.runpytest("--emogate-predictions", "base.csv", "--emogate-baseline", "base.csv")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --emogate-baseline */base.csv: */thresholds.yaml has no 'regression:' "
                                 "section, so nothing would be compared; expected e.g. regression: *"])  # fmt: skip


def test_a_regression_section_that_declares_no_check_is_refused_and_the_baseline_left(
    project: pytest.Pytester,
) -> None:
    text = THRESHOLDS.read_text(encoding="utf-8")
    project.makefile(".yaml", thresholds=text[: text.index("regression:")] + "regression: {alpha: 0.05}\n")
    before = (project.path / "base.csv").read_bytes()
    result = project.runpytest("--emogate-predictions", "regressed.csv", "--emogate-baseline", "base.csv",
                               "--emogate-update-baseline", "base.csv")  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --emogate-baseline */base.csv: */thresholds.yaml has a 'regression:' section "
                                 "that declares no check (neither max_drop nor per_class_max_drop), so nothing "
                                 "would be compared; expected e.g. regression: *"])  # fmt: skip
    assert (project.path / "base.csv").read_bytes() == before


@pytest.mark.parametrize(
    ("text", "args", "notes"),
    [
        ("labels: [neutral, angry, happy, sad, worried, surprise]\n", [], ""),
        (
            "labels: [neutral, angry, happy, sad, worried, surprise]\nregression: {max_drop: {accuracy: 0.01}}\n"
            "consistency: {max_disagree: 1}\n",
            ["--emogate-update-baseline", "new.jsonl"],
            "; its regression: section declares checks only with --emogate-baseline; its consistency: section only "
            "with --emogate-probe",
        ),
    ],
)
def test_a_run_that_would_judge_no_check_is_refused(
    project: pytest.Pytester, text: str, args: list[str], notes: str
) -> None:
    project.makefile(".yaml", thresholds=text)
    result = project.runpytest("--emogate-predictions", "base.csv", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([literal(
        f"ERROR: thresholds file */thresholds.yaml: declares no check this run can judge, so the gate would pass on "
        f"any answers{notes}; expected at least one of overall, per_class, label_validity, confusion"
    )])  # fmt: skip
    assert not (project.path / "new.jsonl").exists()


def test_a_broken_baseline_file_names_its_line(project: pytest.Pytester) -> None:
    (project.path / "broken.jsonl").write_text('{"name": "a", "label": "sad"}\n', encoding="utf-8")
    result = project.runpytest("--emogate-predictions", "base.csv", "--emogate-baseline", "broken.jsonl")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: baseline file */broken.jsonl: 1 problem", "  - line 1: missing field 'output'"]
    )


class GateSpy:
    """A plugin that keeps the session's gate, as a failed test's traceback (sys.last_traceback) would."""

    gate: Gate | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.gate = session.config.stash[GATE_KEY]


def test_the_gate_lets_go_of_both_runs_answers_when_the_session_ends(project: pytest.Pytester) -> None:
    """pytest's unraisableexception plugin runs two full garbage collections after pytest_unconfigure: the gate
    drops its answers first, whoever still holds it, and every output was written from them before."""
    spy = GateSpy()
    recorded = project.inline_run("--emogate-predictions", "regressed.csv", "--emogate-baseline", "base.csv",
                                  "--emogate-report", "report.json", "--emogate-no-history", plugins=[spy])  # fmt: skip
    recorded.assertoutcome(passed=22, failed=1)
    gate = spy.gate
    assert gate is not None and gate.baseline is not None
    assert gate.source.predictions() == [] and gate.baseline.predictions == [] and not gate.ready
    with pytest.raises(RuntimeError, match="released when the session ended"):
        gate.result()
    with pytest.raises(RuntimeError, match="released when the session ended"):
        gate.baseline.result(gate.thresholds)
    report = json.loads((project.path / "report.json").read_text(encoding="utf-8"))
    assert report["n"] == 834 and len(report["baseline"]["samples"]["broken"]) == 17
