"""The one error a data file raises when it cannot serve as input, phrased for the preflight's report."""

from __future__ import annotations

from pathlib import Path

from pytest_emogate.files import FileProblem


class DataFileError(ValueError):
    """A feature or frame file that is not usable: what was expected of it and what was found. `detail` is the
    text that follows the file's name in a report."""

    def __init__(self, path: Path, expected: str, found: str) -> None:
        self.path = path
        self.expected = expected
        self.found = found
        super().__init__(f"{path}: {self.detail}")

    @property
    def detail(self) -> str:
        """`expected ..., found ...`."""
        return f"expected {self.expected}, found {self.found}"


class UnusableDataFile(DataFileError):
    """A data file refused before a byte of it is read: not a regular file (a FIFO would block, `/dev/zero` never
    ends), over its size limit, gone or unreadable; `detail` is the check's own phrase."""

    def __init__(self, problem: FileProblem) -> None:
        self.problem = problem
        super().__init__(problem.path, "a regular file", problem.found)

    @property
    def detail(self) -> str:
        """`is a FIFO (named pipe); expected a regular file`, `is 80.0 MB; the limit is 67.1 MB`, ..."""
        return self.problem.found
