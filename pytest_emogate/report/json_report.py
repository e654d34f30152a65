"""The JSON report (`--emogate-report`): exact floats, the labelled confusion, every check with what pytest ran,
the verdict, provenance and timings, and with a baseline every delta, test, p-value and interval."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_emogate.evaluate.baseline import Baseline
from pytest_emogate.evaluate.checks import Outcome
from pytest_emogate.evaluate.compare import Comparison, Delta, Pair
from pytest_emogate.evaluate.metrics import GateResult
from pytest_emogate.evaluate.regression import detection_limit, family_p_values, regression_ids
from pytest_emogate.evaluate.thresholds import Thresholds
from pytest_emogate.evaluate.verdict import ERROR, Verdict
from pytest_emogate.files import atomic_write_text
from pytest_emogate.inference.probe import ProbeResult


def report_dict(
    result: GateResult,
    outcomes: Sequence[Outcome],
    verdict: Verdict,
    provenance: Mapping[str, Any],
    timings_s: Mapping[str, float | None],
) -> dict[str, Any]:
    """The JSON report of design.md: exact floats, labelled confusion, every check, provenance and timings."""
    return {
        "n": result.n,
        "labels": list(result.labels),
        "metrics": dict(result.metrics),
        "per_class": {
            label: {
                "n": stats.n,
                "correct": stats.correct,
                "recall": stats.recall,
                "precision": stats.precision,
                "f1": stats.f1,
                "recall_ci95": list(stats.recall_ci95),
            }
            for label, stats in result.per_class.items()
        },
        "confusion": {gold: dict(row) for gold, row in result.confusion.items()},
        "invalid": {
            "count": result.invalid_count,
            "policy": result.invalid_policy,
            "answers": dict(result.invalid_answers),
            "samples": [sample.name for sample in result.invalid_samples],
        },
        "checks": [
            {
                "id": o.id,
                "passed": o.passed,
                "status": verdict.statuses[o.id],
                "value": o.value,
                "limit": o.limit,
                "message": o.message,
                "n": o.n,
            }
            for o in outcomes
        ],
        "verdict": verdict.status,
        "passed": verdict.passed,
        "not_run": list(verdict.not_run),
        "provenance": dict(provenance),
        "timings_s": dict(timings_s),
    }


def probe_section(probe: ProbeResult) -> dict[str, Any]:
    """The report's `probe`: how many samples were answered again, how many differ, how they were answered, and
    every differing sample with both answers exactly as made."""
    return {
        "n": probe.n,
        "disagree": probe.disagree,
        "settings": dict(probe.settings),
        "samples": [
            {"name": answer.name, "answer": answer.answer, "probe_answer": answer.probe_answer}
            for answer in probe.differ
        ],
    }


def error_report(error: str) -> dict[str, Any]:
    """The JSON report of a run a usage error stopped at its start: verdict "error", never passed, no check judged
    (the thresholds may be what is wrong), and the error's message."""
    return {"verdict": ERROR, "passed": False, "not_run": [], "checks": [], "error": error}


def write_report(path: Path, report: Mapping[str, Any]) -> None:
    """Write the JSON report atomically."""
    atomic_write_text(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def baseline_report(comparison: Comparison, baseline: Baseline, thresholds: Thresholds) -> dict[str, Any]:
    """The JSON report's `baseline` section: every metric's and class's delta, test, p-value (raw, and as the
    verdict used it), interval, and the smallest drop each exact-test check can fail at; then every broken, fixed
    and changed sample with both raw answers exactly as read."""
    policy = thresholds.regression
    max_drop = {**(policy.max_drop if policy else {})}
    class_drop = {**(policy.per_class_max_drop if policy else {})}
    declared = set(regression_ids(thresholds))
    used_p = family_p_values(thresholds, comparison)

    def entry(key: str, delta: Delta, limit: float | None) -> dict[str, Any]:
        checked = key in declared and limit is not None
        return {
            "baseline": delta.baseline, "candidate": delta.candidate, "delta": delta.delta, "n": delta.n,
            "test": delta.test, "p_value": delta.p_value, "p_value_used": used_p.get(key) if checked else None,
            "ci95": list(delta.ci95), "fixed": delta.fixed, "broken": delta.broken, "max_drop": limit,
            "smallest_failing_drop": detection_limit(thresholds, comparison, key) if checked else None,
        }  # fmt: skip

    changed = comparison.changed()
    return {
        "path": str(baseline.path),
        "predictions_sha256": baseline.sha256,
        "n": len(comparison.pairs),
        "paired": comparison.counts(),
        "alpha": policy.alpha if policy else None,
        "correction": policy.correction if policy else None,
        "bootstrap": {"reps": comparison.reps, "seed": comparison.seed, "stratified_by": "gold label"},
        "metrics": {name: entry(name, delta, max_drop.get(name)) for name, delta in comparison.metrics.items()},
        "per_class": {
            label: entry(label, delta, class_drop.get(label)) for label, delta in comparison.per_class.items()
        },
        "samples": {
            "broken": [sample_entry(pair) for pair in comparison.samples("broken")],
            "fixed": [sample_entry(pair) for pair in comparison.samples("fixed")],
            "changed": [sample_entry(pair, kind) for kind, pairs in changed.items() for pair in pairs],
            "changed_counts": {kind: len(pairs) for kind, pairs in changed.items()},
        },
    }


def sample_entry(pair: Pair, kind: str | None = None) -> dict[str, Any]:
    """One sample of `baseline.samples`: name, gold, both raw answers exactly as read, both predicted labels (a
    label, or `<invalid>`); changed samples also say how (`answer_text` or `wrong_label`)."""
    entry: dict[str, Any] = {
        "name": pair.name, "gold": pair.gold, "baseline_output": pair.baseline_output,
        "candidate_output": pair.candidate_output, "baseline_predicted": pair.baseline,
        "candidate_predicted": pair.candidate,
    }  # fmt: skip
    if kind is not None:
        entry["kind"] = kind
    return entry
