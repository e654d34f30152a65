"""The optional libraries: a missing one is a one-line usage error that says what to install, found when the
session starts; so is one that is installed but whose import raises (torch without its CUDA libraries): the cheap
imports are tried when the session starts, transformers and peft where the model loads (`check_import`).

Their own warnings (a deprecation in peft, a renamed argument in transformers) are the library's business, not
the run's: under `-W error` they are shown, not raised, inside `library_warnings()`, which wraps the library
calls only, so users' own tests still see every filter they set.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import warnings
from collections.abc import Iterator
from importlib.util import find_spec
from typing import Any

import pytest

INFER = ("torch", "transformers", "peft", "cv2", "safetensors", "sentencepiece", "numpy", "PIL")
"""The modules inference imports; the `infer` extra installs them."""
PACKAGES = {"cv2": "opencv-python-headless", "PIL": "pillow"}
"""The package that installs a module, where its name differs."""
LOADED_WITH_MODEL = ("transformers", "peft")
"""The infer modules `require` leaves unimported: seconds of imports that a run whose answers are all cached never
needs; the model load imports them through `check_import`."""


def from_clone(extra: str) -> str:
    """How to install one of this package's extras while it is not published: from a clone of the repository."""
    return f'pip install ".[{extra}]" in a pytest-emogate clone'


INFER_INSTALL = f"pip install torch first, then the infer extra: {from_clone('infer')}"
"""How to install what inference needs."""


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
    for module in modules:
        if module not in LOADED_WITH_MODEL:
            check_import(module, option, install)


def check_import(module: str, option: str, install: str) -> None:
    """Import `module`: an installed one whose import raises is a usage error naming it, the error and the
    command that installs it, never a traceback (any exception: a broken install can raise anything, e.g. an
    OSError for a missing CUDA library)."""
    try:
        with library_warnings():
            importlib.import_module(module)
    except Exception as error:
        found = " ".join(f"{type(error).__name__}: {error}".split())
        found = found if len(found) <= 300 else found[:297] + "..."
        name = PACKAGES.get(module, module)
        raise pytest.UsageError(
            f"{option} needs {name}, which is installed but fails to import ({found}): {install}"
        ) from None


@contextlib.contextmanager
def library_warnings() -> Iterator[None]:
    """Warnings raised inside are shown, never raised: each `error` filter in force (`-W error`, an ini
    `filterwarnings = error`) acts as `default` for the duration, every other filter as set; restored after."""
    with warnings.catch_warnings():
        kept = list(warnings.filters)
        warnings.resetwarnings()
        for action, message, category, module, line in reversed(kept):  # each added first: the order is kept
            shown: Any = "default" if action == "error" else action
            for each in reversed(category if isinstance(category, tuple) else (category,)):
                warnings.filterwarnings(shown, _regex(message), each, _regex(module), line)
        yield


def _regex(field: re.Pattern[str] | str | None) -> str:
    """A warnings filter's message or module field as `filterwarnings` takes it: a compiled regex's pattern, or an
    exact name (Python's own default filters hold the module as a plain string)."""
    if field is None:
        return ""
    return field.pattern if isinstance(field, re.Pattern) else re.escape(field) + r"\Z"
