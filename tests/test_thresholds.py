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
