"""Inference on several devices and machines with torch.distributed: one rank per device, each answering a shard.

Two ways in, one rank body (`answer_shard`: load the model once, answer the shard, append each batch to the
rank's own `answers-rank{R}.jsonl` in the cache folder):

- launched, `--emogate-devices cuda:0,cuda:1`: the pytest process starts one rank process per device, watches it
  and reaps it (launch.py). The answers travel through the cache folder; no collective runs.
- torchrun, `torchrun --nnodes N --nproc-per-node M ... -m pytest`: every rank is a pytest process. Rank 0
  broadcasts what its cache lacks, each rank answers its shard on cuda:LOCAL_RANK (or the CPU), and
  `gather_object` brings every answer to rank 0, which appends those its cache folder lacks (a node-local cache
  holds only its own node's files; on a shared filesystem nothing is left to append). Only rank 0 gates.

Shards are deterministic and length-balanced, so no rank waits long for another. No collective runs after the
gather: a failing gate test can never leave a rank waiting. A failed rank fails the run with its own error text,
and every batch finished before that stays in the cache, so a rerun resumes.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_emogate.data import Test3Data
    from pytest_emogate.inference.settings import InferenceSettings
    from pytest_emogate.predictions import Prediction

# The gather waits for the slowest rank's whole shard, and a dead peer breaks it at once (its sockets close),
# so this bounds only a rank that hangs.
COLLECTIVE_TIMEOUT = timedelta(hours=1)


@dataclass(frozen=True)
class RankRun:
    """What one rank did: where it ran, how many answers it made and hit the cap, its seconds, its error if any."""

    rank: int
    device: str
    host: str
    answered: int = 0
    capped: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    error: str | None = None  # `Type: message`, as torch's error file records it
    error_traceback: str = ""
    batch_size: int = 0  # what it answered at (with `auto`, the size that fit); 0 when it answered nothing


class RankFailedError(RuntimeError):
    """A rank failed; the message names it and carries its own error and traceback. Finished answers are cached."""

    def __init__(self, rank: int | None, where: str, error_type: str, text: str) -> None:
        super().__init__(f"rank {rank} ({where}) failed: {text}" if rank is not None else f"{where}: {text}")
        self.rank, self.error_type = rank, error_type


def parse_devices(text: str) -> list[str]:
    """`--emogate-devices`: `all` (every visible CUDA device) or a comma list of `cuda:N`, or of `cpu` (several CPU
    ranks, for testing). Raise argparse.ArgumentTypeError for an unknown or absent device, a CUDA device named
    twice, or CPU and CUDA mixed (the slow CPU rank would set the pace)."""
    items = [item.strip() for item in text.split(",")]
    if items == ["all"]:
        count = cuda_count()
        if count == 0:
            raise argparse.ArgumentTypeError("'all' means every visible CUDA device, and none is visible")
        return [f"cuda:{index}" for index in range(count)]
    if not all(item == "cpu" or re.fullmatch(r"cuda:\d+", item) for item in items):
        raise argparse.ArgumentTypeError(f"expected all, or a comma list of cuda:N or of cpu; found {text!r}")
    devices = [item if item == "cpu" else f"cuda:{int(item[5:])}" for item in items]
    if "cpu" in devices and any(device != "cpu" for device in devices):
        raise argparse.ArgumentTypeError(f"expected only CUDA devices or only cpu, found both in {text!r}")
    twice = sorted({device for device in devices if device != "cpu" and devices.count(device) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"{', '.join(twice)} named more than once: one rank per CUDA device")
    count = cuda_count() if devices[0] != "cpu" else 0
    absent = [device for device in devices if device != "cpu" and int(device[5:]) >= count]
    if absent:
        visible = {0: "no CUDA device is", 1: "only cuda:0 is"}.get(count, f"only cuda:0 to cuda:{count - 1} are")
        raise argparse.ArgumentTypeError(f"{', '.join(absent)}: not visible ({visible})")
    return devices


def shard(data: Test3Data, missing: Sequence[int], rank: int, world: int) -> list[int]:
    """Rank `rank`'s share of the sample indices `missing`, in input order.

    The transcript is the only part of the prompt whose length varies, so the samples are sorted by its length
    (longest first) and dealt in snake order (ranks 0..W-1, then W-1..0): every rank gets the same count +-1 and
    about the same number of prompt tokens. Every rank computes every share alike, with no communication.
    """
    from pytest_emogate.data import prompt_sentence

    by_length = sorted(missing, key=lambda i: (-len(prompt_sentence(data.samples[i])), i))
    turns = (divmod(position, world) for position in range(len(by_length)))
    owners = (seat if turn % 2 == 0 else world - 1 - seat for turn, seat in turns)
    return sorted(index for index, owner in zip(by_length, owners, strict=True) if owner == rank)


def torchrun_rank() -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) when torchrun started this process as one of several ranks, else None."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    return (rank, world) if world > 1 else None


def is_main_process() -> bool:
    """False only on a torchrun rank other than 0: it answers its shard and neither gates nor reports."""
    ranks = torchrun_rank()
    return ranks is None or ranks[0] == 0


def run_torchrun(
    settings: InferenceSettings,
    data: Test3Data,
    cache_folder: Path,
    missing: Sequence[int],
    *,
    identity: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> list[RankRun]:
    """Under torchrun: answer this rank's shard of rank 0's `missing` and gather every answer to rank 0.

    Every rank calls it once at the same point (the others' `missing` is ignored). `identity` is what every rank
    must share with rank 0 (checkpoint hash, data fingerprint, decoding settings; not the paths or file times of
    a node's own copies): a rank whose differs answers nothing and fails the run, naming the fields. On rank 0
    it returns every rank's RankRun once all answers are in `cache_folder`; if a rank failed, it first caches
    the answers that arrived, then raises that rank's error. Other ranks return their own RankRun and never raise
    an inference error, which rank 0 reports: a rank exiting non-zero would make torchrun stop rank 0 first.
    """
    import torch
    import torch.distributed as dist

    from pytest_emogate.inference.cache import AnswerCache

    ranks = torchrun_rank()
    if ranks is None:
        raise RuntimeError("run_torchrun needs torchrun's RANK and WORLD_SIZE (WORLD_SIZE > 1)")
    rank, world = ranks
    cuda = settings.device != "cpu" and torch.cuda.is_available()
    device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if cuda else "cpu"
    init_group(cuda)
    try:
        plan: list[Any] = [list(missing), dict(identity or {})] if rank == 0 else [None, None]
        dist.broadcast_object_list(plan, src=0)
        shared = {"missing": plan[0], "identity": plan[1]}
        run, finished, own_error = _own_shard(settings, data, device, cache_folder, shared, identity, progress)
        gathered: list[Any] | None = [None] * world if rank == 0 else None
        try:
            dist.gather_object((run, finished), gathered, dst=0)  # a failed rank's finished batches too
        except RuntimeError as error:  # a peer died: gloo sees its sockets close
            if rank != 0:
                raise
            where = "a rank died before its answers reached rank 0"
            raise RankFailedError(
                None, where, type(error).__name__, f"{error}; rank 0's own answers are cached"
            ) from error
    finally:
        dist.destroy_process_group()
    if rank != 0:
        if run.error:
            print(f"emogate rank {rank}: {run.error.splitlines()[0]} (rank 0 reports it)", file=sys.stderr)
        return [run]
    assert gathered is not None
    cache = AnswerCache(cache_folder)
    have = cache.load()
    cache.for_rank(0).append(p for _, arrived in gathered for p in arrived if p.name not in have)
    if own_error is not None:
        raise own_error
    runs = [arrived_run for arrived_run, _ in gathered]
    failed = next((r for r in runs if r.error), None)
    if failed is not None and failed.error is not None:
        raise rank_error(failed.rank, f"{failed.device} on {failed.host}", failed.error, failed.error_traceback)
    return runs


def _own_shard(
    settings: InferenceSettings, data: Test3Data, device: str, cache_folder: Path, shared: dict[str, Any],
    identity: Mapping[str, Any] | None, progress: bool,
) -> tuple[RankRun, list[Prediction], Exception | None]:  # fmt: skip
    """This torchrun rank's shard of rank 0's missing samples: its summary, the answers it finished, its error."""
    from pytest_emogate.inference.cache import AnswerCache

    rank, world = torchrun_rank() or (0, 1)
    run, finished, cache = RankRun(rank, device, socket.gethostname()), [], AnswerCache(cache_folder).for_rank(rank)

    def keep(batch: list[Prediction]) -> None:
        cache.append(batch)
        finished.extend(batch)

    try:
        mine, theirs = dict(identity or {}), shared["identity"]
        differ = sorted(name for name in mine.keys() | theirs.keys() if mine.get(name) != theirs.get(name))
        if differ:
            raise RuntimeError(f"{', '.join(differ)} differ from rank 0's: every rank must run the same model on "
                               "the same data with the same settings")  # fmt: skip
        if settings.device not in ("cpu", "auto") and not device.startswith("cuda"):
            raise RuntimeError(f"--emogate-device {settings.device}: no CUDA device is visible")
        indices = shard(data, shared["missing"], rank, world)
        run = answer_shard(settings, data, device, indices, keep, rank, progress=progress and rank == 0)
    except Exception as error:  # travels to rank 0 in the gather instead of killing this rank
        failed = replace(run, error=f"{type(error).__name__}: {error}", error_traceback=traceback.format_exc())
        return failed, finished, error
    return run, finished, None


def answer_shard(
    settings: InferenceSettings, data: Test3Data, device: str, indices: Sequence[int],
    on_batch: Callable[[list[Prediction]], None], rank: int, *, progress: bool,
) -> RankRun:  # fmt: skip
    """One rank's work: load the model once on `device`, answer `indices`, hand each finished batch to `on_batch`."""
    from pytest_emogate.inference.run import run_inference

    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(device)
    run = run_inference(replace(settings, device=device), data, progress=progress, indices=indices, on_batch=on_batch)
    host = socket.gethostname()
    return RankRun(rank, device, host, len(run.predictions), run.capped, dict(run.timings_s), tuple(run.notes),
                   batch_size=run.batch_size)  # fmt: skip


def init_group(cuda: bool) -> None:
    """Join the process group that the launcher's environment describes (MASTER_ADDR, RANK, WORLD_SIZE)."""
    import torch.distributed as dist

    # NCCL for CUDA tensors (initialised only if one is ever sent); objects always travel over gloo, in host memory.
    dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)


def rank_error(rank: int, where: str, error: str, stack: str) -> Exception:
    """From a rank's `Type: message` and traceback: pytest.UsageError for a usage error (exit 4, as in one
    process), else RankFailedError with the traceback."""
    error_type, _, message = error.partition(": ")
    if error_type == "UsageError":
        import pytest

        return pytest.UsageError(f"rank {rank} ({where}): {message}")
    return RankFailedError(rank, where, error_type, f"{error}\n{stack.rstrip()}" if stack else error)


def cuda_count() -> int:
    """How many CUDA devices this process sees (0 without torch or CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0
