"""DPO recipe: loss and gradients against TRL's DPOTrainer, a padded vs padding-free training step,
diagnostics, the reference cache across a β sweep, and a real DPO run on the toy lab."""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM
from trl import DPOTrainer

from harness.config.preference import DPOConfig
from harness.toylab.datasets import build_toy
from harness.toylab.tasks import Example, wrong_answer
from trainers.dpo import PaddingFreeDPOTrainer, train_dpo, trl_dpo_config
from trainers.losses import LossSpec
from trainers.packing import PackedPairCollator, packed_attention, tokenize_pairs
from trainers.ref_cache import compute_reference_logps

PAIRS = build_toy("prefs", 16, seed=11)


def _cfg(**overrides) -> DPOConfig:
    base = {"data": "toy:prefs", "lr": 1e-3, "batch_size": 4, "micro_batch_size": 4, "max_steps": 2, "log_every": 1,
            "lr_scheduler": "constant", "warmup_ratio": 0.0, "max_length": 64, "threads": 1}
    return DPOConfig(**{**base, **overrides})


def _conversational(pairs):
    return Dataset.from_list([{"prompt": [{"role": "user", "content": p["prompt"]}],
                               "chosen": [{"role": "assistant", "content": p["chosen"]}],
                               "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs])


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


SPECS = [{"loss_type": "sigmoid", "beta": 0.1}, {"loss_type": "ipo", "beta": 0.1},
         {"loss_type": "hinge", "beta": 0.5}, {"loss_type": "sigmoid", "beta": 0.1, "rpo_alpha": 1.0}]


@pytest.mark.parametrize("loss", SPECS, ids=lambda s: "+".join(f"{k}={v}" for k, v in s.items()))
def test_loss_and_gradients_match_trl_dpo_trainer(toy_model_dir, toy_tokenizer, tmp_path, loss):
    cfg = _cfg(**loss)
    reference = AutoModelForCausalLM.from_pretrained(toy_model_dir)
    policy = AutoModelForCausalLM.from_pretrained(toy_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():  # policy != reference, so rewards and margins are not all zero
        for p in policy.parameters():
            p.add_(0.02 * torch.randn_like(p))
    policy_trl, policy_ours = policy, copy.deepcopy(policy)

    rows, _ = tokenize_pairs(toy_tokenizer, PAIRS[:6], cfg.max_length)
    chosen, rejected = compute_reference_logps(reference, rows, toy_tokenizer.pad_token_id, cfg.max_length)
    examples = [{**r, "ref_chosen_logps": c, "ref_rejected_logps": x} for r, c, x in zip(rows, chosen, rejected)]

    trl = DPOTrainer(model=policy_trl, args=trl_dpo_config(cfg, tmp_path / "trl"), train_dataset=_conversational(PAIRS[:6]),
                     processing_class=toy_tokenizer)
    ours = PaddingFreeDPOTrainer(model=policy_ours, args=trl_dpo_config(cfg, tmp_path / "ours"),
                                 train_dataset=Dataset.from_list(examples), processing_class=toy_tokenizer,
                                 data_collator=PackedPairCollator(toy_tokenizer.pad_token_id, cfg.max_length),
                                 loss_spec=LossSpec.from_config(cfg))
    policy_trl.train(), policy_ours.train()
    loss_trl = trl.compute_loss(policy_trl, trl.data_collator(copy.deepcopy(examples)))
    loss_trl.backward()
    with packed_attention(policy_ours):
        loss_ours = ours.compute_loss(policy_ours, ours.data_collator(copy.deepcopy(examples)))
        loss_ours.backward()

    assert abs(loss_trl.item() - loss_ours.item()) < 1e-4
    g_trl, g_ours = _grads(policy_trl), _grads(policy_ours)
    assert g_trl.abs().max() > 1e-3  # a real gradient
    assert (g_trl - g_ours).abs().max().item() < 1e-4
    for name in ("rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"):
        assert trl._metrics["train"][name][0] == pytest.approx(ours._metrics["train"][name][0], abs=1e-4), name


def _losses_by_step(curves: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in curves.read_text().splitlines()]
    return {r["step"]: r["value"] for r in rows if r["name"] == "loss"}


def test_a_training_step_leaves_the_same_loss_as_trl_padded(toy_model_dir, toy_tokenizer, tmp_path):
    cfg = _cfg(max_steps=3, rpo_alpha=0.5)
    padded = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(toy_model_dir), args=trl_dpo_config(cfg, tmp_path / "trl"),
                        train_dataset=_conversational(PAIRS), processing_class=toy_tokenizer)
    padded.train()
    trl_losses = {h["step"]: h["loss"] for h in padded.state.log_history if "loss" in h}
    train_dpo(AutoModelForCausalLM.from_pretrained(toy_model_dir), toy_tokenizer, PAIRS, cfg, tmp_path / "ours",
              reference_key="toy-base")
    ours = _losses_by_step(tmp_path / "ours" / "curves.jsonl")
    assert sorted(ours) == sorted(trl_losses) == [1, 2, 3]
    assert ours[2] != pytest.approx(ours[1], abs=1e-3)  # the steps did change the model
    for step in (1, 2, 3):
        assert abs(ours[step] - trl_losses[step]) < 1e-4, step


def test_diagnostics_are_long_format_and_logged_at_the_end(toy_model_dir, toy_tokenizer, tmp_path):
    cfg = _cfg(max_steps=3, log_every=2, beta=0.2)
    result = train_dpo(AutoModelForCausalLM.from_pretrained(toy_model_dir), toy_tokenizer, PAIRS, cfg, tmp_path / "run",
                       reference_key="toy-base", ref_cache_dir=tmp_path / "cache")
    rows = [json.loads(line) for line in result.diagnostics_path.read_text().splitlines()]
    assert all(set(r) == {"step", "name", "value"} for r in rows)
    steps_by_name: dict[str, list[int]] = {}
    for r in rows:
        steps_by_name.setdefault(r["name"], []).append(r["step"])
    for name in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                 "logps/rejected", "margin/logp", "margin/logp_change", "margin/prob", "gamma_ref"):
        assert steps_by_name[name] == [2, 3], name  # every log_every steps, and the last step
    gammas = {r["name"]: r["value"] for r in rows if r["name"].startswith("gamma_ref/")}
    cached = json.loads(result.ref_cache_path.read_text())
    expected = [0.2 * (c - r) for c, r in zip(cached["chosen"], cached["rejected"])]
    assert [gammas[f"gamma_ref/{i}"] for i in range(len(PAIRS))] == pytest.approx(expected)
    assert result.mean_gamma_ref == pytest.approx(sum(expected) / len(expected)) == pytest.approx(gammas["gamma_ref/mean"])
    assert result.steps == 3 and result.pairs_used == len(PAIRS) and result.tokens_seen > 0
    assert (tmp_path / "run" / "model" / "config.json").exists()
    last = {r["name"]: r["value"] for r in rows if r["step"] == 3}
    assert last["margin/logp_change"] == pytest.approx(last["rewards/margins"] / 0.2, rel=1e-4, abs=1e-4)


def test_beta_sweep_shares_one_reference_pass(toy_model_dir, toy_tokenizer, tmp_path):
    hits = []
    for beta in (0.05, 0.1, 0.2, 0.5):
        result = train_dpo(AutoModelForCausalLM.from_pretrained(toy_model_dir), toy_tokenizer, PAIRS,
                           _cfg(beta=beta, max_steps=1), tmp_path / f"b{beta}", reference_key="toy-base",
                           ref_cache_dir=tmp_path / "cache")
        hits.append(result.ref_cache_hit)
    assert hits == [False, True, True, True] and len(list((tmp_path / "cache").glob("*.json"))) == 1
    other = train_dpo(AutoModelForCausalLM.from_pretrained(toy_model_dir), toy_tokenizer, PAIRS, _cfg(max_steps=1),
                      tmp_path / "other", reference_key="other-weights", ref_cache_dir=tmp_path / "cache")
    assert not other.ref_cache_hit


def test_resume_from_checkpoint(toy_model_dir, toy_tokenizer, tmp_path):
    out = tmp_path / "run"
    first = train_dpo(AutoModelForCausalLM.from_pretrained(toy_model_dir), toy_tokenizer, PAIRS,
                      _cfg(max_steps=2, save_every=1), out, reference_key="toy-base")
    again = train_dpo(AutoModelForCausalLM.from_pretrained(toy_model_dir), toy_tokenizer, PAIRS,
                      _cfg(max_steps=3, save_every=1), out, reference_key="toy-base")
    assert first.resumed_from is None and again.resumed_from.endswith("checkpoint-2") and again.steps == 3
    names = [json.loads(line)["name"] for line in (out / "curves.jsonl").read_text().splitlines()]
    assert names.count("gamma_ref/mean") == 1  # per-pair γ written once, not again on resume


# --- the toy lab: DPO on verifier-labelled pairs ------------------------------------------------

def _heldout_pairs(n: int) -> list[dict]:
    """Held-out prompts (never trained on): gold answer vs a verifier-wrong answer."""
    rng = random.Random(0)
    rows = build_toy("eval", n, seed=1)
    return [{"prompt": r["prompt"], "chosen": r["answer"], "source": r["task"],
             "rejected": wrong_answer(Example(r["task"], r["prompt"], r["answer"]), rng)} for r in rows]


def _margins(model, tokenizer, pairs) -> tuple[float, float]:
    """(mean log π(chosen) − log π(rejected), share of pairs where chosen is the likelier one)."""
    rows, _ = tokenize_pairs(tokenizer, pairs, 128)
    chosen, rejected = compute_reference_logps(model, rows, tokenizer.pad_token_id, 128)
    diffs = [c - r for c, r in zip(chosen, rejected)]
    return sum(diffs) / len(diffs), sum(d > 0 for d in diffs) / len(diffs)


@pytest.mark.slow
def test_dpo_on_verifier_labelled_pairs_raises_the_margin_of_the_sft_model(sft_model_dir, tmp_path):
    """DPO + NLL (TOYLAB's recipe) on the toy lab's verifier-labelled pairs, judged on held-out prompts.
    Measured here: mean margin 2.42 -> 3.38, chosen preferred on 0.71 -> 0.74 of held-out pairs (~20 s)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(sft_model_dir)
    model = AutoModelForCausalLM.from_pretrained(sft_model_dir)
    heldout = _heldout_pairs(150)
    margin_before, wins_before = _margins(model, tokenizer, heldout)
    cfg = _cfg(lr=3e-4, beta=0.1, rpo_alpha=1.0, batch_size=16, micro_batch_size=16, max_steps=80, log_every=20,
               lr_scheduler="cosine", warmup_ratio=0.05, max_length=128)
    train_dpo(model, tokenizer, build_toy("prefs", 400, seed=0), cfg, tmp_path / "dpo", reference_key="sft")
    margin_after, wins_after = _margins(model, tokenizer, heldout)
    print(f"held-out margin {margin_before:.2f} -> {margin_after:.2f}, chosen preferred {wins_before:.2f} -> {wins_after:.2f}")
    assert margin_after > margin_before + 0.5 and wins_after >= wins_before
