"""The infer extra's libraries: the tiny model answers as its committed reference under the versions installed
(CI: the newest the extra allows; bench/oldest_pair.py: the oldest), an installed library whose import raises is a
usage error, and the libraries' own warnings never change a verdict under `-W error`."""

from __future__ import annotations

import json
import os
import warnings
from importlib.metadata import version
from pathlib import Path

import pytest

from pytest_emogate.extras import INFER, installed, library_warnings
from tests.conftest import REPO, SEED, SLIPPED, THRESHOLDS, TINY

REFERENCE = REPO / "fixtures" / "tiny_answers.jsonl"
"""The tiny model's 834 answers (`--emogate-save-predictions`), identical under every tested transformers/peft pair."""
needs_infer = pytest.mark.skipif(
    not all(installed(module) for module in INFER), reason="the infer extra is not installed"
)  # found without importing: a test below runs a fake torch in a subprocess, this process keeps none
PRESET = ["-c", str(TINY / "pytest.ini"), "--emogate-no-history", "--emogate-no-cache"]
"""The whole gate on the tiny model, on CPU (fixtures/tiny/pytest.ini), leaving no cache or history behind."""


def answers(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def verdict(result: pytest.RunResult) -> list[str]:
    return [line for line in result.stdout.lines if line.startswith("emogate verdict:")]


@pytest.mark.slow
@needs_infer
def test_the_tiny_models_answers_are_the_reference(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(*PRESET, "--emogate-save-predictions=answers.jsonl", timeout=300)
    assert result.ret == pytest.ExitCode.OK
    pair = f"transformers {version('transformers')}, peft {version('peft')}, torch {version('torch')}"
    assert answers(pytester.path / "answers.jsonl") == answers(REFERENCE), f"the answers changed under {pair}"


@pytest.mark.slow
@needs_infer
def test_w_error_changes_nothing_with_the_model(pytester: pytest.Pytester) -> None:
    plain = pytester.runpytest_subprocess(*PRESET, "--emogate-save-predictions=plain.jsonl", timeout=300)
    strict = pytester.runpytest_subprocess(
        *PRESET, "-W", "error", "--emogate-save-predictions=strict.jsonl", timeout=300
    )
    assert (strict.ret, verdict(strict)) == (plain.ret, verdict(plain)) == (0, ["emogate verdict: PASSED (13 checks)"])
    assert answers(pytester.path / "strict.jsonl") == answers(pytester.path / "plain.jsonl")


@pytest.mark.parametrize("predictions", [SEED, SLIPPED], ids=["passing", "failing"])
def test_w_error_changes_nothing_with_a_predictions_file(pytester: pytest.Pytester, predictions: Path) -> None:
    args = [f"--emogate-predictions={predictions}", f"--emogate-thresholds={THRESHOLDS}", "--emogate-no-history",
            "--emogate-only", "-p", "no:cacheprovider"]  # fmt: skip
    plain = pytester.runpytest_subprocess(*args)
    strict = pytester.runpytest_subprocess(*args, "-W", "error")
    assert (strict.ret, verdict(strict)) == (plain.ret, verdict(plain))
    assert len(verdict(plain)) == 1


def test_library_warnings_shows_what_an_error_filter_would_raise_and_only_inside() -> None:
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", "quiet", UserWarning)
        with library_warnings():
            warnings.warn("deprecated inside", FutureWarning, stacklevel=1)
            warnings.warn("quiet", UserWarning, stacklevel=1)  # a filter other than `error` acts as set
        with pytest.raises(FutureWarning, match="outside"):
            warnings.warn("deprecated outside", FutureWarning, stacklevel=1)
    assert [str(warning.message) for warning in shown] == ["deprecated inside"]


@pytest.mark.slow
@needs_infer
@pytest.mark.parametrize(
    ("module", "package"),
    [("torch", "torch"), ("cv2", "opencv-python-headless"), ("transformers", "transformers"), ("peft", "peft")],
)
def test_an_installed_library_whose_import_raises_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, module: str, package: str
) -> None:
    fake = pytester.mkdir("fake") / module
    fake.mkdir()
    (fake / "__init__.py").write_text('raise OSError("libcudnn.so.9: cannot open shared object file")\n')
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(fake.parent), os.environ.get("PYTHONPATH")])))
    result = pytester.runpytest_subprocess(*PRESET, timeout=300)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert (
        f"--emogate-ckpt needs {package}, which is installed but fails to import (OSError: libcudnn.so.9: cannot "
        'open shared object file): pip install torch first, then the infer extra: pip install ".[infer]" in a '
        "pytest-emogate clone" in output
    )
    assert "INTERNALERROR" not in output and "Traceback" not in output
