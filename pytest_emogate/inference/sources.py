"""Answers from Emotion-LLaMA inference over the Test3 data, through the per-sample answer cache (a predictions
file made elsewhere is file_source.py).

Inference imports torch, transformers and the data reader inside its methods: only `--emogate-ckpt` pays for them.
The preflight (model paths and files, data files, feature shapes against the checkpoint, the cache) runs when the
source is made, before any model is loaded, so a broken data set stops the run with exit 4 instead of dying at
sample 700, and every problem is listed in one error.

Answering is one event per session: whatever ends it (non-finite logits, out of memory, a full disk under the
cache, a tokenizer that cannot decode an id, a warning turned into an error, any other exception) is recorded
once as AnswersUnavailable with its cause and remedy in its first line, the model is let go (the failed frames
cleared, CUDA's cache emptied), and every later ask gets the same error without inferring again. A usage error
(a weight file found broken at load) stays a pytest.UsageError; Ctrl-C and SystemExit pass through.
"""

from __future__ import annotations

import errno
import tempfile
import traceback
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_emogate.files import FileProblem, check_regular, display_path, usage_error
from pytest_emogate.inference.cache import AnswerCache, answer_key
from pytest_emogate.inference.settings import AUTO
from pytest_emogate.predictions import Prediction

if TYPE_CHECKING:
    from pytest_emogate.data import Test3Data
    from pytest_emogate.data.preflight import FeatureDims
    from pytest_emogate.inference.distributed import RankRun
    from pytest_emogate.inference.probe import ConsistencyProbe
    from pytest_emogate.inference.run import InferenceRun
    from pytest_emogate.inference.settings import InferenceSettings


class AnswersUnavailable(RuntimeError):
    """The source could not produce answers worth gating (e.g. non-finite logits, out of memory); the message's
    first line says why and what to do, and later lines (a rank's traceback) may follow."""


@dataclass
class CheckpointInference:
    """Answers made by running the model over the Test3 data once, through the per-sample answer cache.

    At configure time: the model paths are checked, the data is read and fingerprinted, the cache is opened and
    read, and unless it already holds every answer, the model files and every sample are checked. When the answers
    are first asked for, the cache folder is locked (pytest-xdist workers and ranks share it), the cached answers
    are read, and only the missing samples are inferred, each batch appended to the cache as it finishes.
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
    probe: ConsistencyProbe | None = None
    """The consistency probe (`--emogate-probe N`), when asked for."""
    _answers: list[Prediction] | None = None
    _run: InferenceRun | None = None
    _ranks: list[RankRun] | None = None
    _cached: int = 0
    _failure: str | None = None
    """Why the answers could not be made, once that happened: every later ask raises it again, inferring nothing."""
    _workers: list[dict[str, Any]] = field(default_factory=list)
    """What each pytest-xdist worker did to get the answers (on the controller, which infers nothing itself)."""

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
        probe: int = 0,
        scratch: Path | None = None,
    ) -> CheckpointInference:
        """Check the model paths, read and fingerprint the data, open and read the cache and, unless it already
        holds every answer, check the model files and every sample (a complete cache has its labels checked, and
        no file read). Every problem of the model, the data and the cache is in one UsageError, before a model
        loads: a user fixing a long GPU job sees them all at once. With `probe`, the consistency probe of that
        many samples is made, its cache opened beside the main one; the cache is complete only with its answers
        too. Without a cache root the answers pass through `scratch` (a pytest-xdist controller's folder, which its
        workers share), else through a new temporary folder."""
        from pytest_emogate.data import load_test3
        from pytest_emogate.data.preflight import preflight_problems

        problems: list[str | pytest.UsageError] = [*_model_path_problems(settings)]
        try:
            data = load_test3(data_path)
        except pytest.UsageError as error:
            raise _one_error("emogate inference", [*problems, error]) from None
        source, complete, paths_found = None, False, not problems
        if paths_found:
            ran_on = replace(settings, device=devices[0].split(":")[0]) if devices else settings
            root = cache_root or scratch or Path(tempfile.mkdtemp(prefix="emogate-"))
            try:
                key = answer_key(ran_on, data.fingerprint())
                cache = AnswerCache.open(root, key)
                source = cls(settings, data_path, labels, data, cache, key, cache_root, quiet_terminal, progress,
                             devices)  # fmt: skip
                complete = source._complete(source._read_cache(cut=False)) is not None
                if probe:
                    from pytest_emogate.inference.probe import ConsistencyProbe

                    source.probe = ConsistencyProbe.prepare(source, ran_on, data, probe, root, key)
                    complete = complete and source.probe.complete
            except pytest.UsageError as error:
                problems.append(error)
        dims = None if complete else _feature_dims(settings, problems, check_files=paths_found)
        data_problems = preflight_problems(data, labels, dims)
        if problems or data_problems:
            what = f"emogate inference (Test3 data {data.source})" if data_problems else "emogate inference"
            raise _one_error(what, [*problems, *data_problems])
        assert source is not None, "a source is made whenever the model paths are found"
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

    @property
    def loaded(self) -> bool:
        """True once the answers are at hand, or when the cache already holds every one (no inference needed)."""
        return self._answers is not None or self._complete(self._read_cache(cut=False)) is not None

    def predictions(self) -> list[Prediction]:
        """The answers in sample order: cached ones read back, missing ones inferred (once) and cached.
        AnswersUnavailable, the same each time, when they could not be made."""
        if self._failure is not None:
            raise AnswersUnavailable(self._failure)
        if self._answers is None:
            try:
                self._answers = self._answered()
            except AnswersUnavailable as error:
                self._failure = str(error)
                raise
        return self._answers

    def _answered(self) -> list[Prediction]:
        with self.cache.locked():
            done = self._read_cache(cut=True)
            self._cached = sum(sample.name in done for sample in self.data.samples)
            missing = [i for i, sample in enumerate(self.data.samples) if sample.name not in done]
            if missing:
                self._infer(missing)
                done = self._read_cache(cut=True)
        answers = self._complete(done)
        if answers is None:
            lost = sum(sample.name not in done for sample in self.data.samples)
            raise AnswersUnavailable(
                f"answer cache {self.cache.folder}: {lost} answers made in this run are not in it after they were "
                "written (did another process change the folder meanwhile?); run again, or with --emogate-no-cache"
            )
        return answers

    def answer_as_rank(self) -> None:
        """Under torchrun, every rank calls this once at session start (no lock: the ranks may share the folder).

        Rank 0's missing samples are sharded over the ranks and every answer is gathered into rank 0's cache;
        the other ranks only answer their shard.
        """
        from pytest_emogate.inference.distributed import run_torchrun

        done = self._read_cache(cut=False)
        self._cached = sum(sample.name in done for sample in self.data.samples)
        missing = [i for i, sample in enumerate(self.data.samples) if sample.name not in done]
        failure = None
        with self.quiet_terminal():
            try:
                # llama/vit are named by file times, which differ between machines holding the same files
                identity = {key: value for key, value in self.key.items() if key not in ("llama", "vit")}
                self._ranks = run_torchrun(
                    self.settings, self.data, self.cache.folder, missing, identity=identity, progress=self.progress
                )
            except pytest.UsageError:
                raise
            except Exception as error:  # whatever ends the answering is met once
                failure = _failed(error, self.cache.folder)
        if failure is not None:
            self._failure = failure
            raise AnswersUnavailable(failure)
        self._answers = self._complete(self._read_cache(cut=False))

    def _infer(self, missing: list[int]) -> None:
        self._run, self._ranks = self._answer(self.settings, self.cache, missing, self.devices)

    def answer_missing(self, settings: InferenceSettings, cache: AnswerCache, missing: list[int]) -> None:
        """Answer the samples at `missing` with other `settings` (the probe's) into `cache`: on this process's
        device, or as one rank process on the first of `--emogate-devices`."""
        self._answer(settings, cache, missing, self.devices[:1])

    def _answer(
        self, settings: InferenceSettings, cache: AnswerCache, missing: list[int], devices: tuple[str, ...]
    ) -> tuple[InferenceRun | None, list[RankRun] | None]:
        """Answer `missing` into `cache` on `devices`: one rank process per device when the source runs on several
        (the probe then on the first one alone, as a rank process too, so the pytest process never holds CUDA
        beside the ranks), else in this process. Whatever ends it but a usage error is AnswersUnavailable naming
        the cause, raised once the model is let go."""
        from pytest_emogate.inference.launch import run_distributed
        from pytest_emogate.inference.run import run_inference

        failure = None
        with self.quiet_terminal():
            try:
                if len(self.devices) > 1:
                    ranks = run_distributed(settings, self.data, devices, cache.folder, missing, progress=self.progress)
                    return None, ranks
                if devices:
                    settings = replace(settings, device=devices[0])
                run = run_inference(settings, self.data, progress=self.progress, indices=missing, on_batch=cache.append)
                return run, None
            except pytest.UsageError:
                raise
            except Exception as error:  # whatever ends the answering is met once
                failure = _failed(error, cache.folder)
        raise AnswersUnavailable(failure)  # raised here, outside the handler: nothing chains to the failed frames

    def _read_cache(self, *, cut: bool) -> dict[str, Prediction]:
        """The cached answers, each checked against the data's gold label and carrying it."""
        return self.cache.load({sample.name: sample.label for sample in self.data.samples}, cut=cut)

    def _complete(self, done: dict[str, Prediction]) -> list[Prediction] | None:
        if any(sample.name not in done for sample in self.data.samples):
            return None
        return [done[sample.name] for sample in self.data.samples]

    def provenance(self) -> dict[str, Any]:
        """Checkpoint hash, data fingerprint, device and the settings that shape the answers."""
        from pytest_emogate.model.checkpoint import lora_alpha_used

        answers = self.predictions()
        s = self.settings
        return {
            "checkpoint_sha256": self.key["checkpoint_sha256"],
            "data_fingerprint": self.key["data_fingerprint"],
            "device": self._device(),
            "inference": {
                "batch_size": self._batch_size(), "batch_size_auto": s.batch_auto,
                "max_new_tokens": s.max_new_tokens, "image_size": s.image_size,
                "lora_alpha": lora_alpha_used(s.ckpt, s.lora_alpha), "head_dim": s.head_dim, "mode": s.mode,
                "merge_lora": s.merge_lora, "dtype": s.dtype,
                "capped": _capped(answers), "cached": len(answers) - self._inferred(),
                "cache": str(self.cache.folder) if self.cache_root is not None else None,
            },
        }  # fmt: skip

    def timings(self) -> dict[str, float | None]:
        """Model load and inference seconds, this process's or its xdist workers' (zero when every answer came
        from the cache)."""
        self.predictions()
        own = self._own_timings()
        timings = [own, *(work.get("timings", {}) for work in self._workers)]
        return {phase: max(float(t.get(phase, 0.0)) for t in timings) for phase in ("load", "inference")}

    def notes(self) -> list[str]:
        """How the answers were made (here or by the xdist workers), how many came from the cache, and how many
        hit the token cap."""
        if self._answers is None:
            return []
        s, capped, inferred = self.settings, _capped(self._answers), self._inferred()
        by = " by the pytest-xdist workers" if self._workers else ""
        where = f"; cache {display_path(self.cache.folder)}" if self.cache_root else ""
        lines = [f"answers: {len(self._answers) - inferred} from the cache, {inferred} inferred{by}{where}"]
        lines += self._inference_lines() + [str(line) for work in self._workers for line in work.get("lines", [])]
        lines.append(f"{capped} answer{'s' if capped != 1 else ''} hit the cap of {s.max_new_tokens} new tokens")
        return lines

    def work(self) -> dict[str, Any]:
        """What this process did to get the answers: how many it inferred, its seconds and its inference lines
        (a pytest-xdist worker sends this to the controller, which reports it); empty before the answers."""
        if self._answers is None:
            return {}
        own = len(self._answers) - self._cached
        return {"inferred": own, "timings": self._own_timings(), "lines": self._inference_lines(),
                "batch_size": self._own_batch_size()}  # fmt: skip

    def add_work(self, work: Mapping[str, Any]) -> None:
        """Note what a pytest-xdist worker did (its `work()`): this controller's notes, timings and provenance
        report the answers its workers inferred, not the cache they left behind."""
        if work:
            self._workers.append(dict(work))

    def release(self) -> None:
        """Keep the answers (Gate.release): one row per sample of the data set, 834 for Test3, read back from the
        cache; dropping them would let a later `predictions()` infer again."""

    def _inferred(self) -> int:
        """How many answers this session inferred: here, and in the xdist workers (only one infers each: the lock)."""
        own = len(self._answers) - self._cached if self._answers is not None else 0
        return min(own + sum(int(work.get("inferred", 0)) for work in self._workers), len(self.data.samples))

    def _own_timings(self) -> dict[str, float]:
        if self._run is not None:
            return {phase: self._run.timings_s.get(phase, 0.0) for phase in ("load", "inference")}
        ranks = self._ranks or []
        return {phase: max((rank.timings_s.get(phase, 0.0) for rank in ranks), default=0.0)
                for phase in ("load", "inference")}  # fmt: skip

    def _own_batch_size(self) -> int:
        """The batch size this process's inference answered at (with `auto`, the one that fit; the smallest of
        its ranks'); 0 when it inferred nothing."""
        sizes = [self._run.batch_size] if self._run is not None else []
        sizes += [rank.batch_size for rank in self._ranks or []]
        return min((size for size in sizes if size), default=0)

    def _batch_size(self) -> int:
        """The batch size the answers were made at, here or by the pytest-xdist workers (the smallest of them);
        the one asked for (with `auto`, the largest) when none was inferred."""
        sizes = [self._own_batch_size(), *(int(work.get("batch_size", 0)) for work in self._workers)]
        return min((size for size in sizes if size), default=self.settings.largest_batch_size)

    def _inference_lines(self) -> list[str]:
        """What this process's inference did: its samples, devices and seconds, and the notes of each run."""
        s = self.settings
        size = f"{self._own_batch_size() or s.largest_batch_size}{f' ({AUTO})' if s.batch_auto else ''}"
        settings = f"batch size {size}, mode {s.mode}, max {s.max_new_tokens} new tokens"
        settings += f", dtype {s.dtype}" if s.dtype != "auto" else ""
        lines = []
        if self._ranks:
            seconds = max((rank.timings_s.get("inference", 0.0) for rank in self._ranks), default=0.0)
            lines.append(
                f"inference: {sum(rank.answered for rank in self._ranks)} samples on {len(self._ranks)} ranks "
                f"({self._device()}) in {seconds:.1f} s ({settings})"
            )
            lines += [note for rank in self._ranks for note in rank.notes]
        if self._run is not None:
            run = self._run
            lines.append(
                f"inference: {len(run.predictions)} samples on {run.device} "
                f"in {run.timings_s.get('inference', 0.0):.1f} s (load {run.timings_s.get('load', 0.0):.1f} s, "
                f"{settings})"
            )
            lines += list(run.notes)
        return lines

    def _device(self) -> str:
        if self._ranks:
            return ", ".join(f"{rank.device}@{rank.host}" for rank in self._ranks)
        return self._run.device if self._run is not None else self.settings.device


def _failed(error: Exception, cache_folder: Path) -> str:
    """What ended the answering, as AnswersUnavailable will say it, once the model it held is let go: every
    frame of its traceback (and of the errors chained to it) is cleared, so no local still holds the model or a
    batch, and CUDA's cache is emptied."""
    from pytest_emogate.inference.run import free_memory

    said = failure_cause(error, cache_folder)
    seen: set[int] = set()
    chained: BaseException | None = error
    while chained is not None and id(chained) not in seen:
        seen.add(id(chained))
        traceback.clear_frames(chained.__traceback__)
        chained = chained.__cause__ or chained.__context__
    del error, chained
    free_memory()
    return said


def failure_cause(error: Exception, cache_folder: Path) -> str:
    """The cause of a failed answering and its remedy, in the first line: out of memory names the batch size and
    --emogate-batch-size (run.py's BatchOutOfMemoryError says it), a full disk the cache folder, a warning turned
    into an error says so; any other error its type and first line."""
    from pytest_emogate.inference.cache import CacheWriteError
    from pytest_emogate.inference.distributed import RankFailedError
    from pytest_emogate.inference.run import BatchOutOfMemoryError, NonFiniteLogitsError, is_out_of_memory

    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(error, (AnswersUnavailable, NonFiniteLogitsError, BatchOutOfMemoryError, CacheWriteError,
                          RankFailedError)):  # fmt: skip
        return text
    if is_out_of_memory(error):  # outside a batch: loading the model, merging the LoRA
        return (
            f"out of memory before any batch ran ({first}): the model does not fit; use a device with more free "
            "memory, or --emogate-devices to spread the samples"
        )
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {error.filename}" if error.filename else ""
        return (
            f"the disk is full{where} ({error.strerror}); the answer cache is {cache_folder}: free space there, move "
            "it with --emogate-cache DIR, or run with --emogate-no-cache"
        )
    said = f"{type(error).__name__}: {first}" if first else type(error).__name__
    if isinstance(error, Warning):
        return f"{said} (a warning turned into an error by -W error or a filterwarnings setting)"
    return f"inference failed: {said}"


def _capped(answers: list[Prediction]) -> int:
    return sum(bool(answer.extra.get("hit_cap")) for answer in answers)


def _model_path_problems(settings: InferenceSettings) -> list[str]:
    """The model paths that are missing or not what they must be: a weight file each, the Llama folder."""
    problems = []
    for option, path in (("--emogate-ckpt", settings.ckpt), ("--emogate-vit", settings.vit)):
        try:
            check_regular(path)
        except FileProblem as problem:
            problems.append(f"{option}: {path} {problem.found}")
    if not settings.llama.exists():
        problems.append(f"--emogate-llama: {settings.llama} does not exist")
    elif not settings.llama.is_dir():
        problems.append(f"--emogate-llama: {settings.llama} is not a folder; expected the Llama-2 model folder")
    return problems


def _feature_dims(
    settings: InferenceSettings, problems: list[str | pytest.UsageError], *, check_files: bool
) -> FeatureDims:
    """The feature widths the samples must have. With `check_files`, the model files are checked against each
    other first, their problems added to `problems`; a width the checkpoint cannot give is None (not checked)."""
    from pytest_emogate.model import ModelFiles, check_model_files
    from pytest_emogate.model.checkpoint import feature_dims

    s = settings
    if check_files:
        try:
            stage, _, _ = check_model_files(ModelFiles(s.ckpt, s.llama, s.vit, s.image_size, s.head_dim, s.lora_alpha))
            return stage.feature_dims
        except pytest.UsageError as error:
            problems.append(error)
    try:
        return feature_dims(s.ckpt) if s.ckpt.is_file() else (None, None, None)
    except pytest.UsageError as error:
        if not check_files:
            problems.append(error)
        return None, None, None


def _one_error(what: str, problems: list[str | pytest.UsageError]) -> pytest.UsageError:
    """One UsageError for every problem: a lone error as it is, else a list, an error's own lines indented."""
    if len(problems) == 1 and isinstance(problems[0], pytest.UsageError):
        return problems[0]
    return usage_error(what, [str(problem).replace("\n", "\n    ") for problem in problems])
