"""thresholds.yaml validation: a valid file loads; every problem is named in one UsageError."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_emogate.evaluate.thresholds import ClassFloor, RegressionPolicy, load_thresholds
from tests.conftest import THRESHOLDS

LABELS = "labels: [neutral, angry, happy, sad, worried, surprise]\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "thresholds.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(pytest.UsageError) as error:
        load_thresholds(path)
    lines = str(error.value).splitlines()
    assert lines[0].startswith(f"thresholds file {path}: ")
    return [line.removeprefix("  - ") for line in lines[1:]]


def test_the_shipped_file_loads() -> None:
    thresholds = load_thresholds(THRESHOLDS)
    assert thresholds.labels == ("neutral", "angry", "happy", "sad", "worried", "surprise")
    assert thresholds.invalid == "wrong"
    assert thresholds.overall["accuracy"] == 0.89
    assert thresholds.per_class["surprise"] == ClassFloor(0.35)
    assert thresholds.max_invalid == 0
    assert thresholds.confusion["neutral->happy"] == 0.08
    assert thresholds.regression == RegressionPolicy(
        alpha=0.05, max_drop={"accuracy": 0.01, "uar": 0.03}, per_class_max_drop=dict.fromkeys(thresholds.labels, 0.1)
    )
    assert thresholds.source("per_class.surprise") == "thresholds.yaml: per_class.surprise"


def test_optional_sections_and_floor_on_lower_bound(tmp_path: Path) -> None:
    path = write(tmp_path, LABELS + "invalid: neutral\nper_class:\n  surprise: {floor: 0.2, on: lower_bound}\n")
    thresholds = load_thresholds(path)
    assert thresholds.per_class == {"surprise": ClassFloor(0.2, "lower_bound")}
    assert thresholds.invalid == "neutral"
    assert (thresholds.overall, thresholds.confusion, thresholds.max_invalid, thresholds.regression) == (
        {},
        {},
        None,
        None,
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("labels: []\n", "labels: expected a non-empty list of label names, found list []"),
        ("labels: [sad, sad]\n", "labels: expected unique names, found duplicates ['sad']"),
        (
            LABELS + "colour: red\n",
            "colour: unknown key; expected one of labels, aliases, invalid, overall, "
            "per_class, label_validity, confusion, regression, expect_samples, consistency",
        ),
        (
            LABELS + "invalid: doubt\n",
            "invalid: expected 'wrong' or one of the labels ('neutral', 'angry', "
            "'happy', 'sad', 'worried', 'surprise'), found 'doubt'",
        ),
        (
            LABELS + "aliases: {surprised: amazed}\n",
            "aliases.surprised: expected one of the labels "
            "['angry', 'happy', 'neutral', 'sad', 'surprise', 'worried'], found str 'amazed'",
        ),
        (LABELS + "overall: {accuracy: 1.5}\n", "overall.accuracy: expected a number in [0, 1], found float 1.5"),
        (LABELS + "overall: {accuracy: '0.9'}\n", "overall.accuracy: expected a number in [0, 1], found str '0.9'"),
        (
            LABELS + "overall: {acc: 0.9}\n",
            "overall.acc: unknown metric; expected one of accuracy, "
            "weighted_precision, weighted_recall, weighted_f1, macro_precision, macro_recall, macro_f1, uar",
        ),
        (LABELS + "overall: [accuracy]\n", "overall: expected a mapping, found list ['accuracy']"),
        (
            LABELS + "per_class: {fear: 0.5}\n",
            "per_class.fear: unknown class; expected one of the labels "
            "['angry', 'happy', 'neutral', 'sad', 'surprise', 'worried']",
        ),
        (LABELS + "per_class: {sad: true}\n", "per_class.sad: expected a number in [0, 1], found bool True"),
        (
            LABELS + "per_class: {sad: {floor: 0.5, on: upper}}\n",
            "per_class.sad.on: expected one of point, lower_bound, found str 'upper'",
        ),
        (
            LABELS + "label_validity: {max_invalid: -1}\n",
            "label_validity.max_invalid: expected a whole number >= 0, found int -1",
        ),
        (
            LABELS + "label_validity: {max: 0}\n",
            "label_validity: expected a mapping with the key max_invalid, found dict {'max': 0}",
        ),
        (
            LABELS + "confusion: {neutral-happy: 0.1}\n",
            "confusion.neutral-happy: expected 'gold->pred' with two "
            "different labels of ['angry', 'happy', 'neutral', 'sad', 'surprise', 'worried'] (pred may be <invalid>)",
        ),
        (
            LABELS + "confusion: {sad->sad: 0.1}\n",
            "confusion.sad->sad: expected 'gold->pred' with two different "
            "labels of ['angry', 'happy', 'neutral', 'sad', 'surprise', 'worried'] (pred may be <invalid>)",
        ),
        (LABELS + "regression: {alpha: 0}\n", "regression.alpha: expected a number in (0, 1), found int 0"),
        (
            LABELS + "regression: {max_drop: {f1: 0.1}}\n",
            "regression.max_drop.f1: unknown metric; expected one of "
            "accuracy, weighted_precision, weighted_recall, weighted_f1, macro_precision, macro_recall, macro_f1, uar",
        ),
        (
            LABELS + "regression: {per_class_max_drop: 2}\n",
            "regression.per_class_max_drop: expected a number in [0, 1], found int 2",
        ),
    ],
)
def test_each_problem_is_named(tmp_path: Path, text: str, problem: str) -> None:
    assert problems_of(write(tmp_path, text)) == [problem]


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, LABELS + "overall: {accuracy: 2}\nper_class: {fear: 0.5, sad: -1}\ncolour: red\n")
    with pytest.raises(pytest.UsageError, match=r"4 problems") as error:
        load_thresholds(path)
    assert len(str(error.value).splitlines()) == 5


def test_a_confusion_limit_may_name_the_invalid_column(tmp_path: Path) -> None:
    assert load_thresholds(write(tmp_path, LABELS + "confusion: {surprise-><invalid>: 0.1}\n")).confusion == {
        "surprise-><invalid>": 0.1
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "expected a mapping at the top level, found nothing"),
        ("- a\n", "expected a mapping at the top level, found list ['a']"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, problem: str) -> None:
    assert problems_of(write(tmp_path, text)) == [problem]


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "thresholds.yaml") == [
        "the file does not exist (set --emogate-thresholds or create it)"
    ]
    problem = problems_of(write(tmp_path, "labels: [a\n"))[0]
    assert problem.startswith("not valid YAML: ")


# Every declared check can fail, whatever the answers ----------------------------------------------------------

TAIL = "(accuracy, weighted_precision, weighted_recall, weighted_f1, macro_precision, macro_recall, macro_f1, uar)"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "labels: [accuracy, sad]\nper_class: {sad: 0.5}\n",
            "labels: 'accuracy' is also a metric's name, so the regression check of the class and of the metric "
            f"would both be regression[accuracy]; expected a label that is no metric's name nor the word before its "
            f"'_' {TAIL}",
        ),
        (
            "labels: [weighted, sad]\nper_class: {sad: 0.5}\n",
            "labels: 'weighted' would name the class's history columns weighted_precision, weighted_recall, "
            "weighted_f1, which are the metrics' own columns (emogate history --csv, history.frame()); expected a "
            f"label that is no metric's name nor the word before its '_' {TAIL}",
        ),
        (
            LABELS + "overall: {uar: 0}\n",
            "overall.uar: a floor of 0 can never fail (no metric is below 0); expected the least value you accept, "
            "e.g. 0.01 (--emogate-ratchet raises a floor from there), or leave the metric out: the summary and the "
            "JSON report show every metric",
        ),
        (
            LABELS + "confusion: {sad->happy: 1.0}\n",
            "confusion.sad->happy: a ceiling of 1 can never fail (no share is above 1); expected the largest share "
            "you accept, below 1, or leave the pair out: the summary's confusion matrix shows every pair",
        ),
        (
            LABELS + "invalid: neutral\nconfusion: {surprise-><invalid>: 0.1}\n",
            "confusion.surprise-><invalid>: with invalid: neutral, an answer outside the labels counts as neutral "
            "and none as <invalid>, so this ceiling can never fail; expected surprise->neutral (which counts them), "
            "label_validity.max_invalid to limit them, or invalid: wrong to count them as <invalid>",
        ),
        (
            LABELS + "invalid: neutral\nconfusion: {neutral-><invalid>: 0.1}\n",
            "confusion.neutral-><invalid>: with invalid: neutral, an answer outside the labels counts as neutral "
            "and none as <invalid>, so this ceiling can never fail; expected label_validity.max_invalid to limit "
            "them, or invalid: wrong to count them as <invalid>",
        ),
        (
            LABELS + "expect_samples: 14\nlabel_validity: {max_invalid: 14}\n",
            "label_validity.max_invalid: 14 can never fail on the 14 samples of expect_samples (not even with every "
            "answer invalid); expected fewer than 14",
        ),
        (
            LABELS + "regression: {max_drop: {accuracy: 1}}\n",
            "regression.max_drop.accuracy: a margin of 1 can never fail (nothing drops by more than 1, from 1 to "
            "0); expected the largest drop you accept, below 1, or leave the check out",
        ),
        (
            LABELS + "regression: {per_class_max_drop: 1.0}\n",
            "regression.per_class_max_drop: a margin of 1 can never fail (nothing drops by more than 1, from 1 to "
            "0); expected the largest drop you accept, below 1, or leave the check out",
        ),
        (
            LABELS + "regression: {per_class_max_drop: {sad: 1}}\n",
            "regression.per_class_max_drop.sad: a margin of 1 can never fail (nothing drops by more than 1, from 1 "
            "to 0); expected the largest drop you accept, below 1, or leave the check out",
        ),
        (
            LABELS + "regression: {alpha: 0.000999, max_drop: {accuracy: 0.01, uar: 0.03}}\n",
            "regression.alpha: 0.000999 can never be met by regression.max_drop.uar, tested with the paired "
            "bootstrap: the smallest p its 1,000 resamples can show is 1/1001 (0.000999), so a drop could never "
            "fail; expected an alpha above 0.000999, or margins only on accuracy, weighted_recall and the classes "
            "(the exact McNemar test)",
        ),
        (
            LABELS + "regression: {alpha: 0.0015, correction: holm, max_drop: {uar: 0.03, macro_f1: 0.03}}\n",
            "regression.alpha: 0.0015 can never be met by regression.max_drop.uar, regression.max_drop.macro_f1, "
            "tested with the paired bootstrap: with correction: holm over its 2 bootstrap-tested checks, the "
            "smallest adjusted p is 2/1001 (0.001998), so a drop could never fail; expected an alpha above "
            "0.001998, or margins only on accuracy, weighted_recall and the classes (the exact McNemar test)",
        ),
    ],
)
def test_a_check_that_could_never_fail_is_refused_saying_what_to_write(tmp_path: Path, text: str, problem: str) -> None:
    assert problems_of(write(tmp_path, text)) == [problem]


@pytest.mark.parametrize(
    "text",
    [
        LABELS + "per_class: {sad: 0, happy: {floor: 0, on: lower_bound}}\n",  # fails when the class has no samples
        LABELS + "overall: {uar: 0.01}\nconfusion: {sad->happy: 0.99, sad-><invalid>: 0.5}\n",
        LABELS + "invalid: neutral\nconfusion: {surprise->neutral: 0.2}\n",
        LABELS + "expect_samples: 14\nlabel_validity: {max_invalid: 13}\n",
        LABELS + "regression: {alpha: 0.001, max_drop: {uar: 0.99}, per_class_max_drop: 0.99}\n",  # 0.001 > 1/1001
        LABELS + "regression: {alpha: 0.002, correction: holm, max_drop: {uar: 0.03, macro_f1: 0.03}}\n",
        LABELS + "regression: {alpha: 0.00001, max_drop: {accuracy: 0.01}, per_class_max_drop: 0.1}\n",  # exact tests
        "labels: [accuracy_drop, recall, sad]\nper_class: {sad: 0.5}\n",  # no metric's name, nor its first word
    ],
)
def test_checks_that_can_fail_are_accepted(tmp_path: Path, text: str) -> None:
    load_thresholds(write(tmp_path, text))
