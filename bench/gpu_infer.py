"""GPU check of the inference path at the real shapes, with random weights, in one command under 10 minutes.

    python bench/gpu_infer.py                    # on a GPU: Llama-2-7B + EVA-ViT-g/448 + LoRA r=64, 834 samples
    python bench/gpu_infer.py --tiny             # the same code at toy shapes, on CPU, in well under a minute

Builds the model directly on the device without running weight initialisation (then fills it with small
random values), makes 834 synthetic samples whose prompts have about 337 positions (8 + 260 + ~69, as spec
§5.3), and times: the model build; the original-style loop (batch 1, Hugging Face `generate`, unmerged LoRA)
on a subset, each sample stopping after --answer-tokens as a real "label</s>" answer does, plus one sample
left to run the original's full 500 tokens; and our batched path on all samples, at --answer-tokens and at
the default cap (every row runs to the cap: random weights never say EOS). Prints a table and appends it to
bench/RESULTS.md with the card, the command and the date. Random weights say nothing about accuracy: the
answers of the two paths are compared for agreement only.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_emogate.inference import generate, prompt_embeddings
from pytest_emogate.model.emotion_llama import EmotionLlama
from pytest_emogate.model.eva import EvaVit
from pytest_emogate.model.prompt import PromptIds

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
REAL = {"hidden": 4096, "layers": 32, "heads": 32, "mlp": 11008, "vocab": 32000, "width": 1408, "patch": 14,
        "vit_mlp": 6144, "depth": 39, "head_dim": 88, "image": 448, "feature": 1024, "r": 64}  # fmt: skip
TINY = {"hidden": 64, "layers": 2, "heads": 4, "mlp": 172, "vocab": 600, "width": 88, "patch": 56,
        "vit_mlp": 384, "depth": 2, "head_dim": 88, "image": 448, "feature": 32, "r": 8}  # fmt: skip


def build(shapes: dict[str, int], device: torch.device) -> EmotionLlama:
    """Emotion-LLaMA at `shapes`, allocated on `device` with no init pass, then filled with N(0, 0.02)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.modeling_utils import no_init_weights

    half = torch.float16 if device.type == "cuda" else torch.float32
    config = LlamaConfig(
        vocab_size=shapes["vocab"], hidden_size=shapes["hidden"], intermediate_size=shapes["mlp"],
        num_hidden_layers=shapes["layers"], num_attention_heads=shapes["heads"], rms_norm_eps=1e-5,
        max_position_embeddings=4096, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    config._attn_implementation = "eager"
    with torch.device(device), no_init_weights():
        llama = LlamaForCausalLM._from_config(config, dtype=half)  # fp16 from the start: no fp32 copy
        vit = EvaVit(shapes["width"], shapes["patch"], shapes["vit_mlp"], shapes["depth"],
                     shapes["width"] // shapes["head_dim"], shapes["image"])  # fmt: skip
        width, hidden, feature = shapes["width"], shapes["hidden"], shapes["feature"]
        projections = {"llama_proj": nn.Linear(4 * width, hidden), "cls_tk_llama_proj": nn.Linear(width, hidden)}
        projections |= {f"feats_llama_proj{i}": nn.Linear(feature, hidden) for i in (1, 2, 3)}
    for module in vit.modules():  # the original's fp16 Conv/Linear, fp32 rest (spec §1.5)
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            module.to(half)
    _fill(llama)
    _fill(vit)
    for layer in projections.values():
        _fill(layer)
    lora = LoraConfig(r=shapes["r"], lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                      bias="none", task_type="CAUSAL_LM")  # fmt: skip
    llm = get_peft_model(llama, lora)
    for name, param in llm.named_parameters():
        if ".lora_B." in name:
            param.data.normal_(0, 0.02)  # live adapters: B starts at zero in peft
    model = EmotionLlama(vit, llm, projections, nn.LayerNorm(width, eps=1e-5)).to(device)
    return model.eval().requires_grad_(False)


def _fill(module: nn.Module) -> None:
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "layernorm.weight")):
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02)


def synthetic_prompts(count: int, vocab: int) -> list[PromptIds]:
    """8 ids before the block (two BOS), 55-83 after: about 337 positions with the 260-token block."""
    generator = torch.Generator().manual_seed(834)
    prompts = []
    for _ in range(count):
        after = int(torch.randint(55, 84, (1,), generator=generator))
        ids = torch.randint(3, vocab, (6 + after,), generator=generator).tolist()
        prompts.append(PromptIds((1, 1, *ids[:6]), tuple(ids[6:])))
    return prompts


class Inputs:
    """Per-sample random image and features, seeded by the sample index so every path sees the same inputs."""

    def __init__(self, shapes: dict[str, int], device: torch.device) -> None:
        self.shapes, self.device = shapes, device

    def __call__(self, indices: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        images, features = [], []
        for index in indices:
            generator = torch.Generator(self.device).manual_seed(index)
            size, feature = self.shapes["image"], self.shapes["feature"]
            images.append(torch.randn(3, size, size, generator=generator, device=self.device))
            features.append(torch.randn(3, feature, generator=generator, device=self.device))
        stacked = torch.stack(features)
        return torch.stack(images), [stacked[:, slot] for slot in range(3)]


def original_loop(model: EmotionLlama, prompts: list[PromptIds], inputs: Inputs, new_tokens: int) -> list[tuple]:
    """The original's way: one sample at a time through Hugging Face generate, under autocast on CUDA."""
    answers = []
    with torch.inference_mode(), model.autocast():
        for index, prompt in enumerate(prompts):
            images, features = inputs([index])
            embeds = prompt_embeddings(model, prompt, model.multimodal_block(images, features)[0])[None]
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
            out = model.llm.generate(
                inputs_embeds=embeds, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                temperature=None, top_p=None, eos_token_id=2, pad_token_id=0,
            )  # fmt: skip
            answers.append(tuple(out[0].tolist()))
    return answers


def timed(step: str, rows: list[tuple[str, str]], action, device: torch.device):
    """Run `action`, record its wall time under `step` (synchronising CUDA), and return its result."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = action()
    if device.type == "cuda":
        torch.cuda.synchronize()
    rows.append((step, f"{time.perf_counter() - started:.2f}"))
    print(f"{step}: {rows[-1][1]} s", flush=True)
    return result


def main(argv: list[str]) -> int:
    """Parse options, run every timing, print the table and append it to RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="toy shapes (runs on CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--samples", type=int, default=834)
    parser.add_argument("--subset", type=int, default=24, help="samples for the original-style loop")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--answer-tokens", type=int, default=2, help="a real answer: the label and </s>")
    parser.add_argument("--cap", type=int, default=32, help="the default --emogate-max-new-tokens")
    parser.add_argument("--long-tokens", type=int, default=500, help="the original's cap, timed on one sample")
    parser.add_argument("--no-append", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    device, shapes = torch.device(args.device), TINY if args.tiny else REAL
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    rows: list[tuple[str, str]] = []
    model = timed("build model on the device (no init pass)", rows, lambda: build(shapes, device), device)
    prompts, inputs = synthetic_prompts(args.samples, shapes["vocab"]), Inputs(shapes, device)
    generate(model, prompts[:2], inputs, 2, 2)  # warm-up: kernels, allocator
    subset = prompts[: args.subset]
    loop = timed(f"original loop, batch 1, {len(subset)} samples x {args.answer_tokens} tokens", rows,
                 lambda: original_loop(model, subset, inputs, args.answer_tokens), device)  # fmt: skip
    per_sample = float(rows[-1][1]) / max(len(subset), 1)
    rows.append(
        (f"  -> per sample; projected for {len(prompts)}", f"{per_sample:.3f}; {per_sample * len(prompts):.1f}")
    )
    timed(f"original loop, batch 1, 1 sample x {args.long_tokens} tokens", rows,
          lambda: original_loop(model, prompts[:1], inputs, args.long_tokens), device)  # fmt: skip
    ours = timed(f"batched, batch {args.batch_size}, {len(prompts)} samples, cap {args.answer_tokens}", rows,
                 lambda: generate(model, prompts, inputs, args.batch_size, args.answer_tokens), device)  # fmt: skip
    timed(f"batched, batch {args.batch_size}, {len(prompts)} samples, cap {args.cap}", rows,
          lambda: generate(model, prompts, inputs, args.batch_size, args.cap), device)  # fmt: skip
    agree = sum(a == g.ids for a, g in zip(loop, ours[: len(loop)], strict=True))
    rows.append(("answers equal to batch 1 (subset)", f"{agree}/{len(loop)}"))
    rows.append(("non-finite rows (batched)", str(sum(not g.finite for g in ours))))
    table = _markdown(rows, card, argv)
    print(table)
    if not args.no_append:
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write("\n" + table)
    return 0


def _markdown(rows: list[tuple[str, str]], card: str, argv: list[str]) -> str:
    import peft
    import transformers

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        f"### gpu_infer on {card}, {date}",
        "",
        f"`python bench/gpu_infer.py {' '.join(argv)}`: torch {torch.__version__}, transformers "
        f"{transformers.__version__}, peft {peft.__version__}",
        "",
        "| step | seconds |",
        "|---|---|",
    ]
    return "\n".join(head + [f"| {step} | {value} |" for step, value in rows]) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
