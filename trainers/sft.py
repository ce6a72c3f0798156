"""SFT recipe: TRL's SFTTrainer with LION's packing and loss-mask modes.

packing:
  none      every example padded to the longest in its micro-batch
  concat    examples concatenated and cut into fixed-length rows; they attend to each other
            (TRL's "wrapped" packing: the naive packing LION compares against)
  isolated  best-fit-decreasing packing, position_ids restarting per example and attention
            within each example only (TRL's "bfd" + padding-free rows; per-segment SDPA on CPU,
            flash-attn varlen on GPU)
loss_mask:
  all        every token is a target
  assistant  only assistant turns, from the chat template's {% generation %} markers
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer

from trainers.attention import packed_attention_implementation
from trainers.common import CurvesCallback, device_args, last_checkpoint, loop_args, set_threads


@dataclass
class TrainResult:
    steps: int
    seconds: float
    tokens_seen: int
    final_loss: float | None
    resumed_from: str | None = None


def trl_config(cfg, checkpoint_dir: Path) -> TRLSFTConfig:
    return TRLSFTConfig(
        **loop_args(cfg, checkpoint_dir),
        **device_args(cfg.model.dtype),
        max_length=cfg.max_length,
        packing=cfg.packing != "none",
        packing_strategy="bfd" if cfg.packing == "isolated" else "wrapped",
        assistant_only_loss=cfg.loss_mask == "assistant",
        dataset_num_proc=None,
    )


def train_sft(model, tokenizer, dataset: Dataset, cfg, output_dir: str | Path, callbacks=()) -> TrainResult:
    """Train `model` on a `messages` dataset; save model + tokenizer to `output_dir`."""
    set_threads(cfg.threads)
    output_dir = Path(output_dir)
    attn = packed_attention_implementation() if cfg.packing == "isolated" else "sdpa"
    model.set_attn_implementation(attn)
    model.config.use_cache = False  # a KV cache lets packed sequences attend to each other
    curves = CurvesCallback(output_dir / "curves.jsonl")
    trainer = SFTTrainer(
        model=model,
        args=trl_config(cfg, output_dir / "checkpoints"),
        train_dataset=dataset.select_columns(["messages"]),
        processing_class=tokenizer,
        callbacks=[curves, *callbacks],
    )
    resume = last_checkpoint(output_dir / "checkpoints")
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    model.set_attn_implementation("sdpa")
    model.config.use_cache = True
    trainer.save_model(str(output_dir / "model"))
    tokenizer.save_pretrained(str(output_dir / "model"))
    return TrainResult(
        steps=trainer.state.global_step,
        seconds=seconds,
        tokens_seen=int(curves.last.get("num_tokens", 0)),
        final_loss=curves.last.get("loss", curves.last.get("train_loss")),
        resumed_from=resume,
    )
