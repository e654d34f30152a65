"""`--emogate-plot PATH.png`: the labelled confusion matrix as a heatmap (counts and row percentages) beside
per-class recall with its 95% interval, its floor and, with a baseline, the baseline's recall.

matplotlib is an optional extra (`pytest-emogate[plot]`), imported inside the functions; the figure is drawn
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

if TYPE_CHECKING:
    from matplotlib.axes import Axes

SIZE_PX = (1400, 600)
"""The PNG's width and height in pixels."""
DPI = 100
COLORS = {"pass": "#2e7d32", "fail": "#c62828", "none": "#455a64", "floor": "#c62828", "baseline": "#9e9e9e"}


def write_plot(
    path: Path,
    result: GateResult,
    thresholds: Thresholds,
    verdict: Verdict,
    comparison: Comparison | None = None,
) -> None:
    """Draw both panels and write the PNG atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(SIZE_PX[0] / DPI, SIZE_PX[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    heat_axes, recall_axes = figure.subplots(1, 2)
    _confusion(heat_axes, result)
    _recall(recall_axes, result, thresholds, verdict, comparison)
    figure.suptitle(
        f"emogate: {verdict.headline()}; accuracy {100 * result.metrics['accuracy']:.2f}% on {result.n} samples"
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())


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
    axes.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    axes.set_yticks(range(len(labels)), [f"{gold} ({result.per_class[gold].n})" for gold in labels])
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
        names.append(f"{label}{unsure}\nn={stats.n}")
    axes.set_xticks(range(len(names)), names)
    axes.set_ylim(0.0, 1.02)
    axes.set_ylabel("recall")
    axes.set_title("Per-class recall ('?': the interval contains the floor, inconclusive)")
    axes.legend(loc="lower left", fontsize=8)
    axes.grid(axis="y", alpha=0.3)
