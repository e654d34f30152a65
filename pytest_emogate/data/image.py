"""A sample's frame and the ViT input made from it, exactly as the original evaluation builds them (spec §3).

The frame is the first decoded frame of `{name}.mp4`, else `{name}.avi` (OpenCV, BGR converted to RGB), else
the pre-extracted `{name}.jpg` (PIL). The ViT input is torchvision's Resize((size, size), BICUBIC) on the PIL
image, ToTensor and Normalize with the CLIP mean and std, computed here with PIL and numpy in float32 with the
same operations in the same order, so no torchvision is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from pytest_emogate.data.errors import DataFileError

if TYPE_CHECKING:
    from pytest_emogate.data.test3 import Sample

FRAME_SUFFIXES = (".mp4", ".avi", ".jpg")
VIDEO_SUFFIXES = (".mp4", ".avi")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def read_frame(sample: Sample) -> Image.Image:
    """The sample's RGB frame: the first frame of its video, or its jpg. Raise FileNotFoundError or DataFileError."""
    if sample.frame is None:
        raise FileNotFoundError(f"sample {sample.name}: no {'/'.join(FRAME_SUFFIXES)} frame file")
    return decode_frame(sample.frame)


def decode_frame(path: Path) -> Image.Image:
    """Decode one frame file into an RGB image; raise DataFileError when nothing decodes."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        # cv2 is only needed for videos: a data set of jpg frames runs without it.
        import cv2

        capture = cv2.VideoCapture(str(path))
        try:
            ok, frame = capture.read()
        finally:
            capture.release()
        if not ok or frame is None:
            raise DataFileError(path, "a video whose first frame decodes", "no decodable frame")
        return Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)).convert("RGB")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except UnidentifiedImageError:
        # PIL's own message repeats the absolute path; the report names the file already.
        raise DataFileError(path, "a decodable image", "a file PIL cannot identify as an image") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DataFileError(path, "a decodable image", f"a broken image ({' '.join(str(error).split())})") from None


def image_tensor(image: Image.Image, size: int) -> np.ndarray:
    """The ViT input for `image`: float32 [3, size, size], bicubic-resized ignoring aspect, CLIP-normalized."""
    resized = image.convert("RGB").resize((size, size), Image.BICUBIC)
    pixels = np.asarray(resized, dtype=np.uint8).astype(np.float32) / np.float32(255)
    mean = np.asarray(CLIP_MEAN, dtype=np.float32)
    std = np.asarray(CLIP_STD, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))
