"""End-to-end pytester runs of the gate on predictions files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REGRESSED, SEED, THRESHOLDS, literal

PASSING = THRESHOLDS.read_text(encoding="utf-8").replace("max_invalid: 0", "max_invalid: 1")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with the shipped thresholds.yaml and the seed predictions."""
    pytester.makefile(".yaml", thresholds=THRESHOLDS.read_text(encoding="utf-8"))
    (pytester.path / "preds.csv").write_bytes(SEED.read_bytes())
    return pytester


def test_the_seed_fails_only_on_label_validity(project: pytest.Pytester) -> None:
    result = project.runpytest("--emogate-predictions", "preds.csv")
    result.assert_outcomes(passed=14, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            literal(line)
            for line in [
                "emogate: thresholds thresholds.yaml (sha256 *, invalid answers: wrong); answers from predictions "
                "preds.csv (834 rows)",
                "*1 invalid answer > max 0 (thresholds.yaml: label_validity.max_invalid): 'doubt' x1 outside "
                "['neutral', 'angry', 'happy', 'sad', 'worried', 'surprise'] (e.g. samplenew_00000702)",
                "*= emogate summary =*",
                "Per-class recall*",
                "surprise *14 *6 *42.9% *21.4-67.4% *35.0% *+1 *? *pass",
                "Overall",
                "accuracy *90.65% *89.00% *pass",
                "Confusion matrix (rows: gold label, columns: predicted label)",
                "gold \\ pred *neutral *angry *happy *sad *worried *surprise *<invalid> *n",
                "surprise *2 *1 *0 *1 *3 *6 *1 *14",
                "Invalid answers (1, counted as wrong): 'doubt' x1; e.g. samplenew_00000702 (gold surprise)",
                "emogate verdict: FAILED (1 of 15 checks): label_validity",
                "FAILED emogate::test_label_validity - Failed: 1 invalid answer*",
            ]
        ]
    )


def test_a_passing_gate_exits_zero(project: pytest.Pytester) -> None:
    project.makefile(".yaml", thresholds=PASSING)
    result = project.runpytest("--emogate-predictions", "preds.csv")
    result.assert_outcomes(passed=15)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["emogate verdict: PASSED (15 checks)"])


def test_test_ids_follow_the_thresholds(project: pytest.Pytester) -> None:
    result = project.runpytest("--emogate-predictions", "preds.csv", "--co", "-q")
    ids = [line for line in result.stdout.lines if line.startswith("emogate::")]
    assert ids == [
        "emogate::test_overall[accuracy]",
        "emogate::test_overall[weighted_f1]",
        "emogate::test_overall[uar]",
        "emogate::test_overall[macro_f1]",
        *(f"emogate::test_class_floor[{c}]" for c in ("angry", "happy", "neutral", "sad", "worried", "surprise")),
        "emogate::test_label_validity",
        *(
            f"emogate::test_confusion_limit[{p}]"
            for p in ("neutral->happy", "neutral->angry", "worried->angry", "surprise->worried")
        ),
    ]
    marked = project.runpytest("--emogate-predictions", "preds.csv", "--co", "-q", "-m", "not emogate")
    assert not [line for line in marked.stdout.lines if line.startswith("emogate::")]


@pytest.mark.parametrize(
    ("yaml_edit", "test_id", "message"),
    [
        (
            "surprise: 0.35",
            "test_class_floor[surprise]",
            "surprise recall 6/14 = 42.9% (95% CI 21.4-67.4%) < floor 50.0% (thresholds.yaml: per_class.surprise)",
        ),
        (
            "accuracy: 0.89",
            "test_overall[accuracy]",
            "accuracy 756/834 = 90.6% < floor 95.0% (thresholds.yaml: overall.accuracy)",
        ),
        (
            "neutral->happy: 0.08",
            "test_confusion_limit[neutral->happy]",
            "neutral answered happy: 10/166 = 6.0% > ceiling 5.0% (thresholds.yaml: confusion.neutral->happy)",
        ),
    ],
)
def test_failure_lines(project: pytest.Pytester, yaml_edit: str, test_id: str, message: str) -> None:
    key, _, _ = yaml_edit.partition(":")
    limit = {"surprise": "0.50", "accuracy": "0.95", "neutral->happy": "0.05"}[key]
    project.makefile(".yaml", thresholds=PASSING.replace(yaml_edit, f"{key}: {limit}"))
    result = project.runpytest("--emogate-predictions", "preds.csv", "-rf")
    result.assert_outcomes(passed=14, failed=1)
    result.stdout.fnmatch_lines([literal(f"_*{test_id}*_"), literal(message)])
    assert "Traceback" not in result.stdout.str()


def test_lower_bound_floor(project: pytest.Pytester) -> None:
    project.makefile(".yaml", thresholds=PASSING.replace("surprise: 0.35", "surprise: {floor: 0.40, on: lower_bound}"))
    result = project.runpytest("--emogate-predictions", "preds.csv")
    result.assert_outcomes(passed=14, failed=1)
    result.stdout.fnmatch_lines(
        [
            literal(line)
            for line in [
                "surprise recall 6/14 = 42.9% (95% CI 21.4-67.4%): lower bound 21.4% < floor 40.0% "
                "(thresholds.yaml: per_class.surprise, on: lower_bound)",
                "surprise *14 *6 *42.9% *21.4-67.4% *40.0% lb *FAIL",
            ]
        ]
    )


def test_the_plugin_is_inert_without_the_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_user(): pass")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "emogate:" not in result.stdout.str() and "emogate summary" not in result.stdout.str()


@pytest.mark.slow
def test_importing_the_plugin_pulls_in_nothing_heavy() -> None:
    code = (
        "import sys, pytest_emogate.plugin\n"
        "heavy = ('torch', 'transformers', 'peft', 'sklearn', 'pandas', 'rich', 'cv2', 'numpy', 'matplotlib',\n"
        "         'yaml', 'pytest_emogate.gate', 'pytest_emogate.evaluate.metrics')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--emogate-thresholds", "missing.yaml"], "ERROR: thresholds file */missing.yaml: 1 problem"),
        (["--emogate-thresholds", "bad.yaml"], "ERROR: thresholds file */bad.yaml: 1 problem"),
    ],
)
def test_bad_thresholds_exit_4_without_a_traceback(project: pytest.Pytester, args: list[str], message: str) -> None:
    project.makefile(".yaml", bad="labels: [sad]\noverall: {accuracy: 2}\n")
    result = project.runpytest("--emogate-predictions", "preds.csv", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_bad_predictions_exit_4(project: pytest.Pytester) -> None:
    (project.path / "broken.csv").write_text("name,label,output\na,sad,sad\na,fear,sad\n", encoding="utf-8")
    result = project.runpytest("--emogate-predictions", "broken.csv")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: predictions file */broken.csv: 1 problem*",
            "  - line 3: duplicate name 'a' (first seen on line 2)",
        ]
    )


def test_json_report(project: pytest.Pytester) -> None:
    (project.path / "out").mkdir()
    result = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-report", "out/report.json")
    report = json.loads((project.path / "out" / "report.json").read_text(encoding="utf-8"))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert report["n"] == 834 and report["passed"] is False
    assert report["labels"] == ["neutral", "angry", "happy", "sad", "worried", "surprise"]
    assert report["metrics"]["accuracy"] == 756 / 834
    assert set(report["metrics"]) == {
        "accuracy",
        "weighted_precision",
        "weighted_recall",
        "weighted_f1",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "uar",
    }
    surprise = report["per_class"]["surprise"]
    assert (surprise["n"], surprise["correct"], surprise["recall"]) == (14, 6, 6 / 14)
    assert surprise["recall_ci95"] == pytest.approx([0.2138, 0.6741], abs=1e-4)
    assert report["confusion"]["surprise"]["<invalid>"] == 1
    assert report["invalid"] == {
        "count": 1,
        "policy": "wrong",
        "answers": {"doubt": 1},
        "samples": ["samplenew_00000702"],
    }
    checks = {check["id"]: check for check in report["checks"]}
    assert len(checks) == 15
    assert checks["label_validity"]["passed"] is False
    assert checks["class_floor[surprise]"] == {
        "id": "class_floor[surprise]",
        "passed": True,
        "status": "passed",
        "value": 6 / 14,
        "limit": 0.35,
        "n": 14,
        "message": "surprise recall 6/14 = 42.9% (95% CI 21.4-67.4%) >= floor 35.0% (thresholds.yaml: "
        "per_class.surprise)",
    }
    provenance = report["provenance"]
    assert provenance["checkpoint_sha256"] is None and len(provenance["data_fingerprint"]) == 64
    assert len(provenance["thresholds_sha256"]) == 64 and provenance["versions"]["pytest"]
    assert set(report["timings_s"]) == {"load", "inference", "gate"}
    assert not list((project.path / "out").glob(".*tmp"))


def test_quiet_summary_is_shorter(project: pytest.Pytester) -> None:
    result = project.runpytest("--emogate-predictions", "preds.csv", "-q")
    output = result.stdout.str()
    assert "Per-class recall" in output and "emogate verdict: FAILED" in output
    assert "Confusion matrix" not in output and "Overall" not in output


def test_ini_settings_and_the_command_line_wins(project: pytest.Pytester) -> None:
    project.makefile(".yaml", passing=PASSING)
    project.makeini("[pytest]\nemogate_predictions = preds.csv\nemogate_thresholds = passing.yaml\n")
    project.runpytest().assert_outcomes(passed=15)
    project.runpytest("--emogate-thresholds", "thresholds.yaml").assert_outcomes(passed=14, failed=1)


def test_user_tests_read_the_result_fixture(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        def test_sad_precision(emogate_result):
            assert emogate_result.per_class["sad"].precision > 0.9
            assert emogate_result.metrics["accuracy"] == 756 / 834
        """
    )
    project.runpytest("--emogate-predictions", "preds.csv", "-k", "sad_precision").assert_outcomes(passed=1)
    project.runpytest("-k", "sad_precision").assert_outcomes(skipped=1)


MUTATING_USER_TEST = """
from dataclasses import replace

def test_turns_the_numbers_into_shares(emogate_result):
    tried = 0
    for result in (emogate_result, emogate_result.baseline):
        attempts = [
            lambda: result.confusion["neutral"].update(happy=0),
            lambda: result.confusion.update(neutral={}),
            lambda: result.per_class.update(surprise=replace(result.per_class["surprise"], recall=1.0)),
            lambda: result.metrics.update(accuracy=1.0),
            lambda: result.invalid_answers.clear(),
            lambda: result.samples.append(result.samples[0]),
            lambda: setattr(result, "n", 1),
        ]
        for attempt in attempts:
            try:
                attempt()
            except (TypeError, AttributeError):
                tried += 1
    assert tried == 14, f"only {tried} of 14 changes were refused"


def test_edits_the_thresholds_it_is_judged_by(emogate_gate):
    t = emogate_gate.thresholds
    attempts = [
        lambda: t.overall.update(accuracy=0.0), lambda: t.per_class.clear(), lambda: t.confusion.clear(),
        lambda: t.regression.max_drop.clear(), lambda: t.regression.per_class_max_drop.clear(),
        lambda: emogate_gate.comparison().metrics.clear(), lambda: emogate_gate.comparison().per_class.clear(),
    ]
    refused = 0
    for attempt in attempts:
        try:
            attempt()
        except (TypeError, AttributeError):
            refused += 1
    assert refused == len(attempts)
"""


def test_a_user_test_cannot_change_the_gates_numbers(project: pytest.Pytester) -> None:
    """Whatever order the tests run in (here the user's test first), the gate judges and records its own
    numbers: every container `emogate_result` hands out (and its baseline's) is read-only."""
    (project.path / "regressed.csv").write_bytes(REGRESSED.read_bytes())
    strict = PASSING.replace("accuracy: 0.89", "accuracy: 0.95").replace("surprise: 0.35 ", "surprise: 0.90 ")
    project.makefile(".yaml", thresholds=strict.replace("neutral->happy: 0.08", "neutral->happy: 0.01"))
    args = ["--emogate-predictions", "regressed.csv", "--emogate-baseline", "preds.csv"]
    clean = project.runpytest(*args, "--emogate-report", "clean.json", "--emogate-no-history")
    project.makepyfile(test_user=MUTATING_USER_TEST)
    project.makeconftest("def pytest_collection_modifyitems(items):\n    items.reverse()\n")
    mutated = project.runpytest(*args, "--emogate-report", "mutated.json", "--emogate-no-history", "-p", "no:randomly")
    clean.assert_outcomes(passed=19, failed=4)
    mutated.assert_outcomes(passed=21, failed=4)
    assert mutated.ret == pytest.ExitCode.TESTS_FAILED
    first, second = (
        json.loads((project.path / f"{name}.json").read_text(encoding="utf-8")) for name in ("clean", "mutated")
    )
    assert first["verdict"] == second["verdict"] == "failed"
    for key in ("metrics", "per_class", "confusion", "invalid", "checks", "baseline"):
        assert first[key] == second[key], key


def test_save_predictions_gate_identically(project: pytest.Pytester) -> None:
    first = project.runpytest(
        "--emogate-predictions", "preds.csv", "--emogate-save-predictions", "copy.jsonl", "--emogate-report", "a.json"
    )
    second = project.runpytest("--emogate-predictions", "copy.jsonl", "--emogate-report", "b.json")
    assert first.ret == second.ret
    a, b = (json.loads((project.path / name).read_text(encoding="utf-8")) for name in ("a.json", "b.json"))
    assert (a["metrics"], a["checks"], a["confusion"]) == (b["metrics"], b["checks"], b["confusion"])


def test_emogate_only_skips_the_project_tests(project: pytest.Pytester) -> None:
    project.makepyfile(test_user="import not_installed_module\n\ndef test_user(): pass\n")
    result = project.runpytest("--emogate-predictions", "preds.csv", "--emogate-only")
    result.assert_outcomes(passed=14, failed=1)
    assert "not_installed_module" not in result.stdout.str()
    alone = project.runpytest("--emogate-only")  # without an answer source the gate must not fail open
    assert alone.ret == pytest.ExitCode.USAGE_ERROR
    alone.stderr.fnmatch_lines(["ERROR: --emogate-only given without an answer source: pass --emogate-predictions*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--emogate-predictions", "preds.csv", "--emogate-ckpt", "c.pth"],
            "ERROR: --emogate-predictions and --emogate-ckpt are exclusive: gate a file or a checkpoint",
        ),
        (
            ["--emogate-ckpt", "c.pth"],
            "ERROR: --emogate-ckpt also needs --emogate-data (or ini emogate_data), "
            "--emogate-llama (or ini emogate_llama), --emogate-vit (or ini emogate_vit)",
        ),
        (
            ["--emogate-ckpt", "c.pth", "--emogate-batch-size", "0"],
            "*--emogate-batch-size: expected a positive int or auto, found '0'",
        ),
    ],
)
def test_inference_option_errors(project: pytest.Pytester, args: list[str], message: str) -> None:
    result = project.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_bad_ini_value_is_named(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nemogate_max_new_tokens = many\n")
    result = project.runpytest(
        "--emogate-ckpt", "c.pth", "--emogate-data", "d", "--emogate-llama", "l", "--emogate-vit", "v"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ini setting emogate_max_new_tokens: expected a positive int, found 'many'"])


def test_a_source_on_the_command_line_wins_over_the_other_in_the_ini(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nemogate_ckpt = missing.pth\n")
    project.runpytest("--emogate-predictions", "preds.csv").assert_outcomes(passed=14, failed=1)
    project.makeini("[pytest]\nemogate_ckpt = missing.pth\nemogate_predictions = preds.csv\n")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ini settings emogate_predictions and emogate_ckpt are exclusive: keep one"])
