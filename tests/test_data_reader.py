"""The Test3 reader: release layout and manifest, folder namings, frame fallback, image input, the tiny data set."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
from PIL import Image

from pytest_emogate.data import (
    Sample,
    image_tensor,
    load_test3,
    preflight,
    prompt_sentence,
    read_features,
    read_frame,
)
from pytest_emogate.data.errors import DataFileError
from pytest_emogate.data.features import load_vector, read_npy_header
from pytest_emogate.data.test3 import gold_label

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "fixtures" / "tiny" / "data"
LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
UPSTREAM = ("mae_340_UTT", "maeV_399_UTT", "HL-UTT")
FORK = ("mae_340_23_UTT", "maeVideo_399_23_UTT", "HL_23_UTT")
FORK_SEMI = ("mae_340_UTT_MER2023-SEMI", "maeV_399_UTT_MER2023-SEMI", "HL-UTT_MER2023-SEMI")
DIMS = (4, 3, 2)


def write_set(root: Path, rows: list[tuple[str, str, str]], folders: tuple[str, ...] = UPSTREAM) -> Path:
    """A small release-layout data set: one jpg frame and three small feature vectors per (name, label, text)."""
    for folder in (*folders, "test3"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "relative_test3_NCEV.txt").write_text("".join(f"{name} 125 {label} -10\n" for name, label, _ in rows))
    with (root / "transcription_en_all.csv").open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([("name", "sentence"), *((n, t) for n, _, t in rows)])
    for index, (name, _, _) in enumerate(rows):
        for folder, dim in zip(folders, DIMS, strict=True):
            np.save(root / folder / f"{name}.npy", np.arange(dim, dtype=np.float32) + index)
        Image.new("RGB", (6, 4), (10 * index, 100, 200)).save(root / "test3" / f"{name}.jpg")
    return root


def write_video(path: Path, colours: list[tuple[int, int, int]]) -> None:
    """An mp4 with one solid RGB frame per colour."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (16, 16))
    for colour in colours:
        writer.write(np.full((16, 16, 3), colour[::-1], dtype=np.uint8))
    writer.release()


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    """fixtures/make_tiny_data.py, imported from its file (fixtures/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_tiny_data", ROOT / "fixtures" / "make_tiny_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_release_layout_reads_samples_in_annotation_order(tmp_path: Path) -> None:
    root = write_set(tmp_path, [("s2", "sad", "Hello, world."), ("s1", "Happy", "Fine")])
    data = load_test3(root)
    assert data.root == data.source == root
    assert (data.annotation, data.transcripts) == (root / "relative_test3_NCEV.txt", root / "transcription_en_all.csv")
    assert (data.transcript_column, data.frames) == ("sentence", root / "test3")
    assert data.feature_dirs == tuple(root / folder for folder in UPSTREAM)
    assert data.samples == (
        Sample("s2", "sad", "Hello, world.", root / "test3/s2.jpg", tuple(root / f / "s2.npy" for f in UPSTREAM), 1),
        Sample("s1", "happy", "Fine", root / "test3/s1.jpg", tuple(root / f / "s1.npy" for f in UPSTREAM), 2),
    )


@pytest.mark.parametrize("folders", [UPSTREAM, FORK, FORK_SEMI, (FORK[0], UPSTREAM[1], FORK_SEMI[2])])
def test_every_feature_folder_naming_is_read_in_slot_order(tmp_path: Path, folders: tuple[str, ...]) -> None:
    data = load_test3(write_set(tmp_path, [("s1", "sad", "x")], folders))
    assert data.feature_dirs == tuple(tmp_path / folder for folder in folders)
    assert [np.load(path).shape for path in data.samples[0].features] == [(4,), (3,), (2,)]


def test_release_layout_problems_are_listed_together(tmp_path: Path) -> None:
    for folder in (UPSTREAM[0], FORK[0], FORK_SEMI[1]):
        (tmp_path / folder).mkdir()
    with pytest.raises(pytest.UsageError) as error:
        load_test3(tmp_path)
    assert str(error.value) == "\n".join(
        [
            f"Test3 data directory {tmp_path}: 4 problems",
            "  - no annotation file: expected relative_test3_NCEV.txt (a manifest can name another file)",
            "  - no transcript CSV: expected transcription_en_all.csv or transcription_all_new.csv",
            "  - Face features: expected exactly one folder of mae_340_UTT, mae_340_23_UTT, mae_340_UTT_MER2023-SEMI,"
            " found several: mae_340_UTT, mae_340_23_UTT (name one in a manifest)",
            "  - Audio features: expected exactly one folder of HL-UTT, HL_23_UTT, HL-UTT_MER2023-SEMI, found none",
        ]
    )


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(pytest.UsageError, match="does not exist: expected a directory in the release layout or a YAML"):
        load_test3(tmp_path / "nowhere")


def test_manifest_names_each_path_and_any_file_names(tmp_path: Path) -> None:
    write_set(tmp_path / "parts", [("s1", "worried", "one"), ("s2", "angry", "two")])
    (tmp_path / "parts" / "relative_test3_NCEV.txt").rename(tmp_path / "parts" / "my_labels.txt")
    manifest = tmp_path / "meta" / "data.yml"
    manifest.parent.mkdir()
    manifest.write_text(
        "root: ../parts\nannotation: my_labels.txt\ntranscripts: transcription_en_all.csv\n"
        "features: {face: HL-UTT, video: maeV_399_UTT, audio: mae_340_UTT}\nframes: test3\n"
    )
    data = load_test3(manifest)
    parts = tmp_path / "meta" / ".." / "parts"
    assert (data.source, data.root, data.annotation) == (manifest, parts, parts / "my_labels.txt")
    assert [sample.name for sample in data.samples] == ["s1", "s2"]
    assert data.samples[1].features[0] == parts / "HL-UTT" / "s2.npy"


def test_frames_may_lie_beside_the_annotation_and_a_manifest_may_pick_the_column(tmp_path: Path) -> None:
    root = write_set(tmp_path, [("s1", "sad", "x")])
    (root / "test3" / "s1.jpg").rename(root / "s1.jpg")
    (root / "test3").rmdir()
    (root / "transcription_en_all.csv").write_text("name,sentence,sentence_en\ns1,chinese text,english text\n")
    sample = load_test3(root).samples[0]
    assert (sample.frame, sample.transcript) == (root / "s1.jpg", "chinese text")
    manifest = root / "manifest.yaml"
    manifest.write_text(
        "annotation: relative_test3_NCEV.txt\ntranscripts: transcription_en_all.csv\ntranscript_column: sentence_en\n"
        "features: {face: mae_340_UTT, video: maeV_399_UTT, audio: HL-UTT}\nframes: .\n"
    )
    data = load_test3(manifest)
    assert (data.transcript_column, data.samples[0].transcript) == ("sentence_en", "english text")


def test_the_tiny_manifest_loads_the_same_samples_as_its_directory() -> None:
    by_layout, by_manifest = load_test3(TINY), load_test3(TINY / "manifest.yaml")
    assert by_manifest.samples == by_layout.samples
    assert by_manifest.fingerprint() == by_layout.fingerprint()


def manifest_error(tmp_path: Path, text: str) -> str:
    """The UsageError text for a manifest with `text`, with the tmp_path replaced by `{tmp}`."""
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(text)
    with pytest.raises(pytest.UsageError) as error:
        load_test3(manifest)
    return str(error.value).replace(str(tmp_path), "{tmp}")


def test_an_unreadable_manifest_is_a_usage_error(tmp_path: Path) -> None:
    assert manifest_error(tmp_path, "annotation: [unclosed").startswith(
        "Test3 data manifest {tmp}/manifest.yaml: 1 problem\n  - not valid YAML: while parsing a flow"
    )
    assert manifest_error(tmp_path, "- a list") == (
        "Test3 data manifest {tmp}/manifest.yaml: 1 problem\n  - expected a mapping of keys root, annotation, "
        "transcripts, transcript_column, features, frames, found list ['a list']"
    )


def test_manifest_keys_are_checked_by_name(tmp_path: Path) -> None:
    text = (
        "annotation: a.txt\ntranscripts: t.csv\nframes: test3\nfeature: x\n"
        "features: {face: f, video: v, sound: a}\ntranscript_column: 3\n"
    )
    assert manifest_error(tmp_path, text).splitlines() == [
        "Test3 data manifest {tmp}/manifest.yaml: 9 problems",
        "  - unknown key 'feature': expected one of root, annotation, transcripts, transcript_column, features, frames",
        "  - key 'transcript_column': expected a column name, found int 3",
        "  - key 'annotation': expected an existing file, found no {tmp}/a.txt",
        "  - key 'transcripts': expected an existing file, found no {tmp}/t.csv",
        "  - key 'frames': expected an existing folder, found no {tmp}/test3",
        "  - unknown key 'features.sound': expected one of face, video, audio",
        "  - key 'features.face': expected an existing folder, found no {tmp}/f",
        "  - key 'features.video': expected an existing folder, found no {tmp}/v",
        "  - missing key 'features.audio'",
    ]
    assert manifest_error(tmp_path, "root: 7\nannotation: {a: 1}\n").splitlines() == [
        "Test3 data manifest {tmp}/manifest.yaml: 5 problems",
        "  - missing key 'transcripts'",
        "  - missing key 'features'",
        "  - missing key 'frames'",
        "  - key 'root': expected a path, found int 7",
        "  - key 'annotation': expected a path, found dict {'a': 1}",
    ]


def test_frame_fallback_is_mp4_then_avi_then_jpg(tmp_path: Path) -> None:
    root = write_set(tmp_path, [("a", "sad", "x"), ("b", "sad", "x"), ("c", "sad", "x"), ("d", "sad", "x")])
    write_video(root / "test3" / "a.mp4", [(250, 0, 0), (0, 0, 250)])
    (root / "test3" / "a.avi").write_bytes(b"never read")
    writer = cv2.VideoWriter(str(root / "test3" / "b.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (16, 16))
    writer.write(np.full((16, 16, 3), (0, 250, 0), dtype=np.uint8))  # BGR: green
    writer.release()
    (root / "test3" / "d.jpg").unlink()
    a, b, c, d = load_test3(root).samples
    frames = root / "test3"
    assert [a.frame, b.frame, c.frame, d.frame] == [frames / "a.mp4", frames / "b.avi", frames / "c.jpg", None]
    # The first frame, converted from OpenCV's BGR: red for a (its second frame is blue), green for b.
    colours = [np.asarray(read_frame(sample)).mean(axis=(0, 1)).round(-1).tolist() for sample in (a, b)]
    assert colours == [[250, 0, 0], [0, 250, 0]]
    assert read_frame(c).mode == "RGB" and read_frame(c).size == (6, 4)
    with pytest.raises(FileNotFoundError, match=re.escape("sample d: no .mp4/.avi/.jpg frame file")):
        read_frame(d)


def test_image_tensor_matches_a_hand_computed_pixel() -> None:
    image = Image.new("RGB", (3, 5), (255, 0, 128))
    tensor = image_tensor(image, 4)  # bicubic of a constant image is that constant; the aspect ratio is dropped
    assert tensor.shape == (3, 4, 4) and tensor.dtype == np.float32
    expected = [(1 - 0.48145466) / 0.26862954, (0 - 0.4578275) / 0.26130258, (128 / 255 - 0.40821073) / 0.27577711]
    np.testing.assert_allclose(tensor[:, 2, 1], expected, rtol=1e-6)
    assert (tensor == tensor[:, :1, :1]).all()


def test_image_tensor_resizes_with_pil_bicubic() -> None:
    pixels = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3) * 10
    image = Image.fromarray(pixels)
    resized = np.asarray(image.resize((3, 3), Image.BICUBIC), dtype=np.float32) / 255
    mean, std = np.float32([0.48145466, 0.4578275, 0.40821073]), np.float32([0.26862954, 0.26130258, 0.27577711])
    # ToTensor then Normalize, in float32 as torchvision computes them: the same bits, not just close.
    assert np.array_equal(image_tensor(image, 3), ((resized - mean) / std).transpose(2, 0, 1))


def test_transcripts_are_read_as_the_original_reads_them(tmp_path: Path) -> None:
    root = write_set(tmp_path, [(name, "sad", "-") for name in ("a", "b", "c", "d", "e")])
    (root / "transcription_en_all.csv").write_text(
        'id,name,sentence_en,sentence\n1,a,english,"Well, yes."\n2,b,x,NA\n3,c,x,\n4,a,second row,ignored\n'
    )
    a, b, c, d, _ = load_test3(root).samples
    assert [s.transcript for s in (a, b, c, d)] == ["Well, yes.", None, None, None]
    assert [prompt_sentence(s) for s in (a, b)] == ["Well, yes.", "nan"]
    (root / "transcription_en_all.csv").unlink()
    (root / "transcription_all_new.csv").write_text("name,sentence_en\na,from sentence_en\n")
    data = load_test3(root)
    assert (data.transcript_column, data.samples[0].transcript) == ("sentence_en", "from sentence_en")


def test_a_transcript_csv_without_the_columns_is_a_usage_error(tmp_path: Path) -> None:
    root = write_set(tmp_path, [("a", "sad", "x")])
    (root / "transcription_en_all.csv").write_text("file,text\na,x\n")
    with pytest.raises(pytest.UsageError) as error:
        load_test3(root)
    assert str(error.value) == (
        f"Test3 transcripts {root / 'transcription_en_all.csv'}: 1 problem\n"
        "  - line 1: expected columns 'name' and 'sentence' or 'sentence_en', found columns ['file', 'text']"
    )


def test_annotation_lines_and_gold_labels(tmp_path: Path) -> None:
    root = write_set(tmp_path, [("a", "sad", "x")])
    (root / "relative_test3_NCEV.txt").write_text("a 125 Sad. -10\n\nb 12\nc\n")
    with pytest.raises(pytest.UsageError) as error:
        load_test3(root)
    assert str(error.value).splitlines()[1:] == [
        "  - line 3: expected 'name nframes label valence', found 'b 12'",
        "  - line 4: expected 'name nframes label valence', found 'c'",
    ]
    assert [gold_label(field) for field in ("Sad.", "(happy)", "WORRIED!", "~")] == ["sad", "happy", "worried", ""]


def test_read_features_stacks_vectors_of_either_shape_as_float32(tmp_path: Path) -> None:
    paths = [tmp_path / f"{slot}.npy" for slot in "fva"]
    np.save(paths[0], np.array([1, 2], dtype=np.float32))
    np.save(paths[1], np.array([[3, 4]], dtype=np.float16))
    np.save(paths[2], np.array([5, 6], dtype=np.float32))
    sample = Sample("s", "sad", "x", None, (paths[0], paths[1], paths[2]), 1)
    features = read_features(sample)
    assert features.dtype == np.float32 and features.tolist() == [[1, 2], [3, 4], [5, 6]]
    np.save(paths[2], np.array([5, 6, 7], dtype=np.float32))
    with pytest.raises(ValueError, match="expected three features of one width, found Face 2, Video 2, Audio 3"):
        read_features(sample)


def npy_bytes(array: np.ndarray, version: tuple[int, int] = (1, 0)) -> bytes:
    """The bytes numpy writes for `array` in .npy format `version`."""
    handle = io.BytesIO()
    np.lib.format.write_array(handle, array, version=version)
    return handle.getvalue()


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_headers_read_as_numpy_reads_them(version: tuple[int, int]) -> None:
    arrays = [
        np.zeros(5, "<f4"), np.zeros((1, 7), "<f2"), np.zeros((), "<f8"), np.zeros((2, 3, 4), ">i4"),
        np.zeros(3, "|u1"), np.zeros(3, "<M8[ns]"), np.zeros(2, "U3"), np.asfortranarray(np.zeros((2, 3))),
    ]  # fmt: skip
    for array in arrays:
        handle = io.BytesIO(npy_bytes(array, version))
        np.lib.format.read_magic(handle)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(handle)
        payload = handle.tell()
        handle.seek(0)
        assert read_npy_header(handle) == (shape, dtype) and handle.tell() == payload, array.dtype


def test_npy_headers_numpy_refuses_stay_refused() -> None:
    whole = npy_bytes(np.zeros(4, "<f4"))
    for broken in (whole[:20], whole.replace(b"'shape': (4,)", b"'shape': (4)  "), whole.replace(b"}", b"{")):
        with pytest.raises(ValueError):
            read_npy_header(io.BytesIO(broken))


def test_a_header_that_does_not_parse_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "s01.npy"
    broken.write_bytes(
        npy_bytes(np.zeros(4, "<f4")).replace(b"}", b"{")
    )  # numpy's tokenizer raises, not its ValueError
    with pytest.raises(DataFileError) as caught:
        load_vector(broken)
    assert str(caught.value).startswith(f"{broken}: expected a readable .npy file, found a header that does not parse")


def test_fingerprint_changes_with_any_input(tmp_path: Path) -> None:
    root = write_set(tmp_path, [("a", "sad", "x"), ("b", "happy", "y")])
    before = load_test3(root).fingerprint()
    assert load_test3(root).fingerprint() == before and len(before) == 64
    np.save(root / "HL-UTT" / "b.npy", np.array([0, 2], dtype=np.float32))
    after_feature = load_test3(root).fingerprint()
    (root / "transcription_en_all.csv").write_text("name,sentence\na,x\nb,z\n")
    assert len({before, after_feature, load_test3(root).fingerprint()}) == 3


def test_the_tiny_data_set_has_test3s_shape(generator: ModuleType) -> None:
    data = load_test3(TINY)
    assert Counter(sample.label for sample in data.samples) == Counter(
        {"angry": 183, "happy": 169, "neutral": 166, "sad": 257, "surprise": 14, "worried": 45}
    )
    assert [sample.name for sample in data.samples[:2]] == ["samplenew_00000001", "samplenew_00000002"]
    videos = [sample for sample in data.samples if sample.frame is not None and sample.frame.suffix == ".mp4"]
    assert len(videos) == generator.VIDEO_SAMPLES
    assert all(read_frame(sample).size == (28, 28) for sample in videos)
    assert read_features(data.samples[0]).shape == (3, 32)
    preflight(data, LABELS, generator.FEATURE_DIMS)
    assert sum(path.stat().st_size for path in TINY.rglob("*")) < 3_000_000


def test_the_tiny_data_set_equals_a_regeneration(generator: ModuleType) -> None:
    rendered = generator.render_release_layout(generator.make_samples())
    committed = {path.relative_to(TINY).as_posix(): path for path in TINY.rglob("*") if path.is_file()}
    assert sorted(committed) == sorted(rendered)
    assert [name for name, path in committed.items() if path.read_bytes() != rendered[name]] == []


def test_the_generator_writes_what_it_renders(generator: ModuleType, tmp_path: Path) -> None:
    counts = {"neutral": 3, "angry": 2, "happy": 2, "sad": 2, "worried": 1, "surprise": 1}
    samples = generator.make_samples(seed=5, counts=counts, first_id=9001)
    written = generator.write_release_layout(samples, tmp_path / "small")
    rendered = generator.render_release_layout(samples)
    assert {path.relative_to(tmp_path / "small").as_posix(): _sha256(path) for path in written} == {
        name: hashlib.sha256(content).hexdigest() for name, content in rendered.items()
    }
    data = load_test3(tmp_path / "small")
    assert [sample.name for sample in data.samples][:1] == [samples[0].name] == ["samplenew_00009001"]
    assert Counter(sample.label for sample in data.samples) == Counter(counts)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
