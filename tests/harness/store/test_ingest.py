"""harness.store.ingest on a real results tree (Optuna journals + stage directories, tests/harness/conftest.py)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import duckdb
import pytest

from harness.store.ingest import default_db_path, ingest, ingest_all
from harness.store.schema import StoreError

TABLE_KEYS = {"trials": "trial_id", "stages": "trial_id, position", "metrics": "trial_id, stage, benchmark, metric",
              "train_curves": "trial_id, stage, name, step", "manifests": "stage_key"}


def dump(db) -> dict[str, list]:
    """Every table's rows in a fixed order (bookkeeping columns left out)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        for table, order in TABLE_KEYS.items():
            out[table] = con.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
        return out
    finally:
        con.close()


def test_ingest_twice_gives_the_same_rows(lion_tree):
    first = ingest(lion_tree.results, "lion_toy")
    rows = dump(default_db_path(lion_tree.results))
    second = ingest(lion_tree.results, "lion_toy")
    assert {k: first[k] for k in TABLE_KEYS} == {k: second[k] for k in TABLE_KEYS}
    assert (first["ingested"], second["ingested"], second["unchanged"]) == (18, 0, 18)
    forced = ingest(lion_tree.results, "lion_toy", force=True)
    assert forced["ingested"] == 18
    assert dump(default_db_path(lion_tree.results)) == rows
    # 16 complete trials × 4 stages + failed (3) + running (2); the duplicate bookkeeping trial is not a trial
    assert (first["trials"], first["stages"]) == (18, 16 * 4 + 3 + 2)
    assert first["metrics"] == 16 * 2 * 10  # eval:sft + eval:final of each complete trial; none from the others
    for table in TABLE_KEYS:
        assert (default_db_path(lion_tree.results).parent / "parquet" / f"{table}.parquet").stat().st_size > 0


def test_trials_have_axis_columns_status_and_error(lion_tree):
    ingest(lion_tree.results, "lion_toy")
    con = duckdb.connect(str(default_db_path(lion_tree.results)), read_only=True)
    rows = con.execute("SELECT number, point, status, error, sft__packing, sft__loss_mask, dpo__beta, seed, "
                       "started_at, finished_at FROM trials ORDER BY number").fetchall()
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'trials'").fetchall())
    con.close()
    assert [r[2] for r in rows] == ["complete"] * 16 + ["failed", "running"]
    assert rows[16][3].startswith("NonFiniteLossError") and rows[0][3] is None
    assert rows[5][:2] == (5, 5) and rows[5][4:8] == ("none", "assistant", 0.1, 1)
    assert (types["dpo__beta"], types["seed"], types["sft__packing"]) == ("DOUBLE", "BIGINT", "VARCHAR")
    assert str(rows[0][8]) == "2025-01-02 03:04:05" and rows[17][9] is None  # UTC, running has no end


def test_stage_without_done_is_not_read(lion_tree):
    ingest(lion_tree.results, "lion_toy")
    con = duckdb.connect(str(default_db_path(lion_tree.results)), read_only=True)
    keys = lion_tree.undone_keys
    assert len(keys) == 2  # the failed DPO (curves, manifest) and the running eval (metrics.json)
    for table in ("metrics", "train_curves", "manifests"):
        assert con.execute(f"SELECT count(*) FROM {table} WHERE list_contains(?, stage_key)", [keys]).fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM metrics WHERE value = 0.99").fetchone()[0] == 0
    stages = con.execute("SELECT status, done FROM stages WHERE list_contains(?, stage_key) ORDER BY status",
                         [keys]).fetchall()
    con.close()
    assert stages == [("failed", False), ("running", False)]


def test_new_study_adds_and_widens_axis_columns(lion_tree, results_kit):
    import optuna

    ingest(lion_tree.results, "lion_toy")
    study = results_kit.open_study(lion_tree.results, "beta_words")
    stage = results_kit.write_stage(lion_tree, "eval", "w0", metrics=[
        {"benchmark": "toy", "metric": "accuracy", "value": 0.5, "stderr": 0.1, "n": 10, "failures": 0}])
    results_kit.tell(study, 0, {"dpo.beta": "high", "judge.model": ["a", "b"], "seed": 0},
                     [results_kit.stage_entry("eval", "w0", stage)], 0.5)
    counts = ingest(lion_tree.results, "beta_words")
    assert counts["trials"] == 1 and counts["metrics"] == 1
    con = duckdb.connect(str(default_db_path(lion_tree.results)), read_only=True)
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'trials'").fetchall())
    betas = con.execute("SELECT study, dpo__beta, judge__model FROM trials WHERE number = 0 ORDER BY study").fetchall()
    con.close()
    assert types["dpo__beta"] == "VARCHAR" and types["judge__model"] == "VARCHAR"
    assert betas == [("beta_words", "high", '["a", "b"]'), ("lion_toy", "0.1", None)]
    assert optuna.get_all_study_names(optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(lion_tree.results / "beta_words" / "optuna.journal")))) == ["beta_words"]


CRASH = textwrap.dedent("""
    import os, sys
    import harness.store.ingest as ing
    calls = {"n": 0}
    real = ing._insert
    def crashing(con, table, rows):
        calls["n"] += 1
        if table == "metrics" and calls["n"] > 40:   # half-way: inside a trial's transaction, after some inserts
            os._exit(17)
        return real(con, table, rows)
    ing._insert = crashing
    ing.ingest(sys.argv[1], "lion_toy", force=True)
""")


def test_crash_mid_ingest_leaves_no_duplicate_rows(lion_tree):
    clean = ingest(lion_tree.results, "lion_toy")
    crashed = subprocess.run([sys.executable, "-c", CRASH, str(lion_tree.results)], capture_output=True, text=True)
    assert crashed.returncode == 17, crashed.stderr
    after_crash = dump(default_db_path(lion_tree.results))
    again = ingest(lion_tree.results, "lion_toy")
    assert {k: again[k] for k in TABLE_KEYS} == {k: clean[k] for k in TABLE_KEYS}
    con = duckdb.connect(str(default_db_path(lion_tree.results)), read_only=True)
    dupes = con.execute("SELECT trial_id, stage, benchmark, metric, count(*) FROM metrics GROUP BY ALL "
                        "HAVING count(*) > 1").fetchall()
    con.close()
    assert dupes == []
    assert len(after_crash["metrics"]) == clean["metrics"]  # the half-done transaction was rolled back


def test_locked_database_gives_one_line_error(lion_tree):
    ingest(lion_tree.results, "lion_toy")
    db = default_db_path(lion_tree.results)
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db)!r}); "
                               "print('held', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(StoreError) as err:
            ingest(lion_tree.results, "lion_toy", wait_s=0.5)
        assert time.monotonic() - started < 10
        message = str(err.value)
        assert "\n" not in message and f"locked by another process (PID {holder.pid})" in message
    finally:
        holder.kill()
        holder.wait()


def test_missing_study_and_journal_are_one_line_errors(lion_tree):
    with pytest.raises(StoreError, match="no Optuna journal at"):
        ingest(lion_tree.results, "nope")
    journal = lion_tree.results / "lion_toy" / "optuna.journal"
    with pytest.raises(StoreError, match="no study 'other' in the storage \\(it has: lion_toy\\)"):
        ingest(lion_tree.results, "other", storage_url=str(journal))


def test_cli_ingest_discovers_studies(lion_tree, capsys):
    from harness.cli import main

    assert main(["ingest", "--results", str(lion_tree.results), "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("lion_toy: 18 trials, 69 stages, 320 metric rows")
    assert '"lion_toy"' in out[-1]
    assert ingest_all(lion_tree.results)["lion_toy"]["unchanged"] == 18
