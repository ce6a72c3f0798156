"""Online DPO recipe (LIONs, arXiv 2407.06542, online stage): rounds of sample -> judge -> pair -> DPO.

Each round, read top to bottom:
1. prompts      the round's prompts: consecutive windows of a seeded shuffle of the prompt pool
2. sample       the current policy samples `n` responses per prompt (LION: 5 at temperature 0.8)
3. judge        `score_fn(prompts, responses) -> [score | None]`, pointwise; None = failed judgment
4. pair         best vs worst response of each prompt; a prompt with fewer than two usable scores,
                or whose scores all tie, is skipped and recorded in `round_<r>/skipped.jsonl`
5. mix          optionally offline pairs, `offline_ratio` = offline / (online + offline)
6. DPO          on the round's pairs; round 1's reference is the SFT model, later rounds' is the
                SFT model (`reference: sft`) or the previous round's policy (`reference: previous`)

`online_samples` (LION's sample-count axis) = rounds × prompts_per_round × n. Every round saves
its pairs before training, so a restarted stage trains on the same pairs and resumes from the
DPO checkpoint; finished rounds (`round_<r>/link.json`) are skipped.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from trainers.chain import (frozen, link_dir, load_causal_lm, publish_model, read_link, result_fields,
                            write_link, write_stage_curves)
from trainers.dpo import train_dpo
from trainers.sampling import sample_policy

ScoreFn = Callable[[list[str], list[str]], list[float | None]]


# ---------------------------------------------------------------- 1. prompts

def prompts_per_round(online_samples: int, rounds: int, n: int) -> int:
    """Prompts per round so that rounds × prompts × n ≈ online_samples (rounded down, at least 1)."""
    per_round = online_samples // (rounds * n)
    if per_round < 1:
        raise ValueError(f"online_samples {online_samples} is fewer than rounds × n = {rounds * n}")
    return per_round


def round_prompts(pool: Sequence[str], per_round: int, round_index: int, seed: int) -> list[str]:
    """Round `round_index` (from 1) takes the next `per_round` prompts of a seeded shuffle of `pool`,
    reshuffling each time the pool is used up, so rounds see fresh prompts while there are any."""
    pool = list(dict.fromkeys(pool))
    start, out, epoch_order = (round_index - 1) * per_round, [], {}
    for i in range(start, start + per_round):
        epoch = i // len(pool)
        if epoch not in epoch_order:
            order = list(pool)
            random.Random(f"{seed}:{epoch}").shuffle(order)
            epoch_order[epoch] = order
        out.append(epoch_order[epoch][i % len(pool)])
    return out


# ---------------------------------------------------------------- 2-3. sample and judge

def judge_samples(score_fn: ScoreFn, prompts: Sequence[str], responses: Sequence[Sequence[str]]) -> list[list[float | None]]:
    """Scores shaped like `responses`; a judge that returns a wrong count or raises fails every sample."""
    flat_prompts = [p for p, rs in zip(prompts, responses) for _ in rs]
    flat_responses = [r for rs in responses for r in rs]
    try:
        flat = list(score_fn(flat_prompts, flat_responses))
    except Exception:  # noqa: BLE001 - a broken judge must not crash the round; it is counted
        flat = [None] * len(flat_responses)
    if len(flat) != len(flat_responses):
        flat = [None] * len(flat_responses)
    flat = [s if isinstance(s, (int, float)) and math.isfinite(s) else None for s in flat]
    out, i = [], 0
    for rs in responses:
        out.append(flat[i:i + len(rs)])
        i += len(rs)
    return out


# ---------------------------------------------------------------- 4. pair

@dataclass
class PairReport:
    pairs: list[dict]
    skipped: list[dict]  # {prompt, reason, scores}

    def count(self, reason: str) -> int:
        return sum(s["reason"] == reason for s in self.skipped)


def best_vs_worst(prompts: Sequence[str], responses: Sequence[Sequence[str]],
                  scores: Sequence[Sequence[float | None]]) -> PairReport:
    """One pair per prompt: the highest-scored response over the lowest-scored one."""
    pairs, skipped = [], []
    for prompt, rs, ss in zip(prompts, responses, scores):
        usable = [(s, r) for s, r in zip(ss, rs) if s is not None]
        if len(usable) < 2:
            skipped.append({"prompt": prompt, "reason": "no_usable_scores", "scores": list(ss)})
            continue
        best = max(usable, key=lambda x: x[0])
        worst = min(usable, key=lambda x: x[0])
        if best[0] == worst[0]:
            skipped.append({"prompt": prompt, "reason": "tie", "scores": list(ss)})
            continue
        pairs.append({"prompt": prompt, "chosen": best[1], "rejected": worst[1], "source": "online",
                      "score_chosen": best[0], "score_rejected": worst[0]})
    return PairReport(pairs, skipped)


# ---------------------------------------------------------------- 5. mix

def offline_mix(online_count: int, offline_pool: Sequence[dict], ratio: float, seed: int) -> list[dict]:
    """round(online × ratio / (1 − ratio)) offline pairs (seeded, repeated only when the pool runs out)."""
    if not ratio or not offline_pool:
        return []
    want = round(online_count * ratio / (1 - ratio))
    rng, out = random.Random(seed), []
    while len(out) < want:
        out += rng.sample(list(offline_pool), min(want - len(out), len(offline_pool)))
    return [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"],
             "source": f"offline:{p.get('source', '')}"} for p in out]


# ---------------------------------------------------------------- 6. rounds

@dataclass
class OnlineDPOResult:
    steps: int
    seconds: float
    tokens_seen: int
    final_loss: float | None
    resumed_from: str | None
    rounds: list[dict] = field(default_factory=list)


def train_online_dpo(sft_model_dir: str | Path, tokenizer, prompt_pool: Sequence[str], cfg, output_dir: str | Path, *,
                     score_fn: ScoreFn, weights_hash: Callable[[Path], str], load_model: Callable = load_causal_lm,
                     offline_pairs: Sequence[dict] = (), ref_cache_dir: Path | None = None,
                     callbacks=()) -> OnlineDPOResult:
    """Run `cfg.rounds` online rounds from the SFT model; round r lives in `output_dir/round_<r>/`.

    `cfg` is a DPO config (duck-typed) plus: rounds, n, temperature, max_new_tokens, online_samples
    or prompts_per_round, offline_ratio, reference (sft | previous), sampler (auto | hf | vllm),
    sampler_python. Its loop settings (max_steps, epochs) apply to each round.
    """
    output_dir, sft_model_dir = Path(output_dir), Path(sft_model_dir)
    sft_key = weights_hash(sft_model_dir)
    per_round = _prompts_per_round(cfg)
    policy_dir, reference_dir, reference_key = sft_model_dir, sft_model_dir, sft_key
    records, resumed_from = [], None
    for r in range(1, cfg.rounds + 1):
        round_dir = link_dir(output_dir, "round", r)
        record = read_link(round_dir)
        if record is None:
            record = _train_round(r, round_prompts(prompt_pool, per_round, r, cfg.seed), policy_dir, reference_dir,
                                  reference_key, tokenizer, cfg, round_dir, score_fn=score_fn,
                                  weights_hash=weights_hash, load_model=load_model, offline_pairs=offline_pairs,
                                  ref_cache_dir=ref_cache_dir, callbacks=callbacks)
            write_link(round_dir, record)
        else:
            resumed_from = str(round_dir)
        records.append(record)
        policy_dir = round_dir / "model"
        if cfg.reference == "previous":
            reference_dir, reference_key = policy_dir, record["model_hash"]
    publish_model(policy_dir, output_dir / "model")
    write_stage_curves(output_dir, [(link_dir(output_dir, "round", r["round"]), r["dpo"]["steps"], _summary(r))
                                    for r in records], prefix="online")
    return OnlineDPOResult(
        steps=sum(r["dpo"]["steps"] for r in records),
        seconds=sum(r["seconds"] for r in records),
        tokens_seen=sum(r["dpo"]["tokens_seen"] or 0 for r in records),
        final_loss=records[-1]["dpo"]["final_loss"],
        resumed_from=resumed_from,
        rounds=records,
    )


def _prompts_per_round(cfg) -> int:
    if cfg.online_samples:
        return prompts_per_round(cfg.online_samples, cfg.rounds, cfg.n)
    return cfg.prompts_per_round


def _train_round(r: int, prompts: list[str], policy_dir: Path, reference_dir: Path, reference_key: str, tokenizer,
                 cfg, round_dir: Path, *, score_fn, weights_hash, load_model, offline_pairs, ref_cache_dir,
                 callbacks) -> dict:
    started = time.time()
    round_dir.mkdir(parents=True, exist_ok=True)
    policy = load_model(policy_dir)
    built = _load_round_pairs(round_dir)
    if built is None:
        built = _build_round_pairs(r, prompts, policy, policy_dir, tokenizer, cfg, score_fn, offline_pairs)
        _save_round_pairs(round_dir, built)
    if built["pairs"]:
        reference = frozen(load_model(reference_dir))
        dpo = result_fields(train_dpo(policy, tokenizer, built["pairs"], cfg, round_dir, reference_model=reference,
                                      reference_key=reference_key, ref_cache_dir=ref_cache_dir, callbacks=callbacks))
        del reference
    else:  # every prompt skipped (e.g. the judge was down): the round ends with the policy unchanged
        publish_model(policy_dir, round_dir / "model")
        dpo = {"steps": 0, "seconds": 0.0, "tokens_seen": 0, "final_loss": None, "mean_gamma_ref": None,
               "trained": False}
    del policy
    return {"round": r, **built["stats"], "policy": str(policy_dir), "reference": str(reference_dir),
            "reference_key": reference_key, "model_hash": weights_hash(round_dir / "model"),
            "seconds": time.time() - started, "dpo": dpo}


def _build_round_pairs(r: int, prompts: list[str], policy, policy_dir: Path, tokenizer, cfg, score_fn,
                       offline_pairs) -> dict:
    """Sample, judge, pair and mix: the round's training pairs and its statistics."""
    t0 = time.time()
    responses, backend = sample_policy(policy, tokenizer, prompts, n=cfg.n, temperature=cfg.temperature,
                                       max_new_tokens=cfg.max_new_tokens, backend=cfg.sampler, model_dir=policy_dir,
                                       batch_size=cfg.sample_batch_size, seed=cfg.seed * 1000 + r,
                                       python=cfg.sampler_python)
    t1 = time.time()
    scores = judge_samples(score_fn, prompts, responses)
    t2 = time.time()
    report = best_vs_worst(prompts, responses, scores)
    offline = offline_mix(len(report.pairs), offline_pairs, cfg.offline_ratio, seed=cfg.seed * 1000 + r)
    usable = [s for ss in scores for s in ss if s is not None]
    stats = {
        "prompts": len(prompts),
        "samples": sum(len(rs) for rs in responses),
        "sampler": backend,
        "mean_score": sum(usable) / len(usable) if usable else None,
        "judge_failures": sum(s is None for ss in scores for s in ss),
        "pairs_online": len(report.pairs),
        "pairs_offline": len(offline),
        "skipped": len(report.skipped),
        "skipped_no_usable_scores": report.count("no_usable_scores"),
        "skipped_ties": report.count("tie"),
        "mean_score_chosen": _mean([p["score_chosen"] for p in report.pairs]),
        "mean_score_rejected": _mean([p["score_rejected"] for p in report.pairs]),
        "sample_seconds": t1 - t0,
        "judge_seconds": t2 - t1,
    }
    pairs = [{k: p[k] for k in ("prompt", "chosen", "rejected", "source")} for p in report.pairs] + offline
    random.Random(cfg.seed * 1000 + r).shuffle(pairs)
    return {"pairs": pairs, "skipped": report.skipped, "samples": [
        {"prompt": p, "responses": rs, "scores": ss} for p, rs, ss in zip(prompts, responses, scores)], "stats": stats}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _save_round_pairs(round_dir: Path, built: dict) -> None:
    texts = {"round_stats.json": json.dumps(built["stats"], indent=1)}
    for name in ("samples", "skipped", "pairs"):
        texts[f"{name}.jsonl"] = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in built[name])
    for name, text in texts.items():  # pairs.jsonl last: its presence means the round's data is complete
        tmp = round_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(round_dir / name)


def _load_round_pairs(round_dir: Path) -> dict | None:
    paths = {name: round_dir / f"{name}.jsonl" for name in ("samples", "skipped", "pairs")}
    stats = round_dir / "round_stats.json"
    if not all(p.exists() for p in paths.values()) or not stats.exists():
        return None
    loaded = {name: [json.loads(line) for line in p.read_text().splitlines() if line.strip()] for name, p in paths.items()}
    return {**loaded, "stats": json.loads(stats.read_text())}


def _summary(record: dict) -> dict[str, float | None]:
    return {name: record.get(name) for name in ("mean_score", "judge_failures", "pairs_online", "pairs_offline",
                                                "skipped", "mean_score_chosen", "mean_score_rejected")} | {
        "gamma_ref_mean": record["dpo"].get("mean_gamma_ref"), "final_loss": record["dpo"]["final_loss"]}
