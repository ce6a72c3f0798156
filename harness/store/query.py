"""`harness query "SQL"`: read-only SQL over the results store.

Two locks: every statement must parse as a read (SELECT / WITH / FROM / VALUES, DESCRIBE, SHOW,
SUMMARIZE, EXPLAIN of a read, PRAGMA table_info-like reads), so DROP, INSERT, ATTACH, COPY,
INSTALL/LOAD, SET, EXPORT and the like are refused before anything runs; and the connection itself
is read-only: the DuckDB file opened with `read_only=True`, or, with `--parquet` or when another
process holds the file, an in-memory database with views over the Parquet snapshot. Both forbid
file access beyond the store and extension loading, with the configuration locked.
"""
from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd

from harness.store.ingest import default_db_path, is_lock_error, locked_error, parquet_dir_for
from harness.store.schema import TABLES, StoreError

FORMATS = ("table", "csv", "json")
READ_PRAGMAS = {"table_info", "show_tables", "show_tables_expanded", "database_size", "version", "show",
                "storage_info", "database_list", "functions", "collations", "platform"}
LOCKDOWN = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
_LEADING_COMMENTS = re.compile(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/)*", re.S)


class QueryError(StoreError):
    """A refused or failed query; one line."""


# ---------------------------------------------------------------- statement check

def _text(statement) -> str:
    return _LEADING_COMMENTS.sub("", statement.query).strip().rstrip(";").strip()


def _is_read(statement) -> bool:
    import duckdb

    kind, text = statement.type, _text(statement)
    if kind == duckdb.StatementType.SELECT:
        return True
    if kind == duckdb.StatementType.EXPLAIN:
        inner = re.sub(r"^EXPLAIN\s+(ANALYZE\s+)?(\([^)]*\)\s*)?", "", text, flags=re.I)
        inner_statements = duckdb.extract_statements(inner) if inner != text else []
        return len(inner_statements) == 1 and inner_statements[0].type == duckdb.StatementType.SELECT
    if kind == duckdb.StatementType.PRAGMA:
        name = re.match(r"PRAGMA\s+(\w+)", text, flags=re.I)
        return bool(name) and name.group(1).lower() in READ_PRAGMAS
    return False


def check_read_only(sql: str) -> list[str]:
    """The statements of `sql`, or QueryError naming the first that is not a read."""
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as err:
        raise QueryError(f"SQL syntax error: {_first_line(err)}") from None
    if not statements:
        raise QueryError("empty query")
    for statement in statements:
        if not _is_read(statement):
            verb = (_text(statement).split() or ["?"])[0].upper()
            raise QueryError(f"refused {verb} statement: `harness query` is read-only (SELECT, WITH, DESCRIBE, "
                             "SHOW, SUMMARIZE, EXPLAIN, PRAGMA table_info)")
    return [_text(s) for s in statements]


def _first_line(err: Exception) -> str:
    return " ".join(str(err).splitlines()[0].split())


# ---------------------------------------------------------------- read-only connections

def _connect_file(db_path: Path):
    import duckdb

    config = {**LOCKDOWN, "enable_external_access": False, "lock_configuration": True}
    return duckdb.connect(str(db_path), read_only=True, config=config)


def connect_parquet(parquet_dir: Path):
    """In-memory DuckDB with one view per table over `<parquet_dir>/<table>.parquet`; no other file access."""
    import duckdb

    files = {t: (parquet_dir / f"{t}.parquet").resolve() for t in TABLES if (parquet_dir / f"{t}.parquet").exists()}
    if not files:
        raise QueryError(f"no Parquet snapshot in {parquet_dir} (run `harness ingest`)")
    con = duckdb.connect(":memory:", config=LOCKDOWN)
    for table, path in files.items():
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{str(path).replace(chr(39), chr(39) * 2)}')")
    con.execute("SET allowed_paths = ?", [[str(p) for p in files.values()]])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def connect_readonly(db_path: str | Path | None = None, parquet_dir: str | Path | None = None,
                     results_dir: str | Path = "results", parquet: bool = False, note=None):
    """A read-only connection: the DuckDB file, else (asked for, locked, or absent) the Parquet snapshot."""
    import duckdb

    db_path = Path(db_path) if db_path is not None else default_db_path(results_dir)
    parquet_dir = Path(parquet_dir) if parquet_dir is not None else parquet_dir_for(db_path)
    if parquet:
        return connect_parquet(parquet_dir)
    if not db_path.exists():
        if (parquet_dir / "trials.parquet").exists():
            return connect_parquet(parquet_dir)
        raise QueryError(f"no results database at {db_path} (run `harness ingest`)")
    try:
        return _connect_file(db_path)
    except duckdb.IOException as err:
        if not is_lock_error(err):
            raise QueryError(f"cannot open {db_path}: {_first_line(err)}") from None
        if not (parquet_dir / "trials.parquet").exists():
            raise QueryError(str(locked_error(db_path, err)) + f" (no Parquet snapshot in {parquet_dir} either)") from None
        (note or _stderr_note)(f"{db_path} is locked by another process; querying the Parquet snapshot in {parquet_dir}")
        return connect_parquet(parquet_dir)


def _stderr_note(message: str) -> None:
    print(f"harness: note: {message}", file=sys.stderr)


@contextmanager
def open_readonly(**kwargs) -> Iterator:
    con = connect_readonly(**kwargs)
    try:
        yield con
    finally:
        con.close()


# ---------------------------------------------------------------- query

def run_statements(con, statements: list[str]) -> pd.DataFrame:
    import duckdb

    frame = pd.DataFrame()
    for statement in statements:
        try:
            frame = con.execute(statement).df()
        except duckdb.Error as err:
            raise QueryError(_first_line(err)) from None
    return frame


def format_frame(frame: pd.DataFrame, fmt: str = "table") -> str:
    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return frame.to_json(orient="records", date_format="iso")
    if fmt != "table":
        raise QueryError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if frame.empty:
        return "  ".join(map(str, frame.columns)) + "\n(0 rows)"
    return frame.to_string(index=False, max_rows=None, max_cols=None, max_colwidth=None)


def query(sql: str, db_path: str | Path | None = None, fmt: str = "table", parquet_dir: str | Path | None = None,
          results_dir: str | Path = "results", parquet: bool = False) -> str:
    """Run read-only SQL; the last statement's result, formatted as `table`, `csv` or `json`."""
    if fmt not in FORMATS:
        raise QueryError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    statements = check_read_only(sql)
    with open_readonly(db_path=db_path, parquet_dir=parquet_dir, results_dir=results_dir, parquet=parquet) as con:
        return format_frame(run_statements(con, statements), fmt)
