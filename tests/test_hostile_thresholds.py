"""Hostile thresholds files: duplicate keys, alias bombs, deep nesting, FIFOs and huge files are refused at once;
labels and aliases no answer can match, and values of the wrong type, are refused naming the key; and whatever
`load_thresholds` accepts, `--emogate-ratchet` can rewrite without a crash."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_emogate.evaluate.thresholds import MAX_BYTES, load_thresholds
from tests.conftest import THRESHOLDS
from tests.hostile import deadline, in_child

LABELS = "labels: [neutral, angry, happy, sad, worried, surprise]\n"
KNOWN = "['angry', 'happy', 'neutral', 'sad', 'surprise', 'worried']"
CONTRACT = (
    "answers are lowercased, stripped of <s>, </s>, <unk> and of the punctuation around words, and labelled by "
    "their last word"
)


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "thresholds.yaml"
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def problems_of(path: Path) -> list[str]:
    with deadline(10), pytest.raises(pytest.UsageError) as error:
        load_thresholds(path)
    lines = str(error.value).split("\n")
    assert lines[0].startswith(f"thresholds file {path}: ")
    return [line.removeprefix("  - ") for line in lines[1:]]


# The YAML itself ----------------------------------------------------------------------------------------------


def test_a_duplicate_floor_is_refused_naming_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, LABELS + "overall:\n  accuracy: 0.99\n  accuracy: 0.10\n")
    assert problems_of(path) == ["line 4: duplicate key 'accuracy' (first on line 3); keep one"]


def test_a_second_section_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, LABELS + "per_class:\n  sad: 0.9\nper_class:\n  sad: 0.1\n")
    assert problems_of(path) == ["line 4: duplicate key 'per_class' (first on line 2); keep one"]


def test_an_alias_bomb_fails_fast_and_short(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = write(tmp_path, LABELS + "\n".join(lines) + "\n")
    start = time.monotonic()
    problems = problems_of(path)
    assert time.monotonic() - start < 0.5
    assert len(problems) == 1 and len(problems[0]) < 300
    assert "alias bomb" in problems[0]


def test_twenty_thousand_nested_brackets(tmp_path: Path) -> None:
    path = write(tmp_path, "labels: " + "[" * 20_000 + "]" * 20_000 + "\n")
    problems = problems_of(path)
    assert problems == ["line 1: nested deeper than 64 levels"]


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "thresholds.yaml"
    os.mkfifo(fifo)
    assert problems_of(fifo) == ["the file is a FIFO (named pipe); expected a regular file"]


def test_a_symlink_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "thresholds.yaml"
    link.symlink_to("/dev/zero")

    def refused() -> None:
        assert problems_of(link) == ["the file is a character device; expected a regular file"]

    assert in_child(refused) == 0


def test_an_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    path = write(tmp_path, LABELS + "# padding\n" * (MAX_BYTES // 10 + 1))
    assert problems_of(path) == [f"the file is {path.stat().st_size / (1 << 20):.1f} MiB; the limit is 4.0 MiB"]


def test_undecodable_bytes_name_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, LABELS.encode() + b"aliases: {caf\xe9: sad}\n")
    assert problems_of(path) == ["line 2: expected UTF-8 text, found undecodable bytes e9 at byte 69"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            LABELS + "per_class:\n  surprise: &f {floor: 0.2, on: lower_bound}\n  worried: *f\n",
            "line 3: an anchor or alias (&name, *name); expected each value written out",
        ),
        (
            LABELS + "overall: {accuracy: &a 0.8}\nregression: {max_drop: {accuracy: *a}}\n",
            "line 2: an anchor or alias (&name, *name); expected each value written out",
        ),
        (
            "%YAML 1.1\n---\n" + LABELS,
            "line 1: a %YAML 1.1 directive; expected YAML 1.2 (no directive, or %YAML 1.2)",
        ),
    ],
)
def test_what_the_ratchet_could_not_rewrite_faithfully_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    assert problems_of(write(tmp_path, text))[0].startswith(problem)


# Labels and aliases an answer can match -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "reads"),
    [
        ("Sad", "'sad'"),
        ("very sad", "'sad'"),
        ("sad.", "'sad'"),
        ("happy!", "'happy'"),
        (" sad", "'sad'"),
        ("<s>sad", "'sad'"),
        ("...", "no word at all"),
        ("<invalid>", "'invalid'"),
        ("'sad'", "'sad'"),
        ("1st", "'1st'"),
        ("a|b", "'a|b'"),
        ("so[bold]", "'so[bold'"),
    ],
)
def test_a_label_no_answer_can_have_is_refused(tmp_path: Path, label: str, reads: str) -> None:
    path = write(tmp_path, f"labels: [neutral, {json.dumps(label)}]\n")
    assert problems_of(path) == [
        f"labels: {label!r} is not a label an answer can have: {CONTRACT} (it would read as {reads}); "
        "expected a single lowercase word that starts with a letter"
    ]


def test_words_of_any_script_are_labels(tmp_path: Path) -> None:
    path = write(tmp_path, "labels: [gai-xing, 高兴, überrascht, so_so]\naliases: {überrascht: 高兴}\n")
    assert load_thresholds(path).labels == ("gai-xing", "高兴", "überrascht", "so_so")


@pytest.mark.parametrize("key", ["Surprised", "SURPRISED", "really surprised", "surprised!"])
def test_an_alias_key_no_answer_can_have_is_refused(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, LABELS + f'aliases: {{"{key}": surprise}}\n')
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"aliases.{key}: {key!r} is not a word an answer can have: {CONTRACT}")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            LABELS + "invalid: [neutral]\n",
            "invalid: expected the string 'wrong' or a label name (one of ('neutral', 'angry', 'happy', 'sad', "
            "'worried', 'surprise')), found list ['neutral']",
        ),
        (
            LABELS + "invalid: {neutral: 1}\n",
            "invalid: expected the string 'wrong' or a label name (one of ('neutral', 'angry', 'happy', 'sad', "
            "'worried', 'surprise')), found dict {'neutral': 1}",
        ),
        (
            LABELS + "aliases: {surprised: [surprise]}\n",
            f"aliases.surprised: expected a label name (a string, one of {KNOWN}), found list ['surprise']",
        ),
        (
            LABELS + "aliases: {surprised: {label: surprise}}\n",
            f"aliases.surprised: expected a label name (a string, one of {KNOWN}), found dict {{'label': 'surprise'}}",
        ),
        (
            LABELS + "aliases: {1: happy}\n",
            "aliases: key 1 is int; expected a string",
        ),
        (
            LABELS + "per_class: {null: 0.5}\n",
            "per_class: key None is NoneType; expected a string",
        ),
        (
            LABELS + "per_class: {sad: {floor: 0.5, 1: x, a: y}}\n",
            "per_class.sad: unknown key(s) ['1', 'a']; expected 'floor' and optional 'on'",
        ),
        (
            LABELS + "regression: {per_class_max_drop: {sad: [0.1]}}\n",
            "regression.per_class_max_drop.sad: expected a number in [0, 1], found list [0.1]",
        ),
        (
            LABELS + "regression: {per_class_max_drop: {[sad]: 0.1}}\n",
            "not valid YAML: ",
        ),
        (
            LABELS + "overall: {accuracy: '" + "9" * 5000 + "'}\n",
            "overall.accuracy: expected a number in [0, 1], found str '9999",
        ),
    ],
)
def test_values_of_the_wrong_type_name_key_and_types(tmp_path: Path, text: str, problem: str) -> None:
    problems = problems_of(write(tmp_path, text))
    assert len(problems) == 1 and len(problems[0]) < 400
    assert problems[0].startswith(problem)


# expect_samples -----------------------------------------------------------------------------------------------


def test_expect_samples(tmp_path: Path) -> None:
    assert load_thresholds(write(tmp_path, LABELS + "expect_samples: 834\n")).expect_samples == 834
    assert load_thresholds(write(tmp_path, LABELS)).expect_samples is None
    assert load_thresholds(THRESHOLDS).expect_samples in (None, 834)


@pytest.mark.parametrize("value", ["0", "-1", "true", "'834'", "834.0", "[834]"])
def test_expect_samples_must_be_a_positive_whole_number(tmp_path: Path, value: str) -> None:
    problems = problems_of(write(tmp_path, LABELS + f"expect_samples: {value}\n"))
    assert len(problems) == 1
    assert problems[0].startswith("expect_samples: expected a whole number > 0 (the number of samples), found ")


# The ratchet rewrites whatever was accepted --------------------------------------------------------------------

ACCEPTED = {
    "flow": "{labels: [sad, happy], overall: {accuracy: 0.5, uar: 1}, per_class: {sad: 0.2, happy: {floor: 0}}}\n",
    "yaml 1.2 words": "labels: [yes, no, on, off]\nper_class: {yes: 0.5, on: {floor: 0.2, on: lower_bound}, no: 0}\n",
    "quoted keys": "labels: ['sad', \"happy\"]\nper_class: {'sad': 0.5, \"happy\": 0.25}\noverall: {'accuracy': 0.1}\n",
    "explicit keys": "labels: [sad, happy]\nper_class:\n  ? sad\n  : 0.5\n  ? happy\n  : {floor: 0.1}\n",
    "markers": "%YAML 1.2\n---\n# a comment\nlabels: [sad, happy] # here\nper_class:   # there\n  sad : 0.5\n...\n",
    "tags": "labels: [sad, happy]\nper_class: {sad: !!float 0.5, happy: {floor: !!float '0.25'}}\n",
    "crlf": "labels: [sad, happy]\r\nper_class:\r\n  sad: 0.5\r\n  happy: 0.125\r\n",
    "bom": "\ufefflabels: [sad, happy]\nper_class:\n  sad: 0.5\n",
    "scripts": "labels: [高兴, überrascht]\nper_class: {高兴: 0.5, überrascht: {floor: 0.3, on: lower_bound}}\n",
    "multi-line flow": "labels: [\n  sad,\n  happy,\n]\nper_class: {\n  sad: 0.5,\n  happy: 0.5\n}\n",
    "aliases": "labels: [sad, happy]\naliases: {sadness: sad, yes: happy}\nper_class: {sad: 0.5}\n",
    "everything": THRESHOLDS.read_text(encoding="utf-8"),
}


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_the_ratchet_rewrites_every_accepted_file(tmp_path: Path, text: str) -> None:
    pytest.importorskip("ruamel.yaml")
    from pytest_emogate.evaluate.ratchet import Raise, apply_raises

    path = write(tmp_path, text)
    before = load_thresholds(path)
    raises = [Raise(f"overall.{key}", floor, round(floor / 2 + 0.5, 2), 0.0) for key, floor in before.overall.items()]
    raises += [
        Raise(f"per_class.{key}", rule.floor, round(rule.floor / 2 + 0.5, 2), 0.0)
        for key, rule in before.per_class.items()
    ]
    apply_raises(path, raises, before.sha256)
    after = load_thresholds(path)
    assert after.overall == {key: round(floor / 2 + 0.5, 2) for key, floor in before.overall.items()}
    assert after.per_class == {
        key: replace(rule, floor=round(rule.floor / 2 + 0.5, 2)) for key, rule in before.per_class.items()
    }
    unchanged = ("labels", "aliases", "invalid", "max_invalid", "confusion", "regression", "expect_samples")
    assert [getattr(after, name) for name in unchanged] == [getattr(before, name) for name in unchanged]


def test_the_ratchet_refuses_a_file_changed_since_it_was_read(tmp_path: Path) -> None:
    pytest.importorskip("ruamel.yaml")
    from pytest_emogate.evaluate.ratchet import Raise, apply_raises
    from pytest_emogate.files import FileProblem

    path = write(tmp_path, LABELS + "per_class: {sad: 0.5}\n")
    thresholds = load_thresholds(path)
    path.write_text(LABELS + "per_class: {happy: 0.5}\n", encoding="utf-8")
    with pytest.raises(FileProblem, match="changed since the session read it"):
        apply_raises(path, [Raise("per_class.sad", 0.5, 0.6, 0.61)], thresholds.sha256)
    assert path.read_text(encoding="utf-8") == LABELS + "per_class: {happy: 0.5}\n"


def test_the_ratchet_reads_a_bounded_regular_file(tmp_path: Path) -> None:
    pytest.importorskip("ruamel.yaml")
    from pytest_emogate.evaluate.ratchet import Raise, apply_raises

    path = write(tmp_path, LABELS + "per_class: {sad: 0.5}\n")
    thresholds = load_thresholds(path)
    path.unlink()
    os.mkfifo(path)
    with deadline(10), pytest.raises(pytest.UsageError, match=r"is a FIFO \(named pipe\); expected a regular file"):
        apply_raises(path, [Raise("per_class.sad", 0.5, 0.6, 0.61)], thresholds.sha256)
