"""DPO loss functions on per-sequence log-prob sums, with TRL 1.16's semantics.

All functions take summed completion log-probs of the policy and the reference for each pair:
    Δ = (log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))

loss_type
  sigmoid  −log σ(βΔ)                      (standard DPO; TRL `sigmoid`)
           with label smoothing ε: −(1−ε)·log σ(βΔ) − ε·log σ(−βΔ)
           (conservative DPO, TRL < 1.0's `sigmoid`; TRL 1.16's `sigmoid` has no ε)
  ipo      (Δ̄ − 1/(2β))², Δ̄ on log-ratios divided by completion lengths (TRL `ipo`)
  hinge    max(0, 1 − βΔ)                   (TRL `hinge`)
rpo_alpha  adds α · NLL of the chosen completions, a token mean over the micro-batch
           (TRL < 1.0's `rpo_alpha`; TRL 1.16's `loss_type=[..., "sft"]`, `loss_weights=[1, α]`)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "ipo", "hinge")


@dataclass(frozen=True)
class LossSpec:
    loss_type: str = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0
    rpo_alpha: float | None = None

    def __post_init__(self):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"unknown loss_type {self.loss_type!r} (known: {', '.join(LOSS_TYPES)})")
        if self.label_smoothing and self.loss_type != "sigmoid":
            raise ValueError("label_smoothing applies to the sigmoid loss only")

    @classmethod
    def from_config(cls, cfg) -> "LossSpec":
        return cls(cfg.loss_type, cfg.beta, cfg.label_smoothing, cfg.rpo_alpha)


@dataclass
class PairLogps:
    """Summed completion log-probs of one micro-batch, one entry per pair."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    ref_chosen: torch.Tensor
    ref_rejected: torch.Tensor
    chosen_lengths: torch.Tensor  # completion tokens per chosen sequence
    rejected_lengths: torch.Tensor

    @property
    def chosen_logratios(self) -> torch.Tensor:
        return self.chosen - self.ref_chosen

    @property
    def rejected_logratios(self) -> torch.Tensor:
        return self.rejected - self.ref_rejected


def sigmoid_loss(delta: torch.Tensor, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    return -(1 - label_smoothing) * F.logsigmoid(beta * delta) - label_smoothing * F.logsigmoid(-beta * delta)


def hinge_loss(delta: torch.Tensor, beta: float) -> torch.Tensor:
    return torch.relu(1 - beta * delta)


def ipo_loss(logps: PairLogps, beta: float) -> torch.Tensor:
    chosen = logps.chosen_logratios / logps.chosen_lengths.clamp(min=1)
    rejected = logps.rejected_logratios / logps.rejected_lengths.clamp(min=1)
    return (chosen - rejected - 1 / (2 * beta)) ** 2


def per_pair_loss(logps: PairLogps, spec: LossSpec) -> torch.Tensor:
    """The preference term of each pair (no NLL term)."""
    delta = logps.chosen_logratios - logps.rejected_logratios
    if spec.loss_type == "sigmoid":
        return sigmoid_loss(delta, spec.beta, spec.label_smoothing)
    if spec.loss_type == "hinge":
        return hinge_loss(delta, spec.beta)
    return ipo_loss(logps, spec.beta)


def chosen_nll(logps: PairLogps) -> torch.Tensor:
    """Negative log-likelihood of the chosen completions, averaged over their tokens."""
    return -logps.chosen.sum() / logps.chosen_lengths.sum().clamp(min=1)


def dpo_loss(logps: PairLogps, spec: LossSpec) -> torch.Tensor:
    """Micro-batch loss: mean preference term, plus α·NLL on chosen when rpo_alpha is set."""
    loss = per_pair_loss(logps, spec).mean()
    if spec.rpo_alpha:
        loss = loss + spec.rpo_alpha * chosen_nll(logps)
    return loss


def gamma_ref(ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """sDPO's γ per pair: β·(log π_ref(y_w|x) − log π_ref(y_l|x)), the reference's log-ratio term."""
    return beta * (ref_chosen - ref_rejected)
