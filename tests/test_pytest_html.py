"""The gate in pytest-html's report (`--html`): each gate test's row carries its check's message and a link to
the emogate page, and the summary gains the verdict and the per-class table (pytest-html's hooks and extras)."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest

pytest.importorskip("pytest_html")

GATE = ("--emogate-predictions", "regressed.csv", "--emogate-baseline", "base.csv", "--emogate-no-history")


def report_data(text: str) -> dict[str, Any]:
    """The test data pytest-html 4 keeps in its page (a JSON blob in an attribute)."""
    found = re.search(r'data-jsonblob="([^"]*)"', text)
    assert found is not None, "no pytest-html data in the report"
    data: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return data


def test_each_gate_row_has_its_message_and_the_link_and_the_summary_has_the_gate(project: pytest.Pytester) -> None:
    result = project.runpytest(*GATE, "--emogate-html", "out/page.html", "--emogate-report", "out/report.json",
                               "--html=rep/report.html", "--self-contained-html")  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = (project.path / "rep" / "report.html").read_text(encoding="utf-8")
    tests = report_data(text)["tests"]
    checks = json.loads((project.path / "out" / "report.json").read_text(encoding="utf-8"))["checks"]
    assert len(checks) == 23
    for check in checks:
        (row,) = [row for node, rows in tests.items() if node.startswith("emogate::") for row in rows
                  if _check_of(row) == check["id"]]  # fmt: skip
        contents = [extra["content"] for extra in row["extras"]]
        assert f"<code>{html.escape(check['id'])}</code>: {html.escape(check['message'])}</div>" in contents[0]
        assert contents[1] == "../out/page.html"  # relative to the report's folder
        assert 'href="../out/page.html"' in "".join(row["resultsTableRow"])
    summary = text[text.index('<div id="emogate-summary">') :]
    assert "<h1>emogate: FAILED (1 of 23 checks)</h1>" in summary and "Per-class recall" in summary
    assert "<li><code>regression[accuracy]</code>: accuracy 90.65% -&gt; 89.21%" in summary
    assert '<a href="../out/page.html">out/page.html</a>' in summary


def _check_of(row: dict[str, Any]) -> str | None:
    found = re.match(r'<div class="emogate-check"><code>([^<]*)</code>', row["extras"][0]["content"])
    return html.unescape(found.group(1)) if found else None


def test_without_the_page_the_rows_carry_the_message_and_no_link(project: pytest.Pytester) -> None:
    project.runpytest(*GATE, "--html=report.html")
    text = (project.path / "report.html").read_text(encoding="utf-8")
    rows = report_data(text)["tests"]["emogate::test_no_regression[accuracy]"]
    assert [extra["format_type"] for row in rows for extra in row["extras"]] == ["html"]
    assert "one-sided exact McNemar p=0.0085" in rows[0]["extras"][0]["content"]
    assert '<div id="emogate-summary">' in text and "emogate page" not in text


def test_without_html_or_without_the_gate_nothing_is_added(project: pytest.Pytester) -> None:
    config = project.parseconfigure(*GATE)
    assert config.pluginmanager.get_plugin("emogate-pytest-html") is None
    project.makepyfile(test_own="def test_own():\n    pass\n")
    project.runpytest("--html=report.html")
    text = (project.path / "report.html").read_text(encoding="utf-8")
    assert "emogate-summary" not in text and "emogate-check" not in text
