"""`--emogate-devices`: one inference process per device, started by torch's own elastic launcher.

The machinery behind torchrun (`elastic_launch`): a c10d rendezvous on a free local port, a monitor that stops
every rank when one fails, no restarts (the same input would fail the same way). Each rank answers its shard
into its own answers file in the cache folder and exits; the pytest process reads the answers back from there,
so nothing but a small summary crosses the process boundary. The ranks' output goes to log files, which keeps
the terminal to one progress bar fed by the answers as they land; a rank that dies without a recorded error
is reported with the end of its stderr.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_emogate.inference.distributed import RankFailedError, RankRun, answer_shard, init_group, rank_error, shard

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from pytest_emogate.data import Test3Data
    from pytest_emogate.inference.settings import InferenceSettings

LAUNCHER_LOGGERS = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")
STDERR_TAIL_LINES = 20


def run_distributed(
    settings: InferenceSettings,
    data: Test3Data,
    devices: Sequence[str],
    cache_folder: Path,
    missing: Sequence[int],
    *,
    progress: bool = True,
) -> list[RankRun]:
    """Answer the samples at `missing` with one process per device (no more processes than samples).

    The answers land in `cache_folder` (read them with AnswerCache.load), not in the return value: that is each
    rank's RankRun in rank order. A failed rank stops the others and raises RankFailedError carrying its error,
    or pytest.UsageError when its error was one (a weight file found broken at load), as one process would.
    """
    if not missing:
        return []
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from pytest_emogate.inference.progress import progress_bar

    world = min(len(devices), len(missing))
    with contextlib.ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="emogate-ranks-")))
        stack.enter_context(_launcher_manners())
        advance = stack.enter_context(progress_bar(len(missing), enabled=progress))
        if progress:
            stack.enter_context(_advance_with_answers(cache_folder, advance))
        config = LaunchConfig(
            min_nodes=1, max_nodes=1, nproc_per_node=world, run_id=f"emogate-{uuid.uuid4().hex}",
            rdzv_backend="c10d", rdzv_endpoint="localhost:0",  # as torchrun --standalone: a free local port
            max_restarts=0, logs_specs=DefaultLogsSpecs(log_dir=str(logs), redirects=Std.ALL),
            start_method="spawn",  # never fork a process that may hold CUDA or torch's threads
        )  # fmt: skip
        try:
            runs = elastic_launch(config, _launched_rank)(settings, data, list(devices[:world]), cache_folder, missing)
        except ChildFailedError as error:
            raise _failure(error, devices, logs) from None
    return [runs[rank] for rank in sorted(runs)]


def _launched_rank(
    settings: InferenceSettings, data: Test3Data, devices: list[str], cache_folder: Path, missing: Sequence[int]
) -> RankRun:
    """One launched rank: its device, its shard, its answers file; its error goes where the launcher reads it."""
    try:
        import torch
        import torch.distributed as dist

        from pytest_emogate.inference.cache import AnswerCache

        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        if "OMP_NUM_THREADS" not in os.environ:  # the launcher sets none: share the cores, do not oversubscribe
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        # A member of the group like any torch.distributed worker, though no collective runs: the cache carries
        # the answers, so a slow or dead rank never blocks another.
        init_group(devices[rank] != "cpu")
        try:
            cache = AnswerCache(cache_folder).for_rank(rank)
            indices = shard(data, missing, rank, world)
            return answer_shard(settings, data, devices[rank], indices, cache.append, rank, progress=False)
        finally:
            dist.destroy_process_group()
    except Exception as error:
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        handler = ErrorHandler()
        handler.initialize()
        handler.record_exception(error)  # `Type: message` and the traceback, from this frame down
        raise


def _failure(error: ChildFailedError, devices: Sequence[str], logs: Path) -> Exception:
    """The error of the rank that failed first: the one it recorded, else how it died and the end of its stderr."""
    rank, failure = error.get_first_failure()
    recorded = failure.error_file_data.get("message")
    if isinstance(recorded, dict):
        stack = str(recorded.get("extraInfo", {}).get("py_callstack", ""))
        return rank_error(rank, devices[rank], str(recorded.get("message", "")), stack)
    tail = [
        line
        for path in logs.glob(f"*/attempt_*/{failure.local_rank}/stderr.log")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
    ][-STDERR_TAIL_LINES:]
    text = failure.message if failure.exitcode < 0 else f"exit code {failure.exitcode}"
    text += " with no error recorded" + ("; the end of its stderr:" if tail else "")
    return RankFailedError(rank, devices[rank], "", text + "".join(f"\n  {line}" for line in tail))


@contextlib.contextmanager
def _launcher_manners() -> Iterator[None]:
    """Keep the launcher from logging what the raised error will say, and give pytest back its signal handlers
    (the launcher installs its own and never restores them)."""
    import logging
    import signal

    from torch.distributed.elastic.multiprocessing.api import SignalException

    loggers = [logging.getLogger(name) for name in LAUNCHER_LOGGERS]
    levels = [logger.level for logger in loggers]
    signals = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT]
    handlers = [signal.getsignal(number) for number in signals]
    variable = os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE")
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    except SignalException as error:
        if error.sigval == signal.SIGINT:  # Ctrl-C reaches pytest as the interruption it knows
            raise KeyboardInterrupt from None
        raise
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        for number, handler in zip(signals, handlers, strict=True):
            signal.signal(number, handler)
        if variable is None:
            os.environ.pop("TORCHELASTIC_SIGNALS_TO_HANDLE", None)
        else:
            os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = variable


@contextlib.contextmanager
def _advance_with_answers(folder: Path, advance: Callable[[int], None]) -> Iterator[None]:
    """Move the progress bar as the ranks append answer lines to the cache folder (polled twice a second)."""

    def lines() -> int:
        return sum(path.read_bytes().count(b"\n") for path in folder.glob("answers*.jsonl"))

    stop, seen = threading.Event(), lines()

    def poll() -> None:
        nonlocal seen
        while not stop.wait(0.5):
            now = lines()
            advance(max(0, now - seen))
            seen = max(seen, now)

    thread = threading.Thread(target=poll, name="emogate-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
