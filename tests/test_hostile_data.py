"""Test3 data under hostile files: FIFOs and devices are refused unread (never a hang, never a read to the end),
every read is bounded, a frame declaring too many pixels is refused before it decodes, a .npy header numpy cannot
understand is a data file error, the manifest is read as safe YAML, and the CSV and annotation parse exactly."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import pytest
from PIL import Image

from pytest_emogate.data import load_test3, preflight, read_features, read_frame
from pytest_emogate.data.errors import DataFileError
from pytest_emogate.data.features import load_vector
from pytest_emogate.data.image import decode_frame
from tests.test_preflight import DIMS, write_set  # a small, valid release-layout data set

T = TypeVar("T")
LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")

MiB = 1 << 20
posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and /dev/zero are POSIX")


@contextmanager
def memory_bounded(extra: int = 1 << 30) -> Iterator[None]:
    """While inside, the process may allocate at most `extra` bytes more (RLIMIT_DATA, Linux): a read of /dev/zero
    to its end is a MemoryError within a second instead of the machine's memory."""
    try:
        import resource

        status = Path("/proc/self/status").read_text()
    except (ImportError, OSError):
        yield
        return
    found = re.search(r"VmData:\s+(\d+) kB", status)
    old = resource.getrlimit(resource.RLIMIT_DATA)
    if found is None or old[0] != resource.RLIM_INFINITY:
        yield
        return
    resource.setrlimit(resource.RLIMIT_DATA, (int(found.group(1)) * 1024 + extra, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, old)


def finishes(call: Callable[[], T], fifos: Path, seconds: float = 10.0) -> T:
    """`call()` on a thread, its result returned or its exception raised here. A call still running after
    `seconds` (a FIFO opened for reading blocks) fails the test; every FIFO under `fifos` is then opened for
    writing, so the call can end and the suite exit."""
    outcome: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # re-raised in the test's thread
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    with memory_bounded():
        thread.start()
        thread.join(seconds)
        hung = thread.is_alive()
        for _ in range(100):  # each blocked open, one after the other
            if not thread.is_alive():
                break
            _unblock(fifos)
            thread.join(0.05)
    if hung:
        pytest.fail(f"{getattr(call, '__qualname__', call)} did not return within {seconds} s (blocked on a FIFO?)")
    if errors:
        raise errors[0]
    return outcome[0]


def _unblock(root: Path) -> None:
    for path in root.rglob("*"):
        if stat.S_ISFIFO(path.lstat().st_mode):
            with contextlib.suppress(OSError):  # no reader waits on this one
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def fifo(path: Path) -> Path:
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


def zero(path: Path) -> Path:
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")
    return path


def null(path: Path) -> Path:
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/null")
    return path


def sparse(path: Path, size: int, start: bytes = b"") -> Path:
    """A file of `size` bytes that takes no disk space (a hole after `start`)."""
    with path.open("wb") as handle:
        handle.write(start)
        handle.truncate(size)
    return path


def usage_lines(call: Callable[[], object], fifos: Path) -> list[str]:
    """The lines of the UsageError that `call` raises (within the time limit)."""
    with pytest.raises(pytest.UsageError) as error:
        finishes(call, fifos)
    return str(error.value).splitlines()


# FIFOs, devices and oversized files


@posix_only
def test_fifos_and_devices_as_sample_files_are_each_named_by_the_preflight(tmp_path: Path) -> None:
    root = write_set(tmp_path, [f"s{index:02d}" for index in range(1, 10)])
    good = load_test3(root).fingerprint()
    # /dev/null, not /dev/zero: the fingerprint and the preflight read on worker threads, which a process waits
    # for when it exits, and a regression would read /dev/zero on them forever. The readers' test uses /dev/zero.
    fifo(root / "mae_340_UTT" / "s01.npy")
    null(root / "maeV_399_UTT" / "s02.npy")
    fifo(root / "test3" / "s03.jpg")
    null(root / "test3" / "s04.jpg")
    for name, make in (("s05", fifo), ("s06", null)):
        (root / "test3" / f"{name}.jpg").unlink()
        make(root / "test3" / f"{name}.mp4")
    (root / "HL-UTT" / "s07.npy").unlink()
    (root / "HL-UTT" / "s07.npy").mkdir()
    sparse(root / "HL-UTT" / "s08.npy", 100 * MiB, (root / "HL-UTT" / "s01.npy").read_bytes())
    sparse(root / "test3" / "s09.jpg", 200 * MiB, (root / "test3" / "s01.jpg").read_bytes())

    data = finishes(lambda: load_test3(root), tmp_path)
    assert finishes(data.fingerprint, tmp_path) != good
    assert usage_lines(lambda: preflight(data, LABELS, DIMS), tmp_path) == [
        f"Test3 data {root}: 9 problems",
        "  - sample s01: mae_340_UTT/s01.npy: is a FIFO (named pipe); expected a regular file",
        "  - sample s02: maeV_399_UTT/s02.npy: is a character device; expected a regular file",
        "  - sample s03: test3/s03.jpg: is a FIFO (named pipe); expected a regular file",
        "  - sample s04: test3/s04.jpg: is a character device; expected a regular file",
        "  - sample s05: test3/s05.mp4: is a FIFO (named pipe); expected a regular file",
        "  - sample s06: test3/s06.mp4: is a character device; expected a regular file",
        "  - sample s07: HL-UTT/s07.npy: is a directory; expected a regular file",
        "  - sample s08: HL-UTT/s08.npy: is 100.0 MiB; the limit is 64.0 MiB",
        "  - sample s09: test3/s09.jpg: is 200.0 MiB; the limit is 128.0 MiB",
    ]


@posix_only
@pytest.mark.parametrize(
    ("make", "slot"),
    [(fifo, "features"), (zero, "features"), (fifo, "jpg"), (zero, "jpg"), (fifo, "mp4"), (zero, "mp4")],
)
def test_the_inference_readers_refuse_fifos_and_devices_too(
    tmp_path: Path, make: Callable[[Path], Path], slot: str
) -> None:
    root = write_set(tmp_path, ["a"])
    if slot == "mp4":
        (root / "test3" / "a.jpg").unlink()
    make(root / "HL-UTT" / "a.npy" if slot == "features" else root / "test3" / f"a.{slot}")
    (sample,) = load_test3(root).samples
    path = sample.features[2] if slot == "features" else sample.frame
    kind = "a FIFO (named pipe)" if make is fifo else "a character device"
    with pytest.raises(DataFileError) as error:
        finishes(lambda: read_features(sample) if slot == "features" else read_frame(sample), tmp_path)
    assert str(error.value) == f"{path}: is {kind}; expected a regular file"


@posix_only
@pytest.mark.parametrize("make", [fifo, zero], ids=["fifo", "dev-zero"])
def test_an_annotation_or_transcripts_that_is_not_a_regular_file_is_named(
    tmp_path: Path, make: Callable[[Path], Path]
) -> None:
    root = write_set(tmp_path, ["a"])
    make(root / "relative_test3_NCEV.txt")
    make(root / "transcription_en_all.csv")
    (root / "transcription_all_new.csv").write_text("name,sentence\na,never read\n")  # not a fallback for a FIFO
    kind = "a FIFO (named pipe)" if make is fifo else "a character device"
    assert usage_lines(lambda: load_test3(root), tmp_path) == [
        f"Test3 data directory {root}: 2 problems",
        f"  - annotation relative_test3_NCEV.txt: is {kind}; expected a regular file",
        f"  - transcripts transcription_en_all.csv: is {kind}; expected a regular file",
    ]
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        "annotation: relative_test3_NCEV.txt\ntranscripts: transcription_en_all.csv\nframes: test3\n"
        "features: {face: mae_340_UTT, video: maeV_399_UTT, audio: HL-UTT}\n"
    )
    assert usage_lines(lambda: load_test3(manifest), tmp_path) == [
        f"Test3 data manifest {manifest}: 2 problems",
        f"  - key 'annotation': {root}/relative_test3_NCEV.txt is {kind}; expected a regular file",
        f"  - key 'transcripts': {root}/transcription_en_all.csv is {kind}; expected a regular file",
    ]


def test_an_oversized_annotation_and_transcripts_are_refused_unread(tmp_path: Path) -> None:
    root = write_set(tmp_path, ["a"])
    sparse(root / "relative_test3_NCEV.txt", 65 * MiB, b"a 125 sad -10\n")
    sparse(root / "transcription_en_all.csv", 257 * MiB, b"name,sentence\n")
    assert usage_lines(lambda: load_test3(root), tmp_path) == [
        f"Test3 data {root}: 2 problems",
        f"  - Test3 annotation {root}/relative_test3_NCEV.txt: is 65.0 MiB; the limit is 64.0 MiB",
        f"  - Test3 transcripts {root}/transcription_en_all.csv: is 257.0 MiB; the limit is 256.0 MiB",
    ]


# Frames that declare too many pixels


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares `width` x `height` RGB pixels and whose data holds none of them."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG with its SOF0 header rewritten to declare `width` x `height` pixels."""
    handle = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(handle, "JPEG")
    data = bytearray(handle.getvalue())
    at = data.index(b"\xff\xc0") + 5  # marker, length, precision: then height and width
    data[at : at + 4] = struct.pack(">HH", height, width)
    return bytes(data)


def bmp_declaring(width: int, height: int) -> bytes:
    """A BMP header declaring `width` x `height` 24-bit pixels, with no pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


FRAME_LIMIT = "a frame of at most 33,177,600 pixels (7680 x 4320)"


@pytest.mark.parametrize(
    ("declare", "width", "height"),
    [
        (png_declaring, 30000, 30000),  # past PIL's DecompressionBombError limit
        (png_declaring, 10000, 10000),  # past PIL's DecompressionBombWarning limit
        (png_declaring, 8000, 4500),  # past the frame limit, within PIL's
        (jpeg_declaring, 30000, 30000),
        (jpeg_declaring, 10000, 10000),
        (bmp_declaring, 8000, 4500),  # a format whose header is not read before PIL's
    ],
)
def test_a_frame_declaring_too_many_pixels_is_refused_before_it_decodes(
    tmp_path: Path, declare: Callable[[int, int], bytes], width: int, height: int
) -> None:
    path = tmp_path / "s01.jpg"
    path.write_bytes(declare(width, height))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # -W error: PIL's DecompressionBombWarning is an exception
        with pytest.raises(DataFileError) as error:
            decode_frame(path)
    assert str(error.value) == f"{path}: expected {FRAME_LIMIT}, found an image of {width} x {height} pixels"


@pytest.mark.parametrize("side", [30000, 10000])
def test_an_image_past_pils_own_limits_is_refused_in_any_format(tmp_path: Path, side: int) -> None:
    path = tmp_path / "s01.jpg"
    path.write_bytes(bmp_declaring(side, side))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataFileError) as error:
            decode_frame(path)
    assert str(error.value).startswith(
        f"{path}: expected {FRAME_LIMIT}, found an image PIL refuses as a decompression bomb (Image size"
        f" ({side * side} pixels) exceeds limit of"
    )


def test_pil_global_pixel_limit_is_left_alone(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "s01.jpg"
    path.write_bytes(png_declaring(30000, 30000))
    with pytest.raises(DataFileError):
        decode_frame(path)
    assert before == Image.MAX_IMAGE_PIXELS


def test_a_frame_at_the_pixel_limit_is_judged_by_its_data(tmp_path: Path) -> None:
    path = tmp_path / "s01.jpg"
    path.write_bytes(png_declaring(7680, 4320))
    with pytest.raises(DataFileError) as error:
        decode_frame(path)
    assert str(error.value).startswith(f"{path}: expected a decodable image, found a broken image")


def test_a_video_whose_frames_are_too_large_is_refused_before_it_decodes(tmp_path: Path) -> None:
    path = tmp_path / "s01.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (8000, 4500))
    writer.write(np.zeros((4500, 8000, 3), dtype=np.uint8))
    writer.release()
    with pytest.raises(DataFileError) as error:
        decode_frame(path)
    assert str(error.value) == f"{path}: expected {FRAME_LIMIT}, found a video of 8000 x 4500 pixels"


# .npy headers


def npy_with_header(header: str, payload: bytes = b"\0" * 16) -> bytes:
    """A version 1.0 .npy file with exactly `header` (padded as numpy pads it) and `payload`."""
    text = header.encode("latin1")
    padded = text + b" " * (63 - (10 + len(text)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(padded)) + padded + payload


@pytest.mark.parametrize(
    ("header", "found"),
    [
        ("{'descr': '<f3', 'fortran_order': False, 'shape': (4,), }", "'<f3'"),
        ("{'descr': '<x4', 'fortran_order': False, 'shape': (4,), }", "'<x4'"),
        ("{'shape': (4,), 'fortran_order': False, 'descr': '<f3'}", "'<f3'"),  # numpy's own parser
        ("{'descr': 'nonsense', 'fortran_order': False, 'shape': (4,), }", "'nonsense'"),
        ("{'descr': [('a', '<f3')], 'fortran_order': False, 'shape': (4,), }", "[('a', '<f3')]"),
    ],
)
def test_a_npy_dtype_numpy_cannot_make_is_a_data_file_error(tmp_path: Path, header: str, found: str) -> None:
    path = tmp_path / "s01.npy"
    path.write_bytes(npy_with_header(header))
    for dim in (4, None):
        with pytest.raises(DataFileError) as error:
            load_vector(path, dim)
        assert str(error.value) == f"{path}: expected dtype float32 or float16, found {found}"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }", "expected shape"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, -4), }", "expected shape"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (0,), }", "expected shape"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 10000000000000000000000000000000), }", "expected"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (4.0,), }", "expected a readable .npy file"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': ('4',), }", "expected a readable .npy file"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': 4, }", "expected a readable .npy file"),
        ("{'descr': '<f4', 'fortran_order': 1, 'shape': (4,), }", "expected a readable .npy file"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}", "expected a readable .npy file"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), ", "expected a readable .npy file"),
        ("{'descr': 4, 'fortran_order': False, 'shape': (4,), }", "expected"),
        ("[1, 2]", "expected a readable .npy file"),
        ("", "expected a readable .npy file"),
    ],
)
def test_other_npy_header_corruptions_are_data_file_errors(tmp_path: Path, header: str, expected: str) -> None:
    path = tmp_path / "s01.npy"
    path.write_bytes(npy_with_header(header))
    for dim in (4, None):
        with pytest.raises(DataFileError) as error:
            load_vector(path, dim)
        assert str(error.value).startswith(f"{path}: {expected}")


def test_header_size_fields_past_the_file_are_data_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "s01.npy"
    for data in (
        b"\x93NUMPY\x01\x00\xff\xff{",
        b"\x93NUMPY\x02\x00\xff\xff\xff\xff{",
        b"\x93NUMPY\x09\x00",
        b"\x93NUMPY",
    ):
        path.write_bytes(data)
        with pytest.raises(DataFileError, match=re.escape("expected a readable .npy file")):
            load_vector(path, 4)


def test_the_preflight_reports_bombs_and_broken_headers_with_the_rest(tmp_path: Path) -> None:
    root = write_set(tmp_path, ["s01", "s02", "s03"])
    (root / "test3" / "s01.jpg").write_bytes(png_declaring(30000, 30000))
    (root / "HL-UTT" / "s02.npy").write_bytes(
        npy_with_header("{'descr': '<f3', 'fortran_order': False, 'shape': (2,), }")
    )
    (root / "test3" / "s03.jpg").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(pytest.UsageError) as error:
            preflight(load_test3(root), LABELS, DIMS)
    assert str(error.value).splitlines() == [
        f"Test3 data {root}: 3 problems",
        f"  - sample s01: test3/s01.jpg: expected {FRAME_LIMIT}, found an image of 30000 x 30000 pixels",
        "  - sample s02: HL-UTT/s02.npy: expected dtype float32 or float16, found '<f3'",
        "  - sample s03: test3/s03.{mp4,avi,jpg}: expected a video or image frame file, found no file",
    ]


# The manifest


def write_manifest(tmp_path: Path, text: str) -> Path:
    write_set(tmp_path, ["a"])
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(text)
    return manifest


MANIFEST = (
    "annotation: relative_test3_NCEV.txt\ntranscripts: transcription_en_all.csv\nframes: test3\n"
    "features: {face: mae_340_UTT, video: maeV_399_UTT, audio: HL-UTT}\n"
)


def test_a_manifest_with_a_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, MANIFEST + "frames: elsewhere\n")
    assert usage_lines(lambda: load_test3(manifest), tmp_path) == [
        f"Test3 data manifest {manifest}: 1 problem",
        "  - line 5: duplicate key 'frames' (first on line 3); keep one",
    ]
    manifest.write_text(MANIFEST.replace("audio: HL-UTT", "audio: HL-UTT, face: other"))
    assert "duplicate key 'face'" in usage_lines(lambda: load_test3(manifest), tmp_path)[1]


def test_a_manifest_alias_bomb_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
    )
    manifest = write_manifest(tmp_path, bomb)
    lines = usage_lines(lambda: load_test3(manifest), tmp_path)
    assert lines[0] == f"Test3 data manifest {manifest}: 1 problem" and "an alias bomb?" in lines[1]
    manifest.write_text("annotation: " + "[" * 5000 + "]" * 5000 + "\n")
    lines = usage_lines(lambda: load_test3(manifest), tmp_path)
    assert lines[0] == f"Test3 data manifest {manifest}: 1 problem" and "nested" in lines[1]


@posix_only
@pytest.mark.parametrize("make", [fifo, zero], ids=["fifo", "dev-zero"])
def test_a_manifest_that_is_not_a_regular_file_is_refused_unread(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    manifest = make(tmp_path / "manifest.yaml")
    kind = "a FIFO (named pipe)" if make is fifo else "a character device"
    assert usage_lines(lambda: load_test3(manifest), tmp_path) == [
        f"Test3 data manifest {manifest}: is {kind}; expected a regular file"
    ]


def test_an_oversized_manifest_is_refused_unread(tmp_path: Path) -> None:
    manifest = sparse(tmp_path / "manifest.yaml", 5 * MiB, MANIFEST.encode())
    assert usage_lines(lambda: load_test3(manifest), tmp_path) == [
        f"Test3 data manifest {manifest}: is 5.0 MiB; the limit is 4.0 MiB"
    ]


# The transcripts CSV and the annotation's lines


def test_a_transcript_longer_than_csvs_default_field_limit_is_read_whole(tmp_path: Path) -> None:
    root = write_set(tmp_path, ["a", "b"])
    long = "word " * 60_000
    with (root / "transcription_en_all.csv").open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([("name", "sentence"), ("a", long), ("b", "short")])
    assert [sample.transcript for sample in load_test3(root).samples] == [long, "short"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('name,sentence\na,Hi.\nb,"never closed\nc,Hi.\n', "line 3: expected a closing '\"' for the quoted field"
         " that opens on this line, found the end of the file"),
        ('name,sentence,x\na,"two\nlines","open\nb,x,y\n', "line 3: expected a closing '\"' for the"
         " quoted field that opens on this line, found the end of the file"),
        ('name,sentence\na,"say ""hi""\nand\n""more""\nb,x\n', "line 2: expected a closing '\"' for the quoted"
         " field that opens on this line, found the end of the file"),
        ('name,sentence\na,Hi.\nb,"quoted" then more\n', "line 3: expected CSV, found a row that does not parse"
         " (',' expected after '\"')"),
    ],
)  # fmt: skip
def test_a_transcript_csv_that_does_not_parse_names_the_line(tmp_path: Path, text: str, problem: str) -> None:
    root = write_set(tmp_path, ["a", "b", "c"])
    (root / "transcription_en_all.csv").write_text(text)
    assert usage_lines(lambda: load_test3(root), tmp_path) == [
        f"Test3 transcripts {root / 'transcription_en_all.csv'}: 1 problem",
        f"  - {problem}",
    ]


def test_annotation_lines_split_on_newlines_only(tmp_path: Path) -> None:
    root = write_set(tmp_path, ["a", "b"])
    annotation = root / "relative_test3_NCEV.txt"
    annotation.write_text("a 125 sad -10\nb 125 Hap\u2028py \x0c-10\x1c\nc 12\n", encoding="utf-8")
    assert usage_lines(lambda: load_test3(root), tmp_path) == [
        f"Test3 annotation {annotation}: 1 problem",
        "  - line 3: expected 'name nframes label valence', found 'c 12'",
    ]
    annotation.write_text("a 125 sad -10\nb 125 Hap\u2028py -10\n", encoding="utf-8")
    assert [(sample.name, sample.line) for sample in load_test3(root).samples] == [("a", 1), ("b", 2)]


def test_the_csv_field_size_limit_is_only_ever_raised(tmp_path: Path) -> None:
    root = write_set(tmp_path, ["a"])
    before = csv.field_size_limit((1 << 31) - 1)  # process-global: another reader may have raised it further
    try:
        load_test3(root)
        assert csv.field_size_limit() == (1 << 31) - 1
    finally:
        csv.field_size_limit(before)
