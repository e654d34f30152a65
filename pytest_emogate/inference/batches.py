"""The model's inputs, batch by batch: which samples go together, and their images and features read ahead.

Batches hold prompts of similar length (longest first) so a batch wastes little padding; the answers are put
back in input order by the caller. While the model computes batch k, batch k+1 is read: by a background thread
of this process by default (frame decoding, resizing and the pixel lookup run in C without the GIL, several
samples at once), or by `workers` DataLoader processes, which still deliver the batches in order. On CUDA the
batches arrive in pinned memory so the copy to the device does not wait for the host. Frames cross from a
worker, or go to a GPU, as uint8 (a quarter of the float bytes) and are normalized where the model runs; on CPU
without workers the reading thread makes the float input itself.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch.utils.data import Dataset

    from pytest_emogate.data import Sample
    from pytest_emogate.model import PromptIds

InputLoader = Callable[[Sequence[int]], "tuple[torch.Tensor, list[torch.Tensor]]"]
READ_AHEAD_BUFFERS = 2  # the batch the model computes and the one being read
PREFETCH_BATCHES = 2  # per worker: enough to hide a slow frame, little memory (a batch of 16 is ~40 MB at 448 px)


class SampleInputs:
    """`load(indices)`: the resized frames and the three feature batches [B, D] of those samples, stacked in
    that order.

    The frames come as uint8 [B, 3, S, S] (what crosses from a DataLoader worker or goes to a GPU; `vit_input`
    turns them into the ViT's float input where the model runs), or with `floats` as that float32 input itself,
    made here. Float frames are written into buffers that the calls take in turn (fresh memory costs a page
    fault per 4 KiB, as much as the lookup itself): a batch's float frames stay valid until two more calls,
    which is what reading one batch ahead needs.
    `threads` samples are read at once: decoding, resizing and the lookup run in C without the GIL, so
    threads scale with the cores left to them (`reading_threads`, `compute_threads`).
    A plain object (no closure, no pool) so DataLoader workers can receive it under any start method.
    """

    def __init__(self, samples: Sequence[Sample], image_size: int, *, threads: int = 1, floats: bool = False) -> None:
        self.samples = list(samples)
        self.image_size = image_size
        self.threads = threads
        self.floats = floats
        self._buffers: list[np.ndarray] = []
        self._turn = -1

    @classmethod
    def for_device(cls, samples: Sequence[Sample], image_size: int, device: torch.device, workers: int) -> SampleInputs:
        """The loader for a model on `device` fed by `workers` DataLoader processes: with none, the main process
        reads each batch with `reading_threads`, and on CPU makes the float input itself."""
        if workers:
            return cls(samples, image_size)
        return cls(samples, image_size, threads=reading_threads(device), floats=device.type == "cpu")

    def subset(self, indices: Sequence[int]) -> SampleInputs:
        """The same loader over the samples at `indices`."""
        return SampleInputs(
            [self.samples[i] for i in indices], self.image_size, threads=self.threads, floats=self.floats
        )

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_buffers": []}  # a worker makes its own

    def __call__(self, indices: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Read and preprocess the samples at `indices`, stacked in that order."""
        import numpy as np
        import torch

        from pytest_emogate.data import read_features, read_frame
        from pytest_emogate.data.image import normalize_into, resized_pixels

        rows = list(indices)
        images = self._images(len(rows))

        def one(row: int) -> np.ndarray:
            sample = self.samples[rows[row]]
            pixels = resized_pixels(read_frame(sample), self.image_size).transpose(2, 0, 1)
            if self.floats:
                normalize_into(pixels, images[row])
            else:
                images[row] = pixels
            return read_features(sample)

        if self.threads > 1 and len(rows) > 1:
            with ThreadPoolExecutor(min(self.threads, len(rows))) as pool:
                features = np.stack(list(pool.map(one, range(len(rows)))))
        else:
            features = np.stack([one(row) for row in range(len(rows))])
        return torch.from_numpy(images), [torch.from_numpy(features[:, slot]) for slot in range(features.shape[1])]

    def _images(self, count: int) -> np.ndarray:
        import numpy as np

        shape = (count, 3, self.image_size, self.image_size)
        if not self.floats:
            return np.empty(shape, dtype=np.uint8)
        self._turn = (self._turn + 1) % READ_AHEAD_BUFFERS
        if len(self._buffers) <= self._turn:
            self._buffers.append(np.empty(shape, dtype=np.float32))
        elif self._buffers[self._turn].shape[0] < count:
            self._buffers[self._turn] = np.empty(shape, dtype=np.float32)
        return self._buffers[self._turn][:count]


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
    """Yield (indices, images, features) for each batch in order, the next batch read while the caller computes
    this one: by a thread of this process (`workers` 0) or by `workers` DataLoader processes."""
    if workers == 0:
        yield from _read_ahead(load, batches, pin_memory)
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(
        cast("Dataset[tuple[torch.Tensor, list[torch.Tensor]]]", _Batches(load, batches)),
        batch_size=None,  # each item is already a batch
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=PREFETCH_BATCHES,
    )
    for indices, (images, features) in zip(batches, loader, strict=True):
        yield list(indices), images, features


def _read_ahead(
    load: InputLoader, batches: Sequence[Sequence[int]], pin_memory: bool
) -> Iterator[tuple[list[int], torch.Tensor, list[torch.Tensor]]]:
    """Batch k+1 is read in a background thread while the caller has batch k; a read error is raised in the
    caller, at the batch it belongs to. Batch k+2 is asked for only once the caller is back for k+1, so two
    buffers (`READ_AHEAD_BUFFERS`) are never overwritten while in use."""

    def read(indices: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        images, features = load(indices)
        if pin_memory:
            return _pinned(images), [_pinned(feature) for feature in features]
        return images, features

    with ThreadPoolExecutor(1, thread_name_prefix="emogate-read") as reader:
        ahead: Future[tuple[torch.Tensor, list[torch.Tensor]]] | None = None
        for k, indices in enumerate(batches):
            current = ahead if ahead is not None else reader.submit(read, indices)
            # Queued behind the current batch: read while the caller computes it.
            ahead = reader.submit(read, batches[k + 1]) if k + 1 < len(batches) else None
            images, features = current.result()
            yield list(indices), images, features


def _pinned(tensor: torch.Tensor) -> torch.Tensor:
    """A host tensor copied into pinned memory; one already on a device (a benchmark's inputs) as it is."""
    return tensor.pin_memory() if tensor.device.type == "cpu" else tensor


def reading_threads(device: torch.device) -> int:
    """Threads that read one batch in the main process, out of the cores torch computes with: all of them when
    a GPU computes; half on CPU, where the other half computes meanwhile (`compute_threads`)."""
    import torch

    cores = torch.get_num_threads()
    return cores if device.type != "cpu" else max(1, cores // 2)


@contextlib.contextmanager
def compute_threads(device: torch.device, workers: int) -> Iterator[None]:
    """On CPU the model's intra-op threads leave the cores that read ahead to the readers (`workers` processes,
    else the threads of `reading_threads`), then are restored.

    OpenMP threads that share cores with busy readers spin-wait for each other: on 2 cores, 2 torch threads
    and 1 worker ran slower than no worker at all, 1 thread and 1 worker about 25 % faster (bench/RESULTS.md).
    """
    import torch

    if device.type != "cpu":
        yield
        return
    saved = torch.get_num_threads()
    # Worker processes get the cores torch does not use; reading threads of this process come out of torch's share.
    threads = min(saved, len(os.sched_getaffinity(0)) - workers) if workers else saved - reading_threads(device)
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(saved)
