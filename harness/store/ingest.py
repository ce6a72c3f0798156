"""`harness ingest`: load a study's trials and finished stage directories into results/harness.duckdb.

The only writer of the DuckDB file. Workers write files; this reads the Optuna storage (the trial
ledger) and every stage directory that holds DONE, and loads them trial by trial, each trial in one
transaction that first deletes the trial's rows: running it again, or after a crash half-way, leaves
no duplicate. A trial whose ledger entry and DONE files are unchanged since the last ingest is
skipped. Afterwards every table is snapshotted to `<db dir>/parquet/<table>.parquet` (atomic rename),
which `harness query` reads while another process holds the DuckDB file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from harness.store.schema import TABLES, StoreError, axis_column, create_tables

TRIAL_STATES = {"RUNNING": "running", "COMPLETE": "complete", "FAIL": "failed", "PRUNED": "pruned",
                "WAITING": "pending"}
PER_TRIAL_TABLES = ("trials", "stages", "metrics", "train_curves", "ingest_state")


# ---------------------------------------------------------------- where things are

def default_db_path(results_dir: str | Path = "results") -> Path:
    return Path(results_dir) / "harness.duckdb"


def parquet_dir_for(db_path: str | Path) -> Path:
    return Path(db_path).parent / "parquet"


def open_storage(storage_url: str | Path | None, study: str | None, results_dir: str | Path = "results"):
    """An Optuna storage: an RDB URL (`sqlite:///…`, `postgresql://…`) or a JournalStorage file
    (default `<results_dir>/<study>/optuna.journal`)."""
    import optuna

    if storage_url is not None and "://" in str(storage_url):
        return str(storage_url)
    path = Path(storage_url) if storage_url is not None else Path(results_dir) / str(study) / "optuna.journal"
    if not path.is_file():
        raise StoreError(f"no Optuna journal at {path}", key=study)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def load_trials(study: str, storage) -> list:
    import optuna

    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise StoreError(f"no study {study!r} in the storage (it has: {', '.join(names) or 'none'})") from None


def discover_studies(results_dir: str | Path) -> list[tuple[str, Path]]:
    """(study, journal) for every study in `<results_dir>/*/optuna.journal`."""
    import optuna

    found = []
    for journal in sorted(Path(results_dir).glob("*/optuna.journal")):
        storage = open_storage(journal, None)
        found += [(name, journal) for name in optuna.get_all_study_names(storage)]
    return found


# ---------------------------------------------------------------- DuckDB connection

def connect_writer(db_path: str | Path, wait_s: float = 10.0):
    """Open the DuckDB file for writing, waiting up to `wait_s` for another process's lock."""
    import duckdb

    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(str(db_path))
        except duckdb.IOException as err:
            if not is_lock_error(err) or time.monotonic() >= deadline:
                raise locked_error(db_path, err) from None
            time.sleep(0.2)


def is_lock_error(err: Exception) -> bool:
    return "lock" in str(err).lower()


def locked_error(db_path: Path, err: Exception) -> StoreError:
    holder = re.search(r"\(PID (\d+)\)", str(err))
    who = f" (PID {holder.group(1)})" if holder else ""
    if not is_lock_error(err):
        return StoreError(f"cannot open {db_path}: {str(err).splitlines()[0]}")
    return StoreError(f"{db_path} is locked by another process{who}; wait for it to finish, or query the "
                      f"Parquet snapshot with `harness query --parquet`")


# ---------------------------------------------------------------- reading one trial

def resolve_stage_dir(path: str | None, results_dir: Path) -> Path | None:
    if not path:
        return None
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return results_dir / p


def _timestamp(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        stamp = value
    else:
        try:
            stamp = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    return stamp.astimezone(timezone.utc).replace(tzinfo=None) if stamp.tzinfo else stamp


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise StoreError(f"{path}: unreadable in a stage marked DONE ({err})") from None


def trial_fingerprint(trial, stages: list[dict], done: list[bool]) -> str:
    payload = {"state": trial.state.name, "attrs": trial.user_attrs, "done": done}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def point_of(trial) -> int | None:
    """The grid point: the `point` user attr, else the runner's Optuna param `point` (set or enqueued)."""
    value = trial.user_attrs.get("point", trial.params.get("point"))
    if value is None:
        value = (trial.system_attrs.get("fixed_params") or {}).get("point")
    return None if value is None else int(value)


def is_bookkeeping(trial) -> bool:
    """A trial the runner pruned because its point was already taken: no result, not a try."""
    return bool(trial.user_attrs.get("duplicate"))


def trial_row(study: str, trial, axis_columns: dict[str, str]) -> dict:
    attrs = trial.user_attrs
    row = {
        "trial_id": f"{study}/{trial.number}",
        "study": study,
        "status": TRIAL_STATES.get(trial.state.name, trial.state.name.lower()),
        "error": attrs.get("error"),
        "started_at": _timestamp(attrs.get("started_at") or trial.datetime_start),
        "finished_at": _timestamp(attrs.get("finished_at") or trial.datetime_complete),
        "number": trial.number,
        "point": point_of(trial),
    }
    for axis, value in (attrs.get("axes") or {}).items():
        row[axis_columns[axis]] = value
    return row


def stage_rows(trial_id: str, stages: list[dict], done: list[bool]) -> list[dict]:
    return [{"stage_key": s.get("stage_key"), "kind": s.get("kind"), "trial_id": trial_id, "status": s.get("status"),
             "path": s.get("path"), "seconds": s.get("seconds"), "name": stage_name(s), "position": i,
             "done": is_done}
            for i, (s, is_done) in enumerate(zip(stages, done))]


def stage_name(stage: dict) -> str:
    return stage.get("name") or stage.get("kind") or "?"


def manifest_row(stage_key: str, manifest: dict) -> dict:
    return {
        "stage_key": stage_key,
        "config_json": json.dumps(manifest.get("config"), sort_keys=True, default=str),
        "versions_json": json.dumps(manifest.get("versions"), sort_keys=True, default=str),
        "git_sha": manifest.get("git_sha"),
        "data_fingerprint": manifest.get("data_fingerprint"),
        "kind": manifest.get("kind"),
        "steps": manifest.get("steps"),
        "tokens_seen": manifest.get("tokens_seen"),
        "final_loss": manifest.get("final_loss"),
        "seconds": manifest.get("seconds"),
        "manifest_json": json.dumps(manifest, sort_keys=True, default=str),
    }


def read_done_stage(trial_id: str, stage: dict, stage_dir: Path) -> dict[str, list | pd.DataFrame]:
    """Rows of one stage directory that holds DONE: its manifest, metrics and curves."""
    key, name = stage.get("stage_key"), stage_name(stage)
    out: dict[str, Any] = {"manifests": [], "metrics": [], "train_curves": None}
    if (stage_dir / "manifest.json").exists():
        out["manifests"].append(manifest_row(key, _read_json(stage_dir / "manifest.json")))
    if (stage_dir / "metrics.json").exists():
        rows = _read_json(stage_dir / "metrics.json")
        out["metrics"] = [{"trial_id": trial_id, "stage": name, "benchmark": r.get("benchmark"),
                           "metric": r.get("metric"), "value": r.get("value"), "stderr": r.get("stderr"),
                           "n": r.get("n"), "failures": r.get("failures"), "stage_key": key} for r in rows]
    if (stage_dir / "curves.parquet").exists():
        curves = pd.read_parquet(stage_dir / "curves.parquet", columns=["step", "name", "value"])
        out["train_curves"] = curves.assign(trial_id=trial_id, stage=name, stage_key=key)
    return out


# ---------------------------------------------------------------- axis columns

def _duck_type(values: Iterable[Any]) -> str:
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return "VARCHAR"
    if kinds == {bool}:
        return "BOOLEAN"
    if kinds == {int}:
        return "BIGINT"
    if kinds <= {int, float}:
        return "DOUBLE"
    return "VARCHAR"


def _widen(old: str, new: str) -> str:
    if old == new:
        return old
    if {old, new} <= {"BIGINT", "DOUBLE", "INTEGER"}:
        return "DOUBLE"
    return "VARCHAR"


def ensure_axis_columns(con, trials: list) -> dict[str, str]:
    """Add (or widen) one trials column per axis; return {axis: column}. Non-scalar values become JSON text."""
    values: dict[str, list] = {}
    for trial in trials:
        for axis, value in (trial.user_attrs.get("axes") or {}).items():
            values.setdefault(axis, []).append(value)
    existing = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_name = 'trials'").fetchall())
    columns = {}
    for axis, seen in values.items():
        column, wanted = axis_column(axis), _duck_type(seen)
        if column not in existing:
            con.execute(f'ALTER TABLE trials ADD COLUMN "{column}" {wanted}')
        elif _widen(existing[column], wanted) != existing[column]:
            con.execute(f'ALTER TABLE trials ALTER COLUMN "{column}" SET DATA TYPE {_widen(existing[column], wanted)}')
        columns[axis] = column
    return columns


def _axis_value(value: Any, column_type: str) -> Any:
    if value is None or column_type != "VARCHAR" or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


# ---------------------------------------------------------------- writing

def _insert(con, table: str, rows: list[dict] | pd.DataFrame | None) -> int:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows or [])
    if frame.empty:
        return 0
    con.register("_ingest_rows", frame)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _ingest_rows")
    finally:
        con.unregister("_ingest_rows")
    return len(frame)


def ingest_trial(con, study: str, trial, axis_columns: dict[str, str], column_types: dict[str, str],
                 results_dir: Path, force: bool = False) -> bool:
    """Replace one trial's rows in a single transaction. Returns False when it was unchanged."""
    stages = list(trial.user_attrs.get("stages") or [])
    dirs = [resolve_stage_dir(s.get("path"), results_dir) for s in stages]
    done = [d is not None and (d / "DONE").exists() for d in dirs]
    trial_id = f"{study}/{trial.number}"
    fingerprint = trial_fingerprint(trial, stages, done)
    known = con.execute("SELECT fingerprint FROM ingest_state WHERE trial_id = ?", [trial_id]).fetchone()
    if known and known[0] == fingerprint and not force:
        return False
    row = trial_row(study, trial, axis_columns)
    row = {k: _axis_value(v, column_types.get(k, "")) for k, v in row.items()}
    # Results of a stage belong to a trial that completed it: a trial killed before a shared stage ran
    # must not carry the metrics its retry produced later (one point's rows would count once per try).
    parts = [read_done_stage(trial_id, s, d) for s, d, ok in zip(stages, dirs, done)
             if ok and s.get("status", "complete") == "complete"]
    con.execute("BEGIN TRANSACTION")
    try:
        for table in PER_TRIAL_TABLES:
            con.execute(f"DELETE FROM {table} WHERE trial_id = ?", [trial_id])
        _insert(con, "trials", [row])
        _insert(con, "stages", stage_rows(trial_id, stages, done))
        _insert(con, "metrics", [m for part in parts for m in part["metrics"]])
        curves = [part["train_curves"] for part in parts if part["train_curves"] is not None]
        _insert(con, "train_curves", pd.concat(curves, ignore_index=True) if curves else None)
        manifests = {m["stage_key"]: m for part in parts for m in part["manifests"]}
        con.execute("DELETE FROM manifests WHERE list_contains(?, stage_key)", [list(manifests)])
        _insert(con, "manifests", list(manifests.values()))
        _insert(con, "ingest_state", [{"trial_id": trial_id, "fingerprint": fingerprint,
                                       "ingested_at": datetime.now()}])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return True


def drop_vanished_trials(con, study: str, trial_ids: set[str]) -> int:
    """Trials of `study` in the DB that the storage no longer has (e.g. a deleted and re-created study)."""
    stored = {r[0] for r in con.execute("SELECT trial_id FROM trials WHERE study = ?", [study]).fetchall()}
    gone = sorted(stored - trial_ids)
    for trial_id in gone:
        for table in PER_TRIAL_TABLES:
            con.execute(f"DELETE FROM {table} WHERE trial_id = ?", [trial_id])
    return len(gone)


def write_parquet_snapshots(con, parquet_dir: Path) -> list[Path]:
    """Every table to `<parquet_dir>/<table>.parquet`, each written to a temp name and renamed."""
    parquet_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in TABLES:
        final = parquet_dir / f"{table}.parquet"
        tmp = parquet_dir / f".{table}.parquet.tmp"
        con.execute(f"COPY (SELECT * FROM {table}) TO '{_sql_path(tmp)}' (FORMAT parquet)")
        os.replace(tmp, final)
        paths.append(final)
    return paths


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def study_counts(con, study: str) -> dict[str, int]:
    counts = {"trials": con.execute("SELECT count(*) FROM trials WHERE study = ?", [study]).fetchone()[0]}
    for table in ("stages", "metrics", "train_curves"):
        counts[table] = con.execute(f"SELECT count(*) FROM {table} t JOIN trials USING (trial_id) "
                                    "WHERE trials.study = ?", [study]).fetchone()[0]
    counts["manifests"] = con.execute(
        "SELECT count(DISTINCT m.stage_key) FROM manifests m JOIN stages s USING (stage_key) "
        "JOIN trials t ON t.trial_id = s.trial_id WHERE t.study = ?", [study]).fetchone()[0]
    return counts


# ---------------------------------------------------------------- entry points

def ingest(results_dir: str | Path, study: str, storage_url: str | None = None, db_path: str | Path | None = None,
           force: bool = False, wait_s: float = 10.0) -> dict[str, int]:
    """Load one study into the DuckDB file; returns its row counts plus `ingested` / `unchanged` trials."""
    results_dir = Path(results_dir)
    db_path = Path(db_path) if db_path is not None else default_db_path(results_dir)
    trials = [t for t in load_trials(study, open_storage(storage_url, study, results_dir)) if not is_bookkeeping(t)]
    con = connect_writer(db_path, wait_s)
    try:
        create_tables(con)
        axis_columns = ensure_axis_columns(con, trials)
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'trials'").fetchall())
        ingested = sum(ingest_trial(con, study, t, axis_columns, types, results_dir, force) for t in trials)
        dropped = drop_vanished_trials(con, study, {f"{study}/{t.number}" for t in trials})
        parquet_dir = parquet_dir_for(db_path)
        if ingested or dropped or not all((parquet_dir / f"{t}.parquet").exists() for t in TABLES):
            write_parquet_snapshots(con, parquet_dir)
        counts = study_counts(con, study)
    finally:
        con.close()
    return {**counts, "ingested": ingested, "unchanged": len(trials) - ingested, "dropped": dropped}


def ingest_all(results_dir: str | Path = "results", studies: list[str] | None = None, storage_url: str | None = None,
               db_path: str | Path | None = None, force: bool = False) -> dict[str, dict[str, int]]:
    """Ingest the named studies, or every study found (in the storage URL, else under results/*/optuna.journal)."""
    import optuna

    if studies:
        targets = [(name, storage_url) for name in studies]
    elif storage_url is not None:
        targets = [(name, storage_url) for name in optuna.get_all_study_names(open_storage(storage_url, None))]
    else:
        targets = [(name, str(journal)) for name, journal in discover_studies(results_dir)]
    if not targets:
        raise StoreError(f"no study to ingest: no {Path(results_dir) / '*' / 'optuna.journal'} and no --storage")
    return {name: ingest(results_dir, name, storage, db_path, force) for name, storage in targets}

