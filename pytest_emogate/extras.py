"""The optional libraries: a missing one is a one-line usage error that says what to install, found when the
session starts (without importing the library: the model's libraries load only when inference starts)."""

from __future__ import annotations

from importlib.util import find_spec

import pytest

INFER = ("torch", "transformers", "peft", "cv2", "safetensors", "sentencepiece", "numpy", "PIL")
"""The modules inference imports; the `infer` extra installs them."""
PACKAGES = {"cv2": "opencv-python-headless", "PIL": "pillow"}
"""The package that installs a module, where its name differs."""


def from_clone(extra: str) -> str:
    """How to install one of this package's extras while it is not published: from a clone of the repository."""
    return f'pip install ".[{extra}]" in a pytest-emogate clone'


def installed(module: str) -> bool:
    """Whether `module` can be imported (a parent package that is missing counts as missing)."""
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(modules: tuple[str, ...], option: str, install: str) -> None:
    """A usage error naming the missing modules and the command that installs them, when any is missing."""
    missing = [module for module in modules if not installed(module)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        names = ", ".join(PACKAGES.get(module, module) for module in missing)
        raise pytest.UsageError(f"{option} needs {names}, which {verb} not installed: {install}")
