"""The preflight: every kind of missing or malformed Test3 file, reported at once with exact messages."""

from __future__ import annotations

import csv
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_emogate.data import load_test3, preflight

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
FOLDERS = ("mae_340_UTT", "maeV_399_UTT", "HL-UTT")
DIMS = (4, 3, 2)


def write_set(root: Path, names: list[str]) -> Path:
    """A small, valid release-layout data set: label sad, a transcript, a jpg and three vectors per name."""
    for folder in (*FOLDERS, "test3"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "relative_test3_NCEV.txt").write_text("".join(f"{name} 125 sad -10\n" for name in names))
    with (root / "transcription_en_all.csv").open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([("name", "sentence"), *((name, "Hi.") for name in names)])
    for name in names:
        for folder, dim in zip(FOLDERS, DIMS, strict=True):
            np.save(root / folder / f"{name}.npy", np.ones(dim, dtype=np.float32))
        Image.new("RGB", (4, 4), (200, 100, 50)).save(root / "test3" / f"{name}.jpg")
    return root


def test_a_valid_data_set_passes(tmp_path: Path) -> None:
    data = load_test3(write_set(tmp_path, ["a", "b"]))
    assert preflight(data, LABELS, DIMS) is None


def test_every_kind_of_problem_is_reported_in_one_error(tmp_path: Path) -> None:
    names = [f"s{index:02d}" for index in range(1, 16)]
    root = write_set(tmp_path, names)
    annotation = root / "relative_test3_NCEV.txt"
    lines = annotation.read_text().splitlines()
    lines[8] = "s09 125 doubt -10"
    annotation.write_text("\n".join([*lines, "../s16 125 sad -10", "s01 80 sad -10", "a\\b 1 sad -10"]) + "\n")
    transcripts = root / "transcription_en_all.csv"
    transcripts.write_text(transcripts.read_text().replace("s10,Hi.\n", "s10,\n"))
    (root / "test3" / "s02.jpg").unlink()
    (root / "test3" / "s03.jpg").unlink()
    (root / "test3" / "s03.mp4").write_bytes(b"not a video at all")
    (root / "test3" / "s04.jpg").write_bytes(b"not an image")
    (root / "mae_340_UTT" / "s05.npy").unlink()
    np.save(root / "maeV_399_UTT" / "s06.npy", np.ones(5, dtype=np.float32))
    np.save(root / "HL-UTT" / "s07.npy", np.array([{"code": "runs"}], dtype=object), allow_pickle=True)
    (root / "mae_340_UTT" / "s08.npy").write_bytes(pickle.dumps([1.0, 2.0, 3.0, 4.0]))
    np.save(root / "maeV_399_UTT" / "s12.npy", np.ones(3, dtype=np.float64))
    np.save(root / "mae_340_UTT" / "s13.npy", np.ones((2, 4), dtype=np.float32))
    truncated = root / "HL-UTT" / "s14.npy"
    truncated.write_bytes(truncated.read_bytes()[:-3])
    np.save(root / "HL-UTT" / "s15.npy", np.array([1.0, np.nan], dtype=np.float32))

    with pytest.raises(pytest.UsageError) as error:
        preflight(load_test3(root), LABELS, DIMS)
    assert str(error.value).splitlines() == [
        f"Test3 data {root}: 18 problems",
        "  - sample s09: relative_test3_NCEV.txt line 9: expected a label in neutral, angry, happy, sad, worried,"
        " surprise, found 'doubt'",
        "  - sample s10: transcription_en_all.csv: expected a 'sentence' text for this name, found no row or an"
        " empty cell (the original would prompt with 'nan')",
        "  - sample ../s16: relative_test3_NCEV.txt line 16: expected a bare file name (no '/', '\\' or '..'),"
        " found '../s16'",
        "  - sample ../s16: transcription_en_all.csv: expected a 'sentence' text for this name, found no row or an"
        " empty cell (the original would prompt with 'nan')",
        "  - sample s01: relative_test3_NCEV.txt line 17: expected a unique name, found a repeat of line 1",
        "  - sample a\\b: relative_test3_NCEV.txt line 18: expected a bare file name (no '/', '\\' or '..'),"
        " found 'a\\\\b'",
        "  - sample a\\b: transcription_en_all.csv: expected a 'sentence' text for this name, found no row or an"
        " empty cell (the original would prompt with 'nan')",
        "  - sample s02: test3/s02.{mp4,avi,jpg}: expected a video or image frame file, found no file",
        "  - sample s03: test3/s03.mp4: expected a video whose first frame decodes, found no decodable frame",
        "  - sample s04: test3/s04.jpg: expected a decodable image, found a file PIL cannot identify as an image",
        "  - sample s05: mae_340_UTT/s05.npy: expected a Face feature file, found no file",
        "  - sample s06: maeV_399_UTT/s06.npy: expected shape (3,) or (1, 3), found shape (5,)",
        "  - sample s07: HL-UTT/s07.npy: expected a plain .npy array (allow_pickle=False), found an object array"
        " that needs pickle",
        "  - sample s08: mae_340_UTT/s08.npy: expected a plain .npy array (allow_pickle=False), found a pickle",
        "  - sample s12: maeV_399_UTT/s12.npy: expected dtype float32 or float16, found dtype float64",
        "  - sample s13: mae_340_UTT/s13.npy: expected shape (4,) or (1, 4), found shape (2, 4)",
        "  - sample s14: HL-UTT/s14.npy: expected a complete .npy file, found 5 bytes of data where the header"
        " promises 8",
        "  - sample s15: HL-UTT/s15.npy: expected finite values, found 1 NaN or infinite value",
    ]


def test_an_empty_annotation_is_a_problem(tmp_path: Path) -> None:
    root = write_set(tmp_path, [])
    with pytest.raises(pytest.UsageError) as error:
        preflight(load_test3(root), LABELS, DIMS)
    assert str(error.value) == (
        f"Test3 data {root}: 1 problem\n  - relative_test3_NCEV.txt: expected at least one sample, found none"
    )


def test_the_tiny_data_set_passes_fast_and_a_wrong_checkpoint_is_named_per_file() -> None:
    data = load_test3(ROOT / "fixtures" / "tiny" / "data")
    started = time.perf_counter()
    preflight(data, LABELS, (32, 32, 32))
    assert time.perf_counter() - started < 5.0  # 834 samples; about a second on two slow cores
    with pytest.raises(pytest.UsageError) as error:
        preflight(data, LABELS, (1024, 1024, 32))
    lines = str(error.value).splitlines()
    assert lines[0] == f"Test3 data {data.source}: 1668 problems"
    assert lines[1:3] == [
        "  - sample samplenew_00000001: mae_340_UTT/samplenew_00000001.npy: expected shape (1024,) or (1, 1024),"
        " found shape (32,)",
        "  - sample samplenew_00000001: maeV_399_UTT/samplenew_00000001.npy: expected shape (1024,) or (1, 1024),"
        " found shape (32,)",
    ]
    assert len(lines) == 22 and lines[-1] == "  ... and 1648 more"
