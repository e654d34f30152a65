"""`--emogate-ratchet`: raise the floors of thresholds.yaml that this run clears with margin, as an explicit step.

The margin rule: a floor rises to the run's 95% lower bound for its number, rounded down to a whole percentage
point, and only when that is above the current floor. The lower bound is the Wilson bound for proportions
(accuracy, weighted recall, a class's recall) and the stratified bootstrap's 2.5th percentile for the other
metrics. So a floor only moves to where the same answers would still clear it if the evaluation set were drawn
again, a 14-sample class barely moves, and a floor is never lowered. Only existing floors (`overall`,
`per_class`) move; ceilings (`confusion`, `label_validity`) and the `regression` margins are left alone.

The file is rewritten through ruamel.yaml's round-trip mode, so comments, key order and flow style survive.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import math
from codecs import BOM_UTF8
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_emogate.evaluate.metrics import METRICS, GateResult, wilson_interval
from pytest_emogate.evaluate.thresholds import MAX_BYTES, Thresholds
from pytest_emogate.files import FileProblem, atomic_write_bytes, decode_utf8, read_bounded

STEP = 0.01
"""Floors move in whole percentage points: readable in the file, and a hair of slack below the bound."""
EPS = 1e-9


@dataclass(frozen=True)
class Raise:
    """One floor to raise: its key in thresholds.yaml (`overall.accuracy`, `per_class.worried`), old and new."""

    key: str
    old: float
    new: float
    bound: float

    def describe(self) -> str:
        """`per_class.worried 0.50 -> 0.58 (95% lower bound 58.96%)`: two decimals, so the rounding down shows."""
        return f"{self.key} {self.old:.2f} -> {self.new:.2f} (95% lower bound {100 * self.bound:.2f}%)"


def proposed_raises(
    thresholds: Thresholds, result: GateResult, intervals: Mapping[str, tuple[float, float]]
) -> list[Raise]:
    """The floors this run clears with margin; `intervals` are the bootstrap intervals of the metrics."""
    correct = sum(sample.correct for sample in result.samples)
    candidates: list[tuple[str, float, float]] = []
    for metric, floor in thresholds.overall.items():
        bound = wilson_interval(correct, result.n)[0] if METRICS[metric].per_sample else intervals[metric][0]
        candidates.append((f"overall.{metric}", floor, bound))
    for label, rule in thresholds.per_class.items():
        candidates.append((f"per_class.{label}", rule.floor, result.per_class[label].recall_ci95[0]))
    raises = []
    for key, floor, bound in candidates:
        new = round(math.floor(bound / STEP + EPS) * STEP, 2)
        if new > floor + EPS:
            raises.append(Raise(key, floor, new, bound))
    return raises


def apply_raises(path: Path, raises: Sequence[Raise], read_sha256: str | None = None) -> tuple[str, str]:
    """Rewrite the file with the new floors (atomically) and return its text before and after ('\n' newlines).

    The file is read again as load_thresholds read it (a bounded regular file); with `read_sha256`, the hash of
    the bytes the session gated with, a file changed since then is left alone (FileProblem). It is written back
    with the line endings of its first line (a Windows editor's CRLF file stays CRLF) and its UTF-8 byte-order
    mark, if it had one: ruamel.yaml writes '\n' and would otherwise leave CRLF only on the commented lines.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.scalarfloat import ScalarFloat

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap the user's long flow lists
    raw = read_bounded(path, "thresholds file", MAX_BYTES)
    if read_sha256 is not None and hashlib.sha256(raw).hexdigest() != read_sha256:
        raise FileProblem(path, "changed since the session read it; ratchet the new file in a run of its own")
    text = decode_utf8(raw, "thresholds file", path)
    newline = "\r\n" if text.partition("\n")[0].endswith("\r") else "\n"
    before = text.replace("\r\n", "\n")
    data = yaml.load(before)
    for item in raises:
        section, key = item.key.split(".", 1)
        text = f"{item.new:.2f}"
        value = ScalarFloat(item.new, width=len(text), prec=text.index("."))
        node = data[section]
        if isinstance(node[key], Mapping):
            node[key]["floor"] = value
        else:
            node[key] = value
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    after = buffer.getvalue()
    if after != before:
        atomic_write_bytes(
            path, (BOM_UTF8 if raw.startswith(BOM_UTF8) else b"") + after.replace("\n", newline).encode()
        )
    return before, after


def unified_diff(path: Path, before: str, after: str) -> str:
    """The change as a unified diff of the file."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        f"{path.name} (before)",
        f"{path.name} (ratcheted)",
    )
    return "".join(lines)


def ratchet(thresholds: Thresholds, result: GateResult, intervals: Mapping[str, tuple[float, float]]) -> str:
    """Raise what can be raised and return the lines to print: the raises and the diff, or why nothing moved."""
    raises = proposed_raises(thresholds, result, intervals)
    if not raises:
        return f"emogate ratchet: no floor in {thresholds.path.name} is cleared by a 95% lower bound with margin\n"
    before, after = apply_raises(thresholds.path, raises, thresholds.sha256)
    listed = "".join(f"  {item.describe()}\n" for item in raises)
    header = f"emogate ratchet: raised {len(raises)} floor{'s' if len(raises) != 1 else ''} in {thresholds.path}:\n"
    return header + listed + unified_diff(thresholds.path, before, after)
