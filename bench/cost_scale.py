"""What the gate costs as the work grows in other ways than samples: many labels, and one very long answer.

Run: python bench/cost_scale.py [--labels 6 150 1000] [--answer-mb 100] [--formats jsonl csv] [--tree PATH]
                               [--no-record]

Every measure runs in a fresh Python process, so that its peak resident memory (`ru_maxrss`) is its own:

- `labels`: a comparison over L labels, 20 samples each (a baseline and a candidate that differ in a third of
  their answers, spread over every cell), `compare()` with the default 1,000 resamples: its time, and the
  process's peak memory above what it held before the comparison. The bootstrap once kept a [resample, class,
  cell] array, eight bytes times 1,000 L^3 (8 GB at 100 labels, a MemoryError at 150).
- `answer`: the seed's 834 answers with the first replaced by N MB of words that ends in its label, as JSONL
  and as CSV (where its commas and quotes make it a quoted field): reading the file, reading and scoring it, in
  process, and the whole gate as CI runs it (`python -m pytest --emogate-only --emogate-predictions=...`);
  each one's time and peak memory above the same process on the seed's own answers, as a multiple of the
  file's size.

`--tree PATH` measures another copy of the package instead of this checkout, imported through PYTHONPATH, e.g.
the code before a change: `git archive <commit> | tar -x -C /tmp/before`, then `--tree /tmp/before`. The old
bootstrap allocates 8 x 1,000 x L^3 bytes and touches them: give it no label count that would not fit in
memory (100 labels are 8 GB; 150 and up fail at once with a MemoryError, which is reported). Appends a section
to bench/RESULTS.md unless --no-record.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
SEED = REPO / "fixtures" / "seed_test3_predictions.csv"
PER_LABEL = 20
WORDS = 'well, I think the person in this video looks rather "moved" and '
"""The long answer's text, repeated: words, a comma and quotes (a CSV writer quotes the field)."""

MEASURE = r"""
import json, sys, time

def status(field):  # this process's memory, from its own start (ru_maxrss would count the image it was forked from)
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith(field + ":"))

rss, peak = (lambda: status("VmRSS")), (lambda: status("VmHWM"))

kind, argument = sys.argv[1], sys.argv[2]
from pytest_emogate.evaluate.compare import compare
from pytest_emogate.evaluate.metrics import compute_result, score_samples
from pytest_emogate.predictions import Prediction, read_predictions
import numpy

if kind == "labels":
    labels = tuple(f"label{index}" for index in range(int(argument)))
    golds = [labels[index % len(labels)] for index in range(PER_LABEL * len(labels))]

    def run(step):
        answers = [labels[index * step % len(labels)] if index % 3 else gold for index, gold in enumerate(golds)]
        predictions = [Prediction(f"s{index:07d}", gold, answers[index]) for index, gold in enumerate(golds)]
        return compute_result(score_samples(predictions, labels), labels)

    baseline, candidate = run(7), run(11)
    work = lambda: compare(baseline, candidate, "baseline")
else:
    from pathlib import Path
    path = Path(argument)
    if kind == "read":
        work = lambda: read_predictions(path, LABELS)
    else:
        work = lambda: compute_result(score_samples(read_predictions(path, LABELS), LABELS), LABELS)
before = rss()
start = time.perf_counter()
try:
    work()
    failed = ""
except MemoryError as error:
    failed = f"MemoryError: {error}"
print(json.dumps({"seconds": time.perf_counter() - start, "above": peak() - before, "failed": failed}))
"""
"""One measure in a fresh process: `labels L`, `read FILE` or `score FILE`; prints its time and the process's
peak memory above what it held before the measured work."""

GATE = r"""
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak": peak, "returncode": done.returncode, "tail": done.stdout[-300:]}))
"""
"""The whole gate in a fresh pytest process; prints its time and peak memory (its launcher's only child)."""


def measure(tree: Path, kind: str, argument: str) -> dict[str, Any]:
    labels = ("neutral", "angry", "happy", "sad", "worried", "surprise")
    code = f"PER_LABEL = {PER_LABEL}\nLABELS = {labels!r}\n" + MEASURE
    return _run([sys.executable, "-c", code, kind, argument], tree)


def gate(tree: Path, predictions: Path, cwd: Path) -> dict[str, Any]:
    command = [
        sys.executable, "-c", GATE, sys.executable, "-m", "pytest", f"--emogate-predictions={predictions}",
        f"--emogate-thresholds={REPO / 'thresholds.yaml'}", "-p", "no:cacheprovider", "-q", "--emogate-only",
        "--emogate-no-history",
    ]  # fmt: skip
    result = _run(command, tree, cwd)
    if result["returncode"] not in (0, 1):  # 1: a check failed (the seed's "doubt"), which is not measured here
        raise SystemExit(f"the gate on {predictions} exited {result['returncode']}: {result['tail']}")
    return result


def _run(command: list[str], tree: Path, cwd: Path | None = None) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    if done.returncode:
        raise SystemExit(f"{command[:3]} exited {done.returncode}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def write_answers(path: Path, megabytes: float) -> int:
    """The seed's answers with the first replaced by `megabytes` MB of words ending in its gold label; the size."""
    with SEED.open(encoding="utf-8", newline="") as handle:
        rows = [(row["name"], row["label"], row["output"]) for row in csv.DictReader(handle)]
    name, gold, _ = rows[0]
    rows[0] = (name, gold, WORDS * int(megabytes * 1e6 / len(WORDS)) + gold + ".")
    if path.suffix == ".jsonl":
        lines = (json.dumps({"name": n, "label": g, "output": o}, ensure_ascii=False) + "\n" for n, g, o in rows)
        path.write_text("".join(lines), encoding="utf-8")
    else:
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(("name", "label", "output"))
            writer.writerows(rows)
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="*", default=[6, 150, 1000])
    parser.add_argument("--answer-mb", type=float, default=100.0)
    parser.add_argument("--formats", nargs="*", choices=["jsonl", "csv"], default=["jsonl", "csv"])
    parser.add_argument("--tree", type=Path, default=REPO, help="the package tree to measure (default: this one)")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = parser.parse_args()
    tree = args.tree.resolve()
    label_rows = []
    for count in args.labels:
        result = measure(tree, "labels", str(count))
        label_rows.append(_label_row(count, result))
        print(label_rows[-1], flush=True)
    answer_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for suffix in args.formats:
            small, big = root / f"seed.{suffix}", root / f"big.{suffix}"
            write_answers(small, 0)
            size = write_answers(big, args.answer_mb)
            for kind in ("read", "score"):
                base, result = measure(tree, kind, str(small)), measure(tree, kind, str(big))
                answer_rows.append(_answer_row(f"{suffix}: {kind}", size, base, result, "above"))
                print(answer_rows[-1], flush=True)
            base, result = gate(tree, small, root), gate(tree, big, root)
            answer_rows.append(_answer_row(f"{suffix}: the whole gate", size, base, result, "peak"))
            print(answer_rows[-1], flush=True)
    if not args.no_record:
        _record(args, tree, label_rows, answer_rows)


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


def _label_row(count: int, result: dict[str, Any]) -> str:
    if result["failed"]:
        return f"| {count:,} | {count * PER_LABEL:,} | - | {result['failed']} |"
    return f"| {count:,} | {count * PER_LABEL:,} | {result['seconds']:.2f} | {_mb(result['above'])} |"


def _answer_row(what: str, size: int, base: dict[str, Any], result: dict[str, Any], key: str) -> str:
    """One long-answer measure: its time and its peak memory beyond the same measure's on the seed's answers."""
    extra, seconds = result[key] - base[key], result["seconds"] - base["seconds"]
    return f"| {what} | {_mb(size)} | {result['seconds']:.2f} | {seconds:.2f} | {_mb(extra)} | {extra / size:.1f}x |"


def _record(args: argparse.Namespace, tree: Path, label_rows: list[str], answer_rows: list[str]) -> None:
    import numpy

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    measured = f"this checkout ({head.stdout.strip() or 'no commit'})" if tree == REPO else f"the package at {tree}"
    command = (
        f"python bench/cost_scale.py --labels {' '.join(map(str, args.labels))} --answer-mb {args.answer_mb:g} "
        f"--formats {' '.join(args.formats)}" + (f" --tree {tree}" if tree != REPO else "")
    )
    lines = [
        f"\n### cost_scale on {os.cpu_count()} CPU cores ({platform.machine()}), no GPU, {now}\n",
        f"`{command}`; {measured}; Python {platform.python_version()}, numpy {numpy.__version__}.\n",
        "| labels | samples | compare s | peak above before |",
        "| ---: | ---: | ---: | ---: |",
        *label_rows,
        "",
        "| one long answer | file | s | s beyond the seed's | peak beyond the seed's | x file |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *answer_rows,
        "",
    ]
    with RESULTS.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    main()
