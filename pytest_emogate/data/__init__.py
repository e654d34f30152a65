"""The MER2023 Test3 data: reading samples, their features and frames, and the preflight that checks them all.

Imported only by the inference path: it needs numpy and Pillow (and OpenCV for video frames).
"""

from __future__ import annotations

from pytest_emogate.data.errors import DataFileError
from pytest_emogate.data.features import read_features
from pytest_emogate.data.image import image_tensor, read_frame
from pytest_emogate.data.preflight import preflight
from pytest_emogate.data.test3 import Sample, Test3Data, load_test3, prompt_sentence

__all__ = [
    "DataFileError",
    "Sample",
    "Test3Data",
    "image_tensor",
    "load_test3",
    "preflight",
    "prompt_sentence",
    "read_features",
    "read_frame",
]
