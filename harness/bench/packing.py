"""`harness bench packing`: none vs concat vs isolated on the real length distribution.

Data: prompt + chosen of ../shared/data/preference/alpaca_eval_pairs.jsonl as chat turns, toy
tokenizer, toy Llama on CPU. Batches are built with TRL's own packing and collator (the SFT path);
each mode runs forward + backward in a fresh subprocess so its peak memory is its own.
"""
from __future__ import annotations

import json
import multiprocessing
import random
import resource
import time

from harness.bench import bench
from harness.evals.scorers import shared_data_dir

MODES = ("none", "concat", "isolated")


def tokenized_examples(n: int, max_length: int, seed: int = 0) -> list[dict]:
    from transformers import AutoTokenizer

    from harness.toylab.build import toy_base_model_dir

    tokenizer = AutoTokenizer.from_pretrained(toy_base_model_dir())
    path = shared_data_dir() / "preference" / "alpaca_eval_pairs.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    picked = random.Random(seed).sample(lines, n)
    out = []
    for line in picked:
        row = json.loads(line)
        messages = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["chosen"]}]
        enc = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        out.append({"input_ids": enc["input_ids"][:max_length], "assistant_masks": enc["assistant_masks"][:max_length]})
    return out


def build_batches(examples: list[dict], mode: str, max_length: int, micro_batch: int, rows_per_batch: int, pad_id: int):
    """Micro-batches exactly as TRL's SFTTrainer would build them for this packing mode."""
    from datasets import Dataset
    from trl.data_utils import pack_dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    dataset = Dataset.from_list(examples)
    if mode == "none":
        rows, group = list(dataset), micro_batch
    else:
        strategy = "bfd" if mode == "isolated" else "wrapped"
        rows, group = list(pack_dataset(dataset, max_length, strategy)), rows_per_batch
    collate = DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=mode == "isolated")
    return [collate(rows[i:i + group]) for i in range(0, len(rows), group)]


def _run_mode(mode: str, n: int, max_length: int, micro_batch: int, rows_per_batch: int, threads: int) -> dict:
    import psutil
    import torch
    from transformers import AutoModelForCausalLM

    from harness.toylab.build import toy_base_model_dir
    from trainers.attention import packed_attention_implementation

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(toy_base_model_dir())
    model.set_attn_implementation(packed_attention_implementation() if mode == "isolated" else "sdpa")
    model.config.use_cache = False
    model.train()
    examples = tokenized_examples(n, max_length)
    real_tokens = sum(len(e["input_ids"]) for e in examples)
    batches = build_batches(examples, mode, max_length, micro_batch, rows_per_batch, model.config.pad_token_id)
    positions = sum(b["input_ids"].numel() for b in batches)

    def step(batch):
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids", "labels")}
        model(**inputs, use_cache=False).loss.backward()
        model.zero_grad(set_to_none=True)

    step(batches[0])  # warm-up
    rss_before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {
        "useful_fraction": real_tokens / positions,
        "tokens_per_s": real_tokens / seconds,
        "peak_mem_mb": max(0.0, (peak - rss_before) / 2**20),
        "real_tokens": real_tokens, "positions": positions, "batches": len(batches), "seconds": seconds,
    }


def run(n: int = 96, max_length: int = 4096, micro_batch: int = 8, rows_per_batch: int = 4, threads: int = 2) -> dict:
    ctx = multiprocessing.get_context("spawn")
    modes = {}
    for mode in MODES:
        with ctx.Pool(1) as pool:
            modes[mode] = pool.apply(_run_mode, (mode, n, max_length, micro_batch, rows_per_batch, threads))
    none, iso = modes["none"], modes["isolated"]
    gain = iso["tokens_per_s"] / none["tokens_per_s"]
    ratio = iso["useful_fraction"] / none["useful_fraction"]
    return {
        "modes": modes,
        "isolated_gain_over_none": gain,
        "useful_fraction_ratio": ratio,
        "targets": {
            "isolated_useful_fraction>=0.97": iso["useful_fraction"] >= 0.97,
            "gain>=0.9*ratio": gain >= 0.9 * ratio,
        },
        "settings": {"examples": n, "max_length": max_length, "micro_batch_none": micro_batch,
                     "rows_per_batch_packed": rows_per_batch, "threads": threads},
    }


def print_report(result: dict) -> None:
    print(f"{'mode':<10}{'useful':>8}{'tokens/s':>11}{'peak MB':>9}{'positions':>11}")
    for mode, r in result["modes"].items():
        print(f"{mode:<10}{r['useful_fraction']:>8.3f}{r['tokens_per_s']:>11.0f}{r['peak_mem_mb']:>9.0f}{r['positions']:>11}")
    print(f"isolated/none tokens/s: {result['isolated_gain_over_none']:.2f}x; "
          f"useful-fraction ratio: {result['useful_fraction_ratio']:.2f}x (target gain >= 0.9 x ratio = "
          f"{0.9 * result['useful_fraction_ratio']:.2f}x)")
    for name, ok in result["targets"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")


@bench("packing")
def bench_packing(args) -> dict:
    result = run(n=24, max_length=2048) if getattr(args, "quick", False) else run()
    print_report(result)
    return result
