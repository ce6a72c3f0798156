"""`harness bench dpo`: padding-free DPO vs TRL's DPOTrainer (padded), and the reference cache.

Data: real pairs from ../shared/data/preference/alpaca_eval_pairs.jsonl (a seeded sample), toy
tokenizer, toy Llama, CPU. Both trainers get the same model init, the same TRL arguments and, by the
same seed, the same micro-batches; each runs in a fresh subprocess. Reported per trainer: real
tokens/s (warm-up step excluded), processed positions vs real tokens (the physical limit of the
speedup in positions), step-1 loss. Then a 4-point β sweep (train_dpo) with and without the
reference cache.

The speedup can exceed the positions limit: padded rows also pay attention over the padded length
with a dense mask, while per-segment attention costs Σ len² per micro-batch.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import random
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from harness.bench import bench
from harness.evals.scorers import shared_data_dir

BETAS = (0.05, 0.1, 0.2, 0.5)


def load_pairs(n: int, seed: int = 0) -> list[dict]:
    lines = (shared_data_dir() / "preference" / "alpaca_eval_pairs.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in random.Random(seed).sample(lines, n)]


def bench_config(**overrides):
    from harness.config.preference import DPOConfig

    # rpo_alpha: at step 1 the policy is the reference, so the sigmoid term is ln 2 on both sides;
    # the NLL term makes the step-1 loss depend on every completion token's log-prob
    base = {"data": "bench", "lr": 1e-5, "lr_scheduler": "constant", "warmup_ratio": 0.0, "log_every": 1,
            "beta": 0.1, "rpo_alpha": 1.0, "micro_batch_size": 8, "batch_size": 8, "threads": 2, "max_length": 2048}
    return DPOConfig(**{**base, **overrides})


class Recorder:
    """Mixin for either trainer: step-1 loss, processed positions and real tokens, step times."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        real = inputs["num_tokens"] if "num_tokens" in inputs else inputs["attention_mask"].sum()
        self.record.append({"loss": loss.detach().item(), "positions": inputs["input_ids"].numel(), "tokens": int(real)})
        return loss


class StepTimes(TrainerCallback):
    def __init__(self):
        self.seconds: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self.start)


def _trainer(kind: str, pairs: list[dict], cfg, out: Path):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer

    from harness.toylab.build import toy_base_model_dir
    from trainers.dpo import PaddingFreeDPOTrainer, prepare_reference, trl_dpo_config
    from trainers.losses import LossSpec
    from trainers.packing import PackedPairCollator

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(toy_base_model_dir())
    model = AutoModelForCausalLM.from_pretrained(toy_base_model_dir(), attn_implementation="sdpa")
    args = trl_dpo_config(cfg, out / "checkpoints", logging_steps=1, save_strategy="no", disable_tqdm=True)
    if kind == "padded":
        conversational = [{"prompt": [{"role": "user", "content": p["prompt"]}],
                           "chosen": [{"role": "assistant", "content": p["chosen"]}],
                           "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs]
        cls = type("RecordingDPOTrainer", (Recorder, DPOTrainer), {"record": []})
        return cls(model=model, args=args, train_dataset=Dataset.from_list(conversational), processing_class=tokenizer), model
    rows, _ = prepare_reference(model, tokenizer, pairs, cfg, None, "bench", None)
    cls = type("RecordingPaddingFreeDPOTrainer", (Recorder, PaddingFreeDPOTrainer), {"record": []})
    trainer = cls(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                  data_collator=PackedPairCollator(tokenizer.pad_token_id, cfg.max_length),
                  loss_spec=LossSpec.from_config(cfg))
    return trainer, model


def _run_trainer(kind: str, pairs: list[dict], cfg_json: dict, steps: int) -> dict:
    import torch

    from trainers.packing import packed_attention

    cfg = bench_config(**cfg_json, max_steps=steps)
    torch.set_num_threads(cfg.threads)
    times = StepTimes()
    with tempfile.TemporaryDirectory() as tmp:
        trainer, model = _trainer(kind, pairs, cfg, Path(tmp))
        trainer.add_callback(times)
        trainer.remove_callback(PrinterCallback)  # the report is printed at the end
        with packed_attention(model) if kind == "padding_free" else contextlib.nullcontext():
            trainer.train()
    record = trainer.record  # one entry per step: batch_size == micro_batch_size
    seconds = sum(times.seconds[1:])  # step 1 warms up allocators and kernels
    return {
        "step1_loss": record[0]["loss"],
        "tokens_per_s": sum(r["tokens"] for r in record[1:]) / seconds,
        "useful_fraction": sum(r["tokens"] for r in record) / sum(r["positions"] for r in record),
        "real_tokens": sum(r["tokens"] for r in record),
        "positions": sum(r["positions"] for r in record),
        "steps": len(record),
        "timed_seconds": seconds,
    }


def compare_trainers(pairs: list[dict], steps: int, cfg_json: dict) -> dict:
    ctx = multiprocessing.get_context("spawn")
    out = {}
    for kind in ("padded", "padding_free"):
        with ctx.Pool(1) as pool:
            out[kind] = pool.apply(_run_trainer, (kind, pairs, cfg_json, steps))
    return out


def _sweep_point(pairs: list[dict], cfg, cache_dir: Path | None, out_dir: Path) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.toylab.build import toy_base_model_dir
    from trainers.dpo import train_dpo

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(toy_base_model_dir())
    model = AutoModelForCausalLM.from_pretrained(toy_base_model_dir())
    result = train_dpo(model, tokenizer, pairs, cfg, out_dir, reference_key="toy-base", ref_cache_dir=cache_dir)
    return {"seconds": time.perf_counter() - start, "ref_pass": not result.ref_cache_hit, "ref_seconds": result.ref_seconds}


def beta_sweep(pairs: list[dict], cfg_json: dict) -> dict:
    """4 β points, each one epoch over `pairs`, with one shared reference pass (cache) and with one
    pass per point (no cache). The two sweeps alternate point by point, so that load from other
    processes on the machine falls on both alike."""
    totals = {mode: {"seconds": 0.0, "ref_passes": 0, "ref_seconds": 0.0} for mode in ("with", "without")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for beta in BETAS:
            cfg = bench_config(**cfg_json, beta=beta)
            for mode, cache_dir in (("without", None), ("with", tmp / "cache")):
                point = _sweep_point(pairs, cfg, cache_dir, tmp / mode / f"beta{beta}")
                totals[mode]["seconds"] += point["seconds"]
                totals[mode]["ref_passes"] += point["ref_pass"]
                totals[mode]["ref_seconds"] += point["ref_seconds"]
    return totals


def run(n_pairs: int = 48, steps: int = 6, max_length: int = 2048, sweep_pairs: int = 16,
        sweep_max_length: int = 1024, threads: int = 2) -> dict:
    """Trainer comparison at LION's max_length 2048 (micro-batches of 8 pairs, one step each); the
    β sweep on a smaller slice, since only the ratio of its two times matters."""
    trainers = compare_trainers(load_pairs(n_pairs), steps, {"max_length": max_length, "threads": threads})
    padded, free = trainers["padded"], trainers["padding_free"]
    sweep_cfg = {"max_length": sweep_max_length, "threads": threads, "epochs": 1.0, "log_every": 100}
    sweep = beta_sweep(load_pairs(sweep_pairs, seed=1), sweep_cfg)
    return {
        "speedup": free["tokens_per_s"] / padded["tokens_per_s"],
        "loss_abs_diff": abs(free["step1_loss"] - padded["step1_loss"]),
        "tokens_per_s_padded": padded["tokens_per_s"],
        "tokens_per_s_padding_free": free["tokens_per_s"],
        "useful_fraction_padded": padded["useful_fraction"],
        "useful_fraction_padding_free": free["useful_fraction"],
        "ref_cache_sweep_seconds_with": sweep["with"]["seconds"],
        "ref_cache_sweep_seconds_without": sweep["without"]["seconds"],
        "physical_limit": free["useful_fraction"] / padded["useful_fraction"],
        "trainers": trainers,
        "sweep": sweep,
        "settings": {"pairs": n_pairs, "steps": steps, "micro_batch_pairs": 8, "max_length": max_length,
                     "threads": threads, "sweep_pairs": sweep_pairs, "sweep_max_length": sweep_max_length,
                     "betas": list(BETAS)},
    }


def print_report(r: dict) -> None:
    print(f"{'trainer':<14}{'tokens/s':>10}{'useful':>8}{'real tok':>10}{'positions':>11}{'step-1 loss':>14}")
    for kind, t in r["trainers"].items():
        print(f"{kind:<14}{t['tokens_per_s']:>10.0f}{t['useful_fraction']:>8.3f}{t['real_tokens']:>10}"
              f"{t['positions']:>11}{t['step1_loss']:>14.7f}")
    print(f"speedup {r['speedup']:.2f}x (physical limit, positions/real tokens: {r['physical_limit']:.2f}x); "
          f"step-1 loss |diff| {r['loss_abs_diff']:.2e}")
    w, wo = r["sweep"]["with"], r["sweep"]["without"]
    print(f"β sweep of {len(BETAS)}: {w['seconds']:.1f}s with the reference cache ({w['ref_passes']} reference pass, "
          f"{w['ref_seconds']:.1f}s), {wo['seconds']:.1f}s without ({wo['ref_passes']} passes, {wo['ref_seconds']:.1f}s)")
    for name, ok in (("speedup>=1.5", r["speedup"] >= 1.5), ("loss_abs_diff<=1e-4", r["loss_abs_diff"] <= 1e-4)):
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")


@bench("dpo")
def bench_dpo(args) -> dict:
    quick = getattr(args, "quick", False)
    result = run(n_pairs=24, steps=3, max_length=1024, sweep_pairs=8, sweep_max_length=256) if quick else run()
    print_report(result)
    return result
