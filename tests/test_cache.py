"""The answer cache: appends survive, a torn last line is cut and redone, a foreign line is an error."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from pytest_emogate.inference.cache import AnswerCache, key_digest
from pytest_emogate.predictions import Prediction

KEY = {"checkpoint_sha256": "ab" * 32, "data_fingerprint": "cd" * 32, "max_new_tokens": 32, "version": "0.1.0"}


def test_answers_round_trip_in_batches(tmp_path: Path) -> None:
    cache = AnswerCache.open(tmp_path, KEY)
    first = [Prediction("a", "sad", "sad", {"n_new_tokens": 2, "hit_cap": False})]
    second = [Prediction("b", "happy", "it is\nhappy"), Prediction("c", "angry", "")]
    cache.append(first)
    cache.append(second)
    cache.append([])
    assert AnswerCache.open(tmp_path, KEY).load() == {p.name: p for p in first + second}
    assert (cache.folder / "key.json").read_text(encoding="utf-8").count("checkpoint_sha256") == 1


def test_the_key_decides_the_folder(tmp_path: Path) -> None:
    assert key_digest(KEY) == key_digest(dict(reversed(list(KEY.items()))))
    other = AnswerCache.open(tmp_path, {**KEY, "max_new_tokens": 500})
    assert other.folder != AnswerCache.open(tmp_path, KEY).folder
    assert other.load() == {}


def test_a_torn_last_line_is_cut_and_its_sample_redone(tmp_path: Path) -> None:
    cache = AnswerCache.open(tmp_path, KEY)
    cache.append([Prediction("a", "sad", "sad")])
    with cache.answers_path.open("ab") as handle:
        handle.write(b'{"name": "b", "label": "happy", "out')  # the writer was killed here
    assert set(cache.load()) == {"a"}
    assert cache.answers_path.read_bytes().endswith(b"}\n")
    cache.append([Prediction("b", "happy", "happy")])
    assert set(cache.load()) == {"a", "b"}


def test_a_foreign_line_is_an_error_naming_the_file(tmp_path: Path) -> None:
    cache = AnswerCache.open(tmp_path, KEY)
    cache.answers_path.write_text('{"name": "a", "label": "sad", "output": "sad"}\nhello\n', encoding="utf-8")
    with pytest.raises(pytest.UsageError) as error:
        cache.load()
    assert str(error.value) == (
        f"answer cache {cache.folder}: 1 problem\n"
        "  - answers.jsonl line 2: not an answer written by pytest-emogate: 'hello'\n"
        "  fix or delete the folder, or run with --emogate-no-cache"
    )


def _hold_lock(folder: str, started: multiprocessing.synchronize.Event) -> None:
    with AnswerCache(Path(folder)).locked():
        started.set()
        time.sleep(0.2)
        (Path(folder) / "computed").write_text("done", encoding="utf-8")


@pytest.mark.slow
def test_the_lock_makes_a_second_process_wait(tmp_path: Path) -> None:
    cache = AnswerCache.open(tmp_path, KEY)
    started = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(cache.folder), started))
    holder.start()
    assert started.wait(10)
    with cache.locked():
        assert (cache.folder / "computed").exists()  # we got the lock only after the holder had finished
    holder.join()


def test_ranks_write_side_by_side_and_a_load_reads_every_file(tmp_path: Path) -> None:
    cache = AnswerCache.open(tmp_path, KEY)
    cache.append([Prediction("a", "sad", "sad")])
    cache.for_rank(0).append([Prediction("b", "happy", "happy")])
    cache.for_rank(1).append([Prediction("c", "angry", "angry")])
    assert sorted(path.name for path in cache.folder.glob("answers*")) == [
        "answers-rank0.jsonl", "answers-rank1.jsonl", "answers.jsonl"
    ]  # fmt: skip
    assert set(cache.load()) == set(cache.for_rank(1).load()) == {"a", "b", "c"}


def test_a_torn_line_in_another_writers_file_is_skipped_and_its_writer_cuts_it(tmp_path: Path) -> None:
    cache = AnswerCache.open(tmp_path, KEY)
    rank1 = cache.for_rank(1)
    rank1.append([Prediction("a", "sad", "sad")])
    with rank1.answers_path.open("ab") as handle:
        handle.write(b'{"name": "b", "label": "happy", "out')  # rank 1 may still be writing: not ours to cut
    assert set(cache.load()) == {"a"}
    assert rank1.answers_path.read_bytes().endswith(b'"out')
    rank1.append([Prediction("b", "happy", "happy")])
    assert rank1.answers_path.read_bytes().count(b"\n") == 2
    assert set(cache.load()) == {"a", "b"}


def test_a_big_cached_answer_is_read_holding_its_text_not_also_its_bytes(tmp_path: Path) -> None:
    """A 20 MB cached answer: the cache's bytes are let go of once decoded, so reading it back peaks near the text
    and the answer (plus JSON's decoding), not also the file's bytes and a copy of them."""
    import tracemalloc

    cache = AnswerCache.open(tmp_path, KEY)
    output = "the person looks sad, " * 1_000_000 + "sad"
    cache.append([Prediction("a", "sad", output)])
    size = cache.answers_path.stat().st_size
    tracemalloc.start()
    try:
        loaded = cache.load()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert loaded["a"].output == output
    assert peak < 3.5 * size
