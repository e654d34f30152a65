"""The three utterance-level feature vectors of a sample (Face, Video, Audio), read as the original reads them.

Each `{name}.npy` holds one vector, shape (D,) or (1, D). Accepted dtypes are float32 and float16 (widened to
float32, which is exact). float64 is refused rather than cast: the original feeds the array to an fp16-autocast
Linear, which does not cast float64 inputs and fails, so a float64 file cannot be what the published run used.
Files are read as `np.load(allow_pickle=False)` would, header first: a pickle, or an object array that needs
one, can run code and is refused before any of it is read. A feature file must be a regular file of at most 64 MiB
(a vector of Test3 is a few KiB): a FIFO, a device or a huge file is refused unread. A header numpy cannot read
(a dtype it does not know, a shape of floats, a missing key) is a DataFileError, never another exception.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from tokenize import TokenError
from typing import IO, TYPE_CHECKING

import numpy as np

from pytest_emogate.data.errors import DataFileError, UnusableDataFile
from pytest_emogate.data.layout import MAX_FEATURE_BYTES
from pytest_emogate.files import FileProblem, open_checked

if TYPE_CHECKING:
    from pytest_emogate.data.test3 import Sample

SLOT_NAMES = ("Face", "Video", "Audio")
NPY_MAGIC = b"\x93NUMPY"
PICKLE_PROTOCOL_BYTE = b"\x80"
NPY_VERSIONS = ((1, 0), (2, 0), (3, 0))
NUMPY_DTYPE_ERROR = "descr is not a valid dtype descriptor: "


class NpyDtypeError(ValueError):
    """A .npy header whose `descr` numpy cannot make a dtype of; `descr` is its repr, as the header holds it."""

    def __init__(self, descr: str) -> None:
        super().__init__(f"{NUMPY_DTYPE_ERROR}{descr}")
        self.descr = descr


def load_vector(path: Path, dim: int | None = None) -> np.ndarray:
    """Load one feature file as a float32 vector [D]; with `dim`, D must equal it. Raise DataFileError."""
    try:
        handle = open_checked(path, MAX_FEATURE_BYTES)
    except FileProblem as problem:
        raise UnusableDataFile(problem) from None
    with handle:
        magic = handle.read(len(NPY_MAGIC))
        if magic != NPY_MAGIC:
            found = "a pickle" if magic[:1] == PICKLE_PROTOCOL_BYTE else f"no .npy header (starts {magic!r})"
            raise DataFileError(path, "a plain .npy array (allow_pickle=False)", found)
        handle.seek(0)
        try:
            shape, dtype = read_npy_header(handle)
        except NpyDtypeError as error:
            raise DataFileError(path, "dtype float32 or float16", error.descr) from None
        except ValueError as error:
            raise DataFileError(path, "a readable .npy file", " ".join(str(error).split())) from None
        # The header alone decides, so a refused file is never unpickled nor read in full.
        if dtype.hasobject:
            raise DataFileError(path, "a plain .npy array (allow_pickle=False)", "an object array that needs pickle")
        if dtype.kind != "f" or dtype.itemsize not in (2, 4):
            raise DataFileError(path, "dtype float32 or float16", f"dtype {dtype.name}")
        width = shape[-1] if shape else 0
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[0] != 1) or width < 1 or dim not in (None, width):
            want = "D" if dim is None else str(dim)
            raise DataFileError(path, f"shape ({want},) or (1, {want})", f"shape {tuple(shape)}")
        count = math.prod(shape)
        promised = count * dtype.itemsize
        # One read of the payload, of the size the header promises, from the handle already checked and open.
        available = os.fstat(handle.fileno()).st_size - handle.tell()
        payload = handle.read(promised) if available == promised else b""
    if len(payload) != promised:
        found = f"{max(available, 0)} bytes of data where the header promises {promised}"
        raise DataFileError(path, "a complete .npy file", found)
    vector = np.frombuffer(payload, dtype=dtype, count=count).astype(np.float32)
    if not np.isfinite(vector).all():
        bad = int((~np.isfinite(vector)).sum())
        raise DataFileError(path, "finite values", f"{bad} NaN or infinite value{'s' if bad != 1 else ''}")
    return vector


def read_npy_header(handle: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of the .npy file open at its start, the handle left at the payload; ValueError as
    numpy's own reader raises it (NpyDtypeError for a `descr` that is no dtype).

    numpy's `read_array_header_1_0/2_0` parse it (a header over 10,000 bytes refused, as np.load refuses it
    without allow_pickle), so what is accepted, and what it means, is numpy's. A reader written by hand for the
    header numpy writes was 0.015 ms a file faster: 37 ms over the 2,502 feature files of Test3's 834 samples,
    nothing beside a run's inference (bench/RESULTS.md).
    """
    formats = np.lib.format
    version = formats.read_magic(handle)
    if version not in NPY_VERSIONS:
        raise ValueError(f"format version {version[0]}.{version[1]} (numpy reads 1.0, 2.0 and 3.0)")
    # Format 3.0 differs from 2.0 only for non-latin-1 field names, which no float vector has.
    read_header = formats.read_array_header_1_0 if version == (1, 0) else formats.read_array_header_2_0
    try:
        shape, _, dtype = read_header(handle)
    except ValueError as error:
        if str(error).startswith(NUMPY_DTYPE_ERROR):
            raise NpyDtypeError(str(error)[len(NUMPY_DTYPE_ERROR) :]) from None
        raise
    except (SyntaxError, TokenError, RecursionError) as error:  # numpy lets its parser's errors through
        raise ValueError(f"a header that does not parse ({error})") from None
    except Warning as error:  # a Python 2 header, under -W error
        raise ValueError(f"a header numpy warns about ({error})") from None
    return shape, dtype


def read_features(sample: Sample) -> np.ndarray:
    """The sample's features stacked in slot order Face, Video, Audio: float32 [3, D], as the original's `cat`.

    Raises FileNotFoundError for a missing file, DataFileError for a malformed one, and ValueError when the
    three widths differ (the preflight reports all of these before any model loads).
    """
    vectors = []
    for slot, path in zip(SLOT_NAMES, sample.features, strict=True):
        if path is None:
            raise FileNotFoundError(f"sample {sample.name}: no {slot} feature file")
        vectors.append(load_vector(path))
    widths = {vector.shape[0] for vector in vectors}
    if len(widths) != 1:
        shown = ", ".join(f"{slot} {vector.shape[0]}" for slot, vector in zip(SLOT_NAMES, vectors, strict=True))
        raise ValueError(f"sample {sample.name}: expected three features of one width, found {shown}")
    return np.stack(vectors)
