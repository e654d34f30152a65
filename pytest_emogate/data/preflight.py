"""The preflight: every Test3 sample checked before any model loads, every problem reported in one UsageError.

A 30-minute GPU job must not die at sample 700 on a missing file. For each sample: its name is a bare file name
and unique, its gold label is in the taxonomy, its transcript is present, its frame file exists and its first
frame decodes, and its three feature files exist, load without pickle and have the widths the checkpoint's
projections take. A data file that is not a regular file (a FIFO, a device) or is over its size limit is one
more problem of its sample, found before a byte of it is read. Each problem names the sample, the file, what was
expected and what was found.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pytest_emogate.data.errors import DataFileError
from pytest_emogate.data.features import SLOT_NAMES, load_vector
from pytest_emogate.data.image import decode_frame
from pytest_emogate.data.layout import FRAME_SUFFIXES
from pytest_emogate.data.test3 import IO_THREADS, Sample, Test3Data
from pytest_emogate.files import usage_error
from pytest_emogate.formats import clip, quoted

UNSAFE_NAME_PARTS = ("/", "\\", "..")


FeatureDims = tuple[int | None, int | None, int | None]


def preflight(data: Test3Data, labels: tuple[str, ...], feature_dims: FeatureDims) -> None:
    """Check every sample of `data` against the taxonomy `labels` and the checkpoint's `feature_dims`.

    `feature_dims` are the input widths of the Face, Video and Audio projections. Returns None when all is
    well; otherwise raises one pytest.UsageError listing the problems (the first 20 and a count).
    """
    problems = preflight_problems(data, labels, feature_dims)
    if problems:
        raise usage_error(f"Test3 data {data.source}", problems)


def preflight_problems(data: Test3Data, labels: tuple[str, ...], feature_dims: FeatureDims | None) -> list[str]:
    """The preflight's problems, for a caller that reports them with others. A width of None is not checked
    (the checkpoint could not be read); `feature_dims` None checks the sample table alone (names, labels,
    transcripts) and reads no file: the answers are cached, and only the labels still matter."""
    annotation = _shown(data, data.annotation)
    problems: list[str] = []
    if not data.samples:
        problems.append(f"{annotation}: expected at least one sample, found none")
    first_line: dict[str, int] = {}
    for sample in data.samples:
        where = f"sample {clip(sample.name)}: {annotation} line {sample.line}"
        if any(part in sample.name for part in UNSAFE_NAME_PARTS):
            problems.append(f"{where}: expected a bare file name (no '/', '\\' or '..'), found {quoted(sample.name)}")
        if sample.name in first_line:
            problems.append(f"{where}: expected a unique name, found a repeat of line {first_line[sample.name]}")
        first_line.setdefault(sample.name, sample.line)
        if sample.label not in labels:
            problems.append(f"{where}: expected a label in {', '.join(labels)}, found {quoted(sample.label)}")
        if sample.transcript is None:
            problems.append(
                f"sample {clip(sample.name)}: {_shown(data, data.transcripts)}: expected a {data.transcript_column!r} "
                "text for this name, found no row or an empty cell (the original would prompt with 'nan')"
            )
    if feature_dims is None:
        return problems
    dims = feature_dims
    safe = [sample for sample in data.samples if not any(part in sample.name for part in UNSAFE_NAME_PARTS)]
    with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
        for found in pool.map(lambda sample: _file_problems(data, sample, dims), safe):
            problems += found
    return problems


def _file_problems(data: Test3Data, sample: Sample, feature_dims: FeatureDims) -> list[str]:
    """The frame and feature problems of one sample; runs on a worker thread (decoding releases the GIL)."""
    problems = []
    if sample.frame is None:
        expected = _shown(data, data.frames / f"{sample.name}.{{{','.join(s[1:] for s in FRAME_SUFFIXES)}}}")
        problems.append(f"sample {clip(sample.name)}: {expected}: expected a video or image frame file, found no file")
    else:
        try:
            decode_frame(sample.frame)
        except DataFileError as error:
            problems.append(_file_problem(data, sample, error))
        except OSError as error:
            problems.append(f"sample {clip(sample.name)}: {_shown(data, sample.frame)}: {_unreadable(error)}")
    for slot, folder, path, dim in zip(SLOT_NAMES, data.feature_dirs, sample.features, feature_dims, strict=True):
        if path is None:
            shown = _shown(data, folder / f"{sample.name}.npy")
            problems.append(f"sample {clip(sample.name)}: {shown}: expected a {slot} feature file, found no file")
            continue
        try:
            load_vector(path, dim)
        except DataFileError as error:
            problems.append(_file_problem(data, sample, error))
        except OSError as error:
            problems.append(f"sample {clip(sample.name)}: {_shown(data, path)}: {_unreadable(error)}")
    return problems


def _file_problem(data: Test3Data, sample: Sample, error: DataFileError) -> str:
    return f"sample {clip(sample.name)}: {_shown(data, error.path)}: {error.detail}"


def _unreadable(error: OSError) -> str:
    return f"expected a readable file, found {error.strerror or type(error).__name__}"


def _shown(data: Test3Data, path: Path) -> str:
    """A path as the user can find it: relative to the data root when inside it (and always with '/')."""
    try:
        return path.relative_to(data.root).as_posix()
    except ValueError:
        return path.as_posix()
