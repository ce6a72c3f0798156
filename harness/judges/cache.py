"""Key-value caches in SQLite: judge outputs by (judge, request), answers by (weights, prompt, settings).

SQLite makes every insert atomic, so a run killed mid-way keeps what it finished and a resumed
run pays only for the rest. Several threads (and processes) may share one file.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


def content_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class SqliteCache:
    """A persistent dict of JSON values."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses at most the last commits
            self._db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        except sqlite3.DatabaseError as err:  # a damaged file: say which, never discard what it may hold
            from harness.config.loader import ConfigError

            self._db.close()
            raise ConfigError(f"not a readable cache ({err}); move it away to start the cache afresh",
                              file=str(self.path)) from None

    def get(self, key: str) -> Any | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        out = {}
        for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            chunk = keys[start:start + 500]
            with self._lock:
                rows = self._db.execute(f"SELECT key, value FROM kv WHERE key IN ({','.join('?' * len(chunk))})",
                                        chunk).fetchall()
            out.update((k, json.loads(v)) for k, v in rows)
        return out

    def put(self, key: str, value: Any) -> None:
        self.put_many({key: value})

    def put_many(self, items: dict[str, Any]) -> None:
        rows = [(k, json.dumps(v, ensure_ascii=False)) for k, v in items.items()]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM kv").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class JudgeCache(SqliteCache):
    """Raw judge outputs (OpenAI-format choices) that held a verdict."""

    @staticmethod
    def key(identity: dict, messages: list[dict], options: dict) -> str:
        return content_key("judge", identity, messages, options)
