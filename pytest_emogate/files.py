"""Every user file the package reads or writes goes through here: bounded reads of regular files, atomic writes
that keep symlinks and devices what they are, output paths checked before anything runs, and one error for many
problems.

Reading: `open_checked` (a handle to stream) and `read_checked` (the bytes) refuse anything but a regular file
(a FIFO would block, `/dev/zero` never ends) and a file over the caller's size limit, before reading a byte;
they raise FileProblem, and their twins `open_regular` and `read_bounded` the UsageError a user sees.
`check_regular` checks a path that a library opens itself (weights, images, videos).
Writing: `atomic_write_bytes` writes through a symlink to its target, straight into a character device or FIFO
(`/dev/stdout`, a pipe), and through a temporary sibling and a rename into a regular file; `output_problem` says
at session start why a path could not be written at its end.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

MAX_LISTED_PROBLEMS = 20
PROBLEM_CHARS = 1_000
"""The most characters one listed problem takes: a name or a value it quotes may be megabytes long."""
MiB = 1 << 20
TEMPORARY_SUFFIX = ".emogate-tmp"
"""Temporaries are `.{name}.{pid}.emogate-tmp` beside their target: a later write removes those whose process
has died (a kill during a write)."""


def usage_error(what: str, problems: list[str], advice: str = "") -> pytest.UsageError:
    """One UsageError listing every problem (the first 20 and a count), so a user fixes them in one go; `advice`,
    what was expected of them all, follows the list (it is not counted as a problem). Each problem is one line of
    at most PROBLEM_CHARS characters (`formats.clip`), whatever a value it quotes holds."""
    from pytest_emogate.formats import clip

    shown = problems[:MAX_LISTED_PROBLEMS]
    lines = [f"{what}: {len(problems)} problem{'s' if len(problems) != 1 else ''}"]
    lines += [f"  - {clip(problem, PROBLEM_CHARS)}" for problem in shown]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more")
    if advice:
        lines.append(f"  {advice}")
    return pytest.UsageError("\n".join(lines))


class FileProblem(ValueError):
    """A path that cannot be read as the caller needs: missing, not a regular file, too large, unreadable.
    `found` says what it is instead, phrased to follow the path."""

    def __init__(self, path: Path, found: str) -> None:
        super().__init__(f"{path}: {found}")
        self.path = path
        self.found = found

    def usage(self, what: str) -> pytest.UsageError:
        """The problem as the UsageError a user sees: `{what} {path}: {found}`."""
        return pytest.UsageError(f"{what} {self.path}: {self.found}")


def kind_of(mode: int) -> str:
    """What a stat mode says the path is, as a user would name it."""
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISREG, "a regular file"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def size_text(size: int) -> str:
    """A byte count for people, in the unit the limits are set in: '512 bytes', '4.0 MiB', '30.0 GiB'."""
    if size < 10_000:
        return f"{size} bytes"
    return f"{size / MiB:.1f} MiB" if size < 1 << 30 else f"{size / (1 << 30):.1f} GiB"


def check_regular(path: Path) -> os.stat_result:
    """The stat of `path` (symlinks followed) when it is a regular file; else FileProblem saying what it is.
    For files a library opens itself (weights, images, videos)."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        raise FileProblem(path, "does not exist") from None
    except OSError as error:
        raise FileProblem(path, f"cannot be read: {error.strerror}") from None
    if not stat.S_ISREG(found.st_mode):
        raise FileProblem(path, f"is {kind_of(found.st_mode)}; expected a regular file")
    return found


def open_checked(path: Path, limit: int | None = None) -> BinaryIO:
    """Open a regular file for reading in binary, at most `limit` bytes long; FileProblem otherwise.

    The path is opened without blocking (a FIFO would wait for a writer) and checked on the open descriptor, so a
    path swapped between a check and the open cannot slip through.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileProblem(path, "does not exist") from None
    except IsADirectoryError:
        raise FileProblem(path, "is a directory; expected a regular file") from None
    except OSError as error:
        raise FileProblem(path, f"cannot be read: {error.strerror}") from None
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise FileProblem(path, f"is {kind_of(found.st_mode)}; expected a regular file")
        if limit is not None and found.st_size > limit:
            raise FileProblem(path, f"is {size_text(found.st_size)}; the limit is {size_text(limit)}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_checked(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (one that grows past it while read is refused);
    FileProblem otherwise."""
    with open_checked(path, limit) as handle:
        size = os.fstat(handle.fileno()).st_size
        data = handle.read(min(size, limit) + 1)  # read(n) reserves n bytes: ask for what the file holds
        if len(data) > size and len(data) <= limit:
            data += handle.read(limit + 1 - len(data))  # it grew while read: take up to the limit and judge
    if len(data) > limit:
        raise FileProblem(path, f"grew past the limit of {size_text(limit)} while it was read")
    return data


def open_regular(path: Path, what: str, limit: int | None = None) -> BinaryIO:
    """`open_checked`, its problem a UsageError starting `{what} {path}`."""
    try:
        return open_checked(path, limit)
    except FileProblem as problem:
        raise problem.usage(what) from None


def read_bounded(path: Path, what: str, limit: int) -> bytes:
    """`read_checked`, its problem a UsageError starting `{what} {path}`."""
    try:
        return read_checked(path, limit)
    except FileProblem as problem:
        raise problem.usage(what) from None


def decode_utf8(data: bytes, what: str, path: Path) -> str:
    """UTF-8 text (a byte-order mark dropped); a UsageError naming the line and the bytes that do not decode."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        found = data[error.start : error.end].hex(" ")
        problem = f"line {line}: expected UTF-8 text, found undecodable bytes {found} at byte {error.start}"
        raise usage_error(f"{what} {path}", [problem]) from None


def read_text_bounded(path: Path, what: str, limit: int) -> str:
    """`read_bounded` decoded as UTF-8."""
    return decode_utf8(read_bounded(path, what, limit), what, path)


def text_lines(text: str, start: int = 0) -> Iterator[str]:
    """Lines split on '\\n' only (a '\\r' before it dropped), from position `start` on: JSON strings may hold
    U+2028, U+0085 and the other characters `str.splitlines` also breaks at, and line numbers must be the
    editor's. One at a time, each copied once: a line may be an answer of hundreds of megabytes."""
    end = len(text)
    while start < end:
        stop = text.find("\n", start)
        if stop < 0:
            stop = end
        yield text[start : stop - 1 if text.endswith("\r", start, stop) else stop]
        start = stop + 1


def file_sha256(path: Path, what: str = "file") -> str:
    """sha256 (hex) of a regular file's bytes, read in 1 MiB blocks (weight files are gigabytes)."""
    digest = hashlib.sha256()
    with open_regular(path, what) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def display_path(path: Path) -> str:
    """A path as a user would type it: relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def output_problem(path: Path) -> str | None:
    """Why writing `path` at the end of the session would fail, or None: checked when the session starts.

    A symlink is judged by its target (a dangling one must point into an existing folder: the folders of a path
    the user wrote may be made, never those a link points at); a character device or FIFO must be writable; a
    regular file (or none yet) needs a writable folder, since it is replaced through a temporary file beside it:
    an existing one, or one that can be made (its nearest existing ancestor a writable folder).
    """
    target = Path(os.path.realpath(path))
    try:
        found = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        found = None  # NotADirectoryError: a file where a folder should be, named below
    except OSError as error:
        return f"cannot be used: {error.strerror}"
    if found is not None and not stat.S_ISREG(found.st_mode):
        if stat.S_ISDIR(found.st_mode):
            return "is a directory; expected the path of a file"
        if not (stat.S_ISCHR(found.st_mode) or stat.S_ISFIFO(found.st_mode)):
            return f"is {kind_of(found.st_mode)}; expected a file, a character device or a FIFO"
        return None if os.access(target, os.W_OK) else f"is {kind_of(found.st_mode)} that cannot be written"
    folder = target.parent
    if found is None and path.is_symlink() and not folder.is_dir():
        return (f"is a symlink to {target}, whose folder does not exist; expected a link to an existing file or "
                "into an existing folder (a link's missing folders are never made)")  # fmt: skip
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent  # a missing folder is created when the file is written, as --junitxml does
    if not folder.is_dir():
        return f"{folder} is not a folder"
    verb = "is not writable" if folder == target.parent else "is not writable, so the folders below cannot be made"
    if not os.access(folder, os.W_OK | os.X_OK) or not _can_create_in(folder):
        return f"its folder {folder} {verb}"
    if found is not None and not os.access(target, os.W_OK):
        return "the file is not writable"
    return None


def same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file: the same real path (symlinks, `..` and `./` resolved, relative paths
    taken from the working directory), or, where both exist, the same device and inode (a hard link, a name
    spelled in another case on a case-insensitive file system)."""
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        one, other = os.stat(first), os.stat(second)
    except OSError:
        return False
    return (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino)


def is_stream(path: Path) -> bool:
    """Whether `path` (through symlinks) is a character device or a FIFO: written directly, never replaced."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be made in `folder`, tried with a temporary file removed at once: `os.access` answers
    yes to root for a read-only place such as /sys or a read-only mount."""
    probe = folder / f".emogate-probe.{os.getpid()}{TEMPORARY_SUFFIX}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        probe.unlink()
    return True


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write_bytes` of UTF-8 text (newlines as given)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old content or the new one, never half a file.

    A symlink stays a symlink: its target is written. A character device or FIFO (`/dev/stdout`, a pipe) is
    written directly, never replaced by a file. A regular file is written to a temporary sibling, synced and
    renamed over the target, keeping the target's permissions; a new file gets the mode any new file gets.
    """
    target = Path(os.path.realpath(path))
    try:
        found: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        found = None
    if found is not None and not stat.S_ISREG(found.st_mode):
        if stat.S_ISCHR(found.st_mode) or stat.S_ISFIFO(found.st_mode):
            _write_stream(target, data)
            return
        raise FileProblem(path, f"is {kind_of(found.st_mode)}; expected the path of a file")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}{TEMPORARY_SUFFIX}")
    mode = stat.S_IMODE(found.st_mode) if found is not None else 0o666  # the umask applies to the new mode
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), mode)
        with os.fdopen(fd, "wb") as handle:
            if found is not None:
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_text(path: Path, text: str, *, paragraph: bool = False) -> None:
    """Append UTF-8 text to `path` (a file others append to as well, such as $GITHUB_STEP_SUMMARY): through a
    symlink, into a device or FIFO as it is (one nobody reads is refused at once), never truncating.

    With `paragraph`, the text starts after a blank line whatever the file ended with (no newline, one, or
    none at all for an empty file), so Markdown never glues it onto an earlier step's last line."""
    target = Path(os.path.realpath(path))
    if is_stream(target):
        _write_stream(target, (("\n" if paragraph else "") + text).encode("utf-8"))
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a+b") as handle:
        if paragraph:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(size - 2, 0))
            tail = handle.read(2)
            text = ("" if size == 0 or tail == b"\n\n" else "\n" if tail.endswith(b"\n") else "\n\n") + text
        handle.write(text.encode("utf-8"))


def _write_stream(target: Path, data: bytes) -> None:
    """Write into a character device or FIFO as it is; a FIFO that nobody reads is refused at once (opening it
    would wait for a reader forever)."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        if error.errno == errno.ENXIO:
            raise FileProblem(target, "is a FIFO that nobody reads") from None
        raise
    os.set_blocking(fd, True)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def remove_stale_temporaries(target: Path) -> None:
    """Remove the temporaries of `target` that a killed process left (their pid no longer runs)."""
    prefix = f".{target.name}."
    try:
        names = [name for name in os.listdir(target.parent) if name.startswith(prefix)]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix) :].removesuffix(TEMPORARY_SUFFIX)
        if not name.endswith(TEMPORARY_SUFFIX) or not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):  # another run removed it first
            (target.parent / name).unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive
    return True
