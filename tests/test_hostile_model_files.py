"""Model files that are not what they claim: each is a usage error naming the file and what it looks like.

A Llama folder whose config.json disagrees with its weights or whose tokenizer.model is damaged, a checkpoint
that is a Git LFS pointer, a web page or half a download, a LoRA alpha that is not a finite positive number,
a tensor of the wrong rank where a weight belongs, a FIFO where a file belongs: none of them may end in a
traceback, a hang, a silent fallback or torch's advice to load with weights_only=False.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pytest_emogate.model.checkpoint import feature_dims, read_stage_two, read_vit  # noqa: E402
from pytest_emogate.model.emotion_llama import ModelFiles, check_model_files, load_emotion_llama  # noqa: E402
from pytest_emogate.model.llm import load_llama, load_tokenizer  # noqa: E402
from pytest_emogate.options import VALUE_OPTIONS  # noqa: E402
from tests.conftest import TINY  # noqa: E402

CKPT = TINY / "checkpoint_best.pth"
VIT = TINY / "eva_vit_g.pth"
CPU = torch.device("cpu")
LFS_POINTER = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 13476839\n"
)
HTML_PAGE = b"<!DOCTYPE html>\n<html lang='en'><head><title>Sign in</title></head><body>Log in</body></html>\n"


def zip_of(name: str) -> bytes:
    """A zip archive holding one small file: a zip, but no torch checkpoint."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, "weights are elsewhere")
    return buffer.getvalue()


ADVICE = ("weights_only=False", "weights_only` set to `False`", "Re-running", "add_safe_globals")
LORA_A = "llama_model.base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"


def refusal(call: Callable[[], Any], seconds: float = 60.0) -> str:
    """The text of the UsageError that `call` raises, which it must raise within `seconds` (a FIFO must never
    block a read)."""
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            call()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (blocked on a FIFO?)"
    error = outcome.get("error")
    assert isinstance(error, pytest.UsageError), f"expected a UsageError, got {error!r}"
    text = str(error)
    assert not any(advice in text for advice in ADVICE), text
    return text


def llama_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "llama"
    shutil.copytree(TINY / "llama", folder)
    return folder


def edit_config(folder: Path, **changes: Any) -> None:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


class RunsCode:
    """Unpickling this calls os.mkdir: what a malicious checkpoint does."""

    def __init__(self, flag: Path) -> None:
        self.flag = flag

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.flag),))


def checkpoint() -> dict[str, Any]:
    return torch.load(CKPT, weights_only=True)


def saved(path: Path, value: Any) -> Path:
    torch.save(value, path)
    return path


# --- 1. the Llama folder: config.json against the weights, the tokenizer, files that are not regular ---


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"hidden_size": 128}, "hidden_size is 128, but the weights have 64"),
        ({"vocab_size": 700}, "vocab_size is 700, but the weights have 600"),
        ({"intermediate_size": 100}, "intermediate_size is 100, but the weights have 172"),
        ({"num_hidden_layers": 3}, "num_hidden_layers is 3, but the weights hold 2 layers"),
        ({"num_hidden_layers": 1}, "num_hidden_layers is 1, but the weights hold 2 layers"),
        ({"num_attention_heads": 8}, "num_attention_heads × head_dim is 8 × 16 = 128, but the weights have 64"),
    ],
)
def test_a_config_whose_sizes_disagree_with_the_weights_names_the_key_and_both_sizes(
    tmp_path: Path, changes: dict[str, int], said: str
) -> None:
    folder = llama_copy(tmp_path)
    edit_config(folder, **changes)
    text = refusal(lambda: load_llama(folder, CPU))
    assert f"Llama config {folder / 'config.json'}" in text
    assert said in text


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"hidden_size": "64"}, "hidden_size: expected a positive whole number, found '64'"),
        ({"num_hidden_layers": 0}, "num_hidden_layers: expected a positive whole number, found 0"),
        ({"vocab_size": True}, "vocab_size: expected a positive whole number, found True"),
    ],
)
def test_a_config_size_of_the_wrong_type_is_named(tmp_path: Path, changes: dict[str, Any], said: str) -> None:
    folder = llama_copy(tmp_path)
    edit_config(folder, **changes)
    assert said in refusal(lambda: load_llama(folder, CPU))


def test_a_config_that_is_not_json_names_its_line(tmp_path: Path) -> None:
    folder = llama_copy(tmp_path)
    (folder / "config.json").write_text('{\n  "hidden_size": 64,\n  oops\n}\n', encoding="utf-8")
    text = refusal(lambda: load_llama(folder, CPU))
    assert f"{folder / 'config.json'}" in text and "line 3" in text


@pytest.mark.parametrize(
    "content",
    [b"garbage, not a sentencepiece model", b"\x00\x01\x02\x03" * 64, LFS_POINTER],
    ids=["text", "binary", "lfs"],
)
def test_a_corrupt_tokenizer_model_is_a_usage_error_naming_it(tmp_path: Path, content: bytes) -> None:
    folder = llama_copy(tmp_path)
    (folder / "tokenizer.model").write_bytes(content)
    text = refusal(lambda: load_tokenizer(folder))
    assert str(folder / "tokenizer.model") in text
    assert "Git LFS pointer" in text if content == LFS_POINTER else "not a sentencepiece model" in text


def test_a_tokenizer_with_more_pieces_than_the_vocabulary_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = llama_copy(tmp_path)
    edit_config(folder, vocab_size=500)
    tensors = load_file(str(folder / "model.safetensors"))
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        tensors[key] = tensors[key][:500].clone()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    assert "tokenizer.model has 600 pieces, but config.json vocab_size is 500" in refusal(
        lambda: load_tokenizer(folder)
    )


def with_vocab(folder: Path, size: int) -> Path:
    """The Llama folder with config.json's vocab_size and the embedding and head rows at `size` (the tiny
    tokenizer has 600 pieces): weights and config agree, the tokenizer does not."""
    from safetensors.torch import load_file, save_file

    edit_config(folder, vocab_size=size)
    tensors = load_file(str(folder / "model.safetensors"))
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        rows = tensors[key]
        tensors[key] = torch.cat((rows, rows[: size - len(rows)])) if size > len(rows) else rows[:size].clone()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_a_tokenizer_with_fewer_pieces_than_the_vocabulary_is_refused_before_any_load(tmp_path: Path) -> None:
    folder = with_vocab(llama_copy(tmp_path), 700)  # the model can emit ids 600-699, which no piece decodes
    text = refusal(lambda: check_model_files(ModelFiles(CKPT, folder, VIT)))
    assert f"Llama tokenizer {folder / 'tokenizer.model'}" in text
    assert (
        "tokenizer.model has 600 pieces, but config.json vocab_size is 700: the model can emit 100 ids (600 to "
        "699) that the tokenizer cannot decode" in text
    )


def test_added_tokens_count_as_the_tokenizer_s_own(tmp_path: Path) -> None:
    folder = with_vocab(llama_copy(tmp_path), 602)
    (folder / "added_tokens.json").write_text('{"<pad>": 600}', encoding="utf-8")
    assert "the model can emit id 601 that" in refusal(lambda: check_model_files(ModelFiles(CKPT, folder, VIT)))
    (folder / "added_tokens.json").write_text('{"<pad>": 600, "<mask>": 601}', encoding="utf-8")
    check_model_files(ModelFiles(CKPT, folder, VIT))


@pytest.mark.parametrize("name", ["config.json", "tokenizer.model", "tokenizer_config.json", "model.safetensors"])
def test_a_fifo_in_the_llama_folder_never_blocks(tmp_path: Path, name: str) -> None:
    folder = llama_copy(tmp_path)
    (folder / name).unlink()
    os.mkfifo(folder / name)
    try:
        text = refusal(lambda: (load_tokenizer(folder), load_llama(folder, CPU)), seconds=20)
    finally:
        unblock(folder / name)
    assert f"{folder / name}" in text and "is a FIFO (named pipe); expected a regular file" in text


@pytest.mark.parametrize("name", ["config.json", "tokenizer.model"])
def test_dev_zero_in_the_llama_folder_is_refused_unread(tmp_path: Path, name: str) -> None:
    folder = llama_copy(tmp_path)
    (folder / name).unlink()
    (folder / name).symlink_to("/dev/zero")
    text = refusal(lambda: (load_tokenizer(folder), load_llama(folder, CPU)), seconds=20)
    assert f"{folder / name}" in text and "is a character device; expected a regular file" in text


def test_a_file_given_as_the_llama_folder_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "llama").write_text("not a folder", encoding="utf-8")
    assert "is not a folder (expected a local Hugging Face model folder)" in refusal(
        lambda: load_llama(tmp_path / "llama", CPU)
    )


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (LFS_POINTER, "a Git LFS pointer, not the weights: run `git lfs pull`"),
        (HTML_PAGE, "an HTML page (a download that returned a web page?)"),
        (b"", "is empty"),
    ],
    ids=["lfs", "html", "empty"],
)
def test_llama_weights_that_are_not_weights_are_named(tmp_path: Path, content: bytes, said: str) -> None:
    folder = llama_copy(tmp_path)
    (folder / "model.safetensors").write_bytes(content)
    text = refusal(lambda: load_llama(folder, CPU))
    assert str(folder / "model.safetensors") in text and said in text


def test_truncated_llama_weights_are_named(tmp_path: Path) -> None:
    folder = llama_copy(tmp_path)
    whole = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(whole[: len(whole) // 2])
    text = refusal(lambda: load_llama(folder, CPU))
    assert str(folder / "model.safetensors") in text and "truncated" in text


def unblock(fifo: Path) -> None:
    """Open and close the write end of a FIFO, so a reader that did block on it (the bug) ends."""
    with contextlib.suppress(OSError):  # no reader waiting: nothing blocked
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


# --- 2. weight files that are something else ---


NOT_WEIGHTS = [
    pytest.param(b"hello", "is a text file", id="text"),
    pytest.param(LFS_POINTER, "is a Git LFS pointer, not the weights: run `git lfs pull`", id="lfs"),
    pytest.param(HTML_PAGE, "is an HTML page (a download that returned a web page?)", id="html"),
    pytest.param(b"  \n<html><body>Forbidden</body></html>", "is an HTML page", id="html-no-doctype"),
    pytest.param(b"", "is empty (0 bytes)", id="empty"),
    pytest.param(CKPT.read_bytes()[:5000], "truncated or damaged zip archive", id="truncated-zip"),
    pytest.param(bytes(range(7, 256)), "is not a torch checkpoint", id="binary"),
    pytest.param(zip_of("README.txt"), "is a zip archive, not a torch checkpoint (it holds no data.pkl", id="zip"),
]
READERS = [
    pytest.param(read_stage_two, "checkpoint", id="checkpoint"),
    pytest.param(feature_dims, "checkpoint", id="preflight"),
    pytest.param(read_vit, "EVA-ViT weights", id="vit"),
]


@pytest.mark.parametrize(("content", "said"), NOT_WEIGHTS)
@pytest.mark.parametrize(("read", "what"), READERS)
def test_a_weight_file_that_is_not_weights_says_what_it_looks_like(
    tmp_path: Path, content: bytes, said: str, read: Callable[[Path], Any], what: str
) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    text = refusal(lambda: read(path))
    assert f"{what} {path}" in text and said in text
    assert "needs code" not in text


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (LFS_POINTER, "is a Git LFS pointer, not the weights: run `git lfs pull`"),
        (HTML_PAGE, "is an HTML page"),
        (b"", "is empty"),
        (b"hello", "is a text file"),
    ],
)
@pytest.mark.parametrize(("read", "what"), READERS)
def test_a_safetensors_file_that_is_not_weights_says_what_it_looks_like(
    tmp_path: Path, content: bytes, said: str, read: Callable[[Path], Any], what: str
) -> None:
    path = tmp_path / "weights.safetensors"
    path.write_bytes(content)
    text = refusal(lambda: read(path))
    assert f"{what} {path}" in text and said in text


def test_a_truncated_safetensors_checkpoint_is_named(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "c.safetensors"
    save_file(checkpoint()["model"], str(path))
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 1000])
    text = refusal(lambda: read_stage_two(path))
    assert f"checkpoint {path}" in text and "truncated" in text


@pytest.mark.parametrize(("read", "what"), READERS)
def test_a_pickle_that_needs_code_is_still_refused_without_the_advice(
    tmp_path: Path, read: Callable[[Path], Any], what: str
) -> None:
    flag = tmp_path / "code-ran"
    path = saved(tmp_path / "evil.pth", {"model": {}, "config": RunsCode(flag)})
    text = refusal(lambda: read(path))
    assert f"{what} {path}" in text and "refused: a pickle that needs code to load" in text
    assert "posix.mkdir" in text
    assert not flag.exists()


@pytest.mark.parametrize(("read", "what"), READERS)
def test_a_fifo_as_a_weight_file_never_blocks(tmp_path: Path, read: Callable[[Path], Any], what: str) -> None:
    path = tmp_path / "weights.pth"
    os.mkfifo(path)
    try:
        text = refusal(lambda: read(path), seconds=20)
    finally:
        unblock(path)
    assert f"{what} {path}" in text and "is a FIFO (named pipe); expected a regular file" in text


def test_a_directory_as_a_weight_file_is_named(tmp_path: Path) -> None:
    assert "is a directory; expected a regular file" in refusal(lambda: read_stage_two(tmp_path))


# --- 3. the LoRA alpha: option, saved config and malformed configs ---


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN", "0", "-1", "sixteen", "1e999"])
def test_the_lora_alpha_option_must_be_a_finite_positive_number(text: str) -> None:
    import argparse

    parse = VALUE_OPTIONS["lora_alpha"][0]
    with pytest.raises(argparse.ArgumentTypeError, match=f"expected a finite positive number, found '{text}'"):
        parse(text)
    assert parse("16") == 16.0 and parse("0.5") == 0.5


def test_a_non_finite_lora_alpha_option_stops_pytest_at_once(pytester: pytest.Pytester) -> None:
    with pytest.raises(
        pytest.UsageError, match=r"--emogate-lora-alpha.*expected a finite positive number, found 'nan'"
    ):
        pytester.parseconfig("--emogate-lora-alpha=nan")


def with_config(config: Any) -> dict[str, Any]:
    loaded = checkpoint()
    loaded["config"] = config
    return loaded


ALPHA = "config.model.lora_alpha: expected a finite positive number, found"


@pytest.mark.parametrize(
    ("config", "said"),
    [
        *(({"model": {"lora_alpha": value}}, f"{ALPHA} {found}") for value, found in (
            ("sixteen", "'sixteen'"), (math.nan, "nan"), (math.inf, "inf"), (0, "0"), (-16, "-16"), (True, "True"),
            (None, "None"), ([16], "a list"),
        )),
        ({"model": "minigpt_v2"}, "config.model: expected a mapping, found 'minigpt_v2'"),
        ({"model": [1, 2]}, "config.model: expected a mapping, found a list"),
        ("lora_alpha=32", "config: expected a mapping, found 'lora_alpha=32'"),
        (None, "config: expected a mapping, found None"),
    ],
)  # fmt: skip
def test_a_malformed_saved_config_is_named_never_a_silent_fallback(tmp_path: Path, config: Any, said: str) -> None:
    path = saved(tmp_path / "c.pth", with_config(config))
    for read in (read_stage_two, feature_dims):
        text = refusal(lambda read=read: read(path))  # type: ignore[misc]
        assert f"checkpoint {path}" in text and said in text


@pytest.mark.parametrize("config", [{}, {"run": {"seed": 1}}, {"model": {"arch": "minigpt_v2"}}])
def test_only_a_config_without_lora_alpha_falls_back_to_16(tmp_path: Path, config: dict[str, Any]) -> None:
    assert read_stage_two(saved(tmp_path / "c.pth", with_config(config))).lora_alpha(None) == 16.0


@pytest.mark.parametrize(
    ("metadata", "said"),
    [
        ('{"model": {"lora_alpha": "sixteen"}}', "config.model.lora_alpha: expected a finite positive number"),
        ('{"model": {"lora_alpha": NaN}}', "config.model.lora_alpha: expected a finite positive number, found nan"),
        ("[1, 2]", "config: expected a mapping, found a list"),
    ],
)
def test_a_malformed_safetensors_config_is_named(tmp_path: Path, metadata: str, said: str) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "c.safetensors"
    save_file(checkpoint()["model"], str(path), metadata={"config": metadata})
    assert said in refusal(lambda: read_stage_two(path))


@pytest.mark.parametrize("alpha", [math.nan, math.inf, 0.0, -1.0])
def test_a_bad_lora_alpha_setting_stops_the_load_before_any_model_is_built(alpha: float) -> None:
    files = ModelFiles(CKPT, TINY / "llama", VIT, lora_alpha=alpha)
    text = refusal(lambda: load_emotion_llama(files, CPU), seconds=10)
    assert "--emogate-lora-alpha: expected a finite positive number" in text


# --- 4. tensors of the wrong rank where a weight belongs ---


@pytest.mark.parametrize(
    ("key", "tensor", "said"),
    [
        ("feats_llama_proj1.weight", torch.tensor(1.0), "feats_llama_proj1.weight: expected a 2-D tensor [out, in], "
                                                        "found shape [] (a scalar)"),
        ("feats_llama_proj3.weight", torch.zeros(64), "feats_llama_proj3.weight: expected a 2-D tensor [out, in], "
                                                      "found shape [64]"),
        ("llama_proj.weight", torch.zeros(64, 352, 1), "llama_proj.weight: expected a 2-D tensor [out, in], "
                                                       "found shape [64, 352, 1]"),
        ("cls_tk_llama_proj.bias", torch.tensor(0.0), "cls_tk_llama_proj.bias: expected a 1-D tensor [out], "
                                                      "found shape [] (a scalar)"),
        (LORA_A, torch.tensor(0.0), f"{LORA_A}: expected a 2-D tensor [rank, in], found shape [] (a scalar)"),
        (LORA_A.replace("lora_A", "lora_B"), torch.zeros(64), "expected a 2-D tensor [out, rank], found shape [64]"),
        ("ln_vision.weight", torch.tensor(1.0), "ln_vision.weight: expected a 1-D tensor [width], found shape []"),
    ],
)  # fmt: skip
def test_a_checkpoint_tensor_of_the_wrong_rank_is_named(tmp_path: Path, key: str, tensor: Any, said: str) -> None:
    loaded = checkpoint()
    loaded["model"][key] = tensor
    path = saved(tmp_path / "c.pth", loaded)
    for read in (read_stage_two, feature_dims):
        text = refusal(lambda read=read: read(path))  # type: ignore[misc]
        assert f"checkpoint {path}" in text and said in text


@pytest.mark.parametrize(
    ("key", "tensor", "said"),
    [
        ("cls_token", torch.tensor(1.0), "cls_token: expected a 3-D tensor [1, 1, width], found shape [] (a scalar)"),
        ("patch_embed.proj.weight", torch.zeros(88), "patch_embed.proj.weight: expected a 4-D tensor "
                                                     "[width, 3, patch, patch], found shape [88]"),
        ("blocks.0.mlp.fc1.weight", torch.tensor(0.0), "blocks.0.mlp.fc1.weight: expected a 2-D tensor [mlp, width], "
                                                       "found shape [] (a scalar)"),
        ("pos_embed", torch.zeros(17, 88), "pos_embed: expected a 3-D tensor [1, positions, width], found shape "
                                           "[17, 88]"),
        ("blocks.1.attn.qkv.weight", torch.zeros(3, 88), "blocks.1.attn.qkv.weight: expected shape [264, 88], "
                                                         "found [3, 88]"),
        ("pos_embed", torch.zeros(1, 18, 88), "pos_embed: expected 1 + a square number of positions, found 18"),
    ],
)  # fmt: skip
def test_an_eva_tensor_of_the_wrong_shape_is_named(tmp_path: Path, key: str, tensor: Any, said: str) -> None:
    state = torch.load(VIT, weights_only=True)
    state[key] = tensor
    path = saved(tmp_path / "eva.pth", state)
    text = refusal(lambda: read_vit(path))
    assert f"EVA-ViT weights {path}" in text and said in text


def test_llama_weights_of_the_wrong_rank_are_named(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = llama_copy(tmp_path)
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["model.embed_tokens.weight"] = torch.zeros(600)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    text = refusal(lambda: load_llama(folder, CPU))
    assert "model.embed_tokens.weight" in text and "found shape [600]" in text


# --- the whole run: found at the preflight, before any model loads, exit 4 ---


@pytest.mark.slow
def test_the_model_files_preflight_loads_no_language_model() -> None:
    code = (
        "import sys; from pathlib import Path; from pytest_emogate.model import ModelFiles, check_model_files; "
        f"tiny = Path({str(TINY)!r}); "
        "stage, vit, sizes = check_model_files(ModelFiles(tiny / 'checkpoint_best.pth', tiny / 'llama', "
        "tiny / 'eva_vit_g.pth')); "
        "print(stage.feature_dims, vit.width, sizes.hidden); "
        "print(sorted(m for m in ('transformers', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["(32, 32, 32) 88 64", "[]"]


def model_args(tmp_path: Path, **paths: Path) -> list[str]:
    given = {"ckpt": CKPT, "llama": TINY / "llama", "vit": VIT, **paths}
    return [
        *(f"--emogate-{name}={path}" for name, path in given.items()),
        f"--emogate-data={TINY / 'data'}", "--emogate-device=cpu", f"--emogate-thresholds={TINY / 'thresholds.yaml'}",
        "--emogate-no-history", f"--emogate-cache={tmp_path / 'cache'}", "-p", "no:cacheprovider",
    ]  # fmt: skip


NO_MODEL_LOADS = """
import pytest_emogate.model


def load_emotion_llama(*args, **kwargs):
    raise RuntimeError("a model was loaded: the preflight missed the problem")


pytest_emogate.model.load_emotion_llama = load_emotion_llama
"""
"""A conftest for the runs below: a model load, which the preflight should have made unnecessary, fails."""


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", ["config", "tokenizer", "short-tokenizer", "lfs-checkpoint", "saved-alpha", "vit-rank", "lora-vs-llama"]
)
def test_model_file_problems_stop_the_run_at_the_preflight(pytester: pytest.Pytester, case: str) -> None:
    tmp_path = pytester.path
    paths: dict[str, Path] = {}
    if case in ("config", "tokenizer", "short-tokenizer", "lora-vs-llama"):
        paths["llama"] = llama_copy(tmp_path)
    if case == "short-tokenizer":
        with_vocab(paths["llama"], 640)
        said = "tokenizer.model has 600 pieces, but config.json vocab_size is 640: the model can emit 40 ids"
    elif case == "config":
        edit_config(paths["llama"], hidden_size=128)
        said = "hidden_size is 128, but the weights have 64"
    elif case == "tokenizer":
        (paths["llama"] / "tokenizer.model").write_bytes(b"not a model")
        said = "not a sentencepiece model"
    elif case == "lfs-checkpoint":
        paths["ckpt"] = tmp_path / "c.pth"
        paths["ckpt"].write_bytes(LFS_POINTER)
        said = "a Git LFS pointer, not the weights: run `git lfs pull`"
    elif case == "saved-alpha":
        paths["ckpt"] = saved(tmp_path / "c.pth", with_config({"model": {"lora_alpha": "sixteen"}}))
        said = "config.model.lora_alpha: expected a finite positive number, found 'sixteen'"
    elif case == "vit-rank":
        state = torch.load(VIT, weights_only=True)
        state["cls_token"] = torch.tensor(0.0)
        paths["vit"] = saved(tmp_path / "eva.pth", state)
        said = "cls_token: expected a 3-D tensor [1, 1, width], found shape [] (a scalar)"
    else:
        shutil.rmtree(paths["llama"])
        shutil.copytree(TINY / "llama", paths["llama"])
        edit_config(paths["llama"], num_hidden_layers=1)
        from safetensors.torch import load_file, save_file

        weights = paths["llama"] / "model.safetensors"
        tensors = {key: value for key, value in load_file(str(weights)).items() if ".layers.1." not in key}
        save_file(tensors, str(weights), metadata={"format": "pt"})
        said = "unexpected key llama_model.base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"
    pytester.makeconftest(NO_MODEL_LOADS)
    result = pytester.runpytest_subprocess(*model_args(tmp_path, **paths), timeout=300)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert said in output
    assert "Traceback" not in output and "inference:" not in output
