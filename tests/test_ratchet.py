"""`--emogate-ratchet`: floors rise to the 95% lower bound rounded down, never fall, and the file keeps its comments."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from pytest_emogate.evaluate.bootstrap import metric_intervals
from pytest_emogate.evaluate.metrics import GateResult, compute_result, score_samples
from pytest_emogate.evaluate.ratchet import apply_raises, proposed_raises, ratchet
from pytest_emogate.evaluate.thresholds import load_thresholds
from pytest_emogate.extras import require
from pytest_emogate.predictions import read_predictions
from tests.conftest import SEED

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
LOW_FLOORS = """\
# a gate with room to ratchet
labels: [neutral, angry, happy, sad, worried, surprise]
invalid: neutral           # the original's fallback, so the seed passes

overall:                   # floors on aggregate metrics
  accuracy: 0.80           # the published run: 90.65%
  weighted_f1: 0.90        # cleared (90.4%), but not by its lower bound: stays
  uar: 0.50

per_class:
  sad: 0.95                # cleared (97.3%), but not by its lower bound (94.5%): stays
  worried: 0.50            # 33/45
  surprise: {floor: 0.10, on: lower_bound}  # 6/14

label_validity:
  max_invalid: 1           # the seed's "doubt"

confusion:
  neutral->happy: 0.08     # ceilings never move
"""


@pytest.fixture(scope="module")
def seed() -> GateResult:
    """The published run with the original's fallback (the "doubt" answer counts as neutral)."""
    return compute_result(score_samples(read_predictions(SEED, LABELS), LABELS, invalid="neutral"), LABELS, "neutral")


def test_floors_rise_to_the_lower_bound_rounded_down(tmp_path: Path, seed: GateResult) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(LOW_FLOORS, encoding="utf-8")
    intervals = metric_intervals(seed, reps=300)
    raises = {item.key: (item.old, item.new) for item in proposed_raises(load_thresholds(path), seed, intervals)}
    uar_floor = int(intervals["uar"][0] * 100) / 100
    assert raises == {
        "overall.accuracy": (0.80, 0.88),  # Wilson lower bound of 756/834: 88.48%
        "overall.uar": (0.50, uar_floor),  # the bootstrap's 2.5th percentile
        "per_class.worried": (0.50, 0.58),  # 33/45 -> 58.96%
        "per_class.surprise": (0.10, 0.21),  # 6/14 -> 21.38%
    }
    assert 0.5 < uar_floor < seed.metrics["uar"]


def test_the_file_keeps_its_comments_and_layout(tmp_path: Path, seed: GateResult) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(LOW_FLOORS, encoding="utf-8")
    text = ratchet(load_thresholds(path), seed, metric_intervals(seed, reps=300))
    after = path.read_text(encoding="utf-8")
    changed = [(old, new) for old, new in zip(LOW_FLOORS.splitlines(), after.splitlines(), strict=True) if old != new]
    assert changed[0] == ("  accuracy: 0.80           # the published run: 90.65%",
                          "  accuracy: 0.88           # the published run: 90.65%")  # fmt: skip
    assert changed[2:] == [
        ("  worried: 0.50            # 33/45", "  worried: 0.58            # 33/45"),
        ("  surprise: {floor: 0.10, on: lower_bound}  # 6/14", "  surprise: {floor: 0.21, on: lower_bound}  # 6/14"),
    ]
    assert changed[1][0] == "  uar: 0.50" and changed[1][1].startswith("  uar: 0.7")
    assert text.startswith(f"emogate ratchet: raised 4 floors in {path}:\n  overall.accuracy 0.80 -> 0.88 (95% lower "
                           "bound 88.48%)\n")  # fmt: skip
    assert "--- thresholds.yaml (before)\n+++ thresholds.yaml (ratcheted)\n" in text
    assert "-  worried: 0.50            # 33/45\n-  surprise: {floor: 0.10" in text
    assert "+  worried: 0.58            # 33/45\n+  surprise: {floor: 0.21" in text
    assert load_thresholds(path).per_class["surprise"].on == "lower_bound"


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_a_crlf_file_stays_crlf_with_its_byte_order_mark(tmp_path: Path, seed: GateResult, bom: bytes) -> None:
    lf, crlf = tmp_path / "lf.yaml", tmp_path / "crlf.yaml"
    lf.write_text(LOW_FLOORS, encoding="utf-8")
    crlf.write_bytes(bom + LOW_FLOORS.replace("\n", "\r\n").encode("utf-8"))
    intervals = metric_intervals(seed, reps=100)
    raises = proposed_raises(load_thresholds(lf), seed, intervals)
    assert apply_raises(crlf, raises) == apply_raises(lf, raises)  # the texts compared, and the diff shown
    assert crlf.read_bytes() == bom + lf.read_bytes().replace(b"\n", b"\r\n")


def test_floors_never_fall(tmp_path: Path, seed: GateResult) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(LOW_FLOORS.replace("0.80 ", "0.90 "), encoding="utf-8")
    raised = {item.key for item in proposed_raises(load_thresholds(path), seed, metric_intervals(seed, reps=100))}
    assert "overall.accuracy" not in raised and "overall.weighted_f1" not in raised and "per_class.sad" not in raised
    assert apply_raises(path, [])[0] == apply_raises(path, [])[1] == path.read_text(encoding="utf-8")


def test_nothing_to_raise_says_so(tmp_path: Path, seed: GateResult) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("labels: [neutral, angry, happy, sad, worried, surprise]\noverall: {accuracy: 0.95}\n")
    assert ratchet(load_thresholds(path), seed, {}) == (
        "emogate ratchet: no floor in thresholds.yaml is cleared by a 95% lower bound with margin\n"
    )


def test_without_ruamel_the_error_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ruamel", None)
    monkeypatch.setitem(sys.modules, "ruamel.yaml", None)
    message = '--emogate-ratchet needs ruamel.yaml, which is not installed: pip install "ruamel.yaml>=0.17.21"'
    with pytest.raises(pytest.UsageError, match=f"^{re.escape(message)}$"):
        require(("ruamel.yaml",), "--emogate-ratchet", 'pip install "ruamel.yaml>=0.17.21"')


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project whose low floors the seed clears with margin."""
    pytester.makefile(".yaml", thresholds=LOW_FLOORS)
    (pytester.path / "preds.csv").write_bytes(SEED.read_bytes())
    return pytester


def test_a_ratchet_run_raises_prints_the_diff_and_a_rerun_changes_nothing(project: pytest.Pytester) -> None:
    result = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-ratchet", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "emogate ratchet: raised 4 floors in */thresholds.yaml:",
            "  overall.accuracy 0.80 -> 0.88 (95% lower bound 88.48%)",
            "--- thresholds.yaml (before)",
            "+++ thresholds.yaml (ratcheted)",
            "-  accuracy: 0.80           # the published run: 90.65%",
            "+  accuracy: 0.88           # the published run: 90.65%",
        ]
    )
    after = (project.path / "thresholds.yaml").read_text(encoding="utf-8")
    assert after.startswith("# a gate with room to ratchet\n") and "neutral->happy: 0.08     # ceilings" in after
    again = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-ratchet", "-q")
    again.stdout.fnmatch_lines(["emogate ratchet: no floor in thresholds.yaml is cleared by a 95% lower bound*"])
    assert (project.path / "thresholds.yaml").read_text(encoding="utf-8") == after


def test_a_thresholds_file_the_ratchet_cannot_rewrite_is_refused_before_any_test_runs(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_access = os.access  # a read-only folder, even for root
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(project.path) and real_access(path, mode))
    before = (project.path / "thresholds.yaml").read_bytes()
    result = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-ratchet", "--emogate-no-history")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: emogate outputs: 1 problem",
            f"  - --emogate-ratchet */thresholds.yaml: its folder {project.path} is not writable",
        ]
    )
    assert "passed" not in result.stdout.str()
    assert (project.path / "thresholds.yaml").read_bytes() == before


def test_a_failing_gate_never_ratchets(project: pytest.Pytester) -> None:
    project.makefile(".yaml", thresholds=LOW_FLOORS.replace("sad: 0.95 ", "sad: 0.99 "))
    before = (project.path / "thresholds.yaml").read_text(encoding="utf-8")
    result = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-ratchet", "-q")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["emogate ratchet: thresholds.yaml NOT changed: the gate failed"])
    assert (project.path / "thresholds.yaml").read_text(encoding="utf-8") == before
