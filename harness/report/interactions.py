"""Interactions of two axes: cell means with bootstrap CIs, and paired interaction contrasts
(difference of differences) with bootstrap CIs; the pairing rules are harness.report.effects'."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.report.effects import (N_BOOT, Results, axis_levels, bootstrap_ci, labels, match_axes, metric_table,
                                    reference_level, rng_for)


def interaction(results: Results, axis_a: str, axis_b: str, benchmark: str, metric: str, n_boot: int = N_BOOT,
                seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cells, contrasts). Cells: mean of each (a, b) level pair over its points, with a bootstrap CI over
    them. Contrasts: (y[a,b] − y[a0,b]) − (y[a,b0] − y[a0,b0]) per non-reference (a, b), paired on the
    other axes and seed, with a bootstrap CI: how much b changes a's effect."""
    table = metric_table(results, benchmark, metric)
    la, lb = labels(results, axis_a), labels(results, axis_b)
    cells = []
    for a in axis_levels(results, axis_a):
        for b in axis_levels(results, axis_b):
            values = table[(table[axis_a] == a) & (table[axis_b] == b) & table["usable"]]["value"].to_numpy()
            ci = bootstrap_ci(values, rng_for(seed, benchmark, metric, axis_a, a, axis_b, b), n_boot)
            cells.append({"benchmark": benchmark, "metric": metric, "axis_a": axis_a, "level_a": la[a],
                          "axis_b": axis_b, "level_b": lb[b], "mean": float(values.mean()) if len(values) else math.nan,
                          "ci_low": ci[0], "ci_high": ci[1], "n": len(values)})
    return pd.DataFrame(cells), _contrasts(results, table, axis_a, axis_b, benchmark, metric, n_boot, seed)


def _contrasts(results, table, axis_a, axis_b, benchmark, metric, n_boot, seed) -> pd.DataFrame:
    ref_a, ref_b = reference_level(results, axis_a), reference_level(results, axis_b)
    la, lb = labels(results, axis_a), labels(results, axis_b)
    match, _, _ = match_axes(table, results.axes, [axis_a, axis_b])
    ok = table[table["usable"]]
    rows = []
    for a in [x for x in axis_levels(results, axis_a) if x != ref_a]:
        for b in [x for x in axis_levels(results, axis_b) if x != ref_b]:
            diffs = []
            for _, cell in (ok.groupby(match, sort=False, dropna=False) if match else [((), ok)]):
                y = {(x, z): cell[(cell[axis_a] == x) & (cell[axis_b] == z)]["value"] for x in (a, ref_a) for z in (b, ref_b)}
                if all(len(v) for v in y.values()):
                    m = {k: v.mean() for k, v in y.items()}
                    diffs.append((m[a, b] - m[ref_a, b]) - (m[a, ref_b] - m[ref_a, ref_b]))
            ci = bootstrap_ci(np.array(diffs), rng_for(seed, "x", benchmark, metric, axis_a, a, axis_b, b), n_boot)
            rows.append({"benchmark": benchmark, "metric": metric, "axis_a": axis_a, "level_a": la[a], "ref_a": la[ref_a],
                         "axis_b": axis_b, "level_b": lb[b], "ref_b": lb[ref_b],
                         "contrast": float(np.mean(diffs)) if diffs else math.nan, "ci_low": ci[0], "ci_high": ci[1],
                         "n_groups": len(diffs)})
    return pd.DataFrame(rows)
