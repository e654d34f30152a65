"""Samples -> answers: Emotion-LLaMA run over the Test3 set once, batched, greedy, with a progress bar.

The original generated one sample at a time (spec §6). Batching changes no answer: prompts are left-padded with
zero vectors under an attention mask, positions come from the mask (cumsum - 1), so every row computes what it
would alone; in fp32 on CPU the answers equal batch size 1's (a test checks every sample of the tiny model).
Prompts are sorted by length so a batch wastes little padding, and the answers are put back in input order.
Decoding is greedy with a KV cache and last-position logits; a row ends at EOS (id 2) or at the cap, the
batch as soon as every row has ended. Non-finite logits are an error naming the samples, never an answer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_emogate.files import usage_error
from pytest_emogate.predictions import Prediction

if TYPE_CHECKING:
    import torch

    from pytest_emogate.data import Test3Data
    from pytest_emogate.model import EmotionLlama, PromptIds

InputLoader = Callable[[Sequence[int]], "tuple[torch.Tensor, list[torch.Tensor]]"]
MAX_NAMED_SAMPLES = 20
MODES = ("generate", "score")
MER2023_LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")


@dataclass(frozen=True)
class InferenceSettings:
    """Where the weights are and how to run them; the defaults are the original's except the token cap."""

    ckpt: Path
    llama: Path
    vit: Path
    device: str = "cpu"  # "cpu", "cuda", "cuda:N" or "auto"
    batch_size: int = 16
    max_new_tokens: int = 32  # the original allowed 500; a label takes 2 tokens, and capped rows are counted
    image_size: int = 448
    lora_alpha: float | None = None  # None: the checkpoint's saved config value, else 16
    head_dim: int = 88
    mode: str = "generate"  # "generate": greedy decoding; "score": one forward pass, generation only as fallback
    merge_lora: bool = False  # fold the LoRA into the base weights after loading (agreement checked and noted)
    workers: int = 0  # DataLoader processes decoding frames and reading features; 0: in the main process
    labels: tuple[str, ...] = MER2023_LABELS  # what score mode scores (the thresholds' labels)


@dataclass(frozen=True)
class InferenceRun:
    """The answers in the data's sample order, and what produced them."""

    predictions: list[Prediction]
    capped: int  # answers that hit max_new_tokens without EOS
    device: str
    timings_s: dict[str, float] = field(default_factory=dict)
    checkpoint_sha256: str = ""
    notes: list[str] = field(default_factory=list)  # one line each: merge agreement, score-mode fallbacks


@dataclass(frozen=True)
class Generation:
    """One sample's generated ids (EOS included when reached)."""

    ids: tuple[int, ...]
    hit_cap: bool
    finite: bool


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
    loading anything. Raise NonFiniteLogitsError if any sample's logits are not finite, pytest.UsageError for a
    bad setting or weight file.
    """
    import numpy as np
    import torch

    from pytest_emogate.data import image_tensor, prompt_sentence, read_features, read_frame
    from pytest_emogate.model import ModelFiles, answer_text, checkpoint_sha256, load_emotion_llama, tokenize_prompt

    _check_settings(settings)
    samples = data.samples if indices is None else [data.samples[i] for i in indices]
    if not samples:
        return InferenceRun([], 0, settings.device)
    device = resolve_device(settings.device)
    started = time.perf_counter()
    files = ModelFiles(
        settings.ckpt, settings.llama, settings.vit, settings.image_size, settings.head_dim, settings.lora_alpha
    )
    model, tokenizer = load_emotion_llama(files, device)
    sha256 = checkpoint_sha256(settings.ckpt)
    loaded = time.perf_counter()
    prompts = [tokenize_prompt(tokenizer, prompt_sentence(sample)) for sample in samples]

    def load_inputs(rows: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        images = np.stack([image_tensor(read_frame(samples[i]), settings.image_size) for i in rows])
        features = [[np.asarray(row, np.float32).reshape(-1) for row in read_features(samples[i])] for i in rows]
        slots = [torch.from_numpy(np.stack(column)) for column in zip(*features, strict=True)]
        return torch.from_numpy(images), slots

    def prediction(i: int, generation: Generation) -> Prediction:
        extra = {"n_new_tokens": len(generation.ids), "hit_cap": generation.hit_cap}
        return Prediction(samples[i].name, samples[i].label, answer_text(tokenizer, list(generation.ids)), extra)

    with progress_bar(len(samples), enabled=progress) as advance:

        def finished(rows: Sequence[int], generations: Sequence[Generation]) -> None:
            if on_batch is not None:
                on_batch([prediction(i, g) for i, g in zip(rows, generations, strict=True) if g.finite])
            advance(len(rows))

        generations = generate(model, prompts, load_inputs, settings.batch_size, settings.max_new_tokens, finished)
    bad = [sample.name for sample, generation in zip(samples, generations, strict=True) if not generation.finite]
    if bad:
        raise NonFiniteLogitsError(bad)
    predictions = [prediction(i, generation) for i, generation in enumerate(generations)]
    timings = {"load": loaded - started, "inference": time.perf_counter() - loaded}
    capped = sum(generation.hit_cap for generation in generations)
    return InferenceRun(predictions, capped, str(device), timings, sha256)


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


def generate(
    model: EmotionLlama,
    prompts: Sequence[PromptIds],
    load_inputs: InputLoader,
    batch_size: int,
    max_new_tokens: int,
    on_batch: Callable[[Sequence[int], Sequence[Generation]], None] | None = None,
) -> list[Generation]:
    """Greedy answers for every prompt, in input order; `load_inputs(indices)` gives their images and features.

    Prompts run longest first in batches of `batch_size`; `on_batch(indices, generations)` is called after each.
    """
    import torch

    order = sorted(range(len(prompts)), key=lambda i: -(len(prompts[i].before) + len(prompts[i].after)))
    results: dict[int, Generation] = {}
    with torch.inference_mode(), model.autocast():
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            images, features = load_inputs(indices)
            block = model.multimodal_block(images.to(model.device), [feature.to(model.device) for feature in features])
            embeds = [prompt_embeddings(model, prompts[i], block[row]) for row, i in enumerate(indices)]
            batch = greedy(model, embeds, max_new_tokens)
            results.update(zip(indices, batch, strict=True))
            if on_batch is not None:
                on_batch(indices, batch)
    return [results[i] for i in range(len(prompts))]


def prompt_embeddings(model: EmotionLlama, prompt: PromptIds, block: torch.Tensor) -> torch.Tensor:
    """One sample's input embeddings [L, hidden]: the tokens before, the multimodal block, the tokens after."""
    import torch

    before = model.embed(torch.tensor(prompt.before, device=model.device))
    after = model.embed(torch.tensor(prompt.after, device=model.device))
    return torch.cat((before, block.to(before.dtype), after))


def greedy(model: EmotionLlama, embeds: Sequence[torch.Tensor], max_new_tokens: int) -> list[Generation]:
    """Greedy decoding of one left-padded batch of prompt embeddings, with a KV cache."""
    import torch
    from transformers import DynamicCache

    from pytest_emogate.model.prompt import EOS_ID

    size = len(embeds)
    padded, mask = left_pad(embeds)
    cache = DynamicCache()
    logits = model.next_logits(padded, mask, positions_from_mask(mask), cache)
    ids: list[list[int]] = [[] for _ in range(size)]
    running, finite = [True] * size, [True] * size
    for step in range(max_new_tokens):
        ok, chosen = torch.isfinite(logits).all(-1).tolist(), logits.argmax(-1)
        for row, token in enumerate(chosen.tolist()):
            if running[row] and not ok[row]:
                running[row] = finite[row] = False
            elif running[row]:
                ids[row].append(token)
                running[row] = token != EOS_ID
        if not any(running) or step + 1 == max_new_tokens:
            break
        # Ended rows keep stepping with whatever they chose: their outputs are ignored, and rows never mix.
        mask = torch.cat((mask, mask.new_ones(size, 1)), dim=1)
        logits = model.next_logits(model.embed(chosen[:, None]), mask, mask.sum(-1, keepdim=True) - 1, cache)
    return [Generation(tuple(ids[row]), running[row], finite[row]) for row in range(size)]


def left_pad(embeds: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack [L_i, hidden] embeddings into [B, max L, hidden], zero vectors on the left; and the mask [B, max L]."""
    import torch

    longest = max(embed.shape[0] for embed in embeds)
    padded = embeds[0].new_zeros(len(embeds), longest, embeds[0].shape[-1])
    mask = torch.zeros(len(embeds), longest, dtype=torch.long, device=padded.device)
    for row, embed in enumerate(embeds):
        padded[row, longest - embed.shape[0] :] = embed
        mask[row, longest - embed.shape[0] :] = 1
    return padded, mask


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (cumsum - 1); pads get 0."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


@contextlib.contextmanager
def progress_bar(total: int, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (samples, samples/s, ETA); yields `advance(n)`. Silent when disabled."""
    if not enabled:
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TimeRemainingColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text("-- samples/s" if task.speed is None else f"{task.speed:.1f} samples/s")

    columns = (BarColumn(), MofNCompleteColumn(), RateColumn(), TimeRemainingColumn())
    with Progress("emogate inference", *columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("inference", total=total)
        yield lambda done: bar.advance(task, done)


def _check_settings(settings: InferenceSettings) -> None:
    problems = []
    if settings.batch_size < 1:
        problems.append(f"batch size: expected at least 1, found {settings.batch_size}")
    if settings.max_new_tokens < 1:
        problems.append(f"max new tokens: expected at least 1, found {settings.max_new_tokens}")
    if settings.image_size < 1 or settings.head_dim < 1:
        problems.append(f"image size and head dim: expected positive, found {settings.image_size}, {settings.head_dim}")
    if settings.mode not in MODES:
        problems.append(f"mode: expected one of {', '.join(MODES)}, found {settings.mode!r}")
    if not isinstance(settings.merge_lora, bool):
        problems.append(f"merge LoRA: expected true or false, found {settings.merge_lora!r}")
    if isinstance(settings.workers, bool) or not isinstance(settings.workers, int) or settings.workers < 0:
        problems.append(f"workers: expected a whole number of at least 0, found {settings.workers!r}")
    if not settings.labels or any(not label or label != label.strip() for label in settings.labels):
        problems.append(f"labels: expected one or more non-empty labels, found {list(settings.labels)!r}")
    if problems:
        raise usage_error("inference settings", problems)
