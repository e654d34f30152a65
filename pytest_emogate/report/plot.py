"""`--emogate-plot PATH.png`: the labelled confusion matrix as a heatmap (counts and row percentages) beside
per-class recall with its 95% interval, its floor and, with a baseline, the baseline's recall.

matplotlib is an optional extra (the `plot` extra), imported inside the functions; the figure is drawn
on an Agg canvas of its own, so the user's pyplot state and backend are never touched.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_emogate.evaluate.checks import inconclusive
from pytest_emogate.evaluate.compare import Comparison
from pytest_emogate.evaluate.metrics import GateResult
from pytest_emogate.evaluate.thresholds import Thresholds
from pytest_emogate.evaluate.verdict import Verdict
from pytest_emogate.files import atomic_write_bytes
from pytest_emogate.formats import clip, plot_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SIZE_PX = (1400, 600)
"""The PNG's width and height in pixels."""
DPI = 100
TITLE_IDS = 4
"""The failed check ids the title names before it counts the rest (the JSON report lists them all)."""
TITLE_CHARS = 160
"""The most characters of the title (check ids come from thresholds.yaml: a class name may be long)."""
COLORS = {"pass": "#2e7d32", "fail": "#c62828", "none": "#455a64", "floor": "#c62828", "baseline": "#9e9e9e"}


def write_plot(
    path: Path,
    result: GateResult,
    thresholds: Thresholds,
    verdict: Verdict,
    comparison: Comparison | None = None,
) -> None:
    """Draw both panels and write the PNG atomically."""
    figure = draw(result, thresholds, verdict, comparison)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())


def draw(result: GateResult, thresholds: Thresholds, verdict: Verdict, comparison: Comparison | None = None) -> Figure:
    """The figure of both panels, titled with `plot_title`, on an Agg canvas of its own."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(SIZE_PX[0] / DPI, SIZE_PX[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    heat_axes, recall_axes = figure.subplots(1, 2)
    _confusion(heat_axes, result)
    _recall(recall_axes, result, thresholds, verdict, comparison)
    figure.suptitle(plot_title(result, verdict))
    return figure


def plot_title(result: GateResult, verdict: Verdict) -> str:
    """`emogate: FAILED: class_floor[surprise], label_validity; accuracy 90.65% on 834 samples`: the failed checks
    by id (the first TITLE_IDS, then "and N more"), or the headline of a passed or incomplete verdict; a `$` in it
    is escaped (`formats.plot_text`), never read as mathtext."""
    failed = verdict.failed
    if failed and verdict.error is None:
        more = f" and {len(failed) - TITLE_IDS} more" if len(failed) > TITLE_IDS else ""
        said = f"FAILED: {', '.join(failed[:TITLE_IDS])}{more}"
    else:
        said = verdict.headline()
    accuracy = f"accuracy {100 * result.metrics['accuracy']:.2f}% on {result.n} samples"
    return plot_text(f"emogate: {clip(said, TITLE_CHARS - len(accuracy) - 11)}; {accuracy}")


def _confusion(axes: Axes, result: GateResult) -> None:
    columns, labels = result.columns, result.labels
    shares = [[result.confusion[gold][c] / max(result.per_class[gold].n, 1) for c in columns] for gold in labels]
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for row, gold in enumerate(labels):
        for col, column in enumerate(columns):
            count, share = result.confusion[gold][column], shares[row][col]
            colour = "white" if share > 0.6 else "black"
            text = f"{count}\n{100 * share:.0f}%" if count else "0"
            axes.text(col, row, text, ha="center", va="center", fontsize=8, color=colour)
    axes.set_xticks(range(len(columns)), [plot_text(column) for column in columns], rotation=30, ha="right")
    axes.set_yticks(range(len(labels)), [plot_text(f"{gold} ({result.per_class[gold].n})") for gold in labels])
    axes.set_xlabel("predicted label")
    axes.set_ylabel("gold label (n)")
    axes.set_title("Confusion matrix: counts and share of the gold class")
    axes.figure.colorbar(image, ax=axes, label="share of the gold class")


def _recall(
    axes: Axes,
    result: GateResult,
    thresholds: Thresholds,
    verdict: Verdict,
    comparison: Comparison | None,
) -> None:
    names = []
    shown: set[str] = set()

    def legend(text: str) -> str:
        """The label on a kind of mark's first appearance only, so the legend lists each kind once."""
        if text in shown:
            return "_nolegend_"
        shown.add(text)
        return text

    for x, label in enumerate(result.labels):
        stats = result.per_class[label]
        rule = thresholds.per_class.get(label)
        status = verdict.statuses.get(f"class_floor[{label}]")
        colour = COLORS["pass" if status == "passed" else "fail" if status == "failed" else "none"]
        low, high = stats.recall_ci95
        axes.errorbar(
            [x], [stats.recall], yerr=[[stats.recall - low], [high - stats.recall]],
            fmt="o", color=colour, capsize=5, markersize=7, label=legend("recall and Wilson 95% interval"),
        )  # fmt: skip
        if rule is not None:
            axes.hlines(rule.floor, x - 0.3, x + 0.3, colors=COLORS["floor"], linestyles="--", label=legend("floor"))
        if comparison is not None:
            baseline = comparison.per_class[label].baseline
            axes.plot([x + 0.18], [baseline], "D", color=COLORS["baseline"], markersize=5,
                      label=legend("baseline recall"))  # fmt: skip
        unsure = " ?" if rule is not None and inconclusive(stats, rule.floor) else ""
        names.append(f"{plot_text(label)}{unsure}\nn={stats.n}")
    axes.set_xticks(range(len(names)), names)
    axes.set_ylim(0.0, 1.02)
    axes.set_ylabel("recall")
    axes.set_title("Per-class recall ('?': the interval contains the floor, inconclusive)")
    axes.legend(loc="lower left", fontsize=8)
    axes.grid(axis="y", alpha=0.3)
