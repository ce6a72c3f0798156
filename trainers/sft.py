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

import contextlib
from pathlib import Path

from datasets import Dataset
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer

from trainers.common import CurvesCallback, TrainResult, device_args, last_checkpoint, loop_args, set_threads, train_and_save
from trainers.packing import packed_attention


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
    model.config.use_cache = False  # a KV cache lets packed sequences attend to each other
    curves = CurvesCallback(output_dir / "curves.jsonl")
    trainer = SFTTrainer(
        model=model,
        args=trl_config(cfg, output_dir / "checkpoints"),
        train_dataset=dataset.select_columns(["messages"]),
        processing_class=tokenizer,
        callbacks=[curves, *callbacks],
    )
    # isolated rows: per-segment attention (flash-attn varlen on GPU); other modes keep sdpa
    attention = packed_attention(model) if cfg.packing == "isolated" else contextlib.nullcontext()
    with attention:
        result = train_and_save(trainer, tokenizer, output_dir, curves, last_checkpoint(output_dir / "checkpoints"))
    model.config.use_cache = True
    return result
