"""The MER2023 Test3 samples: annotation lines joined with their transcript, feature files and frame file.

Read as the original evaluation reads them: the annotation line is `strip().split(" ")` and only field 0 (name)
and field 2 (label) are used; the gold label is the last word of the label field after the original's caption
cleaning (lowercase, `.!"()*#:;~` to spaces); the transcript is the first CSV row for the name, and a missing
or empty cell (or one pandas reads as NaN, such as "NA") is a missing transcript that the original renders as
"nan". Files are looked up by listing each folder once, so a name can never reach outside its folder.

The annotation (at most 64 MiB) and the transcripts (at most 256 MiB) are read once each, bounded, and only as
regular files; annotation lines end at "\n" alone (not at U+2028 and the other breaks of `str.splitlines`), and the
CSV must parse strictly: a transcript may be any length, a quote left open is named by the line it opens on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pytest_emogate.data.layout import (
    FRAME_SUFFIXES,
    MAX_FEATURE_BYTES,
    MAX_IMAGE_BYTES,
    MAX_VIDEO_BYTES,
    VIDEO_SUFFIXES,
    DataPaths,
    locate,
)
from pytest_emogate.files import FileProblem, MiB, decode_utf8, open_checked, read_checked, text_lines, usage_error
from pytest_emogate.formats import quoted

TRANSCRIPT_COLUMNS = ("sentence", "sentence_en")
# pandas.read_csv's default NA strings: the original reads the CSV with pandas, and these cells become NaN.
PANDAS_NA_STRINGS = frozenset(
    ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
     "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
)  # fmt: skip
CAPTION_PUNCTUATION = re.compile(r'[.!"()*#:;~]')
FINGERPRINT_VERSION = b"emogate-test3-fingerprint-v1"
MISSING = b"<missing>"
IO_THREADS = min(8, os.cpu_count() or 1)
MAX_ANNOTATION_BYTES = 64 * MiB  # Test3's is 40 KB
MAX_TRANSCRIPTS_BYTES = 256 * MiB  # Test3's is 200 KB; a long transcript is legal, a runaway file is not


@dataclass(frozen=True)
class Sample:
    """One Test3 sample. `features` (Face, Video, Audio) and `frame` are None where the file does not exist."""

    name: str
    label: str
    transcript: str | None
    frame: Path | None
    features: tuple[Path | None, Path | None, Path | None]
    line: int


@dataclass(frozen=True)
class Test3Data:
    """The whole data set, in annotation order, and where each part of it was read from."""

    __test__ = False  # its name starts with "Test": keep pytest from collecting it where a test imports it

    root: Path
    samples: tuple[Sample, ...]
    annotation: Path
    transcripts: Path
    transcript_column: str
    feature_dirs: tuple[Path, Path, Path]
    frames: Path
    source: Path
    annotation_bytes: bytes = field(repr=False)
    """The annotation file as it was read: the fingerprint covers these very bytes."""

    def fingerprint(self) -> str:
        """sha256 (hex) of what determines the model's inputs.

        Covers the annotation file's bytes, then per sample in order: its name, the transcript text used (or a
        missing marker), and the sha256 of each feature file and of the frame file (or a missing marker). Each
        field is length-prefixed so no two data sets share a byte stream. The cost is one read of every file,
        hashed on a few threads (hashlib releases the GIL): well under a second for Test3's features, about
        the time to read the videos once for the frames.
        """
        digest = hashlib.sha256()
        _add(digest, FINGERPRINT_VERSION)
        _add(digest, self.annotation_bytes)
        with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
            for sample, file_digests in zip(self.samples, pool.map(_sample_file_digests, self.samples), strict=True):
                _add(digest, sample.name.encode("utf-8"))
                _add(digest, MISSING if sample.transcript is None else sample.transcript.encode("utf-8"))
                for file_digest in file_digests:
                    _add(digest, file_digest)
        return digest.hexdigest()


def load_test3(path: Path) -> Test3Data:
    """Read the Test3 data named by `--emogate-data` (release-layout directory or YAML manifest).

    Raises one pytest.UsageError naming the file, line or key for a missing path, an unreadable manifest or
    unknown manifest keys, a malformed annotation line or a transcript CSV without the needed columns. Missing or
    malformed per-sample files are the preflight's to report, all at once.
    """
    paths = locate(path)
    annotation, transcripts_text = _read_both(paths)
    lines = _annotation_lines(annotation, paths.annotation)
    column, transcripts = _transcripts(paths, transcripts_text)
    frame_files = _listing(paths.frames)
    feature_files = [_listing(folder) for folder in paths.feature_dirs]
    samples = []
    for line, name, label in lines:
        features = tuple(
            folder / f"{name}.npy" if f"{name}.npy" in files else None
            for folder, files in zip(paths.feature_dirs, feature_files, strict=True)
        )
        # The original's order: the video (mp4, then avi), else the fork's pre-extracted jpg.
        frame = next((paths.frames / f"{name}{ext}" for ext in FRAME_SUFFIXES if f"{name}{ext}" in frame_files), None)
        samples.append(Sample(name, label, transcripts.get(name), frame, (features[0], features[1], features[2]), line))
    return Test3Data(
        root=paths.root,
        samples=tuple(samples),
        annotation=paths.annotation,
        transcripts=paths.transcripts,
        transcript_column=column,
        feature_dirs=paths.feature_dirs,
        frames=paths.frames,
        source=paths.source,
        annotation_bytes=annotation,
    )


def prompt_sentence(sample: Sample) -> str:
    """The transcript as the original puts it in the prompt: the raw text, or "nan" when it is missing."""
    return "nan" if sample.transcript is None else sample.transcript


def gold_label(field: str) -> str:
    """The original's gold label: the label field lowercased, `.!"()*#:;~` made spaces, then its last word."""
    words = CAPTION_PUNCTUATION.sub(" ", field.lower()).split()
    return words[-1] if words else ""


def _read_both(paths: DataPaths) -> tuple[bytes, bytes]:
    """The annotation's and the transcripts' bytes, each a regular file within its limit; one UsageError naming
    both when both are not."""
    contents, problems = [], []
    for what, path, limit in (("Test3 annotation", paths.annotation, MAX_ANNOTATION_BYTES),
                              ("Test3 transcripts", paths.transcripts, MAX_TRANSCRIPTS_BYTES)):  # fmt: skip
        try:
            contents.append(read_checked(path, limit))
        except FileProblem as problem:
            problems.append(f"{what} {problem}")
            contents.append(b"")
    if problems:
        raise usage_error(f"Test3 data {paths.source}", problems)
    return contents[0], contents[1]


def _annotation_lines(data: bytes, annotation: Path) -> list[tuple[int, str, str]]:
    what = "Test3 annotation"
    text = decode_utf8(data, what, annotation)
    rows, problems = [], []
    for number, raw in enumerate(text_lines(text), start=1):
        if not raw.strip():
            continue
        fields = raw.strip().split(" ")
        if len(fields) < 3:
            problems.append(f"line {number}: expected 'name nframes label valence', found {quoted(raw.strip())}")
            continue
        rows.append((number, fields[0], gold_label(fields[2])))
    if problems:
        raise usage_error(f"{what} {annotation}", problems)
    return rows


def _transcripts(paths: DataPaths, data: bytes) -> tuple[str, dict[str, str | None]]:
    what = f"Test3 transcripts {paths.transcripts}"
    text = decode_utf8(data, "Test3 transcripts", paths.transcripts)
    _allow_long_fields()
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[list[str]] = []
    start = 1  # the line the next record begins on
    try:
        for row in reader:
            rows.append(row)
            start = reader.line_num + 1
    except csv.Error as error:
        lines = io.StringIO(text, newline="").readlines()  # as the reader counts them
        opened = _open_quote(lines[start - 1 :], start) if reader.line_num >= len(lines) else None
        problem = (
            f"line {start}: expected CSV, found a row that does not parse ({error})"
            if opened is None
            else f"line {opened}: expected a closing '\"' for the quoted field that opens on this line, found the "
            "end of the file"
        )
        raise usage_error(what, [problem]) from None
    header = rows[0] if rows else []
    wanted = (paths.transcript_column,) if paths.transcript_column else TRANSCRIPT_COLUMNS
    column = next((name for name in wanted if name in header), None)
    if "name" not in header or column is None:
        expected = f"columns 'name' and {' or '.join(repr(name) for name in wanted)}"
        raise usage_error(what, [f"line 1: expected {expected}, found columns {header}"])
    name_at, text_at = header.index("name"), header.index(column)
    sentences: dict[str, str | None] = {}
    for row in rows[1:]:
        if len(row) > name_at and row[name_at] not in sentences:  # the original takes the first matching row
            cell = row[text_at] if len(row) > text_at else ""
            sentences[row[name_at]] = None if cell in PANDAS_NA_STRINGS else cell
    return column, sentences


def _allow_long_fields() -> None:
    """Let the csv module read a field as long as a whole transcripts file. Its limit (131,072 characters by
    default) is process-wide, so it is only ever raised."""
    if csv.field_size_limit() < MAX_TRANSCRIPTS_BYTES:
        csv.field_size_limit(MAX_TRANSCRIPTS_BYTES)


def _open_quote(lines: list[str], start: int) -> int | None:
    """The line a quoted field opened on when `lines` (a record from line `start` to the end of the file, each
    with its line break) end inside it, else None. Scanned as the csv module reads: a quote opens a field only at
    its start, and '""' in a quoted field is a quote."""
    opened, state = start, "start"
    for number, line in enumerate(lines, start=start):
        for char in line:
            if state == "quoted":
                state = "quote" if char == '"' else "quoted"
            elif state == "quote":  # another quote is an escaped one; anything else follows the closed field
                state = "quoted" if char == '"' else "start" if char in ",\r\n" else "field"
            elif char == '"' and state == "start":
                opened, state = number, "quoted"
            else:
                state = "start" if char in ",\r\n" else "field"
    return opened if state == "quoted" else None


def _listing(folder: Path) -> frozenset[str]:
    try:
        return frozenset(os.listdir(folder))
    except OSError:
        return frozenset()


def _sample_file_digests(sample: Sample) -> list[bytes]:
    return [_file_digest(path) for path in (*sample.features, sample.frame)]


def _file_digest(path: Path | None) -> bytes:
    if path is None:
        return MISSING
    # hashlib.file_digest is Python 3.11+; the package supports 3.10, so the file is hashed in chunks. Only a
    # regular file within its reader's size limit is read (a FIFO would block, /dev/zero never ends, a 30 GB file
    # would take a minute to refuse); any other counts as missing, and the preflight says why.
    digest = hashlib.sha256()
    try:
        with open_checked(path, _size_limit(path)) as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except (FileProblem, OSError):
        return MISSING
    return digest.digest()


def _size_limit(path: Path) -> int:
    """The most bytes the file's reader takes: a feature, an image or a video."""
    suffix = path.suffix.lower()
    return MAX_FEATURE_BYTES if suffix == ".npy" else MAX_VIDEO_BYTES if suffix in VIDEO_SUFFIXES else MAX_IMAGE_BYTES


def _add(digest: hashlib._Hash, field: bytes) -> None:
    digest.update(len(field).to_bytes(8, "big"))
    digest.update(field)
