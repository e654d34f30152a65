"""Shared test helpers: pytester for end-to-end runs, and the repository's paths."""

from __future__ import annotations

from pathlib import Path

# The gate computes on numpy. pytester's in-process runs restore sys.modules after each run, and numpy refuses
# to be imported a second time in one process: it is imported here, once, before any of them.
import numpy  # noqa: F401
import pytest

from pytest_emogate.inference.settings import InferenceSettings

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "fixtures" / "seed_test3_predictions.csv"
THRESHOLDS = REPO / "thresholds.yaml"
TINY = REPO / "fixtures" / "tiny"
TINY_SETTINGS = InferenceSettings(TINY / "checkpoint_best.pth", TINY / "llama", TINY / "eva_vit_g.pth")
"""The tiny model's files with the default settings (the inference module imports nothing heavy)."""
REGRESSED = REPO / "fixtures" / "candidate_17_broken_5_fixed.csv"
SLIPPED = REPO / "fixtures" / "candidate_1_surprise_broken.csv"
LENIENT = (
    THRESHOLDS.read_text(encoding="utf-8")
    .replace("max_invalid: 0", "max_invalid: 1")
    .replace("surprise: 0.35 ", "surprise: 0.30 ")
)
"""The shipped thresholds, tolerating the seed's one "doubt" and with a surprise floor one slip can clear."""


def sliced_manifest(root: Path, count: int) -> Path:
    """A data manifest in `root` over the first `count` samples of the tiny data set (its files where they are)."""
    import json

    lines = (TINY / "data" / "relative_test3_NCEV.txt").read_text(encoding="utf-8").splitlines()
    (root / "annotation.txt").write_text("\n".join(lines[:count]) + "\n", encoding="utf-8")
    data = TINY / "data"
    manifest = {
        "annotation": str(root / "annotation.txt"), "transcripts": str(data / "transcription_en_all.csv"),
        "features": {"face": str(data / "mae_340_UTT"), "video": str(data / "maeV_399_UTT"),
                     "audio": str(data / "HL-UTT")},
        "frames": str(data / "test3"),
    }  # fmt: skip
    (root / "manifest.yaml").write_text(json.dumps(manifest), encoding="utf-8")
    return root / "manifest.yaml"


def literal(line: str) -> str:
    """An fnmatch pattern matching `line` literally except for its `*` (brackets are character classes)."""
    return line.replace("[", "[[]")


@pytest.fixture(autouse=True)
def no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs in GitHub Actions must not append these tests' summaries to the real step summary."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture(autouse=True)
def runs_in_order(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pytest runs these tests start keep their order: pytest-randomly, installed for one test, stays off in
    them (set after pytester, which clears PYTEST_ADDOPTS when it starts)."""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:randomly")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with the shipped thresholds.yaml, the seed as base.csv and the two candidates."""
    pytester.makefile(".yaml", thresholds=THRESHOLDS.read_text(encoding="utf-8"))
    for name, source in {"base.csv": SEED, "regressed.csv": REGRESSED, "slipped.csv": SLIPPED}.items():
        (pytester.path / name).write_bytes(source.read_bytes())
    return pytester
