"""Label scoring: each sample's answer from one forward pass, equal to what greedy generation would answer.

Generation's answer is "label</s>" for nearly every sample: the label's tokens, then EOS. Scoring appends each
label's tokens after the prompt in the same forward pass, every label as its own branch: a label token sees
the prompt and the earlier tokens of its own label only, at the positions it would have in generation. One
pass then gives the prompt's next-token logits and, along each label, the next-token logits generation would
see after that label's tokens. A sample is answered by label L when greedy generation would produce exactly
L's tokens and then EOS: the prompt's top token (unconstrained, over the whole vocabulary) is L's first token,
each later token of L is the top token after the ones before it, and EOS is the top token after the last. Any
other sample (its top token is no label's, a longer continuation, non-finite logits) falls back to real greedy
generation from its prompt, so every answer is generation's; the fallbacks are counted.
Under fp16 the extra positions change kernel shapes, so as with batching, agreement is checked, not assumed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pytest_emogate.inference.batches import InputLoader
from pytest_emogate.inference.generate import (
    BatchDone,
    Generation,
    additive_mask,
    computing,
    embedded_batches,
    greedy,
    left_pad,
    positions_from_mask,
)

if TYPE_CHECKING:
    import torch

    from pytest_emogate.model import EmotionLlama, PromptIds


def label_chains(tokenizer: Any, labels: Sequence[str]) -> list[tuple[int, ...]]:
    """Each label's token ids as generation would produce them after `[/INST]` (sentencepiece's leading "▁")."""
    return [tuple(tokenizer(label, add_special_tokens=False)["input_ids"]) for label in labels]


def score(
    model: EmotionLlama,
    prompts: Sequence[PromptIds],
    load_inputs: InputLoader,
    batch_size: int,
    max_new_tokens: int,
    chains: Sequence[tuple[int, ...]],
    on_batch: BatchDone | None = None,
    *,
    workers: int = 0,
    fell_back: Callable[[int], None] | None = None,
) -> tuple[list[Generation], int]:
    """Every prompt's generation, in input order, and how many fell back to greedy generation.

    Batches as `generate`; `on_batch(indices, generations)` gets each batch's scored samples, and the fallback
    samples once a batch of them has been generated (so a killed run loses at most two batches of work);
    `fell_back(count)` then gets their count (a run stopped part-way still knows how many fell back).
    """
    from pytest_emogate.model.prompt import EOS_ID

    # A label that generation could not finish under the cap would be capped there: leave those to generation.
    usable = [chain for chain in chains if chain and len(chain) + 1 <= max_new_tokens]
    results: dict[int, Generation] = {}
    pending: list[tuple[int, torch.Tensor]] = []
    fallbacks = 0

    def flush(force: bool) -> None:
        nonlocal fallbacks
        while pending and (force or len(pending) >= batch_size):
            group = pending[:batch_size]
            del pending[:batch_size]
            generated = greedy(model, [embeds for _, embeds in group], max_new_tokens)
            fallbacks += len(group)
            results.update(zip((i for i, _ in group), generated, strict=True))
            if on_batch is not None:
                on_batch([i for i, _ in group], generated)
            if fell_back is not None:
                fell_back(len(group))

    with computing(model, workers):
        for indices, embeds in embedded_batches(model, prompts, load_inputs, batch_size, workers):
            answers = score_batch(model, embeds, usable)
            done = []
            for row, (i, chain) in enumerate(zip(indices, answers, strict=True)):
                if chain is None:
                    pending.append((i, embeds[row]))
                else:
                    done.append((i, Generation((*chain, EOS_ID), False, True)))
            results.update(done)
            if on_batch is not None and done:
                on_batch([i for i, _ in done], [generation for _, generation in done])
            flush(force=False)
        flush(force=True)
    return [results[i] for i in range(len(prompts))], fallbacks


def score_batch(
    model: EmotionLlama, embeds: Sequence[torch.Tensor], chains: Sequence[tuple[int, ...]]
) -> list[tuple[int, ...] | None]:
    """For each row: the label chain greedy generation would produce followed by EOS, or None."""
    import torch

    if not any(chains):
        return [None] * len(embeds)
    logits = branch_logits(model, embeds, chains)
    return [
        greedy_chain(top, finite, chains)
        for top, finite in zip(logits.argmax(-1).tolist(), torch.isfinite(logits).all(-1).tolist(), strict=True)
    ]


def branch_logits(
    model: EmotionLlama, embeds: Sequence[torch.Tensor], chains: Sequence[tuple[int, ...]]
) -> torch.Tensor:
    """One forward pass over each prompt with every chain's tokens appended as its own branch: fp32 logits
    [B, 1 + tokens, vocab], after the prompt, then after each appended token (chains in order)."""
    import torch

    padded, mask = left_pad(embeds)
    size, length = mask.shape
    device = mask.device
    flat = [token for chain in chains for token in chain]
    # Appended token t: which chain it belongs to and its index inside that chain.
    chain_of = torch.tensor([j for j, chain in enumerate(chains) for _ in chain], device=device)
    step_of = torch.tensor([k for chain in chains for k in range(len(chain))], device=device)
    tokens = model.embed(torch.tensor(flat, device=device)).to(padded.dtype)
    inputs = torch.cat((padded, tokens[None].expand(size, -1, -1)), dim=1)
    # Where generation would feed them: right after the row's own prompt.
    positions = torch.cat((positions_from_mask(mask), mask.sum(-1, keepdim=True) + step_of[None]), dim=1)
    total = length + len(flat)
    keep = torch.zeros(size, total, total, dtype=torch.bool, device=device)
    keep[:, :, :length] = mask[:, None, :].bool()  # every query sees the row's real prompt tokens ...
    keep[:, :length, :length] &= torch.ones(length, length, dtype=torch.bool, device=device).tril()  # causally,
    # ... and an appended token also sees its own chain's tokens up to itself, nothing of the other chains.
    keep[:, length:, length:] = (chain_of[:, None] == chain_of[None, :]) & (step_of[None, :] <= step_of[:, None])
    return model.logits(inputs, additive_mask(keep, padded.dtype), positions, None, last=len(flat) + 1)


def greedy_chain(top: list[int], finite: list[bool], chains: Sequence[tuple[int, ...]]) -> tuple[int, ...] | None:
    """The chain greedy generation follows and then ends (EOS), from one row's top tokens and finiteness as
    `branch_logits` lays them out; None when there is none. At most one chain can match: greedy has one path."""
    from pytest_emogate.model.prompt import EOS_ID

    start = 1
    for chain in chains:
        # Greedy picks chain[0] after the prompt, chain[k] after chain[k-1], and EOS after the last.
        steps = slice(start, start + len(chain))
        if finite[0] and all(finite[steps]) and top[0] == chain[0] and top[steps] == [*chain[1:], EOS_ID]:
            return chain
        start += len(chain)
    return None
