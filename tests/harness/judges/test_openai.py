"""The `openai` judge against a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/judge_server.py)."""
from __future__ import annotations

import math
import threading
import time

import pytest
from judge_server import JudgeServer

from harness.config.eval import JudgeConfig
from harness.config.loader import ConfigError
from harness.judges import get_judge
from harness.judges.base import PairwiseItem
from harness.judges.prompts import arena_hard_v01
from harness.judges.protocols import PREFERENCE, VERDICT_LABEL, single_rating_items

ALPACA_PROMPT = '"model_identifier": "m" ... "model_identifier": "M"'


def arena_items(n: int) -> list[PairwiseItem]:
    config = arena_hard_v01()
    items = []
    for i in range(n):
        user = config["prompt_template"][0].format(question_1=f"question {i}", answer_1="yes", answer_2="no")
        items.append(PairwiseItem(f"question {i}", "yes", "no", [{"role": "system", "content": config["system_prompt"]},
                                                                 {"role": "user", "content": user}], VERDICT_LABEL))
    return items


def alpaca_items(n: int) -> list[PairwiseItem]:
    return [PairwiseItem(f"q{i}", "a", "b", [{"role": "user", "content": f"{ALPACA_PROMPT} q{i}"}], PREFERENCE)
            for i in range(n)]


def make_judge(server: JudgeServer, tmp_path, **overrides):
    settings = dict(type="openai", model="test-judge", base_url=server.base_url, api_key_env=None, retries=2,
                    backoff_s=0.01, timeout_s=2.0, concurrency=4)
    cfg = JudgeConfig(**{**settings, **overrides})
    return get_judge(cfg, cache_dir=tmp_path / "cache", progress=False)


def test_good_verdicts_in_every_format_with_raw_output(tmp_path):
    with JudgeServer() as server:
        judge = make_judge(server, tmp_path)
        arena = judge.pairwise(arena_items(3))
        alpaca = judge.pairwise(alpaca_items(2))
        ratings = judge.rate(single_rating_items(["2+2?"], ["4"]))
    assert [j.verdict for j in arena] == ["A>B"] * 3
    assert all("[[A>B]]" in j.raw and j.failure is None for j in arena)
    assert [j.verdict for j in alpaca] == pytest.approx([1.8, 1.8])  # 2 - P(m), P(m) = 0.2 from logprobs
    assert alpaca[0].note == "logprobs" and alpaca[0].completion["logprobs"]["content"][0]["top_logprobs"]
    assert ratings[0].verdict == 7.0 and "[[7]]" in ratings[0].raw
    alpaca_body = next(b for b in server.requests if ALPACA_PROMPT in b["messages"][0]["content"])
    assert alpaca_body["logprobs"] is True and alpaca_body["max_tokens"] == 1 and alpaca_body["temperature"] == 0


def test_judge_without_logprobs_falls_back_to_text_verdict_and_says_so(tmp_path):
    with JudgeServer(script=lambda n, body: "text") as server:
        judgments = make_judge(server, tmp_path).pairwise(alpaca_items(2))
    assert [j.verdict for j in judgments] == [2.0, 2.0]
    assert all(j.note == "text" for j in judgments)


def test_http_500_is_retried_then_answered(tmp_path):
    with JudgeServer(script=lambda n, body: "500" if n < 2 else "ok") as server:
        judge = make_judge(server, tmp_path, concurrency=1)
        [judgment] = judge.pairwise(arena_items(1))
    assert judgment.verdict == "A>B"
    assert len(server.requests) == 3 and judge.client.stats["retries"] == 2


def test_persistent_500_and_garbage_are_counted_and_the_run_goes_on(tmp_path):
    def script(n, body):
        text = body["messages"][-1]["content"]
        return "500" if "question 1\n" in text else "garbage" if "question 2\n" in text else "ok"

    with JudgeServer(script=script) as server:
        judgments = make_judge(server, tmp_path).pairwise(arena_items(4))
    assert [j.verdict for j in judgments] == ["A>B", None, None, "A>B"]
    assert "HTTP 500" in judgments[1].failure and "after 3 attempts" in judgments[1].failure
    assert "not an OpenAI chat response" in judgments[2].failure


def test_429_with_retry_after_is_honoured(tmp_path):
    with JudgeServer(script=lambda n, body: "429" if n == 0 else "ok") as server:
        judge = make_judge(server, tmp_path, concurrency=1, backoff_s=30.0)  # Retry-After: 0 wins over backoff
        start = time.perf_counter()
        [judgment] = judge.pairwise(arena_items(1))
    assert judgment.verdict == "A>B" and time.perf_counter() - start < 5


def test_babble_and_empty_content_are_reasked_then_failures_with_raw_kept(tmp_path):
    def script(n, body):
        text = body["messages"][-1]["content"]
        return "babble" if "question 0\n" in text else "empty" if "question 1\n" in text else "ok"

    with JudgeServer(script=script) as server:
        judgments = make_judge(server, tmp_path, parse_retries=1).pairwise(arena_items(3))
    assert judgments[0].verdict is None and judgments[0].raw == "I like turtles."
    assert judgments[0].failure.startswith("unparseable")
    assert judgments[1].verdict is None and judgments[1].failure == "empty judge output"
    assert judgments[2].verdict == "A>B"
    assert server.count("question 0\\n") == 2  # asked once more, then counted


def test_a_hang_past_the_timeout_fails_fast_and_is_counted(tmp_path):
    def script(n, body):
        return "hang" if "question 0\n" in body["messages"][-1]["content"] else "ok"

    with JudgeServer(script=script, hang_s=3.0) as server:
        judge = make_judge(server, tmp_path, timeout_s=0.3, retries=1)
        start = time.perf_counter()
        judgments = judge.pairwise(arena_items(2))
        elapsed = time.perf_counter() - start
    assert judgments[0].verdict is None and "timeout after 0.3s" in judgments[0].failure
    assert judgments[1].verdict == "A>B"
    assert elapsed < 2.5


def test_a_server_that_dies_mid_run_fails_the_rest_fast_and_a_resume_pays_only_for_them(tmp_path):
    server = JudgeServer()
    port = server.port

    def script(n, body):
        if n == 3:
            threading.Thread(target=server.stop).start()
            return "drop"
        return "ok"

    server.script = script
    with server:
        judge = make_judge(server, tmp_path, concurrency=1, max_consecutive_failures=3)
        start = time.perf_counter()
        first = judge.pairwise(arena_items(10))
    assert [j.ok for j in first] == [True] * 3 + [False] * 7
    assert "judge endpoint down" in first[-1].failure
    assert time.perf_counter() - start < 10

    with JudgeServer(port=port) as revived:  # same endpoint, same judge identity: cached verdicts are reused
        again = make_judge(revived, tmp_path, concurrency=1).pairwise(arena_items(10))
    assert all(j.ok for j in again)
    assert [j.cached for j in again] == [True] * 3 + [False] * 7
    assert len(revived.requests) == 7


def test_cache_means_rescoring_never_pays_twice(tmp_path):
    with JudgeServer() as server:
        make_judge(server, tmp_path).pairwise(arena_items(5))
        again = make_judge(server, tmp_path).pairwise(arena_items(5))
    assert len(server.requests) == 5 and all(j.cached and j.verdict == "A>B" for j in again)


def test_api_key_only_from_the_named_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-planted-123")
    with JudgeServer(require_key="sk-planted-123") as server:
        cfg = JudgeConfig(type="openai", base_url=server.base_url, api_key_env="TEST_JUDGE_KEY", backoff_s=0.01)
        [judgment] = get_judge(cfg, cache_dir=tmp_path, progress=False).pairwise(arena_items(1))
    assert judgment.verdict == "A>B" and server.auth_headers == ["Bearer sk-planted-123"]
    monkeypatch.delenv("TEST_JUDGE_KEY")
    with pytest.raises(ConfigError, match="TEST_JUDGE_KEY is not set"):
        get_judge(cfg, cache_dir=tmp_path)


def test_a_rejected_key_is_not_retried_and_never_echoed(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-wrong-456")
    with JudgeServer(require_key="sk-right") as server:
        cfg = JudgeConfig(type="openai", base_url=server.base_url, api_key_env="TEST_JUDGE_KEY", retries=3)
        [judgment] = get_judge(cfg, cache_dir=tmp_path, progress=False).pairwise(arena_items(1))
    assert len(server.requests) == 1 and "HTTP 401" in judgment.failure and "sk-wrong" not in judgment.failure


def test_score_is_a_pointwise_rating():
    with JudgeServer() as server:
        cfg = JudgeConfig(type="openai", base_url=server.base_url, api_key_env=None, cache=False)
        scores = get_judge(cfg, progress=False).score(["2+2?", "3+3?"], ["4", "6"])
    assert scores == [7.0, 7.0] and not any(math.isnan(s) for s in scores)
