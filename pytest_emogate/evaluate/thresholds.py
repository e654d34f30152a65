"""thresholds.yaml -> frozen dataclasses; every problem in the file named in one UsageError.

Validation runs once, at configure time, so a typo in the gate file stops the run before any model loads.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pytest_emogate.answers import INVALID
from pytest_emogate.evaluate.metrics import METRICS
from pytest_emogate.files import usage_error

TOP_KEYS = ("labels", "aliases", "invalid", "overall", "per_class", "label_validity", "confusion", "regression")
FLOOR_MODES = ("point", "lower_bound")
CORRECTIONS = ("none", "holm")
BOOL_TAG = "tag:yaml.org,2002:bool"


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: `on`, `yes`, `no` stay strings (so `{floor: 0.4, on: lower_bound}` works)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


@dataclass(frozen=True)
class ClassFloor:
    """A floor on one class's recall: on the point estimate, or on its Wilson 95% lower bound."""

    floor: float
    on: str = "point"


@dataclass(frozen=True)
class RegressionPolicy:
    """The `regression:` section: how much a candidate may drop against the baseline, and at what alpha."""

    alpha: float = 0.05
    max_drop: Mapping[str, float] = field(default_factory=dict)
    per_class_max_drop: Mapping[str, float] = field(default_factory=dict)
    correction: str = "none"
    """`none`, or `holm`: the Holm-Bonferroni step-down over the family of regression checks."""


@dataclass(frozen=True)
class Thresholds:
    """The validated gate file."""

    path: Path
    sha256: str
    labels: tuple[str, ...]
    aliases: Mapping[str, str]
    invalid: str
    overall: Mapping[str, float]
    per_class: Mapping[str, ClassFloor]
    max_invalid: int | None
    confusion: Mapping[str, float]
    regression: RegressionPolicy | None

    def source(self, key: str) -> str:
        """Where a limit comes from, for failure messages: `thresholds.yaml: per_class.surprise`."""
        return f"{self.path.name}: {key}"


def load_thresholds(path: Path) -> Thresholds:
    """Read and validate a thresholds file; raise one UsageError listing every problem."""
    what = f"thresholds file {path}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise usage_error(what, ["the file does not exist (set --emogate-thresholds or create it)"]) from None
    except OSError as error:
        raise usage_error(what, [f"cannot be read: {error.strerror}"]) from None
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_Yaml12Loader)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise usage_error(what, [f"not valid YAML: {error}"]) from None
    problems: list[str] = []
    if not isinstance(data, dict):
        raise usage_error(what, [f"expected a mapping at the top level, found {_kind(data)}"])
    for key in data:
        if key not in TOP_KEYS:
            problems.append(f"{key}: unknown key; expected one of {', '.join(TOP_KEYS)}")
    labels = _labels(data.get("labels"), problems)
    known = set(labels)
    aliases = _mapping(data, "aliases", problems, lambda key, value: _label(value, known, f"aliases.{key}", problems))
    invalid = data.get("invalid", "wrong")
    if invalid != "wrong" and invalid not in known:
        problems.append(f"invalid: expected 'wrong' or one of the labels {labels}, found {invalid!r}")
    overall = _mapping(data, "overall", problems, lambda key, value: _metric_floor(key, value, problems))
    per_class = _mapping(data, "per_class", problems, lambda key, value: _class_floor(key, value, known, problems))
    max_invalid = _label_validity(data.get("label_validity"), problems)
    confusion = _mapping(data, "confusion", problems, lambda key, value: _confusion(key, value, known, problems))
    regression = _regression(data.get("regression"), labels, problems)
    if problems:
        raise usage_error(what, problems)
    return Thresholds(
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        labels=labels,
        aliases={str(key): value for key, value in aliases.items()},
        invalid=invalid,
        overall=overall,
        per_class=per_class,
        max_invalid=max_invalid,
        confusion=confusion,
        regression=regression,
    )


def _kind(value: object) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _labels(value: object, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        problems.append(f"labels: expected a non-empty list of label names, found {_kind(value)}")
        return ()
    duplicates = sorted({item for item in value if value.count(item) > 1})
    if duplicates:
        problems.append(f"labels: expected unique names, found duplicates {duplicates}")
    return tuple(value)


def _mapping(data: Mapping[str, Any], key: str, problems: list[str], parse: Any) -> dict[str, Any]:
    """Parse an optional mapping section; `parse(key, value)` returns the parsed value or None when invalid."""
    section = data.get(key)
    if section is None:
        return {}
    if not isinstance(section, dict):
        problems.append(f"{key}: expected a mapping, found {_kind(section)}")
        return {}
    parsed = {}
    for item_key, item_value in section.items():
        value = parse(str(item_key), item_value)
        if value is not None:
            parsed[str(item_key)] = value
    return parsed


def _fraction(value: object, where: str, problems: list[str]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        problems.append(f"{where}: expected a number in [0, 1], found {_kind(value)}")
        return None
    return float(value)


def _label(value: object, known: set[str], where: str, problems: list[str]) -> str | None:
    if value not in known:
        problems.append(f"{where}: expected one of the labels {sorted(known)}, found {_kind(value)}")
        return None
    return str(value)


def _metric_floor(key: str, value: object, problems: list[str]) -> float | None:
    if key not in METRICS:
        problems.append(f"overall.{key}: unknown metric; expected one of {', '.join(METRICS)}")
        return None
    return _fraction(value, f"overall.{key}", problems)


def _class_floor(key: str, value: object, known: set[str], problems: list[str]) -> ClassFloor | None:
    where = f"per_class.{key}"
    if key not in known:
        problems.append(f"{where}: unknown class; expected one of the labels {sorted(known)}")
        return None
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"floor", "on"})
        if unknown:
            problems.append(f"{where}: unknown key(s) {unknown}; expected 'floor' and optional 'on'")
        on = value.get("on", "point")
        if on not in FLOOR_MODES:
            problems.append(f"{where}.on: expected one of {', '.join(FLOOR_MODES)}, found {_kind(on)}")
        floor = _fraction(value.get("floor"), f"{where}.floor", problems)
        return ClassFloor(floor, on) if floor is not None and on in FLOOR_MODES and not unknown else None
    floor = _fraction(value, where, problems)
    return ClassFloor(floor) if floor is not None else None


def _label_validity(section: object, problems: list[str]) -> int | None:
    if section is None:
        return None
    if not isinstance(section, dict) or set(section) != {"max_invalid"}:
        problems.append(f"label_validity: expected a mapping with the key max_invalid, found {_kind(section)}")
        return None
    value = section["max_invalid"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.append(f"label_validity.max_invalid: expected a whole number >= 0, found {_kind(value)}")
        return None
    return value


def _confusion(key: str, value: object, known: set[str], problems: list[str]) -> float | None:
    where = f"confusion.{key}"
    gold, sep, pred = key.partition("->")
    if not sep or gold not in known or pred not in known | {INVALID} or gold == pred:
        problems.append(
            f"{where}: expected 'gold->pred' with two different labels of {sorted(known)} (pred may be {INVALID})"
        )
        return None
    return _fraction(value, where, problems)


def _regression(section: object, labels: tuple[str, ...], problems: list[str]) -> RegressionPolicy | None:
    known = set(labels)
    if section is None:
        return None
    if not isinstance(section, dict):
        problems.append(f"regression: expected a mapping, found {_kind(section)}")
        return None
    for key in section:
        if key not in ("alpha", "max_drop", "per_class_max_drop", "correction"):
            problems.append(f"regression.{key}: unknown key; expected alpha, max_drop, per_class_max_drop, correction")
    correction = section.get("correction", "none")
    if correction not in CORRECTIONS:
        shown = repr(correction) if isinstance(correction, str) else _kind(correction)
        problems.append(f"regression.correction: expected one of {', '.join(CORRECTIONS)}, found {shown}")
        correction = "none"
    alpha = section.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        problems.append(f"regression.alpha: expected a number in (0, 1), found {_kind(alpha)}")
        alpha = 0.05  # the file is refused anyway; keep collecting its other problems
    max_drop: dict[str, float] = {}
    raw_drop = section.get("max_drop", {})
    if not isinstance(raw_drop, dict):
        problems.append(f"regression.max_drop: expected a mapping of metric -> drop, found {_kind(raw_drop)}")
        raw_drop = {}
    for metric, value in raw_drop.items():
        if metric not in METRICS:
            problems.append(f"regression.max_drop.{metric}: unknown metric; expected one of {', '.join(METRICS)}")
        elif (drop := _fraction(value, f"regression.max_drop.{metric}", problems)) is not None:
            max_drop[metric] = drop
    per_class: dict[str, float] = {}
    raw_class = section.get("per_class_max_drop")
    if isinstance(raw_class, dict):
        for label, value in raw_class.items():
            where = f"regression.per_class_max_drop.{label}"
            if (
                _label(label, known, where, problems) is not None
                and (drop := _fraction(value, where, problems)) is not None
            ):
                per_class[label] = drop
    elif (
        raw_class is not None and (drop := _fraction(raw_class, "regression.per_class_max_drop", problems)) is not None
    ):
        per_class = dict.fromkeys(labels, drop)
    return RegressionPolicy(alpha=float(alpha), max_drop=max_drop, per_class_max_drop=per_class, correction=correction)
