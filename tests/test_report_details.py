"""The small things in the reports: the plot's title, the regression table under Holm, `--emogate-show 0`,
sample lines within the terminal width, inference options with a predictions file, the probe line of a check
that did not run."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_emogate.evaluate.checks import evaluate_all
from pytest_emogate.evaluate.metrics import GateResult, compute_result, score_samples
from pytest_emogate.evaluate.thresholds import Thresholds, load_thresholds
from pytest_emogate.evaluate.verdict import Verdict, judge
from pytest_emogate.predictions import read_predictions
from tests.conftest import SEED, THRESHOLDS


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
