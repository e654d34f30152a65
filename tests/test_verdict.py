"""One true verdict: whatever the project's pytest configuration, the exit status, the printed verdict, the JSON
report, the Markdown, JUnit and the history agree, and the gate never fails open."""

from __future__ import annotations

import json
import sqlite3
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import LENIENT, literal

PASSING = LENIENT.replace("surprise: 0.30 ", "surprise: 0.35 ")
"""The shipped thresholds tolerating the seed's one "doubt": the seed passes all 15 checks."""
NO_VALIDITY = "\n".join(
    line for line in LENIENT.splitlines() if not line.startswith(("label_validity:", "  max_invalid:"))
)


def report(project: pytest.Pytester, name: str = "report.json") -> dict[str, object]:
    return json.loads((project.path / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "ini",
    [
        "[pytest]\npython_functions = check_*\n",
        "[pytest]\npython_files = checks_*.py\npython_classes = Checks\n",
    ],
)
def test_the_project_s_naming_rules_cannot_hide_the_gate(project: pytest.Pytester, ini: str) -> None:
    project.makeini(ini)
    project.makepyfile(test_mine="def check_mine():\n    pass\n")
    result = project.runpytest("--emogate-predictions", "base.csv")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=14 + ("check_" in ini), failed=1)
    result.stdout.fnmatch_lines(["emogate verdict: FAILED (1 of 15 checks): label_validity"])


XFAIL_CONFTEST = """
import pytest

def pytest_collection_modifyitems(items):
    for item in items:
        if item.nodeid.startswith("emogate::"):
            item.add_marker(pytest.mark.xfail({}reason="marked by the project"))
"""


@pytest.mark.parametrize("strict", ["true", "false"])
def test_an_xfail_mark_hides_no_check(project: pytest.Pytester, strict: str) -> None:
    project.makeini(f"[pytest]\nxfail_strict = {strict}\n")
    project.makeconftest(XFAIL_CONFTEST.format(""))
    result = project.runpytest("--emogate-predictions", "base.csv", "--emogate-report", "report.json", "-rxX")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    if strict == "true":
        result.assert_outcomes(failed=14, xfailed=1)  # pytest fails the 14 that pass, as strict xpasses
    else:
        result.assert_outcomes(xpassed=14, xfailed=1)
    result.stdout.fnmatch_lines(["emogate verdict: FAILED (1 of 15 checks): label_validity"])
    data = report(project)
    assert (data["verdict"], data["passed"], data["not_run"]) == ("failed", False, [])
    statuses = {check["id"]: check["status"] for check in data["checks"]}  # type: ignore[attr-defined]
    assert statuses.pop("label_validity") == "failed" and set(statuses.values()) == {"passed"}


def test_an_xfail_mark_that_stops_the_check_from_running_leaves_it_not_run(project: pytest.Pytester) -> None:
    project.makeconftest(XFAIL_CONFTEST.format("run=False, "))
    result = project.runpytest("--emogate-predictions", "base.csv")
    result.assert_outcomes(xfailed=15)
    result.stdout.fnmatch_lines(["emogate verdict: INCOMPLETE (0 of 15 checks ran; 15 not run: *"])


def test_a_keyword_selection_is_an_incomplete_verdict(project: pytest.Pytester) -> None:
    result = project.runpytest("--emogate-predictions", "base.csv", "-k", "overall", "--emogate-report", "report.json",
                               "--emogate-markdown", "summary.md", "--emogate-history", "h.sqlite")  # fmt: skip
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([literal(
        "emogate verdict: INCOMPLETE (4 of 15 checks ran, all passed; 11 not run: class_floor[angry], "
        "class_floor[happy], class_floor[neutral], class_floor[sad], class_floor[worried] and 6 more)"
    )])  # fmt: skip
    data = report(project)
    assert (data["verdict"], data["passed"]) == ("incomplete", False)
    assert len(data["not_run"]) == 11 and "label_validity" in data["not_run"]  # type: ignore[arg-type]
    statuses = {check["id"]: check["status"] for check in data["checks"]}  # type: ignore[attr-defined]
    assert statuses["overall[accuracy]"] == "passed" and statuses["label_validity"] == "not_run"
    markdown = (project.path / "summary.md").read_text(encoding="utf-8")
    assert markdown.startswith("## emogate: ⚠️ INCOMPLETE (4 of 15 checks ran, all passed; 11 not run)\n")
    with sqlite3.connect(project.path / "h.sqlite") as db:
        assert db.execute("SELECT passed, verdict FROM runs").fetchall() == [(0, "incomplete")]


@pytest.mark.parametrize("shows", ["--co", "--fixtures", "--fixtures-per-test", "--setup-plan", "--setup-only"])
def test_a_run_that_only_shows_prints_no_verdict_and_records_nothing(project: pytest.Pytester, shows: str) -> None:
    result = project.runpytest("--emogate-predictions", "base.csv", shows, "--emogate-report", "report.json")
    assert result.ret == pytest.ExitCode.OK
    assert "emogate verdict" not in result.stdout.str() and "emogate summary" not in result.stdout.str()
    assert not (project.path / "report.json").exists() and not (project.path / ".emogate").exists()


def test_a_check_without_a_section_neither_runs_nor_counts(project: pytest.Pytester) -> None:
    project.makefile(".yaml", thresholds=NO_VALIDITY)
    result = project.runpytest("--emogate-predictions", "base.csv", "--emogate-report", "report.json",
                               "--emogate-update-baseline", "new.jsonl", "--emogate-no-history")  # fmt: skip
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=14)
    assert "test_label_validity" not in result.stdout.str()
    result.stdout.fnmatch_lines(["emogate verdict: PASSED (14 checks)", "emogate: baseline new.jsonl updated*"])
    data = report(project)
    assert (data["verdict"], data["passed"], data["not_run"]) == ("passed", True, [])
    assert "label_validity" not in {check["id"] for check in data["checks"]}  # type: ignore[attr-defined]


def test_update_steps_act_only_on_a_passing_verdict(project: pytest.Pytester) -> None:
    project.makefile(".yaml", thresholds=PASSING)
    result = project.runpytest("--emogate-predictions", "base.csv", "--deselect", "emogate::test_label_validity",
                               "--emogate-update-baseline", "new.jsonl", "--emogate-ratchet",
                               "--emogate-no-history")  # fmt: skip
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "emogate verdict: INCOMPLETE (14 of 15 checks ran, all passed; 1 not run: label_validity)",
            "emogate: baseline new.jsonl NOT updated: the gate is incomplete (1 checks not run)",
            "emogate ratchet: thresholds.yaml NOT changed: the gate is incomplete (1 checks not run)",
        ]
    )
    assert not (project.path / "new.jsonl").exists()


def test_x_stops_and_the_rest_is_not_run(project: pytest.Pytester) -> None:
    project.makefile(".yaml", thresholds=PASSING.replace("accuracy: 0.89", "accuracy: 0.95").replace(
        "max_invalid: 1", "max_invalid: 0"))  # fmt: skip
    result = project.runpytest("--emogate-predictions", "base.csv", "-x")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([literal("emogate verdict: FAILED (1 of 15 checks): overall[accuracy]; 14 not run: *")])


def test_last_failed_reruns_the_failed_check(project: pytest.Pytester) -> None:
    project.runpytest("--emogate-predictions", "base.csv", "-p", "cacheprovider")
    result = project.runpytest("--emogate-predictions", "base.csv", "--lf")
    result.assert_outcomes(failed=1, deselected=14)
    result.stdout.fnmatch_lines(["emogate verdict: FAILED (1 of 15 checks): label_validity; 14 not run: *"])


def test_markers_select_the_gate(project: pytest.Pytester) -> None:
    project.makepyfile(test_mine="def test_mine():\n    pass\n")
    only_gate = project.runpytest("--emogate-predictions", "base.csv", "-m", "emogate")
    only_gate.assert_outcomes(passed=14, failed=1, deselected=1)
    without = project.runpytest("--emogate-predictions", "base.csv", "-m", "not emogate")
    without.assert_outcomes(passed=1, deselected=15)
    assert without.ret == pytest.ExitCode.OK
    without.stdout.fnmatch_lines(["emogate verdict: INCOMPLETE (0 of 15 checks ran; 15 not run: *"])


@pytest.mark.slow
def test_xdist_workers_report_to_one_verdict(project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    result = project.runpytest_subprocess("--emogate-predictions", "base.csv", "-n", "2", "--emogate-report",
                                          "report.json", "--emogate-no-history")  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["emogate verdict: FAILED (1 of 15 checks): label_validity"])
    assert report(project)["verdict"] == "failed"


@pytest.mark.parametrize(
    "args",
    [
        ["--emogate-only"],
        ["--emogate-baseline", "base.csv"],
        ["--emogate-report", "r.json", "--emogate-no-history"],
        ["--emogate-ratchet"],
    ],
)
def test_a_gate_option_without_a_source_is_a_usage_error(project: pytest.Pytester, args: list[str]) -> None:
    project.makepyfile(test_mine="def test_mine():\n    pass\n")
    result = project.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {args[0]}* given without an answer source: pass --emogate-predictions*"])


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (
            ["--emogate-predictions="],
            "",
            "ERROR: --emogate-predictions is empty: expected the path of a predictions file (CSV or JSONL)*",
        ),
        (
            ["--emogate-ckpt", ""],
            "",
            "ERROR: --emogate-ckpt is empty: expected the path of a stage-2 checkpoint (.pth or .safetensors)*",
        ),
        ([], "emogate_predictions =\n", "ERROR: ini setting emogate_predictions is empty: expected the path*"),
    ],
)
def test_an_empty_source_is_a_usage_error(project: pytest.Pytester, args: list[str], ini: str, message: str) -> None:
    project.makeini(f"[pytest]\n{ini}")
    project.makepyfile(test_mine="def test_mine():\n    pass\n")
    result = project.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_ini_outputs_without_a_source_stay_inert(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nemogate_report = r.json\nemogate_markdown = m.md\nemogate_batch_size = 4\n")
    project.makepyfile(test_mine="def test_mine():\n    pass\n")
    result = project.runpytest()
    result.assert_outcomes(passed=1)
    assert not (project.path / "r.json").exists()
    assert "emogate:" not in result.stdout.str() and "emogate summary" not in result.stdout.str()


@pytest.mark.slow
@pytest.mark.parametrize("family", ["xunit2", "xunit1"])
def test_junit_under_warnings_as_errors(project: pytest.Pytester, family: str) -> None:
    project.makefile(".yaml", thresholds=PASSING)
    result = project.runpytest_subprocess("--emogate-predictions", "base.csv", "-W", "error", "--junitxml", "j.xml",
                               "-o", f"junit_family={family}", "--emogate-no-history")  # fmt: skip
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.assert_outcomes(passed=15)
    root = ET.parse(project.path / "j.xml").getroot()
    suite = root.find("testsuite")
    assert suite is not None
    suite_properties = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert suite_properties["emogate_verdict"] == "passed" and suite_properties["emogate_n"] == "834"
    assert float(suite_properties["emogate_accuracy"]) == pytest.approx(756 / 834)
    cases = suite.findall("testcase")
    assert len(cases) == 15
    case_properties = [case.find("properties") for case in cases]
    if family == "xunit2":  # the xunit2 schema allows no <properties> in a <testcase>
        assert case_properties == [None] * 15
    else:
        first = {p.get("name"): p.get("value") for p in case_properties[0].findall("property")}  # type: ignore[union-attr]
        assert first["emogate_check"] == "overall[accuracy]"


def test_a_failed_verdict_goes_to_junit(project: pytest.Pytester) -> None:
    project.runpytest("--emogate-predictions", "base.csv", "--junitxml", "j.xml", "--emogate-no-history")
    suite = ET.parse(project.path / "j.xml").getroot().find("testsuite")
    assert suite is not None
    properties = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert (properties["emogate_verdict"], properties["emogate_failed"]) == ("failed", "label_validity")


@pytest.mark.parametrize(
    ("module", "package"),
    [("torch", "torch"), ("transformers", "transformers"), ("peft", "peft"), ("cv2", "opencv-python-headless")],
)
def test_inference_without_its_extra_is_one_line(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, module: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    result = project.runpytest("--emogate-ckpt", "c.pth", "--emogate-data", "d", "--emogate-llama", "l",
                               "--emogate-vit", "v")  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: --emogate-ckpt needs {package}, which is not installed: pip install torch first, then the infer "
            'extra: pip install ".[infer]" in a pytest-emogate clone'
        ]
    )
    assert "Traceback" not in result.stderr.str()


@pytest.mark.parametrize("seed", ["1", "2"])
def test_pytest_randomly_shuffles_the_gate_items(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, seed: str
) -> None:
    pytest.importorskip("pytest_randomly")
    monkeypatch.delenv("PYTEST_ADDOPTS")
    result = project.runpytest("--emogate-predictions", "base.csv", "-p", "randomly", f"--randomly-seed={seed}",
                               "-v", "--emogate-no-history")  # fmt: skip
    ran = [line.split()[0] for line in result.stdout.lines if line.startswith("emogate::test_")]
    in_order = project.runpytest("--emogate-predictions", "base.csv", "--co", "-q", "-p", "no:randomly")
    declared = [line for line in in_order.stdout.lines if line.startswith("emogate::")]
    assert sorted(ran) == sorted(declared) and ran != declared
    result.stdout.fnmatch_lines(
        [f"Using --randomly-seed={seed}", "emogate verdict: FAILED (1 of 15 checks): label_validity"]
    )


@pytest.mark.parametrize("mark", ["pytest.mark.skip(reason='not today')", "pytest.mark.skipif(True, reason='no')"])
def test_a_skip_mark_on_a_gate_item_leaves_the_verdict_incomplete(project: pytest.Pytester, mark: str) -> None:
    project.makeconftest(f"""
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                if item.name == "test_label_validity":
                    item.add_marker({mark})
    """)  # fmt: skip
    result = project.runpytest("--emogate-predictions", "base.csv", "--emogate-no-history")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=14, skipped=1)
    result.stdout.fnmatch_lines(
        ["emogate verdict: INCOMPLETE (14 of 15 checks ran, all passed; 1 not run: label_validity)"]
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("option", ["--emogate-report", "--emogate-markdown", "--emogate-history", "--emogate-plot",
                                    "--emogate-save-predictions", "--emogate-update-baseline"])  # fmt: skip
def test_an_output_path_that_is_a_directory_stops_the_run_at_its_start(project: pytest.Pytester, option: str) -> None:
    (project.path / "adir").mkdir()
    result = project.runpytest("--emogate-predictions", "base.csv", option, "adir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: emogate outputs: 1 problem", f"  - {option} */adir: is a directory; expected the path of a file"]
    )
    assert "Traceback" not in result.stderr.str() and not (project.path / ".emogate").exists()


def test_nothing_ran_is_said_plainly(project: pytest.Pytester) -> None:
    result = project.runpytest("--emogate-predictions", "base.csv", "-m", "not emogate", "--emogate-no-history")
    result.stdout.fnmatch_lines(
        [literal("emogate verdict: INCOMPLETE (0 of 15 checks ran; 15 not run: overall[accuracy]*")]
    )


def test_a_broken_baseline_is_named_as_the_baseline(project: pytest.Pytester) -> None:
    result = project.runpytest("--emogate-predictions", "base.csv", "--emogate-baseline", "nope.csv")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: baseline file */nope.csv: 1 problem", "  - the file does not exist"])
