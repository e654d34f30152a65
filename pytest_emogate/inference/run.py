"""Samples -> answers: Emotion-LLaMA run over the Test3 set once, batched, with a progress bar.

The original generated one sample at a time with up to 500 new tokens (spec §6). Here prompts run in
length-sorted batches (decoding.py: greedy generation; scoring.py: label scoring, answers equal to
generation's), their frames and features prepared ahead by DataLoader workers (loader.py). Optionally the LoRA
is merged into the base weights, and the first batch is answered both ways to report the agreement. Non-finite
logits are an error naming the samples, never an answer. Out of memory in a batch is an error naming the batch
size; with `--emogate-batch-size auto` the memory is freed, the batch size halved and the same samples answered
again (the answers do not depend on the batch size), down to 1.
"""

from __future__ import annotations

import gc
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_emogate.files import usage_error
from pytest_emogate.formats import clip
from pytest_emogate.inference.progress import progress_bar
from pytest_emogate.inference.settings import AUTO, DTYPES, MODES, InferenceSettings
from pytest_emogate.predictions import Prediction

if TYPE_CHECKING:
    import torch

    from pytest_emogate.data import Sample, Test3Data
    from pytest_emogate.inference.batches import SampleInputs
    from pytest_emogate.inference.generate import BatchDone, Generation
    from pytest_emogate.model import EmotionLlama, PromptIds

MAX_NAMED_SAMPLES = 20


@dataclass(frozen=True)
class InferenceRun:
    """The answers, in the order of the samples asked for (the data's order by default), and what produced them."""

    predictions: list[Prediction]
    capped: int  # answers that hit max_new_tokens without EOS
    device: str
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # one line each: merge agreement, score-mode fallbacks
    batch_size: int = 0
    """The batch size the answers were made at (with `auto`, the one that fit); 0 when nothing was answered."""


class NonFiniteLogitsError(RuntimeError):
    """The model produced NaN or infinite logits for some samples; their answers would be meaningless."""

    def __init__(self, names: Sequence[str]) -> None:
        shown = ", ".join(names[:MAX_NAMED_SAMPLES]) + (
            f" and {len(names) - MAX_NAMED_SAMPLES} more" if len(names) > MAX_NAMED_SAMPLES else ""
        )
        super().__init__(
            f"non-finite logits (NaN or inf) for {len(names)} sample{'s' if len(names) != 1 else ''}: {shown}; "
            "no answer was made for them (check the weights, the device and the dtype)"
        )
        self.names = tuple(names)


class BatchOutOfMemoryError(RuntimeError):
    """A batch did not fit the device's memory: at a fixed batch size, or with `auto` even at batch size 1. The
    message names the batch size, the device and the remedy."""

    def __init__(self, batch_size: int, device: str, said: str, *, auto: bool) -> None:
        if auto:
            remedy = (
                f"--emogate-batch-size {AUTO} halved it from the largest size down to 1; the model does not fit: use "
                "a device with more free memory, or --emogate-devices to spread the samples"
            )
        else:
            smaller = f" (e.g. {batch_size // 2})" if batch_size > 1 else ""
            remedy = (
                f"lower --emogate-batch-size{smaller}, or pass --emogate-batch-size {AUTO} to halve it until it fits"
                if batch_size > 1
                else "the model does not fit at batch size 1: use a device with more free memory"
            )
        super().__init__(f"out of memory at batch size {batch_size} on {device} ({said}): {remedy}")
        self.batch_size = batch_size


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says the device ran out of memory: torch's OutOfMemoryError (CUDA), or the CPU
    allocator's RuntimeError."""
    import torch

    out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    return isinstance(error, out_of_memory) or (
        isinstance(error, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(error)
    )


def free_memory() -> None:
    """Give back what a failed batch or run held: collect its garbage, and when CUDA is in use empty torch's cache
    so the memory is free for what comes next (a smaller batch, or another process)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def checkpoint_feature_dims(ckpt: Path) -> tuple[int, int, int]:
    """The Face, Video and Audio widths the checkpoint's projections take; loads no model (for the preflight)."""
    from pytest_emogate.model.checkpoint import feature_dims

    return feature_dims(ckpt)


def run_inference(
    settings: InferenceSettings,
    data: Test3Data,
    *,
    progress: bool = True,
    indices: Sequence[int] | None = None,
    on_batch: Callable[[list[Prediction]], None] | None = None,
) -> InferenceRun:
    """Load the model from local files and answer the samples of `data` at `indices` (default all), in that order.

    `on_batch(predictions)` is called after each batch with its finished answers, so a caller can persist them
    as they come; samples with non-finite logits are left out of it. An empty `indices` returns at once without
    loading anything. Raise NonFiniteLogitsError if any sample's logits are not finite, BatchOutOfMemoryError
    when a batch does not fit (with `auto`: not even at batch size 1), pytest.UsageError for a bad setting or
    weight file.
    """
    from pytest_emogate.data import prompt_sentence
    from pytest_emogate.inference.batches import SampleInputs
    from pytest_emogate.model import ModelFiles, answer_text, load_emotion_llama, tokenize_prompts

    _check_settings(settings)
    samples = data.samples if indices is None else [data.samples[i] for i in indices]
    if not samples:
        return InferenceRun([], 0, settings.device)
    device = resolve_device(settings.device)
    started = time.perf_counter()
    files = ModelFiles(
        settings.ckpt, settings.llama, settings.vit, settings.image_size, settings.head_dim, settings.lora_alpha
    )
    model, tokenizer = load_emotion_llama(files, device, settings.dtype)
    loaded = time.perf_counter()
    prompts = tokenize_prompts(tokenizer, [prompt_sentence(sample) for sample in samples])
    _check_context(model, prompts, samples, settings)
    load = SampleInputs.for_device(samples, settings.image_size, device, settings.workers)
    answers = _Answers(model, tokenizer, prompts, load, settings)
    notes = [answers.merge_lora()] if settings.merge_lora else []
    merge_s = time.perf_counter() - loaded if settings.merge_lora else 0.0
    made: dict[int, Prediction] = {}

    def prediction(i: int, generation: Generation) -> Prediction:
        if i not in made:
            extra = {"n_new_tokens": len(generation.ids), "hit_cap": generation.hit_cap}
            text = answer_text(tokenizer, list(generation.ids))
            made[i] = Prediction(samples[i].name, samples[i].label, text, extra)
        return made[i]

    with progress_bar(len(samples), enabled=progress) as advance:

        def finished(rows: Sequence[int], generations: Sequence[Generation]) -> None:
            if on_batch is not None:
                on_batch([prediction(i, g) for i, g in zip(rows, generations, strict=True) if g.finite])
            advance(len(rows))

        generations = answers.all(finished)
    notes += answers.notes()
    bad = [sample.name for sample, generation in zip(samples, generations, strict=True) if not generation.finite]
    if bad:
        raise NonFiniteLogitsError(bad)
    predictions = [prediction(i, generation) for i, generation in enumerate(generations)]
    timings = {"load": loaded - started, "inference": time.perf_counter() - loaded - merge_s}
    if settings.merge_lora:
        timings["merge"] = merge_s  # the merge and the first batch answered twice to check it
    capped = sum(generation.hit_cap for generation in generations)
    return InferenceRun(predictions, capped, str(device), timings, notes, answers.batch_size)


class _Answers:
    """The chosen mode (generate or score) over the prompts, and what it has to report."""

    def __init__(
        self,
        model: EmotionLlama,
        tokenizer: Any,
        prompts: list[PromptIds],
        load: SampleInputs,
        settings: InferenceSettings,
    ) -> None:
        self.model, self.tokenizer, self.prompts, self.load, self.settings = model, tokenizer, prompts, load, settings
        self.fallbacks = 0
        self.batch_size = settings.largest_batch_size
        """The batch size now: the one given, or with `auto` the largest that has fit so far."""
        self.ran_out: list[int] = []
        """The batch sizes that ran out of memory (with `auto`), largest first."""

    def all(self, on_batch: BatchDone) -> list[Generation]:
        """Every prompt's generation, in input order, `on_batch` called after each batch."""
        generations, self.fallbacks = self._run(self.prompts, self.load, on_batch, self.settings.workers)
        return generations

    def merge_lora(self) -> str:
        """Merge the LoRA; answer the first batch before and after, and say how many answers agree."""
        from pytest_emogate.inference.batches import length_sorted_batches
        from pytest_emogate.model import answer_text

        first = length_sorted_batches(self.prompts, self.batch_size)[0]
        prompts = [self.prompts[i] for i in first]
        load = self.load.subset(first)
        before, _ = self._run(prompts, load, None, 0)
        self.model.merge_lora()
        after, _ = self._run(prompts, load, None, 0)
        texts = [[answer_text(self.tokenizer, list(g.ids)) for g in run] for run in (before, after)]
        agree = sum(a == b for a, b in zip(*texts, strict=True))
        return (
            f"LoRA merged into the base weights; checked by answering the first batch unmerged and merged: "
            f"{agree}/{len(first)} answers agree"
        )

    def notes(self) -> list[str]:
        """What the run reports besides its answers."""
        lines = []
        if self.settings.batch_auto:
            ran_out = ", ".join(str(size) for size in self.ran_out)
            lines.append(
                f"batch size {AUTO}: answered at {self.batch_size}"
                + (f" (out of memory at {ran_out}: memory freed, batch halved and answered again)" if ran_out else "")
            )
        if self.settings.mode == "score":
            total = len(self.prompts)
            lines.append(f"score mode: {total - self.fallbacks}/{total} answers from one forward pass, "
                         f"{self.fallbacks} fell back to greedy generation")  # fmt: skip
        return lines

    def _run(
        self, prompts: list[PromptIds], load: SampleInputs, on_batch: BatchDone | None, workers: int
    ) -> tuple[list[Generation], int]:
        """Every prompt's generation at the current batch size, and how many fell back to generation. On out of
        memory: an error naming the batch size, or with `auto` the memory freed, the batch size halved and the
        prompts not yet answered answered again (longest first, so the batch that failed comes first)."""
        done: dict[int, Generation] = {}
        fallbacks: list[int] = []
        todo = list(range(len(prompts)))
        while todo:

            def finished(rows: Sequence[int], generations: Sequence[Generation], todo: list[int] = todo) -> None:
                rows = [todo[row] for row in rows]
                done.update(zip(rows, generations, strict=True))
                if on_batch is not None:
                    on_batch(rows, generations)

            size, failed = self.batch_size, None
            try:
                self._once([prompts[i] for i in todo], load.subset(todo), finished, fallbacks.append, workers)
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                failed = _first_line(error)
                traceback.clear_frames(error.__traceback__)  # its frames hold the batch's tensors
            if failed is None:
                break
            free_memory()
            if not self.settings.batch_auto or size == 1:
                raise BatchOutOfMemoryError(size, str(self.model.device), failed, auto=self.settings.batch_auto)
            self.ran_out.append(size)
            self.batch_size = size // 2
            todo = [i for i in todo if i not in done]
        return [done[i] for i in range(len(prompts))], sum(fallbacks)

    def _once(
        self, prompts: list[PromptIds], load: SampleInputs, on_batch: BatchDone, fell_back: Callable[[int], None],
        workers: int,
    ) -> None:  # fmt: skip
        """Answer `prompts` at the current batch size, each batch handed to `on_batch` as it finishes."""
        from pytest_emogate.inference.generate import generate
        from pytest_emogate.inference.score import label_chains, score

        s, size = self.settings, self.batch_size
        if s.mode == "generate":
            generate(self.model, prompts, load, size, s.max_new_tokens, on_batch, workers=workers)
            return
        chains = label_chains(self.tokenizer, s.labels)
        score(self.model, prompts, load, size, s.max_new_tokens, chains, on_batch, workers=workers, fell_back=fell_back)


def resolve_device(name: str) -> torch.device:
    """The torch device for a --emogate-device value: auto is CUDA when available, else CPU; a CUDA device that is
    not there is a UsageError."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise usage_error("--emogate-device", [f"expected cpu, cuda, cuda:N or auto, found {name!r}"]) from None
    if device.type not in ("cpu", "cuda"):
        raise usage_error("--emogate-device", [f"expected cpu, cuda, cuda:N or auto, found {name!r}"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise usage_error("--emogate-device", [f"{name}: no CUDA device is available (torch {torch.__version__})"])
    return device


def _check_context(
    model: EmotionLlama, prompts: Sequence[PromptIds], samples: Sequence[Sample], settings: InferenceSettings
) -> None:
    """Refuse, before any sample is answered, prompts that with `max_new_tokens` do not fit the model's context
    (max_position_embeddings): past it the positions are ones the model never saw, and a transcript of a
    megabyte would ask for a mask of hundreds of gigabytes. Names each sample with its prompt's length."""
    context = int(getattr(model.llm.config, "max_position_embeddings", 0) or 0)
    if context <= 0:
        return
    patch = model.vit.patch_embed.proj.kernel_size[0]
    block = (settings.image_size // patch) ** 2 // model.group + 4  # the patch groups, 3 features and cls
    too_long = [
        (sample.name, length)
        for sample, prompt in zip(samples, prompts, strict=True)
        if (length := len(prompt.before) + block + len(prompt.after)) + settings.max_new_tokens > context
    ]
    if too_long:
        where = f"max_position_embeddings in {settings.llama / 'config.json'}"
        raise usage_error(
            "Test3 transcripts",
            [f"sample {clip(name)}: its prompt is {length:,} positions (most of them its transcript); with up to "
             f"{settings.max_new_tokens} new tokens it does not fit the model's context of {context:,} ({where})"
             for name, length in too_long],
        )  # fmt: skip


def _first_line(error: BaseException) -> str:
    """An error's first line, for a one-line message (torch's out-of-memory text runs to several)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _check_settings(settings: InferenceSettings) -> None:
    problems = []
    size = settings.batch_size
    if size != AUTO and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        problems.append(f"batch size: expected at least 1, found {size}")
    if settings.max_new_tokens < 1:
        problems.append(f"max new tokens: expected at least 1, found {settings.max_new_tokens}")
    if settings.image_size < 1 or settings.head_dim < 1:
        problems.append(f"image size and head dim: expected positive, found {settings.image_size}, {settings.head_dim}")
    if settings.mode not in MODES:
        problems.append(f"mode: expected one of {', '.join(MODES)}, found {settings.mode!r}")
    if settings.dtype not in DTYPES:
        problems.append(f"dtype: expected one of {', '.join(DTYPES)}, found {settings.dtype!r}")
    if not isinstance(settings.merge_lora, bool):
        problems.append(f"merge LoRA: expected true or false, found {settings.merge_lora!r}")
    if isinstance(settings.workers, bool) or not isinstance(settings.workers, int) or settings.workers < 0:
        problems.append(f"workers: expected a whole number of at least 0, found {settings.workers!r}")
    if not settings.labels or any(not label or label != label.strip() for label in settings.labels):
        problems.append(f"labels: expected one or more non-empty labels, found {list(settings.labels)!r}")
    if problems:
        raise usage_error("inference settings", problems)
