"""The one error a data file raises when it cannot serve as model input, phrased for the preflight's report."""

from __future__ import annotations

from pathlib import Path


class DataFileError(ValueError):
    """A feature or frame file that exists but is not usable: what was expected of it and what was found."""

    def __init__(self, path: Path, expected: str, found: str) -> None:
        super().__init__(f"{path}: expected {expected}, found {found}")
        self.path = path
        self.expected = expected
        self.found = found
