"""Pydantic schemas of the preference stages (DPO; sDPO and online DPO build on it).

Defaults are LIONs' (arXiv 2407.06542) DPO settings: lr 5e-7, batch 128 through gradient
accumulation, max_length 2048; β 0.05, 2 epochs, linear schedule with 10% warmup as in their released
config (LionAlignment configs/gemma-2b/dpo/LION-Gemma-2b-dpo-v1.0.yaml). Every setting LION ablates
is a key a grid can vary: `beta`,
`max_length`, `data[i].size`/`seed` (a seeded subset), `data[i].weight` (mixture),
`max_steps`/`epochs`, and `reference` (the reference model).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from harness.config.eval import JudgeConfig
from harness.config.schema import DataSources, LoopSpec, ModelSpec


PairSources = DataSources


class PreferenceLoss(LoopSpec):
    """Loss settings shared by every DPO-family stage (TRL 1.16 semantics, see trainers/losses.py)."""

    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    beta: PositiveFloat = 0.05
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5)  # conservative DPO; sigmoid only
    rpo_alpha: float | None = Field(None, ge=0.0)  # weight of an NLL term on chosen (TRL's rpo_alpha)
    max_length: PositiveInt = 2048
    lr: PositiveFloat = 5e-7
    batch_size: PositiveInt = 128
    epochs: PositiveFloat = 2.0
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"

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
    # Held-out eval while training: every `eval_every` steps, DPO's loss and rewards on `eval_pairs`
    # pairs held out of `data` (seeded), logged as eval_* curves; a search's pruner can stop the stage on them.
    eval_every: PositiveInt | None = None
    eval_pairs: PositiveInt = 64


class SDPOConfig(DPOConfig):
    """Stepwise DPO (arXiv 2403.19270): the pairs split into steps; step t's reference is step t−1's
    model, step 1's is `model` (the SFT model). Loop settings (max_steps, epochs) apply per step,
    and each step restarts the LR schedule.

    split: natural (one step per data source, in `order` or data order), easy_to_hard (natural,
    sources sorted by reward accuracy: `difficulty` probe|logprob, see trainers/sdpo.py), random
    (`steps` equal random chunks), stratified (`steps` equal chunks with the same source mixture),
    explicit (`explicit`: per step a source name, a list of names, or a number of pairs).
    A source's name is its `data[i].name`, else its `source` string."""

    stage: Literal["sdpo"] = "sdpo"
    split: Literal["natural", "easy_to_hard", "random", "stratified", "explicit"] = "natural"
    steps: PositiveInt | None = None
    order: list[str] | None = None
    explicit: list[PositiveInt | str | list[str]] | None = None
    target_init: Literal["previous", "sft"] = "previous"
    difficulty: Literal["probe", "logprob"] = "probe"
    probe_steps: PositiveInt = 20  # DPO steps of the easy_to_hard difficulty probe

    @model_validator(mode="after")
    def _split_settings(self):
        if self.reference is not None:
            raise ValueError("sDPO sets its references itself (step 1: `model`, step t: step t-1's model); "
                             "remove `reference`")
        if self.split in ("random", "stratified") and self.steps is None:
            raise ValueError(f"split {self.split} needs `steps`")
        if (self.split == "explicit") != (self.explicit is not None):
            raise ValueError("`explicit` goes with split explicit, and split explicit needs it")
        if self.order is not None and self.split != "natural":
            raise ValueError(f"`order` applies to split natural only (easy_to_hard finds its own), not {self.split}")
        return self


class OnlineDPOConfig(DPOConfig):
    """Online DPO (LIONs, arXiv 2407.06542): `rounds` of sample `n` responses per prompt from the
    current policy, score them with `judge`, pair best vs worst, DPO. Loop settings apply per round.

    online_samples: total sampled responses (rounds × prompts per round × n), LION's sample-count
    axis; it sets the prompts per round (or give `prompts_per_round` instead). `prompts`: the prompt
    pool (default: the prompts of `data`); `data`: preference pairs, the offline pool that
    `offline_ratio` (= offline / all pairs of a round) mixes in. `reference`: the reference of
    rounds after the first (sft: always the SFT model; previous: the previous round's policy)."""

    stage: Literal["online_dpo"] = "online_dpo"
    reference: Literal["sft", "previous"] = "sft"
    prompts: PairSources | None = None
    rounds: PositiveInt = 1
    n: int = Field(5, ge=2)  # LION: 5 samples per prompt
    temperature: PositiveFloat = 0.8  # LION: 0.8
    max_new_tokens: PositiveInt = 512
    online_samples: PositiveInt | None = None
    prompts_per_round: PositiveInt | None = None
    offline_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    judge: str | JudgeConfig = "verifier"  # a judge name, a judge YAML file or a judge config (harness/judges)
    sampler: Literal["auto", "hf", "vllm"] = "auto"  # vllm: GPU with the `gpu` extra, else hf
    sampler_python: str | None = None  # interpreter of a separate vllm environment
    sample_batch_size: PositiveInt = 64

    @model_validator(mode="after")
    def _one_prompt_budget(self):
        if (self.online_samples is None) == (self.prompts_per_round is None):
            raise ValueError("give exactly one of online_samples (total sampled responses) and prompts_per_round")
        if self.online_samples is not None and self.online_samples < self.rounds * self.n:
            raise ValueError(f"online_samples {self.online_samples} is fewer than rounds × n = {self.rounds * self.n}")
        return self
