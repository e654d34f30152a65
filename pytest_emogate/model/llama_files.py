"""The Llama folder checked before transformers opens it: its files, config.json's sizes against the weights,
and the tokenizer.

transformers reads whatever the folder holds: a FIFO blocks it, `/dev/zero` never ends, a config.json whose
hidden_size disagrees with the weights is a traceback from deep inside load_state_dict, and one with more layers
than the weights quietly initialises the rest at random. Here each file transformers would read must be a
regular file of bounded size (the JSON ones valid JSON objects), every weight tensor's shape is compared with the
shape config.json gives it (from the safetensors headers alone: no tensor is read), and tokenizer.model must be a
sentencepiece model whose pieces all have an embedding and which, with the added tokens, can decode every id the
model can emit (a shorter tokenizer fails only when the model first emits such an id, mid-inference). Each
problem is a UsageError naming the file, and for config.json the key with both sizes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_emogate.files import FileProblem, MiB, check_regular, read_checked, usage_error
from pytest_emogate.model.weight_files import looks_like, read_weights, safetensors_shapes, text_or_bytes

JSON_FILES = ("config.json", "generation_config.json", "tokenizer_config.json", "special_tokens_map.json",
              "added_tokens.json", "model.safetensors.index.json", "pytorch_model.bin.index.json")  # fmt: skip
"""The JSON files transformers reads from the folder when they are there."""
OTHER_FILES = ("tokenizer.json",)
JSON_LIMIT = 4 * MiB
TOKENIZER_LIMIT = 64 * MiB
SIZES = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
         "num_attention_heads": 32}  # fmt: skip
"""The sizes config.json must give, with the defaults transformers' LlamaConfig applies when it leaves one out."""
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
"""The weight files, in the order transformers looks for them."""
_LAYER = re.compile(r"model\.layers\.(\d+)\.")


@dataclass(frozen=True)
class Dim:
    """One dimension of a weight tensor as config.json gives it: the key(s) it comes from and its size."""

    label: str
    size: int
    formula: str = ""

    def said(self) -> str:
        """`hidden_size is 64`, or `num_attention_heads × head_dim is 4 × 16 = 64`."""
        return f"{self.label} is {self.formula + ' = ' if self.formula else ''}{self.size}"


@dataclass(frozen=True)
class LlamaSizes:
    """The sizes config.json gives the model, and the weight tensors they imply."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    attention_bias: bool
    mlp_bias: bool

    def shapes(self, layers: int) -> dict[str, tuple[Dim, ...]]:
        """Each tensor LlamaForCausalLM loads, for the first `layers` layers, as dimensions of config.json."""
        vocab, hidden = Dim("vocab_size", self.vocab), Dim("hidden_size", self.hidden)
        mlp = Dim("intermediate_size", self.intermediate)
        q = Dim("num_attention_heads × head_dim", self.heads * self.head_dim, f"{self.heads} × {self.head_dim}")
        kv = Dim("num_key_value_heads × head_dim", self.kv_heads * self.head_dim, f"{self.kv_heads} × {self.head_dim}")
        shapes: dict[str, tuple[Dim, ...]] = {
            "model.embed_tokens.weight": (vocab, hidden),
            "model.norm.weight": (hidden,),
        }
        if not self.tied:
            shapes["lm_head.weight"] = (vocab, hidden)
        layer: dict[str, tuple[Dim, ...]] = {
            "input_layernorm.weight": (hidden,), "post_attention_layernorm.weight": (hidden,),
            "self_attn.q_proj.weight": (q, hidden), "self_attn.k_proj.weight": (kv, hidden),
            "self_attn.v_proj.weight": (kv, hidden), "self_attn.o_proj.weight": (hidden, q),
            "mlp.gate_proj.weight": (mlp, hidden), "mlp.up_proj.weight": (mlp, hidden),
            "mlp.down_proj.weight": (hidden, mlp),
        }  # fmt: skip
        if self.attention_bias:
            outputs = {"q_proj": q, "k_proj": kv, "v_proj": kv, "o_proj": hidden}
            layer |= {f"self_attn.{name}.bias": (out,) for name, out in outputs.items()}
        if self.mlp_bias:
            layer |= {"mlp.gate_proj.bias": (mlp,), "mlp.up_proj.bias": (mlp,), "mlp.down_proj.bias": (hidden,)}
        for i in range(layers):
            shapes |= {f"model.layers.{i}.{name}": dims for name, dims in layer.items()}
        return shapes


def check_llama_folder(path: Path) -> LlamaSizes:
    """Check the Llama folder as a whole (its files, config.json against the weights, the tokenizer) without
    loading a model; its sizes. A UsageError naming the file otherwise."""
    if not path.is_dir():
        found = "is not a folder" if path.exists() else "does not exist"
        raise usage_error(f"Llama directory {path}", [f"{found} (expected a local Hugging Face model folder)"])
    documents = _json_files(path)
    sizes = _sizes(path / "config.json", documents["config.json"])
    _check_weights(path, sizes, documents)
    check_tokenizer(path / "tokenizer.model", sizes.vocab, added_ids(documents))
    return sizes


def added_ids(documents: Mapping[str, Any]) -> set[int]:
    """The ids of the tokens added beside the sentencepiece pieces: tokenizer_config.json's added_tokens_decoder
    and added_tokens.json (ids the tokenizer decodes without a piece)."""
    decoder = documents.get("tokenizer_config.json", {}).get("added_tokens_decoder")
    ids = {int(key) for key in decoder if key.isdigit()} if isinstance(decoder, dict) else set()
    added = documents.get("added_tokens.json", {})
    return ids | {value for value in added.values() if isinstance(value, int) and not isinstance(value, bool)}


def check_tokenizer(path: Path, vocab: int, added: set[int] | frozenset[int] = frozenset()) -> None:
    """tokenizer.model must be a sentencepiece model with at most `vocab` pieces (a piece past the vocabulary
    would be a token id without an embedding) and, with the `added` token ids, a token for every id below
    `vocab`: the model may emit any of them, and one the tokenizer cannot decode would end the inference."""
    import sentencepiece

    try:
        data = read_checked(path, TOKENIZER_LIMIT)
    except FileProblem as problem:
        raise usage_error(f"Llama tokenizer {path}", [problem.found]) from None
    seen = looks_like(data[:1024], len(data), "the tokenizer")
    if seen is not None:
        raise usage_error(f"Llama tokenizer {path}", [seen])
    try:
        pieces = sentencepiece.SentencePieceProcessor(model_proto=data).get_piece_size()
    except (RuntimeError, OSError, ValueError, TypeError):
        pieces = 0
    if pieces == 0:
        raise usage_error(f"Llama tokenizer {path}", [text_or_bytes(data[:1024], "a sentencepiece model")])
    if pieces > vocab:
        found = f"tokenizer.model has {pieces} pieces, but config.json vocab_size is {vocab}"
        raise usage_error(f"Llama tokenizer {path}", [f"{found}: ids past {vocab - 1} have no embedding"])
    unknown = [token for token in range(pieces, vocab) if token not in added]
    if unknown:
        ids = f"id {unknown[0]}" if len(unknown) == 1 else f"{len(unknown)} ids ({unknown[0]} to {unknown[-1]})"
        raise usage_error(
            f"Llama tokenizer {path}",
            [f"tokenizer.model has {pieces} pieces, but config.json vocab_size is {vocab}: the model can emit {ids} "
             "that the tokenizer cannot decode (use the tokenizer that belongs to these weights)"],
        )  # fmt: skip


def _json_files(folder: Path) -> dict[str, Any]:
    """Every JSON file of the folder that is there (config.json and tokenizer.model must be), parsed; the
    other files transformers may open checked to be regular files."""
    problems, documents = [], {}
    for name in (*JSON_FILES, "tokenizer.model", *OTHER_FILES):
        path = folder / name
        if not path.exists() and not path.is_symlink():
            if name in ("config.json", "tokenizer.model"):
                problems.append(f"missing file {name}")
            continue
        try:
            if name not in JSON_FILES:
                check_regular(path)
                continue
            document = json.loads(read_checked(path, JSON_LIMIT).decode("utf-8-sig"))
        except FileProblem as problem:
            problems.append(f"{path}: {problem.found}")
            continue
        except UnicodeDecodeError:
            problems.append(f"{path}: expected UTF-8 JSON, found undecodable bytes")
            continue
        except json.JSONDecodeError as error:
            problems.append(f"{path}: line {error.lineno} column {error.colno}: expected JSON, {error.msg}")
            continue
        if not isinstance(document, dict):
            problems.append(f"{path}: expected a JSON object, found {type(document).__name__}")
            continue
        documents[name] = document
    if problems:
        raise usage_error(f"Llama directory {folder}", problems)
    return documents


def _sizes(path: Path, config: dict[str, Any]) -> LlamaSizes:
    """The sizes of config.json, each a positive whole number (its flags true or false)."""
    problems = []

    def whole(key: str, default: int | None) -> int:
        value = config.get(key, default)
        if value is None and default is None:
            return 0
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        problems.append(f"{key}: expected a positive whole number, found {value!r}"[:200])
        return 1

    def flag(key: str) -> bool:
        value = config.get(key, False)
        if not isinstance(value, bool):
            problems.append(f"{key}: expected true or false, found {value!r}"[:200])
        return value is True

    vocab, hidden, intermediate, layers, heads = (whole(key, default) for key, default in SIZES.items())
    kv_heads = whole("num_key_value_heads", None) or heads
    head_dim = whole("head_dim", None)
    if not head_dim and not problems and hidden % heads:
        problems.append(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads} (and no head_dim)")
    if not problems and heads % kv_heads:
        problems.append(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")
    tied, attention_bias, mlp_bias = flag("tie_word_embeddings"), flag("attention_bias"), flag("mlp_bias")
    if problems:
        raise usage_error(f"Llama config {path}", problems)
    head_dim = head_dim or hidden // heads
    return LlamaSizes(vocab, hidden, intermediate, layers, heads, kv_heads, head_dim, tied, attention_bias, mlp_bias)


def _check_weights(folder: Path, sizes: LlamaSizes, documents: dict[str, Any]) -> None:
    """Every tensor config.json implies must be in the weights with the shape it gives; layers must match."""
    shapes = _weight_shapes(folder, documents)
    if not any(key.startswith("model.") for key in shapes):  # saved from LlamaModel: no "model." prefix
        shapes = {("" if key.startswith("lm_head.") else "model.") + key: value for key, value in shapes.items()}
    found_layers = 1 + max((int(match.group(1)) for key in shapes if (match := _LAYER.match(key))), default=-1)
    problems = []
    if found_layers != sizes.layers:
        held = f"model.layers.0 to model.layers.{found_layers - 1}" if found_layers else "no model.layers.N tensors"
        problems.append(f"num_hidden_layers is {sizes.layers}, but the weights hold {found_layers} layers ({held})")
    disagree: dict[str, str] = {}
    missing = []
    for key, dims in sizes.shapes(min(found_layers, sizes.layers)).items():
        if key not in shapes:
            missing.append(key)
            continue
        shape, file = shapes[key]
        expected = f"[{', '.join(dim.label for dim in dims)}] = {[dim.size for dim in dims]}"
        if len(shape) != len(dims):
            disagree.setdefault(key, f"{key} in {file}: expected shape {expected}, found shape {shape}")
            continue
        for dim, size in zip(dims, shape, strict=True):
            if dim.size != size:
                disagree.setdefault(
                    dim.label, f"{dim.said()}, but the weights have {size} ({key} is {shape} in {file})"
                )
    problems += disagree.values()
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        problems.append(f"the weights lack {', '.join(missing[:3])}{more}, which config.json implies")
    if problems:
        raise usage_error(f"Llama config {folder / 'config.json'}", problems)


def _weight_shapes(folder: Path, documents: dict[str, Any]) -> dict[str, tuple[list[int], str]]:
    """Each tensor's shape and the file holding it, from the weight files transformers would load."""
    name = next((name for name in WEIGHTS if (folder / name).exists() or (folder / name).is_symlink()), None)
    if name is None:
        raise usage_error(f"Llama directory {folder}", [f"no weights: expected one of {', '.join(WEIGHTS)}"])
    files = [name]
    if name.endswith(".index.json"):
        weight_map = documents[name].get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(file, str) for file in weight_map.values()):
            raise usage_error(f"Llama weights index {folder / name}", ["expected a weight_map of tensor -> file"])
        files = sorted(set(weight_map.values()))
        outside = [file for file in files if Path(file).name != file]
        if outside:
            raise usage_error(
                f"Llama weights index {folder / name}", [f"names a file outside the folder: {outside[0]}"]
            )
    shapes: dict[str, tuple[list[int], str]] = {}
    for file in files:
        path = folder / file
        if file.endswith(".safetensors"):
            found = safetensors_shapes(path, "Llama weights")
        else:
            found = {key: list(value.shape) for key, value in read_weights(path, "Llama weights")[0].items()
                     if hasattr(value, "shape")}  # fmt: skip
        shapes |= {key: (shape, file) for key, shape in found.items()}
    return shapes


def lora_problems(lora: Mapping[tuple[int, str, str], tuple[Any, Any]], sizes: LlamaSizes) -> list[str]:
    """The checkpoint's LoRA pairs against the Llama modules they adapt (shapes from config.json): each pair
    must adapt a module of the model, with A [rank, in] and B [out, rank]; each adapted module of every layer
    must have its pair, as peft gives every layer the targets."""
    modules = {}
    for key, dims in sizes.shapes(sizes.layers).items():
        match = re.fullmatch(r"model\.layers\.(\d+)\.(\w+)\.(\w+)\.weight", key)
        if match and len(dims) == 2:
            modules[(int(match.group(1)), match.group(2), match.group(3))] = (dims[0].size, dims[1].size)
    targets = {target for _, _, target in lora}
    name = "llama_model.base_model.model.model.layers.{}.{}.{}.lora_{}.weight"
    problems = [f"missing key {name.format(*slot, half)}" for slot in sorted(modules) if slot[2] in targets
                and slot not in lora for half in "AB"]  # fmt: skip
    for slot, (a, b) in sorted(lora.items()):
        if slot not in modules:
            problems.append(f"unexpected key {name.format(*slot, 'A')} (the Llama model has no such LoRA module)")
            continue
        out, inputs = modules[slot]
        if a.shape[1] != inputs:
            problems.append(
                f"{name.format(*slot, 'A')}: expected shape [{a.shape[0]}, {inputs}], found {list(a.shape)}"
            )
        if b.shape[0] != out:
            problems.append(f"{name.format(*slot, 'B')}: expected shape [{out}, {b.shape[1]}], found {list(b.shape)}")
    return problems
