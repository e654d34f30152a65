"""CPU ratios on the tiny model: the original-style loop against the default path, same answers, in one run.

    python bench/cpu_infer.py                 # all 834 samples of fixtures/tiny, every path; appends to RESULTS.md
    python bench/cpu_infer.py --samples 100 --no-append      # a quick look

The original-style loop is the original evaluation's way on this model: one sample at a time, in input order,
the frame preprocessed with the straightforward float32 formula (ToTensor + Normalize per pixel), the prompt
tokenized, Hugging Face `generate` with up to 500 new tokens (it stops at EOS), the LoRA unmerged, no workers.
The model is loaded once for it, and `run_inference` loads its own for each other path: model loads are
timed apart and not in the per-sample figures. The other paths are `run_inference` with the default settings
(batch 16, cap 32, no workers: a thread reads the next batch while the model computes) and with one change each:
score mode, merged LoRA, both, a DataLoader worker process instead of the reading thread.
Every path's answers are compared with the original loop's, text and token count. Prints a table and appends
it to bench/RESULTS.md with the machine, the command and the date; the machine's load average is printed with
it, since a CPU shared with other work makes every figure slower and noisier.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_emogate.data import load_test3, prompt_sentence, read_features, read_frame
from pytest_emogate.data.image import CLIP_MEAN, CLIP_STD
from pytest_emogate.inference.generate import prompt_embeddings
from pytest_emogate.inference.run import run_inference
from pytest_emogate.inference.settings import InferenceSettings
from pytest_emogate.model import ModelFiles, answer_text, load_emotion_llama, tokenize_prompt

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "fixtures" / "tiny"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SETTINGS = InferenceSettings(TINY / "checkpoint_best.pth", TINY / "llama", TINY / "eva_vit_g.pth")
VARIANTS: dict[str, dict[str, Any]] = {
    "default (batch 16, generate)": {},
    "score mode": {"mode": "score"},
    "merged LoRA": {"merge_lora": True},
    "score mode + merged LoRA": {"mode": "score", "merge_lora": True},
    "default + 1 DataLoader worker": {"workers": 1},
}
Answer = tuple[str, object]  # the answer text and its token count
STAGES = (
    "read the frame (+ bicubic resize) and features",
    "ToTensor + Normalize",
    "tokenize the prompt",
    "EVA-ViT + projections",
    "Llama: prefill + decoding",
)


def straightforward_image(image: Image.Image, size: int) -> np.ndarray:
    """ToTensor + Normalize per pixel in float32, as torchvision computes them (what the original ran)."""
    resized = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    pixels = np.asarray(resized, dtype=np.uint8).astype(np.float32) / np.float32(255)
    mean, std = np.asarray(CLIP_MEAN, dtype=np.float32), np.asarray(CLIP_STD, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


def original_loop(samples: list, max_new_tokens: int) -> tuple[list[Answer], float, float, dict[str, float]]:
    """Answers of the original-style loop, its model load and inference seconds, and seconds per stage."""
    started = time.perf_counter()
    model, tokenizer = load_emotion_llama(ModelFiles(SETTINGS.ckpt, SETTINGS.llama, SETTINGS.vit), torch.device("cpu"))
    loaded = time.perf_counter()
    answers: list[Answer] = []
    stages = dict.fromkeys(STAGES, 0.0)
    with torch.inference_mode():
        for sample in samples:
            t0 = time.perf_counter()
            frame, features = read_frame(sample), [torch.from_numpy(row)[None] for row in read_features(sample)]
            t1 = time.perf_counter()
            image = torch.from_numpy(straightforward_image(frame, SETTINGS.image_size))[None]
            t2 = time.perf_counter()
            prompt = tokenize_prompt(tokenizer, prompt_sentence(sample))
            t3 = time.perf_counter()
            block = model.multimodal_block(image, features)
            t4 = time.perf_counter()
            embeds = prompt_embeddings(model, prompt, block[0])[None]
            out = model.llm.generate(
                inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
                max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
                eos_token_id=2, pad_token_id=0,
            )  # fmt: skip
            ids = out[0].tolist()
            answers.append((answer_text(tokenizer, ids), len(ids)))
            t5 = time.perf_counter()
            for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                stages[stage] += seconds
    return answers, loaded - started, time.perf_counter() - loaded, stages


def batched_stages(samples: list) -> dict[str, float]:
    """Seconds per stage of the default path (batch 16, no workers), each stage timed on its own."""
    from pytest_emogate.inference.batches import SampleInputs, length_sorted_batches, vit_input
    from pytest_emogate.inference.generate import batch_embeddings, greedy
    from pytest_emogate.model import tokenize_prompts

    model, tokenizer = load_emotion_llama(ModelFiles(SETTINGS.ckpt, SETTINGS.llama, SETTINGS.vit), torch.device("cpu"))
    stages = dict.fromkeys(STAGES, 0.0)
    started = time.perf_counter()
    prompts = tokenize_prompts(tokenizer, [prompt_sentence(sample) for sample in samples])
    stages["tokenize the prompt"] = time.perf_counter() - started
    load = SampleInputs(samples, SETTINGS.image_size)
    with torch.inference_mode():
        for batch in length_sorted_batches(prompts, SETTINGS.batch_size):
            t0 = time.perf_counter()
            planes, features = load(batch)
            t1 = time.perf_counter()
            images = vit_input(planes, model.device)
            t2 = time.perf_counter()
            embeds = batch_embeddings(model, [prompts[i] for i in batch], images, features)
            t3 = time.perf_counter()
            greedy(model, embeds, SETTINGS.max_new_tokens)
            t4 = time.perf_counter()
            for stage, seconds in zip(STAGES[:2] + STAGES[3:], (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                stages[stage] += seconds
    return stages


def main(argv: list[str]) -> int:
    """Run every path, print the table and append it to RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=834, help="the first N samples of the tiny set")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--original-cap", type=int, default=500, help="the original loop's max_new_tokens")
    parser.add_argument("--no-append", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_test3(TINY / "data")
    data = dataclasses.replace(data, samples=data.samples[: args.samples])
    count = len(data.samples)
    loads = [os.getloadavg()[0]]
    reference, load_s, original_s, original_stages = original_loop(list(data.samples), args.original_cap)
    print(f"original loop: {original_s:.2f} s (model load {load_s:.2f} s)", flush=True)
    rows = [("original-style loop (batch 1, HF generate, cap 500, unmerged)", original_s, count, f"load {load_s:.1f}")]
    for name, change in [*VARIANTS.items(), ("default again (drift check)", {})]:
        loads.append(os.getloadavg()[0])
        run = run_inference(dataclasses.replace(SETTINGS, device="cpu", **change), data, progress=False)
        answers = [(p.output, p.extra["n_new_tokens"]) for p in run.predictions]
        agree = sum(a == b for a, b in zip(answers, reference, strict=True))
        extra = f"load {run.timings_s['load']:.1f}" + (f", merge+check {run.timings_s['merge']:.2f}"
                                                      if "merge" in run.timings_s else "")  # fmt: skip
        rows.append((name, run.timings_s["inference"], agree, "; ".join([extra, *run.notes])))
        print(f"{name}: {run.timings_s['inference']:.2f} s, {agree}/{count} agree", flush=True)
    loads.append(os.getloadavg()[0])
    stages = batched_stages(list(data.samples))
    loads.append(os.getloadavg()[0])
    table = _markdown(rows, count, original_s, argv, loads) + _stage_table(original_stages, stages, count)
    print(table)
    if not args.no_append:
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write("\n" + table)
    return 0


def _markdown(rows: list[tuple[str, float, int, str]], count: int, original_s: float, argv: list[str],
              loads: list[float]) -> str:  # fmt: skip
    import peft
    import transformers

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = platform.processor() or platform.machine()
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}"
    load = f"1-min load average during the run {min(loads):.1f}-{max(loads):.1f}"
    head = [
        f"### cpu_infer on {os.cpu_count()} CPU cores ({cpu}), {torch.get_num_threads()} torch threads, {date}",
        "",
        f"`python bench/cpu_infer.py {' '.join(argv)}`: {count} samples of fixtures/tiny; {versions}; {load}",
        "",
        "| path | inference s | ms/sample | speed-up vs original | answers = original's | notes |",
        "|---|---|---|---|---|---|",
    ]
    lines = [
        f"| {name} | {seconds:.2f} | {seconds / count * 1e3:.1f} | {original_s / seconds:.1f}x | {agree}/{count} | "
        f"{notes} |"
        for name, seconds, agree, notes in rows
    ]
    return "\n".join(head + lines) + "\n"


def _stage_table(original: dict[str, float], batched: dict[str, float], count: int) -> str:
    lines = [
        "",
        "Where a sample's time goes, ms/sample (each stage timed on its own; the original loop resizes in its "
        "ToTensor + Normalize stage, the default path in its read stage):",
        "",
        "| stage | original-style loop | default path |",
        "|---|---|---|",
    ]
    for stage in (*STAGES, "total"):
        old = sum(original.values()) if stage == "total" else original[stage]
        new = sum(batched.values()) if stage == "total" else batched[stage]
        lines.append(f"| {stage} | {old / count * 1e3:.1f} | {new / count * 1e3:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
