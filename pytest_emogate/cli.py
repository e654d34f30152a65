"""The `emogate` command: `emogate history` prints the run history as a table, or exports it as CSV.

emogate history                              # the last 20 runs in .emogate/history.sqlite
emogate history --db ci/history.sqlite --last 50
emogate history --csv runs.csv               # every run, one row each, every metric and class
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_emogate.evaluate.metrics import METRICS
from pytest_emogate.files import FileProblem, atomic_write_text, output_problem
from pytest_emogate.history import CLASS_FIELDS, Run, load_runs

DEFAULT_DB = Path(".emogate") / "history.sqlite"
TABLE_METRICS = ("accuracy", "weighted_f1", "uar", "macro_f1")
TABLE_RUNS = 20


def parser() -> argparse.ArgumentParser:
    """The command line of `emogate`."""
    main_parser = argparse.ArgumentParser(prog="emogate", description="pytest-emogate tools")
    commands = main_parser.add_subparsers(dest="command", required=True)
    history = commands.add_parser("history", help="print or export the run history")
    history.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"the history database (default {DEFAULT_DB})")
    history.add_argument("--last", type=positive_int, metavar="N",
                         help=f"only the last N runs, N >= 1 (table default {TABLE_RUNS})")  # fmt: skip
    history.add_argument("--csv", metavar="PATH", help="export every run (or the --last N) as CSV; '-' for stdout")
    return main_parser


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (`--last 0` would otherwise mean "the default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of runs, at least 1; found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of runs, at least 1; found {value}")
    return value


def csv_text(runs: Sequence[Run]) -> str:
    """One row per run: the run's fields, every metric, then each class's n, correct, recall and interval."""
    labels = list(dict.fromkeys(label for run in runs for label in run.per_class))
    header = ["id", "time", "git_commit", "checkpoint_sha256", "data_fingerprint", "predictions_sha256",
              "thresholds_sha256", "n", "passed", "failed_checks", "verdict", "not_run", *METRICS,
              *(f"{label}_{name}" for label in labels for name in CLASS_FIELDS)]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for run in runs:
        fields = [run.id, run.time, run.git_commit, run.checkpoint_sha256, run.data_fingerprint, run.predictions_sha256,
                  run.thresholds_sha256, run.n, run.passed, " ".join(run.failed_checks), run.verdict,
                  " ".join(run.not_run)]  # fmt: skip
        metrics = [run.metrics.get(metric, "") for metric in METRICS]
        classes = [run.per_class.get(label, {}).get(name, "") for label in labels for name in CLASS_FIELDS]
        writer.writerow(["" if value is None else value for value in (*fields, *metrics, *classes)])
    return buffer.getvalue()


def print_tables(runs: Sequence[Run], db: Path) -> None:
    """The runs as two rich tables that fit 80 columns: verdict and headline metrics, then each class's recall."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    def table(title: str, columns: Sequence[str], left: Sequence[str]) -> Table:
        made = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                     padding=(0, 0, 0, 1))  # fmt: skip
        for column in columns:
            made.add_column(column, justify="left" if column in left else "right", no_wrap=True)
        return made

    title = f"emogate history {db}: {len(runs)} run{'s' if len(runs) != 1 else ''}, oldest first"
    columns = ("run", "time (UTC)", "commit", "verdict", *TABLE_METRICS)
    runs_table = table(title, columns, left=("time (UTC)", "commit", "verdict"))
    labels = list(dict.fromkeys(label for run in runs for label in run.per_class))
    class_table = table("Per-class recall", ("run", "commit", *labels), left=("commit",))
    for run in runs:
        commit = (run.git_commit or "-")[:7]
        verdict = {"passed": "[green]pass[/]", "failed": f"[red]FAIL[/] {len(run.failed_checks)}"}.get(
            run.verdict, f"[yellow]incomplete[/] {len(run.not_run)}"
        )
        metrics = (f"{100 * run.metrics[m]:.2f}%" if m in run.metrics else "-" for m in TABLE_METRICS)
        runs_table.add_row(str(run.id), run.time.replace("T", " ")[:16], commit, verdict, *metrics)
        recalls = (f"{100 * run.per_class[name]['recall']:.1f}%" if name in run.per_class else "-" for name in labels)
        class_table.add_row(str(run.id), commit, *recalls)
    console = Console()
    console.print(runs_table)
    console.print(class_table)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `emogate` console script; returns the exit code."""
    args = parser().parse_args(argv)
    try:
        runs = load_runs(args.db, last=args.last if args.last or args.csv else TABLE_RUNS)
    except pytest.UsageError as error:
        print(f"emogate: {error}", file=sys.stderr)
        return 2
    if args.csv == "-":
        sys.stdout.write(csv_text(runs))
    elif args.csv:
        target = Path(args.csv)
        problem = output_problem(target)
        if problem is None:
            try:
                atomic_write_text(target, csv_text(runs))
            except FileProblem as error:
                problem = error.found
            except OSError as error:
                problem = f"cannot be written: {error.strerror or error}"
        if problem is not None:
            print(f"emogate: --csv {args.csv}: {problem}", file=sys.stderr)
            return 2
        print(f"wrote {len(runs)} runs to {args.csv}")
    elif not runs:
        print(f"emogate history: {args.db} holds no runs yet")
    else:
        print_tables(runs, args.db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
