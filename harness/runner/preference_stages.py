"""Preference stages (`harness train dpo ...`): config -> data, models, reference identity -> trainer
-> stage directory. Imported by `harness.runner.stages` on first use of a preference kind."""
from __future__ import annotations

import time
from pathlib import Path

from harness.config.preference import DPOConfig
from harness.runner.stages import finish_stage, stage_runner


def ref_cache_dir(cfg) -> Path | None:
    """`$HARNESS_CACHE/ref_logps`, shared by every trial on this machine (None: caching off)."""
    from harness.toylab.build import cache_root

    return cache_root() / "ref_logps" if cfg.ref_cache else None


def load_reference(cfg):
    """(reference model or None, identity of its weights). No `reference:` means the policy's initial
    weights; their identity is the hash of the policy's weight files, not its config or path."""
    from harness.data.models import load_model, weights_hash

    if cfg.reference is None:
        return None, weights_hash(cfg.model.path)
    reference, _ = load_model(cfg.reference, for_training=False)
    return reference, weights_hash(cfg.reference.path)


@stage_runner("dpo", DPOConfig)
def run_dpo(cfg: DPOConfig, out: Path) -> dict:
    from harness.data.models import load_model
    from harness.data.sources import fingerprint, load_mixture
    from trainers.dpo import train_dpo

    started = time.time()
    rows, reports = load_mixture(cfg.data, "pref", cfg.on_bad_rows)
    model, tokenizer = load_model(cfg.model)
    reference, reference_key = load_reference(cfg)
    result = train_dpo(model, tokenizer, rows, cfg, out, reference_model=reference,
                       reference_key=reference_key, ref_cache_dir=ref_cache_dir(cfg))
    extra = {
        "data": [r.as_dict() for r in reports],
        "rows": len(rows),
        "pairs_used": result.pairs_used,
        "pairs_dropped_prompt_over_length": result.pairs_dropped,
        "reference_key": reference_key,
        "ref_cache_hit": result.ref_cache_hit,
        "ref_seconds": result.ref_seconds,
        "mean_gamma_ref": result.mean_gamma_ref,
    }
    return finish_stage(out, cfg, "dpo", started, result, fingerprint(rows), extra)
