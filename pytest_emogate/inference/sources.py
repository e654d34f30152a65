"""Answers from Emotion-LLaMA inference over the Test3 data, through the per-sample answer cache (a predictions
file made elsewhere is file_source.py).

Inference imports torch, transformers and the data reader inside its methods: only `--emogate-ckpt` pays for them.
The preflight (data files, feature shapes against the checkpoint, model paths) runs when the source is made, before
any model is loaded, so a broken data set stops the run with exit 4 instead of dying at sample 700.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_emogate.files import display_path, usage_error
from pytest_emogate.inference.cache import AnswerCache, answer_key
from pytest_emogate.predictions import Prediction

if TYPE_CHECKING:
    from pytest_emogate.data import Test3Data
    from pytest_emogate.inference.distributed import RankRun
    from pytest_emogate.inference.run import InferenceRun
    from pytest_emogate.inference.settings import InferenceSettings


class AnswersUnavailable(RuntimeError):
    """The source could not produce answers worth gating (e.g. non-finite logits); the message says why."""


@dataclass
class CheckpointInference:
    """Answers made by running the model over the Test3 data once, through the per-sample answer cache.

    At configure time: the model paths are checked, the data is read and fingerprinted, and unless the cache
    already holds every answer, the preflight checks every sample. When the answers are first asked for, the
    cache folder is locked (pytest-xdist workers and ranks share it), the cached answers are read, and only the
    missing samples are inferred, each batch appended to the cache as it finishes.
    """

    settings: InferenceSettings
    data_path: Path
    labels: tuple[str, ...]
    data: Test3Data
    cache: AnswerCache
    key: dict[str, Any]
    """What determines the answers (the cache key): checkpoint sha256, data fingerprint, settings."""
    cache_root: Path | None = None
    quiet_terminal: Callable[[], AbstractContextManager[Any]] = nullcontext
    progress: bool = True
    devices: tuple[str, ...] = ()
    _answers: list[Prediction] | None = None
    _run: InferenceRun | None = None
    _ranks: list[RankRun] | None = None
    _cached: int = 0

    @classmethod
    def prepare(
        cls,
        settings: InferenceSettings,
        data_path: Path,
        labels: tuple[str, ...],
        cache_root: Path | None,
        *,
        devices: tuple[str, ...] = (),
        quiet_terminal: Callable[[], AbstractContextManager[Any]] = nullcontext,
        progress: bool = True,
    ) -> CheckpointInference:
        """Check the model paths, read and fingerprint the data, open the cache and, unless it already holds every
        answer, preflight every sample: any problem is a UsageError before a model loads."""
        from pytest_emogate.data import load_test3

        missing = [
            f"{option}: {path} does not exist"
            for option, path in (("--emogate-ckpt", settings.ckpt), ("--emogate-llama", settings.llama),
                                 ("--emogate-vit", settings.vit))
            if not path.exists()
        ]  # fmt: skip
        if missing:
            raise usage_error("emogate inference", missing)
        data = load_test3(data_path)
        ran_on = replace(settings, device=devices[0].split(":")[0]) if devices else settings
        key = answer_key(ran_on, data.fingerprint())
        root = cache_root if cache_root is not None else Path(tempfile.mkdtemp(prefix="emogate-"))
        cache = AnswerCache.open(root, key)
        source = cls(settings, data_path, labels, data, cache, key, cache_root, quiet_terminal, progress, devices)
        if len(cache.load().keys() & {s.name for s in data.samples}) < len(data.samples):
            source.preflight()
        return source

    @property
    def description(self) -> str:
        """`Emotion-LLaMA inference (checkpoint ckpt.pth, data test3)`."""
        ckpt, data = display_path(self.settings.ckpt), display_path(self.data_path)
        return f"Emotion-LLaMA inference (checkpoint {ckpt}, data {data})"

    def signature(self) -> dict[str, str]:
        """The checkpoint's and the data's hashes and the device asked for."""
        from importlib.metadata import version

        device = ",".join(self.devices) if self.devices else self.settings.device
        return {"checkpoint": self.key["checkpoint_sha256"][:12], "data": self.key["data_fingerprint"][:12],
                "device": device, "torch": version("torch")}  # fmt: skip

    def preflight(self) -> None:
        """Check every sample's files, and their feature shapes against the checkpoint, before a model loads."""
        from pytest_emogate.data import preflight
        from pytest_emogate.inference.run import checkpoint_feature_dims

        preflight(self.data, self.labels, checkpoint_feature_dims(self.settings.ckpt))

    @property
    def loaded(self) -> bool:
        """True once the answers are at hand, or when the cache already holds every one (no inference needed)."""
        return self._answers is not None or self._complete(self.cache.load()) is not None

    def predictions(self) -> list[Prediction]:
        """The answers in sample order: cached ones read back, missing ones inferred (once) and cached."""
        if self._answers is None:
            with self.cache.locked():
                done = self.cache.load()
                self._cached = sum(sample.name in done for sample in self.data.samples)
                missing = [i for i, sample in enumerate(self.data.samples) if sample.name not in done]
                if missing:
                    self._infer(missing)
                    done = self.cache.load()
            self._answers = self._complete(done)
            assert self._answers is not None, "the inference left samples without an answer"
        return self._answers

    def answer_as_rank(self) -> None:
        """Under torchrun, every rank calls this once at session start (no lock: the ranks may share the folder).

        Rank 0's missing samples are sharded over the ranks and every answer is gathered into rank 0's cache;
        the other ranks only answer their shard.
        """
        from pytest_emogate.inference.distributed import RankFailedError, run_torchrun
        from pytest_emogate.inference.run import NonFiniteLogitsError

        done = self.cache.load()
        self._cached = sum(sample.name in done for sample in self.data.samples)
        missing = [i for i, sample in enumerate(self.data.samples) if sample.name not in done]
        with self.quiet_terminal():
            try:
                # llama/vit are named by file times, which differ between machines holding the same files
                identity = {key: value for key, value in self.key.items() if key not in ("llama", "vit")}
                self._ranks = run_torchrun(
                    self.settings, self.data, self.cache.folder, missing, identity=identity, progress=self.progress
                )
            except (NonFiniteLogitsError, RankFailedError) as error:
                raise AnswersUnavailable(str(error)) from error
        self._answers = self._complete(self.cache.load())

    def _infer(self, missing: list[int]) -> None:
        from pytest_emogate.inference.distributed import RankFailedError
        from pytest_emogate.inference.launch import run_distributed
        from pytest_emogate.inference.run import NonFiniteLogitsError, run_inference

        with self.quiet_terminal():
            try:
                if len(self.devices) > 1:
                    self._ranks = run_distributed(
                        self.settings, self.data, self.devices, self.cache.folder, missing, progress=self.progress
                    )
                else:
                    settings = replace(self.settings, device=self.devices[0]) if self.devices else self.settings
                    self._run = run_inference(
                        settings, self.data, progress=self.progress, indices=missing,
                        on_batch=self.cache.append,
                    )  # fmt: skip
            except (NonFiniteLogitsError, RankFailedError) as error:
                raise AnswersUnavailable(str(error)) from error

    def _complete(self, done: dict[str, Prediction]) -> list[Prediction] | None:
        if any(sample.name not in done for sample in self.data.samples):
            return None
        return [done[sample.name] for sample in self.data.samples]

    def provenance(self) -> dict[str, Any]:
        """Checkpoint hash, data fingerprint, device and the settings that shape the answers."""
        answers = self.predictions()
        s = self.settings
        return {
            "checkpoint_sha256": self.key["checkpoint_sha256"],
            "data_fingerprint": self.key["data_fingerprint"],
            "device": self._device(),
            "inference": {
                "batch_size": s.batch_size, "max_new_tokens": s.max_new_tokens, "image_size": s.image_size,
                "lora_alpha": s.lora_alpha, "head_dim": s.head_dim, "mode": s.mode, "merge_lora": s.merge_lora,
                "capped": _capped(answers), "cached": self._cached,
                "cache": str(self.cache.folder) if self.cache_root is not None else None,
            },
        }  # fmt: skip

    def timings(self) -> dict[str, float | None]:
        """Model load and inference seconds (zero when every answer came from the cache)."""
        self.predictions()
        timings = self._run.timings_s if self._run is not None else {}
        return {"load": timings.get("load", 0.0), "inference": timings.get("inference", 0.0)}

    def notes(self) -> list[str]:
        """How the answers were made, how many came from the cache, and how many hit the token cap."""
        if self._answers is None:
            return []
        s, capped = self.settings, _capped(self._answers)
        computed = len(self._answers) - self._cached
        where = f"; cache {display_path(self.cache.folder)}" if self.cache_root else ""
        lines = [f"answers: {self._cached} from the cache, {computed} inferred{where}"]
        if self._ranks:
            seconds = max((rank.timings_s.get("inference", 0.0) for rank in self._ranks), default=0.0)
            lines.append(
                f"inference: {sum(rank.answered for rank in self._ranks)} samples on {len(self._ranks)} ranks "
                f"({self._device()}) in {seconds:.1f} s (batch size {s.batch_size}, mode {s.mode}, "
                f"max {s.max_new_tokens} new tokens)"
            )
            lines += [note for rank in self._ranks for note in rank.notes]
        if self._run is not None:
            run = self._run
            lines.append(
                f"inference: {len(run.predictions)} samples on {run.device} "
                f"in {run.timings_s.get('inference', 0.0):.1f} s "
                f"(load {run.timings_s.get('load', 0.0):.1f} s, batch size {s.batch_size}, mode {s.mode}, "
                f"max {s.max_new_tokens} new tokens)"
            )
            lines += list(getattr(run, "notes", []))
        lines.append(f"{capped} answer{'s' if capped != 1 else ''} hit the cap of {s.max_new_tokens} new tokens")
        return lines

    def _device(self) -> str:
        if self._ranks:
            return ", ".join(f"{rank.device}@{rank.host}" for rank in self._ranks)
        return self._run.device if self._run is not None else self.settings.device


def _capped(answers: list[Prediction]) -> int:
    return sum(bool(answer.extra.get("hit_cap")) for answer in answers)
