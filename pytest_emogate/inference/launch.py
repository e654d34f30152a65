"""`--emogate-devices`: one inference process per device, started, watched and reaped by the pytest process.

Each rank is a fresh interpreter (never a fork of a process that may hold CUDA or torch's threads). It reads the
run's plan (settings, data, devices, cache folder, missing samples) from a file the pytest process wrote, answers
its shard into its own answers file in the cache folder, writes what it did to a result file and exits. No
collective runs between the ranks: the answers travel through the cache folder, so a slow or dead rank never
blocks another, and nothing but a small summary crosses the process boundary. The ranks' output goes to log
files, which keeps the terminal to one progress bar fed by the answers as they land.

The pytest process waits on every rank it starts, whatever ends the run (a failure, Ctrl-C), so no rank is left
running or a zombie. A failed rank stops the others, and the run ends with its recorded error, or with how it
died (the signal that killed it, or its exit code) and the end of its stderr. A rank whose answers are written
but that has not exited `RANK_EXIT_GRACE_S` later is stopped (SIGTERM, then SIGKILL), reaped and noted in the
summary. A rank whose pytest process dies stops itself, so an orphan never appends to a cache a rerun reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_emogate.files import FileProblem, MiB, atomic_write_text, open_checked
from pytest_emogate.inference.distributed import RankFailedError, RankRun, answer_shard, rank_error, shard

if TYPE_CHECKING:
    from pytest_emogate.data import Test3Data
    from pytest_emogate.inference.settings import InferenceSettings

RANK_EXIT_GRACE_S = 10.0
"""How long a rank whose answers are all written may take to exit before it is stopped."""
STOP_GRACE_S = 5.0
"""How long a stopped rank has between SIGTERM and SIGKILL, and after SIGKILL before it is given up on."""
POLL_S = 0.1
STDERR_TAIL_LINES = 20
STDERR_TAIL_BYTES = 64 * 1024
RANK_MAIN = "import sys; from pytest_emogate.inference.launch import rank_main; sys.exit(rank_main(sys.argv[1:]))"


@dataclass(frozen=True)
class RankPlan:
    """What every rank of one launch reads: the settings, the data, each rank's device, where the answers go and
    which samples are missing."""

    settings: InferenceSettings
    data: Test3Data
    devices: list[str]
    cache_folder: Path
    missing: list[int]


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
    Every rank started is reaped before this returns or raises.
    """
    if not missing:
        return []
    from pytest_emogate.inference.progress import progress_bar

    world = min(len(devices), len(missing))
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="emogate-ranks-")))
        plan = work / "plan.pickle"
        plan.write_bytes(pickle.dumps(RankPlan(settings, data, list(devices[:world]), cache_folder, list(missing))))
        advance = stack.enter_context(progress_bar(len(missing), enabled=progress))
        if progress:
            stack.enter_context(_advance_with_answers(cache_folder, advance))
        ranks: list[_Rank] = []
        stack.callback(_stop, ranks)  # runs first on the way out: every rank is reaped, whatever happened
        for rank in range(world):
            ranks.append(_Rank.start(rank, devices[rank], plan))
        return _watch(ranks)


def rank_command(plan: Path, rank: int) -> list[str]:
    """The command line of rank `rank`: a fresh interpreter running `rank_main` on the plan."""
    return [sys.executable, "-c", RANK_MAIN, str(plan), str(rank), str(os.getpid())]


def result_path(plan: Path, rank: int) -> Path:
    """Where rank `rank` writes its RankRun (JSON) once its answers are written."""
    return plan.parent / f"rank{rank}.result.json"


def error_path(plan: Path, rank: int) -> Path:
    """Where rank `rank` writes its error (`Type: message` and the traceback) when it fails."""
    return plan.parent / f"rank{rank}.error.json"


def write_result(plan: Path, rank: int, run: RankRun) -> None:
    """Say that rank `rank` is done: its answers are in the cache, and this is what it did."""
    atomic_write_text(result_path(plan, rank), json.dumps(dataclasses.asdict(run)))


def rank_main(argv: Sequence[str]) -> int:
    """One launched rank: `PLAN RANK PARENT_PID`. Answer the shard, write the result or the error; 0 or 1."""
    plan_path, rank, parent = Path(argv[0]), int(argv[1]), int(argv[2])
    _exit_with(parent)
    try:
        import torch

        from pytest_emogate.inference.cache import AnswerCache

        plan: RankPlan = pickle.loads(plan_path.read_bytes())  # written by our own pytest process
        world = len(plan.devices)
        if "OMP_NUM_THREADS" not in os.environ:  # share the cores, do not oversubscribe
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        cache = AnswerCache(plan.cache_folder).for_rank(rank)
        indices = shard(plan.data, plan.missing, rank, world)
        device = plan.devices[rank]
        run = answer_shard(plan.settings, plan.data, device, indices, cache.append, rank, progress=False)
    except Exception as error:
        record = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        atomic_write_text(error_path(plan_path, rank), json.dumps(record))
        traceback.print_exc()
        return 1
    write_result(plan_path, rank, run)
    return 0


@dataclass
class _Rank:
    """One started rank: its process and logs, and when its result appeared."""

    rank: int
    device: str
    plan: Path
    process: subprocess.Popen[bytes]
    done_at: float | None = None
    stopped: bool = False

    @classmethod
    def start(cls, rank: int, device: str, plan: Path) -> _Rank:
        with _log(plan, rank, "stdout").open("wb") as stdout, _log(plan, rank, "stderr").open("wb") as stderr:
            process = subprocess.Popen(rank_command(plan, rank), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        return cls(rank, device, plan, process)

    def run(self) -> RankRun:
        """The rank's RankRun, with a note when it had to be stopped or died after its answers were written."""
        recorded = json.loads(result_path(self.plan, self.rank).read_text(encoding="utf-8"))
        run = RankRun(**{**recorded, "notes": tuple(recorded.get("notes", ()))})
        code = self.process.returncode
        if self.stopped:
            note = f"not exited {RANK_EXIT_GRACE_S:g} s after its answers were written, so it was stopped"
        elif code != 0:
            note = f"{_death(code)} after its answers were written"
        else:
            return run
        return dataclasses.replace(run, notes=(*run.notes, f"rank {self.rank} ({self.device}): {note}"))

    def failure(self) -> Exception:
        """The rank's recorded error, else how it died and the end of its stderr."""
        recorded = _json(error_path(self.plan, self.rank))
        if recorded is not None:
            return rank_error(
                self.rank, self.device, str(recorded.get("error", "")), str(recorded.get("traceback", ""))
            )
        tail = _tail(_log(self.plan, self.rank, "stderr"))
        text = f"{_death(self.process.returncode)} with no error recorded" + (
            "; the end of its stderr:" if tail else ""
        )
        return RankFailedError(self.rank, self.device, "", text + "".join(f"\n  {line}" for line in tail))


def _watch(ranks: list[_Rank]) -> list[RankRun]:
    """Wait until every rank has exited with its result; a rank that fails ends the wait with its error."""
    while True:
        now = time.monotonic()
        for rank in ranks:
            code = rank.process.poll()
            if rank.done_at is None and result_path(rank.plan, rank.rank).exists():
                rank.done_at = now
            if code is not None and rank.done_at is None:
                raise rank.failure()  # the caller stops the others
            if code is None and rank.done_at is not None and now - rank.done_at > RANK_EXIT_GRACE_S:
                rank.stopped = True
                _stop([rank])
        if all(rank.process.returncode is not None for rank in ranks):
            return [rank.run() for rank in ranks]
        time.sleep(POLL_S)


def _stop(ranks: list[_Rank]) -> None:
    """Stop every rank still running (SIGTERM, then SIGKILL) and reap each; a rank stuck in the kernel after
    SIGKILL is given up on rather than hanging pytest."""
    running = [rank.process for rank in ranks if rank.process.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_GRACE_S)


def _death(code: int | None) -> str:
    """How a process ended, from its return code: `killed by signal 9 (SIGKILL)` or `exit code 1`."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            return f"killed by signal {-code}"
        return f"killed by signal {-code} ({name})"
    return f"exit code {code}"


def _log(plan: Path, rank: int, stream: str) -> Path:
    return plan.parent / f"rank{rank}.{stream}.log"


def _tail(path: Path) -> list[str]:
    """The last lines of a rank's log (its last 64 KiB at most)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - STDERR_TAIL_BYTES))
            text = handle.read(STDERR_TAIL_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.split("\n") if line.strip()][-STDERR_TAIL_LINES:]


def _json(path: Path) -> dict[str, Any] | None:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _exit_with(parent: int) -> None:
    """Exit this rank as soon as its pytest process is gone (killed, or exited without reaping it)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="emogate-parent", daemon=True).start()


@contextlib.contextmanager
def _advance_with_answers(folder: Path, advance: Callable[[int], None]) -> Iterator[None]:
    """Move the progress bar as the ranks append answer lines to the cache folder (polled twice a second)."""
    from pytest_emogate.inference.cache import ANSWER_FILES, ANSWERS_LIMIT

    def count(path: Path) -> int:
        try:
            with open_checked(path, ANSWERS_LIMIT) as handle:
                return sum(block.count(b"\n") for block in iter(lambda: handle.read(MiB), b""))
        except FileProblem:
            return 0

    def lines() -> int:
        return sum(count(path) for path in folder.glob(ANSWER_FILES))

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
