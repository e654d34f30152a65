"""The HTML page (`--emogate-html`): self-contained (nothing loads from anywhere), every untrusted string escaped,
the verdict, the six classes, every sample and the broken ones; written through the session's outputs; and
rendered by a real browser (headless Chromium, marked slow)."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pytest_emogate.evaluate.baseline import read_baseline
from pytest_emogate.evaluate.checks import evaluate_all
from pytest_emogate.evaluate.metrics import compute_result, score_samples
from pytest_emogate.evaluate.regression import regression_ids, regression_outcome
from pytest_emogate.evaluate.thresholds import load_thresholds
from pytest_emogate.evaluate.verdict import judge
from pytest_emogate.predictions import read_predictions
from pytest_emogate.report import html as html_page
from pytest_emogate.report.html import HtmlInput, changes, render_html, script_json
from pytest_emogate.report.html_assets import SCRIPT
from pytest_emogate.report.json_report import baseline_report
from tests.conftest import LENIENT, REGRESSED, SEED, THRESHOLDS

LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
HOSTILE = ("<script>alert(1)</script>", "</script><img src=x onerror=alert(2)>", "sad\u2028<b>&amp;</b>")


class Page(HTMLParser):
    """Every element with its attributes, the text of each element kind, and the raw content of scripts/styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.raw: dict[str, list[str]] = {"script": [], "style": []}
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1] in self.raw:
            self.raw[self._open[-1]].append(data)
        else:
            self.text.append(data)

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.elements if tag == name]


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def hostile_candidate(path: Path) -> Path:
    """The regressed candidate with hostile answers in three samples (each still read as a label or invalid)."""
    rows = list(csv.DictReader(REGRESSED.open(encoding="utf-8")))
    for row, answer in zip(rows[:3], HOSTILE, strict=True):
        row["output"] = answer
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["name", "label", "output"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def page_input(candidate: Path, baseline: bool = True, thresholds_path: Path = THRESHOLDS) -> HtmlInput:
    thresholds = load_thresholds(thresholds_path)
    labels = thresholds.labels
    result = compute_result(score_samples(read_predictions(candidate, labels), labels), labels)
    outcomes = list(evaluate_all(thresholds, result))
    comparison, report = None, {"provenance": {"thresholds_sha256": thresholds.sha256, "versions": {"x": "<1>"}}}
    if baseline:
        accepted = read_baseline(SEED, thresholds)
        comparison = accepted.compare(thresholds, result)
        outcomes += [regression_outcome(thresholds, comparison, key) for key in regression_ids(thresholds)]
        report["baseline"] = baseline_report(comparison, accepted, thresholds)
    verdict = judge([o.id for o in outcomes], {o.id: "passed" if o.passed else "failed" for o in outcomes})
    return HtmlInput(result, thresholds, outcomes, verdict, "header <x>", report, comparison,
                     "baseline base.csv" if baseline else "")  # fmt: skip


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[HtmlInput, str]:
    data = page_input(hostile_candidate(tmp_path_factory.mktemp("html") / "hostile.csv"))
    return data, render_html(data)


def test_hostile_answers_are_text_never_elements(hostile: tuple[HtmlInput, str]) -> None:
    _, text = hostile
    page = parse(text)
    assert page.tags("img") == [] and page.tags("b") == []
    scripts = page.tags("script")
    assert scripts == [{"type": "application/json", "id": "emogate-data"}, {}]  # the data block and the page's own
    shown = "".join(page.text)
    for answer in HOSTILE:
        assert answer.replace("\u2028", "\\u2028") in shown  # each answer is in the page as text (clip escapes U+2028)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>alert" not in text
    data_block = page.raw["script"][0]
    assert "<" not in data_block and ">" not in data_block and "&" not in data_block
    assert json.loads(data_block)["labels"] == list(LABELS)


def test_script_json_cannot_close_its_block_or_break_a_line() -> None:
    value = {"label": "</script><script>alert(1)</script>", "line": "a\u2028b\u2029c", "amp": "&lt;"}
    text = script_json(value)
    assert not set(text) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(text) == value


def test_the_page_loads_nothing_and_runs_only_its_own_script(hostile: tuple[HtmlInput, str]) -> None:
    _, text = hostile
    page = parse(text)
    for tag, attrs in page.elements:
        assert "src" not in attrs, tag
        href = attrs.get("href")
        assert href is None or href.startswith("#"), (tag, href)
        assert "url(" not in (attrs.get("style") or "")
    styles = "".join(page.raw["style"])
    assert "@import" not in styles and "url(" not in styles and "@font-face" not in styles
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:|//|data:|file:)", text, re.IGNORECASE)
    policy = next(attrs["content"] for attrs in page.tags("meta") if attrs.get("http-equiv"))
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert policy is not None and policy.startswith("default-src 'none';") and f"'sha256-{digest}'" in policy
    assert page.raw["script"][1] == SCRIPT  # the script the hash allows is the one in the page


def test_the_page_shows_the_verdict_the_classes_every_sample_and_the_broken(hostile: tuple[HtmlInput, str]) -> None:
    data, text = hostile
    page = parse(text)
    assert data.verdict.failed == ("label_validity", "regression[accuracy]")  # the hostile answers are invalid
    assert "emogate: FAILED (2 of 23 checks)" in "".join(page.text)
    assert "accuracy 90.65% -&gt; 89.21% (-1.44 pts, max drop 1.00 pts)" in text  # the failed check's message
    assert [attrs["data-class"] for attrs in page.tags("tr") if "data-class" in attrs] == list(LABELS)
    assert len(page.tags("svg")) == 6 and len(page.tags("line")) == 12  # each bar: axis and floor line
    rows = [attrs for attrs in page.tags("tr") if "data-status" in attrs]
    assert len(rows) == 834 == len({sample.name for sample in data.result.samples})
    for sample in data.result.samples:
        assert f"<td>{sample.name}</td>" in text
    assert data.comparison is not None
    broken = [pair.name for pair in data.comparison.samples("broken")]
    assert len(broken) == 17 and sum(1 for row in rows if row["data-change"] == "broken") == 17
    section = text[text.index('<table id="broken">') : text.index("</table>", text.index('<table id="broken">'))]
    assert [name for name in broken if f"<td>{name}</td>" in section] == broken
    assert set(changes(data.comparison).values()) <= {"broken", "fixed", "changed", "same"}


def test_the_heatmap_has_a_cell_link_per_gold_and_predicted_label(hostile: tuple[HtmlInput, str]) -> None:
    data, text = hostile
    cells = [attrs["href"] for attrs in parse(text).tags("a") if attrs.get("class") == "cell"]
    assert len(cells) == 6 * 7 and "#cell=sad/%3Cinvalid%3E" in cells
    assert data.result.columns[-1] == "<invalid>"


def test_the_regression_table_has_p_the_smallest_failing_drop_and_under_holm_the_adjusted_p(tmp_path: Path) -> None:
    plain = render_html(page_input(REGRESSED))
    table = plain[plain.index('<table id="regression">') : plain.index("</table>", plain.index('id="regression"'))]
    assert "<th>p</th><th>max drop</th><th>smallest failing drop</th>" in table and "Holm" not in table
    assert "<td>accuracy <small>(metric)</small></td><td>90.65%</td><td>89.21%</td><td>-1.44</td>" in table
    assert '<td>0.0085</td><td>1.00 pts</td><td>1.08 pts</td><td><span class="s-failed">FAIL</span>' in table
    holm = tmp_path / "thresholds.yaml"
    holm.write_text(
        THRESHOLDS.read_text(encoding="utf-8").replace("  alpha: 0.05\n", "  alpha: 0.05\n  correction: holm\n")
    )
    text = render_html(page_input(REGRESSED, thresholds_path=holm))
    assert "<th>p</th><th>p (Holm)</th><th>max drop</th>" in text
    # accuracy's p times the 8 regression checks: no longer below alpha, so the check passes
    assert '<td>0.0085</td><td>0.0676</td><td>1.00 pts</td><td>1.08 pts</td><td><span class="s-passed">' in text


def test_the_probe_section_lists_the_differing_answers_escaped() -> None:
    from dataclasses import replace

    data = page_input(SEED, baseline=False)
    probe = {"n": 24, "disagree": 1, "settings": {"batch_size": 1, "dtype": "float16"},
             "samples": [{"name": "samplenew_00000001", "answer": "happy", "probe_answer": "<i>sad</i>"}]}  # fmt: skip
    text = render_html(replace(data, report={**data.report, "probe": probe}))
    section = text[text.index('<section id="probe">') : text.index("</section>", text.index('<section id="probe">'))]
    assert "23/24 answers equal at batch size 1 (batch_size 1, dtype float16)" in section
    assert "<td>samplenew_00000001</td>" in section and "&lt;i&gt;sad&lt;/i&gt;" in section
    assert '<section id="probe">' not in render_html(data)


def test_without_a_baseline_there_is_no_regression_section() -> None:
    text = render_html(page_input(SEED, baseline=False))
    assert 'id="regression"' not in text and 'data-change="' not in text and 'id="f-change"' not in text
    assert text.split("</h1>")[0].endswith("<h1>emogate: FAILED (1 of 15 checks)")  # the seed's one invalid answer
    assert "<li><code>label_validity</code>: " in text


def test_the_page_is_written_at_the_end_of_the_session(project: pytest.Pytester) -> None:
    result = project.runpytest("--emogate-predictions", "regressed.csv", "--emogate-baseline", "base.csv",
                               "--emogate-no-history", "--emogate-html", "out/page.html", "--emogate-report",
                               "r.json")  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["emogate: wrote the HTML report to out/page.html"])
    text = (project.path / "out" / "page.html").read_text(encoding="utf-8")
    assert "<title>emogate: FAILED (1 of 23 checks)</title>" in text
    report = json.loads((project.path / "r.json").read_text(encoding="utf-8"))
    assert f"<code>{report['provenance']['predictions_sha256']}</code>" in text  # provenance from the JSON report
    assert "<code>None</code>" not in text and "<td>checkpoint_sha256</td><td><code>-</code>" in text
    assert re.search(r"<td>timings_s\.gate</td><td><code>\d+\.\d{3} s</code>", text)


def test_an_html_path_that_is_a_folder_stops_the_run_before_any_test(project: pytest.Pytester) -> None:
    (project.path / "page").mkdir()
    result = project.runpytest("--emogate-predictions", "base.csv", "--emogate-no-history", "--emogate-html", "page")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--emogate-html" in result.stderr.str() and "passed" not in result.stdout.str()


def test_an_unwritten_page_is_named_and_the_run_is_not_green(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytest_emogate.files

    def full(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pytest_emogate.files, "atomic_write_text", full)
    project.makefile(".yaml", thresholds=LENIENT)  # the seed passes: only the unwritten page can fail the run
    result = project.runpytest("--emogate-predictions", "base.csv", "--emogate-no-history", "--emogate-html", "p.html")
    result.stdout.fnmatch_lines(["emogate: --emogate-html p.html was NOT written: No space left on device"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def chromium() -> str:
    """Debian's chromium; missing is a skip on a laptop and a failure in CI (.ci/run installs it)."""
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: the browser test must run in CI (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def browse(page: Path, tmp_path: Path, *args: str, fragment: str = "") -> str:
    """Run headless Chromium on the page and return its stdout (its stderr has harmless noise)."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
               *args, page.as_uri() + fragment]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def seed_page(project: pytest.Pytester) -> Path:
    """The page of the full 834-sample seed's regressed candidate against the seed: 17 broken samples."""
    project.runpytest("--emogate-predictions", "regressed.csv", "--emogate-baseline", "base.csv",
                      "--emogate-no-history", "--emogate-html", "page.html")  # fmt: skip
    return project.path / "page.html"


@pytest.mark.slow
def test_chromium_renders_the_verdict_the_classes_every_sample_and_the_broken(seed_page: Path, tmp_path: Path) -> None:
    dom = parse(browse(seed_page, tmp_path, "--dump-dom", fragment="#cell=surprise/sad"))
    shown = "".join(dom.text)
    assert "emogate: FAILED (1 of 23 checks)" in shown
    assert [attrs["data-class"] for attrs in dom.tags("tr") if "data-class" in attrs] == list(LABELS)
    names = [row["name"] for row in csv.DictReader(SEED.open(encoding="utf-8"))]
    rows = [attrs for attrs in dom.tags("tr") if "data-status" in attrs]
    assert len(rows) == 834 and all(name in shown for name in names)
    broken = [attrs for attrs in rows if attrs.get("data-change") == "broken"]
    assert len(broken) == 17 and "Broken (17)" in shown and "samplenew_00000002" in shown
    # the script ran under the page's policy: the filters show, and the linked heatmap cell lists its sample
    assert "hidden" not in next(attrs for attrs in dom.tags("div") if attrs.get("id") == "filters")
    assert "gold surprise, predicted sad: 1 sample" in shown and "1 of 834 samples shown" in shown


def test_a_large_sample_table_starts_folded(monkeypatch: pytest.MonkeyPatch) -> None:
    data = page_input(SEED, baseline=False)
    assert '<details id="samples-box" open><summary>the table</summary>' in render_html(data)
    monkeypatch.setattr(html_page, "OPEN_ROWS", 833)
    text = render_html(data)
    assert '<details id="samples-box"><summary>the table: 834 rows take a browser a while to show' in text
    assert '"open_rows": 833' in text


@pytest.mark.slow
def test_chromium_unfolds_a_folded_table_for_a_heatmap_cell(
    project: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(html_page, "OPEN_ROWS", 100)
    project.runpytest("--emogate-predictions", "base.csv", "--emogate-no-history", "--emogate-html", "page.html")
    dom = browse(project.path / "page.html", tmp_path, "--dump-dom", fragment="#cell=worried/angry")
    assert '<details id="samples-box" open="">' in dom and "5 of 834 samples shown" in dom


@pytest.mark.slow
def test_a_screenshot_of_the_page_is_not_blank(seed_page: Path, tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    from PIL import ImageStat

    shot = tmp_path / "page.png"
    browse(seed_page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    with image_module.open(shot) as image:
        assert image.size == (1280, 2000)
        grey = image.convert("L")
        assert len(grey.getcolors(maxcolors=1 << 16) or []) > 20
        assert ImageStat.Stat(grey).stddev[0] > 10
