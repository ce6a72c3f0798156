"""Schema of a grid file's `search:` section: search beyond grids with an Optuna sampler.

    search:
      sampler: tpe            # tpe | random | grid
      n_trials: 12
      objective: toy.accuracy # BENCHMARK.METRIC of the trial's last eval
      direction: maximize
      space:                  # ranges for continuous axes; lists are choices
        dpo.beta: {low: 0.01, high: 1.0, log: true}
        dpo.lr: {low: 1.0e-5, high: 1.0e-3, log: true}
      pruner: {type: median, n_startup_trials: 2}   # prune at an intermediate eval
      # or inside the DPO stage, on its held-out eval curve (needs dpo.eval_every):
      # pruner: {type: median, metric: dpo.eval_rewards/margins}

Lists under the grid file's `grid:` become choices of the search too, and `conditional:` axes are
sampled only when their `when` holds. The runner, shared stages, results store and tables are the
grid's: each sampled point is resolved into the same stage chain a grid point would get.
"""
from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeInt, PositiveInt, field_validator, model_validator

from harness.config.schema import Strict


class RangeSpec(Strict):
    """A continuous (or integer) axis: sampled in [low, high], on a log scale when `log`."""

    low: float
    high: float
    log: bool = False
    step: float | None = None
    type: Literal["float", "int"] = "float"

    @model_validator(mode="after")
    def _ordered(self):
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("step and log cannot be combined (Optuna samples log ranges continuously)")
        return self


class PrunerSpec(Strict):
    """Optuna pruning on intermediate values; a trial that falls below the median (or percentile) of
    earlier trials at the same step is stopped and recorded as pruned.

    metric BENCHMARK.METRIC (default: the objective): reported by the eval stages that run before a
    trial's last one (`eval.after: [preference, final]`), step = training stages done.
    metric dpo.CURVE (e.g. dpo.eval_rewards/margins, dpo.eval_loss): the DPO stage's held-out eval
    curve (`dpo.eval_every`), reported while the stage runs, step = DPO step; a pruned trial's DPO
    stage is stopped midway."""

    type: Literal["median", "percentile", "none"] = "median"
    n_startup_trials: NonNegativeInt = 2  # trials that are never pruned, to set the bar
    n_warmup_steps: NonNegativeInt = 0  # steps before pruning starts
    percentile: float = 50.0  # type percentile: keep trials above this percentile
    metric: str | None = None
    direction: Literal["maximize", "minimize"] | None = None  # the metric's (default: the search's direction)


class SearchSpec(Strict):
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    n_trials: PositiveInt
    objective: str
    direction: Literal["maximize", "minimize"] = "maximize"
    seed: int = 0  # the sampler's seed
    n_startup_trials: PositiveInt | None = None  # TPE's random start (default: n_trials // 3, at least 2, at most 10)
    space: dict[str, RangeSpec | list] = {}
    pruner: PrunerSpec | None = None

    @field_validator("objective")
    @classmethod
    def _benchmark_metric(cls, value):
        if "." not in value.strip(".") or value.startswith("."):
            raise ValueError(f"objective {value!r} must look like BENCHMARK.METRIC (e.g. toy.accuracy)")
        return value

    @field_validator("space")
    @classmethod
    def _non_empty_choices(cls, value):
        for axis, spec in value.items():
            if isinstance(spec, list) and not spec:
                raise ValueError(f"{axis}: empty list of choices")
        return value

    def startup_trials(self) -> int:
        return self.n_startup_trials or max(2, min(10, self.n_trials // 3))
