"""The gate's result as pandas DataFrames, for users' own tests and notebooks (pandas loads only when asked).

`sample_frame` has one row per sample, sorted by sample name (the order the baseline pairing uses, so the frame
does not depend on the answers file's row order):

- `name`, `output`, `word`: str (the answer exactly as read, and the word the answer contract took from it);
- `gold`, `predicted`: one categorical dtype shared by every label column, its categories the confusion matrix's
  columns in taxonomy order (the labels, then `<invalid>` when invalid answers count as wrong), so `gold ==
  predicted` compares and a `groupby` or `value_counts` lists every class, empty ones too (gold never takes
  `<invalid>`: drop that row from a gold-by-predicted count, or use `confusion_frame()`);
- `correct`, `valid`: bool;
- with a baseline, `baseline_output` (str), `baseline_predicted` (the same categorical) and `change`
  (categorical: `broken` right before and wrong now, `fixed` the reverse, `changed` right in both runs with
  another answer text or wrong in both with another predicted label, `same` otherwise), the definitions of
  evaluate/compare.py's `Pair.outcome` and `Comparison.changed`.

This module reads the result's samples through a Protocol: metrics.py imports it, so it cannot import metrics.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pytest_emogate.extras import from_clone

if TYPE_CHECKING:
    import pandas as pd

CHANGES = ("broken", "fixed", "changed", "same")
"""The values of the `change` column, as categories in this order."""
INSTALL = f"pip install pandas (the frames extra: {from_clone('frames')})"


class Sample(Protocol):
    """What a frame reads of one scored sample (metrics.ScoredSample)."""

    @property
    def name(self) -> str: ...
    @property
    def gold(self) -> str: ...
    @property
    def output(self) -> str: ...
    @property
    def word(self) -> str: ...
    @property
    def valid(self) -> bool: ...
    @property
    def predicted(self) -> str: ...
    @property
    def correct(self) -> bool: ...


def require_pandas(what: str) -> None:
    """Import pandas; a ModuleNotFoundError that says how to install it when it is missing."""
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise ModuleNotFoundError(f"{what} needs pandas, which is not installed: {INSTALL}", name="pandas") from None


def change(before: Sample, after: Sample) -> str:
    """How a sample's answer moved from the baseline to the candidate: broken, fixed, changed or same."""
    if before.correct != after.correct:
        return "fixed" if after.correct else "broken"
    if after.correct:
        return "changed" if before.output != after.output else "same"
    return "changed" if before.predicted != after.predicted else "same"


def sample_frame(samples: Sequence[Sample], columns: Sequence[str], baseline: Sequence[Sample] | None) -> pd.DataFrame:
    """One row per sample, sorted by name; `columns` are the confusion matrix's predicted columns (the labels'
    categories); with `baseline` (the accepted model's samples, paired by name) the three baseline columns."""
    require_pandas("emogate_result.frame()")
    import pandas as pd

    ordered = sorted(samples, key=lambda sample: sample.name)
    label = pd.CategoricalDtype(list(columns))
    data: dict[str, Any] = {
        "name": pd.Series([s.name for s in ordered], dtype="str"),
        "gold": pd.Series([s.gold for s in ordered], dtype=label),
        "output": pd.Series([s.output for s in ordered], dtype="str"),
        "word": pd.Series([s.word for s in ordered], dtype="str"),
        "predicted": pd.Series([s.predicted for s in ordered], dtype=label),
        "correct": pd.Series([s.correct for s in ordered], dtype=bool),
        "valid": pd.Series([s.valid for s in ordered], dtype=bool),
    }
    if baseline is not None:
        before = _paired(baseline, ordered)
        data["baseline_output"] = pd.Series([b.output for b in before], dtype="str")
        data["baseline_predicted"] = pd.Series([b.predicted for b in before], dtype=label)
        changes = [change(b, s) for b, s in zip(before, ordered, strict=True)]
        data["change"] = pd.Series(changes, dtype=pd.CategoricalDtype(list(CHANGES)))
    frame: pd.DataFrame = pd.DataFrame(data)
    return frame


def _paired(baseline: Sequence[Sample], ordered: Sequence[Sample]) -> list[Sample]:
    """The baseline's sample of each candidate sample, by name; a ValueError when the two do not pair."""
    by_name = {sample.name: sample for sample in baseline}
    names = {sample.name for sample in ordered}
    unpaired = sorted(names ^ set(by_name))
    if unpaired:
        shown = ", ".join(unpaired[:3]) + (f", ... ({len(unpaired) - 3} more)" if len(unpaired) > 3 else "")
        raise ValueError(f"the baseline does not pair with the answers: {len(unpaired)} names in one only: {shown}")
    return [by_name[sample.name] for sample in ordered]


def confusion_frame(
    confusion: Mapping[str, Mapping[str, int]], labels: Sequence[str], columns: Sequence[str]
) -> pd.DataFrame:
    """The labelled confusion matrix: index the gold labels (named `gold`), columns the predicted labels and
    `<invalid>` when counted (named `predicted`), both in taxonomy order; int64 counts."""
    require_pandas("emogate_result.confusion_frame()")
    import pandas as pd

    matrix: pd.DataFrame = pd.DataFrame(
        [[confusion[gold][column] for column in columns] for gold in labels],
        index=pd.Index(list(labels), name="gold"),
        columns=pd.Index(list(columns), name="predicted"),
        dtype="int64",
    )
    return matrix
