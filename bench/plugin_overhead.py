"""What the inert plugin costs: `pytest --co -q` on a project without the gate, with and without emogate.

Run: python bench/plugin_overhead.py [--runs 15]
Both variants run alternately in fresh processes, in one run, so machine noise hits them alike; the table shows
the median wall time of each and the difference (the target is at most 30 ms). Appends a row to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
TARGET_MS = 30.0


def make_project(root: Path) -> None:
    """A small project with 20 test files and no gate options."""
    for index in range(20):
        body = "\n".join(f"def test_{index}_{case}():\n    assert {case} == {case}\n" for case in range(10))
        (root / f"test_module_{index}.py").write_text(body, encoding="utf-8")


def one_run(root: Path, extra: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", *extra],
        cwd=root, check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_project(root)
        one_run(root, [])  # warm the file cache and bytecode
        with_plugin, without = [], []
        for _ in range(args.runs):
            with_plugin.append(one_run(root, []))
            without.append(one_run(root, ["-p", "no:emogate"]))
    on_ms, off_ms = statistics.median(with_plugin) * 1000, statistics.median(without) * 1000
    delta = on_ms - off_ms
    verdict = "meets" if delta <= TARGET_MS else "misses"
    print(f"{'variant':<28}{'median ms':>10}")
    print(f"{'pytest --co -q':<28}{on_ms:>10.1f}")
    print(f"{'pytest --co -q -p no:emogate':<28}{off_ms:>10.1f}")
    print(
        f"overhead of the inert plugin: {delta:+.1f} ms over {args.runs} runs each "
        f"({verdict} the {TARGET_MS:.0f} ms target)"
    )
    if not args.no_record:
        today = datetime.date.today().isoformat()
        row = (
            f"| {today} | plugin overhead | `python bench/plugin_overhead.py --runs {args.runs}` | "
            f"{platform.processor() or platform.machine()}, {platform.python_version()} | "
            f"with {on_ms:.1f} ms, without {off_ms:.1f} ms, overhead {delta:+.1f} ms "
            f"({verdict} <= {TARGET_MS:.0f} ms) |\n"
        )
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write(row)


if __name__ == "__main__":
    main()
