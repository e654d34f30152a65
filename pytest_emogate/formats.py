"""How numbers and answers are written for people, in one place: percentages, intervals, p-values, the invalid
answers, sparklines. The check messages, the terminal, the Markdown and the plot all use these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

SPARKS = "▁▂▃▄▅▆▇█"


def pct(value: float) -> str:
    """A fraction as a percentage with one decimal: 0.4286 -> '42.9%'."""
    return f"{100 * value:.1f}%"


def pct2(value: float) -> str:
    """A fraction as a percentage with two decimals: 0.90647 -> '90.65%'."""
    return f"{100 * value:.2f}%"


def ci_range(bounds: tuple[float, float]) -> str:
    """An interval as '16.3-61.2%'."""
    return f"{100 * bounds[0]:.1f}-{100 * bounds[1]:.1f}%"


def interval(bounds: tuple[float, float]) -> str:
    """A Wilson interval as '95% CI 16.3-61.2%'."""
    return f"95% CI {ci_range(bounds)}"


def p_text(p: float) -> str:
    """A p-value with four decimals, or in scientific notation below 0.0001."""
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def invalid_answers(answers: Mapping[str, int]) -> str:
    """The invalid answer words with their counts: "'doubt' x1, '(empty)' x2"."""
    return ", ".join(f"{word or '(empty)'!r} x{times}" for word, times in answers.items())


def invalid_policy(policy: str) -> str:
    """What the thresholds do with invalid answers: 'counted as wrong' or "mapped to 'neutral'"."""
    return "counted as wrong" if policy == "wrong" else f"mapped to {policy!r}"


def sparkline(values: Sequence[float]) -> str:
    """One bar per value, scaled between the values' own min and max (flat when they are all equal)."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high - low < 1e-12:
        return SPARKS[3] * len(values)
    return "".join(SPARKS[round((value - low) / (high - low) * (len(SPARKS) - 1))] for value in values)
