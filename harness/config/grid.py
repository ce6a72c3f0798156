"""Schema of an ablation grid file: a base pipeline plus axes.

    pipeline: {sft: {...}, dpo: {...}, sdpo: {...}, sft_continue: {...}, online_dpo: {...}, eval: {...}}
    method: dpo            # preference stage: dpo | sdpo | sft_continue (equal-compute control) | none
    grid:  {sft.packing: [none, isolated], dpo.beta: [0.1, 0.5]}      # cartesian product
    zip:   [{sft.packing: [none, isolated], sft.batch_size: [64, 4]}]  # varied together
    conditional: [{when: {method: sdpo}, grid: {sdpo.split: [random, stratified]}}]
    seeds: [0, 1]          # sets `seed` of every training stage
Axes are dotted keys into the pipeline (`STAGE.key.subkey`, list items by index) or the
top-level `method` / `online`.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator

from harness.config.schema import Strict
from harness.config.search import SearchSpec

STAGE_NAMES = ("sft", "dpo", "sdpo", "sft_continue", "online_dpo", "eval")
TOP_LEVEL_AXES = ("method", "online")


class EvalStageSpec(Strict):
    suite: list[str] = ["toy"]
    judge: str | None = None  # a judge registry name or a judge YAML file
    limit: PositiveInt | None = None
    data_dir: str | None = None
    after: list[Literal["sft", "preference", "final"]] = ["final"]  # which models of a trial to evaluate

    @field_validator("suite", mode="before")
    @classmethod
    def _comma_list(cls, value):
        return value.split(",") if isinstance(value, str) else value


class SlurmSpec(Strict):
    partition: str | None = None
    gpus_per_node: NonNegativeInt = 0
    cpus_per_task: PositiveInt = 2
    timeout_min: PositiveInt = 240
    account: str | None = None
    local: bool = False  # submitit's local executor (testing without a cluster)


class ExecutionSpec(Strict):
    workers: PositiveInt = 1
    retries: NonNegativeInt = 1  # a failed trial is retried this many times, then left failed
    launcher: Literal["local", "slurm"] = "local"
    slurm: SlurmSpec = SlurmSpec()
    threads_per_worker: PositiveInt | None = None  # CPU threads per worker (default: cores / workers)
    gpus_per_stage: NonNegativeInt = 0  # > 1: stages run under `accelerate launch`
    deepspeed_config: str | None = None


class ConditionalAxes(Strict):
    when: dict[str, Any]
    grid: dict[str, list] = {}


class EffectsSpec(Strict):
    reference: dict[str, Any] = {}  # axis -> the level `harness effects` compares against (default: first listed)


class GridConfig(Strict):
    study: str | None = None  # default: the file's stem
    description: str = ""
    results_dir: str = "results"
    method: Literal["dpo", "sdpo", "sft_continue", "none"] = "dpo"
    online: bool = True  # run pipeline.online_dpo when it is given
    objective: str | None = None  # BENCHMARK.METRIC that Optuna records (default: first eval metric)
    pipeline: dict[str, dict] = Field(default_factory=dict)
    grid: dict[str, list] = {}
    zip: list[dict[str, list]] = []
    conditional: list[ConditionalAxes] = []
    seeds: list[int] = [0]
    execution: ExecutionSpec = ExecutionSpec()
    search: SearchSpec | None = None  # sample points with Optuna instead of expanding the grid (harness/grid/search.py)
    effects: EffectsSpec = EffectsSpec()

    @field_validator("pipeline")
    @classmethod
    def _known_stages(cls, value):
        unknown = sorted(set(value) - set(STAGE_NAMES))
        if unknown:
            raise ValueError(f"unknown stage {unknown[0]!r} (stages: {', '.join(STAGE_NAMES)})")
        return value

    @field_validator("seeds")
    @classmethod
    def _some_seed(cls, value):
        if not value:
            raise ValueError("empty seeds list")
        return value
