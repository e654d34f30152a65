"""Answers -> result -> outcomes: the metrics, the paired comparison with a baseline, the checks and the verdict."""
