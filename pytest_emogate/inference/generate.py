"""Greedy generation over batches of prompts, as the original's batch-1 `generate` but batched (spec §6.1).

Batching changes no answer: prompts are left-padded with zero vectors under an attention mask, positions come
from the mask (cumsum - 1), so every row computes what it would alone; in fp32 on CPU the answers equal batch
size 1's (a test checks every sample of the tiny model). Decoding keeps a KV cache and computes logits for the
last position only; a row ends at EOS (id 2) or at the cap, the batch as soon as every row has ended.
The attention masks are built here as the 4-D additive masks Hugging Face would build from the 2-D padding
mask (0 where a key is seen, the dtype's minimum where not): the same values, without rebuilding them through
its mask machinery on every step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_emogate.inference.batches import (
    InputLoader,
    compute_threads,
    input_batches,
    length_sorted_batches,
    vit_input,
)

if TYPE_CHECKING:
    import torch

    from pytest_emogate.model import EmotionLlama, PromptIds

BatchDone = Callable[[Sequence[int], Sequence["Generation"]], None]


@dataclass(frozen=True)
class Generation:
    """One sample's generated ids (EOS included when reached)."""

    ids: tuple[int, ...]
    hit_cap: bool
    finite: bool


def generate(
    model: EmotionLlama,
    prompts: Sequence[PromptIds],
    load_inputs: InputLoader,
    batch_size: int,
    max_new_tokens: int,
    on_batch: BatchDone | None = None,
    *,
    workers: int = 0,
) -> list[Generation]:
    """Greedy answers for every prompt, in input order; `load_inputs(indices)` gives their images and features.

    Prompts run longest first in batches of `batch_size`, their inputs read ahead of the model (by `workers`
    processes, or a thread with none); `on_batch(indices, generations)` is called after each batch.
    """
    results: dict[int, Generation] = {}
    with computing(model, workers):
        for indices, embeds in embedded_batches(model, prompts, load_inputs, batch_size, workers):
            batch = greedy(model, embeds, max_new_tokens)
            results.update(zip(indices, batch, strict=True))
            if on_batch is not None:
                on_batch(indices, batch)
    return [results[i] for i in range(len(prompts))]


@contextlib.contextmanager
def computing(model: EmotionLlama, workers: int) -> Iterator[None]:
    """The state the model answers in: no autograd, its autocast, torch's threads sharing the cores with the
    readers (`compute_threads`)."""
    import torch

    with torch.inference_mode(), model.autocast(), compute_threads(model.device, workers):
        yield


def embedded_batches(
    model: EmotionLlama, prompts: Sequence[PromptIds], load_inputs: InputLoader, batch_size: int, workers: int
) -> Iterator[tuple[list[int], list[torch.Tensor]]]:
    """(indices, each prompt's input embeddings) for the length-sorted batches of `batch_size`, their inputs
    read ahead; run it inside `computing`."""
    batches = length_sorted_batches(prompts, batch_size)
    pin = model.device.type == "cuda"
    for indices, images, features in input_batches(load_inputs, batches, workers=workers, pin_memory=pin):
        yield indices, batch_embeddings(model, [prompts[i] for i in indices], images, features)


def batch_embeddings(
    model: EmotionLlama, prompts: Sequence[PromptIds], images: torch.Tensor, features: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Each prompt's input embeddings [L_i, hidden] around its sample's multimodal block."""
    device = model.device
    block = model.multimodal_block(
        vit_input(images, device), [feature.to(device, non_blocking=True) for feature in features]
    )
    return [prompt_embeddings(model, prompt, block[row]) for row, prompt in enumerate(prompts)]


def prompt_embeddings(model: EmotionLlama, prompt: PromptIds, block: torch.Tensor) -> torch.Tensor:
    """One sample's input embeddings [L, hidden]: the tokens before, the multimodal block, the tokens after."""
    import torch

    ids = torch.tensor(prompt.before + prompt.after, device=model.device)
    tokens = model.embed(ids)
    cut = len(prompt.before)
    return torch.cat((tokens[:cut], block.to(tokens.dtype), tokens[cut:]))


def greedy(model: EmotionLlama, embeds: Sequence[torch.Tensor], max_new_tokens: int) -> list[Generation]:
    """Greedy decoding of one left-padded batch of prompt embeddings, with a KV cache."""
    import torch
    from transformers import DynamicCache

    from pytest_emogate.model.prompt import EOS_ID

    size = len(embeds)
    padded, mask = left_pad(embeds)
    cache = DynamicCache()
    logits = model.logits(padded, prefill_mask(mask, padded.dtype), positions_from_mask(mask), cache)[:, -1]
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
        step_mask = additive_mask(mask[:, None, :].bool(), padded.dtype)
        logits = model.logits(model.embed(chosen[:, None]), step_mask, mask.sum(-1, keepdim=True) - 1, cache)[:, -1]
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


def prefill_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive mask [B, 1, L, L] of a left-padded prompt batch: causal, pads never seen as keys."""
    import torch

    length = mask.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    return additive_mask(causal[None] & mask[:, None, :].bool(), dtype)


def additive_mask(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, Q, K] booleans (True: the query sees the key) -> [B, 1, Q, K]: 0 or the dtype's minimum, as HF's."""
    import torch

    blocked = torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=keep.device)
    return torch.where(keep, torch.zeros((), dtype=dtype, device=keep.device), blocked)[:, None]
