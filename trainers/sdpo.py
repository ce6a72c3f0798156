"""sDPO recipe (Kim et al., "sDPO: Don't Use Your Data All at Once", arXiv 2403.19270).

The preference pairs are split into T chunks. Step t runs DPO on chunk t; its reference model is
the model from step t−1 (step 1's is the SFT model). Read top to bottom:

1. split        `split_pairs`: natural | easy_to_hard | random | stratified | explicit
2. order        `easy_to_hard` sorts the natural (per-dataset) chunks by a difficulty probe
3. steps        `train_sdpo`: per step, target = previous step's model (or the SFT model, with
                `target_init: sft`), reference = previous step's model, a fresh optimizer and
                LR schedule; the reference log-probs are cached under the reference's weights hash
4. report       per step: pairs and their sources, reference hash, mean γ_ref on the step's data
                (the paper's γ_ref figure), the step's model hash

Pairs are dicts {prompt, chosen, rejected, source}; `source` names the dataset a pair came from.
"""
from __future__ import annotations

import copy
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from trainers.chain import (frozen, link_dir, load_causal_lm, publish_model, read_link, result_fields,
                            write_link, write_stage_curves)
from trainers.dpo import train_dpo
from trainers.packing import tokenize_pairs
from trainers.ref_cache import compute_reference_logps

SPLITS = ("natural", "easy_to_hard", "random", "stratified", "explicit")


# ---------------------------------------------------------------- 1. split

def by_source(pairs: Sequence[dict]) -> dict[str, list[dict]]:
    """Pairs grouped by `source`, in order of first appearance."""
    groups: dict[str, list[dict]] = {}
    for pair in pairs:
        groups.setdefault(pair["source"], []).append(pair)
    return groups


def equal_parts(items: list, parts: int, first: int = 0) -> list[list]:
    """`items` cut into `parts` consecutive runs whose sizes differ by at most one.

    The larger runs are the `len(items) % parts` runs starting at index `first` (cyclically), so
    that callers can rotate which chunks receive a remainder.
    """
    base, extra = divmod(len(items), parts)
    sizes = [base + ((i - first) % parts < extra) for i in range(parts)]
    out, start = [], 0
    for size in sizes:
        out.append(items[start:start + size])
        start += size
    return out


def natural_split(pairs: Sequence[dict], order: Sequence[str] | None) -> list[list[dict]]:
    groups = by_source(pairs)
    order = list(order) if order else list(groups)
    unknown = [name for name in order if name not in groups]
    missing = [name for name in groups if name not in order]
    if unknown or missing or len(set(order)) != len(order):
        raise ValueError(f"order {order} must name each source exactly once (sources: {list(groups)})")
    return [groups[name] for name in order]


def random_split(pairs: Sequence[dict], steps: int, seed: int) -> list[list[dict]]:
    shuffled = list(pairs)
    random.Random(seed).shuffle(shuffled)
    return equal_parts(shuffled, steps)


def stratified_split(pairs: Sequence[dict], steps: int, seed: int) -> list[list[dict]]:
    """Equal chunks, each with the same per-source counts (up to one pair per source)."""
    rng = random.Random(seed)
    chunks: list[list[dict]] = [[] for _ in range(steps)]
    first = 0  # rotate where each source's remainder lands, so chunk sizes stay within one
    for rows in by_source(pairs).values():
        rows = list(rows)
        rng.shuffle(rows)
        for chunk, part in zip(chunks, equal_parts(rows, steps, first)):
            chunk += part
        first = (first + len(rows) % steps) % steps
    for chunk in chunks:
        rng.shuffle(chunk)
    return chunks


def explicit_split(pairs: Sequence[dict], explicit: Sequence) -> list[list[dict]]:
    """Per step: a source name, a list of source names, or a number of pairs (taken in data order)."""
    if all(isinstance(e, int) and not isinstance(e, bool) for e in explicit):
        if any(e <= 0 for e in explicit) or sum(explicit) > len(pairs):
            raise ValueError(f"explicit sizes {list(explicit)} must be positive and sum to at most {len(pairs)} pairs")
        starts = [sum(explicit[:i]) for i in range(len(explicit))]
        return [list(pairs[s:s + n]) for s, n in zip(starts, explicit)]
    groups = by_source(pairs)
    steps = [[e] if isinstance(e, str) else list(e) if isinstance(e, (list, tuple)) else [e] for e in explicit]
    names = [n for step in steps for n in step]
    if not all(isinstance(n, str) for n in names):
        raise ValueError("explicit steps must be all sizes or all source names (a name or a list of names per step)")
    unknown = [n for n in names if n not in groups]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"explicit steps name unknown or repeated sources {unknown or names} (sources: {list(groups)})")
    return [[p for n in step for p in groups[n]] for step in steps]


def split_pairs(pairs: Sequence[dict], split: str, *, steps: int | None = None, order: Sequence[str] | None = None,
                explicit: Sequence | None = None, seed: int = 0) -> list[list[dict]]:
    """Chunks of `pairs`, one per sDPO step.

    natural / easy_to_hard  one chunk per source, in `order` (default: order of first appearance;
                            `easy_to_hard` needs the order from `easy_to_hard_order`)
    random                  `steps` seeded random chunks of equal size ("sDPO Rand.")
    stratified              `steps` equal chunks with the same source mixture
    explicit                `explicit`: per step a source, a list of sources, or a size
    """
    if split in ("natural", "easy_to_hard"):
        if split == "easy_to_hard" and not order:
            raise ValueError("easy_to_hard needs the difficulty order of the sources")
        chunks = natural_split(pairs, order)
    elif split == "random":
        chunks = random_split(pairs, _steps(steps, pairs), seed)
    elif split == "stratified":
        chunks = stratified_split(pairs, _steps(steps, pairs), seed)
    elif split == "explicit":
        if not explicit:
            raise ValueError("split explicit needs `explicit`: a source name, names or a size per step")
        chunks = explicit_split(pairs, explicit)
    else:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    if steps is not None and len(chunks) != steps:
        raise ValueError(f"split {split} gives {len(chunks)} steps, but steps = {steps}")
    if any(not chunk for chunk in chunks):
        raise ValueError(f"split {split} leaves a step without pairs")
    return chunks


def _steps(steps: int | None, pairs: Sequence[dict]) -> int:
    if not steps or steps < 1:
        raise ValueError("random and stratified splits need steps >= 1")
    if steps > len(pairs):
        raise ValueError(f"{steps} steps for only {len(pairs)} pairs")
    return steps


def composition(chunk: Sequence[dict]) -> dict[str, int]:
    return dict(Counter(p["source"] for p in chunk))


# ---------------------------------------------------------------- 2. order (easy_to_hard)
#
# The paper orders datasets easy to hard by the initial model's reward accuracy on each. A DPO
# implicit reward needs a policy that differs from its reference (with the SFT model as both,
# every reward is 0), so the default `probe` trains a short DPO run from the SFT model on all
# pairs and measures, per source, how often the implicit reward β·log π_probe/π_sft prefers
# chosen. `logprob` is the free alternative: how often the SFT model itself gives chosen the
# higher log-likelihood (γ_ref > 0). Either way: higher accuracy = easier = earlier step.
# Accuracy is measured on a seeded sample of at most MEASURE_PER_SOURCE pairs per source.

MEASURE_PER_SOURCE = 512

def easy_to_hard_order(accuracy: dict[str, float]) -> list[str]:
    """Sources from easiest (highest reward accuracy) to hardest; ties by name."""
    return sorted(accuracy, key=lambda name: (-accuracy[name], name))


def sequence_logps(model, tokenizer, pairs: Sequence[dict], max_length: int) -> tuple[list[float], list[float], list[int]]:
    """Summed completion log-probs of chosen and rejected, and the indices of the pairs kept."""
    rows, kept = tokenize_pairs(tokenizer, list(pairs), max_length)
    chosen, rejected = compute_reference_logps(model, rows, tokenizer.pad_token_id, max_length)
    return chosen, rejected, kept


def reward_accuracy_by_source(pairs: Sequence[dict], chosen: Sequence[float], rejected: Sequence[float],
                              ref_chosen: Sequence[float] | None = None,
                              ref_rejected: Sequence[float] | None = None) -> dict[str, float]:
    """Per source, the share of pairs whose reward prefers chosen. With a reference, the reward is
    the DPO implicit reward log π − log π_ref; without one, the log-likelihood itself."""
    ref_chosen = ref_chosen or [0.0] * len(chosen)
    ref_rejected = ref_rejected or [0.0] * len(rejected)
    wins: dict[str, list[bool]] = {}
    for pair, c, r, rc, rr in zip(pairs, chosen, rejected, ref_chosen, ref_rejected):
        wins.setdefault(pair["source"], []).append((c - rc) > (r - rr))
    return {source: sum(w) / len(w) for source, w in wins.items()}


def difficulty_by_source(sft_model_dir: Path, tokenizer, pairs: Sequence[dict], cfg, probe_dir: Path, *,
                         method: str, probe_steps: int, weights_hash: Callable, load_model: Callable,
                         ref_cache_dir: Path | None) -> dict:
    """Reward accuracy of each source under `method` (probe | logprob); cached in `probe_dir`."""
    record = read_link(probe_dir)
    if record is not None:
        return record
    rng = random.Random(cfg.seed)
    measured = [p for rows in by_source(pairs).values() for p in rng.sample(rows, min(len(rows), MEASURE_PER_SOURCE))]
    sft = frozen(load_model(sft_model_dir))
    ref_c, ref_r, kept = sequence_logps(sft, tokenizer, measured, cfg.max_length)
    measured = [measured[i] for i in kept]
    if method == "logprob":
        accuracy = reward_accuracy_by_source(measured, ref_c, ref_r)
    elif method == "probe":
        probe = load_model(sft_model_dir)
        train_dpo(probe, tokenizer, list(pairs), _with(cfg, max_steps=probe_steps, save_every=None), probe_dir,
                  reference_model=sft, reference_key=weights_hash(sft_model_dir), ref_cache_dir=ref_cache_dir)
        chosen, rejected, _ = sequence_logps(probe, tokenizer, measured, cfg.max_length)
        accuracy = reward_accuracy_by_source(measured, chosen, rejected, ref_c, ref_r)
    else:
        raise ValueError(f"unknown difficulty method {method!r} (probe, logprob)")
    record = {"method": method, "probe_steps": probe_steps if method == "probe" else 0, "reward_accuracy": accuracy,
              "measured_pairs": len(measured), "order": easy_to_hard_order(accuracy)}
    probe_dir.mkdir(parents=True, exist_ok=True)
    write_link(probe_dir, record)
    return record


def _with(cfg, **changes):
    """A copy of a config object with some settings changed (pydantic or plain)."""
    out = copy.copy(cfg)
    for name, value in changes.items():
        setattr(out, name, value)
    return out


# ---------------------------------------------------------------- 3. steps

@dataclass
class SDPOResult:
    steps: int  # optimizer steps over all sDPO steps
    seconds: float
    tokens_seen: int
    final_loss: float | None
    resumed_from: str | None
    per_step: list[dict] = field(default_factory=list)
    difficulty: dict | None = None  # easy_to_hard: reward accuracy per source and the order it gives
    pairs_unused: int = 0  # explicit sizes that leave pairs out


def plan_steps(sft_model_dir: Path, tokenizer, pairs: Sequence[dict], cfg, output_dir: Path, *,
               weights_hash: Callable, load_model: Callable, ref_cache_dir: Path | None) -> tuple[list[list[dict]], dict | None]:
    """The chunks of each step, and for easy_to_hard the difficulty record that ordered them."""
    difficulty, order = None, cfg.order
    if cfg.split == "easy_to_hard":
        difficulty = difficulty_by_source(sft_model_dir, tokenizer, pairs, cfg, Path(output_dir) / "difficulty",
                                          method=cfg.difficulty, probe_steps=cfg.probe_steps,
                                          weights_hash=weights_hash, load_model=load_model, ref_cache_dir=ref_cache_dir)
        order = difficulty["order"]
    chunks = split_pairs(pairs, cfg.split, steps=cfg.steps, order=order, explicit=cfg.explicit, seed=cfg.seed)
    return chunks, difficulty


def train_sdpo(sft_model_dir: str | Path, tokenizer, pairs: Sequence[dict], cfg, output_dir: str | Path, *,
               weights_hash: Callable[[Path], str], load_model: Callable = load_causal_lm,
               ref_cache_dir: Path | None = None, callbacks=()) -> SDPOResult:
    """Split `pairs` and run the sDPO steps; step t trains in `output_dir/step_<t>/`, and the last
    step's model is published as `output_dir/model`.

    `cfg` is a DPO config (duck-typed) plus split, steps, order, explicit, seed, target_init
    (previous | sft), difficulty (probe | logprob) and probe_steps. Its loop settings (max_steps,
    epochs, schedule) apply to every step, and each step restarts the schedule.
    `weights_hash(model_dir)` is the reference identity for the reference cache.
    """
    output_dir, sft_model_dir = Path(output_dir), Path(sft_model_dir)
    chunks, difficulty = plan_steps(sft_model_dir, tokenizer, pairs, cfg, output_dir, weights_hash=weights_hash,
                                    load_model=load_model, ref_cache_dir=ref_cache_dir)
    previous_dir, previous_key = sft_model_dir, weights_hash(sft_model_dir)
    records, resumed_from = [], None
    for t, chunk in enumerate(chunks, start=1):
        step_dir = link_dir(output_dir, "step", t)
        record = read_link(step_dir)
        if record is None:
            record = _train_step(t, chunk, previous_dir, previous_key, sft_model_dir, tokenizer, cfg, step_dir,
                                 weights_hash=weights_hash, load_model=load_model,
                                 ref_cache_dir=ref_cache_dir, callbacks=callbacks)
            write_link(step_dir, record)
        else:
            resumed_from = str(step_dir)
        records.append(record)
        previous_dir, previous_key = step_dir / "model", record["model_hash"]
    publish_model(previous_dir, output_dir / "model")
    write_stage_curves(output_dir, [(link_dir(output_dir, "step", r["step"]), r["dpo"]["steps"], _summary(r))
                                    for r in records], prefix="sdpo")
    return SDPOResult(
        steps=sum(r["dpo"]["steps"] for r in records),
        seconds=sum(r["dpo"]["seconds"] for r in records),
        tokens_seen=sum(r["dpo"]["tokens_seen"] or 0 for r in records),
        final_loss=records[-1]["dpo"]["final_loss"],
        resumed_from=resumed_from,
        per_step=records,
        difficulty=difficulty,
        pairs_unused=len(pairs) - sum(len(c) for c in chunks),
    )


def _train_step(t: int, chunk: list[dict], reference_dir: Path, reference_key: str, sft_model_dir: Path, tokenizer,
                cfg, step_dir: Path, *, weights_hash, load_model, ref_cache_dir, callbacks) -> dict:
    """One sDPO step: DPO on `chunk` against the previous step's model; returns the step record."""
    started = time.time()
    target_dir = sft_model_dir if cfg.target_init == "sft" else reference_dir
    target = load_model(target_dir)
    reference = frozen(load_model(reference_dir))
    result = train_dpo(target, tokenizer, chunk, cfg, step_dir, reference_model=reference,
                       reference_key=reference_key, ref_cache_dir=ref_cache_dir, callbacks=callbacks)
    del target, reference
    return {
        "step": t,
        "pairs": len(chunk),
        "sources": composition(chunk),
        "target_init": str(target_dir),
        "reference": str(reference_dir),
        "reference_key": reference_key,
        "model_hash": weights_hash(step_dir / "model"),
        "mean_gamma_ref": result.mean_gamma_ref,
        "seconds": time.time() - started,
        "dpo": result_fields(result),
    }


def _summary(record: dict) -> dict[str, float]:
    dpo = record["dpo"]
    return {"gamma_ref_mean": record["mean_gamma_ref"], "pairs": record["pairs"], "final_loss": dpo["final_loss"],
            "ref_cache_hit": float(bool(dpo.get("ref_cache_hit")))}
