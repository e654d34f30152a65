"""The per-sample answer cache: a run killed mid-way resumes where it stopped, a repeated run does no inference.

One folder per key under the cache root (default `.emogate/cache`). The key is everything that determines the
answers: the checkpoint's sha256, the data fingerprint, the prompt and decoding settings and the package version;
its hash names the folder and `key.json` keeps it readable. Answers are appended to `answers.jsonl` one batch
at a time (write, flush, fsync), so a SIGKILL loses at most the batch in flight; a torn last line is detected on
the next load, cut off, and its sample is answered again. A write that fails (a full disk) is cut back off at
once and raised as CacheWriteError naming the folder; a short write is continued until every byte is written.
A lock file serialises the processes that share a folder (pytest-xdist workers), so only one computes while the
others wait and then read. Distributed ranks write side by side instead, each to its own `answers-rank{R}.jsonl`
(no interleaved appends); a load reads every `answers*.jsonl`, and a torn line in another writer's file is
skipped, never cut: that writer may still be appending, and it cuts its own torn tail before its next append.

The cache is checked when it is opened, before any inference: a folder that is a file or cannot be written, an
answers file that is not a regular file, a line that is not an answer, a sample answered twice. It never supplies
a gold label: each cached line keeps the label it was answered under, and a load given the data's labels refuses
a line whose label differs and returns the data's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_emogate.files import (
    FileProblem,
    MiB,
    atomic_write_text,
    decode_utf8,
    file_sha256,
    kind_of,
    read_checked,
    text_lines,
    usage_error,
)
from pytest_emogate.predictions import Prediction, lone_surrogate

if TYPE_CHECKING:
    from pytest_emogate.inference.settings import InferenceSettings

ANSWERS = "answers.jsonl"
ANSWER_FILES = "answers*.jsonl"
ANSWERS_LIMIT = 512 * MiB
"""The most bytes one answers file may hold: 500 new tokens for each of a hundred thousand samples fit."""
LOCK = "lock"
FIX = "fix or delete the folder, or run with --emogate-no-cache"
SHOWN = 80


class CacheWriteError(RuntimeError):
    """Finished answers could not be written to the cache (a full disk, a failed write or sync): the message names
    the folder and the remedy. The answers file is cut back to what it held before the write."""


def key_digest(key: Mapping[str, Any]) -> str:
    """A stable hash of the key: the same settings give the same folder, any change a new one."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class AnswerCache:
    """The cache folder of one key; `answers_file` is the file this process appends to."""

    folder: Path
    answers_file: str = ANSWERS

    @classmethod
    def open(cls, root: Path, key: Mapping[str, Any]) -> AnswerCache:
        """The folder for `key` under `root`, created with its readable key.json; a UsageError when the root or
        the folder is not a folder, cannot be made or written, or holds an answers or lock file that is not a
        writable regular file."""
        folder = root / key_digest(key)[:20]
        _make_folder(root, folder)
        key_file = folder / "key.json"
        if not key_file.exists():
            atomic_write_text(key_file, json.dumps(key, indent=2, sort_keys=True, default=str) + "\n")
        for path in sorted([*folder.glob(ANSWER_FILES), folder / LOCK]):
            _check_writable_file(path)
        return cls(folder)

    @property
    def answers_path(self) -> Path:
        """The append-only JSONL file of finished answers this process writes."""
        return self.folder / self.answers_file

    def for_rank(self, rank: int) -> AnswerCache:
        """The same folder, appending to rank `rank`'s own file."""
        return replace(self, answers_file=f"answers-rank{rank}.jsonl")

    def load(self, gold: Mapping[str, str] | None = None, *, cut: bool = True) -> dict[str, Prediction]:
        """Every finished answer by sample name, from every writer's file; a torn last line (a killed writer) is
        cut off this process's own file (`cut`, for a process holding the lock) and skipped otherwise.

        With `gold`, the data's gold label of every sample by name: a cached answer for a sample not in it, or
        under another label, is a problem, and every answer returned carries the data's label. Every problem of
        every file is listed in one UsageError.
        """
        found: dict[str, tuple[Prediction, str]] = {}
        problems: list[str] = []
        for path in sorted(self.folder.glob(ANSWER_FILES)):
            problems += self._read(path, found, gold, cut=cut and path == self.answers_path)
        if problems:
            raise _cache_error(self.folder, problems)
        if gold is None:
            return {name: prediction for name, (prediction, _) in found.items()}
        return {name: replace(prediction, label=gold[name]) for name, (prediction, _) in found.items()}

    def _read(
        self, path: Path, found: dict[str, tuple[Prediction, str]], gold: Mapping[str, str] | None, *, cut: bool
    ) -> list[str]:
        """Add the answers of one file to `found`; the problems of its lines."""
        try:
            data = read_checked(path, ANSWERS_LIMIT)
        except FileProblem as refused:
            return [f"{path.name}: {refused.found}"]
        end = data.rfind(b"\n") + 1
        if cut and end != len(data):
            fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                os.ftruncate(fd, end)
            finally:
                os.close(fd)
        # the bytes are let go of once decoded: a long cached answer is held once as text, not also as bytes
        text = decode_utf8(data if end == len(data) else data[:end], "answer cache", path)
        del data
        problems: list[str] = []
        for number, line in enumerate(text_lines(text), start=1):
            where = f"{path.name} line {number}"
            prediction, problem = _answer(line)
            if prediction is None:
                problems.append(f"{where}: {problem}")
                continue
            name = prediction.name
            if name in found:
                problems.append(f"{where}: sample {_shown(name)} answered again (first in {found[name][1]})")
            elif gold is not None and name not in gold:
                problems.append(f"{where}: sample {_shown(name)} is not in the data")
            elif gold is not None and gold[name] != prediction.label:
                problems.append(
                    f"{where}: sample {_shown(name)}: gold label {_shown(prediction.label)}, but the data says "
                    f"{_shown(gold[name])} (the data supplies gold labels)"
                )
            found.setdefault(name, (prediction, where))
        return problems

    def append(self, predictions: Iterable[Prediction]) -> None:
        """Append finished answers and force them to disk before returning. CacheWriteError when they cannot be
        (the file then holds what it held before: no half-written answer is ever read back)."""
        lines = [
            json.dumps({"name": p.name, "label": p.label, "output": p.output, **dict(p.extra)}, ensure_ascii=False)
            for p in predictions
        ]
        if not lines:
            return
        payload = "".join(line + "\n" for line in lines).encode("utf-8")
        try:
            fd = os.open(self.answers_path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as error:
            raise self._write_error(len(lines), error) from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise FileProblem(self.answers_path, f"is {kind_of(mode)}; expected a regular file").usage(
                    "answer cache"
                )
            _cut_torn_tail(fd)
            start = os.fstat(fd).st_size
            try:
                _write_all(fd, payload)
                os.fsync(fd)
            except OSError as error:
                _cut_back(fd, start)
                raise self._write_error(len(lines), error) from None
        finally:
            os.close(fd)

    def _write_error(self, count: int, error: OSError) -> CacheWriteError:
        """The error of a failed append: what failed, in the folder, and what to do."""
        full = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}.get(error.errno or 0)
        what = full or error.strerror or str(error)
        remedy = "free space there, move the cache with --emogate-cache DIR, or run with --emogate-no-cache"
        return CacheWriteError(
            f"answer cache {self.folder}: the answers of {count} sample{'s' if count != 1 else ''} could not be "
            f"written to {self.answers_file} ({what}); {remedy if full else FIX}"
        )

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's exclusive lock: one process computes, the others wait here and then read."""
        with (self.folder / LOCK).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _make_folder(root: Path, folder: Path) -> None:
    """Create the key's folder under `root`, or say in a UsageError why it cannot hold a cache."""
    for path, what in ((root, "a folder"), (folder, "the folder of one cache key (delete it)")):
        if path.exists() and not path.is_dir():
            raise FileProblem(path, f"is {kind_of(path.stat().st_mode)}; expected {what}").usage("answer cache")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        failed = root if not root.is_dir() else folder
        raise FileProblem(failed, f"cannot be created: {error.strerror}").usage("answer cache") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FileProblem(
            folder,
            "is not writable: answers are appended there and its lock file is made there (make it writable, "
            "move the cache with --emogate-cache, or run with --emogate-no-cache)",
        ).usage("answer cache")


def _check_writable_file(path: Path) -> None:
    """An answers or lock file, if there, must be a regular file this process can append to."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise FileProblem(path, f"is {kind_of(mode)}; expected a regular file (delete it)").usage("answer cache")
    if not os.access(path, os.W_OK):
        raise FileProblem(path, "is not writable (make it writable or delete it)").usage("answer cache")


def _answer(line: str) -> tuple[Prediction, None] | tuple[None, str]:
    """One cache line as an answer, or what is wrong with it."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        row = None
    if not isinstance(row, dict) or not {"name", "label", "output"} <= row.keys():
        return None, f"not an answer written by pytest-emogate: {_shown(line)}"
    name, label, output = row["name"], row["label"], row["output"]
    if not isinstance(name, str) or not name:
        return None, f'expected "name" to be a non-empty string, found {_shown(name)}'
    if not isinstance(label, str):
        return None, f'expected "label" to be a string, found {_shown(label)}'
    if not isinstance(output, str):
        return None, f'expected "output" to be a string, found {_shown(output)}'
    if lone_surrogate([name, label, output]) is not None:
        return None, "a \\u escape of a lone surrogate, which is not text (the model never answers one)"
    if "hit_cap" in row and not isinstance(row["hit_cap"], bool):
        return None, f'expected "hit_cap" to be true or false, found {_shown(row["hit_cap"])}'
    tokens = row.get("n_new_tokens", 0)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        return None, f'expected "n_new_tokens" to be a whole number of at least 0, found {_shown(tokens)}'
    extra = {key: value for key, value in row.items() if key not in ("name", "label", "output")}
    return Prediction(name, label, output, extra), None


def _shown(value: object) -> str:
    """A value from the file as Python writes it, shortened: a cache line may be megabytes of anything."""
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[: SHOWN - 3]}..."


def _cache_error(folder: Path, problems: list[str]) -> pytest.UsageError:
    return pytest.UsageError(f"{usage_error(f'answer cache {folder}', problems)}\n  {FIX}")


def _write_all(fd: int, payload: bytes) -> None:
    """Write every byte of `payload` at `fd`: a short write is continued, one that writes nothing is an error."""
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, f"a write wrote nothing, {len(view)} bytes left")
        view = view[written:]


def _cut_back(fd: int, size: int) -> None:
    """Cut a failed append back off the file (to `size`); were that to fail too, the torn tail has no newline
    and the next load or append cuts it."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)


def _cut_torn_tail(fd: int) -> None:
    """Cut a killed writer's torn last line off the file at `fd`, so the next append starts on a fresh line."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    data = os.pread(fd, size, 0)
    os.ftruncate(fd, data.rfind(b"\n") + 1)


def _identity(path: Path) -> list[tuple[str, int, int]]:
    """Name, size and mtime of a weight file or of every file in a model folder: cheap, and any change shows."""
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return [(file.name, file.stat().st_size, file.stat().st_mtime_ns) for file in files if file.is_file()]


def answer_key(
    settings: InferenceSettings, data_fingerprint: str, *, checkpoint_sha256: str | None = None
) -> dict[str, Any]:
    """What determines the answers: the cache key.

    The checkpoint and data are hashed (`checkpoint_sha256` when the caller has it already); the base Llama and
    EVA files (gigabytes, fixed per project) are named by size and modification time; the prompt by the source
    of the module that builds it; the decoding settings, the dtype and the package version as they are. The
    batch size is in only where it can change an answer (half precision, `may_round_by_batch`): in fp32 it does
    not, so a run with `--emogate-batch-size auto` and one at any fixed size share their answers. In half
    precision `auto` is in the key as itself: its answers, made at whichever size fit the device, are never
    taken for a fixed size's, nor a fixed size's for its.
    """
    from pytest_emogate import __version__

    prompt_module = Path(__file__).parents[1] / "model" / "prompt.py"
    s = settings
    decoding: dict[str, Any] = {"max_new_tokens": s.max_new_tokens, "mode": s.mode, "merge_lora": s.merge_lora}
    if s.may_round_by_batch:
        decoding["batch_size"] = s.batch_size
    return {
        "version": __version__,
        "checkpoint_sha256": checkpoint_sha256 or file_sha256(s.ckpt),
        "data_fingerprint": data_fingerprint,
        "llama": _identity(s.llama),
        "vit": _identity(s.vit),
        "prompt_sha256": file_sha256(prompt_module),
        "decoding": decoding,
        "model": {"image_size": s.image_size, "head_dim": s.head_dim, "lora_alpha": s.lora_alpha, "dtype": s.dtype},
        "device": s.device,
    }
