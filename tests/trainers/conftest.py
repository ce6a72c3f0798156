"""Fixtures for the trainer tests: a really SFT-trained toy model to start preference training from."""
from __future__ import annotations

from pathlib import Path

import pytest

SFT_FIXTURE = {"source": "toy:sft_mix", "size": 4000, "seed": 0, "steps": 200, "lr": 2e-3, "batch": 64,
               "packing": "none", "threads": 2, "version": 1}


def _train_sft(out: Path) -> None:
    from datasets import Dataset

    from harness.config.schema import SFTConfig
    from harness.data.models import load_model
    from harness.toylab.datasets import build_toy
    from trainers.sft import train_sft

    spec = SFT_FIXTURE
    cfg = SFTConfig(data=[spec["source"]], packing=spec["packing"], lr=spec["lr"], batch_size=spec["batch"],
                    micro_batch_size=spec["batch"], max_steps=spec["steps"], lr_scheduler="cosine",
                    warmup_ratio=0.05, max_length=128, log_every=50, threads=spec["threads"])
    model, tokenizer = load_model(cfg.model)
    rows = build_toy("sft_mix", spec["size"], spec["seed"])
    train_sft(model, tokenizer, Dataset.from_list(rows), cfg, out / "run")
    (out / "model").symlink_to("run/model")


@pytest.fixture(scope="session")
def sft_model_dir() -> Path:
    """A toy model after 200 annealed SFT steps (about 40 s on 2 idle threads), cached under
    $HARNESS_CACHE/toy-sft-fixture keyed by SFT_FIXTURE: bump its `version` when the SFT recipe
    changes what it trains (tests/trainers/test_sft.py checks the recipe itself)."""
    from harness.toylab.build import build_once

    return build_once("toy-sft-fixture", SFT_FIXTURE, _train_sft) / "model"
