"""A sample's frame and the ViT input made from it, exactly as the original evaluation builds them (spec §3).

The frame is the first decoded frame of `{name}.mp4`, else `{name}.avi` (OpenCV, BGR converted to RGB), else
the pre-extracted `{name}.jpg` (PIL). The ViT input is torchvision's Resize((size, size), BICUBIC) on the PIL
image, ToTensor and Normalize with the CLIP mean and std, computed here with PIL and numpy in float32 with the
same operations in the same order, so no torchvision is needed. After the resize each output value depends only
on its channel and its uint8 pixel, so the float32 arithmetic is done once for the 3 x 256 possible inputs and
looked up per pixel: bit-identical to computing it per pixel (a test checks), and about 3x cheaper.

A frame file must be a regular file (a FIFO would block the decoder, `/dev/zero` never ends), checked before
OpenCV or PIL opens it, and an image at most 128 MiB. A frame may have at most MAX_FRAME_PIXELS pixels, judged
by the size its header declares before a pixel decodes: a PNG or JPEG that declares 30000 x 30000 pixels is
refused as itself, not as PIL's DecompressionBombError (nor its warning, an error under `-W error`). PIL's
process-wide MAX_IMAGE_PIXELS is left as it is.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile
from PIL.PngImagePlugin import PngImageFile

from pytest_emogate.data.errors import DataFileError, UnusableDataFile
from pytest_emogate.data.layout import FRAME_SUFFIXES, MAX_IMAGE_BYTES, MAX_VIDEO_BYTES, VIDEO_SUFFIXES
from pytest_emogate.files import FileProblem, check_regular, open_checked, size_text

if TYPE_CHECKING:
    from pytest_emogate.data.test3 import Sample

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MAX_FRAME_PIXELS = 7680 * 4320
"""8K UHD, the largest frame of the common video formats; below PIL's own limits (a warning past 89 MP, an error
past 179 MP), so a frame is refused here, by the size its header declares, before PIL judges it."""
FRAME_LIMIT = f"a frame of at most {MAX_FRAME_PIXELS:,} pixels (7680 x 4320)"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def read_frame(sample: Sample) -> Image.Image:
    """The sample's RGB frame: the first frame of its video, or its jpg. Raise FileNotFoundError or DataFileError."""
    if sample.frame is None:
        raise FileNotFoundError(f"sample {sample.name}: no {'/'.join(FRAME_SUFFIXES)} frame file")
    return decode_frame(sample.frame)


def decode_frame(path: Path) -> Image.Image:
    """Decode one frame file into an RGB image; raise DataFileError when nothing decodes (UnusableDataFile when
    the file is not a regular file of a sane size)."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _video_frame(path)
    try:
        handle = open_checked(path, MAX_IMAGE_BYTES)
    except FileProblem as problem:
        raise UnusableDataFile(problem) from None
    with handle:
        _check_pixels(path, _declared_size(handle), "an image")
        try:
            # Not `with Image.open(handle) as image`: PIL types __enter__ as typing.Self, which Python 3.10 lacks,
            # so under the 3.10 target the bound name would be Any; the opened file keeps its ImageFile type.
            image = Image.open(handle)
        except UnidentifiedImageError:
            # PIL's own message names the handle; the report names the file already.
            raise DataFileError(path, "a decodable image", "a file PIL cannot identify as an image") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            found = f"an image PIL refuses as a decompression bomb ({_one_line(error)})"
            raise DataFileError(path, FRAME_LIMIT, found) from None
        except (OSError, SyntaxError, ValueError) as error:
            raise DataFileError(path, "a decodable image", f"a broken image ({_one_line(error)})") from None
        with image:
            _check_pixels(path, image.size, "an image")
            try:
                return image.convert("RGB")
            except (OSError, SyntaxError, ValueError) as error:
                raise DataFileError(path, "a decodable image", f"a broken image ({_one_line(error)})") from None


def _video_frame(path: Path) -> Image.Image:
    """The first frame of a video, once the file is known to be a regular one of frames no larger than the limit."""
    try:
        found = check_regular(path)
        if found.st_size > MAX_VIDEO_BYTES:
            raise FileProblem(path, f"is {size_text(found.st_size)}; the limit is {size_text(MAX_VIDEO_BYTES)}")
    except FileProblem as problem:
        raise UnusableDataFile(problem) from None
    # cv2 is only needed for videos: a data set of jpg frames runs without it.
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if capture.isOpened():  # the container's header gives the frame size before a frame decodes
            size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            _check_pixels(path, size, "a video")
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok or frame is None:
        raise DataFileError(path, "a video whose first frame decodes", "no decodable frame")
    rgb: np.ndarray = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return Image.fromarray(rgb).convert("RGB")


def _declared_size(handle: IO[bytes]) -> tuple[int, int] | None:
    """The size a PNG or JPEG header declares, read with PIL's own parser but without Image.open's check against
    PIL's global limit (a warning, or an error, before this module could name the size); None for another format
    or a header that does not parse, which Image.open then judges. The handle is left at the start."""
    start = handle.read(len(PNG_MAGIC))
    handle.seek(0)
    reader = PngImageFile if start == PNG_MAGIC else JpegImageFile if start.startswith(JPEG_MAGIC) else None
    size = None
    if reader is not None:
        try:
            size = reader(handle).size
        except (OSError, SyntaxError, ValueError):
            size = None
        handle.seek(0)
    return size


def _check_pixels(path: Path, size: tuple[int, int] | None, what: str) -> None:
    if size is not None and size[0] * size[1] > MAX_FRAME_PIXELS:
        raise DataFileError(path, FRAME_LIMIT, f"{what} of {size[0]} x {size[1]} pixels")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def image_tensor(image: Image.Image, size: int) -> np.ndarray:
    """The ViT input for `image`: float32 [3, size, size], bicubic-resized ignoring aspect, CLIP-normalized."""
    return normalize_planes(resized_planes(image, size))


def resized_pixels(image: Image.Image, size: int) -> np.ndarray:
    """The resize half of `image_tensor`: uint8 [size, size, 3], as PIL lays the pixels out."""
    return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


def resized_planes(image: Image.Image, size: int) -> np.ndarray:
    """`resized_pixels` channel-first: uint8 [3, size, size] (a quarter of the float bytes, which is what crosses
    from a DataLoader worker)."""
    return np.ascontiguousarray(resized_pixels(image, size).transpose(2, 0, 1))


def normalize_planes(planes: np.ndarray) -> np.ndarray:
    """The ToTensor + Normalize half of `image_tensor`, by table lookup: uint8 [..., 3, H, W] -> float32."""
    out = np.empty(planes.shape, dtype=np.float32)
    flat_in, flat_out = planes.reshape(-1, *planes.shape[-3:]), out.reshape(-1, *planes.shape[-3:])
    for image, result in zip(flat_in, flat_out, strict=True):
        normalize_into(image, result)
    return out


def normalize_into(planes: np.ndarray, out: np.ndarray) -> None:
    """ToTensor + Normalize of one image's uint8 planes [3, H, W] (any strides) into float32 `out` [3, H, W].

    Writing into a caller's buffer that is used again skips the page faults of fresh memory, which on a CPU
    cost as much as the lookup itself.
    """
    table = normalize_table()
    for channel in range(3):
        # "wrap" skips the bounds check a uint8 index cannot fail (3x faster).
        np.take(table[channel], planes[channel], out=out[channel], mode="wrap")


@functools.cache
def normalize_table() -> np.ndarray:
    """ToTensor + Normalize of every uint8 value, per channel: float32 [3, 256], the same float32 operations
    (divide by 255, subtract the mean, divide by the std) as applying them to each pixel."""
    values = np.arange(256, dtype=np.uint8).astype(np.float32) / np.float32(255)
    mean = np.asarray(CLIP_MEAN, dtype=np.float32)[:, None]
    std = np.asarray(CLIP_STD, dtype=np.float32)[:, None]
    table: np.ndarray = (values[None, :] - mean) / std
    table.flags.writeable = False  # shared by every call
    return table
