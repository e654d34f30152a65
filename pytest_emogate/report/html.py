"""Pure rendering of the HTML page (`--emogate-html`): one self-contained file that loads nothing (no external
script, style, font or image; a Content-Security-Policy says so to the browser), so it opens from a CI artifact,
a laptop or an air-gapped box. No pytest in here.

The page shows the verdict and every failed and not-run check's message, the per-class table with Wilson
interval bars and floors (inline SVG), the confusion matrix as a heatmap, every sample in one table, the
regression table, the probe and the provenance. All of that is static HTML: it renders with JavaScript off. The
one inline script (allowed by its hash, so no other script can run) adds the sample table's filters and search
and lists a heatmap cell's samples when it is clicked; it reads the rows' data attributes and builds elements with
textContent only. Every untrusted string (answers, sample names, labels, messages, paths) is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

from pytest_emogate.answers import INVALID
from pytest_emogate.evaluate.checks import Outcome
from pytest_emogate.evaluate.compare import Comparison, Pair
from pytest_emogate.evaluate.metrics import METRICS, GateResult
from pytest_emogate.evaluate.thresholds import Thresholds
from pytest_emogate.evaluate.verdict import FAILED, PASSED, Verdict
from pytest_emogate.formats import ci_range, clip, invalid_answers, invalid_policy, p_text, pct, pct2
from pytest_emogate.report.html_assets import CSP, CSS, SCRIPT

ANSWER_CHARS = 400
"""The most characters of an answer a table cell shows (one line; the JSON report has every answer whole)."""
CHANGES = ("broken", "fixed", "changed", "same")
"""A sample's change against the baseline: only the baseline right, only the candidate right, a different
answer with the same correctness (`Comparison.changed`), or the same."""
STATUSES = ("right", "wrong", "invalid")
OPEN_ROWS = 5000
"""Above this many samples the sample table starts folded: a browser lays out 83,400 rows in tens of seconds, and
a folded table (or rows a filter hides) costs nothing to lay out; a filter that leaves at most this many unfolds
it."""


@dataclass(frozen=True)
class HtmlInput:
    """What the page shows: the run, its checks, the JSON report's sections (provenance, baseline, probe) and
    optionally the baseline comparison."""

    result: GateResult
    thresholds: Thresholds
    outcomes: Sequence[Outcome]
    verdict: Verdict
    header: str
    report: Mapping[str, Any]
    """The JSON report of the run (`report_dict`, with `baseline` and `probe` when there are)."""
    comparison: Comparison | None = None
    baseline: str = ""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def script_json(value: Any) -> str:
    """JSON safe inside a `<script type="application/json">` block: `<`, `>`, `&` and U+2028/9 as \\u escapes,
    so no text in it can close the block or start markup."""
    text = json.dumps(value, ensure_ascii=False)
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                       ("\u2029", "\\u2029")):  # fmt: skip
        text = text.replace(char, code)
    return text


def _table(header: Sequence[str], rows: Iterable[str], attrs: str = "") -> str:
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _row(cells: Sequence[str], attrs: str = "") -> str:
    """A row of cells that are already HTML."""
    return f"<tr{attrs}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _status(verdict: Verdict, check_id: str) -> str:
    status = verdict.statuses.get(check_id)
    if status is None:
        return "-"
    text = {PASSED: "pass", FAILED: "FAIL"}.get(status, "not run")
    return f'<span class="s-{_e(status)}">{text}</span>'


def render_html(data: HtmlInput) -> str:
    """The whole page."""
    verdict = data.verdict
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>emogate: {_e(verdict.headline())}</title>",
        f"<style>{CSS}</style></head><body>",
        summary_fragment(data),
        _overall_section(data),
        _confusion_section(data.result),
    ]
    if data.comparison is not None:
        parts.append(_regression_section(data, data.comparison))
    parts += [
        _samples_section(data),
        _probe_section(data.report.get("probe")),
        _checks_section(data),
        _provenance_section(data.report),
        f'<script type="application/json" id="emogate-data">{script_json(_page_data(data))}</script>',
        f"<script>{SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def summary_fragment(data: HtmlInput) -> str:
    """The verdict, the failed and not-run checks with their messages and the per-class table: the page's top,
    and what the pytest-html report shows of the gate."""
    verdict = data.verdict
    by_id = {outcome.id: outcome for outcome in data.outcomes}
    parts = [
        f'<section id="verdict" class="v-{_e(verdict.status)}"><h1>emogate: {_e(verdict.headline())}</h1>',
        f"<p>{_e(verdict.line())}</p>",
        *(f"<p class='header'>{_e(line)}</p>" for line in data.header.splitlines()),
    ]
    if verdict.error is not None:
        parts.append(f"<p>no answers could be made: {_e(verdict.error)}</p>")
    for title, ids in (("Failed checks", verdict.failed), ("Not run", verdict.not_run)):
        if ids:
            items = "".join(
                f"<li><code>{_e(check)}</code>: {_e(by_id[check].message) if check in by_id else 'not computed'}</li>"
                for check in ids
            )
            parts.append(f"<h2>{title} ({len(ids)})</h2><ul class='checks'>{items}</ul>")
    parts.append("</section>")
    parts.append(_class_section(data))
    return "\n".join(parts)


def _bar(low: float, high: float, value: float, floor: float | None, failed: bool) -> str:
    """An inline SVG: the Wilson interval as a band, the recall as a dot, the floor as a red line."""

    def x(share: float) -> str:
        return f"{4 + 232 * min(1.0, max(0.0, share)):.1f}"

    floor_mark = (
        ""
        if floor is None
        else f'<line x1="{x(floor)}" x2="{x(floor)}" y1="1" y2="17" stroke="#c62828" stroke-width="2"/>'
    )
    dot = "#c62828" if failed else "#1b5e20"
    tip = f"recall {pct(value)}, 95% CI {ci_range((low, high))}" + ("" if floor is None else f", floor {pct(floor)}")
    return (
        f'<svg class="bar" width="240" height="18" viewBox="0 0 240 18" role="img"><title>{_e(tip)}</title>'
        '<line x1="4" x2="236" y1="9" y2="9" stroke="#ccc"/>'
        f'<rect x="{x(low)}" y="5" width="{232 * max(0.0, high - low):.1f}" height="8" fill="#90caf9"/>'
        f'{floor_mark}<circle cx="{x(value)}" cy="9" r="4" fill="{dot}"/></svg>'
    )


def _class_section(data: HtmlInput) -> str:
    result, verdict = data.result, data.verdict
    rows = []
    for label in result.labels:
        stats = result.per_class[label]
        rule = data.thresholds.per_class.get(label)
        check = f"class_floor[{label}]"
        floor = None if rule is None else rule.floor
        floor_text = "-" if rule is None else pct(rule.floor) + (" (lower bound)" if rule.on == "lower_bound" else "")
        bar = _bar(*stats.recall_ci95, stats.recall, floor, verdict.statuses.get(check) == FAILED)
        rows.append(_row([_e(label), str(stats.n), str(stats.correct), pct(stats.recall), ci_range(stats.recall_ci95),
                          _e(floor_text), bar, pct(stats.precision), pct(stats.f1), _status(verdict, check)],
                         f' data-class="{_e(label)}"'))  # fmt: skip
    header = ["class", "n", "correct", "recall", "95% CI", "floor", "interval (0-100%; red line: floor)",
              "precision", "F1", "floor check"]  # fmt: skip
    return f'<section id="classes"><h2>Per-class recall</h2>{_table(header, rows)}</section>'


def _overall_section(data: HtmlInput) -> str:
    rows = []
    for metric, info in METRICS.items():
        floor = data.thresholds.overall.get(metric)
        name = f"<span title='{_e(info.description)}'>{_e(metric)}</span>"
        value, limit = pct2(data.result.metrics[metric]), "-" if floor is None else pct2(floor)
        rows.append(_row([name, value, limit, _status(data.verdict, f"overall[{metric}]")]))
    result = data.result
    invalid = ""
    if result.invalid_count:
        invalid = (f"<p>Invalid answers ({result.invalid_count}, {_e(invalid_policy(result.invalid_policy))}): "
                   f"{_e(invalid_answers(result.invalid_answers))}</p>")  # fmt: skip
    table = _table(["metric", "value", "floor", "floor check"], rows)
    return f'<section id="overall"><h2>Overall ({result.n} samples)</h2>{table}{invalid}</section>'


def _confusion_section(result: GateResult) -> str:
    columns = result.columns
    head = "".join(f"<th>{_e(column)}</th>" for column in columns)
    rows = []
    for gold in result.labels:
        counts = result.confusion[gold]
        total = result.per_class[gold].n or 1
        cells = []
        for column in columns:
            count = counts.get(column, 0)
            share = count / total
            ink = "#fff" if share > 0.55 else "#000"
            diagonal = " diag" if column == gold else ""
            cells.append(
                f'<td class="hm{diagonal}" style="background:rgba(21,101,192,{share:.3f});color:{ink}">'
                f'<a class="cell" href="#cell={_e(quote(gold, safe=""))}/{_e(quote(column, safe=""))}" '
                f'title="gold {_e(gold)}, predicted {_e(column)}: {count} of {total}">{count}</a></td>'
            )
        rows.append(f"<tr><th>{_e(gold)}</th>{''.join(cells)}<td>{result.per_class[gold].n}</td></tr>")
    table = f"<table class='heatmap'><thead><tr><th>gold \\ predicted</th>{head}<th>n</th></tr></thead><tbody>"
    return (
        '<section id="confusion"><h2>Confusion matrix (rows: gold label, columns: predicted label)</h2>'
        f"{table}{''.join(rows)}</tbody></table>"
        '<p class="js-only" hidden>Click a cell to list its samples.</p><div id="cell-list"></div></section>'
    )


def _regression_section(data: HtmlInput, comparison: Comparison) -> str:
    section = data.report.get("baseline") or {}
    holm = section.get("correction") == "holm"
    header = ["metric / class", "baseline", "candidate", "Δ pts", "95% CI of Δ", "test", "fixed", "broken", "p"]
    header += ["p (Holm)"] if holm else []
    header += ["max drop", "smallest failing drop", "regression"]
    rows = []
    for kind, entries in (("metric", section.get("metrics", {})), ("class", section.get("per_class", {}))):
        for key, entry in entries.items():
            low, high = entry["ci95"]
            cells = [f"{_e(key)} <small>({kind})</small>", pct2(entry["baseline"]), pct2(entry["candidate"]),
                     f"{100 * entry['delta']:+.2f}", f"{100 * low:+.2f} to {100 * high:+.2f}",
                     "exact McNemar" if entry["test"] == "mcnemar" else "paired bootstrap",
                     _maybe(entry["fixed"]), _maybe(entry["broken"]), p_text(entry["p_value"])]  # fmt: skip
            if holm:
                cells.append("-" if entry["p_value_used"] is None else p_text(entry["p_value_used"]))
            drop = entry["smallest_failing_drop"]
            cells += ["-" if entry["max_drop"] is None else f"{100 * entry['max_drop']:.2f} pts",
                      "-" if drop is None else f"{100 * drop:.2f} pts",
                      _status(data.verdict, f"regression[{key}]")]  # fmt: skip
            rows.append(_row(cells))
    counts = comparison.counts()
    alpha = section.get("alpha")
    lines = [
        f"<h2>Against {_e(data.baseline)}</h2>",
        f"<p>{len(comparison.pairs)} samples paired by name: <strong>{counts['broken']} broken</strong>, "
        f"<strong>{counts['fixed']} fixed</strong>, {counts['both_right']} both right, {counts['both_wrong']} both "
        f"wrong. A drop fails only when it exceeds its max drop and its one-sided p is below alpha"
        f"{'' if alpha is None else f' {alpha:g}'}; improvements never fail. p-values are one-sided: exact McNemar "
        f"on the fixed/broken pairs, or a paired bootstrap ({comparison.reps} resamples stratified by gold label, "
        f"seed {comparison.seed}).</p>",
        _table(header, rows, ' id="regression"'),
    ]
    for title, pairs in (("Broken", comparison.samples("broken")), ("Fixed", comparison.samples("fixed"))):
        if pairs:
            pair_rows = (_row([_name(p.name), _e(p.gold), _e(p.baseline), _e(p.candidate), _answer(p.baseline_output),
                               _answer(p.candidate_output)]) for p in pairs)  # fmt: skip
            table = _table(["sample", "gold", "baseline read as", "candidate read as", "baseline answer",
                            "candidate answer"], pair_rows, f' id="{title.lower()}"')  # fmt: skip
            lines.append(f"<details{' open' if title == 'Broken' else ''}><summary>{title} ({len(pairs)})"
                         f"</summary>{table}</details>")  # fmt: skip
    return '<section id="baseline">' + "".join(lines) + "</section>"


def _maybe(value: object) -> str:
    return "-" if value is None else _e(value)


def _answer(text: str) -> str:
    return f'<span class="answer">{_e(clip(text, ANSWER_CHARS))}</span>'


def _name(name: str) -> str:
    """A sample name as the terminal and the Markdown show it: one line, its control characters visible, cut."""
    return _e(clip(name))


def changes(comparison: Comparison) -> dict[str, str]:
    """Each paired sample's change: `broken`, `fixed`, `changed` (`Comparison.changed`) or `same`."""
    changed = {pair.name for pairs in comparison.changed().values() for pair in pairs}
    found = {}
    for pair in comparison.pairs:
        outcome = pair.outcome
        found[pair.name] = outcome if outcome in ("broken", "fixed") else "changed" if pair.name in changed else "same"
    return found


def _samples_section(data: HtmlInput) -> str:
    comparison = data.comparison
    pairs: dict[str, Pair] = {pair.name: pair for pair in comparison.pairs} if comparison is not None else {}
    change = changes(comparison) if comparison is not None else {}
    header = ["sample", "gold", "predicted", "result", "answer"]
    if comparison is not None:
        header += ["baseline predicted", "baseline answer", "change"]
    rows = []
    for sample in data.result.samples:
        status = "invalid" if not sample.valid else "right" if sample.correct else "wrong"
        attrs = f' data-gold="{_e(sample.gold)}" data-pred="{_e(sample.predicted)}" data-status="{status}"'
        cells = [
            _name(sample.name),
            _e(sample.gold),
            _e(sample.predicted),
            status,
            _e(clip(sample.output, ANSWER_CHARS)),
        ]
        pair = pairs.get(sample.name)
        if comparison is not None:
            kind = change.get(sample.name, "same")
            attrs += f' data-change="{kind}"'
            answer = _e(clip(pair.baseline_output, ANSWER_CHARS)) if pair is not None else "-"
            cells += [_e(pair.baseline) if pair is not None else "-", answer, kind]
        rows.append(_row(cells, attrs))
    labels = data.result.labels
    predicted = data.result.columns + tuple(
        sorted({s.predicted for s in data.result.samples} - set(data.result.columns))
    )
    filters = [_select("gold", "gold class", labels), _select("pred", "predicted", predicted),
               _select("status", "result", STATUSES)]  # fmt: skip
    if comparison is not None:
        filters.append(_select("change", "change", CHANGES))
    filters.append('<label>search <input type="search" id="f-search" placeholder="name or answer text"></label>')
    filters.append('<button type="button" id="f-reset">show all</button> <span id="f-count"></span>')
    n = data.result.n
    widths = (18, 8, 8, 6, 60) if comparison is None else (16, 7, 7, 5, 24, 7, 24, 7)
    columns = "<colgroup>" + "".join(f'<col style="width:{width}%">' for width in widths) + "</colgroup>"
    table = _table(header, rows, ' id="samples"').replace("<thead>", columns + "<thead>", 1)
    folded = "" if n <= OPEN_ROWS else f": {n} rows take a browser a while to show, a filter unfolds fewer"
    return (
        f'<section id="samples-section"><h2>Every sample ({n})</h2>'
        "<noscript><p>The filters and the search need JavaScript; the table below is complete.</p></noscript>"
        f'<div id="filters" class="js-only" hidden>{" ".join(filters)}</div>'
        f"<p class='note'>Answers are shown to {ANSWER_CHARS} characters on one line; the JSON report "
        "(--emogate-report) has every answer whole.</p>"
        f'<details id="samples-box"{" open" if n <= OPEN_ROWS else ""}><summary>the table{folded}</summary>'
        f"{table}</details></section>"
    )


def _select(key: str, title: str, values: Sequence[str]) -> str:
    options = "".join(f'<option value="{_e(value)}">{_e(value)}</option>' for value in values)
    return (
        f'<label>{title} <select id="f-{key}" data-key="{key}"><option value="">all</option>{options}</select></label>'
    )


def _probe_section(probe: Mapping[str, Any] | None) -> str:
    if not probe:
        return ""
    rows = (_row([_name(s["name"]), _answer(s["answer"]), _answer(s["probe_answer"])]) for s in probe["samples"])
    settings = ", ".join(f"{_e(key)} {_e(value)}" for key, value in probe.get("settings", {}).items())
    table = _table(["sample", "answer", "answer at batch size 1"], rows) if probe["samples"] else ""
    return (
        f'<section id="probe"><h2>Consistency probe</h2><p>{probe["n"] - probe["disagree"]}/{probe["n"]} answers '
        f"equal at batch size 1 ({settings}).</p>{table}</section>"
    )


def _checks_section(data: HtmlInput) -> str:
    rows = (_row([f"<code>{_e(o.id)}</code>", _status(data.verdict, o.id), _e(o.message)]) for o in data.outcomes)
    return f'<section id="checks"><h2>Every check</h2>{_table(["check", "verdict", "message"], rows)}</section>'


def _flat(prefix: str, value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _flat(f"{prefix}.{key}" if prefix else str(key), inner)
    else:
        yield prefix, value


def _shown(key: str, value: Any) -> str:
    """A provenance value for people: "-" for what this run has none of (a predictions file has no checkpoint,
    no device, no inference time), a time in seconds to the millisecond."""
    if value is None:
        return "-"
    if isinstance(value, float) and key.startswith("timings_s"):
        return f"{value:.3f} s"
    return str(value)


def _provenance_section(report: Mapping[str, Any]) -> str:
    items = [*_flat("", report.get("provenance", {})), *_flat("timings_s", report.get("timings_s", {}))]
    rows = (_row([_e(key), f"<code>{_e(_shown(key, value))}</code>"]) for key, value in items)
    return f'<section id="provenance"><h2>Provenance</h2>{_table(["what", "value"], rows)}</section>'


def _page_data(data: HtmlInput) -> dict[str, Any]:
    return {"labels": list(data.result.labels), "columns": list(data.result.columns), "invalid": INVALID,
            "baseline": data.comparison is not None, "open_rows": OPEN_ROWS}  # fmt: skip
