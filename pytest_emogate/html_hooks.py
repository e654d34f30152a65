"""The gate in pytest-html's report (`--html`), through pytest-html's own hooks and extras: each gate test's row
carries its check's message and a link to the emogate page (`--emogate-html`, relative to the report's folder),
and the report's summary gains the verdict, the failed checks and the per-class table.

Registered only when the gate is on and pytest-html writes a report; pytest_html is imported only then.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_emogate.files import display_path
from pytest_emogate.gate_tests import NODE

if TYPE_CHECKING:
    from pytest_emogate.gate import Gate
    from pytest_emogate.outputs import Outputs


def register(config: pytest.Config, gate: Gate, outputs: Outputs) -> None:
    """Add the hooks when pytest-html is active and writes a report (`--html PATH`)."""
    report_path = config.getoption("htmlpath", None) if config.pluginmanager.hasplugin("html") else None
    if report_path:
        # where pytest-html writes it: the working directory joined with the expanded option
        where = Path.cwd() / Path(os.path.expandvars(str(report_path))).expanduser()
        config.pluginmanager.register(PytestHtmlHooks(gate, outputs, where), "emogate-pytest-html")


class PytestHtmlHooks:
    """pytest-html hook implementations for one gated session."""

    def __init__(self, gate: Gate, outputs: Outputs, report_path: Path) -> None:
        self.gate = gate
        self.outputs = outputs
        self.check_ids = {f"{NODE}::{check.test_name}": check.id for check in gate.checks}
        self.link = None
        if outputs.html is not None:
            self.link = Path(os.path.relpath(outputs.html, report_path.parent)).as_posix()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        """A gate test's call report gains its check's message and the link to the emogate page (extras)."""
        report = yield
        check_id = self.check_ids.get(item.nodeid)
        if report.when == "call" and check_id is not None and self.gate.ready:
            from html import escape

            from pytest_html import extras  # type: ignore[import-untyped]

            outcome = self.gate.outcomes().get(check_id)
            added = []
            if outcome is not None:
                added.append(extras.html(f'<div class="emogate-check"><code>{escape(check_id)}</code>: '
                                         f"{escape(outcome.message)}</div>"))  # fmt: skip
            if self.link is not None:
                added.append(extras.url(self.link, name="emogate page"))
            report.extras = [*getattr(report, "extras", []), *added]
        return report

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
    ) -> None:
        """The gate's verdict, failed checks and per-class table above pytest-html's results table."""
        from html import escape

        verdict = self.gate.verdict()
        if self.gate.available:
            from pytest_emogate.report.html import summary_fragment

            fragment = summary_fragment(self.outputs.html_input(self.gate, verdict, report={}))
        else:
            fragment = f"<p>{escape(verdict.line())}</p>"
        if self.link is not None:
            shown = escape(display_path(self.outputs.html)) if self.outputs.html else ""
            fragment += f'<p>The whole gate: <a href="{escape(self.link)}">{shown}</a></p>'
        prefix.append(f'<div id="emogate-summary">{fragment}</div>')
