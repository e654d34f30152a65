"""The `emogate` command: `emogate history` prints the run history as a table, or exports it as CSV;
`emogate diff` compares two answer files as the gate's regression checks would, without pytest.

emogate history                              # the last 20 runs in .emogate/history.sqlite
emogate history --db ci/history.sqlite --last 50
emogate history --csv runs.csv               # every run, one row each, every metric and class
emogate diff accepted.jsonl candidate.jsonl  # which samples broke, which were fixed, and the regression table
emogate init                                 # a starter thresholds.yaml in this folder (never overwrites)
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_emogate.files import FileProblem, atomic_write_text, display_path, output_problem
from pytest_emogate.formats import clip, csv_row, spreadsheet_cell
from pytest_emogate.history import OUTSIDE_PYTEST, Run, load_runs, skipped_note, table
from pytest_emogate.report.samples import SHOW_DEFAULT

DEFAULT_DB = Path(".emogate") / "history.sqlite"
TABLE_METRICS = ("accuracy", "weighted_f1", "uar", "macro_f1")
TABLE_RUNS = 20
STARTER = "thresholds.yaml"
"""The file `emogate init` writes, from the package's copy of the repository's thresholds.yaml."""
LABEL_CHARS = 20
"""The most characters of a class's column header in the per-class table (a label is one word)."""
MAX_RUNS = 1_000_000_000
"""The most runs --last asks for (SQLite's LIMIT takes a 64-bit integer; a larger one is an error of the option)."""


def parser() -> argparse.ArgumentParser:
    """The command line of `emogate`."""
    main_parser = argparse.ArgumentParser(prog="emogate", description="pytest-emogate tools")
    commands = main_parser.add_subparsers(dest="command", required=True)
    history = commands.add_parser("history", help="print or export the run history")
    history.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"the history database (default {DEFAULT_DB})")
    history.add_argument("--last", type=positive_int, metavar="N",
                         help=f"only the last N runs, N >= 1 (table default {TABLE_RUNS})")  # fmt: skip
    history.add_argument("--csv", type=csv_target, metavar="PATH",
                         help="export every run (or the --last N) as CSV; '-' for stdout")  # fmt: skip
    diff = commands.add_parser("diff", help="compare two answer files (the gate's regression checks, no pytest)")
    diff.add_argument("baseline", type=Path, help="the accepted model's answers (CSV or JSONL)")
    diff.add_argument("candidate", type=Path, help="the new model's answers (CSV or JSONL)")
    diff.add_argument(
        "--thresholds",
        type=Path,
        default=Path("thresholds.yaml"),
        help="the gate file: labels, answer contract and regression margins (default thresholds.yaml)",
    )
    diff.add_argument("--show", type=count, default=SHOW_DEFAULT, metavar="N",
                      help=f"samples listed per list (default {SHOW_DEFAULT}; 0 lists none)")  # fmt: skip
    commands.add_parser(
        "init", help=f"write a starter {STARTER} into the current folder (never overwrites)",
        description=f"Write the starter {STARTER} (the shipped gate, with its comments) into the current folder. "
        "Refuses when anything is at that path already.",
    )  # fmt: skip
    return main_parser


def count(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, at least 0; found {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number, at least 0; found {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (`--last 0` would otherwise mean "the default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of runs from 1 to {MAX_RUNS:,}; found {text!r}"
        ) from None
    if not 1 <= value <= MAX_RUNS:
        raise argparse.ArgumentTypeError(f"expected a whole number of runs from 1 to {MAX_RUNS:,}; found {value}")
    return value


def csv_target(text: str) -> str:
    """An argparse type: where --csv writes, a file path or '-' (an empty one would silently print the tables)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a file path, or '-' for stdout; found an empty string")
    return text


def csv_text(runs: Sequence[Run]) -> str:
    """One row per run: the run's fields, every metric, then each class's n, correct, recall and interval (the
    columns and values of `history.table`, as `history.frame` has them; empty where a run lacks a value). A text
    that a spreadsheet would run as a formula (a commit or label starting with '=', '+', '-', '@') is written
    with a leading "'" (`formats.spreadsheet_cell`)."""
    header, rows = table(runs)
    lines = [csv_row([spreadsheet_cell(name) for name in header])]
    lines += (csv_row(["" if value is None else spreadsheet_cell(value) for value in row]) for row in rows)
    return "".join(lines)


def print_tables(runs: Sequence[Run], db: Path) -> None:
    """The runs as two rich tables that fit 80 columns: verdict and headline metrics, then each class's recall.
    Every value from the file (a commit, a time, a label) is a `Text` cell shortened to one line, never markup."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    def table(title: str, columns: Sequence[str], left: Sequence[str]) -> Table:
        made = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                     padding=(0, 0, 0, 1))  # fmt: skip
        for column in columns:
            made.add_column(Text(clip(column, LABEL_CHARS)), justify="left" if column in left else "right",
                            no_wrap=True)  # fmt: skip
        return made

    title = f"emogate history {clip(str(db))}: {len(runs)} run{'s' if len(runs) != 1 else ''}, oldest first"
    columns = ("run", "time (UTC)", "commit", "verdict", *TABLE_METRICS)
    runs_table = table(title, columns, left=("time (UTC)", "commit", "verdict"))
    labels = list(dict.fromkeys(label for run in runs for label in run.per_class))
    class_table = table("Per-class recall", ("run", "commit", *labels), left=("commit",))
    for run in runs:
        commit = Text(clip((run.git_commit or "-")[:7]))
        verdict = {"passed": "[green]pass[/]", "failed": f"[red]FAIL[/] {len(run.failed_checks)}"}.get(
            run.verdict, f"[yellow]incomplete[/] {len(run.not_run)}"
        )
        metrics = (f"{100 * run.metrics[m]:.2f}%" if m in run.metrics else "-" for m in TABLE_METRICS)
        runs_table.add_row(str(run.id), Text(clip(run.time.replace("T", " ")[:16])), commit, verdict, *metrics)
        recalls = (f"{100 * run.per_class[name]['recall']:.1f}%" if name in run.per_class else "-" for name in labels)
        class_table.add_row(str(run.id), commit, *recalls)
    console = Console()
    console.print(runs_table)
    console.print(class_table)


def diff_command(baseline: Path, candidate: Path, thresholds_path: Path, show: int) -> int:
    """Print the comparison of two answer files; 1 when a regression check of the thresholds fails, else 0."""
    from rich.console import Console

    from pytest_emogate.evaluate.baseline import read_baseline
    from pytest_emogate.evaluate.metrics import compute_result, score_samples
    from pytest_emogate.evaluate.regression import (
        REGRESSION_EXAMPLE,
        regression_ids,
        regression_outcome,
        undeclared_regression,
    )
    from pytest_emogate.evaluate.thresholds import load_thresholds
    from pytest_emogate.evaluate.verdict import judge
    from pytest_emogate.predictions import read_predictions
    from pytest_emogate.report.samples import sample_lines
    from pytest_emogate.report.terminal import regression_table

    if not thresholds_path.exists():  # load_thresholds' own hints name the pytest options
        raise pytest.UsageError(
            f"--thresholds {thresholds_path}: no such file; expected the gate file (labels, answer contract, "
            f"regression margins): pass --thresholds PATH, or write a starter {STARTER} here with emogate init"
        )
    thresholds = load_thresholds(thresholds_path)
    if (undeclared := undeclared_regression(thresholds)) is not None:
        raise pytest.UsageError(
            f"--thresholds {thresholds_path}: {undeclared}, so there are no margins to judge CANDIDATE {candidate} "
            f"against BASELINE {baseline} by; expected e.g. {REGRESSION_EXAMPLE}"
        )
    accepted = read_baseline(baseline, thresholds)
    answers = read_predictions(candidate, thresholds.labels, "candidate file")
    accepted.check_pairs(answers, f"candidate {display_path(candidate)}")
    samples = score_samples(answers, thresholds.labels, thresholds.aliases, thresholds.invalid)
    comparison = accepted.compare(thresholds, compute_result(samples, thresholds.labels, thresholds.invalid))
    outcomes = [regression_outcome(thresholds, comparison, key) for key in regression_ids(thresholds)]
    verdict = judge([o.id for o in outcomes], {o.id: "passed" if o.passed else "failed" for o in outcomes})
    console = Console(highlight=False)
    heading = f"emogate diff: {accepted.description} -> candidate {display_path(candidate)} ({len(answers)} rows)"
    console.print(heading, markup=False, soft_wrap=True)
    console.print(regression_table(comparison, outcomes, verdict, thresholds))
    for line in sample_lines(comparison, show, where="emogate diff --show N lists more", width=console.width):
        console.print(line, markup=False, soft_wrap=True)
    console.print(verdict.line(), markup=False, soft_wrap=True)
    return 1 if verdict.failed else 0


def init_command(folder: Path) -> int:
    """Write the starter thresholds.yaml into `folder`; 2 (nothing written) when anything is at that path already
    (a file, a folder, a symlink, even a dangling one: O_CREAT | O_EXCL never follows or replaces it)."""
    from importlib.resources import files

    target = folder.absolute() / STARTER
    text = files("pytest_emogate").joinpath(STARTER).read_bytes()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        handle = os.open(target, flags, 0o644)
    except FileExistsError:
        print(f"emogate init: {target} already exists ({_what_is_at(target)}); it was not changed. Edit it, or move "
              "it away and run emogate init again", file=sys.stderr)  # fmt: skip
        return 2
    except OSError as error:
        print(f"emogate init: {target} cannot be created: {error.strerror or error}", file=sys.stderr)
        return 2
    try:
        written = 0
        while written < len(text):
            written += os.write(handle, text[written:])
    except OSError as error:
        os.close(handle)
        target.unlink(missing_ok=True)  # ours: created just now by O_EXCL
        print(f"emogate init: {target} could not be written: {error.strerror or error}", file=sys.stderr)
        return 2
    os.close(handle)
    print(f"emogate init: wrote {target}, the starter gate (labels, floors, confusion ceilings, regression margins)")
    print(f"next: edit it for your model, then run: pytest --emogate-thresholds={STARTER} --emogate-predictions=PATH")
    return 0


def _what_is_at(path: Path) -> str:
    """What occupies a path, for the refusal: a file, a folder, a symlink (dangling or not), something else."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "it appeared while being checked"
    if stat.S_ISLNK(mode):
        return f"a symlink to {os.readlink(path)}" + ("" if path.exists() else ", which points nowhere")
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a file" if stat.S_ISREG(mode) else "not a regular file"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `emogate` console script; returns the exit code."""
    args = parser().parse_args(argv)
    if args.command in ("init", "diff"):
        try:
            here = Path.cwd()
        except OSError as error:  # no relative path resolves, and there is no "here" to write the starter into
            gone = isinstance(error, FileNotFoundError)
            what = "no longer exists (deleted or moved away)" if gone else f"cannot be read: {error.strerror or error}"
            print(f"emogate {args.command}: the current working directory {what}; cd into an existing folder and "
                  "run it again", file=sys.stderr)  # fmt: skip
            return 2
    if args.command == "init":
        return init_command(here)
    if args.command == "diff":
        try:
            return diff_command(args.baseline, args.candidate, args.thresholds, args.show)
        except pytest.UsageError as error:
            print(f"emogate: {error}", file=sys.stderr)
            return 2
    try:
        runs = load_runs(args.db, last=args.last if args.last or args.csv else TABLE_RUNS, advice=OUTSIDE_PYTEST)
    except pytest.UsageError as error:
        print(f"emogate: {error}", file=sys.stderr)
        return 2
    if runs.skipped:
        print(f"emogate: {skipped_note(args.db, runs.skipped)}", file=sys.stderr)
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
