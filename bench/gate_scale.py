"""What the gate costs as the answers grow, with and without a baseline, side by side in one run.

Run: python bench/gate_scale.py [--sizes 834 8340 83400] [--repeats 5] [--no-record]

At each size the seed's 834 predictions are replicated with suffixed names (`samplenew_00000001_r3`); the baseline
is the same answers with some changed (one sample in 40 of each class answered with the next label, one in 60
wrong answers put right), so the comparison has broken, fixed and changed samples in every class. Timed:

- `pytest`: the whole gate as CI runs it, `python -m pytest --emogate-predictions=... --emogate-thresholds=...
  -p no:cacheprovider` in a fresh process, without and with `--emogate-baseline=...`, alternately, so machine
  noise hits both alike;
- `compute`: in one process, the result alone (score + metrics) and the result of both runs plus the comparison
  (McNemar, the stratified paired bootstrap of every metric and class recall).

The table shows medians over the repeats and the ratio with/without a baseline. Targets (issue 12): ratio at
most 2x at every size, the whole 83,400-sample gate with a baseline under 3 s. Appends a section to
bench/RESULTS.md unless --no-record. `--gc-off` runs pytest with Python's cyclic garbage collector disabled, which
shows how much of the gate's time its collections take (a diagnosis, not a setting to ship).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
SEED = REPO / "fixtures" / "seed_test3_predictions.csv"
THRESHOLDS = REPO / "thresholds.yaml"
LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
MAX_RATIO = 2.0
MAX_LARGEST_S = 3.0


def read_seed() -> list[tuple[str, str, str]]:
    import csv

    with SEED.open(encoding="utf-8", newline="") as handle:
        return [(row["name"], row["label"], row["output"]) for row in csv.DictReader(handle)]


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> None:
    import csv

    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("name", "label", "output"))
        writer.writerows(rows)


def replicate(
    seed: list[tuple[str, str, str]], size: int
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """`size` answers (a multiple of the seed's) and a baseline that differs from them in some answers."""
    copies = size // len(seed)
    candidate, baseline = [], []
    for copy in range(copies):
        for index, (name, gold, output) in enumerate(seed):
            named = name if copies == 1 else f"{name}_r{copy}"
            candidate.append((named, gold, output))
            turn = copy * len(seed) + index
            if output == gold and turn % 40 == 0:
                before = LABELS[(LABELS.index(gold) + 1) % len(LABELS)]  # the baseline was wrong: fixed
            elif output != gold and turn % 60 == 1:
                before = gold  # the baseline was right: broken
            else:
                before = output
            baseline.append((named, gold, before))
    return candidate, baseline


GC_OFF = "import gc, sys, pytest; gc.disable(); sys.exit(pytest.main(sys.argv[1:]))"
"""`--gc-off`: pytest with Python's cyclic garbage collector disabled, to show what its collections cost."""


def gate_command(predictions: Path, baseline: Path | None, gc_off: bool = False) -> list[str]:
    command = [
        sys.executable, *(["-c", GC_OFF] if gc_off else ["-m", "pytest"]), f"--emogate-predictions={predictions}",
        f"--emogate-thresholds={THRESHOLDS}", "-p", "no:cacheprovider", "-q", "--emogate-only",
    ]  # fmt: skip
    return command + ([f"--emogate-baseline={baseline}"] if baseline else [])


def time_process(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: a check failed, which this bench does not care about
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return elapsed


def time_call(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def compute_calls(candidate: Path, baseline: Path) -> tuple[Callable[[], object], Callable[[], object]]:
    """The in-process work alone: the result of the answers, and both results plus the comparison."""
    sys.path.insert(0, str(REPO))
    from pytest_emogate.evaluate.compare import compare
    from pytest_emogate.evaluate.metrics import GateResult, compute_result, score_samples
    from pytest_emogate.predictions import Prediction, read_predictions

    answers, accepted = read_predictions(candidate, LABELS), read_predictions(baseline, LABELS)

    def result_of(predictions: list[Prediction]) -> GateResult:
        return compute_result(score_samples(predictions, LABELS), LABELS)

    return (lambda: result_of(answers)), (lambda: compare(result_of(accepted), result_of(answers), "baseline"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[834, 8340, 83400])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gc-off", action="store_true", help="run pytest with the cyclic garbage collector off")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = parser.parse_args()
    seed = read_seed()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for size in args.sizes:
            if size % len(seed):
                raise SystemExit(f"--sizes: {size} is not a multiple of the seed's {len(seed)} samples")
            candidate_rows, baseline_rows = replicate(seed, size)
            candidate, baseline = root / f"answers_{size}.csv", root / f"baseline_{size}.csv"
            write_csv(candidate, candidate_rows)
            write_csv(baseline, baseline_rows)
            alone_call, both_call = compute_calls(candidate, baseline)
            time_process(gate_command(candidate, baseline, args.gc_off), root)  # warm the file cache and bytecode
            times: dict[str, list[float]] = {"pytest": [], "pytest+b": [], "compute": [], "compute+b": []}
            for _ in range(args.repeats):
                times["pytest"].append(time_process(gate_command(candidate, None, args.gc_off), root))
                times["pytest+b"].append(time_process(gate_command(candidate, baseline, args.gc_off), root))
                times["compute"].append(time_call(alone_call))
                times["compute+b"].append(time_call(both_call))
            medians = {key: statistics.median(values) for key, values in times.items()}
            rows.append((size, medians))
            print(_row(size, medians), flush=True)
    verdicts = _verdicts(rows)
    print("\n".join(verdicts))
    if not args.no_record:
        _record(args, rows, verdicts)


def _row(size: int, medians: dict[str, float]) -> str:
    return (
        f"| {size:,} | {medians['pytest']:.2f} | {medians['pytest+b']:.2f} | "
        f"{medians['pytest+b'] / medians['pytest']:.2f}x | {medians['compute']:.3f} | {medians['compute+b']:.3f} |"
    )


def _verdicts(rows: list[tuple[int, dict[str, float]]]) -> list[str]:
    worst = max(medians["pytest+b"] / medians["pytest"] for _, medians in rows)
    largest, medians = max(rows)
    return [
        f"largest ratio with/without a baseline: {worst:.2f}x ({'meets' if worst <= MAX_RATIO else 'misses'} "
        f"<= {MAX_RATIO:.0f}x)",
        f"the {largest:,}-sample gate with a baseline: {medians['pytest+b']:.2f} s "
        f"({'meets' if medians['pytest+b'] < MAX_LARGEST_S else 'misses'} < {MAX_LARGEST_S:.0f} s)",
    ]


def _record(args: argparse.Namespace, rows: list[tuple[int, dict[str, float]]], verdicts: list[str]) -> None:
    import numpy

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sizes = " ".join(str(size) for size, _ in rows) + (" --gc-off" if args.gc_off else "")
    blas = "OPENBLAS_CORETYPE=" + os.environ.get("OPENBLAS_CORETYPE", "(unset)")
    lines = [
        f"\n### gate_scale on {os.cpu_count()} CPU cores ({platform.machine()}), no GPU, {now}\n",
        f"`python bench/gate_scale.py --sizes {sizes} --repeats {args.repeats}`; Python {platform.python_version()}, "
        f"numpy {numpy.__version__}, {blas}. Medians of {args.repeats} repeats, seconds.\n",
        "| samples | pytest | pytest with baseline | ratio | compute | compute with baseline |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        *(_row(size, medians) for size, medians in rows),
        "",
        *(f"- {verdict}" for verdict in verdicts),
        "",
    ]
    with RESULTS.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    main()
