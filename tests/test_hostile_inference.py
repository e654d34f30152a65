"""Inference against hostile conditions: the preflight lists a missing model path and a broken sample in one
error; the xdist controller reports what its workers inferred; launched ranks are all reaped, a rank that exits
late is stopped after a grace period, and a rank killed by a signal is reported as such, never a hang."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_emogate.inference import launch
from pytest_emogate.inference.distributed import RankFailedError, RankRun
from pytest_emogate.inference.run import InferenceRun
from pytest_emogate.inference.settings import InferenceSettings
from pytest_emogate.predictions import Prediction
from tests.conftest import TINY, TINY_SETTINGS

pytest.importorskip("torch")

from pytest_emogate.data import Test3Data, load_test3
from pytest_emogate.inference.sources import CheckpointInference

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")


@pytest.fixture(scope="module")
def tiny_data() -> Test3Data:
    return load_test3(TINY / "data")


def broken_data(root: Path) -> Path:
    data = root / "data"
    shutil.copytree(TINY / "data", data)
    (data / "HL-UTT" / "samplenew_00000007.npy").unlink()
    return data


def test_a_missing_llama_and_a_broken_sample_are_listed_in_one_error(tmp_path: Path) -> None:
    data = broken_data(tmp_path)
    settings = dataclasses.replace(TINY_SETTINGS, llama=tmp_path / "nowhere")
    with pytest.raises(pytest.UsageError) as error:
        CheckpointInference.prepare(settings, data, LABELS, tmp_path / "cache")
    lines = str(error.value).splitlines()
    assert lines[0].startswith("emogate inference (Test3 data ") and lines[0].endswith(": 2 problems")
    assert lines[1] == f"  - --emogate-llama: {tmp_path / 'nowhere'} does not exist"
    assert lines[2].startswith("  - sample samplenew_00000007: HL-UTT/samplenew_00000007.npy: expected a ")
    assert len(lines) == 3


def test_a_missing_vit_a_broken_checkpoint_and_a_label_are_listed_in_one_error(tmp_path: Path) -> None:
    data = broken_data(tmp_path)
    ckpt = tmp_path / "checkpoint.pth"
    ckpt.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    settings = dataclasses.replace(TINY_SETTINGS, ckpt=ckpt, vit=tmp_path / "vit")
    (tmp_path / "vit").mkdir()
    labels = tuple(label for label in LABELS if label != "surprise")  # 14 samples: every problem is shown
    with pytest.raises(pytest.UsageError) as error:
        CheckpointInference.prepare(settings, data, labels, tmp_path / "cache")
    text = str(error.value)
    assert f"  - --emogate-vit: {tmp_path / 'vit'} is a directory; expected a regular file\n" in text
    assert f"  - checkpoint {ckpt}" in text  # the checkpoint's own error, indented under the list
    assert "found 'surprise'" in text
    assert "sample samplenew_00000007: HL-UTT/samplenew_00000007.npy: expected a " in text


def test_a_model_problem_alone_keeps_its_own_message(tmp_path: Path) -> None:
    settings = dataclasses.replace(TINY_SETTINGS, vit=tmp_path / "none.pth")
    with pytest.raises(pytest.UsageError) as error:
        CheckpointInference.prepare(settings, TINY / "data", LABELS, tmp_path / "cache")
    assert (
        str(error.value) == f"emogate inference: 1 problem\n  - --emogate-vit: {tmp_path / 'none.pth'} does not exist"
    )


def fake_inference(calls: list[int]) -> Any:
    """run_inference without a model: every sample answered with its gold label, in two batches."""

    def run(settings: InferenceSettings, data: Test3Data, *, indices: list[int], on_batch: Any, **_: Any) -> Any:
        calls.append(len(indices))
        answers = [Prediction(data.samples[i].name, data.samples[i].label, data.samples[i].label) for i in indices]
        half = len(answers) // 2
        on_batch(answers[:half])
        on_batch(answers[half:])
        return InferenceRun(answers, 0, "cpu", {"load": 1.5, "inference": 7.25})

    return run


def test_the_xdist_controller_reports_what_its_workers_inferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_emogate.inference import run

    calls: list[int] = []
    monkeypatch.setattr(run, "run_inference", fake_inference(calls))
    root = tmp_path / "cache"
    worker_a, worker_b, controller = (CheckpointInference.prepare(TINY_SETTINGS, TINY / "data", LABELS, root)
                                      for _ in range(3))  # fmt: skip
    worker_a.predictions()
    worker_b.predictions()  # it waited on the lock, then read what worker a inferred
    assert calls == [834]
    assert worker_a.work()["inferred"] == 834 and worker_b.work()["inferred"] == 0
    assert controller.work() == {}  # it has not asked for the answers
    controller.predictions()
    assert controller.notes()[0].startswith("answers: 834 from the cache, 0 inferred")  # what it did itself
    controller.add_work(worker_a.work())
    controller.add_work(worker_b.work())
    notes = controller.notes()
    assert notes[0].startswith("answers: 0 from the cache, 834 inferred by the pytest-xdist workers; cache ")
    assert (
        notes[1]
        == "inference: 834 samples on cpu in 7.2 s (load 1.5 s, batch size 16, mode generate, max 32 new tokens)"
    )
    assert controller.timings() == {"load": 1.5, "inference": 7.25}
    assert controller.provenance()["inference"]["cached"] == 0


def test_the_verdict_recorder_carries_a_workers_work_to_the_controller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_emogate.evaluate.thresholds import load_thresholds
    from pytest_emogate.gate import Gate
    from pytest_emogate.gate_tests import VerdictRecorder
    from pytest_emogate.inference import run

    monkeypatch.setattr(run, "run_inference", fake_inference([]))
    thresholds = load_thresholds(TINY / "thresholds.yaml")
    sources = [CheckpointInference.prepare(TINY_SETTINGS, TINY / "data", LABELS, tmp_path) for _ in range(2)]
    worker, controller = (VerdictRecorder(Gate(thresholds, source)) for source in sources)
    sources[0].predictions()
    worker_config = SimpleNamespace(workeroutput={})
    worker.pytest_sessionfinish(SimpleNamespace(config=worker_config))  # type: ignore[arg-type]
    controller.pytest_sessionfinish(SimpleNamespace(config=SimpleNamespace()))  # type: ignore[arg-type]
    controller.pytest_testnodedown(SimpleNamespace(workeroutput=worker_config.workeroutput), None)
    sources[1].predictions()
    assert "834 inferred by the pytest-xdist workers" in sources[1].notes()[0]


STUB = """
import os, signal, sys, time
from pathlib import Path
from pytest_emogate.inference.distributed import RankRun
from pytest_emogate.inference.launch import write_result, error_path

plan, rank, behaviour = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
(plan.parent / f"started{rank}").write_text(str(os.getpid()))
if behaviour == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if behaviour in ("fine", "late", "stubborn"):
    write_result(plan, rank, RankRun(rank, "cpu", "stub", answered=rank + 1, timings_s={"inference": 0.5}))
if behaviour == "killed":
    print("loading the model", file=sys.stderr)
    print("CUDA out of memory", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
if behaviour == "usage":
    error_path(plan, rank).write_text('{"error": "UsageError: checkpoint x: 1 problem", "traceback": ""}')
    sys.exit(1)
if behaviour == "exit":
    sys.exit(3)
if behaviour != "fine":
    time.sleep(120)
"""


@pytest.fixture
def stub_ranks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Launch stub ranks instead of the model: `stub_ranks(*behaviours)` runs one rank per behaviour."""
    script = tmp_path / "stub_rank.py"
    script.write_text(STUB, encoding="utf-8")
    started: list[subprocess.Popen[bytes]] = []

    class Recorded(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(subprocess, "Popen", Recorded)
    monkeypatch.setattr(launch, "RANK_EXIT_GRACE_S", 0.5)
    monkeypatch.setattr(launch, "STOP_GRACE_S", 0.5)
    data = load_test3(TINY / "data")
    launches = iter(range(100))

    def start(*behaviours: str) -> list[RankRun]:
        monkeypatch.setattr(launch, "rank_command", lambda plan, rank: [sys.executable, str(script), str(plan),
                                                                         str(rank), behaviours[rank]])  # fmt: skip
        monkeypatch.chdir(tmp_path)
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        folder = work / f"ranks{next(launches)}"
        monkeypatch.setattr(tempfile, "TemporaryDirectory", lambda prefix: _Kept(folder))
        return launch.run_distributed(TINY_SETTINGS, data, ["cpu"] * len(behaviours), tmp_path, [0, 1, 2],
                                      progress=False)  # fmt: skip

    start.processes = started  # type: ignore[attr-defined]
    return start


class _Kept:
    """A temporary directory the test can look into (the pid files go beside it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> str:
        self.path.mkdir(parents=True, exist_ok=True)
        return str(self.path)

    def __exit__(self, *_: object) -> None:
        return None


def assert_reaped(stub_ranks: Any, ranks: int) -> None:
    """Every rank process started is gone: waited on, and not a zombie either (kill 0 reaches a zombie)."""
    assert len(stub_ranks.processes) >= ranks
    for process in stub_ranks.processes:
        assert process.returncode is not None
        with pytest.raises(ProcessLookupError):
            os.kill(process.pid, 0)


@pytest.mark.slow
def test_ranks_that_exit_are_reaped_and_their_runs_returned(stub_ranks: Any) -> None:
    runs = stub_ranks("fine", "fine")
    assert [(run.rank, run.answered, run.notes) for run in runs] == [(0, 1, ()), (1, 2, ())]
    assert_reaped(stub_ranks, 2)


@pytest.mark.slow
def test_a_rank_that_exits_late_is_stopped_after_the_grace_period_and_reaped(stub_ranks: Any) -> None:
    started = time.monotonic()
    runs = stub_ranks("fine", "late")
    assert time.monotonic() - started < 10  # the stub would sleep 120 s
    assert runs[1].notes == ("rank 1 (cpu): not exited 0.5 s after its answers were written, so it was stopped",)
    assert_reaped(stub_ranks, 2)


@pytest.mark.slow
def test_a_rank_that_ignores_sigterm_is_killed_and_reaped(stub_ranks: Any) -> None:
    started = time.monotonic()
    runs = stub_ranks("stubborn", "fine")
    assert time.monotonic() - started < 10
    assert runs[0].answered == 1 and "so it was stopped" in runs[0].notes[0]
    assert_reaped(stub_ranks, 2)


@pytest.mark.slow
def test_a_killed_rank_is_reported_as_killed_and_the_others_are_stopped_and_reaped(stub_ranks: Any) -> None:
    started = time.monotonic()
    with pytest.raises(RankFailedError) as error:
        stub_ranks("slow", "killed")
    assert time.monotonic() - started < 10  # rank 0 would sleep 120 s
    assert str(error.value) == (
        "rank 1 (cpu) failed: killed by signal 9 (SIGKILL) with no error recorded; the end of its stderr:\n"
        "  loading the model\n  CUDA out of memory"
    )
    assert error.value.rank == 1
    assert_reaped(stub_ranks, 2)


@pytest.mark.slow
def test_a_rank_exit_code_and_a_recorded_usage_error_are_reported(stub_ranks: Any) -> None:
    with pytest.raises(RankFailedError) as error:
        stub_ranks("slow", "exit")
    assert str(error.value) == "rank 1 (cpu) failed: exit code 3 with no error recorded"
    with pytest.raises(pytest.UsageError) as usage:
        stub_ranks("usage", "slow")
    assert str(usage.value) == "rank 0 (cpu): checkpoint x: 1 problem"
    assert_reaped(stub_ranks, 2)


@pytest.mark.slow
def test_an_interrupted_launch_reaps_every_rank(
    tmp_path: Path, stub_ranks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_sleep, pressed = time.sleep, list[bool]()

    def interrupted(seconds: float) -> None:
        real_sleep(seconds)
        if not pressed and len(list((tmp_path / "work").glob("ranks*/started*"))) == 2:
            pressed.append(True)
            raise KeyboardInterrupt  # Ctrl-C once, when both ranks run

    monkeypatch.setattr(time, "sleep", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stub_ranks("slow", "slow")
    assert_reaped(stub_ranks, 2)


def test_how_a_rank_died_is_named() -> None:
    assert launch._death(-signal.SIGKILL) == "killed by signal 9 (SIGKILL)"
    assert launch._death(-signal.SIGSEGV) == "killed by signal 11 (SIGSEGV)"
    assert launch._death(-200) == "killed by signal 200"
    assert launch._death(1) == "exit code 1"


def test_a_rank_run_round_trips_through_its_result_file(tmp_path: Path) -> None:
    plan = tmp_path / "plan.pickle"
    run = RankRun(1, "cuda:1", "node", 5, 1, {"load": 1.0}, ("a note",))
    launch.write_result(plan, 1, run)
    process = SimpleNamespace(returncode=0)
    rank = launch._Rank(1, "cuda:1", plan, process)  # type: ignore[arg-type]
    assert rank.run() == run
