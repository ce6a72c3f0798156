"""What tables and plots read from the results store: per-trial scores, curves, axes, provenance.

Everything goes through a read-only connection (harness.store.query). A stage shared by several
trials (one SFT under a β sweep) is one measurement: scores and curves are de-duplicated by stage
key before they are averaged, so shared stages do not shrink a standard error.
"""
from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd

from harness.config.loader import ConfigError
from harness.store.schema import TRIAL_COLUMNS, axis_name

SEED_AXIS = "seed"


class NoData(ConfigError):
    """The study lacks what a table or plot needs; one line saying what is missing."""


def metric_key(text: str) -> tuple[str, str]:
    """`benchmark/metric` or `benchmark.metric` (split at the first `/` or `.`) -> (benchmark, metric)."""
    match = re.match(r"^([^/.]+)[/.](.+)$", text.strip())
    if not match:
        raise ConfigError(f"metric {text!r} must look like BENCHMARK/METRIC or BENCHMARK.METRIC", key="columns")
    return match.group(1), match.group(2)


def studies(con) -> list[str]:
    """Studies in the store, most recently started first."""
    rows = con.execute("SELECT study FROM trials GROUP BY study ORDER BY max(started_at) DESC NULLS LAST, study").fetchall()
    return [r[0] for r in rows]


def trials(con, study: str) -> pd.DataFrame:
    """The study's trials with axis columns named by their axis (`sft.packing`), all-NULL axes dropped."""
    frame = con.execute("SELECT * FROM trials WHERE study = ? ORDER BY number", [study]).df()
    axis_cols = [c for c in frame.columns if c not in TRIAL_COLUMNS and frame[c].notna().any()]
    frame = frame[list(TRIAL_COLUMNS) + axis_cols]
    return frame.rename(columns={c: axis_name(c) for c in axis_cols})


def axes_of(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in TRIAL_COLUMNS and c not in ("stage_key", "stage", "kind", "benchmark",
                                                                              "metric", "value", "stderr", "step", "name")]


def varying_axes(frame: pd.DataFrame, axes: list[str], exclude=(SEED_AXIS,)) -> list[str]:
    return [a for a in axes if a not in exclude and frame[a].astype(str).nunique() > 1]


def metric_names(con, study: str) -> list[str]:
    rows = con.execute("SELECT DISTINCT m.benchmark || '/' || m.metric AS k FROM metrics m JOIN trials t USING (trial_id) "
                       "WHERE t.study = ? ORDER BY k", [study]).fetchall()
    return [r[0] for r in rows]


def eval_stage_names(con, study: str) -> list[str]:
    rows = con.execute("SELECT DISTINCT m.stage FROM metrics m JOIN trials t USING (trial_id) WHERE t.study = ?",
                       [study]).fetchall()
    return sorted(r[0] for r in rows)


def curve_names(con, study: str) -> list[str]:
    rows = con.execute("SELECT DISTINCT c.name FROM train_curves c JOIN trials t USING (trial_id) WHERE t.study = ? "
                       "ORDER BY c.name", [study]).fetchall()
    return [r[0] for r in rows]


def scores(con, study: str, metrics: list[tuple[str, str]], stage: str | None = None,
           complete_only: bool = True) -> pd.DataFrame:
    """One row per (trial, metric): the metric from the trial's last eval stage that has it (or from `stage`),
    joined with the trial's axes. Columns: trial_id, stage_key, stage, benchmark, metric, value, stderr, axes…"""
    if not metrics:
        return pd.DataFrame()
    wanted = pd.DataFrame(metrics, columns=["benchmark", "metric"])
    con.register("_wanted_metrics", wanted)
    try:
        frame = con.execute("""
            WITH ranked AS (
                SELECT m.trial_id, m.stage_key, m.stage, m.benchmark, m.metric, m.value, m.stderr,
                       row_number() OVER (PARTITION BY m.trial_id, m.benchmark, m.metric
                                          ORDER BY s.position DESC NULLS LAST) AS r
                FROM metrics m
                JOIN _wanted_metrics w ON w.benchmark = m.benchmark AND w.metric = m.metric
                JOIN trials t ON t.trial_id = m.trial_id
                LEFT JOIN stages s ON s.trial_id = m.trial_id AND s.stage_key = m.stage_key AND s.name = m.stage
                WHERE t.study = ? AND (? IS NULL OR m.stage = ?) AND (NOT ? OR t.status = 'complete')
            )
            SELECT trial_id, stage_key, stage, benchmark, metric, value, stderr FROM ranked WHERE r = 1
            """, [study, stage, stage, complete_only]).df()
    finally:
        con.unregister("_wanted_metrics")
    return frame.merge(trials(con, study), on="trial_id")


def curves(con, study: str, names: list[str], kinds: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Curve rows (trial_id, stage, stage_key, kind, step, name, value) joined with the trial's axes."""
    frame = con.execute("""
        SELECT c.trial_id, c.stage, c.stage_key, s.kind, c.step, c.name, c.value
        FROM train_curves c JOIN trials t USING (trial_id)
        LEFT JOIN stages s ON s.trial_id = c.trial_id AND s.stage_key = c.stage_key AND s.name = c.stage
        WHERE t.study = ? AND list_contains(?, c.name)
        ORDER BY c.trial_id, c.stage, c.name, c.step
        """, [study, names]).df()
    if kinds is not None:
        frame = frame[frame["kind"].isin(kinds)]
    return frame.merge(trials(con, study), on="trial_id")


def trial_steps(con, study: str) -> pd.DataFrame:
    """Per trial: optimizer steps summed over its finished training stages (from their manifests)."""
    return con.execute("""
        SELECT s.trial_id, sum(m.steps) AS steps
        FROM stages s JOIN trials t USING (trial_id) JOIN manifests m USING (stage_key)
        WHERE t.study = ? AND s.kind <> 'eval' AND s.done
        GROUP BY s.trial_id
        """, [study]).df()


def stage_axes(frame: pd.DataFrame, axes: list[str]) -> list[str]:
    """Axes that can change a stage's result: constant among the trials sharing each stage key.
    (An SFT stage shared across a β sweep does not depend on β.)"""
    if frame.empty:
        return []
    keep = []
    for axis in axes:
        spread = frame.groupby("stage_key")[axis].agg(lambda s: s.astype(str).nunique())
        if (spread <= 1).all():
            keep.append(axis)
    return keep


def provenance(con, study: str, trial_ids: list[str]) -> str:
    """`study S · N of M trials · git SHA` for the trials a table or plot used."""
    total = con.execute("SELECT count(*) FROM trials WHERE study = ?", [study]).fetchone()[0]
    shas = [r[0] for r in con.execute("""
        SELECT DISTINCT m.git_sha FROM stages s JOIN manifests m USING (stage_key)
        WHERE list_contains(?, s.trial_id) AND m.git_sha IS NOT NULL ORDER BY 1""", [list(trial_ids)]).fetchall()]
    git = ", ".join(sha[:12] for sha in shas[:3]) + (f" (+{len(shas) - 3} more)" if len(shas) > 3 else "")
    return f"study {study} · {len(set(trial_ids))} of {total} trials · git {git or 'unknown'}"


def format_value(value: Any) -> str:
    """An axis value as a row label: 0.1 -> '0.1', 1000.0 -> '1000', None -> '—'."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def sort_key(value: Any) -> tuple:
    """Numbers in numeric order before text; missing values last."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return (2, 0, "")
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0, str(value))


def short_axis(axis: str) -> str:
    """Label of an axis in a legend or header: its last dotted part (`sft.loss_mask` -> `loss_mask`)."""
    return axis.rsplit(".", 1)[-1]


def resolve_study(con, requested: str | None, rank=None) -> tuple[str, list[str]]:
    """The study to report on, and notes. Without a name: the study that `rank(study)` scores highest
    (None: unusable), the latest first among equals; with no `rank`, the latest study."""
    names = studies(con)
    if not names:
        raise NoData("the results store has no trials (run `harness ingest`)")
    if requested is not None:
        if requested not in names:
            raise ConfigError(f"no study {requested!r} in the results store (it has: {', '.join(names)})", key="study")
        return requested, []
    scored = [(name, 0 if rank is None else rank(name)) for name in names]
    candidates = sorted([(s, i, n) for i, (n, s) in enumerate(scored) if s is not None], key=lambda x: (-x[0], x[1]))
    if not candidates:
        raise NoData(f"no study in the results store has the data needed (studies: {', '.join(names)})")
    chosen, others = candidates[0][2], [c[2] for c in candidates[1:]]
    notes = [f"picked study {chosen}; also usable: {', '.join(others)} (choose with --study)"] if others else []
    return chosen, notes
