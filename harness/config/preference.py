"""Pydantic schemas of the preference stages (DPO; sDPO and online DPO build on it).

Defaults are LIONs' (arXiv 2407.06542) DPO settings: lr 5e-7, batch 128 through gradient
accumulation, max_length 2048. Every setting LION ablates is a key a grid can vary: `beta`,
`max_length`, `data[i].size`/`seed` (a seeded subset), `data[i].weight` (mixture),
`max_steps`/`epochs`, and `reference` (the reference model).
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, PositiveFloat, PositiveInt, model_validator

from harness.config.schema import DataSpec, LoopSpec, ModelSpec


def _data_list(value):
    """`data:` may be one source (string or mapping) or a list of them."""
    if isinstance(value, (str, dict)):
        value = [value]
    if isinstance(value, list):
        value = [{"source": v} if isinstance(v, str) else v for v in value]
    return value


PairSources = Annotated[list[DataSpec], BeforeValidator(_data_list), Field(min_length=1)]


class PreferenceLoss(LoopSpec):
    """Loss settings shared by every DPO-family stage (TRL 1.16 semantics, see trainers/losses.py)."""

    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    beta: PositiveFloat = 0.1
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5)  # conservative DPO; sigmoid only
    rpo_alpha: float | None = Field(None, ge=0.0)  # weight of an NLL term on chosen (TRL's rpo_alpha)
    max_length: PositiveInt = 2048
    lr: PositiveFloat = 5e-7
    batch_size: PositiveInt = 128

    @model_validator(mode="after")
    def _smoothing_needs_sigmoid(self):
        if self.label_smoothing and self.loss_type != "sigmoid":
            raise ValueError(f"label_smoothing applies to loss_type sigmoid only, not {self.loss_type}")
        return self


class DPOConfig(PreferenceLoss):
    """One DPO stage: `model` (the policy's start, usually an SFT stage dir) trained on `data`
    pairs {prompt, chosen, rejected} against `reference` (null: the policy's initial weights)."""

    stage: Literal["dpo"] = "dpo"
    model: ModelSpec = ModelSpec()
    reference: ModelSpec | None = None
    data: PairSources
    output_dir: str | None = None
    ref_cache: bool = True  # reuse reference log-probs across runs ($HARNESS_CACHE/ref_logps)
