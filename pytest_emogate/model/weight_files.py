"""Weight files opened safely, and named for what they are when they are not weights.

A weight file is opened only once it is known to be a regular file (a FIFO would block torch and safetensors)
whose first bytes fit its format. A Git LFS pointer (a clone without `git lfs pull`), an HTML page (a download
that returned a login page), a text file, an empty file or half a zip archive is named as such; torch's own
message for them ("a pickle", with its advice to load with weights_only=False) is never relayed. Checkpoints
are read with `torch.load(weights_only=True)` or safetensors only: a pickle that needs code is refused.
A safetensors file's shapes come from its header alone, read bounded, so the preflight sizes gigabytes of
weights without reading them.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeGuard

from pytest_emogate.files import FileProblem, MiB, open_checked, size_text, usage_error

HEAD_BYTES = 1024
LFS_POINTER = b"version https://git-lfs.github.com/spec/"
SAFETENSORS_HEADER_LIMIT = 100 * MiB  # safetensors' own limit on the JSON header


class _Absent:
    """The value of a saved config that is not there at all (None would be a config saved as None)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
_ADVICE = ("weights_only", "weights only", "file an issue", "documentation", "safe_globals", "trusted source")
_CODE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def looks_like(head: bytes, size: int, noun: str = "the weights") -> str | None:
    """What a file whose first bytes are `head` is, when it plainly is not `noun`: empty, a Git LFS pointer or
    an HTML page; None otherwise. Phrased to follow the path."""
    if size == 0:
        return "is empty (0 bytes)"
    if head.startswith(LFS_POINTER):
        found = re.search(rb"\nsize (\d+)", head)
        real = f" (the real file is {size_text(int(found.group(1)))})" if found else ""
        return f"is a Git LFS pointer, not {noun}: run `git lfs pull`{real}"
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        start.startswith(b"<") and b"<html" in start
    ):
        return "is an HTML page (a download that returned a web page?)"
    return None


def text_or_bytes(head: bytes, expected: str) -> str:
    """A file that is not `expected`, named by what it starts with: a text file (its first line, shortened)
    or unknown bytes (the first eight, in hex)."""
    text = head.decode("utf-8", "replace")
    if "\ufffd" not in text[:-3] and all(char.isprintable() or char in "\t\r\n" for char in text):
        first = next((line.strip() for line in text.split("\n") if line.strip()), "")
        shown = first if len(first) <= 60 else first[:57] + "..."
        return f"is a text file, not {expected}; it starts {shown!r}"
    return f"is not {expected}: it starts with the bytes {head[:8].hex(' ')}"


def weight_problem(path: Path) -> str | None:
    """Why `path` cannot be a weight file of its kind (`.safetensors`, else a torch file), from its first bytes;
    None when it may be one. FileProblem when it is not a regular file."""
    with open_checked(path) as handle:
        head = handle.read(HEAD_BYTES)
        size = handle.seek(0, 2)
    seen = looks_like(head, size)
    if seen is not None:
        return seen
    if path.suffix == ".safetensors":
        if len(head) >= 9 and head[8:9] == b"{":
            header = int.from_bytes(head[:8], "little")
            if 8 + header > size:
                return f"is truncated: its header alone needs {size_text(8 + header)}, the file is {size_text(size)}"
            return None
        return text_or_bytes(head, "a safetensors file")
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            return f"is a truncated or damaged zip archive ({size_text(size)}; an interrupted download or copy?)"
        with zipfile.ZipFile(path) as archive:  # reads the central directory only
            if not any(name.rsplit("/", 1)[-1] == "data.pkl" for name in archive.namelist()):
                return "is a zip archive, not a torch checkpoint (it holds no data.pkl; unpack it?)"
        return None
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return None  # a pickle: torch's legacy format
    if len(head) >= 10 and head[8:10] == b'{"':
        return "looks like a safetensors file: give it the .safetensors suffix"
    return text_or_bytes(head, "a torch checkpoint (a zip or pickle file)")


def read_weights(path: Path, what: str) -> tuple[dict[str, Any], Any]:
    """The top-level mapping of a torch file (weights_only) or the tensors of a `.safetensors` file, and the
    safetensors metadata's `config` parsed from JSON (ABSENT for a torch file, whose config is in its mapping).

    Anything that is not such a file is one UsageError `{what} {path}` saying what it is instead.
    """
    try:
        problem = weight_problem(path)
    except FileProblem as error:
        raise usage_error(f"{what} {path}", [error.found]) from None
    if problem is not None:
        raise usage_error(f"{what} {path}", [problem])
    if path.suffix == ".safetensors":
        return _read_safetensors(path, what)
    import torch

    try:
        # mmap keeps a real checkpoint's optimizer state on disk: only the tensors we use are paged in.
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        reason = torch_reason(error)
        code = _CODE_GLOBAL.search(str(error))
        if code is not None:
            problem = (
                f"refused: a pickle that needs code to load (it calls {code.group(1)}); only weights_only=True "
                "loading is allowed"
            )
        else:
            problem = f"cannot be read as a torch file: its pickle is damaged ({reason})"
        raise usage_error(f"{what} {path}", [problem]) from None
    except Exception as error:  # torch raises what its reader meets in a damaged file: KeyError, RuntimeError...
        raise usage_error(f"{what} {path}", [f"cannot be read as a torch file: {torch_reason(error)}"]) from None
    if not isinstance(loaded, dict):
        raise usage_error(f"{what} {path}", [f"expected a dict at the top, found {type(loaded).__name__}"])
    return loaded, ABSENT


def safetensors_shapes(path: Path, what: str) -> dict[str, list[int]]:
    """Every tensor's shape from a safetensors header, read bounded; a file too short for the data its header
    names is refused as truncated."""
    try:
        problem = weight_problem(path)
        with open_checked(path) as handle:
            size = handle.seek(0, 2)
            handle.seek(0)
            length = int.from_bytes(handle.read(8), "little") if problem is None else 0
            if problem is None and length > SAFETENSORS_HEADER_LIMIT:
                problem = f"has a header of {size_text(length)}; the limit is {size_text(SAFETENSORS_HEADER_LIMIT)}"
            header = handle.read(length) if problem is None else b""
    except FileProblem as error:
        raise usage_error(f"{what} {path}", [error.found]) from None
    if problem is None:
        problem, shapes = _header_shapes(header, size - 8 - length)
        if problem is None:
            return shapes
    raise usage_error(f"{what} {path}", [problem])


def _header_shapes(header: bytes, data_size: int) -> tuple[str | None, dict[str, list[int]]]:
    try:
        entries = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "is not a safetensors file: its header is not JSON", {}
    if not isinstance(entries, dict):
        return "is not a safetensors file: its header is not a JSON object", {}
    shapes, end = {}, 0
    for key, entry in entries.items():
        if key == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (_ints(shape) and _ints(offsets) and len(offsets) == 2):
            return f"is not a safetensors file: header entry {key!r} has no shape and data offsets", {}
        shapes[key] = list(shape)
        end = max(end, offsets[1])
    if end > data_size:
        return (
            f"is truncated: its tensors need {size_text(end)} of data, the file holds {size_text(max(data_size, 0))} "
            "(an interrupted download?)"
        ), {}
    return None, shapes


def _ints(value: Any) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(isinstance(item, int) and not isinstance(item, bool) for item in value)


def rank_problem(key: str, shape: Sequence[int], dims: str) -> str | None:
    """`key: expected a 2-D tensor [out, in], found shape [64]` when the tensor's rank is not that of `dims`
    (a bracketed list of dimension names); None when it is. Checked before any size is read from a shape."""
    rank = len(dims.strip("[]").split(","))
    if len(shape) == rank:
        return None
    scalar = " (a scalar)" if len(shape) == 0 else ""
    return f"{key}: expected a {rank}-D tensor {dims}, found shape {list(shape)}{scalar}"


def torch_reason(error: BaseException) -> str:
    """torch's error in one short line, without its advice to load with weights_only=False or allow globals."""
    lines = [line.strip() for line in str(error).split("\n")]
    kept = [line for line in lines if line and not any(word in line.lower() for word in _ADVICE)]
    kept = [re.sub(r"^WeightsUnpickler error:\s*", "", line) for line in kept]
    text = " ".join(line for line in kept if line)
    return text[:300] or type(error).__name__


def _read_safetensors(path: Path, what: str) -> tuple[dict[str, Any], Any]:
    from safetensors import SafetensorError, safe_open

    safetensors_shapes(path, what)  # truncation named before safetensors reads a byte of data
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise usage_error(f"{what} {path}", [f"cannot be read as safetensors: {torch_reason(error)}"]) from None
    if "config" not in metadata:
        return tensors, ABSENT
    try:
        return tensors, json.loads(metadata["config"])
    except json.JSONDecodeError as error:
        raise usage_error(f"{what} {path}", [f"metadata 'config' is not JSON: {error.msg}"]) from None
