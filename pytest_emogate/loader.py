"""The model's inputs, batch by batch: which samples go together, and their images and features read ahead.

Batches hold prompts of similar length (longest first) so a batch wastes little padding; the answers are put
back in input order by the caller. The images and features of a batch are made by a `torch.utils.data.DataLoader`
over whole batches: with workers, frame decoding, resizing and feature reading for the next batches run in
other processes while the model computes this one, and the batches still arrive in order; on CUDA they arrive
in pinned memory so the copy to the device does not wait for the host. Frames cross from a worker as uint8
(a quarter of the float bytes: fewer page faults in shared memory) and are normalized where the model runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset

    from pytest_emogate.data import Sample
    from pytest_emogate.model import PromptIds

Inputs = "tuple[torch.Tensor, list[torch.Tensor]]"
InputLoader = Callable[[Sequence[int]], "tuple[torch.Tensor, list[torch.Tensor]]"]
PREFETCH_BATCHES = 2  # per worker: enough to hide a slow frame, little memory (a batch of 16 is ~40 MB at 448 px)


class SampleInputs:
    """`load(indices)`: the resized frames, uint8 [B, 3, S, S], and the three feature batches [B, D] of those
    samples; `vit_input` turns the frames into the ViT's float input where the model runs.

    A plain object (no closure) so DataLoader workers can receive it under any start method.
    """

    def __init__(self, samples: Sequence[Sample], image_size: int) -> None:
        self.samples = list(samples)
        self.image_size = image_size

    def __call__(self, indices: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Read and preprocess the samples at `indices`, stacked in that order."""
        import numpy as np
        import torch

        from pytest_emogate.data import read_features, read_frame
        from pytest_emogate.data.image import resized_planes

        images = np.stack([resized_planes(read_frame(self.samples[i]), self.image_size) for i in indices])
        features = np.stack([read_features(self.samples[i]) for i in indices])
        return torch.from_numpy(images), [torch.from_numpy(features[:, slot]) for slot in range(features.shape[1])]


def vit_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The ViT input on `device`: float images pass as they are; uint8 frames get ToTensor + Normalize by the
    lookup table of `image_tensor` (bit-identical), on the device itself when it is a GPU (4x fewer bytes copied)."""
    import torch

    from pytest_emogate.data.image import normalize_planes, normalize_table

    if images.dtype != torch.uint8:
        return images.to(device, non_blocking=True)
    if device.type == "cpu":
        return torch.from_numpy(normalize_planes(images.numpy()))
    return lookup(images.to(device, non_blocking=True), torch.tensor(normalize_table(), device=device))


def lookup(planes: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """table[c, planes[b, c, y, x]] for uint8 planes [B, 3, H, W] and a table [3, 256], on their device."""
    import torch

    return table[torch.arange(3, device=planes.device)[:, None, None], planes.long()]


def length_sorted_batches(prompts: Sequence[PromptIds], batch_size: int) -> list[list[int]]:
    """Prompt indices in batches of `batch_size`, longest prompt first (ties in input order)."""
    order = sorted(range(len(prompts)), key=lambda i: -(len(prompts[i].before) + len(prompts[i].after)))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


class _Batches:
    """A map-style dataset whose item k is the inputs of batch k, so one worker makes one whole batch."""

    def __init__(self, load: InputLoader, batches: Sequence[Sequence[int]]) -> None:
        self.load, self.batches = load, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.load(self.batches[k])


def input_batches(
    load: InputLoader, batches: Sequence[Sequence[int]], *, workers: int = 0, pin_memory: bool = False
) -> Iterator[tuple[list[int], torch.Tensor, list[torch.Tensor]]]:
    """Yield (indices, images, features) for each batch in order; `workers` processes load ahead (0: none)."""
    if workers == 0 and not pin_memory:
        # Nothing to overlap or pin: skip the DataLoader machinery.
        for indices in batches:
            yield list(indices), *load(indices)
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(
        cast("Dataset[tuple[torch.Tensor, list[torch.Tensor]]]", _Batches(load, batches)),
        batch_size=None,  # each item is already a batch
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=PREFETCH_BATCHES if workers else None,
    )
    for indices, (images, features) in zip(batches, loader, strict=True):
        yield list(indices), images, features


@contextlib.contextmanager
def compute_threads(device: torch.device, workers: int) -> Iterator[None]:
    """While workers load on CPU, the model's intra-op threads leave them a core each, then are restored.

    OpenMP threads that share cores with busy workers spin-wait for each other: on 2 cores, 2 torch threads
    and 1 worker ran slower than no worker at all, 1 thread and 1 worker about 25 % faster (bench/RESULTS.md).
    """
    import torch

    if device.type != "cpu" or workers == 0:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(max(1, min(saved, len(os.sched_getaffinity(0)) - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(saved)
