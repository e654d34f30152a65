"""The inference progress bar: samples done, samples/s and the time left, on stderr."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def progress_bar(total: int, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (samples, samples/s, ETA); yields `advance(n)`. Silent when disabled."""
    if not enabled:
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TimeRemainingColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text("-- samples/s" if task.speed is None else f"{task.speed:.1f} samples/s")

    columns = (BarColumn(), MofNCompleteColumn(), RateColumn(), TimeRemainingColumn())
    with Progress("emogate inference", *columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("inference", total=total)
        yield lambda done: bar.advance(task, done)
