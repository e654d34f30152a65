"""The table-lookup ViT input is bit-identical to ToTensor + Normalize computed per pixel, on every path."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pytest_emogate.data.image import (
    CLIP_MEAN,
    CLIP_STD,
    image_tensor,
    normalize_planes,
    normalize_table,
    resized_planes,
)

MEAN, STD = np.asarray(CLIP_MEAN, dtype=np.float32), np.asarray(CLIP_STD, dtype=np.float32)


def per_pixel(image: Image.Image, size: int) -> np.ndarray:
    """The straightforward formula: resize, then divide by 255, subtract the mean and divide by the std per pixel."""
    resized = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    pixels = np.asarray(resized, dtype=np.uint8).astype(np.float32) / np.float32(255)
    return np.ascontiguousarray(((pixels - MEAN) / STD).transpose(2, 0, 1))


def every_value_image() -> Image.Image:
    """An image holding every uint8 value in every channel, in a different order per channel."""
    values = np.arange(256, dtype=np.uint8)
    pixels = np.stack([values, values[::-1], np.roll(values, 85)], axis=-1).reshape(16, 16, 3)
    return Image.fromarray(pixels)


def test_the_table_holds_the_per_pixel_formula_for_every_value_and_channel() -> None:
    table = normalize_table()
    values = np.arange(256, dtype=np.uint8).astype(np.float32) / np.float32(255)
    assert table.dtype == np.float32 and table.shape == (3, 256) and not table.flags.writeable
    for channel in range(3):
        assert np.array_equal(table[channel], (values - MEAN[channel]) / STD[channel])


@pytest.mark.parametrize(("size", "seed"), [(16, None), (448, None), (448, 1), (37, 2)])
def test_image_tensor_is_bit_identical_to_the_per_pixel_formula(size: int, seed: int | None) -> None:
    if seed is None:
        image = every_value_image()
    else:
        image = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    fast = image_tensor(image, size)
    assert fast.dtype == np.float32 and fast.flags.c_contiguous
    assert np.array_equal(fast, per_pixel(image, size))  # the same bits, not just close


def test_torchvision_s_torch_ops_give_the_same_bits() -> None:
    torch = pytest.importorskip("torch")
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    resized = np.asarray(image.resize((64, 64), Image.Resampling.BICUBIC))
    # ToTensor: uint8 HWC -> float CHW / 255; Normalize: sub_(mean).div_(std), in torch's float32 kernels.
    tensor = torch.from_numpy(resized.copy()).permute(2, 0, 1).float().div(255)
    tensor.sub_(torch.tensor(CLIP_MEAN)[:, None, None]).div_(torch.tensor(CLIP_STD)[:, None, None])
    assert np.array_equal(image_tensor(image, 64), tensor.numpy())


def test_batched_planes_normalize_like_single_images() -> None:
    images = [
        Image.fromarray(np.random.default_rng(seed).integers(0, 256, (9, 12, 3), dtype=np.uint8)) for seed in (4, 5)
    ]
    planes = np.stack([resized_planes(image, 20) for image in images])
    assert planes.dtype == np.uint8 and planes.shape == (2, 3, 20, 20)
    assert np.array_equal(normalize_planes(planes), np.stack([per_pixel(image, 20) for image in images]))


def test_the_device_lookup_gives_the_same_bits() -> None:
    torch = pytest.importorskip("torch")
    from pytest_emogate.inference.batches import lookup, vit_input

    planes = np.stack([resized_planes(every_value_image(), 32)] * 2)
    gathered = lookup(torch.from_numpy(planes), torch.tensor(normalize_table()))  # the CUDA path, run on CPU
    assert gathered.dtype == torch.float32 and np.array_equal(gathered.numpy(), normalize_planes(planes))
    on_cpu = vit_input(torch.from_numpy(planes), torch.device("cpu"))
    assert np.array_equal(on_cpu.numpy(), normalize_planes(planes))
    floats = torch.zeros(1, 3, 4, 4)
    assert vit_input(floats, torch.device("cpu")) is floats  # a float batch (tests, benchmarks) passes as it is
