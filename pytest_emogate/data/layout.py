"""Where the Test3 files are: the upstream release layout of a directory, or a YAML manifest naming each path.

Release layout (one directory; names as the upstream repository and the fork that produced the published run
use them):

    relative_test3_NCEV.txt                     annotation, `name nframes label valence` per line
    transcription_en_all.csv                    transcripts (else transcription_all_new.csv)
    mae_340_UTT/{name}.npy                      Face features   (fork: mae_340_23_UTT, mae_340_UTT_MER2023-SEMI)
    maeV_399_UTT/{name}.npy                     Video features  (fork: maeVideo_399_23_UTT, maeV_399_UTT_MER2023-SEMI)
    HL-UTT/{name}.npy                           Audio features  (fork: HL_23_UTT, HL-UTT_MER2023-SEMI)
    test3/{name}.mp4 | .avi | .jpg              frames (without a test3/ folder: the directory itself)

Manifest (YAML; relative paths are resolved against `root`, itself relative to the manifest's folder):

    root: .                                     optional, default: the manifest's folder
    annotation: relative_test3_NCEV.txt
    transcripts: transcription_en_all.csv
    transcript_column: sentence                 optional, default: `sentence`, else `sentence_en`
    features: {face: mae_340_UTT, video: maeV_399_UTT, audio: HL-UTT}
    frames: test3

The manifest is read as a regular file of at most 4 MiB, as safe YAML (a duplicate key, an alias bomb or deep
nesting is refused, naming its line). The annotation and transcript files it names, or the release layout holds,
must be regular files: a FIFO or a link to a device is named here, with every other problem of the layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pytest_emogate.files import FileProblem, MiB, check_regular, read_text_bounded, usage_error
from pytest_emogate.safe_yaml import load_yaml

FRAME_SUFFIXES = (".mp4", ".avi", ".jpg")
VIDEO_SUFFIXES = (".mp4", ".avi")
MAX_FEATURE_BYTES = 64 * MiB  # a feature vector is a few KB
MAX_IMAGE_BYTES = 128 * MiB  # room for a frame of the largest size allowed stored uncompressed (100 MB)
MAX_VIDEO_BYTES = 4096 * MiB  # a Test3 clip is a few MB; the fingerprint reads every byte of it
"""The most bytes each kind of sample file may have: its reader and the data fingerprint refuse larger ones."""
"""A sample's frame file: its video, or one extracted frame."""

ANNOTATION_NAME = "relative_test3_NCEV.txt"
TRANSCRIPT_NAMES = ("transcription_en_all.csv", "transcription_all_new.csv")
FRAMES_FOLDER = "test3"
SLOTS = ("face", "video", "audio")
# Per slot, in the order Face, Video, Audio: the upstream name, the fork's name, the fork's MER2023-SEMI name.
FEATURE_FOLDERS = (
    ("mae_340_UTT", "mae_340_23_UTT", "mae_340_UTT_MER2023-SEMI"),
    ("maeV_399_UTT", "maeVideo_399_23_UTT", "maeV_399_UTT_MER2023-SEMI"),
    ("HL-UTT", "HL_23_UTT", "HL-UTT_MER2023-SEMI"),
)
MANIFEST_KEYS = ("root", "annotation", "transcripts", "transcript_column", "features", "frames")
MANIFEST_REQUIRED = ("annotation", "transcripts", "features", "frames")
MAX_MANIFEST_BYTES = 4 * MiB


@dataclass(frozen=True)
class DataPaths:
    """The resolved locations of every part of the data set; `source` is what the user named."""

    source: Path
    root: Path
    annotation: Path
    transcripts: Path
    transcript_column: str | None
    feature_dirs: tuple[Path, Path, Path]
    frames: Path


def locate(path: Path) -> DataPaths:
    """Resolve `--emogate-data`: a directory in the release layout, or any other file as a YAML manifest."""
    if path.is_dir():
        return _release_layout(path)
    if os.path.lexists(path):  # a FIFO or a broken link too: the manifest's reading names what it is
        return _manifest(path)
    raise usage_error(
        f"Test3 data {path}", ["does not exist: expected a directory in the release layout or a YAML manifest"]
    )


def _release_layout(root: Path) -> DataPaths:
    problems: list[str] = []
    annotation = root / ANNOTATION_NAME
    if not os.path.lexists(annotation):
        problems.append(f"no annotation file: expected {ANNOTATION_NAME} (a manifest can name another file)")
    else:
        problems += _irregular(annotation, f"annotation {ANNOTATION_NAME}: ")
    # The first name that is there is the one read: a FIFO under the first name is refused, not passed over.
    present = [root / name for name in TRANSCRIPT_NAMES if os.path.lexists(root / name)]
    transcripts = present[0] if present else root / TRANSCRIPT_NAMES[0]
    if not present:
        problems.append(f"no transcript CSV: expected {' or '.join(TRANSCRIPT_NAMES)}")
    else:
        problems += _irregular(transcripts, f"transcripts {transcripts.name}: ")
    feature_dirs = []
    for slot, candidates in zip(SLOTS, FEATURE_FOLDERS, strict=True):
        found = [root / name for name in candidates if (root / name).is_dir()]
        if len(found) != 1:
            what = "none" if not found else "several: " + ", ".join(folder.name for folder in found)
            problems.append(
                f"{slot.capitalize()} features: expected exactly one folder of {', '.join(candidates)}, found {what}"
                + (" (name one in a manifest)" if found else "")
            )
        feature_dirs.append(found[0] if found else root / candidates[0])
    if problems:
        raise usage_error(f"Test3 data directory {root}", problems)
    # The upstream code reads videos from a folder of its own; a flat directory holding them works too.
    frames = root / FRAMES_FOLDER if (root / FRAMES_FOLDER).is_dir() else root
    return DataPaths(root, root, annotation, transcripts, None, _three(feature_dirs), frames)


def _manifest(path: Path) -> DataPaths:
    what = f"Test3 data manifest {path}"
    content = load_yaml(read_text_bounded(path, "Test3 data manifest", MAX_MANIFEST_BYTES), "Test3 data manifest", path)
    if not isinstance(content, dict):
        raise usage_error(what, [f"expected a mapping of keys {', '.join(MANIFEST_KEYS)}, found {_kind(content)}"])
    known = ", ".join(MANIFEST_KEYS)
    problems = [f"unknown key {key!r}: expected one of {known}" for key in content if key not in MANIFEST_KEYS]
    problems += [f"missing key {key!r}" for key in MANIFEST_REQUIRED if key not in content]
    root = path.parent / (_string(content, "root", problems, default=".") or ".")
    if not root.is_dir():
        problems.append(f"key 'root': expected an existing folder, found no {root}")
    column = content.get("transcript_column")
    if column is not None and not isinstance(column, str):
        problems.append(f"key 'transcript_column': expected a column name, found {_kind(column)}")
        column = None
    annotation = _existing(root, content, "annotation", problems, folder=False)
    transcripts = _existing(root, content, "transcripts", problems, folder=False)
    frames = _existing(root, content, "frames", problems, folder=True)
    features = content.get("features", {})
    feature_dirs = [root] * 3
    if not isinstance(features, dict):
        problems.append(f"key 'features': expected a mapping with keys {', '.join(SLOTS)}, found {_kind(features)}")
    else:
        problems += [
            f"unknown key 'features.{key}': expected one of {', '.join(SLOTS)}" for key in features if key not in SLOTS
        ]
        for index, slot in enumerate(SLOTS):
            if slot not in features and "features" in content:
                problems.append(f"missing key 'features.{slot}'")
            elif slot in features:
                feature_dirs[index] = _existing(root, features, slot, problems, folder=True, prefix="features.")
    if problems:
        raise usage_error(what, problems)
    return DataPaths(path, root, annotation, transcripts, column, _three(feature_dirs), frames)


def _existing(
    root: Path, table: dict[object, object], key: str, problems: list[str], *, folder: bool, prefix: str = ""
) -> Path:
    """The path under `key`, relative to `root`; a problem names the key when it is not an existing path."""
    value = _string(table, key, problems, default=None, prefix=prefix)
    if value is None:
        return root
    resolved = root / value
    if folder and not resolved.is_dir():
        problems.append(f"key '{prefix}{key}': expected an existing folder, found no {resolved}")
    elif not folder and not os.path.lexists(resolved):
        problems.append(f"key '{prefix}{key}': expected an existing file, found no {resolved}")
    elif not folder:
        problems += _irregular(resolved, f"key '{prefix}{key}': {resolved} ")
    return resolved


def _irregular(path: Path, prefix: str) -> list[str]:
    """A problem starting with `prefix` when `path` is not a regular file (a FIFO, a device, a broken link)."""
    try:
        check_regular(path)
    except FileProblem as problem:
        return [f"{prefix}{problem.found}"]
    return []


def _string(
    table: dict[object, object], key: str, problems: list[str], *, default: str | None, prefix: str = ""
) -> str | None:
    value = table.get(key, default)
    if isinstance(value, str) or (value is None and key not in table):
        return value
    problems.append(f"key '{prefix}{key}': expected a path, found {_kind(value)}")
    return default


def _three(paths: list[Path]) -> tuple[Path, Path, Path]:
    return (paths[0], paths[1], paths[2])


def _kind(value: object) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"
