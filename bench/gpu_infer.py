"""GPU check of the inference path at the real shapes, with random weights, in one command under 10 minutes.

    python bench/gpu_infer.py                    # on a GPU: Llama-2-7B + EVA-ViT-g/448 + LoRA r=64, 834 samples
    python bench/gpu_infer.py --tiny             # the same code at toy shapes, on CPU, in about a minute
    python bench/gpu_infer.py --probe 64         # also --emogate-probe's question: batched vs batch 1, fp16

Builds the model directly on the device without running weight initialisation (then fills it with small
random values) and makes 834 synthetic samples whose prompts have about 337 positions (8 + 260 + ~69, as spec
§5.3). Random weights would never say EOS, so a few embedding and lm_head rows are set to make the answers
look like a trained model's: a prompt ending in marker token k is answered "label_k </s>" (2 tokens), except
for --ramble of the samples, whose prompts end in an ordinary token and which run to the cap (in score mode
they fall back to generation), as a rare rambling answer does. It times: the model build; the original-style
loop (batch 1, Hugging Face `generate` with up to 500 new tokens, unmerged LoRA) on a subset, projected to 834;
one rambling sample through that loop (the original's 500 tokens); and the whole 834-sample inference of our
path in generation mode and in score mode, with the LoRA unmerged and merged (targets on one H100: generation
<= 25 s, scoring <= 15 s). Answers are compared for agreement: batched vs batch 1 (subset), score vs
generation, merged vs unmerged. With --probe N, N samples (stratified by their answer, as --emogate-probe picks)
are answered again at batch size 1 through the gate's own generation with the LoRA unmerged, in fp16 under
autocast on CUDA as the original: how many answers equal the batched ones, and how far the batched first-token
logits are from the batch-1 logits (the answers' margins are wide by construction, so the logits say more than
the answers). Inputs are made on the device: the frame decoding and resizing of a real run
(DataLoader workers) are not in these figures. Prints a table and appends it to bench/RESULTS.md with the
card, the command and the date. Random weights say nothing about accuracy.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_emogate.inference.generate import (
    Generation,
    batch_embeddings,
    computing,
    generate,
    left_pad,
    positions_from_mask,
    prefill_mask,
    prompt_embeddings,
)
from pytest_emogate.inference.probe import stratified_pick
from pytest_emogate.inference.score import score
from pytest_emogate.model.emotion_llama import EmotionLlama
from pytest_emogate.model.eva import EvaVit
from pytest_emogate.model.prompt import EOS_ID, PromptIds

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
REAL = {"hidden": 4096, "layers": 32, "heads": 32, "mlp": 11008, "vocab": 32000, "width": 1408, "patch": 14,
        "vit_mlp": 6144, "depth": 39, "head_dim": 88, "image": 448, "feature": 1024, "r": 64}  # fmt: skip
TINY = {"hidden": 64, "layers": 2, "heads": 4, "mlp": 172, "vocab": 600, "width": 88, "patch": 56,
        "vit_mlp": 384, "depth": 2, "head_dim": 88, "image": 448, "feature": 32, "r": 8}  # fmt: skip
LABEL_IDS = (100, 101, 102, 103, 104, 105)  # six "label" tokens, below every vocabulary size used here
MARKER_IDS = (200, 201, 202, 203, 204, 205)  # a prompt ending in MARKER_IDS[k] answers LABEL_IDS[k] </s>
RAMBLE_ID, FILLER_ID = 206, 207  # a prompt ending in RAMBLE_ID answers FILLER_ID forever
MARKER_RMS = 400.0  # the marker/label embeddings dwarf what 32 random layers add to the residual (~15 rms)


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


def synthetic_prompts(count: int, vocab: int, ramble: float) -> list[PromptIds]:
    """8 ids before the block (two BOS), 55-83 after: about 337 positions with the 260-token block. The last id
    is a marker: sample i answers label i % 6, or every 1/ramble-th sample rambles."""
    generator = torch.Generator().manual_seed(834)
    ordinary = [i for i in range(3, vocab) if i not in (*MARKER_IDS, *LABEL_IDS, RAMBLE_ID, FILLER_ID)]
    step = round(1 / ramble) if ramble > 0 else 0
    prompts = []
    for index in range(count):
        after = int(torch.randint(55, 84, (1,), generator=generator))
        ids = [ordinary[i % len(ordinary)] for i in torch.randint(0, vocab, (6 + after,), generator=generator).tolist()]
        rambles = step and index % step == step // 2
        ids[-1] = RAMBLE_ID if rambles else MARKER_IDS[index % len(MARKER_IDS)]
        prompts.append(PromptIds((1, 1, *ids[:6]), tuple(ids[6:])))
    return prompts


def shape_answers(model: EmotionLlama, hidden: int) -> None:
    """Make greedy answers look like a trained model's: after marker k the top token is label k, after any
    label it is EOS; after RAMBLE_ID or FILLER_ID it is FILLER_ID. The marker embeddings point along random
    directions u_k, every label embedding along one direction v, the ramble tokens along w, large enough to
    dominate the last hidden state; lm_head row label_k is u_k, row EOS is v, row FILLER_ID is w."""
    generator = torch.Generator().manual_seed(6)
    directions = torch.nn.functional.normalize(torch.randn(len(MARKER_IDS) + 2, hidden, generator=generator), dim=-1)
    *markers, v, w = (direction * MARKER_RMS * hidden**0.5 for direction in directions)
    embed, head = model.decoder.embed_tokens.weight, model.lm_head.weight
    with torch.no_grad():
        for marker, label, u, unit in zip(MARKER_IDS, LABEL_IDS, markers, directions, strict=False):
            embed[marker], embed[label], head[label] = u.to(embed), v.to(embed), unit.to(head)
        embed[RAMBLE_ID], embed[FILLER_ID] = w.to(embed), w.to(embed)
        head[EOS_ID], head[FILLER_ID] = directions[-2].to(head), directions[-1].to(head)


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


def probe(
    model: EmotionLlama, prompts: list[PromptIds], inputs: Inputs, picked: list[int], batch_size: int, cap: int
) -> tuple[list[Generation], float]:
    """The picked samples answered at batch size 1 (as --emogate-probe answers them), and the largest difference
    between their first-token logits in the batches of `batch_size` they were answered in and at batch size 1."""
    answers = generate(model, [prompts[i] for i in picked], lambda rows: inputs([picked[r] for r in rows]), 1, cap)
    worst = 0.0
    with computing(model, 0):
        for start in range(0, len(picked), batch_size):
            rows = picked[start : start + batch_size]
            images, features = inputs(rows)
            embeds = batch_embeddings(model, [prompts[i] for i in rows], images, features)
            batched = first_logits(model, embeds)
            for row, embed in enumerate(embeds):
                worst = max(worst, (first_logits(model, [embed])[0] - batched[row]).abs().max().item())
    return answers, worst


def first_logits(model: EmotionLlama, embeds: list[torch.Tensor]) -> torch.Tensor:
    """The first new token's logits [B, vocab] of a left-padded batch, as the gate's prefill computes them."""
    padded, mask = left_pad(embeds)
    return model.logits(padded, prefill_mask(mask, padded.dtype), positions_from_mask(mask))[:, -1]


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
    parser.add_argument("--cap", type=int, default=32, help="the default --emogate-max-new-tokens")
    parser.add_argument("--long-tokens", type=int, default=500, help="the original's cap")
    parser.add_argument("--ramble", type=float, default=0.01, help="share of samples that ramble to the cap")
    parser.add_argument("--probe", type=int, default=0, metavar="N",
                        help="answer N samples again at batch size 1 (--emogate-probe) and compare")  # fmt: skip
    parser.add_argument("--no-append", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    device, shapes = torch.device(args.device), TINY if args.tiny else REAL
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    rows: list[tuple[str, str]] = []
    model = timed("build model on the device (no init pass)", rows, lambda: build(shapes, device), device)
    shape_answers(model, shapes["hidden"])
    prompts, inputs = synthetic_prompts(args.samples, shapes["vocab"], args.ramble), Inputs(shapes, device)
    chains = [(label,) for label in LABEL_IDS]
    generate(model, prompts[:2], inputs, 2, 2)  # warm-up: kernels, allocator
    score(model, prompts[:2], inputs, 2, 2, chains)
    subset = prompts[: args.subset]
    loop = timed(f"original loop, batch 1, {len(subset)} samples, cap {args.long_tokens}", rows,
                 lambda: original_loop(model, subset, inputs, args.long_tokens), device)  # fmt: skip
    per_sample = float(rows[-1][1]) / max(len(subset), 1)
    rows.append(
        (f"  -> per sample; projected for {len(prompts)}", f"{per_sample:.3f}; {per_sample * len(prompts):.1f}")
    )
    rambler = next((i for i, p in enumerate(prompts) if p.after[-1] == RAMBLE_ID), None)
    if rambler is not None:
        timed(f"original loop, batch 1, 1 rambling sample x {args.long_tokens} tokens", rows,
              lambda: original_loop(model, [prompts[rambler]], inputs, args.long_tokens), device)  # fmt: skip
    runs: dict[str, tuple[list[Generation], int]] = {}
    for merged in (False, True):
        if merged:
            timed("merge the LoRA into the base weights", rows, model.merge_lora, device)
        lora = "merged" if merged else "unmerged"
        runs[f"generate {lora}"] = timed(
            f"generation, batch {args.batch_size}, {len(prompts)} samples, cap {args.cap}, LoRA {lora}", rows,
            lambda: (generate(model, prompts, inputs, args.batch_size, args.cap), 0), device)  # fmt: skip
        runs[f"score {lora}"] = timed(
            f"score mode, batch {args.batch_size}, {len(prompts)} samples, cap {args.cap}, LoRA {lora}", rows,
            lambda: score(model, prompts, inputs, args.batch_size, args.cap, chains), device)  # fmt: skip
        if args.probe and not merged:
            picked = stratified_pick([str(prompt.after[-1]) for prompt in prompts], args.probe)
            single, worst = timed(f"probe: {len(picked)} samples at batch size 1, cap {args.cap}, LoRA unmerged",
                                  rows, partial(probe, model, prompts, inputs, picked, args.batch_size, args.cap),
                                  device)  # fmt: skip
            batched = runs["generate unmerged"][0]
            equal = sum(answer.ids == batched[i].ids for answer, i in zip(single, picked, strict=True))
            rows.append((f"probe: batched answers equal to batch 1 (batch {args.batch_size}, unmerged)",
                         f"{equal}/{len(picked)}"))  # fmt: skip
            rows.append((f"probe: max first-token logit difference, batch {args.batch_size} vs 1", f"{worst:.3g}"))
    generated = runs["generate unmerged"][0]
    ended = sum(g.ids[-1:] == (EOS_ID,) for g in generated)
    rows.append(("answers ending in EOS (generation, unmerged)", f"{ended}/{len(generated)}"))
    agree = sum(a == g.ids for a, g in zip(loop, generated[: len(loop)], strict=True))
    rows.append(("batched answers equal to batch 1 (subset, unmerged)", f"{agree}/{len(loop)}"))
    for name in ("score unmerged", "generate merged", "score merged"):
        same = sum(a.ids == b.ids for a, b in zip(runs[name][0], generated, strict=True))
        rows.append((f"{name}: answers equal to generation unmerged", f"{same}/{len(generated)}"))
    for name in ("score unmerged", "score merged"):
        rows.append((f"{name}: fell back to generation", str(runs[name][1])))
    rows.append(("non-finite rows (any run)", str(sum(not g.finite for run, _ in runs.values() for g in run))))
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
