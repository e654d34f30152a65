"""thresholds.yaml -> frozen dataclasses; every problem in the file named in one UsageError.

Validation runs once, at configure time, so a typo in the gate file stops the run before any model loads. The file
is read bounded (a regular file of at most 4 MiB) as YAML 1.2 through safe_yaml (duplicate keys, alias bombs and
deep nesting refused). Labels and alias keys must be words the answer contract can produce, or no answer could
ever match them. Anchors, aliases and a YAML 1.1 directive are refused too: `--emogate-ratchet` rewrites floors in
place with ruamel.yaml, and a floor shared through an alias would move everywhere it is used.

Every check the file declares must be able to fail, whatever the answers: a metric floor of 0, a ceiling or a
margin of 1, a `<invalid>` ceiling when invalid answers are mapped to a label, and an alpha no bootstrap p can
reach are refused, each saying what to write instead. A label may not share a metric's name, so a class's check
ids and history columns never coincide with a metric's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from pytest_emogate.answers import INVALID, answer_word
from pytest_emogate.evaluate.bootstrap import BOOTSTRAP_REPS
from pytest_emogate.evaluate.metrics import METRICS
from pytest_emogate.files import FileProblem, MiB, decode_utf8, read_checked, usage_error
from pytest_emogate.formats import clip, quoted
from pytest_emogate.safe_yaml import load_yaml

TOP_KEYS = (
    "labels", "aliases", "invalid", "overall", "per_class", "label_validity", "confusion", "regression",
    "expect_samples", "consistency",
)  # fmt: skip
FLOOR_MODES = ("point", "lower_bound")
CORRECTIONS = ("none", "holm")
MAX_BYTES = 4 * MiB
"""The largest thresholds file read: a gate file is a few hundred bytes."""
WORD = re.compile(r"[^\W\d_](?:[\w-]*\w)?")
"""A label or alias key: a word that starts with a letter (digits and YAML's numbers, dates and booleans aside)."""
CONTRACT = (
    "answers are lowercased, stripped of <s>, </s>, <unk> and of the punctuation around words, and labelled by "
    "their last word"
)


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
    expect_samples: int | None = None
    """How many samples (rows of a predictions file or baseline, samples of the data set) the gate expects."""
    max_disagree: int | None = None
    """`consistency.max_disagree`: how many probe answers may differ from the main ones (None: not set, and 0
    applies when `--emogate-probe` runs; without the probe the section declares nothing)."""

    def source(self, key: str) -> str:
        """Where a limit comes from, for failure messages: `thresholds.yaml: per_class.surprise`."""
        return f"{self.path.name}: {key}"


def load_thresholds(path: Path) -> Thresholds:
    """Read and validate a thresholds file; raise one UsageError listing every problem."""
    what = f"thresholds file {path}"
    try:
        raw = read_checked(path, MAX_BYTES)
    except FileProblem as problem:
        hint = " (set --emogate-thresholds or create it)" if problem.found == "does not exist" else ""
        raise usage_error(what, [f"the file {problem.found}{hint}"]) from None
    text = decode_utf8(raw, "thresholds file", path)
    data = load_yaml(text, "thresholds file", path, yaml12_booleans=True)
    problems: list[str] = _shared_values(text)
    if not isinstance(data, dict):
        raise usage_error(what, [*problems, f"expected a mapping at the top level, found {_kind(data)}"])
    for key in data:
        if key not in TOP_KEYS:
            problems.append(f"{clip(str(key))}: unknown key; expected one of {', '.join(TOP_KEYS)}")
    labels = _labels(data.get("labels"), problems)
    known = set(labels)
    aliases = _mapping(data, "aliases", problems, lambda key, value: _alias(key, value, known, problems))
    invalid = data.get("invalid", "wrong")
    if not isinstance(invalid, str):
        problems.append(
            f"invalid: expected the string 'wrong' or a label name (one of {labels}), found {_kind(invalid)}"
        )
    elif invalid != "wrong" and invalid not in known:
        problems.append(f"invalid: expected 'wrong' or one of the labels {labels}, found {quoted(invalid)}")
    overall = _mapping(data, "overall", problems, lambda key, value: _metric_floor(key, value, problems))
    per_class = _mapping(data, "per_class", problems, lambda key, value: _class_floor(key, value, known, problems))
    max_invalid = _label_validity(data.get("label_validity"), problems)
    mapped_to = invalid if isinstance(invalid, str) and invalid in known else None
    confusion = _mapping(
        data, "confusion", problems, lambda key, value: _confusion(key, value, known, mapped_to, problems)
    )
    regression = _regression(data.get("regression"), labels, problems)
    expect_samples = _expect_samples(data.get("expect_samples"), problems)
    max_disagree = _consistency(data, problems)
    if max_invalid is not None and expect_samples is not None and max_invalid >= expect_samples:
        problems.append(
            f"label_validity.max_invalid: {max_invalid} can never fail on the {expect_samples} samples of "
            f"expect_samples (not even with every answer invalid); expected fewer than {expect_samples}"
        )
    if problems:
        raise usage_error(what, problems)
    return Thresholds(
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        labels=labels,
        aliases=MappingProxyType(aliases),
        invalid=str(invalid),
        overall=MappingProxyType(overall),
        per_class=MappingProxyType(per_class),
        max_invalid=max_invalid,
        confusion=MappingProxyType(confusion),
        regression=regression,
        expect_samples=expect_samples,
        max_disagree=max_disagree,
    )


def _shared_values(text: str) -> list[str]:
    """The first anchor or alias and a directive other than YAML 1.2: what ruamel.yaml would not rewrite as
    read (the document already loaded, so its events parse)."""
    problems = []
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        if isinstance(event, yaml.DocumentStartEvent) and event.version not in (None, (1, 2)):
            version = ".".join(map(str, event.version))
            problems.append(f"line {line}: a %YAML {version} directive; expected YAML 1.2 (no directive, or %YAML 1.2)")
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            problems.append(
                f"line {line}: an anchor or alias (&name, *name); expected each value written out, since "
                "--emogate-ratchet rewrites a floor in place and a value shared through an alias would move "
                "everywhere it is used"
            )
            break
    return problems


def _kind(value: object) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {quoted(value)}"


def _word_problem(word: str) -> str | None:
    """Why no answer could have `word` as its label (or as its word before aliases), or None when one can."""
    if answer_word(word) == word and WORD.fullmatch(word):
        return None
    reads = answer_word(word)
    reading = f"it would read as {quoted(reads)}" if reads else "it would read as no word at all"
    return f"{CONTRACT} ({reading}); expected a single lowercase word that starts with a letter"


def _labels(value: object, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        problems.append(f"labels: expected a non-empty list of label names, found {_kind(value)}")
        return ()
    duplicates = sorted({item for item in value if value.count(item) > 1})
    if duplicates:
        problems.append(f"labels: expected unique names, found duplicates {quoted(duplicates)}")
    for label in dict.fromkeys(value):
        problem = _word_problem(label)
        if problem:
            problems.append(f"labels: {quoted(label)} is not a label an answer can have: {problem}")
        elif clash := _metric_clash(label):
            problems.append(
                f"labels: {quoted(label)} {clash}; expected a label that is no metric's name nor the word before "
                f"its '_' ({', '.join(METRICS)})"
            )
    return tuple(value)


def _metric_clash(label: str) -> str | None:
    """How a label would share a name with a metric, or None: a class and a metric each have a regression check
    (`regression[accuracy]`), and the history names a class's columns `{label}_recall`, `{label}_f1`..."""
    if label in METRICS:
        return (
            f"is also a metric's name, so the regression check of the class and of the metric would both be "
            f"regression[{label}]"
        )
    shared = [metric for metric in METRICS if metric.startswith(f"{label}_")]
    if shared:
        return (
            f"would name the class's history columns {', '.join(shared)}, which are the metrics' own columns "
            "(emogate history --csv, history.frame())"
        )
    return None


def _alias(key: str, value: object, known: set[str], problems: list[str]) -> str | None:
    where = f"aliases.{clip(key)}"
    problem = _word_problem(key)
    if problem:
        problems.append(f"{where}: {quoted(key)} is not a word an answer can have: {problem}")
    if not isinstance(value, str):
        problems.append(f"{where}: expected a label name (a string, one of {sorted(known)}), found {_kind(value)}")
        return None
    label = _label(value, known, where, problems)
    return None if problem else label


def _expect_samples(value: object, problems: list[str]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        problems.append(f"expect_samples: expected a whole number > 0 (the number of samples), found {_kind(value)}")
        return None
    return value


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
        if not isinstance(item_key, str):
            problems.append(f"{key}: key {quoted(item_key)} is {type(item_key).__name__}; expected a string")
            continue
        value = parse(item_key, item_value)
        if value is not None:
            parsed[item_key] = value
    return parsed


def _fraction(value: object, where: str, problems: list[str]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        problems.append(f"{where}: expected a number in [0, 1], found {_kind(value)}")
        return None
    return float(value)


def _label(value: object, known: set[str], where: str, problems: list[str]) -> str | None:
    if not isinstance(value, str) or value not in known:
        problems.append(f"{where}: expected one of the labels {sorted(known)}, found {_kind(value)}")
        return None
    return str(value)


def _metric_floor(key: str, value: object, problems: list[str]) -> float | None:
    if key not in METRICS:
        problems.append(f"overall.{clip(key)}: unknown metric; expected one of {', '.join(METRICS)}")
        return None
    floor = _fraction(value, f"overall.{key}", problems)
    if floor == 0.0:
        problems.append(
            f"overall.{key}: a floor of 0 can never fail (no metric is below 0); expected the least value you "
            "accept, e.g. 0.01 (--emogate-ratchet raises a floor from there), or leave the metric out: the summary "
            "and the JSON report show every metric"
        )
        return None
    return floor


def _class_floor(key: str, value: object, known: set[str], problems: list[str]) -> ClassFloor | None:
    where = f"per_class.{clip(key)}"
    if key not in known:
        problems.append(f"{where}: unknown class; expected one of the labels {sorted(known)}")
        return None
    if isinstance(value, dict):
        unknown = sorted(str(name) for name in value if name not in ("floor", "on"))
        if unknown:
            problems.append(f"{where}: unknown key(s) {quoted(unknown)}; expected 'floor' and optional 'on'")
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


def _consistency(data: Mapping[str, Any], problems: list[str]) -> int | None:
    """`consistency: {max_disagree: N}`, a whole number >= 0; the section written but empty is a problem, not
    the default (nothing is guessed)."""
    if "consistency" not in data:
        return None
    section = data["consistency"]
    if not isinstance(section, dict) or not section:
        problems.append(f"consistency: expected a mapping with the key max_disagree, found {_kind(section)}")
        return None
    unknown = [key for key in section if key != "max_disagree"]
    for key in unknown:
        problems.append(f"consistency.{clip(str(key))}: unknown key; expected max_disagree")
    if "max_disagree" not in section:
        problems.append("consistency: expected the key max_disagree (how many probe answers may differ)")
        return None
    value = section["max_disagree"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.append(f"consistency.max_disagree: expected a whole number >= 0, found {_kind(value)}")
        return None
    return None if unknown else value


def _confusion(key: str, value: object, known: set[str], mapped_to: str | None, problems: list[str]) -> float | None:
    """A `gold->pred` ceiling; `mapped_to` is the label invalid answers count as (`invalid: <label>`), if any."""
    where = f"confusion.{clip(key)}"
    gold, sep, pred = key.partition("->")
    if not sep or gold not in known or pred not in known | {INVALID} or gold == pred:
        problems.append(
            f"{where}: expected 'gold->pred' with two different labels of {sorted(known)} (pred may be {INVALID})"
        )
        return None
    if pred == INVALID and mapped_to is not None:
        instead = f"{gold}->{mapped_to} (which counts them), " if gold != mapped_to else ""
        problems.append(
            f"{where}: with invalid: {mapped_to}, an answer outside the labels counts as {mapped_to} and none as "
            f"{INVALID}, so this ceiling can never fail; expected {instead}label_validity.max_invalid to limit "
            f"them, or invalid: wrong to count them as {INVALID}"
        )
        return None
    return _below_one(
        value, where, problems, "a ceiling of 1 can never fail (no share is above 1); expected the largest share "
        "you accept, below 1, or leave the pair out: the summary's confusion matrix shows every pair",
    )  # fmt: skip


def _regression(section: object, labels: tuple[str, ...], problems: list[str]) -> RegressionPolicy | None:
    known = set(labels)
    if section is None:
        return None
    if not isinstance(section, dict):
        problems.append(f"regression: expected a mapping, found {_kind(section)}")
        return None
    for key in section:
        if key not in ("alpha", "max_drop", "per_class_max_drop", "correction"):
            problems.append(
                f"regression.{clip(str(key))}: unknown key; expected alpha, max_drop, per_class_max_drop, correction"
            )
    correction = section.get("correction", "none")
    if correction not in CORRECTIONS:
        shown = quoted(correction) if isinstance(correction, str) else _kind(correction)
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
            shown = clip(str(metric))
            problems.append(f"regression.max_drop.{shown}: unknown metric; expected one of {', '.join(METRICS)}")
        elif (drop := _margin(value, f"regression.max_drop.{metric}", problems)) is not None:
            max_drop[metric] = drop
    per_class: dict[str, float] = {}
    raw_class = section.get("per_class_max_drop")
    if isinstance(raw_class, dict):
        for label, value in raw_class.items():
            where = f"regression.per_class_max_drop.{clip(str(label))}"
            if (
                _label(label, known, where, problems) is not None
                and (drop := _margin(value, where, problems)) is not None
            ):
                per_class[label] = drop
    elif raw_class is not None and (drop := _margin(raw_class, "regression.per_class_max_drop", problems)) is not None:
        per_class = dict.fromkeys(labels, drop)
    _bootstrap_reach(float(alpha), max_drop, correction, problems)
    return RegressionPolicy(
        alpha=float(alpha),
        max_drop=MappingProxyType(max_drop),
        per_class_max_drop=MappingProxyType(per_class),
        correction=correction,
    )


def _margin(value: object, where: str, problems: list[str]) -> float | None:
    """A regression margin: a fraction below 1, since no metric or recall drops by more than 1 (from 1 to 0)."""
    return _below_one(
        value, where, problems, "a margin of 1 can never fail (nothing drops by more than 1, from 1 to 0); expected "
        "the largest drop you accept, below 1, or leave the check out",
    )  # fmt: skip


def _below_one(value: object, where: str, problems: list[str], never_fails: str) -> float | None:
    """A fraction in [0, 1): a limit of 1 on a share or a drop can never be exceeded, so it is refused saying
    `never_fails`."""
    fraction = _fraction(value, where, problems)
    if fraction == 1.0:
        problems.append(f"{where}: {never_fails}")
        return None
    return fraction


def _bootstrap_reach(alpha: float, max_drop: Mapping[str, float], correction: str, problems: list[str]) -> None:
    """Refuse an alpha the bootstrap-tested metrics of `max_drop` could never meet: their p is at least
    1/(reps + 1), and under Holm each one's adjusted p is at least b/(reps + 1) over its b bootstrap-tested checks
    (the first of them in p order is multiplied by at least b). The exact-tested metrics and classes can reach any
    p with enough samples."""
    tested = [metric for metric in max_drop if not METRICS[metric].per_sample]
    if not tested:
        return
    family = len(tested) if correction == "holm" else 1
    smallest = family / (BOOTSTRAP_REPS + 1)
    if alpha > smallest:
        return
    checks = ", ".join(f"regression.max_drop.{metric}" for metric in tested)
    how = (
        f"with correction: holm over its {family} bootstrap-tested checks, the smallest adjusted p is "
        f"{family}/{BOOTSTRAP_REPS + 1}"
        if correction == "holm"
        else f"the smallest p its {BOOTSTRAP_REPS:,} resamples can show is 1/{BOOTSTRAP_REPS + 1}"
    )
    exact = ", ".join(name for name, metric in METRICS.items() if metric.per_sample)
    problems.append(
        f"regression.alpha: {alpha:g} can never be met by {checks}, tested with the paired bootstrap: {how} "
        f"({smallest:.4g}), so a drop could never fail; expected an alpha above {smallest:.4g}, or margins only on "
        f"{exact} and the classes (the exact McNemar test)"
    )
