"""Preference stages (`harness train dpo ...`): config -> data, models, reference identity -> trainer
-> stage directory. Imported by `harness.runner.stages` on first use of a preference kind."""
from __future__ import annotations

import time
from pathlib import Path

from harness.config.preference import DPOConfig, OnlineDPOConfig, SDPOConfig
from harness.runner.stages import finish_stage, stage_runner


def ref_cache_dir(cfg) -> Path | None:
    """`$HARNESS_CACHE/ref_logps`, shared by every trial on this machine (None: caching off)."""
    from harness.toylab.build import cache_root

    return cache_root() / "ref_logps" if cfg.ref_cache else None


def weights_identity(path: str, model) -> str:
    """Hash of the weight files of a local model; for a hub id (no local directory), of the loaded
    tensors. Never the config or the path: two configs can name the same weights."""
    import hashlib

    import torch

    from harness.config.loader import ConfigError
    from harness.data.models import weights_hash

    try:
        return weights_hash(path)
    except (ConfigError, OSError):
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return "tensors-" + digest.hexdigest()[:16]


def load_reference(cfg, policy):
    """(reference model or None, identity of its weights). No `reference:` means the policy's initial
    weights (the identity of `policy` before training)."""
    from harness.data.models import load_model

    if cfg.reference is None:
        return None, weights_identity(cfg.model.path, policy)
    reference, _ = load_model(cfg.reference, for_training=False)
    return reference, weights_identity(cfg.reference.path, reference)


@stage_runner("dpo", DPOConfig)
def run_dpo(cfg: DPOConfig, out: Path) -> dict:
    from harness.data.models import load_model
    from harness.data.sources import fingerprint, load_mixture
    from trainers.dpo import train_dpo

    started = time.time()
    rows, reports = load_mixture(cfg.data, "pref", cfg.on_bad_rows)
    model, tokenizer = load_model(cfg.model)
    reference, reference_key = load_reference(cfg, model)
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


# --- sDPO and online DPO: chains of DPO runs, each link with its own reference ---------------------

def model_loader(spec):
    """path -> model, loaded with the stage's dtype and attention settings (for chain links)."""
    from harness.data.models import load_model

    return lambda path: load_model(spec.model_copy(update={"path": str(path)}))[0]


def pairs_named_by_dataset(specs, on_bad_rows: str) -> tuple[list[dict], list]:
    """Preference rows whose `source` is their dataset's name (`data[i].name`, else its source),
    the unit sDPO splits by."""
    from harness.data.sources import load_rows

    rows, reports = [], []
    for spec in specs:
        part, report = load_rows(spec, "pref", on_bad_rows)
        rows += [{**row, "source": spec.label} for row in part]
        reports.append(report)
    return rows, reports


def check_split(cfg: SDPOConfig, rows: list[dict]) -> None:
    """Split errors (unknown names, sizes over the data, steps that do not match) before any training."""
    from harness.config.loader import ConfigError
    from trainers.sdpo import split_pairs

    split = "natural" if cfg.split == "easy_to_hard" else cfg.split
    steps = None if cfg.split == "easy_to_hard" and cfg.steps is None else cfg.steps
    try:
        split_pairs(rows, split, steps=steps, order=cfg.order, explicit=cfg.explicit, seed=cfg.seed)
    except ValueError as err:
        raise ConfigError(str(err), key="split") from None


@stage_runner("sdpo", SDPOConfig)
def run_sdpo(cfg: SDPOConfig, out: Path) -> dict:
    from harness.data.models import load_model, resolve_model_path, weights_hash
    from harness.data.sources import fingerprint
    from trainers.sdpo import train_sdpo

    started = time.time()
    rows, reports = pairs_named_by_dataset(cfg.data, cfg.on_bad_rows)
    check_split(cfg, rows)
    _, tokenizer = load_model(cfg.model)
    result = train_sdpo(Path(resolve_model_path(cfg.model.path)), tokenizer, rows, cfg, out,
                        weights_hash=weights_hash, load_model=model_loader(cfg.model), ref_cache_dir=ref_cache_dir(cfg))
    extra = {
        "data": [r.as_dict() for r in reports],
        "rows": len(rows),
        "pairs_unused": result.pairs_unused,
        "difficulty": result.difficulty,
        "sdpo_steps": [{k: v for k, v in step.items() if k != "dpo"} | {
            "dpo_steps": step["dpo"]["steps"], "final_loss": step["dpo"]["final_loss"],
            "ref_cache_hit": step["dpo"]["ref_cache_hit"], "pairs_used": step["dpo"]["pairs_used"]}
            for step in result.per_step],
        "mean_gamma_ref": [step["mean_gamma_ref"] for step in result.per_step],
    }
    return finish_stage(out, cfg, "sdpo", started, result, fingerprint(rows), extra)


def online_judge(spec):
    """The configured judge from the registry (no progress bars: a round judges many small batches)."""
    from harness.judges import get_judge

    return get_judge(spec, progress=False)


@stage_runner("online_dpo", OnlineDPOConfig)
def run_online_dpo(cfg: OnlineDPOConfig, out: Path) -> dict:
    from harness.data.models import load_model, resolve_model_path, weights_hash
    from harness.data.sources import fingerprint, load_mixture
    from trainers.online_dpo import train_online_dpo

    started = time.time()
    pairs, reports = load_mixture(cfg.data, "pref", cfg.on_bad_rows)
    prompt_rows, prompt_reports = load_mixture(cfg.prompts, "eval", cfg.on_bad_rows) if cfg.prompts else (pairs, [])
    judge = online_judge(cfg.judge)
    _, tokenizer = load_model(cfg.model)
    result = train_online_dpo(Path(resolve_model_path(cfg.model.path)), tokenizer, [r["prompt"] for r in prompt_rows],
                              cfg, out, score_fn=judge.score, weights_hash=weights_hash, load_model=model_loader(cfg.model),
                              offline_pairs=pairs if cfg.offline_ratio else (), ref_cache_dir=ref_cache_dir(cfg))
    rounds = [{k: v for k, v in r.items() if k != "dpo"} | {
        "dpo_steps": r["dpo"]["steps"], "final_loss": r["dpo"]["final_loss"], "mean_gamma_ref": r["dpo"]["mean_gamma_ref"]}
        for r in result.rounds]
    extra = {
        "data": [r.as_dict() for r in reports + prompt_reports],
        "rows": len(pairs),
        "prompt_pool": len({r["prompt"] for r in prompt_rows}),
        "online_samples_drawn": sum(r["samples"] for r in result.rounds),
        "judge": judge.name,
        "judge_calls": dict(getattr(getattr(judge, "client", None), "stats", {})),  # openai: attempts, retries
        "judge_failures": sum(r["judge_failures"] for r in result.rounds),
        "prompts_skipped": sum(r["skipped"] for r in result.rounds),
        "rounds": rounds,
    }
    return finish_stage(out, cfg, "online_dpo", started, result, fingerprint(pairs + prompt_rows), extra)
