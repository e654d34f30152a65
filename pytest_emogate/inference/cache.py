"""The per-sample answer cache: a run killed mid-way resumes where it stopped, a repeated run does no inference.

One folder per key under the cache root (default `.emogate/cache`). The key is everything that determines the
answers: the checkpoint's sha256, the data fingerprint, the prompt and decoding settings and the package version;
its hash names the folder and `key.json` keeps it readable. Answers are appended to `answers.jsonl` one batch
at a time (write, flush, fsync), so a SIGKILL loses at most the batch in flight; a torn last line is detected on
the next load, cut off, and its sample is answered again. A lock file serialises the processes that share a
folder (pytest-xdist workers), so only one computes while the others wait and then read. Distributed ranks
write side by side instead, each to its own `answers-rank{R}.jsonl` (no interleaved appends); a load reads every
`answers*.jsonl`, and a torn line in another writer's file is skipped, never cut: that writer may still be
appending, and it cuts its own torn tail before its next append.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_emogate.files import file_sha256, usage_error
from pytest_emogate.predictions import Prediction

if TYPE_CHECKING:
    from pytest_emogate.inference.settings import InferenceSettings

ANSWERS = "answers.jsonl"
ANSWER_FILES = "answers*.jsonl"


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
        """The folder for `key` under `root`, created with its readable key.json."""
        folder = root / key_digest(key)[:20]
        folder.mkdir(parents=True, exist_ok=True)
        key_file = folder / "key.json"
        if not key_file.exists():
            key_file.write_text(json.dumps(key, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        return cls(folder)

    @property
    def answers_path(self) -> Path:
        """The append-only JSONL file of finished answers this process writes."""
        return self.folder / self.answers_file

    def for_rank(self, rank: int) -> AnswerCache:
        """The same folder, appending to rank `rank`'s own file."""
        return replace(self, answers_file=f"answers-rank{rank}.jsonl")

    def load(self) -> dict[str, Prediction]:
        """Every finished answer by sample name, from every writer's file; a torn last line (a killed writer) is
        cut off this process's own file and skipped in the others."""
        answers: dict[str, Prediction] = {}
        for path in sorted(self.folder.glob(ANSWER_FILES)):
            answers.update(self._read(path, cut=path == self.answers_path))
        return answers

    def _read(self, path: Path, *, cut: bool) -> dict[str, Prediction]:
        data = path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if cut and len(complete) != len(data):
            with path.open("r+b") as handle:
                handle.truncate(len(complete))
        answers: dict[str, Prediction] = {}
        for line_number, line in enumerate(complete.decode("utf-8", errors="replace").splitlines(), start=1):
            try:
                row = json.loads(line)
                answers[row["name"]] = Prediction(
                    row["name"], row["label"], row["output"],
                    {k: v for k, v in row.items() if k not in ("name", "label", "output")},
                )  # fmt: skip
            except (json.JSONDecodeError, KeyError, TypeError):
                problem = f"line {line_number}: not an answer written by pytest-emogate: {line[:80]!r}"
                hint = f"delete {self.folder} or run with --emogate-no-cache"
                raise usage_error(f"answer cache {path}", [problem, hint]) from None
        return answers

    def append(self, predictions: Iterable[Prediction]) -> None:
        """Append finished answers and force them to disk before returning."""
        lines = [
            json.dumps({"name": p.name, "label": p.label, "output": p.output, **dict(p.extra)}, ensure_ascii=False)
            for p in predictions
        ]
        if not lines:
            return
        payload = "".join(line + "\n" for line in lines).encode("utf-8")
        fd = os.open(self.answers_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _cut_torn_tail(fd)
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's exclusive lock: one process computes, the others wait here and then read."""
        with (self.folder / "lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


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


def answer_key(settings: InferenceSettings, data_fingerprint: str) -> dict[str, Any]:
    """What determines the answers: the cache key.

    The checkpoint and data are hashed; the base Llama and EVA files (gigabytes, fixed per project) are named by
    size and modification time; the prompt by the source of the module that builds it; the decoding settings
    and the package version as they are. Batch size is left out: in fp32 it does not change an answer.
    """
    from pytest_emogate import __version__

    prompt_module = Path(__file__).parents[1] / "model" / "prompt.py"
    s = settings
    return {
        "version": __version__,
        "checkpoint_sha256": file_sha256(s.ckpt),
        "data_fingerprint": data_fingerprint,
        "llama": _identity(s.llama),
        "vit": _identity(s.vit),
        "prompt_sha256": file_sha256(prompt_module),
        "decoding": {"max_new_tokens": s.max_new_tokens, "mode": s.mode, "merge_lora": s.merge_lora},
        "model": {"image_size": s.image_size, "head_dim": s.head_dim, "lora_alpha": s.lora_alpha},
        "device": s.device,
    }
