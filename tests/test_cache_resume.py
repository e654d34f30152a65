"""The answer cache end to end: a SIGKILLed run resumes without losing answers, a rerun infers nothing, and
pytest-xdist workers infer once between them. Runs the tiny model on a 240-sample slice of its data set."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY, sliced_manifest

pytest.importorskip("torch")
SLICE = 240
pytestmark = pytest.mark.slow  # subprocesses running the tiny model


@pytest.fixture
def sliced(tmp_path: Path) -> Path:
    """A manifest over the first 240 samples of the tiny data set (every class present)."""
    sliced_manifest(tmp_path, SLICE)
    (tmp_path / "thresholds.yaml").write_text("labels: [neutral, angry, happy, sad, worried, surprise]\n"
                                              "overall: {accuracy: 0.5}\n", encoding="utf-8")  # fmt: skip
    return tmp_path


def command(root: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--emogate-only", "--emogate-no-history",
        f"--emogate-ckpt={TINY / 'checkpoint_best.pth'}", f"--emogate-llama={TINY / 'llama'}",
        f"--emogate-vit={TINY / 'eva_vit_g.pth'}", f"--emogate-data={root / 'manifest.yaml'}",
        f"--emogate-thresholds={root / 'thresholds.yaml'}", "--emogate-device=cpu", f"--emogate-cache={root / 'cache'}",
        "--emogate-batch-size=8", *extra,
    ]  # fmt: skip


def answer_lines(root: Path) -> list[str]:
    files = list((root / "cache").glob("*/answers*.jsonl"))
    return [line for file in files for line in file.read_text(encoding="utf-8").splitlines()]


def test_a_killed_run_resumes_and_a_rerun_infers_nothing(sliced: Path) -> None:
    reference = subprocess.run(command(sliced, "--emogate-no-cache", "--emogate-save-predictions=ref.jsonl"),
                               cwd=sliced, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert reference.returncode == 0, reference.stdout + reference.stderr
    assert not (sliced / "cache").exists()

    victim = subprocess.Popen(command(sliced), cwd=sliced, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while len(answer_lines(sliced)) < 5 * 8 and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    finished = len(answer_lines(sliced))
    assert 0 < finished < SLICE, "the run was not killed mid-way"

    resumed = subprocess.run(command(sliced, "--emogate-save-predictions=resumed.jsonl"), cwd=sliced,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    cached = int(re.search(r"^answers: (\d+) from the cache", resumed.stdout, re.MULTILINE).group(1))
    assert cached >= finished - 8  # at most the batch being written when it died is lost
    assert f"{SLICE - cached} inferred" in resumed.stdout
    assert (sliced / "resumed.jsonl").read_text(encoding="utf-8") == (sliced / "ref.jsonl").read_text(encoding="utf-8")
    assert len(answer_lines(sliced)) == SLICE

    again = subprocess.run(command(sliced), cwd=sliced, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert f"answers: {SLICE} from the cache, 0 inferred" in again.stdout
    assert "inference: " not in again.stdout


def test_xdist_workers_infer_once(sliced: Path) -> None:
    pytest.importorskip("xdist")
    run = subprocess.run(command(sliced, "-n", "2"), cwd=sliced, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(answer_lines(sliced)) == SLICE  # a second worker that inferred too would have appended again
    assert run.stdout.count("emogate summary") == 1
    assert f"answers: 0 from the cache, {SLICE} inferred by the pytest-xdist workers" in run.stdout
    assert f"inference: {SLICE} samples on cpu in " in run.stdout  # the worker that inferred says how
