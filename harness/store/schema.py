"""The results store's tables: a contract for users' SQL (documented in docs/results-schema.md).

`trials` has one row per Optuna trial of every ingested study, with one column per grid axis
(the axis name with `.` replaced by `__`: `sft.packing` -> `sft__packing`); columns are added as
studies bring new axes. The other tables hang off `trial_id` (`<study>/<trial number>`).
Only the columns below are promised; new columns may be added, none renamed or removed.
"""
from __future__ import annotations

from harness.config.loader import ConfigError

TABLES = ("trials", "stages", "metrics", "train_curves", "manifests")

DDL = {
    "trials": """
        CREATE TABLE IF NOT EXISTS trials (
            trial_id VARCHAR,       -- '<study>/<number>', unique across studies
            study VARCHAR,          -- Optuna study name = grid name
            status VARCHAR,         -- pending | running | complete | failed | pruned
            error VARCHAR,          -- the runner's error text of a failed trial
            started_at TIMESTAMP,
            finished_at TIMESTAMP,
            number INTEGER,         -- Optuna trial number within the study
            point INTEGER           -- grid point index
            -- then one column per axis, added by ingest
        )""",
    "stages": """
        CREATE TABLE IF NOT EXISTS stages (
            stage_key VARCHAR,      -- hash key of the stage (shared stages appear once per trial)
            kind VARCHAR,           -- sft | dpo | sdpo | online_dpo | eval
            trial_id VARCHAR,
            status VARCHAR,         -- the runner's stage status: pending | running | complete | failed
            path VARCHAR,           -- the stage directory
            seconds DOUBLE,
            name VARCHAR,           -- the stage name in the trial, e.g. 'sft', 'dpo', 'eval:dpo'
            position INTEGER,       -- order of the stage in the trial's pipeline (0 first)
            done BOOLEAN            -- the stage directory held DONE at ingest (only then are results read)
        )""",
    "metrics": """
        CREATE TABLE IF NOT EXISTS metrics (
            trial_id VARCHAR,
            stage VARCHAR,          -- stage name of the eval stage, e.g. 'eval:dpo' (else its kind)
            benchmark VARCHAR,      -- e.g. 'toy', 'openllm'
            metric VARCHAR,         -- e.g. 'accuracy', 'arc_challenge/acc_norm'
            value DOUBLE,
            stderr DOUBLE,
            n BIGINT,
            failures BIGINT,
            stage_key VARCHAR
        )""",
    "train_curves": """
        CREATE TABLE IF NOT EXISTS train_curves (
            trial_id VARCHAR,
            stage VARCHAR,          -- stage name, e.g. 'sft', 'dpo'
            step BIGINT,
            name VARCHAR,           -- e.g. 'loss', 'rewards/margins', 'margin/prob', 'sdpo/gamma_ref_mean'
            value DOUBLE,
            stage_key VARCHAR
        )""",
    "manifests": """
        CREATE TABLE IF NOT EXISTS manifests (
            stage_key VARCHAR,      -- one row per stage key
            config_json VARCHAR,    -- the resolved stage config (JSON)
            versions_json VARCHAR,  -- package versions (JSON)
            git_sha VARCHAR,
            data_fingerprint VARCHAR,
            kind VARCHAR,
            steps BIGINT,
            tokens_seen BIGINT,
            final_loss DOUBLE,
            seconds DOUBLE,
            manifest_json VARCHAR   -- the whole manifest.json
        )""",
    # bookkeeping: what was ingested for a trial, so an unchanged trial is skipped
    "ingest_state": """
        CREATE TABLE IF NOT EXISTS ingest_state (
            trial_id VARCHAR,
            fingerprint VARCHAR,
            ingested_at TIMESTAMP
        )""",
}

TRIAL_COLUMNS = ("trial_id", "study", "status", "error", "started_at", "finished_at", "number", "point")
STATUSES = ("pending", "running", "complete", "failed", "pruned")


class StoreError(ConfigError):
    """A results-store failure the user can act on (locked file, refused statement); one line."""


def axis_column(axis: str) -> str:
    """Column name of a grid axis: dots become `__` (`sft.packing` -> `sft__packing`)."""
    column = axis.replace(".", "__")
    if column in TRIAL_COLUMNS:
        raise StoreError(f"axis {axis!r} has the name of a fixed trials column; rename the axis",
                         key=axis)
    return column


def axis_name(column: str) -> str:
    return column.replace("__", ".")


def create_tables(con) -> None:
    for ddl in DDL.values():
        con.execute(ddl)
