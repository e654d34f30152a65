"""The package builds, passes `twine check`, and a wheel installed into a fresh venv outside the repository runs
the quick start: `emogate init`, then the gate on a predictions file with the thresholds.yaml it wrote.

The sdist leaves the test suite out (MANIFEST.in): the tests need fixtures/ (the tiny model and data set, 17 MB)
and the inference extra, so they run from a clone. The sdist holds the package, its docs, the LICENSE and the
starter thresholds.yaml; the wheel ships thresholds.yaml and py.typed as package data.
"""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, SEED

pytestmark = pytest.mark.slow

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "thresholds.yaml", "docs", "pytest_emogate")
"""What the build reads: copied out of the working tree, so the build writes nothing into it."""
URLS = {
    "Homepage": "https://github.com/pytest-emogate/pytest-emogate",
    "Source": "https://github.com/pytest-emogate/pytest-emogate",
    "Issues": "https://github.com/pytest-emogate/pytest-emogate/issues",
    "Documentation": "https://github.com/pytest-emogate/pytest-emogate/tree/main/docs",
}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built without isolation (the dev extra brings setuptools>=77 and build)."""
    pytest.importorskip("build", reason="the dev extra's `build` is not installed")
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out), str(source)]
    done = subprocess.run(build, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def one(folder: Path, pattern: str) -> Path:
    (found,) = folder.glob(pattern)
    return found


def test_twine_check_strict_passes(dist: Path) -> None:
    pytest.importorskip("twine", reason="the dev extra's `twine` is not installed")
    files = [str(path) for path in sorted(dist.iterdir())]
    done = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *files], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_wheel_ships_the_starter_thresholds_the_license_and_the_urls(dist: Path) -> None:
    with zipfile.ZipFile(one(dist, "*.whl")) as wheel:
        names = set(wheel.namelist())
        shipped = wheel.read("pytest_emogate/thresholds.yaml")
        metadata = email.parser.Parser().parsestr(wheel.read("pytest_emogate-0.1.0.dist-info/METADATA").decode())
    assert {"pytest_emogate/py.typed", "pytest_emogate-0.1.0.dist-info/licenses/LICENSE"} <= names
    assert shipped == (REPO / "thresholds.yaml").read_bytes()
    assert not [name for name in names if name.startswith(("tests/", "fixtures/", "bench/"))]
    assert metadata["License-Expression"] == "MIT"
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL") or [])
    assert urls == URLS


def test_sdist_leaves_the_tests_out_and_holds_what_it_builds_from(dist: Path) -> None:
    with tarfile.open(one(dist, "*.tar.gz")) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "pyproject.toml", "thresholds.yaml", "pytest_emogate/thresholds.yaml"} <= names
    assert "pytest_emogate/py.typed" in names
    assert {f"docs/{page.name}" for page in (REPO / "docs").glob("*.md")} <= names
    assert not [name for name in names if name.split("/")[0] in {"tests", "fixtures", "bench", ".ci"}]
    assert not [name for name in names if "__pycache__" in name]


def test_a_wheel_installed_outside_the_repository_runs_init_then_the_gate(dist: Path, tmp_path: Path) -> None:
    """The issue's "done when": a fresh venv (no extras; its dependencies come from the package index), an empty
    folder, `emogate init`, then the gate on the seed predictions with the thresholds.yaml init wrote."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    install = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(one(dist, "*.whl"))],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    work = tmp_path / "project"
    work.mkdir()
    shutil.copy2(SEED, work / "preds.csv")
    init = subprocess.run([str(bin_dir / "emogate"), "init"], cwd=work, capture_output=True, text=True, env=env)
    assert init.returncode == 0, init.stdout + init.stderr
    assert (work / "thresholds.yaml").read_bytes() == (REPO / "thresholds.yaml").read_bytes()

    gate = subprocess.run(
        [str(bin_dir / "pytest"), "--emogate-only", "--emogate-predictions=preds.csv", "-p", "no:cacheprovider"],
        cwd=work, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    # the seed's one "doubt" answer fails label validity and every other check passes: the gate doing its job
    assert gate.returncode == 1, gate.stdout[-3000:] + gate.stderr[-3000:]
    assert "emogate: thresholds thresholds.yaml" in gate.stdout
    assert "emogate verdict: FAILED (1 of 15 checks): label_validity" in gate.stdout
    assert "1 failed, 14 passed" in gate.stdout
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import pytest_emogate; print(pytest_emogate.__file__)"],
        cwd=work, capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(venv)  # the installed wheel ran, not the repository's package
