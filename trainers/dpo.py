"""DPO recipe: TRL's DPOTrainer with a padding-free forward and a cached reference pass.

Read top to bottom:
1. tokenize the pairs as TRL does (prompt = user turn, chosen/rejected = assistant turn),
2. reference log-probs from the on-disk cache, or one padding-free pass of the reference model,
3. γ per pair (sDPO's reference log-ratio term) into the diagnostics,
4. train with `PaddingFreeDPOTrainer`: TRL's loop, our packed forward and loss (trainers.losses),
5. save model + tokenizer to `output_dir/model`.

Diagnostics go to `output_dir/curves.jsonl`, long format (step, name, value), every `log_every`
steps and at the last step: TRL's loss, rewards/{chosen,rejected,margins,accuracies},
logps/{chosen,rejected}, plus
  margin/logp         mean log π(y_w|x) − log π(y_l|x) of the policy
  margin/logp_change  the same minus the reference's margin (LION's margin change; = margins/β)
  margin/prob         mean σ(log π(y_w|x) − log π(y_l|x)): the Bradley-Terry probability that
                      the policy's sequence probabilities prefer chosen
  gamma_ref           mean γ of the batch; nll/chosen; loss/preference; positions (processed)
and, once at step 0, one row `gamma_ref/<i>` per pair (i = index in `pairs`) and `gamma_ref/mean`.
With `cfg.eval_every`, `cfg.eval_pairs` pairs are held out of training (seeded) and evaluated every
`eval_every` steps: the same metrics prefixed `eval_` (eval_loss, eval_rewards/margins, ...).
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import DPOConfig as TRLDPOConfig
from trl import DPOTrainer

from trainers.common import (CurvesCallback, TrainResult, device_args, last_checkpoint, loop_args, set_threads,
                             train_and_save)
from trainers.losses import LossSpec, PairLogps, chosen_nll, dpo_loss, gamma_ref, per_pair_loss
from trainers.packing import PackedPairCollator, ensure_fused_lm_head, packed_attention, packed_sequence_logps, tokenize_pairs
from trainers.ref_cache import RefLogpCache, cache_key, reference_logps


@dataclass
class DPOResult(TrainResult):
    mean_gamma_ref: float = 0.0  # mean over pairs of β·(log π_ref(y_w|x) − log π_ref(y_l|x))
    ref_cache_hit: bool = False
    diagnostics_path: Path | None = None  # curves.jsonl
    pairs_used: int = 0
    pairs_dropped: int = 0  # prompt alone filled max_length
    ref_seconds: float = 0.0  # reference pass (0 on a cache hit)
    ref_cache_path: Path | None = None


# --- TRL arguments --------------------------------------------------------------------------------

def trl_loss_args(spec: LossSpec) -> dict:
    """The same loss in TRL 1.16's terms (used by the padded TRL baseline in tests and bench)."""
    if spec.label_smoothing:
        raise ValueError("TRL 1.16 has no label-smoothed sigmoid (cDPO) loss to compare with")
    if spec.rpo_alpha:
        return {"beta": spec.beta, "loss_type": [spec.loss_type, "sft"], "loss_weights": [1.0, spec.rpo_alpha]}
    return {"beta": spec.beta, "loss_type": [spec.loss_type]}


def trl_dpo_config(cfg, checkpoint_dir: Path, **overrides) -> TRLDPOConfig:
    """TRL arguments for either trainer. PaddingFreeDPOTrainer takes its loss from `loss_spec` (label
    smoothing included); the loss fields here make TRL's padded DPOTrainer compute the same loss."""
    spec = LossSpec.from_config(cfg)
    loss = trl_loss_args(LossSpec(spec.loss_type, spec.beta, 0.0, spec.rpo_alpha))
    return TRLDPOConfig(
        **{**loop_args(cfg, checkpoint_dir), **device_args(cfg.model.dtype), **loss,
           "max_length": cfg.max_length, "precompute_ref_log_probs": True, "dataset_num_proc": None,
           "pad_to_multiple_of": None, **overrides},
    )


# --- the trainer ----------------------------------------------------------------------------------

class PaddingFreeDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer on packed rows. Takes a dataset already tokenized by `tokenize_pairs` and
    carrying `ref_chosen_logps`/`ref_rejected_logps`; its loss is `trainers.losses.dpo_loss`."""

    def __init__(self, *args, loss_spec: LossSpec, **kwargs):
        self.loss_spec = loss_spec
        self.positions_seen = 0
        super().__init__(*args, **kwargs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset  # tokenized by tokenize_pairs, the same rules as TRL's

    def _precompute_ref_logps(self, dataset, name, batch_size):
        missing = {"ref_chosen_logps", "ref_rejected_logps"} - set(dataset.column_names)
        if missing:
            raise ValueError(f"{name} dataset lacks {sorted(missing)}: compute them with trainers.ref_cache")
        return dataset

    def _compute_loss(self, model, inputs, return_outputs):
        if return_outputs:
            raise NotImplementedError("the packed forward returns no logits")
        mode = "train" if self.model.training else "eval"
        logps, outputs = packed_sequence_logps(model, inputs)
        chosen, rejected = logps.chunk(2)
        chosen_len, rejected_len = inputs["completion_lengths"].chunk(2)
        pair = PairLogps(chosen, rejected, inputs["ref_chosen_logps"], inputs["ref_rejected_logps"], chosen_len, rejected_len)
        loss = dpo_loss(pair, self.loss_spec)
        self._record(mode, pair, outputs, inputs)
        return loss

    @torch.no_grad()
    def _record(self, mode: str, pair: PairLogps, outputs, inputs) -> None:
        beta = self.loss_spec.beta
        chosen_rewards = beta * pair.chosen_logratios.detach()
        rejected_rewards = beta * pair.rejected_logratios.detach()
        policy_margin = (pair.chosen - pair.rejected).detach()
        mask = inputs["completion_mask"][:, 1:].bool()
        values = {
            "rewards/chosen": chosen_rewards.mean(),
            "rewards/rejected": rejected_rewards.mean(),
            "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
            "logps/chosen": pair.chosen.detach().mean(),
            "logps/rejected": pair.rejected.detach().mean(),
            "margin/logp": policy_margin.mean(),
            "margin/logp_change": (policy_margin - (pair.ref_chosen - pair.ref_rejected)).mean(),
            "margin/prob": torch.sigmoid(policy_margin).mean(),
            "gamma_ref": gamma_ref(pair.ref_chosen, pair.ref_rejected, beta).mean(),
            "nll/chosen": chosen_nll(pair).detach(),
            "loss/preference": per_pair_loss(pair, self.loss_spec).detach().mean(),
            "entropy": outputs.entropy[:, -mask.shape[1]:][mask].mean(),
        }
        for name, value in values.items():
            self._metrics[mode][name].append(float(value))
        if mode == "train":
            self._total_train_tokens += int(inputs["num_tokens"])
            self.positions_seen += inputs["input_ids"].numel()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        self._metrics[mode]["positions"] = [self.positions_seen]


class LogLastStep(TrainerCallback):
    """Diagnostics at the end too: log the last step even when it is not a multiple of log_every."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_log = True
        return control


# --- the recipe -----------------------------------------------------------------------------------

def write_gamma_rows(path: Path, indices: list[int], gammas: list[float]) -> None:
    """γ per pair as long-format rows at step 0 (name `gamma_ref/<pair index>`), and their mean."""
    rows = [{"step": 0, "name": f"gamma_ref/{i}", "value": g} for i, g in zip(indices, gammas)]
    rows.append({"step": 0, "name": "gamma_ref/mean", "value": sum(gammas) / max(len(gammas), 1)})
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def prepare_reference(model, tokenizer, pairs: list[dict], cfg, reference_model, reference_key: str,
                      ref_cache_dir: Path | None):
    """Tokenized rows with reference log-probs attached, plus what the run reports about them."""
    rows, kept = tokenize_pairs(tokenizer, pairs, cfg.max_length)
    if not rows:
        raise ValueError(f"no pair has a prompt shorter than max_length={cfg.max_length}")
    reference = reference_model if reference_model is not None else model  # before training: initial weights
    kept_pairs = [pairs[i] for i in kept]
    key = cache_key(reference_key, kept_pairs, cfg.max_length, tokenizer, str(reference.dtype))
    cache = RefLogpCache(ref_cache_dir)
    start = time.perf_counter()
    chosen, rejected, hit = reference_logps(reference, rows, tokenizer.pad_token_id, cfg.max_length, cache, key)
    for row, c, r in zip(rows, chosen, rejected):
        row["ref_chosen_logps"], row["ref_rejected_logps"] = c, r
    info = {"kept": kept, "hit": hit, "seconds": 0.0 if hit else time.perf_counter() - start,
            "path": cache.path(key) if ref_cache_dir is not None else None,
            "gammas": [cfg.beta * (c - r) for c, r in zip(chosen, rejected)]}
    return rows, info


def hold_out(pairs: list[dict], n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(training pairs, n held-out pairs): a seeded choice, training keeps its order."""
    if n >= len(pairs):
        raise ValueError(f"eval_pairs={n} leaves no training pairs out of {len(pairs)}: lower eval_pairs")
    held = set(random.Random(seed).sample(range(len(pairs)), n))
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


def eval_args(cfg) -> dict:
    """Trainer arguments for the held-out eval every `cfg.eval_every` steps (none without it)."""
    if not getattr(cfg, "eval_every", None):
        return {}
    return {"eval_strategy": "steps", "eval_steps": cfg.eval_every, "per_device_eval_batch_size": cfg.micro_batch_size,
            "prediction_loss_only": True}


def train_dpo(model, tokenizer, pairs: list[dict], cfg, output_dir: Path, *, reference_model=None,
              reference_key: str, ref_cache_dir: Path | None = None, callbacks=()) -> DPOResult:
    """Train `model` on preference `pairs` ({prompt, chosen, rejected, source}, plain text).

    cfg: a DPOConfig-like object (loop settings, loss_type, beta, label_smoothing, rpo_alpha,
    max_length, model.dtype, threads). reference_model: None uses the policy's initial weights.
    reference_key: identity of the reference weights (e.g. a hash of the weight files), part of the
    reference cache key. Saves model + tokenizer to `output_dir/model`.
    """
    set_threads(cfg.threads)
    output_dir = Path(output_dir)
    curves_path = output_dir / "curves.jsonl"
    checkpoints = output_dir / "checkpoints"
    resume = last_checkpoint(checkpoints)
    ensure_fused_lm_head(model)
    held_out = []
    if getattr(cfg, "eval_every", None):
        pairs, held_out = hold_out(pairs, cfg.eval_pairs, cfg.seed)
        held_out, _ = prepare_reference(model, tokenizer, held_out, cfg, reference_model, reference_key, ref_cache_dir)
    rows, ref = prepare_reference(model, tokenizer, pairs, cfg, reference_model, reference_key, ref_cache_dir)
    if resume is None:
        write_gamma_rows(curves_path, ref["kept"], ref["gammas"])

    curves = CurvesCallback(curves_path)
    trainer = PaddingFreeDPOTrainer(
        model=model,
        args=trl_dpo_config(cfg, checkpoints, **eval_args(cfg)),
        data_collator=PackedPairCollator(tokenizer.pad_token_id, cfg.max_length),
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(held_out) if held_out else None,
        processing_class=tokenizer,
        callbacks=[curves, LogLastStep(), *callbacks],
        loss_spec=LossSpec.from_config(cfg),
    )
    with packed_attention(model):
        trained = train_and_save(trainer, tokenizer, output_dir, curves, resume)
    return DPOResult(
        **vars(trained),
        mean_gamma_ref=sum(ref["gammas"]) / len(ref["gammas"]),
        ref_cache_hit=ref["hit"],
        diagnostics_path=curves_path,
        pairs_used=len(rows),
        pairs_dropped=len(pairs) - len(rows),
        ref_seconds=ref["seconds"],
        ref_cache_path=ref["path"],
    )
