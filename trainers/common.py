"""Pieces every trainer shares: TRL/transformers arguments for CPU or GPU, the curves and
NaN-guard callbacks, checkpoint discovery for resumption."""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback


@dataclass
class TrainResult:
    steps: int
    seconds: float
    tokens_seen: int
    final_loss: float | None
    resumed_from: str | None = None


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the stage fails with this reason."""


def device_args(dtype: str = "float32") -> dict[str, Any]:
    """TRL 1.16 configs default to bf16 and gradient checkpointing: wrong on CPU."""
    on_gpu = torch.cuda.is_available()
    return {
        "use_cpu": not on_gpu,
        "bf16": on_gpu and dtype == "bfloat16",
        "fp16": on_gpu and dtype == "float16",
        "gradient_checkpointing": False,
        "report_to": "none",
        "dataloader_num_workers": 0,
    }


def loop_args(cfg, checkpoint_dir: Path) -> dict[str, Any]:
    """transformers TrainingArguments from a harness LoopSpec-like config (duck-typed)."""
    return {
        "output_dir": str(checkpoint_dir),
        "per_device_train_batch_size": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "learning_rate": cfg.lr,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps or -1,
        "lr_scheduler_type": cfg.lr_scheduler,
        "warmup_steps": cfg.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "logging_steps": cfg.log_every,
        # transformers replaces a NaN/inf loss by the running mean before logging it (default True), which
        # hid NaN losses from CurvesCallback's guard: found by the fault tests, off so NaN fails the stage.
        "logging_nan_inf_filter": False,
        "save_strategy": "steps" if cfg.save_every else "no",
        "save_steps": cfg.save_every or 500,
        "save_total_limit": 1,
        "save_only_model": False,
    }


def last_checkpoint(checkpoint_dir: Path) -> str | None:
    """Newest complete `checkpoint-N` directory (one with trainer_state.json), for resumption."""
    if not checkpoint_dir.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in checkpoint_dir.iterdir()
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / "trainer_state.json").exists()]
    return str(max(found)[1]) if found else None


class CurvesCallback(TrainerCallback):
    """Streams every logged scalar to `curves.jsonl` as (step, name, value) rows and fails fast on NaN loss."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.last: dict[str, float] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        rows = []
        for name, value in (logs or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"step": state.global_step, "name": name, "value": float(value)})
                self.last[name] = float(value)
        with self.path.open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLossError(f"non-finite loss {loss} at step {state.global_step}")


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def train_and_save(trainer, tokenizer, output_dir: Path, curves: CurvesCallback, resume: str | None) -> TrainResult:
    """Train (resuming from `resume` if given), save model + tokenizer to output_dir/model."""
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    trainer.save_model(str(Path(output_dir) / "model"))
    tokenizer.save_pretrained(str(Path(output_dir) / "model"))
    return TrainResult(
        steps=trainer.state.global_step,
        seconds=seconds,
        tokens_seen=int(curves.last.get("num_tokens", 0)),
        final_loss=curves.last.get("loss", curves.last.get("train_loss")),
        resumed_from=resume,
    )
