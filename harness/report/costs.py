"""What a study's trials cost and what shared stages saved: stage seconds (GPU-hours when stages
record GPUs, else CPU-seconds), per trial counting every stage of its chain, and spent counting each
distinct stage once. `harness effects` puts these beside every effect (harness/report/effects.py)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from harness.report.effects import Results


def stage_costs(stages: pd.DataFrame) -> tuple[pd.Series, str]:
    """Cost of each distinct stage (the try that trained it: reuses record ~0 s) and the unit:
    GPU-hours when any stage records GPUs, else CPU-seconds."""
    if stages.empty:
        return pd.Series(dtype=float), "CPU-s"
    frame = stages.assign(seconds=pd.to_numeric(stages["seconds"], errors="coerce").fillna(0.0))
    gpus = pd.to_numeric(frame["gpus"], errors="coerce").fillna(0) if "gpus" in frame else pd.Series(0, index=frame.index)
    if (gpus > 0).any():
        return (frame["seconds"] * gpus / 3600).groupby(frame["stage_key"]).max(), "GPU-h"
    return frame.groupby("stage_key")["seconds"].max(), "CPU-s"


def trial_costs(results: Results) -> pd.DataFrame:
    """Per trial: its full cost (every stage of its chain, shared ones included) and its stage keys."""
    cost, _ = stage_costs(results.stages)
    if results.stages.empty:
        return pd.DataFrame(columns=["trial_id", "cost", "keys"])
    keys = results.stages.groupby("trial_id")["stage_key"].agg(lambda s: sorted(set(s)))
    return pd.DataFrame({"trial_id": keys.index, "keys": keys.values,
                         "cost": [float(sum(cost.get(k, 0.0) for k in ks)) for ks in keys.values]})


def spent_and_saved(per_trial: pd.DataFrame, cost: pd.Series) -> dict[str, float]:
    full = float(per_trial["cost"].sum())
    distinct = set().union(*per_trial["keys"]) if len(per_trial) else set()
    spent = float(sum(cost.get(k, 0.0) for k in distinct))
    return {"trials": len(per_trial), "full": full, "spent": spent, "saved": full - spent,
            "per_trial": full / len(per_trial) if len(per_trial) else math.nan}


def study_cost(results: Results) -> dict[str, Any]:
    """Full cost (as if no stage were shared), what was spent, and what dedup of shared stages saved."""
    cost, unit = stage_costs(results.stages)
    return {**spent_and_saved(trial_costs(results), cost), "unit": unit}
