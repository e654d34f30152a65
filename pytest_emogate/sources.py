"""Where the answers come from: a predictions file read at configure time, or Emotion-LLaMA inference.

Inference imports torch, transformers and the data reader inside its methods: only `--emogate-ckpt` pays for them.
The preflight (data files, feature shapes against the checkpoint, model paths) runs when the source is made, before
any model is loaded, so a broken data set stops the run with exit 4 instead of dying at sample 700.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_emogate.files import display_path, usage_error
from pytest_emogate.predictions import Prediction, read_predictions

if TYPE_CHECKING:
    from pytest_emogate.data import Test3Data
    from pytest_emogate.inference import InferenceRun, InferenceSettings


def gold_fingerprint(predictions: list[Prediction]) -> str:
    """sha256 over the sorted (name, gold label) pairs: the same evaluation set gives the same fingerprint."""
    digest = hashlib.sha256()
    for name, label in sorted((p.name, p.label) for p in predictions):
        digest.update(f"{name}\t{label}\n".encode())
    return digest.hexdigest()


@dataclass
class PredictionsFile:
    """Answers produced elsewhere, read (and validated) when the source is made."""

    path: Path
    labels: tuple[str, ...]
    description: str = ""
    loaded: bool = True
    _predictions: list[Prediction] = field(default_factory=list)
    _load_s: float = 0.0

    def __post_init__(self) -> None:
        start = time.perf_counter()
        self._predictions = read_predictions(self.path, self.labels)
        self._load_s = time.perf_counter() - start
        self.description = f"predictions {display_path(self.path)} ({len(self._predictions)} rows)"

    def predictions(self) -> list[Prediction]:
        """The rows of the file, in file order."""
        return self._predictions

    def provenance(self) -> dict[str, Any]:
        """The file's hash and the gold set's fingerprint; no checkpoint is known."""
        return {
            "predictions_sha256": hashlib.sha256(self.path.read_bytes()).hexdigest(),
            "checkpoint_sha256": None,
            "data_fingerprint": gold_fingerprint(self._predictions),
            "device": None,
        }

    def timings(self) -> dict[str, float | None]:
        """Reading the file is the load; there was no inference."""
        return {"load": self._load_s, "inference": None}

    def notes(self) -> list[str]:
        """Nothing to add: the header names the file."""
        return []


@dataclass
class CheckpointInference:
    """Answers made by running the model over the Test3 data, once, when first asked for."""

    settings: InferenceSettings
    data_path: Path
    labels: tuple[str, ...]
    quiet_terminal: Callable[[], AbstractContextManager[Any]] = nullcontext
    progress: bool = True
    description: str = ""
    loaded: bool = False
    _data: Test3Data | None = None
    _run: InferenceRun | None = None

    def __post_init__(self) -> None:
        self.description = (
            f"inference from checkpoint {display_path(self.settings.ckpt)} on data {display_path(self.data_path)}"
        )
        self.preflight()

    def preflight(self) -> None:
        """Check the model paths and every sample's files before any model is loaded."""
        from pytest_emogate.data import load_test3, preflight
        from pytest_emogate.inference import checkpoint_feature_dims

        missing = [
            f"{option}: {path} does not exist"
            for option, path in (("--emogate-ckpt", self.settings.ckpt), ("--emogate-llama", self.settings.llama),
                                 ("--emogate-vit", self.settings.vit))
            if not path.exists()
        ]  # fmt: skip
        if missing:
            raise usage_error("emogate inference", missing)
        self._data = load_test3(self.data_path)
        preflight(self._data, self.labels, checkpoint_feature_dims(self.settings.ckpt))

    def predictions(self) -> list[Prediction]:
        """Run the inference on the first call; later calls return the same answers."""
        if self._run is None:
            from pytest_emogate.gate import AnswersUnavailable
            from pytest_emogate.inference import NonFiniteLogitsError, run_inference

            assert self._data is not None  # set by the preflight in __post_init__
            with self.quiet_terminal():
                try:
                    self._run = run_inference(self.settings, self._data, progress=self.progress)
                except NonFiniteLogitsError as error:
                    raise AnswersUnavailable(str(error)) from error
            self.loaded = True
        return self._run.predictions

    def provenance(self) -> dict[str, Any]:
        """Checkpoint hash, data fingerprint, device and the settings that shape the answers."""
        run = self._require_run()
        assert self._data is not None
        s = self.settings
        return {
            "checkpoint_sha256": run.checkpoint_sha256,
            "data_fingerprint": self._data.fingerprint(),
            "device": run.device,
            "inference": {
                "batch_size": s.batch_size, "max_new_tokens": s.max_new_tokens, "image_size": s.image_size,
                "lora_alpha": s.lora_alpha, "head_dim": s.head_dim, "capped": run.capped,
            },
        }  # fmt: skip

    def timings(self) -> dict[str, float | None]:
        """Model load and inference seconds."""
        run = self._require_run()
        return {"load": run.timings_s.get("load"), "inference": run.timings_s.get("inference")}

    def notes(self) -> list[str]:
        """How the answers were made, and how many hit the token cap (they may be cut-off answers)."""
        if self._run is None:
            return []
        run, s = self._run, self.settings
        line = (
            f"inference: {len(run.predictions)} samples on {run.device} in {run.timings_s.get('inference', 0.0):.1f} s "
            f"(load {run.timings_s.get('load', 0.0):.1f} s, batch size {s.batch_size}, "
            f"max {s.max_new_tokens} new tokens); {run.capped} answer{'s' if run.capped != 1 else ''} hit the cap"
        )
        return [line]

    def _require_run(self) -> InferenceRun:
        self.predictions()
        assert self._run is not None
        return self._run
