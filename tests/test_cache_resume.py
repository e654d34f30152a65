"""The answer cache end to end: a SIGKILLed run resumes without losing answers, a rerun infers nothing, and
pytest-xdist workers infer once between them. Runs the tiny model on a 240-sample slice of its data set."""

from __future__ import annotations

import json
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


def test_xdist_workers_without_a_cache_infer_once_and_every_output_is_written(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    sliced_manifest(tmp_path, 24)
    (tmp_path / "thresholds.yaml").write_text("labels: [neutral, angry, happy, sad, worried, surprise]\n"
                                              "overall: {accuracy: 0.1}\n", encoding="utf-8")  # fmt: skip
    (tmp_path / "tmp").mkdir()
    outputs = ("--emogate-report=r.json", "--emogate-save-predictions=p.jsonl", "--emogate-markdown=m.md",
               "--emogate-update-baseline=base.jsonl", "--emogate-ratchet")  # fmt: skip
    args = [
        arg for arg in command(tmp_path, "-n", "2", "--emogate-no-cache", *outputs) if "--emogate-cache=" not in arg
    ]
    run = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TMPDIR": str(tmp_path / "tmp")})  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "answers: 0 from the cache, 24 inferred by the pytest-xdist workers" in run.stdout
    assert run.stdout.count("inference: 24 samples on cpu in ") == 1  # one worker inferred, the other read
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert (report["verdict"], report["passed"], report["n"]) == ("passed", True, 24)
    assert report["provenance"]["inference"]["cache"] is None
    saved = (tmp_path / "p.jsonl").read_text(encoding="utf-8")
    assert len(saved.splitlines()) == 24 and (tmp_path / "base.jsonl").read_text(encoding="utf-8") == saved
    assert (tmp_path / "m.md").is_file() and "overall: {accuracy: 0.1}" not in (
        tmp_path / "thresholds.yaml"
    ).read_text()
    assert not list((tmp_path / "tmp").glob("emogate-*"))  # the answers' temporary folder is removed
