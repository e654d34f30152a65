"""What a regression verdict is made of: the broken, fixed and changed samples (raw answers kept byte for byte),
the smallest drop each exact-test check can fail at, and the Holm-Bonferroni step-down."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from scipy.stats import binomtest

from pytest_emogate.evaluate.compare import compare
from pytest_emogate.evaluate.metrics import GateResult, compute_result, score_samples
from pytest_emogate.evaluate.regression import (
    detection_limit,
    holm_adjusted,
    regression_ids,
    regression_outcome,
    smallest_failing_drop,
)
from pytest_emogate.evaluate.thresholds import Thresholds, load_thresholds
from pytest_emogate.predictions import Prediction, read_predictions
from pytest_emogate.report.json_report import sample_entry
from tests.conftest import REGRESSED, SEED, THRESHOLDS

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")


def result_of(predictions: list[Prediction]) -> GateResult:
    return compute_result(score_samples(predictions, LABELS), LABELS)


@pytest.fixture(scope="module")
def thresholds() -> Thresholds:
    return load_thresholds(THRESHOLDS)


# --- the sample lists -----------------------------------------------------------------------------------------


def test_hand_built_candidates_list_exactly_their_changed_samples() -> None:
    baseline = [
        Prediction("z1", "sad", "sad"),
        Prediction("a1", "sad", "Sad."),
        Prediction("m1", "surprise", "surprise"),
        Prediction("k1", "neutral", "happy"),
        Prediction("k2", "neutral", "angry"),
        Prediction("b1", "angry", "doubt"),
        Prediction("c1", "happy", "happy"),
    ]
    odd = 'The "person"\u2028 is\r\n  worried.  '
    candidate = [
        Prediction("z1", "sad", odd),  # broken, raw answer kept as it is
        Prediction("a1", "sad", "sad"),  # right in both, text changed
        Prediction("m1", "surprise", "I cannot tell"),  # broken to an invalid answer
        Prediction("k1", "neutral", "neutral"),  # fixed
        Prediction("k2", "neutral", "sad"),  # wrong in both, label changed
        Prediction("b1", "angry", "doubt"),  # wrong in both, unchanged
        Prediction("c1", "happy", "happy"),  # right in both, unchanged
    ]
    comparison = compare(result_of(baseline), result_of(candidate), "baseline", reps=10)
    broken = [sample_entry(pair) for pair in comparison.samples("broken")]
    assert broken == [  # by class in the taxonomy's order (sad before surprise), then name
        {"name": "z1", "gold": "sad", "baseline_output": "sad", "candidate_output": odd,
         "baseline_predicted": "sad", "candidate_predicted": "worried"},
        {"name": "m1", "gold": "surprise", "baseline_output": "surprise", "candidate_output": "I cannot tell",
         "baseline_predicted": "surprise", "candidate_predicted": "<invalid>"},
    ]  # fmt: skip
    assert [pair.name for pair in comparison.samples("fixed")] == ["k1"]
    changed = comparison.changed()
    assert [pair.name for pair in changed["answer_text"]] == ["a1"]
    assert [pair.name for pair in changed["wrong_label"]] == ["k2"]
    assert sample_entry(changed["wrong_label"][0], "wrong_label")["kind"] == "wrong_label"


def test_the_bundled_regressed_candidate_lists_its_17_broken_and_5_fixed(project: pytest.Pytester) -> None:
    result = project.runpytest("--emogate-predictions", "regressed.csv", "--emogate-baseline", "base.csv",
                               "--emogate-report", "report.json", "--emogate-no-history")  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = json.loads((project.path / "report.json").read_text(encoding="utf-8"))
    samples = report["baseline"]["samples"]
    baseline = {p.name: p for p in read_predictions(SEED, LABELS)}
    candidate = {p.name: p for p in read_predictions(REGRESSED, LABELS)}
    scored_before = {s.name: s for s in result_of(list(baseline.values())).samples}
    scored_after = {s.name: s for s in result_of(list(candidate.values())).samples}
    expected = {
        kind: sorted(
            (name for name in baseline if (scored_before[name].correct, scored_after[name].correct) == flags),
            key=lambda name: (LABELS.index(baseline[name].label), name),
        )
        for kind, flags in {"broken": (True, False), "fixed": (False, True)}.items()
    }
    assert len(expected["broken"]) == 17 and len(expected["fixed"]) == 5
    for kind in ("broken", "fixed"):
        assert [entry["name"] for entry in samples[kind]] == expected[kind]
        for entry in samples[kind]:
            assert entry["baseline_output"] == baseline[entry["name"]].output
            assert entry["candidate_output"] == candidate[entry["name"]].output
            assert entry["gold"] == baseline[entry["name"]].label
    assert samples["changed_counts"] == {"answer_text": 0, "wrong_label": 0} and samples["changed"] == []
    accuracy = report["baseline"]["metrics"]["accuracy"]
    assert accuracy["smallest_failing_drop"] == pytest.approx(9 / 834) and accuracy["p_value_used"] == pytest.approx(
        accuracy["p_value"]
    )
    assert report["baseline"]["per_class"]["surprise"]["smallest_failing_drop"] == pytest.approx(5 / 14)
    assert report["baseline"]["metrics"]["uar"]["smallest_failing_drop"] is None  # bootstrap-tested
    assert report["baseline"]["metrics"]["macro_f1"]["smallest_failing_drop"] is None  # not a declared check


# --- what a check can detect ----------------------------------------------------------------------------------


def oracle(n: int, max_drop: float, alpha: float) -> float | None:
    """The definition, with scipy's exact binomial test as the p-value of k broken and none fixed."""
    for k in range(1, n + 1):
        p = binomtest(k, k, 0.5, alternative="greater").pvalue
        if k / n > max_drop + 1e-12 and p < alpha:
            return k / n
    return None


@pytest.mark.parametrize("n", [14, 45, 834])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
@pytest.mark.parametrize("max_drop", [0.0, 0.1])
def test_smallest_failing_drop_matches_the_exact_test(n: int, alpha: float, max_drop: float) -> None:
    assert smallest_failing_drop(n, max_drop, alpha) == oracle(n, max_drop, alpha)


def test_smallest_failing_drop_exact_cases() -> None:
    assert smallest_failing_drop(14, 0.10, 0.05) == 5 / 14  # 35.7 points: the surprise class
    assert smallest_failing_drop(14, 0.0, 0.05) == 5 / 14  # 0.5^4 = 0.0625 is not below 0.05
    assert smallest_failing_drop(14, 0.0, 0.01) == 7 / 14  # 0.5^7 < 0.01 <= 0.5^6
    assert smallest_failing_drop(45, 0.10, 0.05) == 5 / 45
    assert smallest_failing_drop(834, 0.01, 0.05) == 9 / 834
    assert smallest_failing_drop(4, 0.0, 0.05) is None  # even 4 of 4 broken gives p = 0.0625
    assert smallest_failing_drop(14, 0.95, 0.05) == 1.0  # only all 14 broken exceed the margin
    assert smallest_failing_drop(14, 1.0, 0.05) is None  # no drop exceeds a margin of 100 points


def test_under_holm_a_check_is_judged_at_alpha_over_m(thresholds: Thresholds) -> None:
    seed = result_of(read_predictions(SEED, LABELS))
    comparison = compare(seed, result_of(read_predictions(REGRESSED, LABELS)), "baseline", reps=50)
    assert thresholds.regression is not None
    holm = dataclasses.replace(thresholds, regression=dataclasses.replace(thresholds.regression, correction="holm"))
    m = len(regression_ids(holm))
    assert detection_limit(holm, comparison, "surprise") == smallest_failing_drop(14, 0.10, 0.05 / m) == 8 / 14
    assert detection_limit(thresholds, comparison, "surprise") == 5 / 14


# --- Holm-Bonferroni ------------------------------------------------------------------------------------------


def test_holm_adjusted_p_values_against_the_textbook_step_down() -> None:
    p = {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005}
    adjusted = holm_adjusted(p)
    # sorted: d 0.005*4=0.02, a 0.01*3=0.03, c 0.03*2=0.06, b max(0.06, 0.04*1)=0.06
    assert adjusted == pytest.approx({"d": 0.02, "a": 0.03, "c": 0.06, "b": 0.06})
    assert holm_adjusted({"x": 0.7, "y": 0.9}) == pytest.approx({"x": 1.0, "y": 1.0})


def test_with_holm_the_bundled_regressed_candidate_passes(thresholds: Thresholds) -> None:
    seed = result_of(read_predictions(SEED, LABELS))
    comparison = compare(seed, result_of(read_predictions(REGRESSED, LABELS)), "baseline", reps=200)
    assert thresholds.regression is not None
    holm = dataclasses.replace(thresholds, regression=dataclasses.replace(thresholds.regression, correction="holm"))
    plain = regression_outcome(thresholds, comparison, "accuracy")
    corrected = regression_outcome(holm, comparison, "accuracy")
    assert not plain.passed and corrected.passed
    assert "p=0.0085, Holm-adjusted p=0.0676 >= alpha 0.05, not significant" in corrected.message


def test_regression_correction_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    base = THRESHOLDS.read_text(encoding="utf-8")
    path.write_text(base.replace("  alpha: 0.05\n", "  alpha: 0.05\n  correction: holm\n"), encoding="utf-8")
    policy = load_thresholds(path).regression
    assert policy is not None and policy.correction == "holm"
    path.write_text(base.replace("  alpha: 0.05\n", "  alpha: 0.05\n  correction: bonferroni\n"), encoding="utf-8")
    with pytest.raises(
        pytest.UsageError, match=r"regression\.correction: expected one of none, holm, found 'bonferroni'"
    ):
        load_thresholds(path)


# --- the listing and `emogate diff` ---------------------------------------------------------------------------


def test_sample_lines_list_show_per_list_cut_answers_to_one_line() -> None:
    from pytest_emogate.report.samples import sample_lines

    long = "The person is " + "very " * 100_000 + "worried."  # half a megabyte
    baseline = [Prediction(f"s{i:02d}", "sad", "sad") for i in range(12)] + [Prediction("h1", "happy", "sad")]
    candidate = [Prediction(f"s{i:02d}", "sad", long if i == 0 else "happy\nreally") for i in range(12)]
    candidate.append(Prediction("h1", "happy", "happy"))
    comparison = compare(result_of(baseline), result_of(candidate), "baseline", reps=10)
    lines = sample_lines(comparison, show=3)
    assert lines[0] == "Broken (12):"
    assert lines[1].startswith("  s00 (gold sad): 'sad' -> 'The person is very very") and lines[1].endswith(
        "…' (read as sad -> worried)"
    )
    assert len(lines[1]) < 200
    assert lines[2] == "  s01 (gold sad): 'sad' -> 'happy\\nreally' (read as sad -> <invalid>)"
    assert lines[4] == "  ... and 9 more (JSON report: baseline.samples)"
    assert lines[5:] == ["Fixed (1):", "  h1 (gold happy): 'sad' -> 'happy'"]
    assert sample_lines(comparison, show=0) == [
        "Broken (12); Fixed (1): samples not listed (show is 0; JSON report: baseline.samples)"
    ]


def test_emogate_diff_prints_the_comparison_without_pytest(capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_emogate.cli import main

    code = main(["diff", str(SEED), str(REGRESSED), "--thresholds", str(THRESHOLDS), "--show", "2"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith(f"emogate diff: baseline {SEED} (834 rows) -> candidate {REGRESSED} (834 rows)\n") or (
        "emogate diff: baseline fixtures/seed_test3_predictions.csv (834 rows) -> candidate " in out
    )
    assert "Regression vs baseline: 5 fixed, 17 broken, 739 both right, 73 both wrong" in out
    assert "Broken (17):\n  samplenew_00000002 (gold neutral): 'neutral' -> 'sad'\n" in out
    assert "  ... and 15 more (emogate diff --show N lists more)\n" in out
    assert out.rstrip().endswith("emogate verdict: FAILED (1 of 8 checks): regression[accuracy]")
    assert main(["diff", str(SEED), str(SEED), "--thresholds", str(THRESHOLDS)]) == 0
    assert "Broken" not in capsys.readouterr().out


def test_emogate_diff_names_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_emogate.cli import main

    short = tmp_path / "short.csv"
    short.write_text("name,label,output\nsamplenew_00000002,neutral,sad\n", encoding="utf-8")
    assert main(["diff", str(SEED), str(short), "--thresholds", str(THRESHOLDS)]) == 2
    err = capsys.readouterr().err
    assert "833 names only in the baseline" in err and "regenerate the baseline" in err
    assert main(["diff", str(SEED), str(tmp_path / "none.csv"), "--thresholds", str(THRESHOLDS)]) == 2
    assert "candidate file " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["diff", str(SEED), str(SEED), "--show", "-1"])


# --- slack and the Markdown's sample lists ------------------------------------------------------------------


def test_floor_slack_counts_the_answers_a_class_may_still_lose() -> None:
    from pytest_emogate.evaluate.checks import floor_slack
    from pytest_emogate.evaluate.metrics import ClassStats, wilson_interval
    from pytest_emogate.evaluate.thresholds import ClassFloor

    def stats(correct: int, n: int) -> ClassStats:
        return ClassStats(n, correct, correct, correct / n if n else 0.0, wilson_interval(correct, n), 1.0, 1.0)

    assert floor_slack(stats(6, 14), ClassFloor(0.35)) == 1  # 5/14 = 35.7% still clears 35%, 4/14 does not
    assert floor_slack(stats(5, 14), ClassFloor(0.35)) == 0
    assert floor_slack(stats(4, 14), ClassFloor(0.35)) == -1  # one more right answer needed
    assert floor_slack(stats(33, 45), ClassFloor(0.70)) == 1
    assert floor_slack(stats(14, 14), ClassFloor(0.0)) == 14
    assert floor_slack(stats(1, 2), ClassFloor(0.30, "lower_bound")) == -1  # 2/2 has lower bound 34.2%
    assert floor_slack(stats(3, 4), ClassFloor(0.99, "lower_bound")) is None  # even 4/4 cannot clear it
    assert floor_slack(stats(0, 0), ClassFloor(0.5)) is None


def test_the_markdown_lists_samples_in_details_and_stays_under_a_mebibyte() -> None:
    from pytest_emogate.evaluate.checks import evaluate_all
    from pytest_emogate.evaluate.verdict import judge
    from pytest_emogate.report.markdown import MAX_BYTES, MarkdownInput, render_markdown

    thresholds = load_thresholds(THRESHOLDS)
    names = [f"sample_{'n' * 70}_{i:05d}" for i in range(5000)]
    noisy = "<b>&amp;|" * 200 + " wrong"  # escaping makes each shown character several bytes
    baseline = [Prediction(name, "sad", noisy + " sad") for name in names]  # every answer right
    candidate = [Prediction(name, "sad", noisy) for name in names]  # every answer broken
    after = result_of(candidate)
    comparison = compare(result_of(baseline), after, "baseline", reps=2)
    outcomes = evaluate_all(thresholds, after)
    verdict = judge([o.id for o in outcomes], {o.id: "passed" if o.passed else "failed" for o in outcomes})
    text = render_markdown(MarkdownInput(after, thresholds, outcomes, verdict, "header", comparison, "baseline b"))
    assert MAX_BYTES - 2000 < len(text.encode("utf-8")) <= MAX_BYTES
    assert "<details><summary>Broken (5000)</summary>" in text
    assert "<b>" not in text and "&lt;b&gt;" in text  # answers are text, never HTML
    listed = text.count("\n| sample_")
    assert 5000 > listed > 300
    assert f"*{5000 - listed} more samples are not listed here: the summary stays under 1,000,000 bytes" in text
    seed = read_predictions(SEED, LABELS)
    regressed = result_of(read_predictions(REGRESSED, LABELS))
    small = render_markdown(MarkdownInput(
        regressed, thresholds, outcomes, verdict, "header", compare(result_of(seed), regressed, "baseline", reps=10),
        "baseline b",
    ))  # fmt: skip
    assert small.count("\n| samplenew_") == 22 and "not listed here" not in small
