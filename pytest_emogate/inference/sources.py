"""Where the answers come from: a predictions file read at configure time, or Emotion-LLaMA inference.

Inference imports torch, transformers and the data reader inside its methods: only `--emogate-ckpt` pays for them.
The preflight (data files, feature shapes against the checkpoint, model paths) runs when the source is made, before
any model is loaded, so a broken data set stops the run with exit 4 instead of dying at sample 700.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_emogate.files import display_path, file_sha256, usage_error
from pytest_emogate.inference.cache import AnswerCache
from pytest_emogate.predictions import Prediction, read_predictions

if TYPE_CHECKING:
    from pytest_emogate.data import Test3Data
    from pytest_emogate.inference.distributed import RankRun
    from pytest_emogate.inference.run import InferenceRun
    from pytest_emogate.inference.settings import InferenceSettings


class AnswersUnavailable(RuntimeError):
    """The source could not produce answers worth gating (e.g. non-finite logits); the message says why."""


def gold_fingerprint(predictions: list[Prediction]) -> str:
    """sha256 over the sorted (name, gold label) pairs: the same evaluation set gives the same fingerprint."""
    digest = hashlib.sha256()
    for name, label in sorted((p.name, p.label) for p in predictions):
        digest.update(f"{name}\t{label}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class PredictionsFile:
    """Answers produced elsewhere: the rows of a predictions file, read and validated once."""

    path: Path
    rows: list[Prediction]
    sha256: str
    """The hash of the bytes that were gated (the file may change while the session runs)."""
    load_s: float = 0.0
    loaded: bool = True

    @classmethod
    def read(cls, path: Path, labels: tuple[str, ...]) -> PredictionsFile:
        """Read and validate the file (one UsageError listing every problem)."""
        start = time.perf_counter()
        rows = read_predictions(path, labels)
        return cls(path, rows, hashlib.sha256(path.read_bytes()).hexdigest(), time.perf_counter() - start)

    @property
    def description(self) -> str:
        """`predictions preds.csv (834 rows)`."""
        return f"predictions {display_path(self.path)} ({len(self.rows)} rows)"

    def predictions(self) -> list[Prediction]:
        """The rows of the file, in file order."""
        return self.rows

    def provenance(self) -> dict[str, Any]:
        """The file's hash and the gold set's fingerprint; no checkpoint is known."""
        return {
            "predictions_sha256": self.sha256,
            "checkpoint_sha256": None,
            "data_fingerprint": gold_fingerprint(self.rows),
            "device": None,
        }

    def signature(self) -> dict[str, str]:
        """The predictions file's and the gold set's hashes."""
        return {"predictions": self.sha256[:12], "data": gold_fingerprint(self.rows)[:12]}

    def timings(self) -> dict[str, float | None]:
        """Reading the file is the load; there was no inference."""
        return {"load": self.load_s, "inference": None}

    def notes(self) -> list[str]:
        """Nothing to add: the header names the file."""
        return []


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
        """`inference from checkpoint ckpt.pth on data test3`."""
        return f"inference from checkpoint {display_path(self.settings.ckpt)} on data {display_path(self.data_path)}"

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
                f"inference: {len(run.predictions)} samples on {run.device} in {run.timings_s.get('inference', 0.0):.1f} s "
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


def _identity(path: Path) -> list[tuple[str, int, int]]:
    """Name, size and mtime of a weight file or of every file in a model folder: cheap, and any change shows."""
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return [(file.name, file.stat().st_size, file.stat().st_mtime_ns) for file in files if file.is_file()]


def answer_key(settings: InferenceSettings, data_fingerprint: str) -> dict[str, Any]:
    """What determines the answers: the cache key.

    The checkpoint and data are hashed; the base Llama and EVA files (gigabytes, fixed per project) are named by
    size and modification time; the prompt by the source of the module that builds it; the decoding settings
    and the package version as they are. Batch size is left out: in fp32 it does not change an answer.
    """
    from pytest_emogate import __version__

    prompt_module = Path(__file__).parents[1] / "model" / "prompt.py"
    s = settings
    return {
        "version": __version__,
        "checkpoint_sha256": file_sha256(s.ckpt),
        "data_fingerprint": data_fingerprint,
        "llama": _identity(s.llama),
        "vit": _identity(s.vit),
        "prompt_sha256": file_sha256(prompt_module),
        "decoding": {"max_new_tokens": s.max_new_tokens, "mode": s.mode, "merge_lora": s.merge_lora},
        "model": {"image_size": s.image_size, "head_dim": s.head_dim, "lora_alpha": s.lora_alpha},
        "device": s.device,
    }
