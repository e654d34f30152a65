"""Inference on several ranks (CPU, gloo): `--emogate-devices cpu,cpu` and a 2-rank torchrun run of pytest gate
like one process, shards are length-balanced, and a failed rank fails the run with its error while its finished
answers stay cached.

The runs use a 42-sample slice of the tiny data set (every 20th sample): a rank costs more to start (torch,
transformers, the model) than its answers, and the slice keeps this file near a minute on two idle cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_emogate.inference import distributed
from pytest_emogate.inference.cache import AnswerCache
from pytest_emogate.inference.distributed import RankFailedError, parse_devices, shard, torchrun_rank
from tests.conftest import REPO, TINY, TINY_SETTINGS

pytest.importorskip("torch")
pytest.importorskip("transformers")

from pytest_emogate.data import Test3Data, load_test3, prompt_sentence
from pytest_emogate.inference.launch import run_distributed

STEP = 20
SETTINGS = dataclasses.replace(TINY_SETTINGS, batch_size=8)


def write_slice(root: Path, *, without_face: str | None = None) -> Path:
    """A manifest over every 20th sample of the tiny data set. `without_face` names a sample whose Face feature
    file is left out: it fails only when inference reaches it (these direct runs have no preflight)."""
    data = TINY / "data"
    lines = (data / "relative_test3_NCEV.txt").read_text(encoding="utf-8").splitlines()[::STEP]
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotation.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    face = data / "mae_340_UTT"
    if without_face is not None:
        face = root / "face"
        face.mkdir()
        for line in lines:
            name = line.split()[0]
            if name != without_face:
                (face / f"{name}.npy").symlink_to(data / "mae_340_UTT" / f"{name}.npy")
    manifest = {
        "annotation": str(root / "annotation.txt"), "transcripts": str(data / "transcription_en_all.csv"),
        "features": {"face": str(face), "video": str(data / "maeV_399_UTT"), "audio": str(data / "HL-UTT")},
        "frames": str(data / "test3"),
    }  # fmt: skip
    (root / "manifest.yaml").write_text(json.dumps(manifest), encoding="utf-8")
    return root / "manifest.yaml"


@pytest.fixture(scope="module")
def sliced(tmp_path_factory: pytest.TempPathFactory) -> Test3Data:
    """The 42-sample slice, read."""
    return load_test3(write_slice(tmp_path_factory.mktemp("slice")))


def gate(root: Path, *extra: str, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """pytest with the gate on the slice's tiny model, its cache, report and answers under `root`."""
    command = [
        sys.executable, *launcher, "-m", "pytest", "-p", "no:cacheprovider", "--emogate-only", "--emogate-no-history",
        f"--emogate-ckpt={TINY / 'checkpoint_best.pth'}", f"--emogate-llama={TINY / 'llama'}",
        f"--emogate-vit={TINY / 'eva_vit_g.pth'}", f"--emogate-data={write_slice(root)}", "--emogate-device=cpu",
        f"--emogate-thresholds={TINY / 'thresholds.yaml'}", "--emogate-batch-size=8",
        f"--emogate-cache={root / 'cache'}", f"--emogate-report={root / 'report.json'}",
        f"--emogate-save-predictions={root / 'answers.jsonl'}", *extra,
    ]  # fmt: skip
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)


def outputs(root: Path) -> dict[str, str]:
    """The answers a run saved, by sample name."""
    rows = [json.loads(line) for line in (root / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    return {row["name"]: row["output"] for row in rows}


def verdict(root: Path) -> dict[str, Any]:
    """What a report says about the model: everything but provenance and timings."""
    report = json.loads((root / "report.json").read_text(encoding="utf-8"))
    return {key: value for key, value in report.items() if key not in ("provenance", "timings_s")}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-process gate run on the slice: the report, answers and exit status every distributed run must
    reproduce (the tiny model's floors are set for all 834 samples, so on the slice some checks fail)."""
    root = tmp_path_factory.mktemp("one-process")
    done = gate(root)
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    return root


def everything(data: Test3Data) -> list[int]:
    return list(range(len(data.samples)))


@pytest.mark.parametrize(
    ("text", "devices"),
    [
        ("cpu,cpu", ["cpu", "cpu"]),
        (" cpu, cpu ,cpu", ["cpu", "cpu", "cpu"]),
        ("cuda:1,cuda:0", ["cuda:1", "cuda:0"]),
        ("cuda:00,cuda:1", ["cuda:0", "cuda:1"]),
        ("all", ["cuda:0", "cuda:1"]),
    ],
)
def test_devices(monkeypatch: pytest.MonkeyPatch, text: str, devices: list[str]) -> None:
    monkeypatch.setattr(distributed, "cuda_count", lambda: 2)
    assert parse_devices(text) == devices


@pytest.mark.parametrize(
    ("text", "visible", "message"),
    [
        ("gpu0", 2, "expected all, or a comma list of cuda:N or of cpu; found 'gpu0'"),
        ("cuda", 2, "expected all, or a comma list of cuda:N or of cpu; found 'cuda'"),
        ("cpu,", 2, "expected all, or a comma list of cuda:N or of cpu; found 'cpu,'"),
        ("", 2, "expected all, or a comma list of cuda:N or of cpu; found ''"),
        ("cuda:0,cpu", 2, "expected only CUDA devices or only cpu, found both in 'cuda:0,cpu'"),
        ("cuda:0,cuda:1,cuda:0", 2, "cuda:0 named more than once: one rank per CUDA device"),
        ("cuda:1,cuda:2,cuda:3", 2, "cuda:2, cuda:3: not visible (only cuda:0 to cuda:1 are)"),
        ("cuda:0,cuda:1", 0, "cuda:0, cuda:1: not visible (no CUDA device is)"),
        ("cuda:0,cuda:1", 1, "cuda:1: not visible (only cuda:0 is)"),
        ("all", 0, "'all' means every visible CUDA device, and none is visible"),
    ],
)
def test_bad_devices(monkeypatch: pytest.MonkeyPatch, text: str, visible: int, message: str) -> None:
    monkeypatch.setattr(distributed, "cuda_count", lambda: visible)
    with pytest.raises(argparse.ArgumentTypeError) as error:
        parse_devices(text)
    assert str(error.value) == message


@pytest.mark.parametrize("world", [2, 3, 8])
def test_shards_split_the_missing_samples_evenly_by_prompt_length(world: int) -> None:
    data = load_test3(TINY / "data")
    missing = [i for i in range(len(data.samples)) if i % 7 != 3]  # some answers are cached already
    shards = [shard(data, missing, rank, world) for rank in range(world)]
    assert sorted(i for part in shards for i in part) == missing
    assert all(part == sorted(part) for part in shards)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    lengths = [sum(len(prompt_sentence(data.samples[i])) for i in part) for part in shards]
    longest = max(len(prompt_sentence(data.samples[i])) for i in missing)
    assert max(lengths) - min(lengths) <= longest  # snake dealing: within one transcript of each other
    assert shards == [shard(data, list(reversed(missing)), rank, world) for rank in range(world)]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TORCHELASTIC_RUN_ID": "x", "RANK": "1", "WORLD_SIZE": "4"}, (1, 4)),
        ({"TORCHELASTIC_RUN_ID": "x", "RANK": "0", "WORLD_SIZE": "1"}, None),  # one rank: an ordinary run
        ({"RANK": "1", "WORLD_SIZE": "4"}, None),  # not started by torchrun
        ({"TORCHELASTIC_RUN_ID": "x", "RANK": "one", "WORLD_SIZE": "4"}, None),
        ({}, None),
    ],
)
def test_torchrun_rank(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: tuple[int, int] | None) -> None:
    for name in ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert torchrun_rank() == expected
    assert distributed.is_main_process() == (expected is None or expected[0] == 0)


@pytest.mark.slow
def test_a_failed_launched_rank_fails_the_run_with_its_error_and_its_finished_answers_stay_cached(
    tmp_path: Path, sliced: Test3Data, one_process: Path
) -> None:
    # Rank 1's shortest prompt runs in its last batch: its two full batches of 8 are cached before it fails.
    victim = min(shard(sliced, everything(sliced), 1, 2), key=lambda i: len(prompt_sentence(sliced.samples[i])))
    name = sliced.samples[victim].name
    broken = load_test3(write_slice(tmp_path / "broken", without_face=name))
    cache = AnswerCache.open(tmp_path, {"test": "failure"})
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(RankFailedError) as error:
        run_distributed(SETTINGS, broken, ["cpu", "cpu"], cache.folder, everything(broken), progress=False)
    assert {number: signal.getsignal(number) for number in handlers} == handlers  # the launcher's are gone
    message = str(error.value)
    assert message.startswith(f"rank 1 (cpu) failed: FileNotFoundError: sample {name}: no Face feature file\n")
    assert "Traceback (most recent call last):" in message and error.value.error_type == "FileNotFoundError"
    kept = cache.load()
    assert (cache.folder / "answers-rank1.jsonl").read_text(encoding="utf-8").count("\n") >= 16
    reference = outputs(one_process)
    assert name not in kept and all(kept[n].output == reference[n] for n in kept)  # a rerun infers only the rest


@pytest.mark.slow
def test_under_torchrun_a_failed_rank_fails_rank_0_with_its_error_and_its_finished_answers_reach_rank_0(
    tmp_path: Path, sliced: Test3Data, one_process: Path
) -> None:
    victim = min(shard(sliced, everything(sliced), 1, 2), key=lambda i: len(prompt_sentence(sliced.samples[i])))
    name = sliced.samples[victim].name
    manifests = [write_slice(tmp_path / "good"), write_slice(tmp_path / "broken", without_face=name)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(REPO / "tests" / "torchrun_driver.py"), str(tmp_path), *map(str, manifests)]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr  # rank 1 leaves the failure for rank 0 to report
    assert f"emogate rank 1: FileNotFoundError: sample {name}: no Face feature file (rank 0 reports it)" in done.stderr
    result = json.loads((tmp_path / "rank0.json").read_text(encoding="utf-8"))
    assert result["error"].startswith("rank 1 (cpu on ") and result["error_type"] == "FileNotFoundError"
    assert f"failed: FileNotFoundError: sample {name}: no Face feature file\nTraceback" in result["error"]
    kept = AnswerCache(Path(result["cache"])).load()  # rank 0's own node: rank 1's finished batches arrived
    reference = outputs(one_process)
    assert len(kept) >= 21 + 16 and name not in kept and all(kept[n].output == reference[n] for n in kept)


@pytest.mark.slow
def test_devices_cpu_cpu_gate_exactly_like_one_process(tmp_path: Path, one_process: Path) -> None:
    done = gate(tmp_path, "--emogate-devices=cpu,cpu")
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert outputs(tmp_path) == outputs(one_process) and verdict(tmp_path) == verdict(one_process)
    assert sorted(path.name for path in (tmp_path / "cache").glob("*/answers*")) == [
        "answers-rank0.jsonl", "answers-rank1.jsonl"
    ]  # fmt: skip


@pytest.mark.slow
def test_pytest_under_torchrun_gates_exactly_like_one_process(tmp_path: Path, one_process: Path) -> None:
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2")
    done = gate(tmp_path, launcher=torchrun)
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr  # rank 0's verdict
    assert outputs(tmp_path) == outputs(one_process) and verdict(tmp_path) == verdict(one_process)
    assert done.stdout.count("emogate summary") == 1  # only rank 0 gates and prints


def test_a_usage_error_in_a_rank_stays_a_usage_error_and_others_carry_their_traceback() -> None:
    text = "UsageError: checkpoint x.pth: 1 problem\n  - truncated"
    usage = distributed.rank_error(1, "cuda:1", text, "Traceback ...")
    assert isinstance(usage, pytest.UsageError)
    assert str(usage) == "rank 1 (cuda:1): checkpoint x.pth: 1 problem\n  - truncated"
    other = distributed.rank_error(0, "cpu on node-a", "ValueError: boom", "Traceback (most recent call last):\n")
    assert isinstance(other, RankFailedError) and other.rank == 0 and other.error_type == "ValueError"
    assert str(other) == "rank 0 (cpu on node-a) failed: ValueError: boom\nTraceback (most recent call last):"


def test_a_rank_killed_by_a_signal_is_reported_with_the_end_of_its_stderr(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pytest_emogate.inference.launch import _Rank

    plan = tmp_path / "plan.pickle"
    stderr = tmp_path / "rank1.stderr.log"
    stderr.write_text("".join(f"line {n}\n" for n in range(30)) + "CUDA out of memory\n", encoding="utf-8")
    killed = _Rank(1, "cuda:1", plan, SimpleNamespace(returncode=-9))  # type: ignore[arg-type]
    error = killed.failure()
    assert isinstance(error, RankFailedError) and error.rank == 1
    lines = str(error).splitlines()
    assert lines[0] == (
        "rank 1 (cuda:1) failed: killed by signal 9 (SIGKILL) with no error recorded; the end of its stderr:"
    )
    assert lines[1:] == [f"  line {n}" for n in range(11, 30)] + ["  CUDA out of memory"]
