"""Axis importance per metric through Optuna's importance evaluators (fANOVA and Optuna's default,
PED-ANOVA), on the study's completed trials.

Each trial becomes an Optuna FrozenTrial whose params are its axis values and whose value is the
metric, in an in-memory study (direction maximize unless told otherwise). Axes with few discrete
levels are categorical; numeric axes with many values (a search's continuous axes) are float
ranges, on a log scale when they span two decades or more. An axis missing in some trials (a
conditional axis) gets the level "n/a" there. The seed is kept as an axis when it varies: it is
the noise reference, so an axis no more important than the seed is not distinguishable from noise.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any

import optuna
import pandas as pd

from harness.report.effects import MAX_LEVELS, MISSING, SEED_AXIS, Results, canon, metric_table, metrics_of

MIN_TRIALS = 3
NA = "n/a"


def evaluators(seed: int = 0) -> dict[str, Any]:
    """Name shown in the output -> evaluator: fANOVA, and PED-ANOVA, the default of Optuna 4+."""
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    return {"fANOVA": FanovaImportanceEvaluator(seed=seed), "PED-ANOVA (Optuna default)": PedAnovaImportanceEvaluator()}


def distribution(values: pd.Series) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution of one axis over the trials (values already in display form)."""
    present = values[values != NA]
    numeric = pd.to_numeric(present, errors="coerce")
    if len(present) == len(values) and numeric.notna().all() and numeric.nunique() > MAX_LEVELS:
        low, high = float(numeric.min()), float(numeric.max())
        return optuna.distributions.FloatDistribution(low, high, log=low > 0 and high / low >= 100)
    return optuna.distributions.CategoricalDistribution(sorted(set(values), key=str))


def _param(value: Any) -> Any:
    """An axis value as an Optuna param (categorical choices must be None, bool, int, float or str)."""
    if canon(value) == MISSING:
        return NA
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def importance_study(table: pd.DataFrame, trials: pd.DataFrame, axes: list[str], direction: str = "maximize") -> optuna.Study:
    """An in-memory study holding one complete trial per usable point of `table` (axes from `trials`)."""
    usable = table[table["usable"]][["trial_id", "value"]].merge(trials[["trial_id", *axes]], on="trial_id")
    params = usable[axes].map(_param)
    dists = {a: distribution(params[a]) for a in axes}
    with _quiet_optuna():  # its INFO line about a new in-memory study is noise under `harness effects`
        study = optuna.create_study(direction=direction)
    study.add_trials([optuna.trial.create_trial(params={a: _value(row[a], dists[a]) for a in axes}, distributions=dists,
                                                value=float(value))
                      for (_, row), value in zip(params.iterrows(), usable["value"])])
    return study


@contextlib.contextmanager
def _quiet_optuna():
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _value(value: Any, dist) -> Any:
    return float(value) if isinstance(dist, optuna.distributions.FloatDistribution) else value


def varying(trials: pd.DataFrame, axes: list[str]) -> list[str]:
    return [a for a in axes if trials[a].map(canon).nunique() > 1]


def axis_importance(results: Results, metrics: list[tuple[str, str]] | None = None, direction: str = "maximize",
                    seed: int = 0) -> pd.DataFrame:
    """Rows: benchmark, metric, evaluator, axis, importance (normalized to sum 1 per metric and evaluator),
    n_trials, note. A metric without enough trials or varying axes gets one row with a note instead."""
    rows = []
    axes = varying(results.trials, results.axes)
    for benchmark, metric in metrics if metrics is not None else metrics_of(results):
        table = metric_table(results, benchmark, metric)
        n = int(table["usable"].sum())
        base = {"benchmark": benchmark, "metric": metric, "n_trials": n}
        problem = _problem(table, axes, n)
        if problem:
            rows.append({**base, "evaluator": None, "axis": None, "importance": math.nan, "note": problem})
            continue
        study = importance_study(table, results.trials, axes, direction)
        for name, evaluator in evaluators(seed).items():
            rows += _evaluate(study, name, evaluator, base)
    return pd.DataFrame(rows, columns=["benchmark", "metric", "evaluator", "axis", "importance", "n_trials", "note"])


def _problem(table: pd.DataFrame, axes: list[str], n: int) -> str | None:
    if not axes:
        return "no axis has two levels"
    if n < MIN_TRIALS:
        return f"only {n} completed trials (importance needs {MIN_TRIALS})"
    if table.loc[table["usable"], "value"].nunique() < 2:
        return "the metric has one value across trials"
    return None


def _evaluate(study: optuna.Study, name: str, evaluator, base: dict) -> list[dict]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = optuna.importance.get_param_importances(study, evaluator=evaluator)
        except (ValueError, RuntimeError) as err:
            return [{**base, "evaluator": name, "axis": None, "importance": math.nan, "note": f"{name} failed: {err}"}]
    said = sorted({str(w.message).split(". ")[0] for w in caught if "importance" in str(w.message).lower()})
    note = f"{name}: {'; '.join(said)}" if said else None
    return [{**base, "evaluator": name, "axis": axis, "importance": float(value),
             "note": "noise reference" if axis == SEED_AXIS else note} for axis, value in result.items()]


def results_from_study(study: optuna.Study, benchmark: str = "objective", metric: str = "value") -> Results:
    """An Optuna study (e.g. a search's ledger) as Results: each trial's axes (its `axes` user attr, else its
    params), its state, and its objective value as `benchmark/metric`."""
    trials, scores = [], []
    for t in study.get_trials(deepcopy=False):
        trial_id = f"{study.study_name}/{t.number}"
        status = {"COMPLETE": "complete", "FAIL": "failed"}.get(t.state.name, t.state.name.lower())
        trials.append({"trial_id": trial_id, "status": status, **(t.user_attrs.get("axes") or t.params)})
        if t.value is not None:
            scores.append({"trial_id": trial_id, "benchmark": benchmark, "metric": metric, "value": t.value, "stderr": None})
    frame = pd.DataFrame(trials)
    axes = [c for c in frame.columns if c not in ("trial_id", "status")]
    return Results(study.study_name, frame, pd.DataFrame(scores, columns=["trial_id", "benchmark", "metric", "value", "stderr"]),
                   axes=axes)
