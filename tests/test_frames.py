"""`emogate_result.frame()` and `.confusion_frame()`: the gate's result as pandas DataFrames, with and without a
baseline, equal to the result's own fields and to the comparison's broken, fixed and changed samples."""

from __future__ import annotations

import dataclasses
import sys

import pandas as pd
import pytest

from pytest_emogate.evaluate.compare import compare
from pytest_emogate.evaluate.metrics import GateResult, compute_result, score_samples
from pytest_emogate.predictions import Prediction, read_predictions
from tests.conftest import REGRESSED, SEED

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
COLUMNS = ["name", "gold", "output", "word", "predicted", "correct", "valid"]


def result_of(predictions: list[Prediction], invalid: str = "wrong") -> GateResult:
    return compute_result(score_samples(predictions, LABELS, invalid=invalid), LABELS, invalid)


def test_one_row_per_sample_sorted_by_name_with_typed_columns() -> None:
    result = result_of([
        Prediction("b", "sad", "Sad."), Prediction("a", "happy", "doubt"), Prediction("c", "angry", "<script> Happy"),
    ])  # fmt: skip
    frame = result.frame()
    assert list(frame.columns) == COLUMNS
    assert frame.name.tolist() == ["a", "b", "c"]
    assert frame.output.tolist() == ["doubt", "Sad.", "<script> Happy"]  # the answer exactly as read
    assert frame.word.tolist() == ["doubt", "sad", "happy"]
    assert frame.predicted.tolist() == ["<invalid>", "sad", "happy"]
    assert frame.correct.tolist() == [False, True, False] and frame.correct.dtype == bool
    assert frame.valid.tolist() == [False, True, True] and frame.valid.dtype == bool
    for column in ("gold", "predicted"):  # one shared categorical: gold == predicted compares, classes all listed
        assert frame[column].dtype == pd.CategoricalDtype([*LABELS, "<invalid>"])
    assert (frame.gold == frame.predicted).tolist() == frame.correct.tolist()
    assert frame.gold.value_counts()["worried"] == 0
    assert all(isinstance(value, str) for column in ("name", "output", "word") for value in frame[column])


def test_invalid_answers_mapped_to_a_label_have_no_invalid_category() -> None:
    result = result_of([Prediction("a", "neutral", "doubt"), Prediction("b", "sad", "sad")], invalid="neutral")
    frame = result.frame()
    assert frame.predicted.tolist() == ["neutral", "sad"] and frame.valid.tolist() == [False, True]
    assert list(frame.predicted.cat.categories) == list(LABELS)
    assert list(result.confusion_frame().columns) == list(LABELS)


def test_the_confusion_frame_is_the_labelled_matrix() -> None:
    result = result_of(read_predictions(SEED, LABELS))
    matrix = result.confusion_frame()
    assert matrix.index.name == "gold" and matrix.columns.name == "predicted"
    assert list(matrix.index) == list(LABELS) and list(matrix.columns) == [*LABELS, "<invalid>"]
    assert (matrix.dtypes == "int64").all()
    assert {gold: dict(row) for gold, row in matrix.iterrows()} == result.confusion
    assert matrix.loc["surprise", "<invalid>"] == 1  # the seed's one "doubt"
    counted = result.frame().groupby(["gold", "predicted"], observed=False).size().unstack()
    assert counted.loc[list(LABELS)].equals(matrix)  # gold's categories include <invalid>, never present


def test_with_a_baseline_each_change_agrees_with_the_comparison() -> None:
    baseline = result_of(read_predictions(SEED, LABELS))
    candidate = result_of(read_predictions(REGRESSED, LABELS))
    frame = dataclasses.replace(candidate, baseline=baseline).frame()
    assert list(frame.columns) == [*COLUMNS, "baseline_output", "baseline_predicted", "change"]
    assert frame.change.dtype == pd.CategoricalDtype(["broken", "fixed", "changed", "same"])
    assert frame.baseline_predicted.dtype == frame.predicted.dtype
    comparison = compare(baseline, candidate, "baseline", reps=1)
    changed = {pair.name for pairs in comparison.changed().values() for pair in pairs}
    broken, fixed = ({pair.name for pair in comparison.samples(kind)} for kind in ("broken", "fixed"))
    for kind, names in {"broken": broken, "fixed": fixed, "changed": changed}.items():
        assert set(frame.name[frame.change == kind]) == names, kind
    assert frame.change.value_counts()[["broken", "fixed"]].tolist() == [17, 5]
    before = {sample.name: sample for sample in baseline.samples}
    assert frame.baseline_output.tolist() == [before[name].output for name in frame.name]
    assert frame.baseline_predicted.tolist() == [before[name].predicted for name in frame.name]


def test_changed_follows_the_comparison_definition() -> None:
    before = result_of([Prediction("r", "sad", "sad"), Prediction("w", "sad", "happy"), Prediction("t", "sad", "x"),
                        Prediction("s", "sad", "sad"), Prediction("f", "sad", "angry")])  # fmt: skip
    after = result_of([Prediction("r", "sad", "Sad!"), Prediction("w", "sad", "angry"), Prediction("t", "sad", "y"),
                       Prediction("s", "sad", "sad"), Prediction("f", "sad", "sad")])  # fmt: skip
    frame = dataclasses.replace(after, baseline=before).frame()
    # right in both with another text, wrong in both with another label: changed; wrong in both as <invalid>: same
    assert dict(zip(frame.name, frame.change, strict=True)) == {
        "f": "fixed", "r": "changed", "s": "same", "t": "same", "w": "changed",
    }  # fmt: skip
    assert dataclasses.replace(before, baseline=after).frame().change.tolist()[0] == "broken"


def test_a_baseline_of_other_samples_is_refused() -> None:
    result = result_of([Prediction("a", "sad", "sad")])
    other = result_of([Prediction("b", "sad", "sad")])
    with pytest.raises(ValueError, match=r"does not pair with the answers: 2 names in one only: a, b"):
        dataclasses.replace(result, baseline=other).frame()


def test_the_baseline_does_not_change_equality_or_repr() -> None:
    result = result_of([Prediction("a", "sad", "sad")])
    attached = dataclasses.replace(result, baseline=result)
    assert attached == result and repr(attached) == repr(result)


def test_without_pandas_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    result = result_of([Prediction("a", "sad", "sad")])
    with pytest.raises(ModuleNotFoundError, match=r"emogate_result.frame\(\) needs pandas.*pip install pandas"):
        result.frame()
    with pytest.raises(ModuleNotFoundError, match=r"install \"\.\[frames\]\" in a pytest-emogate clone"):
        result.confusion_frame()


USER_TEST = """
import pandas as pd

def test_frame(emogate_result):
    frame = emogate_result.frame()
    assert len(frame) == 834 and frame.name.is_unique
    assert frame.correct.sum() == {correct}
    assert list(frame.columns[7:]) == {extra}
    if "change" in frame:
        assert (frame.change == "broken").sum() == 17 and (frame.change == "fixed").sum() == 5
    assert emogate_result.confusion_frame().to_numpy().sum() == 834
"""


@pytest.mark.parametrize("baseline", [False, True], ids=["alone", "baseline"])
def test_a_users_own_test_reads_the_frame(project: pytest.Pytester, baseline: bool) -> None:
    extra = ["baseline_output", "baseline_predicted", "change"] if baseline else []
    correct = sum(s.correct for s in result_of(read_predictions(REGRESSED, LABELS)).samples)
    project.makepyfile(test_user=USER_TEST.format(correct=correct, extra=extra))
    args = ["--emogate-predictions=regressed.csv", "-v", "test_user.py"]
    result = project.runpytest(*args, *(["--emogate-baseline=base.csv"] if baseline else []))
    result.stdout.fnmatch_lines(["test_user.py::test_frame PASSED*"])
