"""The speed levers keep the answers: length-sorted batches, reading ahead (threads or DataLoader workers),
merged LoRA (agreement noted)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from pytest_emogate.data import Test3Data, load_test3  # noqa: E402
from pytest_emogate.data.image import normalize_planes  # noqa: E402
from pytest_emogate.inference.batches import (  # noqa: E402
    SampleInputs,
    compute_threads,
    input_batches,
    length_sorted_batches,
    reading_threads,
)
from pytest_emogate.inference.run import InferenceRun, run_inference  # noqa: E402
from pytest_emogate.model import PromptIds, load_emotion_llama  # noqa: E402
from pytest_emogate.model.emotion_llama import ModelFiles  # noqa: E402
from tests.conftest import TINY, TINY_SETTINGS  # noqa: E402

FEW = range(100, 148)


@pytest.fixture(scope="module")
def data() -> Test3Data:
    """The committed tiny Test3 set (834 samples)."""
    return load_test3(TINY / "data")


@pytest.fixture(scope="module")
def plain(data: Test3Data) -> InferenceRun:
    """48 samples through the default path: no workers, LoRA unmerged, generation."""
    return run_inference(TINY_SETTINGS, data, progress=False, indices=FEW)


def test_batches_run_longest_prompt_first_ties_in_input_order() -> None:
    lengths = [3, 9, 5, 9, 1, 5, 7]
    prompts = [PromptIds((1,), (0,) * (n - 1)) for n in lengths]
    assert length_sorted_batches(prompts, 3) == [[1, 3, 6], [2, 5, 0], [4]]


@pytest.mark.slow
def test_workers_deliver_the_same_batches_in_order(data: Test3Data) -> None:
    load = SampleInputs(data.samples[:30], 448)
    batches = [[5, 0, 7], [29], list(range(8, 20)), [1, 2]]
    inline = list(input_batches(load, batches))
    assert [indices for indices, _, _ in inline] == batches
    assert inline[0][1].dtype == torch.uint8 and inline[0][1].shape == (3, 3, 448, 448)
    for (indices, images, features), (want, want_images, want_features) in zip(
        input_batches(load, batches, workers=2), inline, strict=True
    ):
        assert indices == want and torch.equal(images, want_images)
        assert all(torch.equal(a, b) for a, b in zip(features, want_features, strict=True))


@pytest.mark.slow
def test_workers_leave_the_answers_unchanged(data: Test3Data, plain: InferenceRun) -> None:
    settings = dataclasses.replace(TINY_SETTINGS, workers=2, batch_size=8)
    handed: list[str] = []
    run = run_inference(
        settings, data, progress=False, indices=FEW, on_batch=lambda ps: handed.extend(p.name for p in ps)
    )
    assert run.predictions == plain.predictions
    assert sorted(handed) == sorted(p.name for p in plain.predictions)


def test_cpu_threads_leave_the_reading_cores_to_the_readers_while_they_run() -> None:
    saved, cores = torch.get_num_threads(), len(os.sched_getaffinity(0))
    with compute_threads(torch.device("cpu"), 1):
        assert torch.get_num_threads() == max(1, min(saved, cores - 1))
    assert torch.get_num_threads() == saved
    readers = reading_threads(torch.device("cpu"))
    assert readers == max(1, saved // 2) and reading_threads(torch.device("cuda")) == saved
    with compute_threads(torch.device("cpu"), 0):
        assert torch.get_num_threads() == max(1, saved - readers)
    with compute_threads(torch.device("cuda"), 4):
        assert torch.get_num_threads() == saved


def test_reading_threads_make_the_float_input_of_the_uint8_frames(data: Test3Data) -> None:
    rows = [7, 3, 11, 0, 5]
    frames, features = SampleInputs(data.samples[:12], 448)(rows)
    floats, same_features = SampleInputs(data.samples[:12], 448, threads=3, floats=True)(rows)
    assert floats.dtype == torch.float32 and np.array_equal(floats.numpy(), normalize_planes(frames.numpy()))
    assert all(torch.equal(a, b) for a, b in zip(features, same_features, strict=True))


def test_float_frames_take_turns_in_two_buffers(data: Test3Data) -> None:
    load = SampleInputs(data.samples[:6], 448, floats=True)
    first, second, third = (load(rows)[0] for rows in ([0, 1], [2], [3, 4]))
    assert not np.shares_memory(first.numpy(), second.numpy())  # the batch computed and the one read ahead
    assert np.shares_memory(first.numpy(), third.numpy())  # two calls later the first buffer is used again
    assert np.array_equal(third.numpy(), normalize_planes(SampleInputs(data.samples[:6], 448)([3, 4])[0].numpy()))


def test_pinning_passes_inputs_already_on_a_device_through() -> None:
    def on_device(rows: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return torch.empty(len(rows), 3, 4, 4, device="meta"), [torch.empty(len(rows), 2, device="meta")] * 3

    batches = list(input_batches(on_device, [[0, 1], [2]], pin_memory=True))  # pinning these would raise
    assert [(indices, images.device.type) for indices, images, _ in batches] == [([0, 1], "meta"), ([2], "meta")]


def test_a_read_error_reaches_the_caller_at_its_batch(data: Test3Data) -> None:
    load = SampleInputs(data.samples[:6], 448)

    def failing(rows: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if 4 in rows:
            raise FileNotFoundError("sample 4: no frame")
        return load(rows)

    seen = []
    with pytest.raises(FileNotFoundError, match="sample 4: no frame"):
        for indices, _, _ in input_batches(failing, [[0, 1], [2, 3], [4, 5]]):
            seen.append(indices)
    assert seen == [[0, 1], [2, 3]]


@pytest.mark.slow
def test_merged_lora_keeps_the_answers_and_reports_the_check(data: Test3Data, plain: InferenceRun) -> None:
    handed: list[str] = []
    run = run_inference(
        dataclasses.replace(TINY_SETTINGS, merge_lora=True), data, progress=False, indices=FEW,
        on_batch=lambda ps: handed.extend(p.name for p in ps),
    )  # fmt: skip
    assert run.predictions == plain.predictions
    note = "LoRA merged into the base weights; checked by answering the first batch unmerged and merged: "
    assert run.notes == [note + "16/16 answers agree"]
    assert set(run.timings_s) == {"load", "inference", "merge"}
    assert len(handed) == len(FEW)  # the check's answers are not handed over: only the run's, once each


@pytest.mark.slow
def test_merging_folds_the_adapters_into_the_base_weights() -> None:
    files = ModelFiles(TINY_SETTINGS.ckpt, TINY_SETTINGS.llama, TINY_SETTINGS.vit)
    model, _ = load_emotion_llama(files, torch.device("cpu"))
    embeds = model.embed(torch.tensor([[1, 1, 5, 6, 7, 8, 9]]))
    mask, positions = torch.ones(1, 7, dtype=torch.long), torch.arange(7)[None]
    with torch.inference_mode():
        unmerged = model.logits(embeds, mask, positions)
        model.merge_lora()
        merged = model.logits(embeds, mask, positions)
    assert not any("lora_" in name for name, _ in model.named_parameters())
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-4)
