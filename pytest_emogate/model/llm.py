"""The language side: Llama-2 from a local Hugging Face directory, its slow tokenizer, and the LoRA adapter.

As the original (spec §1.3-1.4): `LlamaTokenizer` (sentencepiece, not the fast one) with "$$" as pad; the model
with eager attention (transformers 4.35, which the original pinned, had no other); LoRA from peft on the target
modules and rank the checkpoint's tensors show, unmerged, adapters in fp32. Nothing here touches the network:
the loads run with HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE set and `local_files_only=True`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pytest_emogate.extras import INFER_INSTALL, check_import, library_warnings
from pytest_emogate.files import usage_error
from pytest_emogate.model.checkpoint import StageTwo
from pytest_emogate.model.llama_files import check_llama_folder
from pytest_emogate.model.precision import half_dtype
from pytest_emogate.model.prompt import PAD_TOKEN

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import LlamaForCausalLM, LlamaTokenizer

LORA_DROPOUT = 0.05  # the original's; inactive at eval


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Set the Hugging Face offline switches for the duration of a load, then restore them; transformers is
    imported here (a broken install is a usage error, check_import) and its warnings are shown, never raised
    (library_warnings), as are peft's."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(dict.fromkeys(names, "1"))
    try:
        check_import("transformers", "--emogate-ckpt", INFER_INSTALL)
        with library_warnings():
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_tokenizer(path: Path) -> LlamaTokenizer:
    """The slow sentencepiece tokenizer of the Llama directory, pad set to "$$" as the original; the folder is
    checked first (llama_files.py), so transformers opens only regular files it can read."""
    check_llama_folder(path)
    with offline():
        from transformers import LlamaTokenizer

        try:
            tokenizer = LlamaTokenizer.from_pretrained(str(path), local_files_only=True)
        except ImportError as error:
            # tokenizer_config.json "legacy": false (Llama-2's) makes the slow tokenizer need protobuf.
            raise usage_error(f"Llama tokenizer {path}", [f"a package is missing: {error}"]) from None
        except (OSError, ValueError, RuntimeError, TypeError) as error:
            raise usage_error(f"Llama tokenizer {path}", [_one_line(error)]) from None
    if not isinstance(tokenizer, LlamaTokenizer):
        raise usage_error(f"Llama tokenizer {path}", [f"loaded as {type(tokenizer).__name__}, not a LlamaTokenizer"])
    tokenizer.pad_token = PAD_TOKEN
    return tokenizer


def load_llama(path: Path, device: torch.device, dtype: str = "auto") -> LlamaForCausalLM:
    """Llama from local files in the half dtype of `dtype` on `device` (auto: fp16 straight onto a CUDA device),
    else fp32; eager attention. The folder is checked first (config.json against the weights' shapes), and a
    tensor the weights leave out is refused, never initialised at random."""
    check_llama_folder(path)
    weights = half_dtype(dtype, device) or torch.float32
    with offline(), quiet_progress():
        from transformers import LlamaForCausalLM

        try:
            # (model, loading info); transformers 5's annotation says the model alone, whatever the flag
            loaded: Any = LlamaForCausalLM.from_pretrained(
                str(path),
                dtype=weights,
                attn_implementation="eager",
                local_files_only=True,
                device_map={"": device} if device.type == "cuda" else None,
                output_loading_info=True,
            )
        except (OSError, ValueError, RuntimeError) as error:
            raise usage_error(f"Llama directory {path}", [_one_line(error)]) from None
    model, info = loaded
    missing = sorted(info.get("missing_keys", ())) + [str(key) for key, *_ in info.get("mismatched_keys", ())]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise usage_error(f"Llama directory {path}", [f"the weights do not hold {shown}"])
    return model.eval().requires_grad_(False)


def attach_lora(llama: LlamaForCausalLM, stage: StageTwo, alpha: float) -> PeftModel:
    """Wrap `llama` with the checkpoint's LoRA (rank and targets from its tensors) and load every pair.

    Both sides are accounted for: each checkpoint pair must land in a LoRA module peft created, and each LoRA
    module peft created must receive a pair; shapes must match. Anything else is a UsageError naming the keys.
    """
    check_import("peft", "--emogate-ckpt", INFER_INSTALL)
    with library_warnings():
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=stage.rank,
            lora_alpha=alpha,  # type: ignore[arg-type]  # typed int by peft, used as alpha / r: a float is fine
            lora_dropout=LORA_DROPOUT,
            target_modules=list(stage.targets),
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(llama, config)
    own = {name: param for name, param in model.named_parameters() if ".lora_" in name}
    given = {}
    for (layer, parent, target), pair in stage.lora.items():
        for half, tensor in zip("AB", pair, strict=True):
            given[f"base_model.model.model.layers.{layer}.{parent}.{target}.lora_{half}.default.weight"] = tensor
    problems = [f"missing key {_checkpoint_name(name)}" for name in sorted(own.keys() - given.keys())]
    problems += [
        f"unexpected key {_checkpoint_name(name)} (the Llama model has no such LoRA module)"
        for name in sorted(given.keys() - own.keys())
    ]
    problems += [
        f"{_checkpoint_name(name)}: expected shape {list(own[name].shape)}, found {list(tensor.shape)}"
        for name, tensor in sorted(given.items())
        if name in own and own[name].shape != tensor.shape
    ]
    if problems:
        raise usage_error(f"checkpoint {stage.path}", problems)
    with torch.no_grad():
        for name, tensor in given.items():
            own[name].copy_(tensor)
    return model.eval().requires_grad_(False)


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """No progress bar for the load (transformers 5 draws one per weight file, on every run), then as before."""
    from transformers.utils import logging

    bars: Any = logging  # its switches are untyped in some releases
    shown = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            bars.enable_progress_bar()


def _checkpoint_name(peft_name: str) -> str:
    """A peft parameter name as the original checkpoint spells it (peft 0.2: no adapter name)."""
    return "llama_model." + peft_name.replace(".default.", ".")


def lm_parts(model: Any) -> tuple[Any, Any]:
    """The decoder stack (embeddings and layers, LoRA inside) and the lm_head of a peft-wrapped Llama."""
    causal = model.get_base_model()
    return causal.model, causal.lm_head


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:500] or type(error).__name__
