"""harness.store.query: read-only SQL over an ingested real results tree."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from harness.store.query import QueryError, query

REFUSED = [
    "DROP TABLE trials",
    "INSERT INTO trials (trial_id) VALUES ('x')",
    "UPDATE trials SET status = 'complete'",
    "DELETE FROM metrics",
    "CREATE TABLE t AS SELECT 1",
    "ATTACH 'other.duckdb' AS other",
    "COPY trials TO 'out.csv'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET threads = 1",
    "EXPORT DATABASE 'dump'",
    "CHECKPOINT",
    "PRAGMA enable_profiling",
    "EXPLAIN ANALYZE DELETE FROM metrics",
    "SELECT 1; DROP TABLE trials",
    "  -- a comment first\n  drop table trials",
]


@pytest.fixture(scope="module")
def results(ingested_tree):
    return ingested_tree.results


@pytest.mark.parametrize("sql", REFUSED)
def test_writes_and_extension_loading_are_refused(results, sql):
    with pytest.raises(QueryError) as err:
        query(sql, results_dir=results)
    assert "\n" not in str(err.value) and "read-only" in str(err.value)
    assert query("SELECT count(*) AS n FROM trials", results_dir=results, fmt="csv") == "n\n30"
    assert not (results / "out.csv").exists() and not (results / "other.duckdb").exists()


@pytest.mark.parametrize("sql", ["SELECT 1 AS x", "WITH a AS (SELECT 1 AS x) SELECT * FROM a", "FROM trials LIMIT 1",
                                 "DESCRIBE trials", "SHOW TABLES", "SUMMARIZE metrics", "PRAGMA table_info('stages')",
                                 "EXPLAIN SELECT * FROM metrics"])
def test_reads_are_allowed(results, sql):
    assert query(sql, results_dir=results).strip()


def test_no_file_access_beyond_the_store(results):
    with pytest.raises(QueryError, match="disabled by configuration"):
        query("SELECT * FROM read_csv('/etc/hostname')", results_dir=results)
    with pytest.raises(QueryError, match="disabled by configuration"):
        query("SELECT * FROM read_csv('/etc/hostname')", results_dir=results, parquet=True)


def test_formats(results):
    sql = ("SELECT t.sft__loss_mask AS mask, round(avg(m.value), 4) AS acc FROM metrics m JOIN trials t USING (trial_id) "
           "WHERE t.study = 'lion_toy' AND m.benchmark = 'toy' AND m.metric = 'accuracy' AND m.stage = 'eval:final' "
           "GROUP BY 1 ORDER BY 1")
    frame = pd.read_csv(io.StringIO(query(sql, results_dir=results, fmt="csv")))
    assert list(frame["mask"]) == ["all", "assistant"]
    assert frame["acc"].iloc[1] - frame["acc"].iloc[0] == pytest.approx(0.25)  # the planted loss-mask effect
    assert json.loads(query(sql, results_dir=results, fmt="json")) == frame.to_dict(orient="records")
    table = query(sql, results_dir=results).splitlines()
    assert table[0].split() == ["mask", "acc"] and len(table) == 3
    assert query("SELECT 1 AS x WHERE false", results_dir=results) == "x\n(0 rows)"


def test_query_errors_are_one_line(results):
    for sql, match in [("SELEC 1", "syntax error"), ("SELECT * FROM nope", "nope"), ("", "empty query")]:
        with pytest.raises(QueryError, match=match) as err:
            query(sql, results_dir=results)
        assert "\n" not in str(err.value)


def test_query_reads_parquet_while_another_process_writes_the_db(results, tmp_path, capsys):
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "c.execute('CREATE TABLE IF NOT EXISTS scratch (x INT)'); print('held', flush=True); "
                               "time.sleep(30)", str(copy / "harness.duckdb")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        sql = "SELECT study, count(*) AS n FROM trials GROUP BY study ORDER BY study"
        text = query(sql, results_dir=copy, fmt="csv")
        assert text == "study,n\nlion_toy,18\ntoy_scaling,8\ntoy_sdpo,4"
        assert "locked by another process; querying the Parquet snapshot" in capsys.readouterr().err
        with pytest.raises(QueryError, match="read-only"):
            query("DROP TABLE trials", results_dir=copy)
        # the in-memory Parquet database refuses writes as well (views, not tables)
        with pytest.raises(QueryError):
            query("SELECT * FROM read_parquet('/etc/hostname')", results_dir=copy)
    finally:
        holder.kill()
        holder.wait()
    assert query(sql, results_dir=copy, fmt="csv", parquet=True) == text


def test_cli_query(results, capsys):
    from harness.cli import main

    assert main(["query", "SELECT count(*) AS n FROM stages", "--results", str(results), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 69 + 24 + 12}]
    assert main(["query", "DROP TABLE trials", "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("harness: error: refused DROP statement")
    assert main(["query", "SELECT 1", "--results", str(results / "nowhere")]) == 2
    assert "no results database at" in capsys.readouterr().err
