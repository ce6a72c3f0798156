"""Run one stage in this process and leave a complete stage directory (the body of `harness train`).

The runner never calls these in its own process: it launches `harness train KIND ...` as a
subprocess, so a crash costs one stage. Trainers get plain rows and a loaded model; this module
owns config, data resolution, the manifest and the stage-directory protocol.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

from harness.config.loader import load_config
from harness.config.schema import SFTConfig
from harness.runner import stagedir

STAGE_CONFIGS: dict[str, type] = {"sft": SFTConfig}
STAGE_RUNNERS: dict[str, Callable] = {}


def stage_runner(kind: str, config_cls: type):
    """Register the function that trains a stage of `kind` (decorator, like lm-eval's registries)."""
    def register(fn):
        STAGE_CONFIGS[kind] = config_cls
        STAGE_RUNNERS[kind] = fn
        return fn
    return register


def config_hash(cfg) -> str:
    payload = json.dumps(cfg.model_dump(mode="json", exclude={"output_dir"}), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def default_output_dir(kind: str, cfg) -> Path:
    return Path("results") / "runs" / f"{kind}-{config_hash(cfg)}"


def count_over_length(tokenizer, rows: list[dict], max_length: int) -> int:
    lengths = [len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"]) for r in rows]
    return sum(n > max_length for n in lengths)


def finish_stage(out: Path, cfg, kind: str, started: float, result, data_fingerprint: str, extra: dict) -> dict:
    stagedir.write_curves(out)
    manifest = {
        "kind": kind,
        "config": cfg.model_dump(mode="json"),
        "config_hash": config_hash(cfg),
        "data_fingerprint": data_fingerprint,
        "versions": stagedir.package_versions(),
        "git_sha": stagedir.git_sha(),
        "seconds": time.time() - started,
        "train_seconds": result.seconds,
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
        "final_loss": result.final_loss,
        "resumed_from": result.resumed_from,
        **extra,
    }
    stagedir.atomic_write_json(out / "manifest.json", manifest)
    stagedir.mark_done(out)
    return manifest


@stage_runner("sft", SFTConfig)
def run_sft(cfg: SFTConfig, out: Path) -> dict:
    from datasets import Dataset

    from harness.data.models import load_model
    from harness.data.sources import fingerprint, load_mixture
    from trainers.sft import train_sft

    started = time.time()
    rows, reports = load_mixture(cfg.data, "sft", cfg.on_bad_rows)
    model, tokenizer = load_model(cfg.model)
    over = count_over_length(tokenizer, rows, cfg.max_length)
    result = train_sft(model, tokenizer, Dataset.from_list(rows), cfg, out)
    extra = {"data": [r.as_dict() for r in reports], "rows_over_length_truncated": over, "rows": len(rows)}
    return finish_stage(out, cfg, "sft", started, result, fingerprint(rows), extra)


def train_stage(kind: str, config_path: str, overrides: list[str], output_dir: str | None = None) -> tuple[Path, dict]:
    """Load and validate the config, then train the stage into its directory (reused if DONE)."""
    if kind not in STAGE_CONFIGS:
        _import_stage_runners()
    cfg = load_config(STAGE_CONFIGS[kind], config_path, overrides)
    if getattr(cfg, "threads", 1) is None and os.environ.get("HARNESS_THREADS"):
        cfg.threads = int(os.environ["HARNESS_THREADS"])  # the runner's share of CPU for this worker
    out = Path(output_dir or cfg.output_dir or default_output_dir(kind, cfg))
    if stagedir.is_done(out):
        return out, json.loads((out / "manifest.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    stagedir.write_config(out, cfg.model_dump(mode="json"))
    return out, STAGE_RUNNERS[kind](cfg, out)


def _import_stage_runners() -> None:
    """Preference stages register themselves on import (kept out of the SFT import path)."""
    import importlib

    for module in ("harness.runner.preference_stages",):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
