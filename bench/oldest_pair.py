"""The oldest transformers and peft the infer extra allows give the tiny model's committed answers: run it before
each release (CI tests the newest pair the extra allows, in its fresh venv).

Run: python bench/oldest_pair.py [--torch SPEC] [--venv DIR]

Reads the floors of transformers and peft from pyproject.toml's `infer` extra, makes a venv (DIR, or a temporary
one removed after) with torch (SPEC: a requirement or a wheel file; default `torch`, the newest), the package
editable with its `infer` extra, transformers and peft pinned at their floors, and pytest; then runs
tests/test_dependencies.py::test_the_tiny_models_answers_are_the_reference in it: all 834 answers of
`pytest -c fixtures/tiny/pytest.ini` must equal fixtures/tiny_answers.jsonl. Prints the versions it ran under and
exits with pytest's status. Needs the package index (pip), a few minutes and about 1.5 GB of disk (the CPU torch).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST = "tests/test_dependencies.py::test_the_tiny_models_answers_are_the_reference"


def floors() -> dict[str, str]:
    """`{"transformers": "4.56", "peft": "0.13"}`: the lower bounds the infer extra declares."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    found = {name: re.search(rf'"{name}>=([0-9][0-9.]*)', text) for name in ("transformers", "peft")}
    missing = [name for name, match in found.items() if match is None]
    if missing:
        sys.exit(f"pyproject.toml: no lower bound for {', '.join(missing)} in the infer extra")
    return {name: match.group(1) for name, match in found.items() if match is not None}


def run(venv: Path, torch: str) -> int:
    """Make the venv, install the oldest pair, run the reference test; pytest's exit status."""
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pins = [f"{name}=={floor}" for name, floor in floors().items()]
    subprocess.run([str(python), "-m", "pip", "install", "-q", torch, "-e", f"{REPO}[infer]", *pins, "pytest>=8"],
                   check=True)  # fmt: skip
    names = ("torch", "transformers", "peft")
    show = f"from importlib.metadata import version; print(*(name + ' ' + version(name) for name in {names!r}))"
    subprocess.run([str(python), "-c", show], check=True)
    return subprocess.run([str(python), "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider"], cwd=REPO).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch", default="torch", help="torch requirement or wheel file (default: torch)")
    parser.add_argument("--venv", type=Path, help="make the venv here and keep it (default: a temporary one)")
    args = parser.parse_args()
    if args.venv is not None:
        sys.exit(run(args.venv, args.torch))
    with tempfile.TemporaryDirectory(prefix="emogate-oldest-") as folder:
        sys.exit(run(Path(folder) / "venv", args.torch))


if __name__ == "__main__":
    main()
