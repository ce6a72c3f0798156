"""SQLite caches: persistent, atomic per insert, shared by threads."""
from __future__ import annotations

import threading

from harness.judges.cache import JudgeCache, SqliteCache, content_key


def test_values_survive_a_new_connection(tmp_path):
    cache = SqliteCache(tmp_path / "c.sqlite")
    cache.put("a", {"x": [1, 2]})
    cache.put_many({"b": "text", "c": None})
    cache.close()
    again = SqliteCache(tmp_path / "c.sqlite")
    assert again.get("a") == {"x": [1, 2]} and again.get("missing") is None
    assert again.get_many(["a", "b", "zzz"]) == {"a": {"x": [1, 2]}, "b": "text"}
    assert len(again) == 3


def test_threads_share_one_cache(tmp_path):
    cache = SqliteCache(tmp_path / "c.sqlite")
    threads = [threading.Thread(target=lambda t=t: [cache.put(f"{t}-{i}", i) for i in range(50)]) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 200


def test_judge_key_depends_on_judge_messages_and_options():
    base = JudgeCache.key({"model": "m"}, [{"role": "user", "content": "hi"}], {"max_tokens": 1})
    assert base == JudgeCache.key({"model": "m"}, [{"role": "user", "content": "hi"}], {"max_tokens": 1})
    assert base != JudgeCache.key({"model": "n"}, [{"role": "user", "content": "hi"}], {"max_tokens": 1})
    assert base != JudgeCache.key({"model": "m"}, [{"role": "user", "content": "hi!"}], {"max_tokens": 1})
    assert base != JudgeCache.key({"model": "m"}, [{"role": "user", "content": "hi"}], {"max_tokens": 2})
    assert content_key("a", 1) != content_key("a", "1")
