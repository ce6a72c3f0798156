"""Which choices matter: paired main effects and interactions with bootstrap CIs, noise flags, costs.

Works on plain DataFrames (`Results`), so the statistics are testable on synthetic tables;
`load_results` builds them from the results store (read-only).

Main effect of level L of axis A on a metric, against A's reference level R: trials at R and at L
are paired when they agree on every other axis and on the seed. Axes that cannot be matched are
left out of the match, and the output says so: an axis aliased with A (zipped with it: each level
of A comes with its own value) and an axis nested in a level (set only there, e.g. `sdpo.split`
under `method: sdpo`; those trials are averaged within the pair). A retried grid point counts once
(its completed try). Points without a partner, or whose trial failed, are excluded and counted.

Reported per effect: the mean paired difference L − R, its 95% CI over pairs (percentile bootstrap,
2000 resamples seeded per effect, from 10 pairs; Student t below that, where a bootstrap over a
handful of pairs is barely wider than their range), the number of pairs and of excluded points, and
the noise:
- bench_se: the benchmark's own standard error of one paired difference, sqrt(se_R² + se_L²)
  averaged over pairs (AlpacaEval SE, Arena-Hard CI/3.92, lm-eval stderr, toy binomial SE);
- seed_sd: the spread across seeds, pooled (root mean variance) over cells that differ only by seed.
Rule: an effect is **within noise** when its CI covers 0, or when |mean difference| is at most twice
max(bench_se, √2·seed_sd/√pairs). The benchmark term does not shrink with pairs (every pair is scored
on the same questions, so a question set that happens to favour one level favours it in every pair);
the seed term does. Pairs that share a stage (the same SFT under two β) are treated as independent.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.report.costs import spent_and_saved, stage_costs, trial_costs

SEED_AXIS = "seed"
N_BOOT = 2000
MAX_LEVELS = 8  # a numeric axis with more distinct values than this (and no listed levels) is continuous
MISSING = "∅"


@dataclass
class Results:
    """One study's results as frames. `trials`: trial_id, status and one column per axis (dotted names);
    `scores`: trial_id, benchmark, metric, value, stderr; `stages`: trial_id, stage_key, kind, seconds
    (and optional gpus). `levels`: each axis's levels in the grid file's order; `reference`: axis -> level."""

    study: str
    trials: pd.DataFrame
    scores: pd.DataFrame
    stages: pd.DataFrame = field(default_factory=pd.DataFrame)
    axes: list[str] = field(default_factory=list)
    levels: dict[str, list] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    continuous: set[str] = field(default_factory=set)  # axes sampled from ranges (a search): no levels to pair
    objective: str | None = None  # BENCHMARK.METRIC the study optimised: reported first


# ---------------------------------------------------------------- levels

def canon(value: Any) -> str:
    """A comparable text form of an axis value: 0.1, 0.10 and "0.1" (a store-widened column) agree."""
    if value is None or (not isinstance(value, (list, dict, str)) and pd.isna(value)):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(float(value))
    text = str(value)
    try:
        return repr(float(text))
    except ValueError:
        return {"True": "true", "False": "false"}.get(text, text)


def _sort_key(text: str) -> tuple:
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def axis_levels(results: Results, axis: str) -> list[str]:
    """Canonical levels present in the trials: listed ones first, in the grid file's order."""
    present = {canon(v) for v in results.trials[axis]} - {MISSING}
    listed = [c for c in dict.fromkeys(canon(v) for v in results.levels.get(axis, [])) if c in present]
    return listed + sorted(present - set(listed), key=_sort_key)


def labels(results: Results, axis: str) -> dict[str, Any]:
    """Canonical level -> the value as the trials hold it (for display)."""
    out: dict[str, Any] = {}
    for value in results.trials[axis]:
        out.setdefault(canon(value), value)
    return out


def reference_level(results: Results, axis: str) -> str | None:
    levels = axis_levels(results, axis)
    if not levels:
        return None
    wanted = results.reference.get(axis)
    if wanted is not None and canon(wanted) in levels:
        return canon(wanted)
    return levels[0]


def is_continuous(results: Results, axis: str) -> bool:
    if axis in results.continuous:
        return True
    levels = axis_levels(results, axis)
    numeric = all(_sort_key(c)[0] == 0 for c in levels)
    return numeric and len(levels) > MAX_LEVELS and not results.levels.get(axis)


def effect_axes(results: Results) -> list[str]:
    """Axes with at least two levels, seed excluded, in the order given."""
    return [a for a in results.axes if a != SEED_AXIS and len(axis_levels(results, a)) > 1]


def same_trials(results: Results) -> dict[tuple[str, str], tuple[str, str]]:
    """(axis, level) -> the earlier (axis, level) holding exactly the same trials. Zipped axes (packing
    none with batch 64) are one comparison, reported once under the first axis."""
    first: dict[frozenset, tuple[str, str]] = {}
    out = {}
    for axis in effect_axes(results):
        ref = reference_level(results, axis)
        for level in axis_levels(results, axis):
            ids = frozenset(results.trials.loc[results.trials[axis].map(canon) == level, "trial_id"])
            if level != ref and ids in first:
                out[axis, level] = first[ids]
            first.setdefault(ids, (axis, level))
    return out


# ---------------------------------------------------------------- axes a trial does not use

PREFERENCE_SECTIONS = {"dpo": "dpo", "sdpo": "sdpo", "sft": "sft_continue"}  # kind of the `preference` stage -> section


def used_sections(records: pd.DataFrame) -> set[str]:
    """Pipeline sections (sft, dpo, sdpo, sft_continue, online_dpo, eval) a trial's stage chain runs."""
    used = set()
    for name, kind in zip(records["name"], records["kind"]):
        name = str(name)
        used.add("eval" if name.startswith("eval") else PREFERENCE_SECTIONS.get(kind, kind) if name == "preference" else name)
    return used


def mask_unused_axes(trials: pd.DataFrame, stages: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Blank an axis in trials whose chain lacks its stage (`online_dpo.*` with online off, `dpo.*` under
    method sdpo), so it counts as nested in the levels that use it instead of blocking the pairing."""
    if stages.empty or "name" not in stages:
        return trials
    sections = {tid: used_sections(rows) for tid, rows in stages.groupby("trial_id")}
    trials = trials.copy()
    for axis in axes:
        head = axis.split(".")[0]
        if head in ("sft", "dpo", "sdpo", "sft_continue", "online_dpo", "eval"):
            unused = trials["trial_id"].map(lambda t: t in sections and head not in sections[t])
            trials[axis] = trials[axis].astype(object).where(~unused, None)
    return trials


# ---------------------------------------------------------------- one metric's table

def points(results: Results) -> pd.DataFrame:
    """One row per distinct grid point (retries collapsed: its completed try, else its last):
    trial_id, status, tries, and the axes in canonical form."""
    frame = results.trials.copy()
    for axis in results.axes:
        frame[axis] = frame[axis].map(canon)
    frame["_done"] = frame["status"].eq("complete")
    frame["_order"] = range(len(frame))
    frame = frame.sort_values(["_done", "_order"])
    grouped = frame.groupby(results.axes, dropna=False, sort=False) if results.axes else None
    if grouped is None:
        return frame.tail(1).assign(tries=len(frame))[["trial_id", "status", "tries"]]
    last = grouped.tail(1).copy()
    last["tries"] = grouped["trial_id"].transform("size").loc[last.index]
    return last[["trial_id", "status", "tries", *results.axes]].reset_index(drop=True)


def metric_table(results: Results, benchmark: str, metric: str) -> pd.DataFrame:
    """Points with this metric's value and stderr; `usable` marks completed points that have a value."""
    wanted = results.scores[(results.scores["benchmark"] == benchmark) & (results.scores["metric"] == metric)]
    wanted = wanted.drop_duplicates("trial_id", keep="last")[["trial_id", "value", "stderr"]]
    table = points(results).merge(wanted, on="trial_id", how="left")
    table["value"] = pd.to_numeric(table["value"], errors="coerce")
    table["stderr"] = pd.to_numeric(table["stderr"], errors="coerce")
    table["usable"] = table["status"].eq("complete") & table["value"].notna()
    return table


def match_axes(table: pd.DataFrame, axes: list[str], varied: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(axes to pair on, aliased axes, nested axes) for comparing the levels of `varied` within `table`."""
    match, aliased, nested = [], [], []
    groups = table.groupby(varied, sort=False)
    for axis in axes:
        if axis in varied:
            continue
        per_group = groups[axis].agg(lambda s: set(s))
        if any(values == {MISSING} for values in per_group) and not all(values == {MISSING} for values in per_group):
            nested.append(axis)
        elif all(len(v) == 1 for v in per_group) and len(set().union(*per_group)) > 1:
            aliased.append(axis)
        else:
            match.append(axis)
    return match, aliased, nested


def _cell(rows: pd.DataFrame) -> tuple[float, float]:
    """Mean value and root-mean-square stderr of a cell's usable rows."""
    se = rows["stderr"].dropna()
    return float(rows["value"].mean()), float(np.sqrt((se ** 2).mean())) if len(se) else math.nan


def pairs(table: pd.DataFrame, axis: str, ref: str, level: str, match: list[str]) -> tuple[pd.DataFrame, int, int]:
    """Paired cells (ref_value, level_value, ref_se, level_se), points excluded, and how many of those failed."""
    sub = table[table[axis].isin([ref, level])]
    rows, used = [], set()
    for _, cell in (sub.groupby(match, sort=False, dropna=False) if match else [((), sub)]):
        ok = cell[cell["usable"]]
        a, b = ok[ok[axis] == ref], ok[ok[axis] == level]
        if len(a) and len(b):
            (ra, sa), (rb, sb) = _cell(a), _cell(b)
            rows.append({"ref_value": ra, "level_value": rb, "ref_se": sa, "level_se": sb})
            used.update(a["trial_id"]), used.update(b["trial_id"])
    excluded = sub[~sub["trial_id"].isin(used)]
    return pd.DataFrame(rows, columns=["ref_value", "level_value", "ref_se", "level_se"]), len(excluded), int((~excluded["usable"]).sum())


# ---------------------------------------------------------------- statistics

def rng_for(seed: int, *parts: Any) -> np.random.Generator:
    """A generator seeded by the effect's identity, so one effect's CI does not depend on the others."""
    return np.random.default_rng([seed, zlib.crc32("|".join(map(str, parts)).encode())])


MIN_BOOTSTRAP = 10  # fewer values: Student t (a percentile bootstrap over 2 values is just their range)
T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262]  # t quantile 0.975, df 1..9


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT, level: float = 0.95) -> tuple[float, float]:
    """95% CI of the mean: percentile bootstrap from MIN_BOOTSTRAP values, Student t below; NaN for fewer than two."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    if len(values) < MIN_BOOTSTRAP and level == 0.95:
        half = T_975[len(values) - 2] * values.std(ddof=1) / math.sqrt(len(values))
        return float(values.mean() - half), float(values.mean() + half)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def seed_spread(table: pd.DataFrame, axes: list[str]) -> float:
    """Pooled SD across seeds: root mean variance over cells that differ only by seed."""
    others = [a for a in axes if a != SEED_AXIS]
    ok = table[table["usable"]]
    if SEED_AXIS not in axes or ok.empty:
        return math.nan
    groups = ok.groupby(others, dropna=False)["value"] if others else [(None, ok["value"])]
    variances = [g.var(ddof=1) for _, g in groups if len(g) >= 2]
    return float(np.sqrt(np.mean(variances))) if variances else math.nan


def noise_of(bench_se: float, seed_sd: float, n_pairs: int = 1) -> float:
    """The noise of a mean over n_pairs paired differences (the module docstring's rule)."""
    known = [x for x in (bench_se, math.sqrt(2) * seed_sd / math.sqrt(max(n_pairs, 1))) if not math.isnan(x)]
    return max(known) if known else math.nan


def within_noise(mean: float, ci: tuple[float, float], noise: float) -> bool | None:
    """The module docstring's rule; None when neither a CI nor a noise estimate exists."""
    covers = None if math.isnan(ci[0]) else ci[0] <= 0 <= ci[1]
    small = None if math.isnan(noise) else abs(mean) <= 2 * noise
    if covers is None and small is None:
        return None
    return bool(covers) or bool(small)


def verdict(n_pairs: int, flag: bool | None) -> str:
    if n_pairs == 0:
        return "no pairs"
    if flag is None:
        return "undetermined (1 pair, no SE)"
    return "within noise" if flag else "effect"


# ---------------------------------------------------------------- costs per axis level

def level_costs(results: Results, axes: list[str] | None = None) -> pd.DataFrame:
    """Per axis level: trials, cost per trial, spent (distinct stages), saved by sharing within the level."""
    cost, unit = stage_costs(results.stages)
    per_trial = trial_costs(results).merge(results.trials[["trial_id", *results.axes]], on="trial_id")
    rows, repeated = [], same_trials(results)
    for axis in axes if axes is not None else effect_axes(results):
        shown = labels(results, axis)
        levels = axis_levels(results, axis)
        if all((axis, level) in repeated for level in levels if level != reference_level(results, axis)):
            continue  # every comparison of this axis is another axis's
        for level in levels:
            at = per_trial[per_trial[axis].map(canon) == level]
            rows.append({"axis": axis, "level": shown[level], "unit": unit, **spent_and_saved(at, cost)})
    return pd.DataFrame(rows, columns=["axis", "level", "unit", "trials", "full", "spent", "saved", "per_trial"])


# ---------------------------------------------------------------- main effects

def metrics_of(results: Results, benchmark: str | None = None) -> list[tuple[str, str]]:
    """Metrics to report: those of `benchmark` (all benchmarks if None) that carry a standard error
    somewhere (headline scores; bookkeeping rows such as Arena-Hard's ci_low do not)."""
    scores = results.scores
    if benchmark is not None:
        scores = scores[scores["benchmark"] == benchmark]
    with_se = scores[scores["stderr"].notna()]
    chosen = with_se if not with_se.empty else scores
    found = list(dict.fromkeys(zip(chosen["benchmark"], chosen["metric"])))
    objective = tuple(results.objective.split(".", 1)) if results.objective else None
    benchmarks = list(dict.fromkeys(b for b, _ in found))
    # the objective first; then each benchmark in order of appearance, its headline (shortest name) first
    return sorted(found, key=lambda m: (m != objective, benchmarks.index(m[0]), len(m[1]), m[1]))


def main_effects(results: Results, metrics: list[tuple[str, str]] | None = None, n_boot: int = N_BOOT,
                 seed: int = 0) -> pd.DataFrame:
    """One row per (metric, axis, non-reference level); see the module docstring for the columns' meaning."""
    metrics = metrics if metrics is not None else metrics_of(results)
    per_trial = trial_costs(results).set_index("trial_id")["cost"] if not results.stages.empty else pd.Series(dtype=float)
    _, unit = stage_costs(results.stages)
    rows, repeated = [], same_trials(results)
    for benchmark, metric in metrics:
        table = metric_table(results, benchmark, metric)
        for axis in effect_axes(results):
            if is_continuous(results, axis):
                continue
            ref, shown = reference_level(results, axis), labels(results, axis)
            for level in axis_levels(results, axis):
                if level == ref or (axis, level) in repeated:
                    continue
                rows.append({"benchmark": benchmark, "metric": metric, "axis": axis, "reference": shown[ref],
                             "level": shown[level], "cost_unit": unit,
                             **effect_row(table, results.axes, axis, ref, level, n_boot,
                                          rng_for(seed, benchmark, metric, axis, level)),
                             **_level_cost(table, per_trial, axis, ref, level)})
    return pd.DataFrame(rows)


def effect_row(table: pd.DataFrame, axes: list[str], axis: str, ref: str, level: str, n_boot: int,
               rng: np.random.Generator) -> dict[str, Any]:
    sub = table[table[axis].isin([ref, level])]
    match, aliased, nested = match_axes(sub, axes, [axis])
    paired, excluded, failed = pairs(table, axis, ref, level, match)
    diffs = (paired["level_value"] - paired["ref_value"]).to_numpy()
    mean = float(diffs.mean()) if len(diffs) else math.nan
    ci = bootstrap_ci(diffs, rng, n_boot)
    combined = np.sqrt(paired["ref_se"] ** 2 + paired["level_se"] ** 2).dropna()
    bench_se = float(combined.mean()) if len(combined) else math.nan
    seed_sd = seed_spread(sub, axes)
    noise = noise_of(bench_se, seed_sd, len(diffs))
    flag = within_noise(mean, ci, noise) if len(diffs) else None
    return {"mean_diff": mean, "ci_low": ci[0], "ci_high": ci[1], "n_pairs": len(diffs), "excluded": excluded,
            "excluded_failed": failed, "ref_mean": float(paired["ref_value"].mean()) if len(diffs) else math.nan,
            "level_mean": float(paired["level_value"].mean()) if len(diffs) else math.nan,
            "bench_se": bench_se, "seed_sd": seed_sd, "noise": noise, "within_noise": flag,
            "verdict": verdict(len(diffs), flag), "paired_on": ",".join(match),
            "aliased": ",".join(aliased), "nested": ",".join(nested)}


def _level_cost(table: pd.DataFrame, per_trial: pd.Series, axis: str, ref: str, level: str) -> dict[str, float]:
    def mean_cost(lvl: str) -> float:
        ids = table.loc[table[axis] == lvl, "trial_id"]
        values = per_trial.reindex(ids).dropna()
        return float(values.mean()) if len(values) else math.nan
    return {"cost_ref": mean_cost(ref), "cost_level": mean_cost(level)}
