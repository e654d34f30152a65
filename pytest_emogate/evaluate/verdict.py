"""The gate's one verdict: every declared check's outcome, joined with what pytest actually ran.

A check computed as passed counts only when its test ran and passed; a deselected, skipped or interrupted check
leaves the verdict incomplete, and any gate test that failed (in setup, call or teardown) makes it failed. The
terminal, the JSON report, the Markdown, the history, JUnit and the update steps all read this one object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PASSED, FAILED, INCOMPLETE = "passed", "failed", "incomplete"
ERROR = "error"
"""The JSON report's verdict for a run that a usage error stopped at its start: the gate never judged a check
(bad thresholds, inputs or options). A usage error found after the start (a weight file broken at load) ends a
gate that did start: its verdict is FAILED, no answers could be made."""
NOT_RUN = "not_run"
LISTED_IDS = 5
"""How many not-run ids the one-line verdict names before it counts the rest (the JSON report lists all)."""


@dataclass(frozen=True)
class Verdict:
    """`status` is "passed" (every declared check ran and passed), "failed" (a check that ran failed) or
    "incomplete" (none failed, some declared checks did not run)."""

    status: str
    declared: tuple[str, ...]
    statuses: Mapping[str, str]
    """Each declared check id -> "passed", "failed" or "not_run"."""
    error: str | None = None
    """Why no check could be judged (the answers could not be made, e.g. non-finite logits); the verdict fails."""

    @property
    def passed(self) -> bool:
        """True only when every declared check ran and passed."""
        return self.status == PASSED

    @property
    def failed(self) -> tuple[str, ...]:
        """The ids of the checks that ran and failed, in declared order."""
        return tuple(check for check in self.declared if self.statuses[check] == FAILED)

    @property
    def not_run(self) -> tuple[str, ...]:
        """The ids of the declared checks that did not run (deselected, skipped, stopped by -x, interrupted)."""
        return tuple(check for check in self.declared if self.statuses[check] == NOT_RUN)

    def headline(self) -> str:
        """`PASSED (15 checks)`, `FAILED (1 of 15 checks)` or `INCOMPLETE (4 of 15 checks ran, all passed; 11 not
        run)`: the verdict without the check ids."""
        total = len(self.declared)
        if self.error is not None:  # every gate test that ran failed saying so; the others did not run
            parts = [f"{len(self.failed)} failed"] if self.failed else []
            parts += [f"{len(self.not_run)} not run"] if self.not_run else []
            return f"FAILED (no answers could be made; {total} checks: {', '.join(parts)})"
        if self.status == PASSED:
            return f"PASSED ({total} check{'s' if total != 1 else ''})"
        if self.status == FAILED:
            return f"FAILED ({len(self.failed)} of {total} checks)"
        return f"INCOMPLETE ({self._ran()}; {len(self.not_run)} not run)"

    def line(self) -> str:
        """The headline with the ids: `emogate verdict: FAILED (1 of 15 checks): label_validity`, or
        `emogate verdict: INCOMPLETE (4 of 15 checks ran, all passed; 11 not run: ...)`."""
        not_run = f"{len(self.not_run)} not run: {_listed(self.not_run)}" if self.not_run else ""
        if self.error is not None:
            return f"emogate verdict: FAILED (no answers could be made: {self.error.splitlines()[0]})"
        if self.status == PASSED:
            return f"emogate verdict: {self.headline()}"
        if self.status == FAILED:
            line = f"emogate verdict: {self.headline()}: {', '.join(self.failed)}"
            return line + (f"; {not_run}" if not_run else "")
        return f"emogate verdict: INCOMPLETE ({self._ran()}; {not_run})"

    def _ran(self) -> str:
        """`4 of 15 checks ran, all passed` (an incomplete verdict: none of those that ran failed)."""
        ran = len(self.declared) - len(self.not_run)
        return f"{ran} of {len(self.declared)} checks ran{', all passed' if ran else ''}"


def judge(declared: Sequence[str], ran: Mapping[str, str], error: str | None = None) -> Verdict:
    """The verdict of the declared checks, given how each one's test ended (`ran`: id -> "passed"/"failed";
    a declared id missing from it did not run); with an `error` (no answers could be made) it fails."""
    statuses = {check: ran.get(check, NOT_RUN) for check in declared}
    if error is not None or FAILED in statuses.values():
        status = FAILED
    elif NOT_RUN in statuses.values():
        status = INCOMPLETE
    else:
        status = PASSED
    return Verdict(status, tuple(declared), statuses, error)


def _listed(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:LISTED_IDS])
    return shown + (f" and {len(ids) - LISTED_IDS} more" if len(ids) > LISTED_IDS else "")
