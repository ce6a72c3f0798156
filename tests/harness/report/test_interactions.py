"""Interactions: cell means with CIs and paired interaction contrasts on a planted 3 × 2 interaction."""
from itertools import product

import numpy as np
import pandas as pd

from harness.report.effects import Results
from harness.report.interactions import interaction

MASK, PACKING = "sft.loss_mask", "sft.packing"


def synthetic(score, axes: dict[str, list], seeds=range(8), noise=0.02) -> Results:
    rng = np.random.default_rng(7)
    points = [dict(zip([*axes, "seed"], v)) for v in product(*axes.values(), seeds)]
    trials = pd.DataFrame([{"trial_id": f"i/{n}", "status": "complete", **p} for n, p in enumerate(points)])
    scores = pd.DataFrame([{"trial_id": f"i/{n}", "benchmark": "toy", "metric": "accuracy", "stderr": 0.02,
                            "value": score(p) + rng.normal(0, noise)} for n, p in enumerate(points)])
    return Results("i", trials, scores, axes=[*axes, "seed"], levels={k: list(v) for k, v in axes.items()})


def test_cells_and_contrasts_recover_a_planted_interaction():
    def score(p):  # LION's 3 × 2 SFT table shape: packing × loss mask, masking helps only with packing
        return 0.3 + 0.2 * (p[MASK] == "assistant") * (p[PACKING] != "none")

    results = synthetic(score, {PACKING: ["none", "grouped", "isolated"], MASK: ["all", "assistant"]}, noise=0.02)
    cells, contrasts = interaction(results, PACKING, MASK, "toy", "accuracy")
    assert len(cells) == 6 and set(cells["n"]) == {8}
    cell = cells[(cells["level_a"] == "isolated") & (cells["level_b"] == "assistant")].iloc[0]
    assert cell["ci_low"] < 0.5 < cell["ci_high"]
    assert list(contrasts["level_a"]) == ["grouped", "isolated"]
    assert (contrasts["ci_low"] > 0.1).all() and (contrasts["n_groups"] == 8).all()
