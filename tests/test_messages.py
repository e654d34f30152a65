"""The words people read, tested directly: each check's one-line message, the verdict line and the terminal summary.

Eight hand-made answers over four classes; every number below is worked out by hand:
sad 3/4 (one answered happy), happy 2/2, angry 1/2 (one answered "doubt"), worried has no samples.
Wilson 95%: 3/4 -> 30.1-95.4%, 1/2 -> 9.5-90.5% (centre 0.5, half-width 1.96 * sqrt(0.125 + 3.8415/16) / 2.9207).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_emogate.evaluate import checks
from pytest_emogate.evaluate.metrics import GateResult, compute_result, score_samples
from pytest_emogate.evaluate.thresholds import Thresholds, load_thresholds
from pytest_emogate.evaluate.verdict import judge
from pytest_emogate.predictions import Prediction
from pytest_emogate.report.terminal import render_summary

GATE = """\
labels: [sad, happy, angry, worried]
overall:
  accuracy: 0.7
  uar: 0.9
per_class:
  sad: 0.7
  angry: {floor: 0.3, on: lower_bound}
  worried: 0.5
label_validity:
  max_invalid: 0
confusion:
  sad->happy: 0.2
  worried->sad: 0.1
"""
ANSWERS = [
    ("sad", "sad"),
    ("sad", "The emotion is sad."),
    ("sad", "sad"),
    ("sad", "happy"),
    ("happy", "happy"),
    ("happy", "happy"),
    ("angry", "angry"),
    ("angry", "doubt"),
]


@pytest.fixture
def thresholds(tmp_path: Path) -> Thresholds:
    path = tmp_path / "gate.yaml"
    path.write_text(GATE, encoding="utf-8")
    return load_thresholds(path)


def result_of(answers: list[tuple[str, str]], labels: tuple[str, ...]) -> GateResult:
    predictions = [Prediction(f"s{i}", gold, output) for i, (gold, output) in enumerate(answers)]
    return compute_result(score_samples(predictions, labels), labels)


@pytest.fixture
def result(thresholds: Thresholds) -> GateResult:
    return result_of(ANSWERS, thresholds.labels)


def test_overall_accuracy_gives_its_counts(thresholds: Thresholds, result: GateResult) -> None:
    outcome = checks.overall(thresholds, result, "accuracy")
    assert (outcome.id, outcome.passed, outcome.value, outcome.limit, outcome.n) == (
        "overall[accuracy]", True, 0.75, 0.7, 8,
    )  # fmt: skip
    assert outcome.message == "accuracy 6/8 = 75.0% >= floor 70.0% (gate.yaml: overall.accuracy)"


def test_overall_failing_metric(thresholds: Thresholds, result: GateResult) -> None:
    outcome = checks.overall(thresholds, result, "uar")
    assert not outcome.passed
    assert outcome.message == "uar 75.0% < floor 90.0% (gate.yaml: overall.uar)"  # (3/4 + 2/2 + 1/2) / 3


def test_class_floor_on_the_point_estimate(thresholds: Thresholds, result: GateResult) -> None:
    outcome = checks.class_floor(thresholds, result, "sad")
    assert (outcome.passed, outcome.value, outcome.n) == (True, 0.75, 4)
    assert outcome.message == "sad recall 3/4 = 75.0% (95% CI 30.1-95.4%) >= floor 70.0% (gate.yaml: per_class.sad)"


def test_class_floor_on_the_lower_bound(thresholds: Thresholds, result: GateResult) -> None:
    outcome = checks.class_floor(thresholds, result, "angry")
    assert not outcome.passed
    assert outcome.value == pytest.approx(0.0945, abs=1e-4)
    assert outcome.message == (
        "angry recall 1/2 = 50.0% (95% CI 9.5-90.5%): lower bound 9.5% < floor 30.0% "
        "(gate.yaml: per_class.angry, on: lower_bound)"
    )


def test_class_floor_of_a_class_without_samples(thresholds: Thresholds, result: GateResult) -> None:
    outcome = checks.class_floor(thresholds, result, "worried")
    assert (outcome.passed, outcome.n) == (False, 0)
    assert outcome.message == (
        "worried has no samples in the answers, so its floor 50.0% cannot be met (gate.yaml: per_class.worried)"
    )


def test_label_validity_names_the_answers_and_a_sample(thresholds: Thresholds, result: GateResult) -> None:
    outcome = checks.label_validity(thresholds, result)
    assert (outcome.id, outcome.passed, outcome.value, outcome.limit) == ("label_validity", False, 1.0, 0.0)
    assert outcome.message == (
        "1 invalid answer > max 0 (gate.yaml: label_validity.max_invalid): 'doubt' x1 "
        "outside ['sad', 'happy', 'angry', 'worried'] (e.g. s7)"
    )


def test_label_validity_without_invalid_answers(thresholds: Thresholds) -> None:
    clean = result_of([("sad", "sad"), ("happy", "sad")], thresholds.labels)
    outcome = checks.label_validity(thresholds, clean)
    assert outcome.passed
    assert outcome.message == "0 invalid answers <= max 0 (gate.yaml: label_validity.max_invalid)"


def test_label_validity_within_its_limit_lists_at_most_three_samples(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("labels: [sad, happy]\nlabel_validity:\n  max_invalid: 5\n", encoding="utf-8")
    thresholds = load_thresholds(path)
    answers = [("sad", "doubt"), ("sad", ""), ("happy", "doubt"), ("happy", "Doubt."), ("sad", "sad")]
    outcome = checks.label_validity(thresholds, result_of(answers, thresholds.labels))
    assert outcome.passed
    assert outcome.message == (
        "4 invalid answers <= max 5 (thresholds.yaml: label_validity.max_invalid): 'doubt' x3, '(empty)' x1 "
        "outside ['sad', 'happy'] (e.g. s0, s1, s2)"
    )


def test_confusion_over_its_ceiling(thresholds: Thresholds, result: GateResult) -> None:
    outcome = checks.confusion(thresholds, result, "sad->happy")
    assert (outcome.id, outcome.passed, outcome.value, outcome.limit, outcome.n) == (
        "confusion[sad->happy]", False, 0.25, 0.2, 4,
    )  # fmt: skip
    assert outcome.message == "sad answered happy: 1/4 = 25.0% > ceiling 20.0% (gate.yaml: confusion.sad->happy)"


def test_confusion_of_a_class_without_samples_passes(thresholds: Thresholds, result: GateResult) -> None:
    outcome = checks.confusion(thresholds, result, "worried->sad")
    assert outcome.passed
    assert outcome.message == "worried answered sad: 0/0 = 0.0% <= ceiling 10.0% (gate.yaml: confusion.worried->sad)"


def test_every_declared_check_in_file_order(thresholds: Thresholds, result: GateResult) -> None:
    outcomes = checks.evaluate_all(thresholds, result)
    assert [(outcome.id, outcome.passed) for outcome in outcomes] == [
        ("overall[accuracy]", True),
        ("overall[uar]", False),
        ("class_floor[sad]", True),
        ("class_floor[angry]", False),
        ("class_floor[worried]", False),
        ("label_validity", False),
        ("confusion[sad->happy]", False),
        ("confusion[worried->sad]", True),
    ]


def test_a_passed_verdict() -> None:
    verdict = judge(
        ["overall[accuracy]", "label_validity"], {"overall[accuracy]": "passed", "label_validity": "passed"}
    )
    assert (verdict.status, verdict.passed, verdict.failed, verdict.not_run) == ("passed", True, (), ())
    assert verdict.headline() == "PASSED (2 checks)"
    assert verdict.line() == "emogate verdict: PASSED (2 checks)"
    assert judge(["label_validity"], {"label_validity": "passed"}).headline() == "PASSED (1 check)"


def test_a_failed_verdict_names_the_failed_and_the_not_run_checks() -> None:
    declared = ["overall[accuracy]", "class_floor[sad]", "label_validity"]
    verdict = judge(declared, {"overall[accuracy]": "passed", "label_validity": "failed"})
    assert (verdict.status, verdict.passed) == ("failed", False)
    assert (verdict.failed, verdict.not_run) == (("label_validity",), ("class_floor[sad]",))
    assert verdict.statuses == {
        "overall[accuracy]": "passed",
        "class_floor[sad]": "not_run",
        "label_validity": "failed",
    }
    assert verdict.headline() == "FAILED (1 of 3 checks)"
    assert verdict.line() == "emogate verdict: FAILED (1 of 3 checks): label_validity; 1 not run: class_floor[sad]"


def test_an_incomplete_verdict_lists_five_not_run_checks_and_counts_the_rest() -> None:
    declared = [f"class_floor[c{i}]" for i in range(8)]
    verdict = judge(declared, {"class_floor[c0]": "passed", "undeclared": "failed"})  # an undeclared id counts not
    assert (verdict.status, verdict.passed, verdict.failed) == ("incomplete", False, ())
    assert len(verdict.not_run) == 7
    assert verdict.headline() == "INCOMPLETE (1 of 8 checks ran, all passed; 7 not run)"
    assert verdict.line() == (
        "emogate verdict: INCOMPLETE (1 of 8 checks ran, all passed; 7 not run: class_floor[c1], class_floor[c2], "
        "class_floor[c3], class_floor[c4], class_floor[c5] and 2 more)"
    )


def test_the_terminal_summary(thresholds: Thresholds, result: GateResult) -> None:
    outcomes = checks.evaluate_all(thresholds, result)
    ran = {outcome.id: "passed" if outcome.passed else "failed" for outcome in outcomes}
    del ran["class_floor[worried]"]  # deselected: it did not run
    verdict = judge([outcome.id for outcome in outcomes], ran)
    text = render_summary(result, thresholds, verdict, "emogate: gate.yaml, 8 answers", width=100, color=False)
    lines = text.splitlines()
    assert lines[0] == "emogate: gate.yaml, 8 answers"
    assert "class    n  correct  recall       95% CI  precision     F1     floor  slack  ?  status" in lines
    assert "sad      4        3   75.0%   30.1-95.4%     100.0%  85.7%     70.0%      0  ?  pass" in lines
    assert "happy    2        2  100.0%  34.2-100.0%      66.7%  80.0%         -      -     -" in lines
    assert "angry    2        1   50.0%    9.5-90.5%     100.0%  66.7%  30.0% lb     -1  ?  FAIL" in lines
    assert "worried  0        0    0.0%   0.0-100.0%       0.0%   0.0%     50.0%  never     not run" in lines
    assert "accuracy            75.00%  70.00%  pass" in lines
    assert "uar                 75.00%  90.00%  FAIL" in lines
    assert "angry          0      0      1        0          1  2" in lines  # the <invalid> column holds "doubt"
    assert "Invalid answers (1, counted as wrong): 'doubt' x1; e.g. s7 (gold angry)" in lines
    assert lines[-1] == (
        "emogate verdict: FAILED (4 of 8 checks): overall[uar], class_floor[angry], label_validity, "
        "confusion[sad->happy]; 1 not run: class_floor[worried]"
    )
    assert "\x1b[" not in text  # color=False: no escape codes


def test_the_quiet_summary_keeps_the_class_table_and_the_verdict(thresholds: Thresholds, result: GateResult) -> None:
    verdict = judge(["class_floor[sad]"], {"class_floor[sad]": "passed"})
    text = render_summary(result, thresholds, verdict, "header", width=100, color=False, quiet=True)
    lines = text.splitlines()
    assert "sad      4        3   75.0%   30.1-95.4%     100.0%  85.7%     70.0%      0  ?  pass" in lines
    assert not any(line.startswith(("Overall", "Confusion matrix")) for line in lines)
    assert lines[-1] == "emogate verdict: PASSED (1 check)"
