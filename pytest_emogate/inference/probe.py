"""The consistency probe (`--emogate-probe N`): did batching, score mode or the merged LoRA change the answers?

After the main inference, N samples (a deterministic pick, stratified by gold class) are answered again the
original's way: batch size 1, greedy generation, the LoRA unmerged, in the same dtype on the same device. Each
probe answer is compared with the main answer of its sample as text: any difference counts. The check
`consistency` gates how many differ. The probe's answers go into the answer cache under their own key (the main
key with the probe's settings), so a rerun infers nothing, and a rerun with a larger N only the new samples.

Under `--emogate-devices` the probe runs as one rank process on the first device; under torchrun, on rank 0 after
every rank's answers are gathered (the other ranks have nothing left to do by then).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pytest_emogate.formats import clip
from pytest_emogate.inference.cache import AnswerCache, answer_key
from pytest_emogate.predictions import Prediction

if TYPE_CHECKING:
    from pytest_emogate.data import Test3Data
    from pytest_emogate.inference.settings import InferenceSettings

PROBE_BATCH_SIZE = 1
NAMED = 3
"""The differing samples the probe's summary line names (the check's message names more, the JSON all)."""


class Answered(Protocol):
    """The source of the main answers, which also answers the probe's samples on its devices."""

    @property
    def loaded(self) -> bool:
        """Whether the main answers are at hand without inference."""
        ...

    def predictions(self) -> list[Prediction]:
        """The main answers, in sample order (inferred first if need be)."""
        ...

    def answer_missing(self, settings: InferenceSettings, cache: AnswerCache, missing: list[int]) -> None:
        """Answer the samples at `missing` with `settings` on the source's devices, into `cache`."""
        ...


@dataclass(frozen=True)
class ProbeAnswer:
    """A sample whose probe answer differs from its main answer."""

    name: str
    answer: str
    probe_answer: str


@dataclass(frozen=True)
class ProbeResult:
    """What the probe found: how many samples it answered again, which answers differ, and how it answered."""

    n: int
    differ: tuple[ProbeAnswer, ...]
    settings: Mapping[str, Any]
    """How the probe answered: batch size, mode, LoRA, dtype, token cap."""
    inferred: int = 0
    """Probe answers this process inferred (the others came from the cache, or from a pytest-xdist worker)."""
    seconds: float = 0.0

    @property
    def disagree(self) -> int:
        """How many probe answers differ from the main answers."""
        return len(self.differ)

    def line(self) -> str:
        """`probe: 24/24 answers equal at batch size 1`, naming the first samples that differ."""
        line = f"probe: {self.n - self.disagree}/{self.n} answers equal at batch size {PROBE_BATCH_SIZE}"
        if self.differ:
            names = ", ".join(clip(answer.name) for answer in self.differ[:NAMED])
            more = f" and {self.disagree - NAMED} more" if self.disagree > NAMED else ""
            line += f"; differ: {names}{more}"
        if self.inferred:
            line += f" ({self.inferred} inferred in {self.seconds:.1f} s)"
        return line


def probe_settings(settings: InferenceSettings) -> InferenceSettings:
    """The original's way of answering, in the main run's dtype and on its device: batch size 1, greedy
    generation, the LoRA unmerged."""
    return replace(settings, batch_size=PROBE_BATCH_SIZE, mode="generate", merge_lora=False)


def stratified_pick(labels: Sequence[str], size: int) -> list[int]:
    """`size` sample indices (all of them when `size` is larger), in sample order, stratified by gold label.

    Every class gets one sample, the rarest classes first when `size` is smaller than the number of classes; the
    rest go one at a time to the class furthest below its share of the pick (ties to the rarer class). Within a
    class the picks are evenly spaced through its samples. Deterministic: the same labels give the same pick.
    """
    by_class: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    size = min(size, len(labels))
    order = sorted(by_class, key=lambda label: (len(by_class[label]), label))
    take = {label: int(rank < size) for rank, label in enumerate(order)}
    for _ in range(size - sum(take.values())):
        open_classes = [label for label in order if take[label] < len(by_class[label])]
        label = max(open_classes, key=lambda label: size * len(by_class[label]) / len(labels) - take[label])
        take[label] += 1
    picked = []
    for label, count in take.items():
        members = by_class[label]
        picked += [members[(2 * k + 1) * len(members) // (2 * count)] for k in range(count)]
    return sorted(picked)


@dataclass
class ConsistencyProbe:
    """The probe of one session: its samples, its cache, and once asked for, its result."""

    settings: InferenceSettings
    """The probe's own settings (probe_settings of the main run's)."""
    data: Test3Data
    indices: tuple[int, ...]
    cache: AnswerCache
    source: Answered
    _result: ProbeResult | None = None

    @classmethod
    def prepare(
        cls,
        source: Answered,
        settings: InferenceSettings,
        data: Test3Data,
        size: int,
        root: Path,
        key: Mapping[str, Any],
    ) -> ConsistencyProbe:
        """The probe of `size` samples of `data`, its cache folder under `root` opened: the main run's `key`
        with the probe's settings (`settings` are the main run's, as its key was made). A UsageError when the
        folder cannot hold a cache (AnswerCache.open)."""
        own = probe_settings(settings)
        probe_key = {
            **answer_key(own, key["data_fingerprint"], checkpoint_sha256=key["checkpoint_sha256"]),
            "probe": {"batch_size": PROBE_BATCH_SIZE},
        }
        indices = tuple(stratified_pick([sample.label for sample in data.samples], size))
        return cls(own, data, indices, AnswerCache.open(root, probe_key), source)

    @property
    def ready(self) -> bool:
        """Whether the result is at hand or can be had without inference (every answer of both runs cached)."""
        return self._result is not None or (self.source.loaded and self.complete)

    @property
    def complete(self) -> bool:
        """Whether the cache holds every probe answer."""
        return self._complete(self._read(cut=False))

    def result(self) -> ProbeResult:
        """The main answers, then the probe's (cached ones read back, missing ones inferred once and cached),
        compared. Raises what the source's inference raises (AnswersUnavailable for non-finite logits)."""
        if self._result is None:
            main = {answer.name: answer for answer in self.source.predictions()}
            inferred, seconds = 0, 0.0
            with self.cache.locked():
                done = self._read(cut=True)
                missing = [i for i in self.indices if self.data.samples[i].name not in done]
                if missing:
                    started = time.perf_counter()
                    self.source.answer_missing(self.settings, self.cache, missing)
                    inferred, seconds = len(missing), time.perf_counter() - started
                    done = self._read(cut=True)
            names = [self.data.samples[i].name for i in self.indices]
            assert all(name in done for name in names), "the probe left samples without an answer"
            differ = tuple(
                ProbeAnswer(name, main[name].output, done[name].output)
                for name in names
                if main[name].output != done[name].output
            )
            self._result = ProbeResult(len(names), differ, self.described(), inferred, seconds)
        return self._result

    def described(self) -> dict[str, Any]:
        """The probe's settings, for the JSON report."""
        s = self.settings
        return {"batch_size": s.batch_size, "mode": s.mode, "merge_lora": s.merge_lora, "dtype": s.dtype,
                "max_new_tokens": s.max_new_tokens, "device": s.device}  # fmt: skip

    def _read(self, *, cut: bool) -> dict[str, Prediction]:
        return self.cache.load({sample.name: sample.label for sample in self.data.samples}, cut=cut)

    def _complete(self, done: Mapping[str, Prediction]) -> bool:
        return all(self.data.samples[i].name in done for i in self.indices)
