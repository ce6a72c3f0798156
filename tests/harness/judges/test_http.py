"""The OpenAI-compatible HTTP client: what is retried, what is not, what is never echoed."""
from __future__ import annotations

import email.utils
import time

import pytest
from judge_server import JudgeServer

from harness.judges.base import CallFailed
from harness.judges.http import ChatClient, retry_after

BODY = {"model": "m", "messages": [{"role": "user", "content": "[[rating]] please"}]}


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after("2.5") == 2.5 and retry_after(None) is None and retry_after("soon") is None
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after(date) <= 30


def test_client_returns_the_first_choice():
    with JudgeServer() as server:
        choice = ChatClient(server.base_url).chat(BODY)
    assert "[[7]]" in choice["message"]["content"]


@pytest.mark.parametrize("action, retried", [("503", True), ("garbage", True), ("drop", True), ("401", False)])
def test_what_is_retried(action, retried):
    with JudgeServer(script=lambda n, body: action) as server:
        client = ChatClient(server.base_url, "sk-secret-key", retries=2, backoff_s=0.01)
        with pytest.raises(CallFailed) as err:
            client.chat(BODY)
    assert len(server.requests) == (3 if retried else 1)
    assert "sk-secret-key" not in str(err.value)


def test_endpoint_marked_down_after_consecutive_failures():
    with JudgeServer(script=lambda n, body: "500") as server:
        client = ChatClient(server.base_url, retries=1, backoff_s=0.01, max_consecutive_failures=4)
        for _ in range(2):
            with pytest.raises(CallFailed):
                client.chat(BODY)
        with pytest.raises(CallFailed, match="judge endpoint down"):
            client.chat(BODY)
    assert len(server.requests) == 4 and client.stats["failures"] == 3
