"""Option wiring without a session: each `--emogate-*` flag and `emogate_*` ini twin reaches the config it should.

`parseconfigure` runs pytest_configure, so the runs that name an answer source get a real predictions file and
thresholds.yaml; `parseconfig` is used where configure must not run (it would refuse the options on purpose).
"""

from __future__ import annotations

import re

import pytest

from pytest_emogate.options import answer_source, path_option, refuse_options_without_source, value_option
from tests.conftest import SEED, THRESHOLDS


@pytest.fixture
def gated(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project where `--emogate-predictions base.csv` configures: the shipped thresholds and the seed."""
    (pytester.path / "thresholds.yaml").write_bytes(THRESHOLDS.read_bytes())
    (pytester.path / "base.csv").write_bytes(SEED.read_bytes())
    return pytester


GATED = ("--emogate-predictions", "base.csv", "--emogate-no-history")


def test_batch_size_on_the_command_line_is_parsed_as_an_int(gated: pytest.Pytester) -> None:
    config = gated.parseconfig(*GATED, "--emogate-batch-size", "4")  # configure refuses it beside a predictions file
    assert config.getoption("emogate_batch_size") == 4
    assert value_option(config, "batch_size") == 4


def test_batch_size_in_the_ini_is_parsed_like_the_command_line(gated: pytest.Pytester) -> None:
    gated.makeini("[pytest]\nemogate_batch_size = 8\n")
    config = gated.parseconfigure(*GATED)
    assert config.getoption("emogate_batch_size") is None
    assert value_option(config, "batch_size") == 8


def test_batch_size_auto_is_taken_on_the_command_line_and_in_the_ini(gated: pytest.Pytester) -> None:
    config = gated.parseconfig(*GATED, "--emogate-batch-size=auto")
    assert value_option(config, "batch_size") == "auto"
    gated.makeini("[pytest]\nemogate_batch_size = auto\n")
    assert value_option(gated.parseconfigure(*GATED), "batch_size") == "auto"


def test_the_command_line_wins_over_the_ini(gated: pytest.Pytester) -> None:
    gated.makeini("[pytest]\nemogate_batch_size = 8\n")
    config = gated.parseconfig(*GATED, "--emogate-batch-size=2")
    assert value_option(config, "batch_size") == 2


def test_without_either_the_default_holds(gated: pytest.Pytester) -> None:
    config = gated.parseconfigure(*GATED)
    assert value_option(config, "batch_size") == 16
    assert value_option(config, "mode") == "generate"


def test_a_bad_ini_value_is_a_usage_error_naming_the_setting(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nemogate_batch_size = 0\n")
    config = pytester.parseconfig()
    with pytest.raises(pytest.UsageError) as error:
        value_option(config, "batch_size")
    assert str(error.value) == "ini setting emogate_batch_size: expected a positive int or auto, found '0'"


def test_a_bad_command_line_value_is_refused_by_the_parser(pytester: pytest.Pytester) -> None:
    with pytest.raises(pytest.UsageError, match="expected a positive int or auto, found '-1'"):
        pytester.parseconfig("--emogate-batch-size=-1")


def test_a_cli_path_is_relative_to_the_invocation_dir_and_an_ini_path_to_the_ini_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\nemogate_report = out/report.json\nemogate_markdown = out/summary.md\n")
    (pytester.path / "sub").mkdir()
    monkeypatch.chdir(pytester.path / "sub")  # the ini file stays in the folder above
    config = pytester.parseconfig("--emogate-report", "mine.json")
    assert config.inipath == pytester.path / "tox.ini"
    assert path_option(config, "report") == pytester.path / "sub" / "mine.json"
    assert path_option(config, "markdown") == pytester.path / "out" / "summary.md"
    assert path_option(config, "plot") is None


def test_a_step_option_has_no_ini_twin(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig()
    assert path_option(config, "update_baseline") is None
    config = pytester.parseconfig("--emogate-update-baseline", "new.jsonl")
    assert path_option(config, "update_baseline") == pytester.path / "new.jsonl"


def test_answer_source_is_off_without_a_source(pytester: pytest.Pytester) -> None:
    assert answer_source(pytester.parseconfigure()) is None


def test_answer_source_names_a_predictions_file(gated: pytest.Pytester) -> None:
    config = gated.parseconfigure(*GATED)
    assert answer_source(config) == ("predictions", gated.path / "base.csv")


def test_answer_source_names_a_checkpoint(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig("--emogate-ckpt", "model/stage2.pth")  # configure would start inference
    assert answer_source(config) == ("ckpt", pytester.path / "model" / "stage2.pth")


def test_answer_source_from_the_ini_is_relative_to_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nemogate_predictions = answers/run.jsonl\n")
    assert answer_source(pytester.parseconfig()) == ("predictions", pytester.path / "answers" / "run.jsonl")


def test_a_source_on_the_command_line_wins_over_the_other_in_the_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nemogate_ckpt = model.pth\n")
    config = pytester.parseconfig("--emogate-predictions", "base.csv")
    assert answer_source(config) == ("predictions", pytester.path / "base.csv")


def test_an_empty_predictions_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig("--emogate-predictions=")
    with pytest.raises(pytest.UsageError) as error:
        answer_source(config)
    assert str(error.value) == (
        "--emogate-predictions is empty: expected the path of a predictions file (CSV or JSONL) (an unset CI "
        "variable?); the gate never runs without its answers"
    )


def test_an_empty_ini_source_is_a_usage_error_too(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nemogate_ckpt =\n")
    with pytest.raises(pytest.UsageError, match=r"^ini setting emogate_ckpt is empty: "):
        answer_source(pytester.parseconfig())
    both = r"^--emogate-predictions is empty: expected .*; ini setting emogate_ckpt is empty: expected .*"
    with pytest.raises(pytest.UsageError, match=both):
        answer_source(pytester.parseconfig("--emogate-predictions="))


def test_both_sources_on_the_command_line_are_exclusive(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig("--emogate-predictions", "a.csv", "--emogate-ckpt", "b.pth")
    with pytest.raises(pytest.UsageError, match=r"^--emogate-predictions and --emogate-ckpt are exclusive"):
        answer_source(config)


def test_a_gate_option_without_a_source_is_refused(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig("--emogate-report", "x")
    with pytest.raises(pytest.UsageError) as error:
        refuse_options_without_source(config)
    assert str(error.value).startswith("--emogate-report given without an answer source: pass --emogate-predictions")


def test_every_gate_option_without_a_source_is_named(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig("--emogate-report", "x", "--emogate-batch-size", "2", "--emogate-ratchet")
    with pytest.raises(pytest.UsageError, match=r"^--emogate-report, --emogate-batch-size, --emogate-ratchet given"):
        refuse_options_without_source(config)


def test_configure_refuses_a_gate_option_without_a_source(pytester: pytest.Pytester) -> None:
    with pytest.raises(pytest.UsageError, match=r"^--emogate-report given without an answer source"):
        pytester.parseconfigure("--emogate-report", "x")


def test_ini_outputs_without_a_source_stay_inert(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nemogate_report = report.json\nemogate_batch_size = 4\n")
    config = pytester.parseconfigure()
    refuse_options_without_source(config)  # does not raise
    assert answer_source(config) is None


@pytest.mark.parametrize("value", ["4", "many"])
def test_an_ini_probe_beside_a_predictions_file_stays_inert(gated: pytest.Pytester, value: str) -> None:
    gated.makeini(f"[pytest]\nemogate_probe = {value}\nemogate_mode = score\n")
    result = gated.runpytest(*GATED)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the shipped thresholds fail the seed's one "doubt"
    assert "test_consistency" not in result.stdout.str() and not result.stderr.str()
    with pytest.raises(pytest.UsageError, match=r"^--emogate-probe 4: the probe answers samples again"):
        gated.parseconfigure(*GATED, "--emogate-probe=4")


def test_the_thresholds_option_points_configure_at_another_file(gated: pytest.Pytester) -> None:
    (gated.path / "thresholds.yaml").rename(gated.path / "gate.yaml")
    with pytest.raises(pytest.UsageError):
        gated.parseconfigure(*GATED)  # the default thresholds.yaml at the rootdir is gone
    config = gated.parseconfigure(*GATED, "--emogate-thresholds", "gate.yaml")
    assert path_option(config, "thresholds") == gated.path / "gate.yaml"


def test_the_html_page_path_is_an_option_with_an_ini_twin(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nemogate_html = out/gate.html\n")
    assert path_option(pytester.parseconfig(), "html") == pytester.path / "out" / "gate.html"
    assert path_option(pytester.parseconfig("--emogate-html=mine.html"), "html") == pytester.path / "mine.html"
    with pytest.raises(pytest.UsageError, match=r"^--emogate-html given without an answer source"):
        pytester.parseconfigure("--emogate-html", "page.html")


def test_the_help_shows_readable_arguments_and_defaults(pytester: pytest.Pytester) -> None:
    lines = pytester.runpytest("--help").stdout.lines
    start = lines.index("emotion-recognition quality gate:")
    group = "\n".join(lines[start : lines.index("", start)])
    words = " ".join(group.split())
    metavars = dict(re.findall(r"--emogate-([a-z-]+)=(\S+)", group))
    assert set(metavars.values()) <= {"PATH", "N", "N|auto", "DEVICE", "PIXELS", "ALPHA", "LIST", "generate|score",
                                      "auto|float32|float16|bfloat16"}, metavars  # fmt: skip
    assert metavars["workers"] == metavars["show"] == "N" and metavars["batch-size"] == "N|auto"
    assert "default None" not in words and "default none" not in words and "EMOGATE_" not in group
    assert "(the original used 1), or auto: start at 16 and halve it on out of memory, down to 1; default 16" in words
    assert "default one process on --emogate-device" in words
